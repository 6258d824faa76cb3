"""Task logic behind the routes: parsed input in, response model out (synchronous, CPU-bound).

Plain functions of ``(container, call, inputs...)``: they never see the Starlette request, so
the task routes (``/v1/text-classification``, ...), the generic ``/v1/models/{model}/predict``
and any other entry point call them the same way, and a model answers the same either way.
"""

from __future__ import annotations

import base64
import time

import numpy as np

from aimaas import errors
from aimaas.api import schemas as api
from aimaas.api.calls import Call
from aimaas.api.classifiers import classify, is_classifier_id
from aimaas.api.container import Container
from aimaas.api.service import billable, check_batch, invoke, meter
from aimaas.inference import wire
from aimaas.inference.runners import softmax
from aimaas.manifest import ModelManifest, Task

#: Zero-shot scores are ``softmax(ZERO_SHOT_SCALE * cosine)``: cosine similarities of sentence
#: embeddings sit in a narrow band, and a scale of 20 (a temperature of 0.05, as in contrastive
#: sentence-embedding training) turns their differences into usable probabilities.
ZERO_SHOT_SCALE = 20.0
#: Candidate labels are embedded inside a sentence: a bare word like "sports" embeds far from
#: the sentences about it, "This text is about sports." does not (checked on MiniLM).
LABEL_TEMPLATE = "This text is about {}."
#: The billed task of keyword spotting with ``?vad=true``: its price (plans.toml) covers both
#: models' work on the same audio seconds.
AUDIO_WITH_VAD = "audio-classification+vad"


def resolve(
    container: Container, task: Task, name: str | None, version: str | None
) -> ModelManifest:
    """The manifest serving ``task``: the named model or the stage's default."""
    return container.registry.resolve_for_task(task, name, version)


def _as_list(value: str | list[str]) -> tuple[list[str], bool]:
    return ([value], True) if isinstance(value, str) else (list(value), False)


# ---- text -------------------------------------------------------------------------------------


def text_classification(
    container: Container,
    call: Call,
    body: api.TextClassificationIn,
    manifest: ModelManifest | None = None,
) -> api.TextClassificationOut:
    """Classify one text or a batch (zero-shot over ``body.labels`` when given)."""
    if manifest is None and is_classifier_id(body.model):  # a tenant's own classifier
        return classify(container, call, body)
    texts, single = _as_list(body.text)
    started = time.perf_counter()
    if body.labels:
        if len(set(body.labels)) != len(body.labels):
            raise errors.InvalidInput("Candidate labels must be distinct.")
        manifest = _zero_shot_model(container, manifest, body)
        results, outputs = _zero_shot(container, call, manifest, texts, body.labels)
    else:
        manifest = manifest or resolve(container, "text-classification", body.model, body.version)
        result = invoke(container, call, manifest, wire.TextClassificationRequest(texts=texts))
        outputs = [result]
        results = [
            api.TextPrediction(
                label=preds[0].label,
                score=preds[0].score,
                scores={p.label: p.score for p in preds},
            )
            for preds in result.predictions
        ]
    usage = meter(
        container, call, manifest, "text-classification", billable(manifest, outputs), started
    )
    return api.TextClassificationOut.of(results, single, manifest.model_id, usage)


def _zero_shot_model(
    container: Container, manifest: ModelManifest | None, body: api.TextClassificationIn
) -> ModelManifest:
    """The embeddings model that scores candidate labels.

    A named embeddings model answers itself; a text classifier (named, or the stage's default
    when none is named) lends the encoder it is built on (``base_model``), so labels in any
    language work wherever the default classifier is multilingual. A default classifier with
    no base model falls back to the stage's embeddings model.
    """
    if manifest is None and body.model is None:
        default = container.registry.default("text-classification")
        return resolve(container, "embeddings", default.base_model, None)
    manifest = manifest or container.registry.resolve(body.model or "", body.version)
    if manifest.task == "text-classification" and manifest.base_model:
        manifest = container.registry.resolve(manifest.base_model)
    if manifest.task != "embeddings":
        raise errors.InvalidInput(
            "Zero-shot classification (with labels) needs an embeddings model."
        )
    return manifest


