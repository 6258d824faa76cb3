"""BERT sentence encoders (MiniLM, multilingual E5): one export, gate and head pipeline.

A :class:`Backbone` says where an encoder's weights and tokenizer come from; everything else
is shared: the PyTorch reference (BERT with eager attention, masked mean pooling, L2 norm, so
a client gets finished embeddings from one ONNX call), the fused fp32 and per-channel int8
ONNX encoders (exported once per build and cached by the code that defines them), the
embeddings exporters and their parity gate, and classifiers made of an encoder plus a linear
head (:class:`EncoderHeadExporter`), shipped int8 when the int8 graph passes its gate.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from aimaas.manifest import (
    AccuracyReport,
    InputType,
    ModelManifest,
    ParityReport,
    Quantization,
    Source,
    TextPreprocessing,
    file_ref,
)
from aimaas.preprocess.text import TextEncoder
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.gates import GateError

INPUT_NAMES = ("input_ids", "attention_mask")
TOKENIZER_FILE = "tokenizer.json"
Precision = Literal["fp32", "int8"]
_EXPORTER = "torch.onnx.export(dynamo=False) + onnxruntime.transformers.optimizer(bert)"
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


@dataclass(frozen=True)
class Backbone:
    """Where one sentence encoder comes from.

    Attributes
    ----------
    key
        Cache folder name of its intermediate graphs.
    tokenizer_file
        Returns the path of its ``tokenizer.json``.
    load_bert
        Returns the ``transformers.BertModel`` (eager attention, no pooler, eval mode).
    source
        Provenance and licence for the manifest.
    definition_files
        Code that defines the weights: a change re-exports the cached graphs.
    embedding_models
        Registry names of its embeddings models by precision (classifiers name theirs as
        ``base_model``, so zero-shot labels run on the same encoder).
    prefixes, default_input_type
        Instruction prefixes the platform adds (E5), see ``aimaas.manifest.TextPreprocessing``.
    """

    key: str
    tokenizer_file: Callable[[], Path]
    load_bert: Callable[[], Any]
    source: Callable[[], Source]
    definition_files: tuple[Path, ...]
    embedding_models: Mapping[Precision, str]
    max_length: int
    num_heads: int = 12
    hidden_size: int = 384
    prefixes: Mapping[InputType, str] = field(default_factory=dict)
    default_input_type: InputType | None = None

    def __hash__(self) -> int:  # the mappings are not hashable; the key names the backbone
        return hash(self.key)

    def preprocessing(self) -> TextPreprocessing:
        return TextPreprocessing(
            tokenizer_file=TOKENIZER_FILE,
            max_length=self.max_length,
            prefixes=dict(self.prefixes),
            default_input_type=self.default_input_type,
        )

    def prefix(self, input_type: InputType | None = None) -> str:
        """The prefix serving adds for ``input_type`` (the manifest's own rule)."""
        return self.preprocessing().prefix(input_type)

    def files(self) -> list[Path]:
        """Source files of everything built on this backbone (for fingerprints)."""
        return [Path(__file__), *self.definition_files]


@cache
def encoder(backbone: Backbone) -> TextEncoder:
    """The serving tokenizer (``aimaas.preprocess.text``) of ``backbone``."""
    return TextEncoder(backbone.tokenizer_file(), backbone.max_length)


@cache
def torch_encoder(backbone: Backbone) -> Any:
    """The PyTorch sentence encoder: BERT + masked mean pooling + L2 norm."""
    import torch
    from torch import nn

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

    return SentenceEncoder(backbone.load_bert()).eval()


def torch_run(
    module: Any,
    backbone: Backbone,
    texts: Sequence[str],
    input_type: InputType | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Outputs of ``module`` (an encoder, or encoder + head) for ``texts``, in batches."""
    import torch

    tok, prefix, outputs = encoder(backbone), backbone.prefix(input_type), []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tok.encode(list(texts[start : start + batch_size]), prefix)
            ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
            outputs.append(module(ids, mask).numpy().astype(np.float32))
    return np.concatenate(outputs)


def torch_embed(
    backbone: Backbone, texts: Sequence[str], input_type: InputType | None = None
) -> np.ndarray:
    """Reference embeddings from PyTorch eager fp32 (memoised: exporters share them)."""
    return _torch_embed(backbone, tuple(texts), input_type).copy()


@cache
def _torch_embed(
    backbone: Backbone, texts: tuple[str, ...], input_type: InputType | None
) -> np.ndarray:
    return torch_run(torch_encoder(backbone), backbone, texts, input_type)


def onnx_run(
    path: Path,
    backbone: Backbone,
    texts: Sequence[str],
    threads: int,
    batch_sizes: tuple[int, ...] = (1, 7, 16),
    input_type: InputType | None = None,
) -> np.ndarray:
    """First output of an ONNX text graph, batched with cycling ``batch_sizes`` (so the
    dynamic batch and sequence axes are exercised), prefixed as serving prefixes."""
    sess, tok, prefix = (
        onnx_tools.session(path, threads),
        encoder(backbone),
        backbone.prefix(input_type),
    )
    outputs, start, turn = [], 0, 0
    while start < len(texts):
        size = batch_sizes[turn % len(batch_sizes)]
        batch = tok.encode(list(texts[start : start + size]), prefix)
        outputs.append(onnx_tools.run(sess, batch.feeds(INPUT_NAMES))[0])
        start, turn = start + size, turn + 1
    return np.concatenate(outputs)


def export_fused(
    backbone: Backbone,
    module: Any,
    output_name: str,
    output_dim: int,
    target: Path,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Export a BERT-based module with the legacy exporter and fuse it for CPU.

    Returns the counts of fused operators, so callers can insist that fusion happened.

    Raises
    ------
    RuntimeError
        Attention was not fused.
    """
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    raw = target.with_name(f"raw-{target.name}")
    log("exporting to ONNX")
    batch = encoder(backbone).encode(["an example input", "a second, longer example input"])
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
        str(raw),
        model_type="bert",
        num_heads=backbone.num_heads,
        hidden_size=backbone.hidden_size,
        opt_level=0,
    )
    optimized.save_model_to_file(str(target))
    raw.unlink()
    onnx_tools.set_dims(target, output_name, {1: output_dim})
    fused = {k: v for k, v in onnx_tools.op_counts(target).items() if k in _FUSED_OPS}
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        raise RuntimeError(f"attention was not fused: {fused}")
    return fused


def encoder_graph(backbone: Backbone, ctx: BuildContext, precision: Precision) -> Path:
    """The fused embeddings graph of ``backbone`` in ``precision``, made once per build.

    Cached under ``ctx.cache_dir`` by the code that defines it, so the embeddings models and
    every classifier on the same backbone share one export and one quantisation.
    """
    digest = hashlib.sha256()
    for path in [*backbone.files(), Path(onnx_tools.__file__)]:
        digest.update(path.read_bytes())
    key = digest.hexdigest()[:16]
    cached = ctx.cache_dir / backbone.key / f"{precision}-{key}.onnx"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"tmp-{cached.name}")
    if precision == "fp32":
        export_fused(
            backbone, torch_encoder(backbone), "embeddings", backbone.hidden_size, tmp, ctx.log
        )
    else:
        ctx.log("quantising to int8 (per channel)")
        onnx_tools.quantize_int8(encoder_graph(backbone, ctx, "fp32"), tmp, per_channel=True)
    tmp.rename(cached)
    return cached


