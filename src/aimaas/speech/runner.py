"""The speech runner: decode, split by voice activity, transcribe each piece with Whisper.

faster-whisper runs the CTranslate2 model (int8 on CPU, float16 on CUDA). On the GPU server the
pieces go through faster-whisper's ``BatchedInferencePipeline`` as one batch; on CPU they are
decoded one after the other, each checked against the request deadline first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aimaas import deadline, errors
from aimaas.inference import wire
from aimaas.inference.runners import ModelRunner, create_session, vad_probabilities
from aimaas.manifest import ModelManifest, SpeechPreprocessing
from aimaas.speech.decode import decode_audio
from aimaas.speech.split import speech_pieces

logger = logging.getLogger("aimaas.speech")
#: OpenAI's ``temperature=0``: start greedy and raise the temperature while a piece's output
#: looks like a failure (compression ratio, log probability), Whisper's own fallback.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
BATCH_SIZE = 8


class SpeechRunner(ModelRunner):
    """Whisper on one recording per request (see :class:`aimaas.inference.wire.
    TranscriptionRequest`)."""

    task = "automatic-speech-recognition"

    def __init__(
        self, manifest: ModelManifest, folder: Path, model: Any, vad: Any, *, batched: bool
    ) -> None:
        # Not ModelRunner.__init__: there is no ONNX Runtime session with graph inputs here.
        self.manifest = manifest
        self.folder = folder
        self.session = model
        self.model = model
        self.vad = vad
        self.device, self.compute_type = "cpu", "int8"  # set by the loader
        self.pipeline = None
        if batched:
            from faster_whisper import BatchedInferencePipeline

            self.pipeline = BatchedInferencePipeline(model)
        params = manifest.preprocessing
        assert isinstance(params, SpeechPreprocessing)
        self.params = params

    def check(self, request: wire.TranscriptionRequest) -> None:
        """Refuse options the model cannot honour (422) before decoding anything."""
        p = self.params
        if request.language is not None and request.language not in p.languages:
            shown = ", ".join(p.languages[:12]) + ("..." if len(p.languages) > 12 else "")
            raise errors.InvalidInput(
                f"{self.manifest.name} does not transcribe language {request.language!r} "
                f"(ISO-639-1); it knows {shown}. Omit language to detect it."
            )
        if request.translate and not p.translate:
            raise errors.InvalidInput(
                f"{self.manifest.name} does not translate; use a multilingual model."
            )

    def run(self, request: wire.TranscriptionRequest) -> wire.TranscriptionResult:
        self.check(request)
        p = self.params
        audio = decode_audio(
            request.audio[0],
            sample_rate=p.sample_rate,
            max_seconds=p.max_seconds,
            min_seconds=p.min_seconds,
        )
        probs = vad_probabilities(self.vad, audio.samples, p.vad)
        pieces = speech_pieces(probs, len(audio.samples), p)
        options = {
            "language": request.language or (p.languages[0] if len(p.languages) == 1 else None),
            "task": "translate" if request.translate else "transcribe",
            "initial_prompt": request.prompt or None,
            "temperature": list(FALLBACK_TEMPERATURES)
            if request.temperature == 0
            else [request.temperature],
            "beam_size": p.beam_size,
            "word_timestamps": request.word_timestamps,
        }
        if self.pipeline is not None and pieces:
            segments, language = self._batched(audio.samples, pieces, options)
        else:
            segments, language = self._sequential(audio.samples, pieces, options)
        language = language or options["language"] or p.languages[0]
        convert = _converter(language, request.traditional_chinese)
        out_segments, words = [], []
        for index, segment in enumerate(segments):
            out_segments.append(
                wire.TranscriptSegment(
                    id=index,
                    seek=int(segment.seek),
                    start=round(float(segment.start), 3),
                    end=round(float(segment.end), 3),
                    text=convert(segment.text),
                    tokens=[int(t) for t in segment.tokens],
                    temperature=float(segment.temperature or 0.0),
                    avg_logprob=float(segment.avg_logprob),
                    compression_ratio=float(segment.compression_ratio),
                    no_speech_prob=float(segment.no_speech_prob),
                )
            )
            for word in segment.words or []:
                words.append(
                    wire.Word(
                        word=convert(word.word.strip()),
                        start=round(float(word.start), 3),
                        end=round(float(word.end), 3),
                    )
                )
        return wire.TranscriptionResult(
            text=_join(s.text for s in out_segments),
            language=language,
            segments=out_segments,
            words=words if request.word_timestamps else None,
            durations_s=[round(audio.duration_s, 6)],
        )

    def _sequential(
        self, samples: np.ndarray, pieces: Sequence[tuple[int, int]], options: dict[str, Any]
    ) -> tuple[list[Any], str | None]:
        rate = self.params.sample_rate
        segments: list[Any] = []
        language = options["language"]
        for start, end in pieces:
            deadline.bounded(1.0)  # raises (504, unbilled) once the request has run out of time
            found, info = self.model.transcribe(
                samples[start:end],
                **{**options, "language": language},
                vad_filter=False,  # the pieces are speech already
                condition_on_previous_text=False,
            )
            for segment in found:
                _shift(segment, start / rate, end / rate)
                segments.append(segment)
            language = language or info.language  # one language for the whole recording
        return segments, language

    def _batched(
        self, samples: np.ndarray, pieces: Sequence[tuple[int, int]], options: dict[str, Any]
    ) -> tuple[list[Any], str | None]:
        assert self.pipeline is not None
        rate = self.params.sample_rate
        clips = [{"start": start / rate, "end": end / rate} for start, end in pieces]
        found, info = self.pipeline.transcribe(
            samples, **options, clip_timestamps=clips, batch_size=BATCH_SIZE
        )
        segments = list(found)  # already on the recording's clock
        for segment in segments:
            _shift(segment, 0.0, len(samples) / rate)
        return segments, options["language"] or info.language


def _shift(segment: Any, offset: float, limit: float) -> None:
    """Move a piece's segment onto the recording's clock (faster-whisper's Segment and Word are
    dataclasses), within ``[offset, limit]``: Whisper's last timestamp of a piece can run past
    the piece's end (it predicts times on a 30 s scale)."""
    segment.start = min(segment.start + offset, limit)
    segment.end = min(segment.end + offset, limit)
    for word in segment.words or []:
        word.start = min(word.start + offset, limit)
        word.end = min(word.end + offset, limit)


