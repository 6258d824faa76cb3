"""Decoding uploads to 16 kHz mono float32 with PyAV, under hard limits.

Only the containers customers send are opened (WAV, MP3, FLAC, OGG/Opus/Vorbis, MP4/M4A, WebM/
Matroska, ADTS AAC), recognised by their first bytes and handed to that one demuxer: FFmpeg's
probing would also open playlists and image sequences, which can name other files. Nothing a
header declares is trusted: samples are counted as they are decoded and decoding stops at the
limit, so a header that promises ten hours and a small file that decodes to hours (a "WAV
bomb", or silence compressed into a FLAC) cost no more than the limit itself.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass

import numpy as np

from aimaas import errors

#: What the error messages list as accepted.
FORMATS = "WAV, MP3, FLAC, OGG (Opus, Vorbis), M4A/MP4 (AAC), WebM"


@dataclass(frozen=True)
class Decoded:
    """Decoded audio: mono float32 samples at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class TooLong(errors.PayloadTooLarge):
    """The recording is longer than the model answers synchronously (413)."""

    code = "audio_too_long"


def sniff(data: bytes) -> str | None:
    """The FFmpeg demuxer for ``data``'s container, from its magic bytes (None: not audio
    this service accepts)."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # WebM is Matroska
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # Frame sync: layer bits 00 are ADTS AAC, anything else MPEG audio (MP3).
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    return None


def decode_audio(
    data: bytes, *, sample_rate: int = 16000, max_seconds: float, min_seconds: float = 0.1
) -> Decoded:
    """Decode an uploaded recording to mono float32 at ``sample_rate``.

    Parameters
    ----------
    data
        The file as uploaded.
    sample_rate
        Output rate (Whisper and silero-vad: 16 kHz).
    max_seconds
        Longest accepted recording; counted on decoded samples, never on headers.
    min_seconds
        Shortest accepted recording.

    Raises
    ------
    TooLong
        More than ``max_seconds`` of audio (413).
    aimaas.errors.InvalidInput
        Empty, not an accepted container, no audio stream, undecodable or too short (422).
    """
    import av

    if not data:
        raise errors.InvalidInput("The audio file is empty.")
    demuxer = sniff(data)
    if demuxer is None:
        raise errors.InvalidInput(f"The file is not audio in an accepted format ({FORMATS}).")
    limit = int(max_seconds * sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="ignore") as box:
            if not box.streams.audio:
                raise errors.InvalidInput("The file has no audio stream.")
            stream = box.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            frames = (f for packet in box.demux(stream) for f in packet.decode())
            # Lazy: decoding stops as soon as the limit is passed. None flushes the resampler.
            for frame in itertools.chain(frames, [None]):
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    total += samples.size
                    if total > limit:
                        raise TooLong(_too_long(max_seconds))
                    chunks.append(samples)
    except errors.ApiError:
        raise
    except (av.FFmpegError, ValueError, EOFError, OSError) as exc:
        raise errors.InvalidInput(
            f"The audio could not be decoded ({demuxer}: corrupt or truncated file)."
        ) from exc
    if total < max(1, int(min_seconds * sample_rate)):
        raise errors.InvalidInput(
            f"The recording holds {total / sample_rate:.3f} s of audio; "
            f"send at least {min_seconds:g} s."
        )
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    return Decoded(np.nan_to_num(samples, copy=False), sample_rate)


def _too_long(max_seconds: float) -> str:
    return (
        f"The recording is longer than {max_seconds:g} s, the longest answered synchronously; "
        f"split it into pieces of at most {max_seconds:g} s and send each."
    )