def _zero_shot(
    container: Container, call: Call, manifest: ModelManifest, texts: list[str], labels: list[str]
) -> tuple[list[api.TextPrediction], list[wire.EmbeddingsResult]]:
    # The texts are the caller's batch (held to the model's limit); the candidate labels, which
    # the schema allows up to 64 of, go in batches of their own, never past the limit either.
    sentences = [LABEL_TEMPLATE.format(x) for x in labels]
    step = manifest.max_batch_size
    results = [
        invoke(container, call, manifest, wire.EmbeddingsRequest(texts=batch))
        for batch in [texts, *(sentences[i : i + step] for i in range(0, len(sentences), step))]
    ]
    vectors = np.asarray([v for r in results for v in r.embeddings], dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    text_vecs, label_vecs = vectors[: len(texts)], vectors[len(texts) :]
    probs = softmax(ZERO_SHOT_SCALE * (text_vecs @ label_vecs.T))
    predictions = []
    for row in probs:
        best = int(np.argmax(row))
        predictions.append(
            api.TextPrediction(
                label=labels[best],
                score=float(row[best]),
                scores={label: float(p) for label, p in zip(labels, row, strict=True)},
            )
        )
    return predictions, results


def embeddings(
    container: Container,
    call: Call,
    body: api.EmbeddingsIn,
    manifest: ModelManifest | None = None,
) -> api.EmbeddingsOut:
    """OpenAI-compatible embeddings of one text or a batch."""
    texts, _ = _as_list(body.input)
    manifest = manifest or resolve(container, "embeddings", body.model, None)
    size = manifest.outputs[0].shape[-1]
    if body.dimensions is not None and body.dimensions != size:
        raise errors.InvalidInput(
            f"{manifest.name} returns {size}-dimensional embeddings; "
            "omit dimensions or set it to that size."
        )
    started = time.perf_counter()
    request = wire.EmbeddingsRequest(texts=texts, input_type=body.input_type)
    result = invoke(container, call, manifest, request)
    usage = meter(container, call, manifest, "embeddings", billable(manifest, [result]), started)
    data = []
    for index, vector in enumerate(result.embeddings):
        value: list[float] | str = vector
        if body.encoding_format == "base64":
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
        # model_construct: the vectors come from the model, not the client (no re-validation).
        data.append(
            api.EmbeddingItem.model_construct(object="embedding", index=index, embedding=value)
        )
    tokens = sum(result.token_counts)
    return api.EmbeddingsOut(
        data=data,
        model=manifest.model_id,
        usage=api.EmbeddingsUsage(
            prompt_tokens=tokens,
            total_tokens=tokens,
            units=usage.units,
            unit=usage.unit,
            price_usd=usage.price_usd,
        ),
    )


# ---- images -----------------------------------------------------------------------------------


def image_classification(
    container: Container,
    call: Call,
    images: list[bytes],
    top_k: int,
    manifest: ModelManifest,
) -> api.ImageClassificationOut:
    """Top-``top_k`` labels of each image."""
    started = time.perf_counter()
    result = invoke(
        container, call, manifest, wire.ImageClassificationRequest(images=images, top_k=top_k)
    )
    usage = meter(
        container, call, manifest, "image-classification", billable(manifest, [result]), started
    )
    results = [
        api.ImagePrediction(label=preds[0].label, score=preds[0].score, predictions=preds)
        for preds in result.predictions
    ]
    first = results[0]
    return api.ImageClassificationOut(
        label=first.label,
        score=first.score,
        predictions=first.predictions,
        results=results,
        model=manifest.model_id,
        usage=usage,
    )


def object_detection(
    container: Container,
    call: Call,
    images: list[bytes],
    threshold: float,
    max_detections: int,
    manifest: ModelManifest,
    render: bool = False,
) -> tuple[api.ObjectDetectionOut, bytes | None]:
    """Objects found in each image; with ``render``, also the one image drawn with its boxes.

    The drawing is made before the call is metered, so a call is billed only once everything
    it answers exists.
    """
    if render and len(images) != 1:
        raise errors.InvalidInput("render draws one image: send exactly one.")
    started = time.perf_counter()
    request = wire.ObjectDetectionRequest(
        images=images, threshold=threshold, max_detections=max_detections
    )
    result = invoke(container, call, manifest, request)
    results = [
        api.ImageDetections(detections=found, width=size.width, height=size.height)
        for found, size in zip(result.predictions, result.sizes, strict=True)
    ]
    png = None
    if render:
        from aimaas.api.render import render_png

        first = results[0]
        png = render_png(images[0], first.detections, (first.width, first.height))
    usage = meter(
        container, call, manifest, "object-detection", billable(manifest, [result]), started
    )
    out = api.ObjectDetectionOut(
        detections=results[0].detections, results=results, model=manifest.model_id, usage=usage
    )
    return out, png


# ---- audio ------------------------------------------------------------------------------------


def audio_classification(
    container: Container,
    call: Call,
    clips: list[bytes],
    vad: bool,
    manifest: ModelManifest,
) -> api.AudioClassificationOut:
    """Keyword scores of each clip, plus speech segments from the VAD model with ``vad``."""
    started = time.perf_counter()
    result = invoke(container, call, manifest, wire.AudioClassificationRequest(audio=clips))
    segments: list[list[wire.Segment] | None] = [None] * len(clips)
    task = "audio-classification"
    if vad:
        vad_manifest = container.registry.default("voice-activity-detection")
        vad_request = wire.VadRequest(audio=clips)
        check_batch(vad_manifest, vad_request)  # the VAD model's own limit holds here too
        segments = list(container.backends.invoke(vad_manifest, vad_request).segments)
        # One record per call, priced as keyword spotting plus voice activity per second.
        task = AUDIO_WITH_VAD
    usage = meter(container, call, manifest, task, billable(manifest, [result]), started)
    results = [
        api.AudioPrediction(
            label=preds[0].label,
            score=preds[0].score,
            scores={p.label: p.score for p in preds},
            duration_s=round(duration, 6),
            segments=segs,
        )
        for preds, duration, segs in zip(
            result.predictions, result.durations_s, segments, strict=True
        )
    ]
    first = results[0]
    return api.AudioClassificationOut(
        label=first.label,
        score=first.score,
        scores=first.scores,
        duration_s=first.duration_s,
        segments=first.segments,
        results=results,
        model=manifest.model_id,
        usage=usage,
    )


def voice_activity(
    container: Container, call: Call, clips: list[bytes], manifest: ModelManifest
) -> api.VadOut:
    """Speech segments of each clip."""
    started = time.perf_counter()
    result = invoke(container, call, manifest, wire.VadRequest(audio=clips))
    usage = meter(
        container,
        call,
        manifest,
        "voice-activity-detection",
        billable(manifest, [result]),
        started,
    )
    results = [
        api.VadPrediction(segments=segs, duration_s=round(duration, 6))
        for segs, duration in zip(result.segments, result.durations_s, strict=True)
    ]
    return api.VadOut(
        segments=results[0].segments,
        duration_s=results[0].duration_s,
        results=results,
        model=manifest.model_id,
        usage=usage,
    )
