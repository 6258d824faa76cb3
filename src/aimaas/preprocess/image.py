"""Image preprocessing: safe decoding to RGB, resize, centre crop, normalise to NCHW float32.

Decoding is the dangerous part of serving images: a small file can declare billions of pixels
(a decompression bomb), or millions of 16- or 32-bit pixels that a naive conversion turns into
gigabytes of floats. :func:`decode_image` reads only the header first and refuses anything over
``max_pixels`` or ``max_decoded_bytes`` before a single pixel is decoded, decodes large images at
a reduced scale when the caller needs less, converts high bit depths to 8 bits in row blocks,
and reserves its memory from a process-wide :class:`DecodeBudget`.
"""

from __future__ import annotations

import ctypes
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from aimaas.errors import BackendUnavailable, InvalidInput, Overloaded

#: Default pixel limit: about a 36-megapixel photo. Larger inputs are refused, not resized.
DEFAULT_MAX_PIXELS = 36_000_000
#: Default limit on the decoded size (pixels x bytes per pixel of the file's own mode), checked
#: from the header: a 36-megapixel RGB photo (108 MB) or a 6000x6000 float32 scan (144 MB) is
#: accepted; a float32 or 64-bit RGBA image of the same pixel count is not.
DEFAULT_MAX_DECODED_BYTES = 150_000_000
#: Formats a client may send; anything else (EPS, PSD, ...) is refused before decoding. MPO is
#: what phone cameras write: a JPEG whose first frame is the photo.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
#: A JPEG needs at least a few bits per 8x8 block; far fewer bytes than this per pixel means the
#: scan is missing (libjpeg pads a truncated file with gray and only warns).
_MIN_JPEG_BYTES_PER_PIXEL = 1 / 4096
_ROWS_PER_BLOCK = 256
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3,
                    "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4,
                    "F": 4}  # fmt: skip
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decoded_bytes(image: Image.Image) -> int:
    """What decoding ``image`` (opened, not loaded) allocates: pixels x bytes per pixel."""
    mode = image.mode
    per_pixel = _BYTES_PER_PIXEL.get(mode) or (2 if mode.startswith("I;16") else 8)
    return image.size[0] * image.size[1] * per_pixel


def _to_8_bit(image: Image.Image) -> Image.Image:
    """An ``I;16*``, ``I`` or ``F`` image as ``L`` (Pillow's own convert clips above 255): 16-bit
    values by their full range, 32-bit ones stretched between their extremes. Converted in
    blocks of rows, so no full-size float copy of a large image is ever made."""
    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = image.getextrema()  # Pillow skips NaN here: finiteness is checked below
    source = np.asarray(image)
    out = np.empty(source.shape, dtype=np.uint8)
    span = float(high) - float(low)
    factor = np.float32(255.0 / span) if math.isfinite(span) and span > 0 else np.float32(0.0)
    for top in range(0, source.shape[0], _ROWS_PER_BLOCK):
        block = source[top : top + _ROWS_PER_BLOCK].astype(np.float32)
        if not np.isfinite(block).all():
            raise InvalidInput("the image holds non-finite (NaN or infinite) pixel values")
        block -= np.float32(low)
        block *= factor
        block += np.float32(0.5)
        np.clip(block, 0, 255, out=block)
        out[top : top + _ROWS_PER_BLOCK] = block
    return Image.fromarray(out, mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparent pixels are composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        return _to_8_bit(image).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK, YCbCr, LAB, HSV, L, 1: Pillow's conversions are correct for these.
    return image.convert("RGB")


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Shrink by an integer factor while the short side stays at or above ``min_side`` (box
    averaging, before any conversion, so a large image is never converted at full size)."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):  # Pillow cannot reduce these: 8 bits first
        image = _to_8_bit(image)
    return image.reduce(factor)


#: After a decode this large, once no other decode runs, freed memory is handed back to the OS.
_TRIM_AFTER_BYTES = 64_000_000


def _return_freed_memory() -> None:
    # glibc keeps freed large blocks in its arenas: without this, one burst of large images
    # leaves the process at its peak size for good.
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, macOS): nothing to trim
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


