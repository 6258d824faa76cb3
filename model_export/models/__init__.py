"""Every model of the registry: name -> exporter factory.

Adding a model is adding an entry here; the CLI and the build loop know nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

from model_export.base import ModelExporter
from model_export.models.gguf_llm import QwenCoderHalfB
from model_export.models.keyword_spotter import KeywordSpotterExporter
from model_export.models.minilm import MiniLMEmbeddings, MiniLMEmbeddingsInt8
from model_export.models.mobilenet import MobileNetV2Exporter
from model_export.models.multilingual_e5 import (
    MultilingualE5Embeddings,
    MultilingualE5EmbeddingsInt8,
)
from model_export.models.sentiment import SentimentExporter
from model_export.models.silero_vad import SileroVadExporter
from model_export.models.ssd_mobilenet import SsdMobileNetV2Exporter
from model_export.models.topic_classifier import (
    MultilingualTopicClassifierExporter,
    TopicClassifierExporter,
)
from model_export.models.whisper import WhisperBaseExporter, WhisperTinyEnExporter

EXPORTERS: dict[str, Callable[[], ModelExporter]] = {
    MiniLMEmbeddings.name: MiniLMEmbeddings,
    MiniLMEmbeddingsInt8.name: MiniLMEmbeddingsInt8,
    TopicClassifierExporter.name: TopicClassifierExporter,
    MobileNetV2Exporter.name: MobileNetV2Exporter,
    KeywordSpotterExporter.name: KeywordSpotterExporter,
    SileroVadExporter.name: SileroVadExporter,
    # multilingual-e5-small: one export and one quantisation (cached) serve all three.
    MultilingualE5Embeddings.name: MultilingualE5Embeddings,
    MultilingualE5EmbeddingsInt8.name: MultilingualE5EmbeddingsInt8,
    MultilingualTopicClassifierExporter.name: MultilingualTopicClassifierExporter,
    SentimentExporter.name: SentimentExporter,
    WhisperTinyEnExporter.name: WhisperTinyEnExporter,
    WhisperBaseExporter.name: WhisperBaseExporter,
    SsdMobileNetV2Exporter.name: SsdMobileNetV2Exporter,
    QwenCoderHalfB.name: QwenCoderHalfB,
}

__all__ = ["EXPORTERS"]
