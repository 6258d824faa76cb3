"""Batch lines: byte spans of a JSONL file, chunking, and the parse of one line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aimaas import errors
from aimaas.batch.jobs import chunks_of
from aimaas.batch.lines import input_lines, line_spans, parse_line
from aimaas.batch.records import BatchJob, Chunk, derived_file_id, line_request_id


def test_spans_skip_blank_lines_and_keep_crlf_lines_whole() -> None:
    data = b'{"a": 1}\r\n\n   \n{"b": 2}\n{"c": 3}'
    spans = line_spans(data)
    assert [data[a:b] for a, b in spans] == [b'{"a": 1}\r', b'{"b": 2}', b'{"c": 3}']
    assert input_lines(data) == [data[a:b] for a, b in spans]
    assert line_spans(b"") == [] and line_spans(b"\n\n") == []


def test_chunks_cover_every_line_once_with_their_byte_ranges() -> None:
    data = b"".join(b'{"n": %d}\n' % n for n in range(10)) + b"\n"
    spans = line_spans(data)
    now = datetime.now(UTC)
    job = BatchJob("batch_" + "0" * 24, "t", "k", "pro", "f", "/v1/embeddings", "24h",
                   "validating", now, now, total=10)  # fmt: skip
    chunks = chunks_of(job, spans, 4)
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 8), (8, 10)]
    lines = [line for c in chunks for line in input_lines(data[c.offset : c.offset + c.length])]
    assert lines == input_lines(data)
    assert Chunk.from_message(chunks[1].to_message()) == chunks[1]


def test_ids_are_derived_so_a_repeat_is_the_same_line_and_the_same_file() -> None:
    assert line_request_id("batch_x", "a") == line_request_id("batch_x", "a")
    assert line_request_id("batch_x", "a") != line_request_id("batch_x", "b")
    assert line_request_id("batch_x", "a") != line_request_id("batch_y", "a")
    assert "#" not in line_request_id("batch_x", "a#b")  # the ledger refuses '#'
    assert derived_file_id("batch_x", "output") != derived_file_id("batch_x", "error")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"{nope", errors.MalformedRequest),
        (b"[1]", errors.InvalidInput),
        (b'{"method": "POST", "url": "/v1/embeddings", "body": {}}', errors.InvalidInput),
        (b'{"custom_id": "a", "method": "GET", "url": "/v1/embeddings", "body": {}}',
         errors.InvalidInput),
        (b'{"custom_id": "a", "method": "POST", "url": "/v1/usage", "body": {}}',
         errors.InvalidInput),
        (b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": "x"}',
         errors.InvalidInput),
    ],
)  # fmt: skip
def test_a_bad_line_is_an_api_error(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_line(raw)


def test_a_good_line_keeps_its_query() -> None:
    line = parse_line(
        b'{"custom_id": "i", "method": "post", "url": "/v1/image-classification?top_k=3",'
        b' "body": {"image": "AA=="}}'
    )
    assert (line.custom_id, line.path, dict(line.query)) == (
        "i",
        "/v1/image-classification",
        {"top_k": "3"},
    )
