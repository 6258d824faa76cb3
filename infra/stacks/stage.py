"""The base of every stack that builds on the storage stack (API, serving, GPU, observability)."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from infra.settings import InfraSettings
from infra.stacks.storage import StorageStack


class StageStack(cdk.Stack):
    """A stack of one stage: its settings and the storage stack (key, buckets, tables) it uses.

    Parameters
    ----------
    scope, construct_id
        As for any CDK stack.
    settings
        The stage's settings.
    storage
        The stage's storage stack.
    **kwargs
        Passed to :class:`aws_cdk.Stack` (``env``, ``synthesizer``, ...).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InfraSettings,
        storage: StorageStack,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.storage = storage
