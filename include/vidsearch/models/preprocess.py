"""Image preprocessing on the model's device, in batches.

Frames travel to the device once, as uint8 (a quarter of the bytes of float32; one pinned copy per batch
when the frames share a shape), and are resized and normalised there. On a GPU this takes the CPU out of
the loop: transformers' image processors working on numpy arrays cost about 50 ms per 720p frame for
DETR on one CPU core, which alone would cap a worker at a few hundred frames/s.

Crops for the embedder do not go through the image processor one by one (every crop has its own shape,
so every crop would be its own chain of small operations): `CropSpec` reads what the processor would do
(resize the shortest edge, centre-crop, or resize to a fixed size; rescale; normalise) and `crop_pixels`
does it for all the crops of a batch of frames in one `roi_align` call. The output region of each crop
is the same as the processor's; the resampling differs: roi_align averages bilinear samples (an area
filter when shrinking, bilinear when enlarging) where CLIP's processor uses bicubic. Embeddings differ by
far less than the distance between different objects (tests/unit/test_preprocess.py measures both).
Processors that do something else (no resize, a variable output size) make `CropSpec.from_processor`
return None, and the caller keeps the processor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidsearch.records import Box

# Frames converted to float for one roi_align call, in pixels (about 200 MB of float32 RGB).
CROP_CHUNK_PIXELS = 16_000_000


def to_device(frames: Sequence[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Each (H, W, 3) uint8 frame as a (3, H, W) uint8 tensor on `device`.

    Frames of one shape are stacked and copied together (through pinned memory to a GPU, without
    blocking the host); the returned tensors are views of that one copy. On the CPU nothing needs to
    move: the tensors are views of the frames themselves (no copy of the batch; same values, shapes
    and strides as views of a stacked copy).
    """
    if not frames:
        return []
    if device.type == "cpu":
        return [torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1) for frame in frames]
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        return [t for frame in frames for t in to_device([frame], device)]
    host = torch.from_numpy(np.ascontiguousarray(np.stack(frames)))
    if device.type == "cuda":
        host = host.pin_memory()
    batch = host.to(device, non_blocking=True).permute(0, 3, 1, 2)
    return list(batch.unbind(0))


def boxes_tensor(boxes: Sequence[Box]) -> torch.Tensor:
    """(K, 4) float32 x0, y0, x1, y1 of `boxes` (K may be 0)."""
    return torch.tensor([[b.x0, b.y0, b.x1, b.y1] for b in boxes], dtype=torch.float32).reshape(-1, 4)


def _size_pair(value: Any) -> tuple[int, int] | None:
    """(height, width) from a processor size dict (or SizeDict) with both keys, else None."""
    height = _get(value, "height")
    width = _get(value, "width")
    if height and width:
        return int(height), int(width)
    return None


def _get(value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


@dataclass(frozen=True)
class CropSpec:
    """What an image processor does to one crop, as numbers a batched crop can follow.

    Output is (out_h, out_w). With `shortest_edge`, the crop is scaled so its shorter side becomes
    `shortest_edge` and the centred (out_h, out_w) window is kept; without, the whole crop is resized to
    (out_h, out_w). Pixels are then multiplied by `rescale` and normalised with `mean` / `std`.
    """

    out_h: int
    out_w: int
    shortest_edge: int | None
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, processor: Any) -> CropSpec | None:
        """The spec of a CLIP-style processor, or None when its output size depends on the input."""
        if not getattr(processor, "do_resize", True):
            return None
        size = getattr(processor, "size", None)
        shortest = _get(size, "shortest_edge")
        if getattr(processor, "do_center_crop", False):
            crop = _size_pair(getattr(processor, "crop_size", None))
            if crop is None or not shortest:
                return None
            out_h, out_w, shortest_edge = crop[0], crop[1], int(shortest)
        else:
            fixed = _size_pair(size)
            if fixed is None:
                return None
            out_h, out_w, shortest_edge = fixed[0], fixed[1], None
        rescale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else 1.0
        if getattr(processor, "do_normalize", True):
            mean = tuple(float(v) for v in _triple(processor.image_mean))
            std = tuple(float(v) for v in _triple(processor.image_std))
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return cls(out_h, out_w, shortest_edge, rescale, mean, std)  # type: ignore[arg-type]

    def windows(self, boxes: torch.Tensor) -> torch.Tensor:
        """The frame region (x0, y0, x1, y1) that lands in each crop's output, for (K, 4) boxes.

        Boxes narrower or shorter than 1 px are widened to 1 px about their centre.
        """
        x0, y0, x1, y1 = boxes.unbind(-1)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w, h = (x1 - x0).clamp(min=1.0), (y1 - y0).clamp(min=1.0)
        if self.shortest_edge is not None:
            scale = torch.minimum(w, h) / self.shortest_edge  # frame px per output px
            w, h = self.out_w * scale, self.out_h * scale
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _triple(value: Any) -> list[float]:
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
    if len(values) != 3:
        raise ValueError(f"expected 3 channel values, got {values}")
    return values


