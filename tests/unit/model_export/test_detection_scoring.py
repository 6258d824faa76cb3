"""The detection model's accuracy scoring and its data files (no TensorFlow needed)."""

from __future__ import annotations

from model_export.models.ssd_mobilenet import (
    PHOTOS,
    Annotation,
    annotations,
    coco_labels,
    photo_bytes,
    score_detections,
)


def test_scoring_matches_by_label_and_iou_once_each() -> None:
    truth = {
        "a": [Annotation("cat", (0, 0, 10, 10), True), Annotation("cup", (20, 20, 30, 30), False)],
        "b": [],
    }
    found = {
        "a": [
            ("cat", (0, 0, 10, 9)),  # IoU 0.9: a hit
            ("cat", (0, 0, 10, 10)),  # the cat is taken already: a false positive
            ("dog", (20, 20, 30, 30)),  # right place, wrong label
        ],
        "b": [("person", (0, 0, 5, 5))],  # nothing there
    }
    score = score_detections(found, truth)
    assert (score.true_positives, score.detections, score.objects) == (1, 4, 2)
    assert score.precision == 0.25 and score.recall == 0.5 and score.missed_expected == []
    missed = score_detections({"a": [("cat", (5, 5, 15, 15))]}, truth)  # IoU 0.14
    assert missed.missed_expected == ["a cat"]


def test_labels_and_annotations_are_consistent() -> None:
    ids, names = coco_labels()
    assert len(ids) == len(names) == 80 and ids[0] == 1 and names[0] == "person"
    assert ids[-1] == 90 and names[-1] == "toothbrush" and len(set(names)) == 80
    truth = annotations()
    assert set(truth) == set(PHOTOS)
    for ref, objects in truth.items():
        assert photo_bytes(ref)  # every photo ships in an installed package
        for obj in objects:
            assert obj.label in names, (ref, obj.label)
            assert obj.box[0] < obj.box[2] and obj.box[1] < obj.box[3]
    assert sum(o.expected for objs in truth.values() for o in objs) == 4
