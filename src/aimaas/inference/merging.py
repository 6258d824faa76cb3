"""Merging wire requests into one batch and splitting the result back: what dynamic batching
needs to know about the wire format (:mod:`aimaas.inference.wire`).

Every request type carries its inputs in one list field (``texts``, ``images`` or ``audio``);
requests share a batch when every other field is equal (:func:`batch_key`) and, for text, when
their longest text falls in the same token-length bucket, so a batch pads little. The GPU server
and the in-process CPU backend both batch with these functions and
:class:`aimaas.batching.DynamicBatcher`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from pydantic import BaseModel

from aimaas.batching import DEFAULT_LENGTH_EDGES, length_bucket

__all__ = [
    "INPUT_FIELDS",
    "batch_key",
    "batchable",
    "input_field",
    "merge_requests",
    "params_key",
    "rows",
    "split_result",
]

#: The list field that holds a request's inputs, one of which every batchable request type has.
INPUT_FIELDS = ("texts", "images", "audio")


def batchable(request: Any) -> bool:
    """Whether ``request`` is a wire request with one list of inputs (so it can be merged)."""
    return isinstance(request, BaseModel) and any(
        name in type(request).model_fields for name in INPUT_FIELDS
    )


def input_field(request: BaseModel) -> str:
    """Name of the field of ``request`` that holds its inputs."""
    for name in INPUT_FIELDS:
        if name in type(request).model_fields:
            return name
    raise TypeError(f"not an inference request: {type(request).__name__}")


def rows(request: BaseModel) -> int:
    """Number of inputs in ``request``."""
    return len(getattr(request, input_field(request)))


def params_key(request: BaseModel) -> tuple[tuple[str, Any], ...]:
    """Every field but the inputs: requests batch together only when these are equal."""
    field_name = input_field(request)
    return tuple(sorted(request.model_dump(exclude={field_name}).items()))


def batch_key(request: BaseModel, encoder: Any | None = None) -> Hashable:
    """The batcher bucket of ``request``: its parameters and, for text, a length bucket.

    Parameters
    ----------
    request
        A wire request.
    encoder
        The model's text encoder (anything with ``count_tokens(texts)``), or None for models
        whose inputs have one size (images resized to the model's input, audio windows).
    """
    key: tuple[Any, ...] = params_key(request)
    texts = getattr(request, "texts", None)
    if encoder is not None and texts:
        longest = max(encoder.count_tokens(texts))
        key = (*key, length_bucket(longest, DEFAULT_LENGTH_EDGES))
    return key


def merge_requests(requests: Sequence[BaseModel]) -> BaseModel:
    """One request holding the inputs of ``requests`` in order (their parameters are equal)."""
    if len(requests) == 1:
        return requests[0]
    field_name = input_field(requests[0])
    merged = [item for request in requests for item in getattr(request, field_name)]
    return requests[0].model_copy(update={field_name: merged})


def split_result(result: BaseModel, sizes: Sequence[int]) -> list[BaseModel]:
    """Cut a merged result into one result per request of ``sizes`` rows.

    Every list field with one entry per row is sliced; other fields are copied.

    Raises
    ------
    RuntimeError
        ``result`` has no list field with one entry per row.
    """
    if len(sizes) == 1:
        return [result]
    total = sum(sizes)
    per_row = {
        name: value
        for name in type(result).model_fields
        if isinstance(value := getattr(result, name), list) and len(value) == total
    }
    if not per_row:
        raise RuntimeError(f"{type(result).__name__} has no per-row field of length {total}")
    parts: list[BaseModel] = []
    start = 0
    for size in sizes:
        update = {name: value[start : start + size] for name, value in per_row.items()}
        parts.append(result.model_copy(update=update))
        start += size
    return parts
