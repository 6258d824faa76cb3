"""minilm-topic-classifier: MiniLM encoder + pooling + a zero-shot linear head, one ONNX graph.

The head is not trained: its weights are the normalised mean embeddings of each label's
descriptions (:mod:`model_export.models.topic_data`) times a temperature, so the logits are
scaled cosine similarities and softmax gives usable probabilities. The graph is shipped int8
(per-channel) when the quantised graph passes its gate, otherwise fused fp32.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import AccuracyReport, ModelManifest, ParityReport, Quantization, file_ref
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.gates import GateError
from model_export.models import minilm, topic_data

TEMPERATURE = 20.0  # cosine in [-1, 1] -> logits in [-20, 20]


@cache
def head_weights() -> np.ndarray:
    """``[n_labels, 384]``: normalised description centroids (PyTorch fp32 embeddings)."""
    descriptions = [d for label in topic_data.LABELS for d in topic_data.DESCRIPTIONS[label]]
    return minilm.label_centroids(minilm.torch_embed(descriptions)).astype(np.float32)


@cache
def torch_classifier() -> Any:
    import torch
    from torch import nn

    class TopicClassifier(nn.Module):
        def __init__(self, encoder: nn.Module, weights: np.ndarray) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(weights.shape[1], weights.shape[0], bias=False)
            with torch.no_grad():
                self.head.weight.copy_(torch.from_numpy(weights * TEMPERATURE))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(input_ids, attention_mask))

    return TopicClassifier(minilm.torch_encoder(), head_weights()).eval()


def torch_logits(texts: list[str]) -> np.ndarray:
    import torch

    model, tok = torch_classifier(), minilm.encoder()
    with torch.no_grad():
        batches = [tok.encode(texts[i : i + 16]) for i in range(0, len(texts), 16)]
        return np.concatenate(
            [
                model(torch.from_numpy(b.input_ids), torch.from_numpy(b.attention_mask)).numpy()
                for b in batches
            ]
        )


def accuracy_of(logits: np.ndarray) -> float:
    truth = np.asarray([topic_data.LABELS.index(label) for _, label in topic_data.EVALUATION])
    return float(np.mean(np.argmax(logits[-len(truth) :], axis=1) == truth))


class TopicClassifierExporter(ModelExporter):
    """Gate: top-1 agreement and logit difference vs PyTorch, and no accuracy loss for int8."""

    name = "minilm-topic-classifier"
    fp32_tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 1.0,
        "max_logit_diff": 1e-3,
        "max_accuracy_drop": 0.0,
    }
    int8_tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 0.95,
        "max_logit_diff": 1.5,
        "max_accuracy_drop": 0.02,
    }

    def config(self) -> dict[str, Any]:
        return {
            "fp32": self.fp32_tolerances,
            "int8": self.int8_tolerances,
            "temperature": TEMPERATURE,
        }

    def source_files(self) -> list[Path]:
        return [Path(__file__), Path(minilm.__file__), Path(topic_data.__file__)]

    def _gate(
        self,
        graph: Path,
        texts: list[str],
        reference: np.ndarray,
        ctx: BuildContext,
        tolerances: dict[str, float],
    ) -> tuple[ParityReport, float]:
        sess, tok = onnx_tools.session(graph, ctx.threads), minilm.encoder()
        # Cycling batch sizes exercise the dynamic batch and sequence axes.
        candidate = np.concatenate(
            [
                onnx_tools.run(sess, tok.encode(texts[i : i + size]).feeds(minilm.INPUT_NAMES))[0]
                for i, size in _chunks(len(texts), (1, 5, 16))
            ]
        )
        metrics = gates.classifier_metrics(reference, candidate)
        candidate_accuracy = accuracy_of(candidate)
        metrics["accuracy_drop"] = accuracy_of(reference) - candidate_accuracy
        report = gates.enforce(
            self.name, metrics, tolerances, reference="pytorch-eager-fp32", samples=len(texts)
        )
        return report, candidate_accuracy

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        fp32 = out_dir / "fp32.onnx"
        minilm.export_fused(torch_classifier(), "logits", len(topic_data.LABELS), fp32, ctx.log)
        texts = [*minilm.PARITY_TEXTS, *(text for text, _ in topic_data.EVALUATION)]
        reference = torch_logits(texts)
        ctx.log("fp32 parity gate")
        parity, accuracy = self._gate(fp32, texts, reference, ctx, self.fp32_tolerances)
        graph, quantization = out_dir / "model.onnx", Quantization()
        ctx.log("int8 quantisation and its gate")
        int8 = onnx_tools.quantize_int8(fp32, out_dir / "int8.onnx", per_channel=True)
        try:
            parity, accuracy = self._gate(int8, texts, reference, ctx, self.int8_tolerances)
            int8.rename(graph)
            quantization = Quantization(method="dynamic_int8", per_channel=True)
            fp32.unlink()
        except GateError as exc:
            ctx.log(f"int8 rejected, shipping fp32: {exc}")
            int8.unlink()
            fp32.rename(graph)
        tokenizer = out_dir / minilm.TOKENIZER_FILE
        tokenizer.write_bytes((minilm.model_dir() / minilm.TOKENIZER_FILE).read_bytes())
        inputs, outputs = onnx_tools.graph_specs(graph)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="text-classification",
            description=(
                "Zero-shot news-topic classification (7 labels) on all-MiniLM-L6-v2: encoder, "
                "mean pooling and a label-description head in one graph."
            ),
            artifact=file_ref(graph),
            files=[file_ref(tokenizer)],
            inputs=inputs,
            outputs=outputs,
            preprocessing=minilm.text_preprocessing(),
            labels=list(topic_data.LABELS),
            billing_unit="1k_tokens",
            source=minilm.source(),
            parity=parity,
            accuracy=[
                AccuracyReport(
                    dataset=(
                        "hand-written news headlines, 8 per topic (model_export/models/"
                        "topic_data.py); a last-resort set, not a public benchmark"
                    ),
                    metric="top1_accuracy",
                    value=accuracy,
                    samples=len(topic_data.EVALUATION),
                )
            ],
            quantization=quantization,
            exporter=onnx_tools.exporter_info(
                "torch.onnx.export(dynamo=False) + onnxruntime.transformers.optimizer(bert)"
                + (" + quantize_dynamic(per_channel)" if quantization.method != "none" else "")
            ),
            created_at=utc_now(),
        )


def _chunks(total: int, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(start, size)`` pairs covering ``total`` items with cycling batch sizes."""
    out, start, turn = [], 0, 0
    while start < total:
        size = min(sizes[turn % len(sizes)], total - start)
        out.append((start, size))
        start, turn = start + size, turn + 1
    return out
