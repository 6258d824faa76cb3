#!/usr/bin/env python3
"""CDK entry point: ``node_modules/.bin/cdk synth [-c stage=dev|prod] [-c profile=aws|localstack]``.

See infra/README.md for the context options.
"""

import aws_cdk as cdk

from infra import FEATURE_FLAGS, build_app

app = cdk.App(context=dict(FEATURE_FLAGS))
build_app(app)
app.synth()
