"""Image preprocessing: safe decoding to RGB, resize, centre crop, normalise to NCHW float32.

Decoding is the dangerous part of serving images: a small file can declare billions of pixels
(a decompression bomb). :func:`decode_image` reads only the header first and refuses anything
over ``max_pixels`` before a single pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aimaas.errors import InvalidInput

#: Default pixel limit: about a 36-megapixel photo. Larger inputs are refused, not resized.
DEFAULT_MAX_PIXELS = 36_000_000
#: Formats a client may send; anything else (EPS, PSD, ...) is refused before decoding.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    # Modes I;16*, I and F hold more than 8 bits; Pillow's own convert("RGB") clips them.
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
    gray = Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), mode="L")
    return gray.convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparent pixels are composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _high_bit_depth_to_rgb(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK, YCbCr, LAB, HSV, L, 1: Pillow's conversions are correct for these.
    return image.convert("RGB")


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes into an RGB :class:`PIL.Image.Image`.

    Parameters
    ----------
    data
        The encoded image (JPEG, PNG, WebP, GIF, BMP or TIFF).
    max_pixels
        Largest ``width * height`` accepted; checked from the header before decoding.

    Returns
    -------
    PIL.Image.Image
        An RGB image with its EXIF orientation applied.

    Raises
    ------
    InvalidInput
        Empty, undecodable, of a refused format, or over ``max_pixels``.
    """
    if not data:
        raise InvalidInput("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise InvalidInput(
                    f"image format {image.format} is not accepted; "
                    f"send one of {sorted(ALLOWED_FORMATS)}"
                )
            width, height = image.size
            if width <= 0 or height <= 0:
                raise InvalidInput("the image has no pixels")
            if width * height > max_pixels:
                raise InvalidInput(
                    f"the image is {width}x{height} pixels, over the limit of {max_pixels}; "
                    "send a smaller image"
                )
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image)
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"the image is too large to decode safely: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"the image could not be decoded: {type(exc).__name__}") from None


def image_to_tensor(
    image: Image.Image,
    *,
    resize: int,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float = 1.0 / 255.0,
) -> np.ndarray:
    """Resize the short side to ``resize``, centre-crop ``size`` and normalise.

    Parameters
    ----------
    image
        An RGB image (see :func:`decode_image`).
    resize, size
        Short side after resizing, then the side of the square centre crop.
    mean, std
        Per-channel normalisation applied after multiplying by ``scale``.
    scale
        Factor from 8-bit values to the model's range.

    Returns
    -------
    numpy.ndarray
        float32 ``[3, size, size]`` (CHW).
    """
    if image.mode != "RGB":
        image = _to_rgb(image)
    width, height = image.size
    # Truncate the long side like torchvision.transforms.Resize(int) does.
    if width < height:
        new_w = resize
        new_h = max(size, int(resize * height / width))
    else:
        new_h = resize
        new_w = max(size, int(resize * width / height))
    left = round((new_w - size) / 2.0)
    top = round((new_h - size) / 2.0)
    # Resize only the crop, given as a box in source coordinates: the same pixel mapping and
    # filter as resizing the whole image then cropping, without allocating the whole resized
    # image (a 1x30000 PNG of 138 bytes would otherwise become a 256x7,680,000 RGB buffer).
    x_scale, y_scale = width / new_w, height / new_h
    box = (left * x_scale, top * y_scale, (left + size) * x_scale, (top + size) * y_scale)
    cropped = image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
    array = np.asarray(cropped, dtype=np.float32) * np.float32(scale)
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess_images(
    images: Sequence[bytes | Image.Image],
    *,
    resize: int,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float = 1.0 / 255.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode (if bytes) and preprocess a batch into one float32 ``[N, 3, size, size]`` array.

    Raises
    ------
    InvalidInput
        If the batch is empty or any image cannot be decoded (the message names its index).
    """
    if not images:
        raise InvalidInput("at least one image is required")
    tensors = []
    for index, item in enumerate(images):
        try:
            image = (
                item if isinstance(item, Image.Image) else decode_image(item, max_pixels=max_pixels)
            )
        except InvalidInput as exc:
            raise InvalidInput(f"image {index}: {exc.message}") from None
        tensors.append(
            image_to_tensor(image, resize=resize, size=size, mean=mean, std=std, scale=scale)
        )
    return np.stack(tensors).astype(np.float32, copy=False)
