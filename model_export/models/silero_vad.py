"""silero-vad: the ONNX model shipped in the ``silero-vad`` wheel, verified and registered.

The package is not imported (its ``__init__`` sets torch to one thread for the whole process);
its files are located through the distribution's metadata instead. Parity compares the shipped
ONNX with the TorchScript model shipped beside it, window by window, on real speech
(``beckett.wav`` from ``useful-moonshine-onnx`` when installed, otherwise espeak-ng speech)
framed by silence; the gate also proves speech is found in the speech and not in the silence.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import (
    AccuracyReport,
    ModelManifest,
    Source,
    TensorSpec,
    VadPreprocessing,
    file_ref,
)
from aimaas.preprocess.audio import decode_wav, resample, speech_segments, vad_windows
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.models.keyword_spotter import espeak

PACKAGE = "silero-vad"
PREPROCESSING = VadPreprocessing()
SILENCE_S = 2.0
INPUTS = [
    TensorSpec(name="input", dtype="float32", shape=["batch", "samples"]),
    TensorSpec(name="state", dtype="float32", shape=[2, "batch", 128]),
    TensorSpec(name="sr", dtype="int64", shape=[]),
]
OUTPUTS = [
    TensorSpec(name="output", dtype="float32", shape=["batch", 1]),
    TensorSpec(name="stateN", dtype="float32", shape=[2, "batch", 128]),
]


def package_file(distribution: str, name: str) -> Path:
    """A file shipped in an installed distribution, found without importing it."""
    dist = metadata.distribution(distribution)
    for entry in dist.files or []:
        if entry.name == name:
            return Path(str(dist.locate_file(entry)))
    raise FileNotFoundError(f"{name} not found in {distribution}")


def speech_sample() -> tuple[np.ndarray, str]:
    """Real speech at 16 kHz and a description of it."""
    try:
        path = package_file("useful-moonshine-onnx", "beckett.wav")
        audio = decode_wav(path.read_bytes())
        described = "beckett.wav (10 s of human speech, useful-moonshine-onnx, MIT)"
    except (metadata.PackageNotFoundError, FileNotFoundError):
        sentence = "The quick brown fox jumps over the lazy dog while the band plays on."
        wav = espeak("-v", "en-us", "--stdout", sentence)
        audio = decode_wav(wav)
        described = "espeak-ng synthesised sentence (fallback: beckett.wav not installed)"
    return resample(audio.samples, audio.sample_rate, PREPROCESSING.sample_rate), described


def onnx_probabilities(path: Path, samples: np.ndarray, threads: int = 2) -> np.ndarray:
    """Per-window speech probabilities from the ONNX model, carrying its state."""
    sess = onnx_tools.session(path, threads)
    state = np.zeros((2, 1, 128), dtype=np.float32)
    sr = np.asarray(PREPROCESSING.sample_rate, dtype=np.int64)
    probs = []
    for window in vad_windows(samples, PREPROCESSING):
        out, state = sess.run(None, {"input": window[None, :], "state": state, "sr": sr})
        probs.append(float(out[0, 0]))
    return np.asarray(probs, dtype=np.float32)


def jit_probabilities(samples: np.ndarray) -> np.ndarray:
    """The same from the TorchScript model shipped in the package (the reference)."""
    import torch

    model = torch.jit.load(str(package_file(PACKAGE, "silero_vad.jit")), map_location="cpu")
    model.eval()
    model.reset_states()
    probs = []
    with torch.no_grad():
        for window in vad_windows(samples, PREPROCESSING):
            # The TorchScript wrapper prepends its own context: give it the window only.
            chunk = torch.from_numpy(window[PREPROCESSING.context_samples :].copy())[None, :]
            probs.append(float(model(chunk, PREPROCESSING.sample_rate)[0, 0]))
    return np.asarray(probs, dtype=np.float32)


class SileroVadExporter(ModelExporter):
    """Gate: ONNX vs TorchScript probabilities; speech found in speech, none in silence."""

    name = "silero-vad"
    tolerances: ClassVar[dict[str, float]] = {
        "max_prob_diff": 1e-3,
        "min_speech_recall": 0.6,
        "max_silence_false_alarm": 0.02,
        "min_segments": 1.0,
    }

    def config(self) -> dict[str, Any]:
        return {"tolerances": self.tolerances, "preprocessing": PREPROCESSING.model_dump()}

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        graph = out_dir / "model.onnx"
        shutil.copyfile(package_file(PACKAGE, "silero_vad.onnx"), graph)
        speech, described = speech_sample()
        rng = np.random.default_rng(ctx.seed)
        pad = int(SILENCE_S * PREPROCESSING.sample_rate)
        # Silence is a quiet noise floor, not digital zeros, as a real microphone gives.
        silence = (rng.standard_normal(pad) * 1e-4).astype(np.float32)
        audio = np.concatenate([silence, speech, silence])
        ctx.log("running the shipped ONNX and TorchScript models")
        probs = onnx_probabilities(graph, audio, ctx.threads)
        reference = jit_probabilities(audio)
        window = PREPROCESSING.window_samples
        in_speech = np.zeros(len(probs), dtype=bool)
        in_speech[pad // window : (pad + len(speech)) // window] = True
        # Speech windows: the loud part of the recording (pauses inside it are not speech).
        energy = np.asarray([np.sqrt(np.mean(w**2)) for w in vad_windows(audio, PREPROCESSING)])
        voiced = in_speech & (energy > 0.1 * np.percentile(energy[in_speech], 95))
        flagged = probs >= PREPROCESSING.threshold
        segments = speech_segments(probs, PREPROCESSING)
        metrics = {
            "max_prob_diff": float(np.max(np.abs(probs - reference))),
            "speech_recall": float(np.mean(flagged[voiced])),
            "silence_false_alarm": float(np.mean(flagged[~in_speech])),
            "segments": float(len(segments)),
            "speech_seconds": float(sum(b - a for a, b in segments)),
            "first_segment_start_s": segments[0][0] if segments else -1.0,
            "last_segment_end_s": segments[-1][1] if segments else -1.0,
        }
        ctx.log(f"segments: {[(round(a, 2), round(b, 2)) for a, b in segments]}")
        parity = gates.enforce(
            self.name,
            metrics,
            self.tolerances,
            reference=f"silero_vad.jit (TorchScript shipped in {PACKAGE})",
            samples=len(probs),
        )
        dataset = f"{described}, framed by {SILENCE_S:g} s of silence on each side"
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="voice-activity-detection",
            description=(
                "Silero VAD v6: speech probability per 32 ms window of 16 kHz audio, with a "
                "recurrent state carried between windows."
            ),
            artifact=file_ref(graph),
            inputs=INPUTS,
            outputs=OUTPUTS,
            preprocessing=PREPROCESSING,
            billing_unit="audio_second",
            max_batch_size=1,
            source=Source(
                package=PACKAGE,
                package_version=metadata.version(PACKAGE),
                licence="MIT",
                origin="silero_vad/data/silero_vad.onnx shipped in the silero-vad wheel (snakers4)",
            ),
            parity=parity,
            accuracy=[
                AccuracyReport(
                    dataset=dataset,
                    metric="speech_window_recall",
                    value=metrics["speech_recall"],
                    samples=int(voiced.sum()),
                ),
                AccuracyReport(
                    dataset=dataset,
                    metric="silence_window_false_alarm_rate",
                    value=metrics["silence_false_alarm"],
                    samples=int((~in_speech).sum()),
                ),
            ],
            exporter=onnx_tools.exporter_info("shipped", opset=16),
            created_at=utc_now(),
        )
