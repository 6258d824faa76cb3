"""The key-hash pepper: where it comes from, and the refusal to run a shared store on the default.

Every reader and writer of one key store must use the same pepper (the admin CLI that issues a
key, the authorizer and the app that check it). Sources, first match wins:

1. the SSM SecureString named by ``AIMAAS_KEY_PEPPER_PARAMETER`` (what the CDK app sets);
2. ``AIMAAS_KEY_PEPPER`` (tests, local tooling);
3. with a DynamoDB key store, the stage's parameter ``/aimaas/<stage>/key-pepper``
   (:func:`default_parameter`): the one the deployed functions read, so ``python -m aimaas_admin
   --store aws --stage dev`` issues keys they accept with no further setting;
4. :data:`~aimaas.auth.keys.DEFAULT_PEPPER`, for a SQLite key store only (one machine, one file).

A key store that others share (DynamoDB) never runs on the default pepper: :func:`pepper_source`
refuses at start-up when the configuration can only lead to it, and :func:`read_pepper` refuses
a configured value that equals it.

SSM values are read through Powertools' parameters utility with a max age
(:data:`PEPPER_MAX_AGE_S`), not once per process: a pepper replaced in SSM reaches running
functions within that time. (Replacing the pepper invalidates every key hashed with the old one;
it is the step that goes with re-issuing all keys.) Standard library, boto3 and Powertools only:
the authorizer zip imports this module.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aimaas.auth.keys import DEFAULT_PEPPER

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    from aimaas.config import Settings

#: Seconds a pepper read from SSM is reused before it is read again.
PEPPER_MAX_AGE_S = 300
#: Key stores whose keys live on one machine only: the default pepper is acceptable there.
LOCAL_KEY_STORES = frozenset({"sqlite"})

_providers: dict[str, SSMProvider] = {}
#: The last value read per parameter: an SSM error on a refresh keeps it instead of failing
#: every key check until SSM answers again.
_last_read: dict[str, str] = {}
logger = logging.getLogger("aimaas.auth")


class PepperError(ValueError):
    """The pepper cannot be resolved, or would be the local default for a shared key store."""


def default_parameter(stage: str) -> str:
    """The stage's SSM SecureString name, ``/aimaas/<stage>/key-pepper`` (the CDK app's too)."""
    return f"/aimaas/{stage}/key-pepper"


def create_pepper(ssm: Any, stage: str) -> None:
    """Create the stage's pepper once: 32 random bytes, hex, as a SecureString (never printed).

    CloudFormation cannot create a SecureString, so the deploy tools do (``make deploy``,
    ``scripts/deploy_localstack.py``). ``Overwrite=False``: an existing pepper is never
    replaced, which would invalidate every key.

    Parameters
    ----------
    ssm
        An SSM client of the target account and region.
    stage
        Names the parameter (:func:`default_parameter`).
    """
    ssm.put_parameter(
        Name=default_parameter(stage),
        Description=f"aimaas {stage}: HMAC pepper of the API key hashes",
        Value=secrets.token_hex(32),
        Type="SecureString",
        Overwrite=False,
    )


def pepper_parameter(settings: Settings) -> str | None:
    """The SSM parameter the pepper comes from, or ``None`` when it does not come from SSM."""
    explicit = settings.extra.get("AIMAAS_KEY_PEPPER_PARAMETER")
    if explicit:
        return explicit
    if settings.extra.get("AIMAAS_KEY_PEPPER") or settings.key_store in LOCAL_KEY_STORES:
        return None
    return default_parameter(settings.stage)


def _refuse_default(settings: Settings, source: str) -> None:
    if settings.key_store not in LOCAL_KEY_STORES:
        raise PepperError(
            f"the {settings.key_store} key store is shared, but {source} is the local default "
            f"pepper: every key hashed with it is refused by the deployed functions. Set "
            f"AIMAAS_KEY_PEPPER_PARAMETER (or create {default_parameter(settings.stage)})."
        )


def _ssm() -> SSMProvider:
    if "ssm" not in _providers:
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        _providers["ssm"] = SSMProvider()
    return _providers["ssm"]


def clear_cache() -> None:
    """Forget cached SSM values and the SSM client (tests; a new credentials context)."""
    _providers.clear()
    _last_read.clear()


def read_pepper(settings: Settings) -> str:
    """The pepper for ``settings``' key store, read now (SSM values cached for a max age).

    Raises
    ------
    PepperError
        The SSM parameter cannot be read, or the pepper would be the local default for a
        shared key store.
    """
    parameter = pepper_parameter(settings)
    if parameter is None:
        value = settings.extra.get("AIMAAS_KEY_PEPPER") or DEFAULT_PEPPER
        source = "AIMAAS_KEY_PEPPER" if settings.extra.get("AIMAAS_KEY_PEPPER") else "the pepper"
    else:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            value = str(_ssm().get(parameter, max_age=PEPPER_MAX_AGE_S, decrypt=True))
        except GetParameterError as error:
            if parameter in _last_read:
                logger.warning("key pepper refresh failed; keeping the last value")
                return _last_read[parameter]
            raise PepperError(
                f"cannot read the key pepper from SSM parameter {parameter!r} ({error}); create "
                f"it once per stage: aws ssm put-parameter --type SecureString --name "
                f'{parameter} --value "$(openssl rand -hex 32)"'
            ) from None
        source = f"SSM parameter {parameter!r}"
    if value == DEFAULT_PEPPER:
        _refuse_default(settings, source)
    if parameter is not None:
        _last_read[parameter] = value
    return value


def pepper_source(settings: Settings) -> Callable[[], str]:
    """A function returning the pepper, checked now and read on use (no SSM call at start-up).

    Raises
    ------
    PepperError
        The configuration can only lead to the local default pepper for a shared key store.
    """
    if pepper_parameter(settings) is None:
        value = settings.extra.get("AIMAAS_KEY_PEPPER") or DEFAULT_PEPPER
        if value == DEFAULT_PEPPER:
            _refuse_default(settings, "the pepper")
    return lambda: read_pepper(settings)
