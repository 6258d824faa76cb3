"""The GPU check fails (exit 1) when GPU answers stray from the CPU path, not only prints them."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from aimaas_testing.imports import load_module

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "gpu_check.py"


def _load() -> ModuleType:
    return load_module("aimaas_test_gpu_check", SCRIPT)


def test_parity_failures_names_each_broken_bound() -> None:
    check = _load()
    rows = [
        {"model": "emb@1.0.0", "min_cosine": 0.9999, "token_counts_equal": True},
        {"model": "img@1.0.0", "rows": 100, "top1_agree": 100, "max_abs_diff": 1e-5},
    ]
    assert check.parity_failures(rows, "off") == []
    broken = [
        {"model": "emb@1.0.0", "min_cosine": 0.95, "token_counts_equal": False},
        {"model": "img@1.0.0", "rows": 100, "top1_agree": 90},
        {"model": "vad@1.0.0", "rows": 10, "segments_equal": 5},
    ]
    failures = check.parity_failures(broken, "off")
    assert len(failures) == 4
    assert any("min cosine" in f for f in failures)
    assert any("top-1 90/100" in f for f in failures)
    assert any("segments 5/10" in f for f in failures)
    assert any("token counts" in f for f in failures)
    # fp16 is held to looser, but real, bounds.
    assert check.parity_failures([{"model": "e", "min_cosine": 0.995}], "force") == []
    assert check.parity_failures([{"model": "e", "min_cosine": 0.98}], "force")


def test_whisper_transcripts_are_scored_against_the_cpu_and_bounded() -> None:
    check = _load()
    acc: dict = {}
    want = {"text": "Ever tried. Ever failed. No matter.", "language": "en"}
    check.compare({"text": "ever tried, ever failed. No matter!"}, want, acc)
    assert acc == {"rows": 1, "transcript_wer": 0.0}  # normalised as the accuracy figures are
    check.compare({"text": "Ever tried. Never failed. No matter."}, want, acc)
    assert acc["transcript_wer"] == 1 / 6  # the worst recording counts
    failures = check.parity_failures([{"model": "whisper-base@1.0.0", **acc}], "off")
    assert failures == ["whisper-base@1.0.0: transcript WER 0.167 vs CPU"]
    zh: dict = {}
    check.compare(
        {"text": "甚至出現交易幾乎停滯的情況"},
        {"text": "甚至出现交易几乎停滞的情况", "language": "zh"},
        zh,
    )
    assert zh["transcript_wer"] == 0.0  # Traditional vs Simplified characters are the same words
