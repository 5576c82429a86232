"""Content rules for sampled frames: which ones are blank, and which repeat an earlier frame.

`frames.extract_frames` applies them to every segment's frames, in order, in every sampling mode, and
records the outcome on each `FrameRef` (`blank`, `duplicate_of`); the detect+embed worker skips the
frames they mark. The frames stay in the bundle and the catalog, so every moment of the video is still
there: a repeat points at the frame whose detections stand for it.

* Blank: the frame's largest per-channel pixel std (`stats.frame_stats`) is not above
  `blank_std_max` (a flat colour: black, a test card's solid field, a faded-out transition).
* Duplicate: the frame's `signature` is within `dedupe_distance` bits (Hamming distance of a 64-bit
  difference hash of its luma) of the last kept frame of the segment, AND their 8x8 colour thumbnails
  differ by at most `THUMB_TOLERANCE` on average (the hash sees structure only, so two flat-ish scenes
  of different colours would otherwise match). Comparing with the last KEPT frame, not the previous
  frame, means slow drift (light changing over an hour) cannot chain a scene into one duplicate.

Both rules are pure functions of the decoded pixels: the same segment always gives the same marks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from vidsearch.records import DEFAULT_BLANK_STD_MAX, DEFAULT_DEDUPE_DISTANCE

# Mean absolute difference (0..255, over an 8x8 RGB thumbnail) above which two frames are never
# duplicates, whatever their hashes.
THUMB_TOLERANCE = 12.0
# Frames are first reduced to this square (box filter), from which the hash and the thumbnail are taken.
_REDUCED = 72


@dataclasses.dataclass(frozen=True)
class Signature:
    """What deduplication compares: a 64-bit difference hash and an 8x8 RGB thumbnail."""

    dhash: int
    thumb: np.ndarray  # 8 x 8 x 3 float32

    def distance(self, other: Signature) -> int:
        """Hamming distance of the two hashes (0..64)."""
        return (self.dhash ^ other.dhash).bit_count()

    def close_colours(self, other: Signature) -> bool:
        return float(np.abs(self.thumb - other.thumb).mean()) <= THUMB_TOLERANCE


def signature(rgb: np.ndarray | bytes | bytearray, width: int = 0, height: int = 0) -> Signature:
    """The frame's `Signature`; `rgb` is an H x W x 3 uint8 array, or raw rgb24 bytes of `width` x `height`.

    dHash: the frame's luma reduced to 9 x 8, each bit says whether a pixel is brighter than its right
    neighbour (row-major, 64 bits).
    """
    if isinstance(rgb, (bytes, bytearray)):
        image = Image.frombuffer("RGB", (width, height), bytes(rgb), "raw", "RGB", 0, 1)
    else:
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    reduced = np.asarray(image.resize((_REDUCED, _REDUCED), Image.Resampling.BOX), dtype=np.float32)
    # 72 = 9 x 8 = 8 x 9: block means give both sizes exactly.
    luma = reduced @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grid = luma.reshape(8, 9, 9, 8).mean(axis=(1, 3))  # 8 rows x 9 columns
    bits = (grid[:, 1:] > grid[:, :-1]).ravel()
    dhash = int.from_bytes(np.packbits(bits).tobytes(), "big")
    thumb = reduced.reshape(8, 9, 8, 9, 3).mean(axis=(1, 3))
    return Signature(dhash, thumb.astype(np.float32))


def is_blank(stats: dict[str, Any], blank_std_max: float = DEFAULT_BLANK_STD_MAX) -> bool:
    """Whether a frame with these `frame_stats` is blank (largest per-channel std not above the bound).
    An undecodable frame (std None) is not blank: the frames gate reports it."""
    std = stats.get("std")
    return std is not None and float(std) <= blank_std_max


@dataclasses.dataclass(frozen=True)
class ContentRules:
    """The thresholds of the content rules (the run's `IngestParams` carry them)."""

    blank_std_max: float = DEFAULT_BLANK_STD_MAX
    dedupe_distance: int | None = DEFAULT_DEDUPE_DISTANCE  # None: no deduplication


class ContentFilter:
    """Judges the frames of one segment in bundle order (`judge`): blank, or a repeat of which frame."""

    def __init__(self, rules: ContentRules | None = None) -> None:
        self.rules = rules or ContentRules()
        self._kept: tuple[int, Signature] | None = None

    def judge(self, index: int, stats: dict[str, Any], sig: Signature | None) -> tuple[bool, int | None]:
        """(blank, duplicate_of) for frame `index` (frames in bundle order); a kept frame becomes the
        reference the next ones are compared with. `sig` None (not hashed): the frame is kept."""
        if is_blank(stats, self.rules.blank_std_max):
            return True, None
        distance = self.rules.dedupe_distance
        if sig is not None and distance is not None and self._kept is not None:
            kept_index, kept = self._kept
            if sig.distance(kept) <= distance and sig.close_colours(kept):
                return False, kept_index
        self._kept = (index, sig) if sig is not None else None
        return False, None
