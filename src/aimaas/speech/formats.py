"""OpenAI's subtitle formats of a transcript: SubRip (``srt``) and WebVTT (``vtt``)."""

from __future__ import annotations

from collections.abc import Sequence

from aimaas.inference.wire import TranscriptSegment


def timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<separator>mmm`` (``,`` for SubRip, ``.`` for WebVTT)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: Sequence[TranscriptSegment]) -> str:
    """SubRip cues, numbered from 1, each followed by a blank line."""
    return "".join(
        f"{index}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n\n"
        for index, s in enumerate(segments, start=1)
    )


def vtt(segments: Sequence[TranscriptSegment]) -> str:
    """A WebVTT document: the ``WEBVTT`` header, then one cue per segment."""
    cues = "".join(
        f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text.strip()}\n\n"
        for s in segments
    )
    return "WEBVTT\n\n" + cues
