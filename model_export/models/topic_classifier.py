"""Zero-shot topic classifiers: an encoder + pooling + a label-description head, one graph.

The head is not trained: its weights are the normalised mean embeddings of each label's
descriptions times a temperature, so the logits are scaled cosine similarities and softmax
gives usable probabilities. ``minilm-topic-classifier`` is English (all-MiniLM-L6-v2);
``multilingual-topic-classifier`` puts descriptions in English and Chinese on multilingual E5
and is measured on held-out headlines in both languages
(``model_export/data/topic_heldout.tsv``). Both ship int8 (per-channel) when the quantised
graph passes its gate, otherwise fused fp32 (:class:`~model_export.models.sentence_encoder.
EncoderHeadExporter`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from model_export.base import BuildContext
from model_export.models import minilm, multilingual_e5, topic_data, topic_data_multilingual
from model_export.models.sentence_encoder import (
    Backbone,
    EncoderHeadExporter,
    Head,
    LabelledSet,
    label_centroids,
    torch_embed,
)

TEMPERATURE = 20.0  # cosine in [-1, 1] -> logits in [-20, 20]


def description_head(backbone: Backbone, descriptions: Mapping[str, Sequence[str]]) -> Head:
    """``[n_labels, d]`` head: normalised description centroids (PyTorch fp32) x temperature."""
    labels = tuple(descriptions)
    texts = [d for label in labels for d in descriptions[label]]
    centroids = label_centroids(
        torch_embed(backbone, texts), [len(descriptions[x]) for x in labels]
    )
    weight = (centroids * TEMPERATURE).astype(np.float32)
    return Head(labels=labels, weight=weight, bias=np.zeros(len(labels), np.float32))


class TopicClassifierExporter(EncoderHeadExporter):
    """minilm-topic-classifier: 7 English news topics on all-MiniLM-L6-v2."""

    name = "minilm-topic-classifier"
    backbone = minilm.BACKBONE
    parity_texts = minilm.PARITY_TEXTS
    int8_tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 0.95,
        "max_logit_diff": 1.5,
        "max_accuracy_drop": 0.02,
    }
    description = (
        "Zero-shot news-topic classification (7 labels) on all-MiniLM-L6-v2: encoder, "
        "mean pooling and a label-description head in one graph. English only."
    )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "temperature": TEMPERATURE}

    def source_files(self) -> list[Path]:
        return [Path(__file__), *self.backbone.files(), Path(topic_data.__file__)]

    def head(self, ctx: BuildContext) -> Head:
        return description_head(self.backbone, topic_data.DESCRIPTIONS)

    def evaluation(self) -> list[LabelledSet]:
        return [minilm.EVALUATION]


class MultilingualTopicClassifierExporter(TopicClassifierExporter):
    """multilingual-topic-classifier: the same 7 topics in English and Chinese (and, through
    the encoder, other languages) on multilingual-e5-small."""

    name = "multilingual-topic-classifier"
    backbone = multilingual_e5.BACKBONE
    parity_texts = multilingual_e5.PARITY_TEXTS
    # int8 on E5 moves logits more than on MiniLM (12 layers); accuracy may not drop by
    # more than one headline in fifty on either language.
    int8_tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 0.95,
        "max_logit_diff": 2.0,
        "max_accuracy_drop": 0.02,
    }
    description = (
        "Zero-shot news-topic classification (7 labels) in English, Chinese and the other "
        "languages of multilingual-e5-small: encoder, mean pooling and a head of label "
        "descriptions written in English and Chinese, in one graph."
    )

    def source_files(self) -> list[Path]:
        return [
            Path(__file__),
            *self.backbone.files(),
            Path(topic_data.__file__),
            Path(topic_data_multilingual.__file__),
            topic_data_multilingual.HELDOUT_FILE,
        ]

    def head(self, ctx: BuildContext) -> Head:
        return description_head(self.backbone, topic_data_multilingual.DESCRIPTIONS)

    def evaluation(self) -> list[LabelledSet]:
        return topic_data_multilingual.heldout_sets()
