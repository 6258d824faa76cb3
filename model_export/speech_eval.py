"""Scoring speech recognition on real recordings: the sets, normalisation, WER/CER (jiwer).

Both sides are normalised the same way before scoring (case, punctuation, spacing, numbers
written as words, a few abbreviations; for Chinese the script and digits), so a score counts
wrong words, not formatting.

The English recordings come from Debian packages fetched with ``apt-get download`` (no install,
``dpkg -x`` into the build cache): LibriVox and ``cards`` clips with their transcripts from
``pocketsphinx-testdata``, and a fixed sample of the 8 kHz telephone prompts of
``asterisk-core-sounds-en-wav`` with their texts from ``asterisk-core-sounds-en``. None of them was
used to choose any setting. Synthetic espeak-ng speech is a set of its own, labelled so.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Any run of characters that is neither a letter, a digit, an apostrophe inside a word nor a
# CJK ideograph separates words.
_SEPARATORS = re.compile(r"[^\w']+|(?<!\w)'|'(?!\w)|_")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CHINESE_DIGITS = str.maketrans("0123456789", "〇一二三四五六七八九")


_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}


def number_words(number: int) -> str:
    """``number`` (0 to 999,999) in English words, without "and"."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    thousands, rest = divmod(number, 1000)
    return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")


def normalise(text: str) -> str:
    """Lower case, NFKC, punctuation to spaces, numbers as words, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().replace("%", " percent")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    words = []
    for word in _SEPARATORS.sub(" ", text).split():
        if word.isdigit() and len(word) <= 6:
            words.append(number_words(int(word)))
        else:
            words.append(_ABBREVIATIONS.get(word, word))
    return " ".join(words)


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


# ---- the evaluation sets ------------------------------------------------------------------------

#: Debian packages of the English sets, pinned (bookworm).
DEBS = {
    "pocketsphinx-testdata": "0.8+5prealpha+1-15",
    "asterisk-core-sounds-en-wav": "1.6.1-1",
    "asterisk-core-sounds-en": "1.6.1-1",
}
#: Every ninth prompt (sorted by name) of the top-level Allison prompts: 40 recordings.
ASTERISK_STRIDE = 9
ASTERISK_COUNT = 40
#: Harvard sentences (IEEE 1969, public domain), for the synthetic espeak-ng set.
HARVARD = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
)
ESPEAK_VOICES = ("en-us", "en-gb", "en-us+f3")


@dataclass(frozen=True)
class EvalSet:
    """Recordings with their reference transcripts."""

    name: str
    description: str
    clips: list[tuple[bytes, str]]
    language: str = "en"
    synthetic: bool = False


def fetch_debs(cache_dir: Path) -> Path:
    """The pinned Debian packages of :data:`DEBS`, unpacked under ``cache_dir`` (once)."""
    root = cache_dir / "speech-eval"
    done = root / "unpacked"
    if (done / ".complete").is_file():
        return done
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(done, ignore_errors=True)
    wanted = [f"{package}={version}" for package, version in DEBS.items()]
    download = ["apt-get", "download", "-qq", *wanted]
    # Fixed package names, no shell. A fresh machine may have no package lists yet.
    if subprocess.run(download, cwd=root, capture_output=True).returncode != 0:  # noqa: S603
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)  # noqa: S607
        subprocess.run(download, cwd=root, check=True, capture_output=True)  # noqa: S603
    for deb in sorted(root.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(done)], check=True)  # noqa: S603, S607
    (done / ".complete").touch()
    return done


def pocketsphinx_sets(root: Path) -> list[EvalSet]:
    """LibriVox (5 read sentences) and ``cards`` (5 spoken card names) with transcripts."""
    data = root / "usr/share/pocketsphinx/test/data"
    sets = []
    for name, folder, listing in (
        ("librivox", "librivox", "transcription"),
        ("cards", "cards", "cards.transcription"),
    ):
        clips = []
        for line in (data / folder / listing).read_text().splitlines():
            match = re.match(r"\s*<s>(.*)</s>\s*\((\S+)\)", line)
            if match:
                text, stem = match.group(1).strip(), Path(match.group(2)).name
                clips.append(((data / folder / f"{stem}.wav").read_bytes(), text))
        sets.append(
            EvalSet(
                name=name,
                description=f"{name} clips of pocketsphinx-testdata {DEBS['pocketsphinx-testdata']}"
                " (Debian; CMU Sphinx test data, BSD; LibriVox readings are public domain)",
                clips=clips,
            )
        )
    return sets


def asterisk_set(root: Path) -> EvalSet:
    """A fixed sample of Asterisk's 8 kHz telephone prompts (Allison Smith, CC-BY-SA-3.0)."""
    texts: dict[str, str] = {}
    listing = root / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    for line in gzip.decompress(listing.read_bytes()).decode("utf-8", "replace").splitlines():
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";") and "/" not in name:
            texts[name.strip()] = text.strip()
    folder = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    candidates = [p for p in sorted(folder.glob("*.wav")) if texts.get(p.stem)]
    picked = candidates[::ASTERISK_STRIDE][:ASTERISK_COUNT]
    return EvalSet(
        name="asterisk",
        description=f"every {ASTERISK_STRIDE}th top-level prompt of asterisk-core-sounds-en-wav "
        f"{DEBS['asterisk-core-sounds-en-wav']} (8 kHz telephone prompts, CC-BY-SA-3.0)",
        clips=[(p.read_bytes(), texts[p.stem]) for p in picked],
    )


def espeak_set(synthesise: Callable[..., bytes]) -> EvalSet:
    """Harvard sentences spoken by espeak-ng in :data:`ESPEAK_VOICES` (synthetic)."""
    clips = [
        (synthesise("-v", voice, "--stdout", sentence), sentence)
        for index, sentence in enumerate(HARVARD)
        for voice in (ESPEAK_VOICES[index % len(ESPEAK_VOICES)],)
    ]
    return EvalSet(
        name="espeak-ng-synthetic",
        description="SYNTHETIC: 20 Harvard sentences by espeak-ng (voices en-us, en-gb, en-us+f3)",
        clips=clips,
        synthetic=True,
    )


#: The two AISHELL-1 test utterances shipped in s3tokenizer 0.3.0 and their corpus transcripts.
AISHELL = {
    "BAC009S0764W0121.wav": "甚至出现交易几乎停滞的情况",
    "BAC009S0764W0122.wav": "一二线城市虽然也处于调整中",
}


def aishell_set() -> EvalSet:
    """Mandarin: two AISHELL-1 test utterances (Apache-2.0) from ``s3tokenizer``'s assets."""
    dist = metadata.distribution("s3tokenizer")
    files = {entry.name: Path(str(dist.locate_file(entry))) for entry in dist.files or []}
    return EvalSet(
        name="aishell",
        description="two AISHELL-1 test utterances shipped in s3tokenizer 0.3.0 (Mandarin, "
        "Apache-2.0); CER over Simplified characters",
        clips=[(files[name].read_bytes(), text) for name, text in AISHELL.items()],
        language="zh",
    )


def real_english_sets(cache_dir: Path) -> list[EvalSet]:
    """Every English set of real speech (see the module docstring)."""
    root = fetch_debs(cache_dir)
    return [*pocketsphinx_sets(root), asterisk_set(root)]
