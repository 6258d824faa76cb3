"""The registry's ssd-mobilenet-v2 on real photos: hand-annotated objects found, precision and
recall as its manifest states, EXIF orientation honoured, and no TensorFlow in serving."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from PIL import Image

from aimaas.inference import wire
from aimaas.inference.runners import load_runner
from aimaas.registry import FolderStore, ModelRegistry
from aimaas_testing.paths import REGISTRY, has_model
from model_export.models.ssd_mobilenet import (
    MATCH_IOU,
    PHOTOS,
    annotations,
    photo_bytes,
    score_detections,
)

pytestmark = pytest.mark.skipif(
    not has_model("ssd-mobilenet-v2"), reason="ssd-mobilenet-v2 is not built (make models)"
)


@pytest.fixture(scope="module")
def runner():
    registry = ModelRegistry(FolderStore(REGISTRY))
    manifest = registry.resolve("ssd-mobilenet-v2")
    return load_runner(manifest, registry.verified_dir(manifest), threads=2)


def _detect(runner, images: list[bytes], threshold: float = 0.5) -> wire.ObjectDetectionResult:
    return runner.run(wire.ObjectDetectionRequest(images=images, threshold=threshold))


def test_annotated_objects_are_found_and_scored(runner) -> None:
    truth = annotations()
    assert set(truth) == set(PHOTOS)
    result = _detect(runner, [photo_bytes(ref) for ref in PHOTOS])
    found = {
        ref: [(d.label, (d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax)) for d in dets]
        for ref, dets in zip(PHOTOS, result.predictions, strict=True)
    }
    score = score_detections(found, truth)
    print(
        f"\nssd-mobilenet-v2 on {len(PHOTOS)} annotated photos (threshold 0.5, IoU >= "
        f"{MATCH_IOU}): precision {score.precision:.3f} ({score.true_positives}/"
        f"{score.detections}), recall {score.recall:.3f} ({score.true_positives}/{score.objects})"
    )
    for ref, dets in found.items():
        print(f"  {ref}: {dets}")
    assert score.missed_expected == []
    manifest = runner.manifest
    reported = {a.metric: a.value for a in manifest.accuracy}
    # The gate scored the same photos through the same code: serving must agree with it.
    assert reported == pytest.approx({"precision": score.precision, "recall": score.recall})


def test_exif_orientation_gives_boxes_in_the_displayed_frame(runner) -> None:
    original = photo_bytes("skimage:astronaut.png")
    image = Image.open(io.BytesIO(original)).convert("RGB")
    # Stored turned 90 degrees with orientation 6 ("rotate 90 CW to display"): displayed, it
    # is the original photo, and so must its boxes be.
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    plain = io.BytesIO()
    image.save(plain, "JPEG", quality=95)
    upright, turned = _detect(runner, [plain.getvalue(), buffer.getvalue()]).predictions
    person = next(d for d in upright if d.label == "person")
    turned_person = next(d for d in turned if d.label == "person")
    for side in ("xmin", "ymin", "xmax", "ymax"):
        assert abs(getattr(person.box, side) - getattr(turned_person.box, side)) <= 3


def test_serving_a_detection_never_imports_tensorflow() -> None:
    code = (
        "import sys\n"
        "from aimaas.inference import wire\n"
        "from aimaas.inference.runners import load_runner\n"
        "from aimaas.registry import FolderStore, ModelRegistry\n"
        f"registry = ModelRegistry(FolderStore({str(REGISTRY)!r}))\n"
        "m = registry.resolve('ssd-mobilenet-v2')\n"
        "r = load_runner(m, registry.verified_dir(m), threads=1)\n"
        "from model_export.models.ssd_mobilenet import photo_bytes\n"
        "r.run(wire.ObjectDetectionRequest(images=[photo_bytes('skimage:chelsea.png')]))\n"
        "print(sorted(n for n in ('tensorflow', 'tf2onnx', 'torch') if n in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
