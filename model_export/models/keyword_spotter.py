"""keyword-spotter: the ten Speech Commands words, trained here on espeak-ng speech.

Data: Debian's ``espeak-ng`` synthesises each word with many voice variants (accent x timbre,
random speed and pitch). Twenty voices (accent+timbre pairs) are held out for evaluation and
never seen in training. Training clips get light augmentation: random placement in the
one-second window, gain, and background noise. Two extra labels make the model usable on real
input: ``_silence`` (noise only) and ``_unknown`` (other Speech Commands words).

Features: 40 log-mel bands x 98 frames from :mod:`aimaas.preprocess.audio`, the same code the
server runs. Model: two 1-D convolutions over time, a GRU, a linear head. The time axis is
dynamic, so the gate compares ONNX with PyTorch at several clip lengths and batch sizes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import AccuracyReport, AudioPreprocessing, ModelManifest, Source, file_ref
from aimaas.preprocess.audio import decode_wav, fit_clip, log_mel, resample
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")
LABELS = (*WORDS, "_silence", "_unknown")
ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# espeak-ng voice variants that are not human-like speech are left out.
_EXCLUDED_TIMBRES = ("robo", "robot", "demonic", "announcer", "fast", "whisper")
FEATURES = AudioPreprocessing()
TRAIN_VOICES = 120
EVAL_VOICES = 20
AUGMENT_COPIES = 3
EPOCHS = 10
BATCH = 64
HIDDEN = 64
MIN_ACCURACY = 0.95


def espeak(*args: str) -> bytes:
    """Run espeak-ng (an absolute path from ``PATH``) and return its standard output."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise FileNotFoundError("espeak-ng is not installed: run `make system-deps`")
    # Arguments are this module's constants, never user input.
    return subprocess.run(  # noqa: S603
        [binary, *args], capture_output=True, check=True, timeout=60
    ).stdout


def espeak_version() -> str:
    return espeak("--version").decode().strip()


def timbres() -> list[str]:
    """espeak-ng's voice variants (timbres), minus the non-human ones."""
    out = espeak("--voices=variant").decode()
    names = sorted(
        {line.split()[4].split("/")[-1] for line in out.splitlines()[1:] if line.split()}
    )
    return [n for n in names if not any(x in n.lower() for x in _EXCLUDED_TIMBRES)]


