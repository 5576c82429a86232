"""Content-aware sampling: `scenes` finds the cuts, and every mode marks blank frames and repeats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vidsearch.media import content, frames, probe, split, synth
from vidsearch.records import FrameBundle, FrameRef

FPS = 25
# (kind, seconds): cuts at 2, 3, 5, 7 and 8 s. Keyframes every 1.6 s (no scene-cut keyframes), split
# every 3 s: segments [0, 3.2), [3.2, 6.4), [6.4, 9.6); no cut lies on a segment boundary.
SCENES = [("bars", 2.0), ("black", 1.0), ("rgb", 2.0), ("boxes", 2.0), ("testsrc", 1.0), ("yuv", 1.6)]
CUTS = [2.0, 3.0, 5.0, 7.0, 8.0]
STILL = {"bars": (0.0, 2.0), "rgb": (3.0, 5.0), "yuv": (8.0, 9.6)}
FRAME = 1 / FPS


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scenes")
    video = synth.make_scene_video(root / "cuts.mp4", SCENES, 320, 180, str(FPS), gop_frames=40)
    manifest = probe.probe_video(video)
    segments = split.run_split(video, manifest, 3.0, None, str(root / "segments"))
    return video, manifest, segments


def _sample(cut_video, tmp_path: Path, sampling: str, sample_fps: float, **kwargs) -> list[FrameBundle]:
    _, manifest, segments = cut_video
    return [
        frames.run_frames(
            s,
            sample_fps,
            str(tmp_path / f"{sampling}-{s.name}.zip"),
            video_start_s=manifest.start_time_s,
            sampling=sampling,
            **kwargs,
        )
        for s in segments
    ]


def test_scenes_mark_a_frame_at_every_cut_and_keep_the_floor_rate(cut_video, tmp_path: Path) -> None:
    _, manifest, segments = cut_video
    assert [s.start_s for s in segments] == pytest.approx([0.0, 3.2, 6.4], abs=0.002)
    bundles = _sample(cut_video, tmp_path, "scenes", 1.0)
    refs = [f for b in bundles for f in b.frames]
    times = [f.pts_s for f in refs]
    assert times == sorted(set(times))
    starts = [f.pts_s for f in refs if f.scene_start]
    # The video's first frame, then one frame at each cut (exactly the cut's first frame: within one
    # frame), and nothing else.
    assert len(starts) == 1 + len(CUTS)
    assert starts[0] == 0.0
    for cut, start in zip(CUTS, starts[1:]):
        assert abs(start - cut) < FRAME / 2 + 0.0011, (cut, starts)
    # The floor: the 1 fps grid's frames are all there (and each segment's first frame), so no gap
    # between kept frames is longer than 1 s.
    grid = [f.pts_s for b in _sample(cut_video, tmp_path, "fps", 1.0) for f in b.frames]
    assert set(grid) <= set(times)
    assert max(b - a for a, b in zip(times, times[1:])) <= 1.0 + 1e-6
    assert {b.frames[0].pts_s for b in bundles} == {s.start_s for s in segments}
    assert all(b.sampling == "scenes" for b in bundles)
    # Deterministic: the same segment gives the same bundle record.
    again = _sample(cut_video, tmp_path, "scenes", 1.0)
    assert [b.frames for b in again] == [b.frames for b in bundles]


def test_scene_threshold_is_configurable(cut_video, tmp_path: Path) -> None:
    loose = [f for b in _sample(cut_video, tmp_path, "scenes", 1.0, scene_threshold=0.99) for f in b.frames]
    # A threshold no cut reaches leaves the floor grid, the segment starts and the video's start.
    assert [f.pts_s for f in loose if f.scene_start] == [0.0]


def test_still_scenes_keep_one_frame_and_link_the_rest(cut_video, tmp_path: Path) -> None:
    bundles = _sample(cut_video, tmp_path, "fps", 5.0)
    for bundle in bundles:
        by_index = {f.index: f for f in bundle.frames}
        for f in bundle.frames:
            if f.duplicate_of is not None:
                kept = by_index[f.duplicate_of]
                # A repeat points at an earlier kept frame of the same segment and the same scene.
                assert kept.index < f.index and kept.detect
                assert _scene_of(kept.pts_s) == _scene_of(f.pts_s)
        for kind, (start, end) in STILL.items():
            still = [f for f in bundle.frames if start <= f.pts_s < end]
            if still:
                assert [f.detect for f in still] == [True] + [False] * (len(still) - 1), kind
                assert {f.duplicate_of for f in still[1:]} <= {still[0].index}
    refs = [f for b in bundles for f in b.frames]
    # The black second is blank, frame for frame, and blank frames are no one's repeat.
    black = [f for f in refs if 2.0 <= f.pts_s < 3.0]
    assert len(black) == 5 and all(f.blank and f.duplicate_of is None for f in black)
    assert not any(f.blank for f in refs if not 2.0 <= f.pts_s < 3.0)
    assert not any(f.duplicate_of in {b.index for b in black} for f in refs)
    # Moving boxes are never repeats of one another at 5 fps.
    assert all(f.detect for f in refs if 5.0 <= f.pts_s < 7.0)
    skipped = [b.frames_skipped() for b in bundles]
    assert sum(s["blank"] for s in skipped) == 5
    # Still pictures: 10 bars frames, 10 rgb (1 + 9 either side of the segment boundary at 3.2 s) and 8
    # yuv frames, one kept per scene and segment. testsrc (7-8 s) moves only a little: some of its frames
    # repeat too, and nothing else does.
    still = [f for f in refs if any(a <= f.pts_s < b for a, b in STILL.values())]
    assert sum(1 for f in still if f.duplicate_of is not None) == 9 + 8 + 7
    assert all(7.0 <= f.pts_s < 8.0 for f in refs if f.duplicate_of is not None and f not in still)
    assert sum(s["duplicate"] for s in skipped) == sum(1 for f in refs if f.duplicate_of is not None)


def test_dedupe_can_be_turned_off_and_keyframes_keep_their_pts(cut_video, tmp_path: Path) -> None:
    off = _sample(cut_video, tmp_path, "fps", 5.0, content=content.ContentRules(dedupe_distance=None))
    assert all(f.duplicate_of is None for b in off for f in b.frames)
    assert sum(b.frames_skipped()["blank"] for b in off) == 5
    # Keyframe sampling is unchanged by the content rules: every keyframe, at its PTS (1.6 s GOP).
    keys = _sample(cut_video, tmp_path, "keyframes", 1.0)
    assert [f.pts_s for b in keys for f in b.frames] == pytest.approx([1.6 * i for i in range(6)], abs=0.0011)
    assert not any(f.scene_start for b in keys for f in b.frames)


def _scene_of(t: float) -> int:
    return sum(1 for cut in CUTS if t >= cut - 1e-6)


def test_signature_sees_structure_and_colour() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    sig = content.signature(frame)
    noisy = np.clip(frame.astype(int) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
    assert sig.distance(content.signature(noisy)) <= 4 and sig.close_colours(content.signature(noisy))
    assert sig.distance(content.signature(frame[:, ::-1])) > 16
    # Same layout, other colours: the luma hash may agree, the colour thumbnail does not.
    red, blue = np.zeros((90, 160, 3), np.uint8), np.zeros((90, 160, 3), np.uint8)
    red[:, :80, 0] = 200
    blue[:, :80, 2] = 200
    judge = content.ContentFilter()
    stats = {"std": 50.0}
    assert judge.judge(0, stats, content.signature(red)) == (False, None)
    assert judge.judge(1, stats, content.signature(blue)) == (False, None)
    assert judge.judge(2, stats, content.signature(blue)) == (False, 1)
    assert judge.judge(3, {"std": 0.0}, content.signature(blue)) == (True, None)
    assert content.signature(red).dhash == content.signature(red.tobytes(), 160, 90).dhash


def test_old_frame_refs_load_as_detected_frames() -> None:
    ref = FrameRef.model_validate({"index": 0, "pts_s": 1.0, "member": "000000.jpg"})
    assert (ref.blank, ref.duplicate_of, ref.scene_start, ref.detect) == (False, None, False, True)
