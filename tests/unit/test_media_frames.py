"""frames: exact, segmentation-independent sampling into one zip bundle per segment."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from vidsearch.errors import InputError, QualityGateError
from vidsearch.media import bundle as frame_bundle
from vidsearch.media import ffmpeg as ff
from vidsearch.media import frames, probe, split
from vidsearch.media.stats import frame_stats
from vidsearch.records import Segment

MS = 0.0011  # Matroska segments keep timestamps to the millisecond


def _frame_times(path: Path) -> list[float]:
    """PTS (s) of every decoded video frame of a file, as ffprobe -show_frames reports them."""
    doc = ff.ffprobe_json(
        ["-select_streams", "v:0", "-show_entries", "frame=pts_time", ff.file_url(path)], timeout_s=60
    )
    return sorted(float(f["pts_time"]) for f in doc["frames"])


def _decode_frame(path: Path, index: int, autorotate: bool = True) -> np.ndarray:
    """Frame number `index` (display order) of `path` as RGB, decoded by ffmpeg directly."""
    result = ff.ffmpeg(
        [
            "-i",
            ff.file_url(path),
            "-map",
            "0:v:0",
            "-vf",
            f"select=eq(n\\,{index})",
            "-fps_mode",
            "passthrough",
            "-frames:v",
            "1",
            "-pix_fmt",
            "rgb24",
            "-f",
            "image2pipe",
            "-c:v",
            "ppm",
            "pipe:1",
        ],
        timeout_s=60,
    )
    from io import BytesIO

    from PIL import Image

    return np.array(Image.open(BytesIO(result.stdout)).convert("RGB"))


def _expected(times: list[float], duration: float, fps: float, end: float | None = None) -> list[float]:
    """Reference sampling of the whole video from its true frame times."""
    end = duration if end is None else end
    return [times[i] for i in frames.select_frames(times, 0.0, end, fps)]


# --- the rule (pure) --------------------------------------------------------------------------------


def test_rule_picks_the_frame_on_screen_at_each_grid_time() -> None:
    pts = [i / 10 for i in range(30)]  # 10 fps, 3 s
    assert frames.select_frames(pts, 0.0, 3.0, 2.0) == [0, 5, 10, 15, 20, 25]
    uneven = [0.0, 0.4, 0.8, 1.2]
    # grid 0, 0.5, 1.0, 1.5 -> on screen: 0.0, 0.4, 0.8, 1.2 (shown until the end at 1.6)
    assert frames.select_frames(uneven, 0.0, 1.6, 2.0) == [0, 1, 2, 3]
    assert frames.select_frames(uneven, 0.0, 1.5, 2.0) == [0, 1, 2]  # 1.5 is not inside [0, 1.5)


def test_rule_keeps_each_frame_once_when_sampling_faster_than_the_video() -> None:
    assert frames.select_frames([0.0, 0.5, 1.0], 0.0, 1.5, 10.0) == [0, 1, 2]


def test_rule_is_independent_of_where_segments_are_cut() -> None:
    # VFR-ish timestamps; cut the range at every frame (keyframe-aligned cuts are frame times).
    pts = [round(0.013 * i + 0.02 * math.sin(i) ** 2, 6) for i in range(200)]
    pts = sorted(set(pts))
    end = pts[-1] + 0.02
    for fps in (1.0, 3.0, 29.97, 100.0):
        whole = frames.select_frames(pts, 0.0, end, fps)
        for cut in range(1, len(pts)):
            left = frames.select_frames(pts[:cut], 0.0, pts[cut], fps)
            right = frames.select_frames(pts[cut:], pts[cut], end, fps)
            assert left + [cut + i for i in right] == whole


def test_rule_tolerates_rounded_first_timestamp() -> None:
    # The file says 3.203, the segment (exact source time) starts at 3.2032.
    assert frames.select_frames([3.203, 3.236], 3.2032, 3.3, 100.0, start_tolerance_s=0.0005) == [0, 1]
    # Without the tolerance the first frame would be lost (the second would cover from the start).
    assert frames.select_frames([3.203, 3.236], 3.2032, 3.3, 100.0) == [1]


@pytest.mark.parametrize("fps", [0, -1.0, math.nan, math.inf])
def test_rule_rejects_bad_fps(fps: float) -> None:
    with pytest.raises(InputError):
        frames.select_frames([0.0], 0.0, 1.0, fps)


# --- end to end on a real video ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfr_run(cfr_video: Path, tmp_path_factory: pytest.TempPathFactory):
    """The CFR video split every 3 s and sampled at 2 fps: (manifest, segments, bundles)."""
    root = tmp_path_factory.mktemp("frames")
    manifest = probe.probe_video(cfr_video)
    segments = split.run_split(cfr_video, manifest, 3.0, None, str(root / "segments"))
    bundles = [
        frames.run_frames(
            s,
            2.0,
            str(root / "bundles" / f"{s.name}.zip"),
            video_start_s=manifest.start_time_s,
            expected_size=(manifest.width, manifest.height),
        )
        for s in segments
    ]
    return manifest, segments, bundles


def test_samples_are_exact_ordered_and_inside_their_segment(cfr_video: Path, cfr_run) -> None:
    manifest, segments, bundles = cfr_run
    assert len(segments) == 3
    all_pts = [f.pts_s for b in bundles for f in b.frames]
    # Grid 0, 0.5, ..., 8.0 inside an 8.008 s video.
    assert len(all_pts) == math.floor(manifest.duration_s * 2) + 1 == 17
    assert all(b > a for a, b in zip(all_pts, all_pts[1:]))
    for segment, bundle in zip(segments, bundles):
        assert bundle.segment_index == segment.index and bundle.video_id == manifest.video_id
        assert all(segment.start_s <= f.pts_s < segment.end_s for f in bundle.frames)
        assert [f.index for f in bundle.frames] == list(range(len(bundle.frames)))
    true_times = _frame_times(cfr_video)
    for pts in all_pts:
        assert min(abs(pts - t) for t in true_times) <= MS / 2 + 1e-9
    # Same frames as sampling the whole video at once (no duplicates, no gaps at the cuts).
    assert all_pts == pytest.approx(_expected(true_times, manifest.duration_s, 2.0), abs=MS)


def test_union_of_segments_equals_whole_video_extraction(cfr_video: Path, cfr_run, tmp_path: Path) -> None:
    manifest, _, bundles = cfr_run
    whole = Segment(video_id=manifest.video_id, index=0, start_s=0.0, end_s=manifest.duration_s, uri="unused")
    bundle = frames.extract_frames(cfr_video, whole, 2.0, tmp_path / "whole.zip", video_start_s=0.0, rotation=0)
    assert [f.pts_s for b in bundles for f in b.frames] == pytest.approx([f.pts_s for f in bundle.frames], abs=MS)


def test_bundle_format_and_readers(cfr_video: Path, cfr_run) -> None:
    manifest, _, bundles = cfr_run
    bundle = bundles[1]
    path = Path(bundle.uri)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert sorted(i.filename for i in infos) == sorted(
            [frame_bundle.BUNDLE_JSON] + [f.member for f in bundle.frames]
        )
    record, arrays = frame_bundle.read_bundle(bundle.uri)
    assert record == bundle
    assert len(arrays) == len(bundle.frames)
    assert all(a.dtype == np.uint8 and a.shape == (manifest.height, manifest.width, 3) for a in arrays)
    image = frame_bundle.read_frame(bundle.uri, 2)
    assert image.mode == "RGB" and image.size == (manifest.width, manifest.height)
    assert np.array_equal(np.array(image), arrays[2])
    # The pixels are those of the source frame with that timestamp (up to JPEG loss).
    n = round(bundle.frames[2].pts_s * 30000 / 1001)
    reference = _decode_frame(cfr_video, n).astype(int)
    assert np.abs(arrays[2].astype(int) - reference).mean() < 3.0
    other = _decode_frame(cfr_video, n + 5).astype(int)
    assert np.abs(arrays[2].astype(int) - other).mean() > np.abs(arrays[2].astype(int) - reference).mean()
    with pytest.raises(IndexError):
        frame_bundle.read_frame(bundle.uri, len(bundle.frames))


def test_sampling_faster_than_the_video_keeps_every_frame_once(cfr_run, tmp_path: Path) -> None:
    manifest, segments, _ = cfr_run
    segment = segments[0]
    from vidsearch.stores import storage

    bundle = frames.run_frames(segment, 60.0, str(tmp_path / "fast.zip"))
    in_segment = [t for t in _frame_times(storage.local_path(segment.uri)) if t < segment.end_s]
    assert len(bundle.frames) == len(in_segment)
    pts = [f.pts_s for f in bundle.frames]
    assert len(set(pts)) == len(pts)


def test_time_limit(cfr_video: Path, tmp_path: Path) -> None:
    manifest = probe.probe_video(cfr_video)
    segments = split.run_split(cfr_video, manifest, 3.0, 4.5, str(tmp_path / "segs"))
    pts = [
        f.pts_s
        for s in segments
        for f in frames.run_frames(s, 2.0, str(tmp_path / f"{s.name}.zip"), time_limit_s=4.5).frames
    ]
    assert len(pts) == 9 and max(pts) < 4.5  # grid 0, 0.5, ..., 4.0
    assert pts == pytest.approx(_expected(_frame_times(cfr_video), manifest.duration_s, 2.0, 4.5), abs=MS)


def test_rotated_video_frames_are_upright_and_display_sized(rotated_video: Path, tmp_path: Path) -> None:
    manifest = probe.probe_video(rotated_video)
    segments = split.run_split(rotated_video, manifest, 1.0, None, str(tmp_path / "segs"))
    # Rotation comes from the segment's tag: run_frames is not told.
    bundle = frames.run_frames(segments[-1], 4.0, str(tmp_path / "b.zip"), expected_size=(108, 192))
    assert (bundle.width, bundle.height) == (108, 192)
    _, arrays = frame_bundle.read_bundle(bundle.uri)
    assert arrays[0].shape == (192, 108, 3)
    n = round(bundle.frames[0].pts_s * 25)
    reference = _decode_frame(rotated_video, n).astype(int)  # ffmpeg autorotates
    assert reference.shape == arrays[0].shape
    assert np.abs(arrays[0].astype(int) - reference).mean() < 3.0


def test_vfr_video_sampling_matches_reference(vfr_video: Path, tmp_path: Path) -> None:
    manifest = probe.probe_video(vfr_video)
    segments = split.run_split(vfr_video, manifest, 1.0, None, str(tmp_path / "segs"))
    pts = [f.pts_s for s in segments for f in frames.run_frames(s, 10.0, str(tmp_path / f"{s.name}.zip")).frames]
    expected = _expected(_frame_times(vfr_video), manifest.duration_s, 10.0)
    assert pts == pytest.approx(expected, abs=MS)
    # 10 fps grid over ~4 s; some grid times fall in the same long (1/20 s) frame and are kept once.
    assert len(pts) == len(set(pts)) and 30 <= len(pts) <= 41


def test_segment_without_frames_in_range_gives_empty_bundle(cfr_run, tmp_path: Path) -> None:
    _, segments, _ = cfr_run
    s = segments[0]
    # Between two frames (0.0 and 0.0334): no frame starts in [0.01, 0.02).
    empty = s.model_copy(update={"start_s": 0.01, "end_s": 0.02})
    bundle = frames.run_frames(empty, 2.0, str(tmp_path / "empty.zip"))
    assert bundle.frames == []
    record, arrays = frame_bundle.read_bundle(bundle.uri)
    assert record.frames == [] and arrays == []


def test_bad_parameters(cfr_run, tmp_path: Path) -> None:
    _, segments, _ = cfr_run
    with pytest.raises(InputError):
        frames.run_frames(segments[0], 0.0, str(tmp_path / "x.zip"))
    with pytest.raises(QualityGateError):
        frames.run_frames(segments[0], 2.0, str(tmp_path / "x.zip"), expected_size=(640, 360))


# --- gate stats computed while extracting -----------------------------------------------------------


def test_stats_computed_while_extracting_are_frame_stats_of_the_frames(
    cfr_video: Path, cfr_run, tmp_path: Path
) -> None:

    _, segments, _ = cfr_run
    stats: list[dict] = []
    bundle = frames.run_frames(segments[1], 2.0, str(tmp_path / "s.zip"), stats=stats)
    assert len(stats) == len(bundle.frames) > 0
    # Exactly frame_stats of the RGB frames that were JPEG-encoded (ffmpeg's own rgb24 of the
    # source frame with that timestamp)...
    raw = [_decode_frame(cfr_video, round(f.pts_s * 30000 / 1001)) for f in bundle.frames]
    assert stats == frame_stats(raw)
    # ... and, up to JPEG loss, those of the decoded bundle, which the gate used to read back.
    _, arrays = frame_bundle.read_bundle(bundle.uri)
    for ours, decoded in zip(stats, frame_stats(arrays)):
        assert ours.keys() == decoded.keys()
        assert (ours["h"], ours["w"], ours["decoded"]) == (decoded["h"], decoded["w"], decoded["decoded"])
        assert ours["mean"] == pytest.approx(decoded["mean"], abs=1.0)
        assert ours["std"] == pytest.approx(decoded["std"], abs=1.5)


def test_extraction_output_does_not_depend_on_asking_for_stats(cfr_run, tmp_path: Path) -> None:
    _, segments, _ = cfr_run
    plain = frames.run_frames(segments[0], 3.0, str(tmp_path / "a.zip"))
    with_stats = frames.run_frames(segments[0], 3.0, str(tmp_path / "b.zip"), stats=[])
    assert [f.pts_s for f in plain.frames] == [f.pts_s for f in with_stats.frames]
    with zipfile.ZipFile(plain.uri) as a, zipfile.ZipFile(with_stats.uri) as b:
        assert all(a.read(f.member) == b.read(f.member) for f in plain.frames)
    assert plain.sampling == "fps"


# --- keyframe mode ----------------------------------------------------------------------------------

KEY_FPS, KEY_GOP = 25, 20  # a keyframe every 0.8 s


@pytest.fixture(scope="module")
def keyed(media_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """6 s at 25 fps, a keyframe every 20 frames, split every 2 s: (video, manifest, segments)."""
    from vidsearch.media import synth

    video = synth.make_video(media_dir / "keyed.mp4", 6.0, 192, 108, fps=str(KEY_FPS), audio=False, gop_frames=KEY_GOP)
    manifest = probe.probe_video(video)
    segments = split.run_split(video, manifest, 2.0, None, str(tmp_path_factory.mktemp("keyed") / "segments"))
    return video, manifest, segments


def _keyframe_times(path: Path) -> list[float]:
    """PTS (s) of the frames ffprobe decodes when it skips every non-key frame."""
    doc = ff.ffprobe_json(
        ["-skip_frame", "nokey", "-select_streams", "v:0", "-show_entries", "frame=pts_time", ff.file_url(path)],
        timeout_s=60,
    )
    return sorted(float(f["pts_time"]) for f in doc["frames"])


def _key_packet_times(path: Path) -> list[float]:
    """PTS (s) of the packets flagged K (keyframes) in a file, demux only."""
    doc = ff.ffprobe_json(
        ["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", ff.file_url(path)], timeout_s=60
    )
    return sorted(float(p["pts_time"]) for p in doc["packets"] if "K" in p.get("flags", ""))


def test_keyframe_mode_samples_every_keyframe_at_its_exact_pts(keyed, tmp_path: Path) -> None:
    from vidsearch.stores import storage

    video, manifest, segments = keyed
    assert len(segments) == 3
    bundles = [
        frames.run_frames(
            s, 1.0, str(tmp_path / f"{s.name}.zip"), video_start_s=manifest.start_time_s, sampling="keyframes"
        )
        for s in segments
    ]
    reference = _keyframe_times(video)
    assert reference == pytest.approx([i * KEY_GOP / KEY_FPS for i in range(len(reference))], abs=1e-6)
    assert [f.pts_s for b in bundles for f in b.frames] == pytest.approx(
        [t - manifest.start_time_s for t in reference], abs=MS
    )
    for segment, bundle in zip(segments, bundles):
        assert bundle.sampling == "keyframes" and bundle.sample_fps == 1.0
        assert [f.index for f in bundle.frames] == list(range(len(bundle.frames)))
        # Each segment's frames are exactly its file's key packets, the first one at its start.
        keys = _key_packet_times(storage.local_path(segment.uri))
        assert [f.pts_s for f in bundle.frames] == pytest.approx([k - manifest.start_time_s for k in keys], abs=MS)
        assert bundle.frames[0].pts_s == pytest.approx(segment.start_s, abs=MS)
        assert all(segment.start_s <= f.pts_s < segment.end_s for f in bundle.frames)


def test_keyframe_mode_decodes_only_keyframes(keyed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import re

    from vidsearch.stores import storage

    _, _, segments = keyed
    segment = segments[0]  # [0, 2.4): keyframes at 0, 0.8 and 1.6 of 60 frames
    real_stream = ff.stream
    decoded: list[int] = []

    @contextlib.contextmanager
    def counting_stream(args, **kwargs):
        # The same ffmpeg run, at verbose level: it then reports how many frames it decoded.
        kwargs["loglevel"] = "verbose"
        with real_stream(args, **kwargs) as handle:
            yield handle
        decoded.append(int(re.search(r"(\d+) frames decoded", handle.stderr_text()).group(1)))

    monkeypatch.setattr(ff, "stream", counting_stream)
    keys = frames.run_frames(segment, 2.0, str(tmp_path / "k.zip"), sampling="keyframes")
    grid = frames.run_frames(segment, 2.0, str(tmp_path / "g.zip"))
    key_packets = _key_packet_times(storage.local_path(segment.uri))
    assert len(keys.frames) == len(key_packets) == 3
    assert decoded[0] == len(key_packets)  # nothing but the keyframes went through the decoder
    # The grid decodes every frame up to its last sample (2.0 s at 25 fps: frame 50), and then stops
    # (a few more are in the decoder's threads by then) instead of decoding the segment's 60.
    assert len(grid.frames) == 5 and 51 <= decoded[1] < 60


def test_keyframe_mode_time_limit_and_stats(keyed, tmp_path: Path) -> None:
    _, _, segments = keyed
    stats: list[dict] = []
    bundle = frames.run_frames(
        segments[0], 1.0, str(tmp_path / "k.zip"), time_limit_s=1.0, sampling="keyframes", stats=stats
    )
    assert [f.pts_s for f in bundle.frames] == pytest.approx([0.0, 0.8], abs=MS)
    assert len(stats) == 2 and all(s["decoded"] and s["std"] > 0 for s in stats)
    with pytest.raises(InputError, match="sampling"):
        frames.run_frames(segments[0], 1.0, str(tmp_path / "x.zip"), sampling="bogus")


def test_bundles_record_their_sampling_mode_and_old_bundles_load() -> None:
    from vidsearch.records import FrameBundle

    old = {"video_id": "v", "segment_index": 0, "uri": "u", "width": 2, "height": 2, "sample_fps": 1.0, "frames": []}
    assert FrameBundle.model_validate(old).sampling == "fps"
    assert FrameBundle.model_validate({**old, "sampling": "keyframes"}).sampling == "keyframes"
    with pytest.raises(ValueError):
        FrameBundle.model_validate({**old, "sampling": "bogus"})


def test_frames_gate_counts_keyframe_bundles_without_the_grid(keyed, tmp_path: Path) -> None:
    from vidsearch import quality

    _, manifest, segments = keyed
    segment = segments[0]
    stats: list[dict] = []
    bundle = frames.run_frames(segment, 5.0, str(tmp_path / "k.zip"), sampling="keyframes", stats=stats)
    # 3 keyframes in 2.4 s: the 5 fps grid would want 12.
    gate = quality.check_frames(segment, bundle, stats, 5.0, None, source_fps=manifest.frame_rate)
    assert gate.success, gate.summary()
    as_grid = bundle.model_copy(update={"sampling": "fps"})
    assert not quality.check_frames(segment, as_grid, stats, 5.0, None, source_fps=manifest.frame_rate).success
    empty = bundle.model_copy(update={"frames": []})
    assert not quality.check_frames(segment, empty, [], 5.0, None, source_fps=manifest.frame_rate).success
