"""Text preprocessing: a ``tokenizers`` tokenizer loaded from a model's ``tokenizer.json``.

The shipped ``tokenizer.json`` of all-MiniLM-L6-v2 pads and truncates to 128 tokens; the model
is meant for 256. :class:`TextEncoder` therefore always resets padding and truncation to the
manifest's ``max_length`` and pads a batch only to its longest member (dynamic sequence axis).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from aimaas.errors import InvalidInput


def has_visible_text(text: str) -> bool:
    """Whether ``text`` holds a character that is neither a separator (spaces) nor "other"
    (controls, NUL, zero-width and format characters such as the BOM, private or unassigned
    code points): texts of only those all embed to one identical vector, so they are refused
    like blank ones rather than billed."""
    return any(unicodedata.category(char)[0] not in "CZ" for char in text)


@dataclass(frozen=True)
class EncodedBatch:
    """A tokenised batch, ready for an ONNX text model.

    Attributes
    ----------
    input_ids, attention_mask, token_type_ids
        int64 arrays of shape ``[batch, sequence]``.
    token_counts
        Real (non-padding) tokens per text, special tokens included; what billing counts.
    truncated
        Per text, whether it was cut to ``max_length``.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    token_counts: list[int]
    truncated: list[bool]

    def feeds(self, input_names: Sequence[str]) -> dict[str, np.ndarray]:
        """The subset of arrays a graph with ``input_names`` expects, keyed by name."""
        arrays = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }
        return {name: arrays[name] for name in input_names}

    @property
    def total_tokens(self) -> int:
        return int(sum(self.token_counts))


class TextEncoder:
    """Encode batches of text with a ``tokenizer.json``.

    Parameters
    ----------
    tokenizer_file
        Path of a Hugging Face ``tokenizers`` JSON file.
    max_length
        Longest token sequence (special tokens included); longer texts are truncated.
    """

    def __init__(self, tokenizer_file: Path | str, max_length: int) -> None:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # The file's own padding/truncation settings are not the model's; reset both.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(max_length=max_length)
        # BERT WordPiece vocabularies pad with [PAD], SentencePiece ones (XLM-R, E5) with <pad>.
        pad_token = next(
            (t for t in ("[PAD]", "<pad>") if tokenizer.token_to_id(t) is not None), "[PAD]"
        )
        pad_id = tokenizer.token_to_id(pad_token)
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
        self._tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, texts: Sequence[str], prefix: str = "") -> EncodedBatch:
        """Tokenise ``texts`` into padded int64 arrays.

        Parameters
        ----------
        texts
            A non-empty sequence of non-empty strings.
        prefix
            Prepended to every text after validation (E5's ``"query: "``), so a blank text is
            refused even though the prefixed one would not be blank.

        Returns
        -------
        EncodedBatch
            Arrays padded to the longest text of the batch.

        Raises
        ------
        InvalidInput
            For an empty batch, a non-string or a blank text.
        """
        if not texts:
            raise InvalidInput("at least one text is required")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput(f"text {index} is not a string")
            if not has_visible_text(text):
                raise InvalidInput(
                    f"text {index} is empty (only spaces, control or invisible characters)"
                )
        encodings = self._tokenizer.encode_batch([prefix + text for text in texts])
        input_ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        attention_mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        token_type_ids = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return EncodedBatch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            token_counts=[int(c) for c in attention_mask.sum(axis=1)],
            truncated=[bool(e.overflowing) for e in encodings],
        )

    def count_tokens(self, texts: Sequence[str], prefix: str = "") -> list[int]:
        """Tokens per text after truncation (prefix and special tokens included)."""
        return self.encode(texts, prefix).token_counts
