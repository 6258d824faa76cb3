"""Scoring speech recognition: text normalisation and word/character error rates (jiwer).

Both sides are normalised the same way before scoring (case, punctuation, spacing, and for
Chinese the script and digits), so a score counts wrong words, not formatting.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Any run of characters that is neither a letter, a digit, an apostrophe inside a word nor a
# CJK ideograph separates words.
_SEPARATORS = re.compile(r"[^\w']+|(?<!\w)'|'(?!\w)|_")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CHINESE_DIGITS = str.maketrans("0123456789", "〇一二三四五六七八九")


def normalise(text: str) -> str:
    """Lower case, NFKC, punctuation to spaces, single spaces (English and other spaced
    scripts)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_SEPARATORS.sub(" ", text).split())


def normalise_chinese(text: str) -> str:
    """Simplified characters (OpenCC ``t2s``), digits read digit by digit as characters
    (``12`` -> ``一二``, as AISHELL transcripts write them), no punctuation or spaces."""
    import opencc

    text = opencc.OpenCC("t2s").convert(unicodedata.normalize("NFKC", text))
    return "".join(normalise(text.translate(_CHINESE_DIGITS)).split())


@dataclass(frozen=True)
class Score:
    """Error rates of one model on one set of recordings."""

    wer: float
    cer: float
    samples: int


def score(references: Sequence[str], hypotheses: Sequence[str], *, chinese: bool = False) -> Score:
    """WER and CER of ``hypotheses`` against ``references`` after normalisation.

    For Chinese (no spaces between words) WER is computed over characters too, so both
    numbers are the character error rate.
    """
    import jiwer

    norm = normalise_chinese if chinese else normalise
    refs = [norm(r) for r in references]
    hyps = [norm(h) for h in hypotheses]
    if chinese:
        refs, hyps = [" ".join(r) for r in refs], [" ".join(h) for h in hyps]
    # jiwer refuses empty references; an empty hypothesis is simply all deletions.
    hyps = [h if h else "" for h in hyps]
    cer = float(jiwer.cer(refs, hyps))
    wer = cer if chinese else float(jiwer.wer(refs, hyps))
    return Score(wer=wer, cer=cer, samples=len(refs))


def is_chinese(text: str) -> bool:
    """Whether ``text`` is mostly CJK ideographs."""
    letters = [c for c in text if not c.isspace()]
    return bool(letters) and sum(bool(_CJK.match(c)) for c in letters) > len(letters) / 2