class DecodeBudget:
    """Bounds the memory that concurrent decodes may hold at once.

    Each decode reserves its estimated size (:func:`decoded_bytes`, times a margin for the
    conversions) before it starts and returns it when done; a decode that does not fit waits,
    and after ``wait_s`` is refused with 503 so a flood of large images queues instead of
    exhausting memory.

    Parameters
    ----------
    limit_bytes
        Total bytes that decodes may reserve together.
    wait_s
        Longest wait for room.
    """

    def __init__(self, limit_bytes: int, wait_s: float = 10.0) -> None:
        self.limit_bytes = limit_bytes
        self.wait_s = wait_s
        self._used = 0
        self._room = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` (capped at the whole limit) while the block runs."""
        nbytes = min(nbytes, self.limit_bytes)
        with self._room:
            fits = self._room.wait_for(
                lambda: self._used + nbytes <= self.limit_bytes, timeout=self.wait_s
            )
            if not fits:
                raise Overloaded(
                    "Too many large images are being decoded right now; retry shortly."
                )
            self._used += nbytes
        try:
            yield
        finally:
            with self._room:
                self._used -= nbytes
                idle = self._used == 0
                self._room.notify_all()
            if idle and nbytes >= _TRIM_AFTER_BYTES:
                _return_freed_memory()


#: Decodes in this process share one budget (AIMAAS_DECODE_BUDGET_MB, default 1 GB).
DECODE_BUDGET = DecodeBudget(int(os.environ.get("AIMAAS_DECODE_BUDGET_MB", "1024")) * 1_000_000)
#: Decoding takes up to about this many times the decoded size at its peak (the decoded pixels,
#: one converted copy, and small per-block buffers).
_PEAK_MARGIN = 2


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    min_side: int | None = None,
) -> Image.Image:
    """Decode image bytes into an RGB :class:`PIL.Image.Image`.

    Parameters
    ----------
    data
        The encoded image (JPEG, MPO, PNG, WebP, GIF, BMP or TIFF).
    max_pixels
        Largest ``width * height`` accepted; checked from the header before decoding.
    max_decoded_bytes
        Largest decoded size (pixels x bytes per pixel of the file's mode), checked likewise.
    min_side
        The short side the caller needs. A larger image is decoded at a reduced scale (JPEG
        draft mode) or reduced by an integer factor right after decoding, never below it.
        None keeps the full resolution.

    Returns
    -------
    PIL.Image.Image
        An RGB image with its EXIF orientation applied.

    Raises
    ------
    InvalidInput
        Empty, undecodable, truncated, of a refused format, non-finite, or over a limit.
    aimaas.errors.Overloaded
        The process's decode budget stayed full (503 with Retry-After).
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
            if decoded_bytes(image) > max_decoded_bytes:
                raise InvalidInput(
                    f"the image is {width}x{height} pixels of mode {image.mode}, over the "
                    f"decoded size limit of {max_decoded_bytes // 1_000_000} MB; send a "
                    "smaller or 8-bit image"
                )
            is_jpeg = image.format in _JPEG_FORMATS
            if is_jpeg and len(data) < width * height * _MIN_JPEG_BYTES_PER_PIXEL:
                raise InvalidInput("the image is truncated: the file is far too short")
            orientation = image.getexif().get(0x0112)
            if is_jpeg and min_side and min(width, height) >= 2 * min_side:
                scale = min_side / min(width, height)
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
            with DECODE_BUDGET.reserve(decoded_bytes(image) * _PEAK_MARGIN):
                image.load()
                if min_side:
                    image = _reduce(image, min_side)
                if orientation in _ORIENTATION:
                    image = image.transpose(_ORIENTATION[orientation])
                return _to_rgb(image)
    except (InvalidInput, BackendUnavailable):
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
                item
                if isinstance(item, Image.Image)
                else decode_image(item, max_pixels=max_pixels, min_side=2 * resize)
            )
        except InvalidInput as exc:
            raise InvalidInput(f"image {index}: {exc.message}") from None
        tensors.append(
            image_to_tensor(image, resize=resize, size=size, mean=mean, std=std, scale=scale)
        )
    return np.stack(tensors).astype(np.float32, copy=False)
