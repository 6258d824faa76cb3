"""The gateway side of keys, as the admin tooling imports it.

The port and its adapters live in the runtime core (:mod:`aimaas.auth.provisioner`) since the
customer's own ``/v1/keys`` issue and revoke keys too, through the same
:class:`~aimaas.auth.lifecycle.KeyLifecycle`; this module re-exports them.
"""

from aimaas.auth.provisioner import ApiGatewayProvisioner, KeyProvisioner, NoProvisioner

__all__ = ["ApiGatewayProvisioner", "KeyProvisioner", "NoProvisioner"]
