"""Objects followed across sampled frames: segment-local tracks, stitched across segment boundaries.

A person walking through a street camera for 20 s at 1 fps is 20 detections; this module says which of
them are the same object. Pure numpy/scipy, no models, no I/O: the worker calls `track_segment` on one
segment's sampled frames after embedding; whoever holds every segment of a video stitches their tracks
(`segment_track_ends`, `stitch`) and names the stitched tracks (`track_ids`).

Association (one sampled frame at a time, in time order)
    Every live track (last seen at most `max_gap` sampled frames ago) is compared with every detection of
    the frame:

    - box overlap: IoU of the detection's box with the track's *predicted* box (its last box moved by its
      last observed velocity, per sampled frame; `predict_motion`);
    - appearance: cosine similarity of the detection's (L2-normalised) crop embedding with the track's
      appearance, an exponential moving average of its members' embeddings (`appearance_momentum`),
      re-normalised.

    A pair is admissible only when `iou >= iou_threshold` OR `cosine >= cosine_threshold`, and (with
    `label_must_match`) the detector labels are equal. Its cost is

        cost = iou_weight * (1 - iou) + cosine_weight * (1 - cosine)

    and the frame's one-to-one assignment is the minimum-cost one over admissible pairs (Hungarian
    algorithm, `scipy.optimize.linear_sum_assignment`; inadmissible pairs carry a prohibitive cost and are
    dropped from the solution). A detection left unmatched starts a new track; a track not matched in
    more than `max_gap` consecutive sampled frames has ended (a track may skip up to `max_gap` frames,
    an occlusion, and resume).

Why not a library tracker
    `supervision.ByteTrack` (deprecated since supervision 0.28 in favour of Roboflow's `trackers`) and
    SORT associate on IoU with a Kalman-filter motion model tuned for video frame rates (its
    `lost_track_buffer` is counted in 30 fps frames). At the 1 fps we sample, a walking person moves more
    than its own width between samples: consecutive boxes do not overlap, the Kalman filter has no
    velocity to go on after one step, and IoU-only association breaks every track at every step. ByteTrack
    takes no appearance features; DeepSORT-style trackers (`trackers.DeepSORTTracker`) compute their own
    re-identification embeddings from the frames and gate appearance by Kalman (Mahalanobis) distance,
    which rejects the large 1 fps jumps, while we already hold CLIP crop embeddings. And each keeps
    global, stateful id counters, whereas we need deterministic segment-local numbering and stitching
    across independently processed segments. So association here is our own, ~150 lines, with appearance
    able to carry a match on its own (the OR gate) when boxes no longer overlap.

Stitching (across segment boundaries)
    A track whose last member lies within `max_gap` sampled frames of the end of segment k may continue a
    track whose first member lies within `max_gap` sampled frames of the start of segment k+1
    (`segment_track_ends`). `stitch` pairs them one-to-one with the same gate and cost (no motion
    prediction: a `TrackEnd` holds one box) and the Hungarian algorithm. `track_ids` joins the stitched
    pairs (union-find over track keys) and names every stitched track
    `records.track_id_of(video_id, first object id)`, the first object being the earliest member
    of the whole stitched track: a re-run over the same detections gives the same ids.

Everything is deterministic: the same input gives the same tracks, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from vidsearch.records import track_id_of

# Fixed forever: track ids derived from it are stored.

# The cost given to inadmissible pairs: larger than any admissible cost (at most iou_weight + 2 * cosine_weight).
_FORBIDDEN = 1e9


@dataclass(frozen=True)
class TrackerConfig:
    """How detections are associated into tracks (docs/tracking.md gives the reasons for each default).

    Attributes:
        iou_threshold: a pair is admissible when the IoU of the detection and the track's predicted box is
            at least this (or when the cosine gate holds).
        cosine_threshold: a pair is admissible when the cosine of the detection's embedding and the track's
            appearance is at least this (or when the IoU gate holds). At 1 fps this is what carries a track
            when boxes no longer overlap.
        iou_weight: weight of (1 - IoU) in the cost.
        cosine_weight: weight of (1 - cosine) in the cost.
        max_gap: a track may skip at most this many sampled frames (an occlusion, a missed detection) and
            resume; after a longer gap it has ended and a later detection starts a new track.
        label_must_match: only detections with the same detector label are associated.
        predict_motion: compare with the track's last box moved by its last velocity (constant velocity per
            sampled frame) rather than with its last box.
        appearance_momentum: a track's appearance is `m * appearance + (1 - m) * embedding` after each
            member (re-normalised); 0 keeps only the last member's embedding.
    """

    iou_threshold: float = 0.5
    cosine_threshold: float = 0.75
    iou_weight: float = 0.5
    cosine_weight: float = 1.0
    max_gap: int = 5
    label_must_match: bool = True
    predict_motion: bool = True
    appearance_momentum: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if not -1.0 <= self.cosine_threshold <= 1.0:
            raise ValueError(f"cosine_threshold must be in [-1, 1], got {self.cosine_threshold}")
        if self.iou_weight < 0 or self.cosine_weight < 0:
            raise ValueError("iou_weight and cosine_weight must be >= 0")
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if not 0.0 <= self.appearance_momentum < 1.0:
            raise ValueError(f"appearance_momentum must be in [0, 1), got {self.appearance_momentum}")


@dataclass(frozen=True)
class FrameDetections:
    """The detections of one sampled frame.

    Attributes:
        pts_s: the frame's presentation time (seconds).
        boxes: (n, 4) pixel boxes x0, y0, x1, y1.
        embeddings: (n, d) L2-normalised crop embeddings, row i <-> boxes[i].
        labels: the n detector labels.
    """

    pts_s: float
    boxes: np.ndarray
    embeddings: np.ndarray
    labels: Sequence[str]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.boxes.shape != (n, 4):
            raise ValueError(f"boxes have shape {self.boxes.shape} for {n} labels")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings have shape {self.embeddings.shape} for {n} labels")


@dataclass(frozen=True)
class TrackEnd:
    """One end of a segment-local track, as stitching sees it.

    Attributes:
        key: names the segment-local track (`track_key(segment_index, track)`).
        pts_s: time of the end member (the last member of an ending track, the first of a starting one).
        box: (4,) that member's box.
        embedding: (d,) the track's appearance (L2-normalised).
        label: the track's detector label.
    """

    key: str
    pts_s: float
    box: np.ndarray
    embedding: np.ndarray
    label: str


@dataclass
class _Track:
    label: str
    last: int  # position of its last member in the frame sequence
    box: np.ndarray
    appearance: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of boxes x0, y0, x1, y1 (0 where a box has no area)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _normalise(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _assign(
    boxes_a: np.ndarray,
    emb_a: np.ndarray,
    labels_a: Sequence[str],
    boxes_b: np.ndarray,
    emb_b: np.ndarray,
    labels_b: Sequence[str],
    cfg: TrackerConfig,
) -> list[tuple[int, int]]:
    """The admissible minimum-cost one-to-one pairs (i, j) of a-rows and b-rows, sorted by i."""
    if not len(labels_a) or not len(labels_b):
        return []
    from scipy.optimize import linear_sum_assignment  # imported here: `--help` stays light

    iou = iou_matrix(boxes_a, boxes_b)
    cosine = np.clip(np.asarray(emb_a, dtype=np.float64) @ np.asarray(emb_b, dtype=np.float64).T, -1.0, 1.0)
    admissible = (iou >= cfg.iou_threshold) | (cosine >= cfg.cosine_threshold)
    if cfg.label_must_match:
        admissible &= np.asarray(labels_a, dtype=object)[:, None] == np.asarray(labels_b, dtype=object)[None, :]
    if not admissible.any():
        return []
    cost = cfg.iou_weight * (1.0 - iou) + cfg.cosine_weight * (1.0 - cosine)
    cost = np.where(admissible, cost, _FORBIDDEN)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if admissible[i, j]]


def track_segment(frames: Sequence[FrameDetections], cfg: TrackerConfig = TrackerConfig()) -> list[int]:
    """Associate the detections of one segment's sampled frames into tracks.

    Args:
        frames: the segment's sampled frames in time order (frames without detections included: they
            count towards a track's gap).
        cfg: association parameters.

    Returns:
        For every detection, flattened in input order (frame by frame, row by row), its segment-local
        track index; tracks are numbered 0..n-1 by their first member in time order, then by row.

    Raises:
        ValueError: when the frames are not in time order or disagree on the embedding dimension.
    """
    result: list[int] = []
    tracks: list[_Track] = []
    previous_pts = -np.inf
    dim: int | None = None
    for position, frame in enumerate(frames):
        if frame.pts_s < previous_pts:
            raise ValueError(f"frames are not in time order: {frame.pts_s} after {previous_pts}")
        previous_pts = frame.pts_s
        n = len(frame.labels)
        if n == 0:
            continue
        if dim is None:
            dim = frame.embeddings.shape[1]
        elif frame.embeddings.shape[1] != dim:
            raise ValueError(f"embedding dimension {frame.embeddings.shape[1]} after {dim}")
        boxes = np.asarray(frame.boxes, dtype=np.float64)
        embeddings = np.asarray(frame.embeddings, dtype=np.float64)

        live = [t for t, track in enumerate(tracks) if position - track.last - 1 <= cfg.max_gap]
        predicted = np.array(
            [
                tracks[t].box + (tracks[t].velocity * (position - tracks[t].last) if cfg.predict_motion else 0.0)
                for t in live
            ]
        ).reshape(-1, 4)
        appearance = np.array([tracks[t].appearance for t in live]).reshape(len(live), dim)
        pairs = _assign(predicted, appearance, [tracks[t].label for t in live], boxes, embeddings, frame.labels, cfg)

        assigned = [-1] * n
        for i, j in pairs:
            t = live[i]
            track = tracks[t]
            step = position - track.last
            track.velocity = (boxes[j] - track.box) / step
            track.box = boxes[j]
            m = cfg.appearance_momentum
            track.appearance = _normalise(m * track.appearance + (1.0 - m) * embeddings[j])
            track.last = position
            assigned[j] = t
        for j in range(n):
            if assigned[j] < 0:
                assigned[j] = len(tracks)
                tracks.append(_Track(str(frame.labels[j]), position, boxes[j], _normalise(embeddings[j].copy())))
        result.extend(assigned)
    return result


def track_key(segment_index: int, track: int) -> str:
    """The key naming segment-local track `track` of segment `segment_index` (stitching, `track_ids`)."""
    return f"{segment_index}/{track}"


def segment_track_ends(
    segment_index: int,
    frames: Sequence[FrameDetections],
    tracks: Sequence[int],
    cfg: TrackerConfig = TrackerConfig(),
) -> tuple[list[TrackEnd], list[TrackEnd]]:
    """The tracks of one segment that may continue across its boundaries.

    Args:
        segment_index: the segment (its tracks' keys are `track_key(segment_index, track)`).
        frames: the frames `track_segment` was given.
        tracks: what it returned.
        cfg: `max_gap` says how near a boundary a track must end (or start).

    Returns:
        (ending, starting): the tracks whose last member lies within `max_gap` sampled frames of the
        segment's last frame (each with its last member's pts and box), and those whose first member lies
        within `max_gap` frames of its first frame (with their first member's); the embedding is the
        track's mean appearance (a single crop's embedding is noisier). Both in track order.
    """
    members: dict[int, list[PartMember]] = {}
    flat = iter(tracks)
    for position, frame in enumerate(frames):
        for j in range(len(frame.labels)):
            members.setdefault(next(flat), []).append(
                PartMember(
                    position,
                    frame.pts_s,
                    np.asarray(frame.boxes[j], dtype=np.float64),
                    frame.embeddings[j],
                    frame.labels[j],
                )
            )
    if next(flat, None) is not None:
        raise ValueError("more track indices than detections")
    return track_ends(segment_index, members, len(frames) - 1, cfg)


class PartMember(NamedTuple):
    """One member of a segment-local track, as stitching reads it."""

    position: int  # the sampled frame's position in the segment
    pts_s: float
    box: np.ndarray
    embedding: np.ndarray
    label: str


def track_ends(
    segment_index: int,
    tracks: Mapping[int, Sequence[PartMember]],
    last_position: int,
    cfg: TrackerConfig = TrackerConfig(),
) -> tuple[list[TrackEnd], list[TrackEnd]]:
    """`segment_track_ends` from the segment's tracks themselves ({track: its members in time order};
    `last_position`: the segment's last sampled frame): what finalize uses, from the stores."""
    ending: list[TrackEnd] = []
    starting: list[TrackEnd] = []
    for track in sorted(tracks):
        found = tracks[track]
        appearance = _normalise(np.mean([np.asarray(m.embedding, dtype=np.float64) for m in found], axis=0))
        key = track_key(segment_index, track)
        first, last = found[0], found[-1]
        if last_position - last.position <= cfg.max_gap:
            ending.append(TrackEnd(key, last.pts_s, last.box, appearance, last.label))
        if first.position <= cfg.max_gap:
            starting.append(TrackEnd(key, first.pts_s, first.box, appearance, first.label))
    return ending, starting


