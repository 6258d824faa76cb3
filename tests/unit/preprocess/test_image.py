"""Image preprocessing: every Pillow mode to RGB, bombs refused, exact normalisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aimaas.errors import InvalidInput
from aimaas.preprocess.image import decode_image, image_to_tensor, preprocess_images

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_uniform_colour_normalises_exactly() -> None:
    data = encode(Image.new("RGB", (320, 240), (200, 100, 50)), "PNG")
    tensor = preprocess_images([data], resize=256, size=224, mean=MEAN, std=STD)
    assert tensor.shape == (1, 3, 224, 224) and tensor.dtype == np.float32
    expected = (np.array([200, 100, 50]) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(tensor[0, :, 100, 100], expected, rtol=1e-5)
    assert np.ptp(tensor[0], axis=(1, 2)).max() < 1e-5  # uniform stays uniform


def test_centre_crop_keeps_the_centre() -> None:
    # Left third red, middle green, right third blue: the crop must be green.
    array = np.zeros((300, 900, 3), dtype=np.uint8)
    array[:, :300, 0], array[:, 300:600, 1], array[:, 600:, 2] = 255, 255, 255
    tensor = image_to_tensor(
        Image.fromarray(array), resize=256, size=224, mean=[0, 0, 0], std=[1, 1, 1]
    )
    assert tensor.shape == (3, 224, 224)
    assert tensor[1].min() > 0.99 and tensor[0].max() < 0.01 and tensor[2].max() < 0.01


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"),  # red in CMYK
        (Image.new("L", (40, 30), 128), "PNG"),
        (Image.new("1", (40, 30), 1), "PNG"),
        (Image.new("LA", (40, 30), (10, 255)), "PNG"),
        (Image.new("RGBA", (40, 30), (255, 0, 0, 255)), "WEBP"),
        (Image.new("P", (40, 30), 3), "GIF"),
        (Image.new("RGB", (40, 30), (1, 2, 3)), "BMP"),
        (Image.new("RGB", (40, 30), (1, 2, 3)), "TIFF"),
    ],
    ids=["cmyk-jpeg", "l", "1bit", "la", "rgba-webp", "palette-gif", "bmp", "tiff"],
)
def test_every_mode_becomes_rgb(image: Image.Image, fmt: str) -> None:
    decoded = decode_image(encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == (40, 30)


def test_cmyk_red_stays_red() -> None:
    decoded = decode_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    red, green, blue = np.asarray(decoded)[4, 4].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_transparency_composites_on_white() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent red
    assert tuple(np.asarray(decode_image(encode(rgba)))[5, 5]) == (255, 255, 255)
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert tuple(np.asarray(decode_image(encode(palette)))[5, 5]) == (255, 255, 255)


def test_sixteen_bit_keeps_its_range() -> None:
    array = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    decoded = np.asarray(decode_image(encode(Image.fromarray(array))))
    # Pillow's own convert would clip everything above 255 to white.
    assert decoded[0, 0, 0] < 5 and decoded[-1, -1, 0] > 250 and 100 < decoded[32, 0, 0] < 155


@pytest.mark.parametrize("side", [7_000, 20_000], ids=["49Mpx", "400Mpx"])
def test_decompression_bomb_is_refused_before_decoding(side: int) -> None:
    bomb = encode(Image.new("1", (side, side)), "PNG")  # many pixels in a small file
    assert len(bomb) < 2_000_000
    with pytest.raises(InvalidInput, match=r"over the limit|too large to decode"):
        decode_image(bomb)


def test_max_pixels_is_configurable() -> None:
    with pytest.raises(InvalidInput, match="20x20"):
        decode_image(encode(Image.new("RGB", (20, 20))), max_pixels=399)
    assert decode_image(encode(Image.new("RGB", (20, 20))), max_pixels=400).size == (20, 20)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", encode(Image.new("RGB", (30, 30)), "JPEG")[:60]],
    ids=["empty", "garbage", "truncated-jpeg"],
)
def test_undecodable_input_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_image(data)


def test_unlisted_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="format ICO"):
        decode_image(encode(Image.new("RGB", (16, 16)), "ICO"))


def test_batch_error_names_the_index() -> None:
    good = encode(Image.new("RGB", (30, 30)))
    with pytest.raises(InvalidInput, match="image 1"):
        preprocess_images([good, b"bad"], resize=32, size=32, mean=MEAN, std=STD)
    with pytest.raises(InvalidInput):
        preprocess_images([], resize=32, size=32, mean=MEAN, std=STD)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.size == (20, 40)


def test_extreme_aspect_ratio_does_not_allocate_the_resized_image() -> None:
    import resource

    sliver = io.BytesIO()
    Image.new("RGB", (1, 30000), (200, 10, 10)).save(sliver, "PNG")  # a few hundred bytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    (tensor,) = preprocess_images([sliver.getvalue()], resize=256, size=224, mean=MEAN, std=STD)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert tensor.shape == (3, 224, 224)
    # Resizing the whole sliver to a 256-pixel short side first would take 256 x 7,680,000 RGB.
    assert grown_mb < 200, f"peak memory grew {grown_mb:.0f} MB"
