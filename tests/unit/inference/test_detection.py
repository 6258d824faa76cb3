"""The detection module: IoU, class-aware NMS, post-processing, displayed size, input batch."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aimaas import errors
from aimaas.inference.detection import (
    Detections,
    box_iou,
    class_aware_nms,
    detection_batch,
    displayed_size,
    labelled,
    postprocess,
)


def test_box_iou_of_known_boxes() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


def test_nms_is_class_aware() -> None:
    # Two near-identical boxes of one class collapse to the better; a third, of another class
    # on the same spot (a rider on a horse), stays.
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10]], dtype=float)
    scores = np.array([0.6, 0.9, 0.7])
    classes = np.array([1, 1, 19])
    assert class_aware_nms(boxes, scores, classes, 0.5).tolist() == [1, 2]


def test_postprocess_thresholds_scales_clips_and_limits() -> None:
    # Normalised [ymin, xmin, ymax, xmax], as the TensorFlow detection API answers.
    boxes = np.array(
        [[0.1, 0.2, 0.5, 0.6], [-0.1, 0.5, 0.4, 1.2], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.3, 0.3]]
    )
    scores = np.array([0.9, 0.8, 0.4, 0.7])
    classes = np.array([1.0, 17.0, 3.0, 47.0])
    found = postprocess(
        boxes, scores, classes, width=200, height=100, threshold=0.5, iou_threshold=0.5,
        max_detections=2,
    )  # fmt: skip
    assert found.classes.tolist() == [1, 17]  # 0.4 under the threshold; the 0.7 over the limit
    assert found.boxes[0] == pytest.approx([40, 10, 120, 50])
    assert found.boxes[1] == pytest.approx([100, 0, 200, 40])  # clipped to the image


def test_postprocess_of_nothing_and_of_non_finite_scores() -> None:
    empty = postprocess(
        np.zeros((0, 4)), np.zeros(0), np.zeros(0), width=5, height=5, threshold=0.3,
        iou_threshold=0.5, max_detections=100,
    )  # fmt: skip
    assert len(empty) == 0 and labelled(empty, {}) == []
    nan = postprocess(
        np.array([[0, 0, 1, 1]]), np.array([np.nan]), np.array([1]), width=5, height=5,
        threshold=0.0, iou_threshold=0.5, max_detections=100,
    )  # fmt: skip
    assert len(nan) == 0


def test_labelled_rounds_to_pixels_and_names_unknown_ids() -> None:
    found = Detections(
        boxes=np.array([[1.4, 2.6, 10.5, 20.49]]), scores=np.array([0.81234567]),
        classes=np.array([99]),
    )  # fmt: skip
    (item,) = labelled(found, {1: "person"})
    assert item.label == "class 99" and item.score == 0.812346
    assert item.box.model_dump() == {"xmin": 1, "ymin": 3, "xmax": 10, "ymax": 20}


def _jpeg(size: tuple[int, int], orientation: int | None = None) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("orientation", "shown"), [(None, (64, 32)), (3, (64, 32)), (6, (32, 64)), (8, (32, 64))]
)
def test_displayed_size_follows_exif_orientation(orientation: int | None, shown: tuple) -> None:
    data = _jpeg((64, 32), orientation)
    assert displayed_size(data) == shown
    # The decoder turns the pixels the same way: boxes and pixels share one frame.
    batch, sizes = detection_batch([data], size=16)
    assert batch.shape == (1, 16, 16, 3) and batch.dtype == np.uint8 and sizes == [shown]


def test_detection_batch_refuses_bad_images_by_index() -> None:
    with pytest.raises(errors.InvalidInput, match="image 1"):
        detection_batch([_jpeg((8, 8)), b"not an image"], size=16)
    with pytest.raises(errors.InvalidInput):
        detection_batch([], size=16)