def stitch(
    ending: Sequence[TrackEnd],
    starting: Sequence[TrackEnd],
    cfg: TrackerConfig = TrackerConfig(),
) -> list[tuple[str, str]]:
    """Which tracks ending at a segment boundary continue as which tracks starting after it.

    Args:
        ending: the tracks that reach the end of segment k (their last member).
        starting: the tracks that begin at the start of segment k+1 (their first member).
        cfg: the same gate and cost as within a segment (box IoU without motion prediction).

    Returns:
        (ending key, starting key) pairs, one-to-one, a starting member never earlier than the ending
        one, sorted by ending key order of `ending`.
    """
    if not ending or not starting:
        return []
    pairs = _assign(
        np.array([e.box for e in ending], dtype=np.float64),
        np.array([_normalise(np.asarray(e.embedding, dtype=np.float64)) for e in ending]),
        [e.label for e in ending],
        np.array([s.box for s in starting], dtype=np.float64),
        np.array([_normalise(np.asarray(s.embedding, dtype=np.float64)) for s in starting]),
        [s.label for s in starting],
        cfg,
    )
    return [(ending[i].key, starting[j].key) for i, j in pairs if starting[j].pts_s >= ending[i].pts_s]


class TrackMember(Protocol):
    """What `track_ids` reads of a tracked detection (`vidsearch.records.DetectedObject` has it)."""

    @property
    def object_id(self) -> str: ...
    @property
    def segment_index(self) -> int: ...
    @property
    def pts_s(self) -> float: ...
    @property
    def track(self) -> int | None: ...


def track_ids(video_id: str, members: Sequence[TrackMember], pairs: Sequence[tuple[str, str]]) -> list[str | None]:
    """The final track id of every member of a video's tracks.

    Args:
        video_id: the video.
        members: every tracked detection of the video (any order), with its segment-local track.
        pairs: the stitch pairs of every boundary (`stitch`), keys from `track_key`.

    Returns:
        For each member, in input order, `records.track_id_of(video_id, first object id)` of
        its stitched track (the segment-local tracks joined by `pairs`), the first object being the
        track's earliest member (by pts, then object id); None for a member without a track.
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while key != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # deterministic whatever the pair order

    keys = [None if m.track is None else track_key(m.segment_index, m.track) for m in members]
    first: dict[str, tuple[float, str]] = {}
    for member, key in zip(members, keys):
        if key is None:
            continue
        root = find(key)
        candidate = (member.pts_s, member.object_id)
        if root not in first or candidate < first[root]:
            first[root] = candidate
    return [None if key is None else track_id_of(video_id, first[find(key)][1]) for key in keys]