def crop_pixels(
    images: Sequence[torch.Tensor],
    boxes: Sequence[torch.Tensor],
    spec: CropSpec,
    *,
    per_crop: bool | None = None,
) -> torch.Tensor:
    """Normalised float32 (K, 3, out_h, out_w) crops of `boxes[i]` in `images[i]`, in order.

    `images` are (3, H, W) uint8 tensors on one device (`to_device`); `boxes[i]` is (K_i, 4) in pixels.
    On a GPU (`per_crop` None or False) images of one shape are cropped together, in chunks of about
    CROP_CHUNK_PIXELS, one roi_align call each. On the CPU (`per_crop` None or True) each crop reads
    only the pixels under its window, which there is cheaper than converting whole frames to float;
    both give the same values.
    """
    if len(images) != len(boxes):
        raise ValueError(f"{len(boxes)} box tensors for {len(images)} images")
    total = sum(int(b.shape[0]) for b in boxes)
    if not images or total == 0:
        device = images[0].device if images else torch.device("cpu")
        return torch.zeros((0, 3, spec.out_h, spec.out_w), dtype=torch.float32, device=device)
    device = images[0].device
    windows = [spec.windows(b.to(device=device, dtype=torch.float32)) for b in boxes]
    if per_crop if per_crop is not None else device.type == "cpu":
        out = _crops_one_by_one(images, windows, spec)
    else:
        out = _crops_in_chunks(images, windows, spec, total)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    return out.clamp_(0.0, 255.0).mul_(spec.rescale).sub_(mean).div_(std)


def _roi_align(images: torch.Tensor, windows: list[torch.Tensor], spec: CropSpec) -> torch.Tensor:
    from torchvision.ops import roi_align

    # aligned=True: pixel i covers [i, i + 1), as in the boxes; sampling_ratio=-1 averages
    # ceil(window / output) samples per output pixel, an area filter when shrinking.
    return roi_align(images, windows, (spec.out_h, spec.out_w), 1.0, -1, True)


def _crops_in_chunks(
    images: Sequence[torch.Tensor], windows: list[torch.Tensor], spec: CropSpec, total: int
) -> torch.Tensor:
    out = torch.empty((total, 3, spec.out_h, spec.out_w), dtype=torch.float32, device=images[0].device)
    offsets = np.cumsum([0] + [int(w.shape[0]) for w in windows])
    start = 0
    while start < len(images):
        # A chunk: consecutive images of one shape, up to the pixel budget (at least one image).
        shape = images[start].shape
        end = start + 1
        budget = CROP_CHUNK_PIXELS - shape[1] * shape[2]
        while end < len(images) and images[end].shape == shape and budget >= shape[1] * shape[2]:
            budget -= shape[1] * shape[2]
            end += 1
        if offsets[end] > offsets[start]:
            batch = torch.stack(list(images[start:end])).float()
            out[int(offsets[start]) : int(offsets[end])] = _roi_align(batch, windows[start:end], spec)
        start = end
    return out


def _crops_one_by_one(images: Sequence[torch.Tensor], windows: list[torch.Tensor], spec: CropSpec) -> torch.Tensor:
    crops = []
    for image, image_windows in zip(images, windows):
        _, height, width = image.shape
        for x0, y0, x1, y1 in image_windows.tolist():
            # The pixels roi_align reads for this window: sample points lie in [x0 - 0.5, x1 - 0.5]
            # (aligned), each with its bilinear neighbours; one more on each side. Clipped to the
            # frame, where the frame's edges stay edges, so the values equal those of the whole frame.
            left = min(max(math.floor(x0 - 0.5) - 1, 0), width - 1)
            top = min(max(math.floor(y0 - 0.5) - 1, 0), height - 1)
            right = min(max(math.floor(x1 - 0.5) + 3, left + 1), width)
            bottom = min(max(math.floor(y1 - 0.5) + 3, top + 1), height)
            region = image[:, top:bottom, left:right].unsqueeze(0).float()
            window = torch.tensor([[x0 - left, y0 - top, x1 - left, y1 - top]], device=image.device)
            crops.append(_roi_align(region, [window], spec))
    return torch.cat(crops)