def _join(texts: Any) -> str:
    return "".join(texts).strip()


def _converter(language: str, traditional: bool) -> Any:
    """Chinese in Simplified characters (OpenCC ``t2s``) unless Traditional is asked for."""
    if language != "zh" or traditional:
        return lambda text: text
    import opencc

    return opencc.OpenCC("t2s").convert


def load_speech_runner(
    manifest: ModelManifest,
    folder: Path,
    *,
    threads: int = 0,
    providers: Sequence[str] | None = None,
) -> SpeechRunner:
    """Load a CTranslate2 Whisper model (:data:`aimaas.inference.runners.RUNTIMES`).

    CUDA (``CUDAExecutionProvider`` among ``providers``, as the GPU server passes) runs float16
    with the batched pipeline, and falls back to CPU int8 when CTranslate2 sees no CUDA device
    or cannot load the model there.

    Raises
    ------
    aimaas.errors.BackendUnavailable
        CTranslate2 cannot load the model files.
    """
    import ctranslate2

    params = manifest.preprocessing
    assert isinstance(params, SpeechPreprocessing)
    wants_cuda = "CUDAExecutionProvider" in (providers or ())
    if wants_cuda and ctranslate2.get_cuda_device_count() > 0:
        try:
            return _load(manifest, folder, params, threads, "cuda", params.gpu_compute_type)
        except errors.BackendUnavailable as exc:  # e.g. CUDA libraries missing or too old
            logger.warning("CUDA load of %s failed (%s): CPU", manifest.model_id, exc.__cause__)
    elif wants_cuda:
        logger.warning("no CUDA device for %s: running on CPU", manifest.model_id)
    return _load(manifest, folder, params, threads, "cpu", params.cpu_compute_type)


def _load(
    manifest: ModelManifest,
    folder: Path,
    params: SpeechPreprocessing,
    threads: int,
    device: str,
    compute_type: str,
) -> SpeechRunner:
    from faster_whisper import WhisperModel

    try:
        model = WhisperModel(
            str(folder), device=device, compute_type=compute_type, cpu_threads=threads
        )
        vad = create_session(folder / params.vad_file, threads=1)
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for unusable files
        raise errors.BackendUnavailable(
            f"Model {manifest.model_id} could not be loaded.", code="model_load_error"
        ) from exc
    runner = SpeechRunner(manifest, folder, model, vad, batched=device == "cuda")
    runner.device, runner.compute_type = device, compute_type
    return runner
