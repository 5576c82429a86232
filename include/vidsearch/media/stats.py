"""Pixel statistics of decoded frames: what the frames gate judges (blank, undecodable, wrong size).

`frames.extract_frames` computes them while it encodes, from the very RGB pixels it stores;
`quality.check_frames` validates them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

# frame_stats looks at no more than about this many pixels per frame (a strided sample beyond it).
_STATS_MAX_PIXELS = 65_536


def frame_stats(frames: Iterable[np.ndarray | None]) -> list[dict[str, Any]]:
    """Per frame: mean and std of the pixel values, height, width, and whether it decoded at all.

    `std` is the largest per-channel standard deviation, so a frame of one flat colour scores ~0
    whatever the colour. Frames above 65,536 pixels are measured on a regular strided sample (every
    2nd pixel of every 2nd row at 640x360, every 6th at 1080p), so a frame costs about a millisecond
    whatever its size. A missing/empty array counts as undecodable (mean/std None, size 0x0).
    """
    stats: list[dict[str, Any]] = []
    for frame in frames:
        if frame is None or not hasattr(frame, "shape") or getattr(frame, "ndim", 0) < 2 or frame.size == 0:
            stats.append({"mean": None, "std": None, "h": 0, "w": 0, "decoded": False})
            continue
        h, w = int(frame.shape[0]), int(frame.shape[1])
        step = max(1, math.ceil(math.sqrt(h * w / _STATS_MAX_PIXELS)))
        sample = np.asarray(frame[::step, ::step])
        channels = sample.reshape(-1, sample.shape[2] if sample.ndim == 3 else 1)
        mean = channels.mean(axis=0, dtype=np.float64)
        values = channels.astype(np.float32, copy=False)
        # E[x^2] - E[x]^2 in float64: one pass, no (N, C) float64 temporary; exact enough for pixels.
        var = np.einsum("ij,ij->j", values, values, dtype=np.float64) / max(1, channels.shape[0]) - mean * mean
        stats.append(
            {
                "mean": round(float(mean.mean()), 4),
                "std": round(float(np.sqrt(np.maximum(var, 0.0)).max()), 4),
                "h": h,
                "w": w,
                "decoded": True,
            }
        )
    return stats
