"""Support code for the tests and benchmarks: moto tables, sample records, fault injection.

Never shipped: neither the Lambda layer nor the images copy it.
"""
