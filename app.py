#!/usr/bin/env python3
"""CDK entry point: ``node_modules/.bin/cdk synth [-c stage=dev|prod] [-c profile=aws|localstack]``.

See infra/README.md for the context options.
"""

import sys

import aws_cdk as cdk

from infra import FEATURE_FLAGS, build_app
from infra.assets import MissingModelsError

app = cdk.App(context=dict(FEATURE_FLAGS))
try:
    build_app(app)
except MissingModelsError as error:  # a clear message, not a traceback
    sys.exit(f"error: {error}")
app.synth()
