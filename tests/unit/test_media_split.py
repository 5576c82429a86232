"""split: contiguous keyframe-aligned segments by stream copy, time limit, parameter validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from vidsearch.errors import InputError
from vidsearch.media import ffmpeg as ff
from vidsearch.media import probe, split
from vidsearch.stores import storage

FRAME = 1001 / 30000


def _packets(path: str | Path) -> list[tuple[float, bool]]:
    """(pts_time, is_key) of every video packet, sorted by time."""
    doc = ff.ffprobe_json(
        ["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", ff.file_url(path)], timeout_s=60
    )
    return sorted((float(p["pts_time"]), "K" in p["flags"]) for p in doc["packets"])


def _decodes(path: str | Path) -> int:
    """Frames decoded from the whole file with -xerror (raises FFmpegError on any decode error)."""
    result = ff.ffmpeg(
        [
            "-xerror",
            "-i",
            ff.file_url(path),
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "null",
            "-progress",
            "pipe:1",
            "-",
        ],
        timeout_s=60,
    )
    frames = [int(x.split("=")[1]) for x in result.stdout.decode().splitlines() if x.startswith("frame=")]
    assert result.stderr.strip() == ""
    return frames[-1]


@pytest.fixture(scope="module")
def cfr_manifest(cfr_video: Path):
    return probe.probe_video(cfr_video)


# --- planning (pure) --------------------------------------------------------------------------------


def test_plan_without_limit() -> None:
    plan = split.plan_split(10.0, 3.0)
    assert plan.cut_points_s == (3.0, 6.0, 9.0) and plan.end_s == 10.0 and not plan.limited


def test_plan_exact_multiple_has_no_empty_tail() -> None:
    assert split.plan_split(9.0, 3.0).cut_points_s == (3.0, 6.0)


def test_plan_with_limit_cuts_at_the_limit() -> None:
    plan = split.plan_split(10.0, 3.0, 4.5)
    assert plan.limited and plan.end_s == 4.5 and plan.cut_points_s == (3.0, 4.5)
    assert not split.plan_split(10.0, 3.0, 20.0).limited


@pytest.mark.parametrize(
    ("segment_seconds", "limit"),
    [(0, None), (-1, None), (math.nan, None), (math.inf, None), ("10", None), (3.0, 0), (3.0, -5), (3.0, math.nan)],
)
def test_plan_rejects_bad_parameters(segment_seconds, limit) -> None:
    with pytest.raises(InputError):
        split.plan_split(10.0, segment_seconds, limit)


def test_plan_rejects_absurd_segment_count() -> None:
    with pytest.raises(InputError, match="segments"):
        split.plan_split(3600.0, 0.01)


def test_segment_bounds_are_contiguous_and_drop_files_past_the_end() -> None:
    bounds = split.segment_bounds([0.000001, 3.2, 6.4, 9.6], 8.0)
    assert bounds == [(0.0, 3.2), (3.2, 6.4), (6.4, 8.0)]
    with pytest.raises(ValueError):
        split.segment_bounds([0.0, 3.0, 3.0], 8.0)


def test_parse_segment_list() -> None:
    text = "seg0000.mkv,0.000000,3.203200\nseg0001.mkv,3.203200,6.006000\n"
    assert split.parse_segment_list(text) == [("seg0000.mkv", 0.0, 3.2032), ("seg0001.mkv", 3.2032, 6.006)]


# --- running ffmpeg ---------------------------------------------------------------------------------


def test_split_covers_the_video_contiguously(cfr_video: Path, cfr_manifest, tmp_path: Path) -> None:
    root = f"file://{tmp_path}/segments"
    segments = split.run_split(cfr_video, cfr_manifest, 3.0, None, root)
    assert [s.index for s in segments] == list(range(len(segments))) and len(segments) == 3
    assert segments[0].start_s == 0.0
    assert segments[-1].end_s == pytest.approx(cfr_manifest.duration_s, abs=1e-9)
    for a, b in zip(segments, segments[1:]):
        assert a.end_s == b.start_s
    assert sum(s.end_s - s.start_s for s in segments) == pytest.approx(cfr_manifest.duration_s, abs=FRAME)

    source_packets = _packets(cfr_video)
    keyframes = [t for t, key in source_packets if key]
    for segment, nominal in zip(segments[1:], (3.0, 6.0)):
        # The cut is the first keyframe at or after the nominal boundary (to the millisecond: Matroska).
        assert segment.start_s == pytest.approx(min(k for k in keyframes if k >= nominal - 1e-6), abs=0.0006)
        assert segment.uri == storage.join(root, f"{segment.name}.mkv")
    total = 0
    for segment in segments:
        local = storage.local_path(segment.uri)
        packets = _packets(local)
        # Original timestamps are kept (to the millisecond: Matroska), and the file starts on a keyframe.
        assert packets[0][1] and packets[0][0] == pytest.approx(segment.start_s, abs=0.0006)
        assert all(segment.start_s - 0.0006 <= t < segment.end_s for t, _ in packets)
        total += _decodes(local)
    # Stream copy: every source frame is in exactly one segment.
    assert total == len(source_packets) == cfr_manifest.frame_count


def test_split_honours_time_limit(cfr_video: Path, cfr_manifest, tmp_path: Path) -> None:
    segments = split.run_split(cfr_video, cfr_manifest, 3.0, 4.5, str(tmp_path / "segs"))
    assert [(s.start_s, s.end_s) for s in segments][0][0] == 0.0
    assert segments[-1].end_s == 4.5
    assert len(segments) == 2
    kept = sorted(t for s in segments for t, _ in _packets(storage.local_path(s.uri)))
    wanted = [t for t, _ in _packets(cfr_video) if t < 4.5]
    # Every frame before the limit is there; past it at most one GOP more.
    assert kept[: len(wanted)] == pytest.approx(wanted, abs=0.0006)
    assert len(kept) - len(wanted) <= 24
    # The copy stopped near the limit instead of running to the end of the video.
    assert max(kept) < 6.0


def test_time_limit_longer_than_video_is_ignored(cfr_video: Path, cfr_manifest, tmp_path: Path) -> None:
    segments = split.run_split(cfr_video, cfr_manifest, 5.0, 100.0, str(tmp_path / "segs"))
    assert segments[-1].end_s == pytest.approx(cfr_manifest.duration_s)


def test_segment_longer_than_video_gives_one_segment(cfr_video: Path, cfr_manifest, tmp_path: Path) -> None:
    segments = split.run_split(cfr_video, cfr_manifest, 100.0, None, str(tmp_path / "segs"))
    assert [(s.start_s, s.end_s) for s in segments] == [(0.0, cfr_manifest.duration_s)]
    assert _decodes(storage.local_path(segments[0].uri)) == cfr_manifest.frame_count


def test_sparse_keyframes_give_longer_segments(sparse_key_video: Path, tmp_path: Path) -> None:
    manifest = probe.probe_video(sparse_key_video)
    segments = split.run_split(sparse_key_video, manifest, 1.0, None, str(tmp_path / "segs"))
    assert len(segments) == 1
    assert (segments[0].start_s, segments[0].end_s) == (0.0, manifest.duration_s)
    assert _decodes(storage.local_path(segments[0].uri)) == manifest.frame_count


def test_segments_carry_rotation_and_start(rotated_video: Path, tmp_path: Path) -> None:
    manifest = probe.probe_video(rotated_video)
    segments = split.run_split(rotated_video, manifest, 1.0, None, str(tmp_path / "segs"))
    doc = ff.ffprobe_json(["-show_streams", ff.file_url(storage.local_path(segments[-1].uri))], timeout_s=30)
    tags = {k.upper(): v for k, v in doc["streams"][0]["tags"].items()}
    assert tags[split.ROTATION_TAG] == "90"
    assert float(tags[split.VIDEO_START_TAG]) == manifest.start_time_s


def test_split_rejects_bad_parameters(cfr_video: Path, cfr_manifest, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        split.run_split(cfr_video, cfr_manifest, 0, None, str(tmp_path))
    with pytest.raises(InputError):
        split.run_split(cfr_video, cfr_manifest, 2.0, -1, str(tmp_path))
