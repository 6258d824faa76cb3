"""Long audio in pieces: silero-vad's speech segments grouped into pieces of at most one Whisper
window, so silence is never decoded and every piece fits the model's 30 s input."""

from __future__ import annotations

import numpy as np

from aimaas.manifest import SpeechPreprocessing
from aimaas.preprocess.audio import speech_segments

#: Audio kept on each side of a speech segment: silero-vad's boundaries are 32 ms windows and
#: Whisper loses the first and last phonemes when they are cut exactly.
PAD_S = 0.2


def speech_pieces(
    probabilities: np.ndarray, samples: int, params: SpeechPreprocessing
) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges to transcribe, in order, none longer than one window.

    Parameters
    ----------
    probabilities
        silero-vad's speech probability per window (see
        :func:`aimaas.inference.runners.vad_probabilities`).
    samples
        Length of the recording in samples.
    params
        The speech model's preprocessing (rate, window, VAD settings).

    Notes
    -----
    Adjacent segments are merged while the piece they make stays within the window; a single
    segment longer than the window (speech without a pause) is cut into window-long pieces.
    """
    rate = params.sample_rate
    window = int(params.window_seconds * rate)
    pad = int(PAD_S * rate)
    pieces: list[tuple[int, int]] = []
    for start_s, end_s in speech_segments(probabilities, params.vad):
        start = max(0, int(start_s * rate) - pad)
        end = min(samples, int(end_s * rate) + pad)
        if pieces and end - pieces[-1][0] <= window:
            pieces[-1] = (pieces[-1][0], end)  # also absorbs overlapping padding
            continue
        if pieces and start < pieces[-1][1]:
            start = pieces[-1][1]  # never transcribe the same audio twice
        while end - start > window:
            pieces.append((start, start + window))
            start += window
        if end > start:
            pieces.append((start, end))
    return pieces