def synthesise(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """One word from espeak-ng as 16 kHz float32, leading and trailing silence trimmed."""
    wav = espeak("-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word)
    audio = decode_wav(wav)
    samples = resample(audio.samples, audio.sample_rate, FEATURES.sample_rate)
    loud = np.flatnonzero(np.abs(samples) > 0.02 * max(float(np.abs(samples).max()), 1e-6))
    if len(loud) == 0:
        return samples[: FEATURES.clip_samples]
    return samples[loud[0] : loud[-1] + 1][: FEATURES.clip_samples]


def voice_split(seed: int) -> tuple[list[str], list[str]]:
    """Disjoint training and evaluation voices (``accent+timbre``), chosen by ``seed``."""
    voices = [f"{accent}+{timbre}" for accent in ACCENTS for timbre in timbres()]
    order = np.random.default_rng(seed).permutation(len(voices))
    chosen = [voices[i] for i in order[: TRAIN_VOICES + EVAL_VOICES]]
    return chosen[:TRAIN_VOICES], chosen[TRAIN_VOICES:]


def _jobs(voices: list[str], seed: int) -> list[tuple[str, str, int, int, int]]:
    """(word, voice, speed, pitch, label index): every keyword and two unknown words a voice."""
    rng = np.random.default_rng(seed)
    jobs = []
    for voice in voices:
        words = [*WORDS, *rng.choice(UNKNOWN_WORDS, size=2, replace=False)]
        for word in words:
            label = LABELS.index(word) if word in WORDS else LABELS.index("_unknown")
            jobs.append(
                (str(word), voice, int(rng.integers(120, 201)), int(rng.integers(25, 76)), label)
            )
    return jobs


def synthesised_set(ctx: BuildContext, name: str, voices: list[str], seed: int) -> dict[str, Any]:
    """Synthesise (or load from ``build/cache``) the words of ``voices``.

    Returns a dict with ``clips`` (list of float32 arrays), ``labels`` and ``voices``.
    """
    jobs = _jobs(voices, seed)
    # "int16-clipped" names the cache format (earlier caches wrapped around on overflow).
    cache_id = [jobs, espeak_version(), "int16-clipped"]
    key = hashlib.sha256(json.dumps(cache_id).encode()).hexdigest()[:16]
    path = ctx.cache_dir / "keyword-spotter" / f"{name}-{key}.npz"
    if not path.is_file():
        ctx.log(f"synthesising {len(jobs)} {name} words with espeak-ng")
        with ThreadPoolExecutor(max_workers=max(2, ctx.threads)) as pool:
            clips = list(pool.map(lambda job: synthesise(*job[:4]), jobs))
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = np.concatenate([np.round(c * 32767.0) for c in clips])
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            audio=np.clip(audio, -32768, 32767).astype(np.int16),
            lengths=np.asarray([len(c) for c in clips]),
            labels=np.asarray([job[4] for job in jobs], dtype=np.int64),
            voices=np.asarray([job[1] for job in jobs]),
        )
        tmp.rename(path)
    # Always train from the stored 16-bit audio, so a cold and a cached build are identical.
    data = np.load(path, allow_pickle=False)
    clips = np.split(data["audio"].astype(np.float32) / 32767.0, np.cumsum(data["lengths"])[:-1])
    return {"clips": clips, "labels": data["labels"], "voices": list(data["voices"])}


def _place(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put a word at a random offset in a one-second window."""
    out = np.zeros(FEATURES.clip_samples, dtype=np.float32)
    start = int(rng.integers(0, FEATURES.clip_samples - len(clip) + 1))
    out[start : start + len(clip)] = clip
    return out


def _noise(rng: np.random.Generator, level: float) -> np.ndarray:
    white = rng.standard_normal(FEATURES.clip_samples).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish noise: more low-frequency energy, like rooms and fans
        white = np.cumsum(white)
        white -= np.linspace(white[0], white[-1], len(white), dtype=np.float32)
        white /= max(float(np.std(white)), 1e-6)
    return white * np.float32(level)


def training_features(synth: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Augmented log-mel features ``[n, 40, 98]`` and labels, silence clips included."""
    rng = np.random.default_rng(seed)
    audio, labels = [], []
    for clip, label in zip(synth["clips"], synth["labels"], strict=True):
        peak = max(float(np.abs(clip).max()), 1e-6)
        for _ in range(AUGMENT_COPIES):
            placed = _place(clip, rng) * np.float32(rng.uniform(0.2, 1.0) / peak)
            rms = float(np.sqrt(np.mean(placed**2)))
            snr_db = rng.uniform(10.0, 40.0)
            audio.append(placed + _noise(rng, rms / 10 ** (snr_db / 20.0)))
            labels.append(int(label))
    silence = LABELS.index("_silence")
    for _ in range(len(synth["clips"]) * AUGMENT_COPIES // len(LABELS)):
        audio.append(_noise(rng, float(10 ** rng.uniform(-4.5, -1.0))))
        labels.append(silence)
    feats = np.concatenate(
        [log_mel(np.stack(audio[i : i + 256]), FEATURES) for i in range(0, len(audio), 256)]
    )
    return feats, np.asarray(labels, dtype=np.int64)


def evaluation_features(synth: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out features as the server computes them (``fit_clip`` centres the word)."""
    rng = np.random.default_rng(seed + 1)
    feats = [log_mel(fit_clip(c, FEATURES.clip_samples), FEATURES) for c in synth["clips"]]
    labels = list(synth["labels"])
    for _ in range(EVAL_VOICES):
        feats.append(log_mel(_noise(rng, float(10 ** rng.uniform(-4.5, -1.5))), FEATURES))
        labels.append(LABELS.index("_silence"))
    return np.stack(feats), np.asarray(labels, dtype=np.int64)


def build_torch_model(mean: np.ndarray, std: np.ndarray) -> Any:
    """Conv1d x2 (the second halves time) -> GRU -> linear; input ``[batch, 40, time]``."""
    import torch
    from torch import nn

    class KeywordSpotter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Feature normalisation is part of the graph, so serving sends raw log-mels.
            self.register_buffer("mean", torch.from_numpy(mean.reshape(1, -1, 1)))
            self.register_buffer("std", torch.from_numpy(std.reshape(1, -1, 1)))
            self.conv = nn.Sequential(
                nn.Conv1d(FEATURES.n_mels, HIDDEN, 5, padding=2, bias=False),
                nn.BatchNorm1d(HIDDEN),
                nn.ReLU(),
                nn.Conv1d(HIDDEN, HIDDEN, 5, stride=2, padding=2, bias=False),
                nn.BatchNorm1d(HIDDEN),
                nn.ReLU(),
            )
            self.gru = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
            self.dropout = nn.Dropout(0.2)
            self.head = nn.Linear(2 * HIDDEN, len(LABELS))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            x = self.conv((features - self.mean) / self.std).transpose(1, 2)
            out, last = self.gru(x)
            # Last state plus mean over time: robust to where in the clip the word falls.
            pooled = torch.cat([last[0], out.mean(dim=1)], dim=1)
            return self.head(self.dropout(pooled))

    return KeywordSpotter()


def train(ctx: BuildContext, x: np.ndarray, y: np.ndarray) -> Any:
    import torch

    # A GRU this small trains ~20x faster on one thread than on two busy ones (no spin-waits).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(ctx, x, y)
    finally:
        torch.set_num_threads(threads)


def _train(ctx: BuildContext, x: np.ndarray, y: np.ndarray) -> Any:
    import torch

    mean = x.mean(axis=(0, 2)).astype(np.float32)
    std = (x.std(axis=(0, 2)) + 1e-5).astype(np.float32)
    model = build_torch_model(mean, std)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=4e-3, total_steps=steps)
    rng = np.random.default_rng(ctx.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for epoch in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            loss = torch.nn.functional.cross_entropy(
                model(xt[index]), yt[index], label_smoothing=0.05
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(index)
        ctx.log(f"training epoch {epoch + 1}/{EPOCHS}, loss {total / len(x):.3f}")
    return model.eval()


def torch_logits(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()


class KeywordSpotterExporter(ModelExporter):
    """Gate: ONNX == PyTorch at several time lengths and batch sizes; held-out accuracy >= 0.95."""

    name = "keyword-spotter"
    tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 1.0,
        "max_logit_diff": 1e-3,
        "min_heldout_accuracy": MIN_ACCURACY,
    }

    def config(self) -> dict[str, Any]:
        return {
            "tolerances": self.tolerances,
            "features": FEATURES.model_dump(),
            "labels": LABELS,
            "voices": [TRAIN_VOICES, EVAL_VOICES],
            "training": [AUGMENT_COPIES, EPOCHS, BATCH, HIDDEN],
            "espeak": espeak_version(),
        }

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        import torch

        train_voices, eval_voices = voice_split(ctx.seed)
        train_synth = synthesised_set(ctx, "train", train_voices, ctx.seed)
        eval_synth = synthesised_set(ctx, "eval", eval_voices, ctx.seed + 1)
        ctx.log("computing log-mel features")
        x, y = training_features(train_synth, ctx.seed)
        x_eval, y_eval = evaluation_features(eval_synth, ctx.seed)
        started = time.perf_counter()
        model = train(ctx, x, y)
        train_seconds = time.perf_counter() - started

        graph = out_dir / "model.onnx"
        onnx_tools.torch_export(
            model,
            (torch.from_numpy(x_eval[:1]),),  # batch 1: what the GRU exporter asks for
            graph,
            input_names=("features",),
            output_names=("logits",),
            dynamic_axes={"features": {0: "batch", 2: "time"}, "logits": {0: "batch"}},
        )
        ctx.log("parity gate at several lengths and batch sizes")
        sess = onnx_tools.session(graph, ctx.threads)
        rng = np.random.default_rng(ctx.seed)
        references, candidates, samples = [], [], 0
        for frames in (21, 49, 98, 157, 301):
            for batch in (1, 3, 16):
                pick = rng.choice(len(x_eval), size=batch, replace=False)
                # Tile held-out clips along time to get real features of any length.
                feats = np.tile(x_eval[pick], (1, 1, frames // FEATURES.frames + 1))[..., :frames]
                references.append(torch_logits(model, feats))
                candidates.append(onnx_tools.run(sess, {"features": feats})[0])
                samples += batch
        metrics = gates.classifier_metrics(np.concatenate(references), np.concatenate(candidates))
        onnx_eval = onnx_tools.run(sess, {"features": x_eval})[0]
        accuracy = float(np.mean(np.argmax(onnx_eval, axis=1) == y_eval))
        keyword = y_eval < len(WORDS)
        keyword_accuracy = float(np.mean(np.argmax(onnx_eval[keyword], axis=1) == y_eval[keyword]))
        metrics["heldout_accuracy"] = accuracy
        ctx.log(f"held-out accuracy {accuracy:.3f} (trained in {train_seconds:.0f}s)")
        parity = gates.enforce(
            self.name,
            metrics,
            self.tolerances,
            reference="pytorch-eager-fp32",
            samples=samples,
        )
        dataset = (
            f"espeak-ng {espeak_version().split()[3]} speech, {EVAL_VOICES} voices "
            "(accent+timbre) held out from training, clean, centred as served"
        )
        inputs, outputs = onnx_tools.graph_specs(graph)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="audio-classification",
            description=(
                "Keyword spotting of 10 Speech Commands words (yes no up down left right on off "
                "stop go) plus _silence and _unknown, from 1 s of 16 kHz audio (log-mel + GRU)."
            ),
            artifact=file_ref(graph),
            inputs=inputs,
            outputs=outputs,
            preprocessing=FEATURES,
            labels=list(LABELS),
            billing_unit="audio_second",
            max_batch_size=64,
            source=Source(
                package="espeak-ng (Debian package) + this repository",
                package_version=espeak_version().split()[3],
                licence=(
                    "this repository's (trained here, no third-party weights); espeak-ng is "
                    "GPL-3.0 and the training audio is its output"
                ),
                origin=(
                    f"trained by model_export from {len(train_synth['clips'])} espeak-ng words by "
                    f"{TRAIN_VOICES} voices with noise/shift/gain augmentation, seed {ctx.seed}"
                ),
            ),
            parity=parity,
            accuracy=[
                AccuracyReport(
                    dataset=dataset,
                    metric="top1_accuracy_12_labels",
                    value=accuracy,
                    samples=len(y_eval),
                ),
                AccuracyReport(
                    dataset=dataset,
                    metric="top1_accuracy_10_keywords",
                    value=keyword_accuracy,
                    samples=int(keyword.sum()),
                ),
            ],
            exporter=onnx_tools.exporter_info("torch.onnx.export(dynamo=False)"),
            created_at=utc_now(),
        )
