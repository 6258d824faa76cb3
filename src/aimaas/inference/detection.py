"""Object detection: a detector's input batch, and the one place its raw output becomes boxes.

Serving (:class:`~aimaas.inference.runners.ObjectDetectionRunner`) and the export gate
(``model_export.models.ssd_mobilenet``) both call :func:`postprocess`, so the boxes a client
gets are the boxes the gate measured.

Steps, in order: drop scores under the threshold, scale the normalised ``[ymin, xmin, ymax,
xmax]`` boxes to pixels of the displayed image (the full-resolution size after its EXIF
orientation, which :func:`displayed_size` reads from the header), clip them to the
image, suppress overlapping boxes of the same class (class-aware NMS: a person on a horse keeps
both boxes) and keep the ``max_detections`` best.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aimaas import errors
from aimaas.inference import wire

#: EXIF orientations (tag 0x0112) whose transposition swaps width and height.
_SWAPS_SIDES = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class Detections:
    """The detections of one image, best first.

    Attributes
    ----------
    boxes
        float64 ``[n, 4]``: ``xmin, ymin, xmax, ymax`` in pixels of the displayed image.
    scores
        float64 ``[n]``.
    classes
        int64 ``[n]``: the model's class ids.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def displayed_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an encoded image as shown, i.e. after its EXIF orientation.

    Reads the header only. Call it after :func:`aimaas.preprocess.image.decode_image` accepted
    the same bytes (which checks them); boxes are given in this frame at full resolution, even
    when the decoder worked on a reduced copy.
    """
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        swapped = image.getexif().get(0x0112) in _SWAPS_SIDES
    return (height, width) if swapped else (width, height)


def detection_batch(
    images: Sequence[bytes], *, size: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Decode and resize a batch for a detector into uint8 ``[N, size, size, 3]`` (NHWC).

    Parameters
    ----------
    images
        Encoded image files.
    size
        The detector's square input side (:class:`~aimaas.manifest.DetectionPreprocessing`).

    Returns
    -------
    numpy.ndarray
        The resized RGB pixels, aspect ratio not kept (as the SSD graph's own resize does).
    list of tuple of int
        Each image's :func:`displayed_size`, to scale its normalised boxes back to.

    Raises
    ------
    aimaas.errors.InvalidInput
        If the batch is empty or an image cannot be decoded (the message names its index).
    """
    from aimaas.preprocess.image import decode_image

    if not images:
        raise errors.InvalidInput("at least one image is required")
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    sizes = []
    for index, data in enumerate(images):
        try:
            # A reduced decode is enough (and bounded): boxes are normalised, scaled back to
            # the full size that the header gives.
            image = decode_image(data, min_side=size)
        except errors.InvalidInput as exc:
            raise errors.InvalidInput(f"image {index}: {exc.message}") from None
        resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        batch[index] = np.asarray(resized)
        sizes.append(displayed_size(data))
    return batch, sizes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    Parameters
    ----------
    a, b
        ``[n, 4]`` and ``[m, 4]`` boxes as ``xmin, ymin, xmax, ymax``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, m]``; 0 where the union is empty.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def class_aware_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression within each class.

    Parameters
    ----------
    boxes
        ``[n, 4]`` as ``xmin, ymin, xmax, ymax``.
    scores, classes
        ``[n]`` each.
    iou_threshold
        A box overlapping a better one of its class by more than this is dropped.

    Returns
    -------
    numpy.ndarray
        int64 indices into the inputs, best score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    for index in order:
        same = [k for k in keep if classes[k] == classes[index]]
        if same and box_iou(boxes[index], boxes[same]).max() > iou_threshold:
            continue
        keep.append(int(index))
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    *,
    width: int,
    height: int,
    threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> Detections:
    """One image's raw detector output to pixel boxes of the displayed image.

    Parameters
    ----------
    boxes
        ``[n, 4]`` normalised ``ymin, xmin, ymax, xmax`` (the TensorFlow detection API's order).
    scores
        ``[n]``.
    classes
        ``[n]`` class ids (float or int; the TF graph answers floats).
    width, height
        The displayed image's full-resolution size (after EXIF orientation).
    threshold
        Lowest score kept.
    iou_threshold
        Class-aware NMS overlap (see :func:`class_aware_nms`).
    max_detections
        Most boxes returned.

    Returns
    -------
    Detections
        Best first, boxes clipped to the image.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = np.rint(np.asarray(classes, dtype=np.float64).reshape(-1)).astype(np.int64)
    chosen = np.isfinite(scores) & (scores >= threshold)
    boxes, scores, classes = boxes[chosen], scores[chosen], classes[chosen]
    scale = np.asarray([width, height, width, height], dtype=np.float64)
    pixels = np.clip(boxes[:, [1, 0, 3, 2]], 0.0, 1.0) * scale
    keep = class_aware_nms(pixels, scores, classes, iou_threshold)[:max_detections]
    return Detections(boxes=pixels[keep], scores=scores[keep], classes=classes[keep])


def labelled(detections: Detections, labels: Mapping[int, str]) -> list[wire.DetectedObject]:
    """The wire form of ``detections``: label names, and boxes rounded to whole pixels (as
    Hugging Face's pipeline answers them).

    Parameters
    ----------
    detections
        One image's detections (:func:`postprocess`).
    labels
        Label of each class id; an id without one is named ``"class <id>"``.
    """
    return [
        wire.DetectedObject(
            label=labels.get(int(cls), f"class {int(cls)}"),
            score=round(float(score), 6),
            box=wire.Box(
                xmin=round(float(box[0])),
                ymin=round(float(box[1])),
                xmax=round(float(box[2])),
                ymax=round(float(box[3])),
            ),
        )
        for box, score, cls in zip(
            detections.boxes, detections.scores, detections.classes, strict=True
        )
    ]
