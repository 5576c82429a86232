"""The one user-defined function the Pixeltable peer needs (bench/peer_pixeltable.py).

Pixeltable refuses UDFs defined in a script's global namespace (they must live in an importable module),
hence this file. `clip_detections` applies to DETR's output exactly the box hygiene the pipeline's
detector (`vidsearch.models.detect`) and the reference design apply: boxes clipped to the frame, boxes under
1 px² dropped, corners rounded to whole pixels with at least 1x1 px left to crop
(`vidsearch.models.embed.crop_box`). Without it a box reaching past the frame would be padded with black by
PIL and a sub-pixel box would give an empty crop that CLIP's processor rejects.
"""

from __future__ import annotations

from typing import TypedDict

import PIL.Image
import pixeltable as pxt

MIN_BOX_AREA_PX2 = 1.0


class Detections(TypedDict):
    boxes: list[list[int]]
    scores: list[float]
    labels: list[str]


@pxt.udf
def clip_detections(frame: PIL.Image.Image, detections: pxt.Json) -> Detections:
    """The frame's detections with boxes clipped to it (whole pixels, at least 1x1), empty ones dropped."""
    width, height = frame.size
    out: Detections = {"boxes": [], "scores": [], "labels": []}
    for box, score, label in zip(detections["boxes"], detections["scores"], detections["label_text"]):
        x0, x1 = sorted((min(max(float(box[0]), 0.0), width), min(max(float(box[2]), 0.0), width)))
        y0, y1 = sorted((min(max(float(box[1]), 0.0), height), min(max(float(box[3]), 0.0), height)))
        if (x1 - x0) * (y1 - y0) < MIN_BOX_AREA_PX2:
            continue
        ix0 = min(max(int(round(x0)), 0), width - 1)
        iy0 = min(max(int(round(y0)), 0), height - 1)
        out["boxes"].append(
            [ix0, iy0, min(max(int(round(x1)), ix0 + 1), width), min(max(int(round(y1)), iy0 + 1), height)]
        )
        out["scores"].append(float(score))
        out["labels"].append(str(label))
    return out
