"""Tracks across sampled frames (`vidsearch.tracking`): association, gaps, labels, stitching, ids."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
from vidsearch.records import TRACK_NAMESPACE
from vidsearch.tracking import (
    FrameDetections,
    TrackEnd,
    TrackerConfig,
    iou_matrix,
    segment_track_ends,
    stitch,
    track_ids,
    track_key,
    track_segment,
)

DIM = 16
RNG = np.random.default_rng(0)
LOOKS = RNG.normal(size=(4, DIM))
LOOKS /= np.linalg.norm(LOOKS, axis=1, keepdims=True)


def look(k: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    v = LOOKS[k] + noise * np.random.default_rng(seed).normal(size=DIM) / np.sqrt(DIM)
    return v / np.linalg.norm(v)


def box(x: float, y: float = 100.0, w: float = 60.0, h: float = 150.0) -> list[float]:
    return [x, y, x + w, y + h]


def frame(pts: float, *dets: tuple[list[float], np.ndarray, str]) -> FrameDetections:
    return FrameDetections(
        pts_s=pts,
        boxes=np.array([d[0] for d in dets], dtype=float).reshape(-1, 4),
        embeddings=np.array([d[1] for d in dets], dtype=float).reshape(-1, DIM),
        labels=[d[2] for d in dets],
    )


@dataclasses.dataclass(frozen=True)
class Member:
    object_id: str
    segment_index: int
    pts_s: float
    track: int | None


def test_iou_matrix() -> None:
    iou = iou_matrix(np.array([box(0), box(1000)]), np.array([box(0), box(30), [5, 5, 5, 5]]))
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(1.0) and iou[0, 1] == pytest.approx(1 / 3)
    assert iou[1, 0] == 0 and iou[0, 2] == 0  # no area: no overlap


def test_crossing_paths_keep_identities_appearance_decides() -> None:
    """At 1 fps two walkers move more than their width per frame and meet in the same box: the boxes
    cannot tell them apart there, their looks do."""
    xs = [100, 300, 500, 700, 900]
    frames = []
    for i, (a, b) in enumerate(zip(xs, reversed(xs))):
        dets = [(box(a), look(0, 0.3, 2 * i), "person"), (box(b), look(1, 0.3, 2 * i + 1), "person")]
        frames.append(frame(float(i), *(dets if i % 2 else dets[::-1])))  # rows in varying order
    tracks = track_segment(frames)
    # Frame 0 lists b first (track 0), then a (track 1); every later frame must keep those identities.
    expected = []
    for i in range(5):
        expected += [1, 0] if i % 2 else [0, 1]
    assert tracks == expected
    # Without motion prediction no box overlaps the next one: appearance alone carries the tracks.
    assert track_segment(frames, TrackerConfig(predict_motion=False)) == expected


def test_boxes_decide_between_look_alikes_that_overlap() -> None:
    """Two objects that look the same, standing apart: each continues in its own place."""
    frames = [frame(float(i), (box(100), look(0), "car"), (box(600), look(0), "car")) for i in range(4)]
    assert track_segment(frames) == [0, 1] * 4


def test_an_occlusion_within_max_gap_resumes_and_a_longer_one_starts_a_new_track() -> None:
    cfg = TrackerConfig(max_gap=2)
    seen = frame(0.0, (box(100), look(0), "person"))

    def run(hidden: int) -> list[int]:
        frames = [dataclasses.replace(seen, pts_s=float(i)) for i in range(3)]
        frames += [frame(3.0 + i) for i in range(hidden)]
        frames.append(dataclasses.replace(seen, pts_s=3.0 + hidden))
        return track_segment(frames, cfg)

    assert run(hidden=2) == [0, 0, 0, 0]  # skipped 2 sampled frames: <= max_gap
    assert run(hidden=3) == [0, 0, 0, 1]  # skipped 3: the track had ended


def test_label_mismatch_is_not_associated() -> None:
    frames = [frame(0.0, (box(100), look(0), "car")), frame(1.0, (box(100), look(0), "truck"))]
    assert track_segment(frames) == [0, 1]
    assert track_segment(frames, TrackerConfig(label_must_match=False)) == [0, 0]


def test_unrelated_detections_far_apart_start_new_tracks() -> None:
    frames = [frame(0.0, (box(100), look(0), "person")), frame(1.0, (box(900), look(1), "person"))]
    assert track_segment(frames) == [0, 1]


def test_tracks_are_numbered_by_first_member_then_row() -> None:
    frames = [
        frame(0.0, (box(100), look(0), "person"), (box(400), look(1), "person")),
        frame(1.0, (box(800), look(2), "dog"), (box(400), look(1), "person"), (box(100), look(0), "person")),
        frame(2.0, (box(1200), look(3), "car"), (box(800), look(2), "dog")),
    ]
    assert track_segment(frames) == [0, 1, 2, 1, 0, 3, 2]


def test_empty_input_frames_without_detections_and_one_detection() -> None:
    assert track_segment([]) == []
    assert track_segment([frame(0.0), frame(1.0)]) == []
    assert track_segment([frame(0.0), frame(1.0, (box(10), look(0), "cat")), frame(2.0)]) == [0]
    ending, starting = segment_track_ends(0, [frame(0.0)], [])
    assert ending == [] and starting == []
    assert stitch([], []) == []
    assert track_ids("v", [], []) == []


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="time order"):
        track_segment([frame(1.0), frame(0.0)])
    with pytest.raises(ValueError, match="shape"):
        FrameDetections(0.0, np.zeros((2, 4)), np.zeros((1, DIM)), ["a", "b"])
    with pytest.raises(ValueError):
        TrackerConfig(max_gap=-1)
    with pytest.raises(ValueError):
        TrackerConfig(iou_threshold=1.5)


def _walk(segment: int, start_pts: float, n: int = 5) -> list[FrameDetections]:
    """One person walking 150 px per frame, and a parked car, for `n` frames of one segment."""
    frames = []
    for i in range(n):
        t = start_pts + i
        frames.append(
            frame(
                t,
                (box(50 + 150 * t, 200), look(0, 0.3, int(10 * t)), "person"),
                (box(600, 500, 200, 100), look(2, 0.3, int(10 * t) + 1), "car"),
            )
        )
    return frames


def _video(segments: int = 3) -> tuple[list[Member], list[tuple[str, str]]]:
    members: list[Member] = []
    ends = []
    for k in range(segments):
        frames = _walk(k, 5.0 * k)
        tracks = track_segment(frames)
        ends.append(segment_track_ends(k, frames, tracks))
        flat = iter(tracks)
        for i, f in enumerate(frames):
            members += [Member(f"obj-{k}-{i}-{j}", k, f.pts_s, next(flat)) for j in range(len(f.labels))]
    pairs = [p for k in range(segments - 1) for p in stitch(ends[k][0], ends[k + 1][1])]
    return members, pairs


def test_a_track_spanning_three_segments_stitches_into_one_id() -> None:
    members, pairs = _video(3)
    assert sorted(pairs) == [("0/0", "1/0"), ("0/1", "1/1"), ("1/0", "2/0"), ("1/1", "2/1")]
    ids = track_ids("video-1", members, pairs)
    person = {ids[i] for i, m in enumerate(members) if m.object_id.endswith("-0")}
    car = {ids[i] for i, m in enumerate(members) if m.object_id.endswith("-1")}
    assert person == {str(uuid.uuid5(TRACK_NAMESPACE, "video-1/obj-0-0-0"))}
    assert car == {str(uuid.uuid5(TRACK_NAMESPACE, "video-1/obj-0-0-1"))}
    # Without the stitch pairs every segment's tracks are their own.
    assert len(set(track_ids("video-1", members, []))) == 6


def test_stitch_is_one_to_one_and_respects_labels_and_time() -> None:
    end = TrackEnd("0/0", 9.0, np.array(box(100)), look(0), "person")
    twin = TrackEnd("0/1", 9.0, np.array(box(110)), look(0), "person")
    start = TrackEnd("1/0", 10.0, np.array(box(105)), look(0), "person")
    assert len(stitch([end, twin], [start])) == 1
    assert stitch([end], [dataclasses.replace(start, label="dog")]) == []
    assert stitch([end], [dataclasses.replace(start, pts_s=8.0)]) == []  # begins before the end
    assert stitch([end], [dataclasses.replace(start, box=np.array(box(900)), embedding=look(1))]) == []


def test_only_tracks_near_a_boundary_are_stitch_candidates() -> None:
    cfg = TrackerConfig(max_gap=1)
    frames = [frame(float(i)) for i in range(6)]
    frames[0] = frame(0.0, (box(0), look(0), "person"))  # starts at the start, ends 5 frames early
    frames[4] = frame(4.0, (box(500), look(1), "dog"))  # starts late, ends 1 frame before the end
    ending, starting = segment_track_ends(3, frames, track_segment(frames, cfg), cfg)
    assert [e.key for e in ending] == [track_key(3, 1)]
    assert [s.key for s in starting] == [track_key(3, 0)]
    assert np.linalg.norm(ending[0].embedding) == pytest.approx(1.0)


def test_same_input_same_tracks_and_ids_whatever_the_order_of_members_and_pairs() -> None:
    members, pairs = _video(3)
    again_members, again_pairs = _video(3)
    assert (members, pairs) == (again_members, again_pairs)
    ids = track_ids("v", members, pairs)
    shuffled = list(reversed(members))
    assert track_ids("v", shuffled, list(reversed(pairs))) == list(reversed(ids))
    assert track_ids("v", members, pairs) == ids
    assert track_ids("other-video", members, pairs) != ids
    untracked = [*members, Member("x", 0, 0.0, None)]
    assert track_ids("v", untracked, pairs)[-1] is None
