"""Batch jobs: OpenAI's Files + Batch API on three ports (file store, job store, work queue).

- :mod:`aimaas.batch.records`: files, jobs, chunk messages and the ids derived from them.
- :mod:`aimaas.batch.ports`: the ports; :mod:`aimaas.batch.local` (folder, SQLite, worker
  thread) and :mod:`aimaas.batch.aws` (S3, DynamoDB, SQS) the adapters, chosen in
  :mod:`aimaas.wiring`.
- :mod:`aimaas.batch.lines`: one line through the synchronous routes' task functions.
- :mod:`aimaas.batch.jobs` (create, cancel) and :mod:`aimaas.batch.worker` (run a chunk,
  finalise a batch), shared by every engine.
"""
