"""aimaas: the shared runtime core of the models-as-a-service platform.

Every deployable (the inference Lambda, the authorizer, the GPU server) and local mode import
this package; none of them copies its logic. Sub-packages are one per concern, each with a
small public face in its ``__init__``:

- ``errors``: the one error type hierarchy and JSON error shape.
- ``manifest``: the Pydantic schema of a model manifest (also imported by ``model_export``).
- ``preprocess``: text, image and audio preprocessing shared by export gates and serving.
- ``registry``: the model store port (folder or S3) and the model registry.
- ``auth``: API keys, tenants and plans; the same check for the Lambda authorizer and local mode.
- ``metering``: the usage ledger port (SQLite or DynamoDB), pricing and invoices.
- ``backends``: where a model runs (in-process ONNX Runtime, the GPU server over HTTP, SageMaker).
- ``api``: the FastAPI application factory.

The modules used by the authorizer (``errors``, ``plans``, ``auth``, ``metering``) depend on the
standard library and boto3 only, so the zip function stays small.
"""

__version__ = "0.1.0"
