"""Drawing detections on the photo (``/v1/object-detection?render=true``), with Pillow.

People would rather look than read: the answer is the photo as displayed (EXIF orientation
applied), scaled so its long side is at most :data:`MAX_SIDE` (a PNG of a 36-megapixel photo
would be tens of megabytes, past Lambda's 6 MB response limit), with each box and its label.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from aimaas.inference.wire import DetectedObject

#: Longest side of a rendered image, in pixels.
MAX_SIDE = 1280
# Distinct, saturated colours (Tableau 10); a label keeps its colour within one image.
_PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
            "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")  # fmt: skip


def render_png(data: bytes, detections: Sequence[DetectedObject], size: tuple[int, int]) -> bytes:
    """The image with labelled boxes drawn, as PNG.

    Parameters
    ----------
    data
        The encoded image the detections were made on (already accepted by the decoder).
    detections
        Its detections, boxes in pixels of the displayed full-resolution image.
    size
        That image's displayed ``(width, height)`` (what the boxes refer to).

    Returns
    -------
    bytes
        An RGB PNG whose long side is at most :data:`MAX_SIDE`.
    """
    from aimaas.preprocess.image import decode_image

    # A reduced decode is enough (its short side stays >= MAX_SIDE, never under the target's).
    image = decode_image(data, min_side=MAX_SIDE)
    width, height = size
    scale = min(1.0, MAX_SIDE / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.size != target:
        image = image.resize(target, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    line = max(1, round(max(target) / 400))
    font = ImageFont.load_default(size=max(10, round(max(target) / 45)))
    colours: dict[str, str] = {}
    for item in detections:
        colour = colours.setdefault(item.label, _PALETTE[len(colours) % len(_PALETTE)])
        box = [
            item.box.xmin * scale,
            item.box.ymin * scale,
            item.box.xmax * scale,
            item.box.ymax * scale,
        ]
        draw.rectangle(box, outline=colour, width=line)
        text = f"{item.label} {item.score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text, font=font)
        # The label sits above the box, or inside it when the box touches the top edge.
        shift = bottom - top + 2 * line if box[1] >= bottom - top + 2 * line else 0
        draw.rectangle([left, top - shift, right + 2 * line, bottom - shift + line], fill=colour)
        draw.text((box[0] + line, box[1] - shift), text, fill="white", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