def copy_tokenizer(backbone: Backbone, out_dir: Path) -> Path:
    target = out_dir / TOKENIZER_FILE
    shutil.copyfile(backbone.tokenizer_file(), target)
    return target


@dataclass(frozen=True)
class LabelledSet:
    """Labelled texts that were not used to build a model, and what to call them."""

    dataset: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]

    def accuracy(self, scores: np.ndarray, label_names: Sequence[str]) -> float:
        """Top-1 accuracy of ``scores`` ``[n, n_labels]`` (columns in ``label_names`` order)."""
        truth = np.asarray([list(label_names).index(label) for label in self.labels])
        return float(np.mean(np.argmax(scores, axis=1) == truth))


def label_centroids(embeddings: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Normalised mean of consecutive rows, ``counts[i]`` rows per label: ``[n_labels, d]``."""
    rows, start = [], 0
    for count in counts:
        rows.append(embeddings[start : start + count].mean(axis=0))
        start += count
    centroids = np.stack(rows)
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


class SentenceEmbeddingsExporter(ModelExporter):
    """A backbone's embeddings graph; gate: max |diff| and cosine vs PyTorch, and no loss of
    zero-shot accuracy on :meth:`evaluation` (labels from :meth:`label_descriptions`).

    Subclasses set ``backbone``, ``precision``, ``tolerances`` and ``description``.
    """

    backbone: ClassVar[Backbone]
    precision: ClassVar[Precision] = "fp32"
    tolerances: ClassVar[dict[str, float]]
    description: ClassVar[str]
    parity_texts: ClassVar[tuple[str, ...]]

    def config(self) -> dict[str, Any]:
        return {"tolerances": self.tolerances, "max_length": self.backbone.max_length}

    def source_files(self) -> list[Path]:
        return self.backbone.files()

    def label_descriptions(self) -> Mapping[str, Sequence[str]]:
        """Label -> descriptions of the zero-shot accuracy check."""
        raise NotImplementedError

    def evaluation(self) -> list[LabelledSet]:
        """Held-out sets of the zero-shot accuracy check."""
        raise NotImplementedError

    def extra_metrics(self, ctx: BuildContext, graph: Path) -> dict[str, float]:
        """Further gate metrics (another reference than PyTorch); none by default."""
        return {}

    def quantization(self) -> Quantization:
        if self.precision == "int8":
            return Quantization(method="dynamic_int8", per_channel=True)
        return Quantization()

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        graph = out_dir / "model.onnx"
        shutil.copyfile(encoder_graph(self.backbone, ctx, self.precision), graph)
        ctx.log("parity gate against PyTorch")
        sets, descriptions = self.evaluation(), self.label_descriptions()
        labels = list(descriptions)
        description_texts = [d for label in labels for d in descriptions[label]]
        eval_texts = [t for s in sets for t in s.texts]
        texts = [*self.parity_texts, *eval_texts, *description_texts]
        reference = torch_embed(self.backbone, texts)
        candidate = onnx_run(graph, self.backbone, texts, ctx.threads)
        metrics = gates.embedding_metrics(reference, candidate)
        counts = [len(descriptions[label]) for label in labels]

        def zero_shot(rows: np.ndarray) -> list[float]:
            # Nearest label-description centroid, each set in the order of ``texts``.
            centroids = label_centroids(rows[len(rows) - len(description_texts) :], counts)
            out, start = [], len(self.parity_texts)
            for s in sets:
                out.append(s.accuracy(rows[start : start + len(s.texts)] @ centroids.T, labels))
                start += len(s.texts)
            return out

        ref_acc, cand_acc = zero_shot(reference), zero_shot(candidate)
        metrics["accuracy_drop"] = max(r - c for r, c in zip(ref_acc, cand_acc, strict=True))
        accuracy = [
            AccuracyReport(
                dataset=s.dataset, metric="top1_accuracy", value=value, samples=len(s.texts)
            )
            for s, value in zip(sets, cand_acc, strict=True)
        ]
        metrics.update(self.extra_metrics(ctx, graph))
        parity = gates.enforce(
            self.name, metrics, self.tolerances, reference=self.reference(), samples=len(texts)
        )
        tokenizer = copy_tokenizer(self.backbone, out_dir)
        inputs, outputs = onnx_tools.graph_specs(graph)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="embeddings",
            description=self.description,
            artifact=file_ref(graph),
            files=[file_ref(tokenizer)],
            inputs=inputs,
            outputs=outputs,
            preprocessing=self.backbone.preprocessing(),
            billing_unit="1k_tokens",
            source=self.backbone.source(),
            parity=parity,
            accuracy=accuracy,
            quantization=self.quantization(),
            exporter=onnx_tools.exporter_info(
                _EXPORTER + (" + quantize_dynamic(per_channel)" if self.precision == "int8" else "")
            ),
            created_at=utc_now(),
        )

    def reference(self) -> str:
        return "pytorch-eager-fp32"


@dataclass(frozen=True)
class Head:
    """A linear head on the normalised embeddings: ``logits = x @ weight.T + bias``."""

    labels: tuple[str, ...]
    weight: np.ndarray  # [n_labels, d]
    bias: np.ndarray  # [n_labels]


def torch_classifier(backbone: Backbone, head: Head) -> Any:
    """The PyTorch reference of an encoder + head graph: ``ids, mask -> logits``."""
    import torch
    from torch import nn

    class HeadClassifier(nn.Module):
        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(head.weight.shape[1], head.weight.shape[0])
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(head.weight.astype(np.float32)))
                self.head.bias.copy_(torch.from_numpy(head.bias.astype(np.float32)))

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(ids, mask))

    return HeadClassifier(torch_encoder(backbone)).eval()


class EncoderHeadExporter(ModelExporter):
    """Encoder + linear head, one ONNX graph; gate: top-1 agreement and logit difference vs
    PyTorch, and no accuracy lost on the held-out sets. Shipped int8 when the int8 graph
    passes its (looser) gate, otherwise fp32.

    Subclasses set ``backbone``, the tolerances and ``description`` and implement
    :meth:`head` and :meth:`evaluation`.
    """

    backbone: ClassVar[Backbone]
    description: ClassVar[str]
    parity_texts: ClassVar[tuple[str, ...]]
    fp32_tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 1.0,
        "max_logit_diff": 1e-3,
        "max_accuracy_drop": 0.0,
    }
    int8_tolerances: ClassVar[dict[str, float]]

    def config(self) -> dict[str, Any]:
        return {"fp32": self.fp32_tolerances, "int8": self.int8_tolerances}

    def head(self, ctx: BuildContext) -> Head:
        """The head's labels and weights (built, or trained, at export time)."""
        raise NotImplementedError

    def evaluation(self) -> list[LabelledSet]:
        """Held-out sets, reported in the manifest, one accuracy each."""
        raise NotImplementedError

    def extra_accuracy(self, ctx: BuildContext, head: Head) -> list[AccuracyReport]:
        """Further accuracy rows for the manifest (baselines); none by default."""
        return []

    def torch_logits(self, head: Head, texts: Sequence[str]) -> np.ndarray:
        return torch_run(torch_classifier(self.backbone, head), self.backbone, texts)

    def _gate(
        self,
        graph: Path,
        texts: list[str],
        reference: np.ndarray,
        head: Head,
        ctx: BuildContext,
        tolerances: dict[str, float],
    ) -> tuple[ParityReport, list[AccuracyReport]]:
        candidate = onnx_run(graph, self.backbone, texts, ctx.threads, (1, 5, 16))
        metrics = gates.classifier_metrics(reference, candidate)
        start, drop, reports = len(self.parity_texts), float("-inf"), []
        for s in self.evaluation():
            rows = slice(start, start + len(s.texts))
            start += len(s.texts)
            value = s.accuracy(candidate[rows], head.labels)
            drop = max(drop, s.accuracy(reference[rows], head.labels) - value)
            reports.append(
                AccuracyReport(
                    dataset=s.dataset, metric="top1_accuracy", value=value, samples=len(s.texts)
                )
            )
        metrics["accuracy_drop"] = drop
        report = gates.enforce(
            self.name, metrics, tolerances, reference="pytorch-eager-fp32", samples=len(texts)
        )
        return report, reports

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        head = self.head(ctx)
        texts = [*self.parity_texts, *(t for s in self.evaluation() for t in s.texts)]
        reference = self.torch_logits(head, texts)
        fp32, int8 = out_dir / "fp32.onnx", out_dir / "int8.onnx"
        for precision, path in (("fp32", fp32), ("int8", int8)):
            onnx_tools.append_linear_head(
                encoder_graph(self.backbone, ctx, precision),
                path,
                head.weight,
                head.bias,
                input_name="embeddings",
                output_name="logits",
            )
        ctx.log("fp32 parity gate")
        parity, accuracy = self._gate(fp32, texts, reference, head, ctx, self.fp32_tolerances)
        graph, quantization, precision = out_dir / "model.onnx", Quantization(), "fp32"
        ctx.log("int8 gate")
        try:
            parity, accuracy = self._gate(int8, texts, reference, head, ctx, self.int8_tolerances)
            int8.rename(graph)
            quantization = Quantization(method="dynamic_int8", per_channel=True)
            precision = "int8"
            fp32.unlink()
        except GateError as exc:
            ctx.log(f"int8 rejected, shipping fp32: {exc}")
            int8.unlink()
            fp32.rename(graph)
        tokenizer = copy_tokenizer(self.backbone, out_dir)
        inputs, outputs = onnx_tools.graph_specs(graph)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="text-classification",
            description=self.description,
            artifact=file_ref(graph),
            files=[file_ref(tokenizer)],
            inputs=inputs,
            outputs=outputs,
            preprocessing=self.backbone.preprocessing(),
            labels=list(head.labels),
            base_model=self.backbone.embedding_models.get(precision),
            billing_unit="1k_tokens",
            source=self.backbone.source(),
            parity=parity,
            accuracy=[*accuracy, *self.extra_accuracy(ctx, head)],
            quantization=quantization,
            exporter=onnx_tools.exporter_info(
                _EXPORTER
                + (" + quantize_dynamic(per_channel)" if precision == "int8" else "")
                + " + linear head (onnx.helper)"
            ),
            created_at=utc_now(),
        )
