"""quality: Great Expectations gates between the pipeline stages.

Each gate gets good data that passes and bad data that fails and names the failed expectation (GX
type, column and observed values). The split and frames gates also run on real files: a tiny
synthetic video, split by `vidsearch.media.split` and sampled by `vidsearch.media.frames`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from quality_helpers import BETWEEN, IN_SET, failed, failed_columns
from vidsearch import quality
from vidsearch.errors import PermanentError, QualityGateError
from vidsearch.media import bundle as frame_bundle
from vidsearch.media import frames, probe, split, synth
from vidsearch.media.stats import frame_stats
from vidsearch.quality import (
    GateResult,
    QualityConfig,
    SegmentFacts,
    check_detections,
    check_embeddings,
    check_frames,
    check_index,
    check_probe,
    check_segment,
    check_split,
    enforce,
    segment_facts,
    write_report,
)
from vidsearch.records import (
    Box,
    DetectedObject,
    DetectEmbedResult,
    FrameBundle,
    FrameRef,
    Segment,
    VideoManifest,
    object_id,
)
from vidsearch.stores import storage

VIDEO_ID = "ab" * 16


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quality.ENV_VAR, raising=False)


# --- probe ------------------------------------------------------------------------------------------


def manifest(**update: object) -> VideoManifest:
    good = VideoManifest(
        video_id=VIDEO_ID,
        source="clip.mp4",
        content_sha256="ab" * 32,
        size_bytes=1000,
        container="mov,mp4,m4a,3gp,3g2,mj2",
        duration_s=3.0,
        video_codec="h264",
        width=160,
        height=90,
        coded_width=160,
        coded_height=90,
        rotation=0,
        frame_rate=10.0,
        nominal_frame_rate=10.0,
        variable_frame_rate=False,
        frame_count=30,
        start_time_s=0.0,
        has_audio=False,
    )
    # model_copy skips validation: how a broken manifest reaches the gate.
    return good.model_copy(update=update)


def test_probe_gate_passes_a_good_manifest() -> None:
    result = check_probe(manifest())
    assert result.success, result.summary()
    assert result.stage == "probe" and result.subject == "video"
    assert result.evaluated == 7 and result.failed == []
    assert result.summary() == "probe gate passed for video: 7 expectations"


def test_probe_gate_rejects_zero_duration() -> None:
    result = check_probe(manifest(duration_s=0.0))
    assert not result.success
    f = failed(result, BETWEEN, "duration_s")
    assert f.observed["unexpected_count"] == 1
    assert f.observed["partial_unexpected_list"] == [0.0]
    assert f.description == "duration > 0" and f.expected == "> 0"
    assert failed_columns(result) == {"duration_s"}


def test_probe_gate_rejects_a_missing_video_stream() -> None:
    result = check_probe(manifest(video_codec=""))
    f = failed(result, "expect_column_value_lengths_to_be_between", "video_codec")
    assert f.observed["partial_unexpected_list"] == [""]
    assert "video stream" in f.description


def test_probe_gate_checks_frame_rate_and_size_limits() -> None:
    result = check_probe(manifest(frame_rate=500.0, width=8, height=9000))
    assert failed_columns(result) == {"frame_rate", "width", "height"}
    assert failed(result, BETWEEN, "frame_rate").observed["partial_unexpected_list"] == [500.0]
    assert failed(result, BETWEEN, "width").expected == "in [16, 8192]"
    # Thresholds are configuration.
    loose = QualityConfig(max_fps=1000, min_dim=4, max_dim=10_000)
    assert check_probe(manifest(frame_rate=500.0, width=8, height=9000), loose).success
    assert not check_probe(manifest(frame_rate=0.5)).success


def test_probe_gate_catches_nan_that_between_would_skip() -> None:
    # GX treats NaN as missing in *_to_be_between; the not-null check must catch it.
    result = check_probe(manifest(frame_rate=float("nan")))
    f = failed(result, "expect_column_values_to_not_be_null", "frame_rate")
    assert f.observed["unexpected_count"] == 1
    json.dumps(result.gx_result, allow_nan=False)  # strict JSON (NaN became a string)


# --- split ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 s, 160x90 @ 10 fps, keyframe every 5 frames (0.5 s), split into 1 s segments."""
    root = tmp_path_factory.mktemp("quality")
    path = synth.make_video(root / "clip.mp4", 3.0, 160, 90, fps="10", audio=False, gop_frames=5)
    found = probe.probe_video(path, str(path))
    segments = split.run_split(path, found, 1.0, None, f"file://{root}/segments")
    files = [storage.local_path(s.uri) for s in segments]
    garbage = synth.make_corrupt(root / "garbage.mkv", 4096)
    return {"root": root, "path": path, "manifest": found, "segments": segments, "files": files, "garbage": garbage}


@pytest.fixture(scope="module")
def facts(video: dict) -> list[SegmentFacts]:
    return [segment_facts(p) for p in video["files"]]


def test_segment_facts_measures_a_real_segment(video: dict, facts: list[SegmentFacts]) -> None:
    assert len(facts) == 3
    second = facts[1]
    assert second.packet_count == 10 and second.keyframe_count == 2
    assert second.first_pts_s == pytest.approx(1.0, abs=0.002)
    assert second.last_pts_s == pytest.approx(1.9, abs=0.002)
    assert second.frame_interval_s == pytest.approx(0.1, abs=0.002)
    assert second.max_keyframe_interval_s == pytest.approx(0.5, abs=0.002)
    assert second.decodable and second.error is None
    SegmentFacts.model_validate_json(second.model_dump_json())  # travels as JSON


def test_segment_facts_of_a_garbage_file_fail_instead_of_raising(video: dict) -> None:
    bad = segment_facts(video["garbage"])
    assert bad.packet_count == 0 and not bad.decodable
    assert bad.error and "ffprobe failed" in bad.error and "\n" not in bad.error


def test_split_gate_passes_real_segments(video: dict, facts: list[SegmentFacts]) -> None:
    result = check_split(video["manifest"], video["segments"], None)
    assert result.success, result.summary()
    assert result.subject == "video"
    assert quality.split_tolerance(facts) == pytest.approx(0.5, abs=0.002)


def test_segment_gate_passes_each_real_segment_file(video: dict, facts: list[SegmentFacts]) -> None:
    for segment, fact in zip(video["segments"], facts):
        result = check_segment(video["manifest"], segment, fact)
        assert result.success, result.summary()
        assert result.stage == "segment" and result.subject == segment.name


def test_split_gate_honours_the_time_limit(video: dict) -> None:
    first_two = video["segments"][:2]
    assert check_split(video["manifest"], first_two, 2.0).success
    # Without the limit the same two segments stop a second short of the end.
    result = check_split(video["manifest"], first_two, None)
    f = failed(result, "expect_column_max_to_be_between", "end_s")
    assert f.observed == pytest.approx(2.0)


def test_split_gate_rejects_a_gap_between_segments(video: dict, facts: list[SegmentFacts]) -> None:
    segments = list(video["segments"])
    segments[1] = segments[1].model_copy(update={"start_s": 1.8})  # a 0.8 s hole: the cut is contiguous
    result = check_split(video["manifest"], segments, None)
    assert not result.success
    gap = failed(result, BETWEEN, "gap_s")
    assert gap.observed["partial_unexpected_list"] == [pytest.approx(0.8)]
    assert gap.observed["rows"] == ["seg0001"]
    assert "gap" in gap.description
    # A tolerance from the configuration replaces the floor.
    assert check_split(video["manifest"], segments, None, QualityConfig(split_tolerance_s=1.0)).success
    # ...and the file no longer starts where the record says: its own gate fails (0.8 s > the
    # file's 0.5 s keyframe interval).
    result = check_segment(video["manifest"], segments[1], facts[1])
    assert failed_columns(result) == {"start_offset_s"}
    assert failed(result, BETWEEN, "start_offset_s").observed["rows"] == ["seg0001"]


def test_segment_gate_rejects_an_empty_and_undecodable_file(video: dict, facts: list[SegmentFacts]) -> None:
    result = check_segment(video["manifest"], video["segments"][2], segment_facts(video["garbage"]))
    assert not result.success and result.subject == "seg0002"
    packets = failed(result, BETWEEN, "packet_count")
    assert packets.observed["partial_unexpected_list"] == [0] and packets.observed["rows"] == ["seg0002"]
    decodable = failed(result, IN_SET, "decodable")
    assert decodable.observed["partial_unexpected_list"] == [False]
    # A demuxable file whose first frame does not decode is caught on its own.
    undecodable = facts[0].model_copy(update={"decodable": False, "error": "ffmpeg failed: corrupt"})
    result = check_segment(video["manifest"], video["segments"][0], undecodable)
    assert failed_columns(result) == {"decodable"}


def test_segment_gate_names_broken_container_timing(video: dict, facts: list[SegmentFacts]) -> None:
    """Packets without timestamps, empty packets and DTS going backwards each fail their own
    expectation, with the observed value and the damage it means."""
    fact = facts[1]  # 10 packets
    broken = fact.model_copy(update={"untimed_packet_count": 7, "empty_packet_count": 3, "dts_backwards": 2})
    result = check_segment(video["manifest"], video["segments"][1], broken)
    assert failed_columns(result) == {"untimed_packet_fraction", "empty_packet_fraction", "dts_backwards"}
    untimed = failed(result, BETWEEN, "untimed_packet_fraction")
    assert untimed.observed["partial_unexpected_list"] == [pytest.approx(0.7)]
    assert "timing" in untimed.damage
    # Within the tolerances (a few MPEG packets without timestamps, a dropped-frame marker) it passes.
    mild = fact.model_copy(update={"untimed_packet_count": 2})
    assert check_segment(video["manifest"], video["segments"][1], mild).success


def test_split_gate_rejects_no_segments(video: dict) -> None:
    result = check_split(video["manifest"], [], None)
    assert failed(result, "expect_table_row_count_to_be_between", None).observed == 0


# --- frames -----------------------------------------------------------------------------------------


def test_frame_stats() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    flat_blue = np.zeros((90, 160, 3), np.uint8)
    flat_blue[..., 2] = 200  # one flat colour: blank, although the channels differ
    big = np.zeros((1080, 1920, 3), np.uint8)
    big[:540] = 255
    stats = frame_stats([noisy, flat_blue, big, None])
    assert stats[0]["std"] > 50 and stats[0]["h"] == 90 and stats[0]["w"] == 160 and stats[0]["decoded"]
    assert stats[1]["std"] == 0.0 and stats[1]["mean"] == pytest.approx(200 / 3, abs=0.01)
    assert stats[2]["std"] == pytest.approx(127.5, abs=1.0) and (stats[2]["h"], stats[2]["w"]) == (1080, 1920)
    assert stats[3] == {"mean": None, "std": None, "h": 0, "w": 0, "decoded": False}
    started = time.perf_counter()
    frame_stats([big] * 10)
    assert time.perf_counter() - started < 1.0


def test_frames_gate_passes_a_real_bundle(video: dict, tmp_path: Path) -> None:
    segment = video["segments"][1]
    bundle = frames.extract_frames(video["files"][1], segment, 5.0, tmp_path / "b.zip")
    record, arrays = frame_bundle.read_bundle(str(tmp_path / "b.zip"))
    assert len(arrays) == 5
    result = check_frames(segment, record, frame_stats(arrays), 5.0, None)
    assert result.success, result.summary()
    assert result.subject == "seg0001"
    # A video slower than the sampling rate: the source rate caps the expected count.
    assert quality.expected_frame_count(segment, 20.0, None, source_fps=10.0) == (9, 11)
    assert not check_frames(segment, bundle, frame_stats(arrays), 20.0, None).success


def segment_1() -> Segment:
    return Segment(video_id=VIDEO_ID, index=3, start_s=1.0, end_s=2.0, uri="file:///x/seg0003.mkv")


def bundle_of(pts: list[float], size: tuple[int, int] = (160, 90)) -> FrameBundle:
    return FrameBundle(
        video_id=VIDEO_ID,
        segment_index=3,
        uri="file:///x/seg0003.zip",
        width=size[0],
        height=size[1],
        sample_fps=4.0,
        frames=[FrameRef(index=i, pts_s=p, member=f"{i:06d}.jpg") for i, p in enumerate(pts)],
    )


def good_stats(n: int, size: tuple[int, int] = (160, 90)) -> list[dict]:
    return [{"mean": 60.0, "std": 25.0, "h": size[1], "w": size[0], "decoded": True} for _ in range(n)]


GOOD_PTS = [1.0, 1.25, 1.5, 1.75]


def test_frames_gate_passes_good_frames() -> None:
    result = check_frames(segment_1(), bundle_of(GOOD_PTS), good_stats(4), 4.0, None)
    assert result.success, result.summary()
    assert result.subject == "seg0003"


def test_frames_gate_rejects_frames_out_of_order() -> None:
    result = check_frames(segment_1(), bundle_of([1.0, 1.5, 1.25, 1.75]), good_stats(4), 4.0, None)
    f = failed(result, "expect_column_values_to_be_increasing", "pts_s")
    assert f.observed["partial_unexpected_list"] == [1.25] and f.observed["rows"] == [2]
    assert f.description == "frame timestamps strictly increasing"
    # A repeated timestamp is not strictly increasing either.
    assert not check_frames(segment_1(), bundle_of([1.0, 1.25, 1.25, 1.75]), good_stats(4), 4.0, None).success


def test_frames_gate_rejects_frames_outside_the_segment() -> None:
    result = check_frames(segment_1(), bundle_of([1.0, 1.25, 1.5, 2.0]), good_stats(4), 4.0, None)
    f = failed(result, BETWEEN, "pts_s")
    assert f.observed["partial_unexpected_list"] == [2.0]  # the end is exclusive
    assert f.expected == "in [1, 2)"
    # With a time limit inside the segment, frames past it are outside too (and too many).
    limited = check_frames(segment_1(), bundle_of(GOOD_PTS), good_stats(4), 4.0, 1.5)
    assert failed(limited, BETWEEN, "pts_s").observed["partial_unexpected_list"] == [1.5, 1.75]
    assert failed(limited, "expect_table_row_count_to_be_between", None).observed == 4


def test_frames_gate_rejects_mixed_frame_sizes() -> None:
    stats = good_stats(4)
    stats[2] = {**stats[2], "h": 180, "w": 320}
    result = check_frames(segment_1(), bundle_of(GOOD_PTS), stats, 4.0, None)
    assert failed(result, "expect_column_unique_value_count_to_be_between", "size").observed == 2
    assert failed(result, IN_SET, "size").observed["partial_unexpected_list"] == ["320x180"]
    # Consistent, but not the bundle's size.
    other = check_frames(segment_1(), bundle_of(GOOD_PTS, (320, 180)), good_stats(4), 4.0, None)
    assert failed_columns(other) == {"size"}


def test_frames_gate_passes_a_blank_frame() -> None:
    """Issue 12: blank is content (a fade, a slate), not damage; the rule it replaced quarantined it."""
    arrays = [np.random.default_rng(i).integers(0, 256, (90, 160, 3), dtype=np.uint8) for i in range(4)]
    arrays[1] = np.full((90, 160, 3), 16, np.uint8)
    result = check_frames(segment_1(), bundle_of(GOOD_PTS), frame_stats(arrays), 4.0, None)
    assert result.success, result.summary()
    dim = [{**s, "std": 0.0} for s in good_stats(4)]
    assert check_frames(segment_1(), bundle_of(GOOD_PTS), dim, 4.0, None).success


def test_frames_gate_rejects_decoder_errors() -> None:
    errors = ["[h264] error while decoding MB 16 0, bytestream -26"] * 3
    result = check_frames(segment_1(), bundle_of(GOOD_PTS), good_stats(4), 4.0, None, decoder_errors=errors)
    f = failed(result, "expect_column_sum_to_be_between", "decoder_errors")
    assert f.observed == 3 and "damaged bitstream" in f.damage
    assert "expect_column_sum_to_be_between(decoder_errors) observed 3" in result.summary()
    # The tolerance is configuration.
    assert check_frames(
        segment_1(),
        bundle_of(GOOD_PTS),
        good_stats(4),
        4.0,
        None,
        QualityConfig(max_decoder_errors=3),
        decoder_errors=3,
    ).success


def test_frames_gate_rejects_an_undecodable_frame() -> None:
    arrays: list = [np.random.default_rng(i).integers(0, 256, (90, 160, 3), dtype=np.uint8) for i in range(4)]
    arrays[3] = None
    result = check_frames(segment_1(), bundle_of(GOOD_PTS), frame_stats(arrays), 4.0, None)
    assert failed(result, IN_SET, "decoded").observed["rows"] == [3]


def test_frames_gate_rejects_too_few_frames() -> None:
    result = check_frames(segment_1(), bundle_of([1.0, 1.5]), good_stats(2), 4.0, None)
    f = failed(result, "expect_table_row_count_to_be_between", None)
    assert f.observed == 2 and f.expected == "in [3, 5]"
    # +-10 % beats +-1 frame on long segments: 100 s at 1 fps accepts 90..110 frames.
    long = Segment(video_id=VIDEO_ID, index=0, start_s=0.0, end_s=100.0, uri="file:///x/seg0000.mkv")
    assert quality.expected_frame_count(long, 1.0, None) == (90, 110)


def test_frames_gate_accepts_an_empty_bundle_past_the_time_limit() -> None:
    # A time limit before the segment's start: zero frames expected, zero rows validated.
    result = check_frames(segment_1(), bundle_of([]), [], 4.0, 0.5)
    assert result.success, result.summary()
    assert result.evaluated == 7


# --- detections -------------------------------------------------------------------------------------

LABELS = {"person", "car", "dog"}


def detection(
    box: tuple[float, float, float, float], label: str = "car", score: float = 0.9, frame: int = 0
) -> DetectedObject:
    b = Box(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    pts = GOOD_PTS[frame]
    return DetectedObject(
        object_id=object_id(VIDEO_ID, 3, pts, b),
        video_id=VIDEO_ID,
        segment_index=3,
        frame_index=frame,
        pts_s=pts,
        box=b,
        label=label,
        label_id=3,
        score=score,
    )


def result_of(objects: list[DetectedObject], dim: int = 4) -> DetectEmbedResult:
    return DetectEmbedResult(
        video_id=VIDEO_ID,
        segment_index=3,
        detector_model="tiny-detr",
        embedder_model="tiny-clip",
        embedding_dim=dim,
        device="cpu",
        frame_count=4,
        objects=objects,
    )


GOOD_BOXES = [(0, 0, 160, 90), (10.5, 20, 50, 60.25), (100, 5, 159.9, 89)]


def test_detections_gate_passes_good_detections() -> None:
    objects = [detection(b, frame=i) for i, b in enumerate(GOOD_BOXES)]
    result = check_detections(result_of(objects), bundle_of(GOOD_PTS), 0.7, LABELS)
    assert result.success, result.summary()
    assert result.subject == "seg0003"


def test_detections_gate_passes_zero_detections() -> None:
    result = check_detections(result_of([]), bundle_of(GOOD_PTS), 0.7, LABELS)
    assert result.success, result.summary()
    assert result.evaluated == 12  # every expectation still ran (and is reported)


def test_detections_gate_rejects_a_box_outside_the_frame() -> None:
    objects = [detection((-5, 0, 50, 50)), detection((10, 10, 170, 95))]
    result = check_detections(result_of(objects), bundle_of(GOOD_PTS), 0.7, LABELS)
    assert failed(result, BETWEEN, "x0").observed["partial_unexpected_list"] == [-5.0]
    assert failed(result, BETWEEN, "x1").observed["partial_unexpected_list"] == [170.0]
    y1 = failed(result, BETWEEN, "y1")
    assert y1.observed["partial_unexpected_list"] == [95.0] and y1.expected == "<= 90"
    assert y1.observed["rows"] == [objects[1].object_id]
    assert failed_columns(result) == {"x0", "x1", "y1"}


def test_detections_gate_rejects_a_zero_area_box() -> None:
    objects = [detection((10, 10, 10, 50)), detection((30, 40, 20, 50))]  # zero width; inverted
    result = check_detections(result_of(objects), bundle_of(GOOD_PTS), 0.7, LABELS)
    assert failed(result, BETWEEN, "area").observed["unexpected_count"] == 2
    pair = failed(result, "expect_column_pair_values_a_to_be_greater_than_b", "x1,x0")
    assert pair.observed["partial_unexpected_list"] == [[10.0, 10.0], [20.0, 30.0]]


def test_detections_gate_rejects_a_low_score_and_an_unknown_label() -> None:
    objects = [detection((0, 0, 10, 10), score=0.5), detection((0, 0, 10, 10), label="unicorn", frame=1)]
    result = check_detections(result_of(objects), bundle_of(GOOD_PTS), 0.7, LABELS)
    score = failed(result, BETWEEN, "score")
    assert score.observed["partial_unexpected_list"] == [0.5] and score.expected == ">= 0.7"
    assert "score_threshold" in score.description
    label = failed(result, IN_SET, "label")
    assert label.observed["partial_unexpected_list"] == ["unicorn"]
    assert failed_columns(result) == {"score", "label"}


def test_detections_gate_rejects_a_frame_not_in_the_bundle() -> None:
    result = check_detections(result_of([detection((0, 0, 10, 10), frame=3)]), bundle_of(GOOD_PTS[:2]), 0.7, LABELS)
    assert failed(result, IN_SET, "frame_index").observed["partial_unexpected_list"] == [3]


# --- embeddings -------------------------------------------------------------------------------------


def unit_rows(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def three_objects() -> list[DetectedObject]:
    return [detection(b, frame=i) for i, b in enumerate(GOOD_BOXES)]


def test_embeddings_gate_passes_unit_vectors() -> None:
    result = check_embeddings(result_of(three_objects()), unit_rows(3), 4)
    assert result.success, result.summary()
    assert check_embeddings(result_of([]), np.zeros((0, 4), np.float32), 4).success


def test_embeddings_gate_rejects_a_nan_vector() -> None:
    vectors = unit_rows(3)
    vectors[1, 2] = np.nan
    result = check_embeddings(result_of(three_objects()), vectors, 4)
    f = failed(result, BETWEEN, "nonfinite_values")
    assert f.observed["partial_unexpected_list"] == [1] and f.observed["rows"] == [1]
    assert f.description == "all values finite"
    assert failed_columns(result) == {"nonfinite_values"}  # the NaN norm is not reported twice


def test_embeddings_gate_rejects_the_wrong_dimension() -> None:
    result = check_embeddings(result_of(three_objects(), dim=8), unit_rows(3, dim=8), 4)
    assert failed(result, IN_SET, "dim").observed["partial_unexpected_list"] == [8.0, 8.0, 8.0]
    assert failed(result, IN_SET, "declared_dim").expected == "in [4]"


def test_embeddings_gate_rejects_non_unit_norms() -> None:
    vectors = unit_rows(3)
    vectors[0] *= 1.01
    vectors[2] *= 0.5
    result = check_embeddings(result_of(three_objects()), vectors, 4)
    f = failed(result, BETWEEN, "norm")
    assert f.observed["partial_unexpected_list"] == [pytest.approx(1.01, abs=1e-5), pytest.approx(0.5, abs=1e-5)]
    assert check_embeddings(result_of(three_objects()), vectors[:2] * 1, 4).success is False
    assert check_embeddings(result_of(three_objects()[:2]), vectors[:2], 4, QualityConfig(unit_norm_tol=0.02)).success


def test_embeddings_gate_rejects_duplicate_ids_and_missing_rows() -> None:
    objects = three_objects()
    dup = objects + [objects[0]]
    result = check_embeddings(result_of(dup), unit_rows(4), 4)
    f = failed(result, "expect_column_values_to_be_unique", "object_id")
    assert f.observed["partial_unexpected_list"] == [objects[0].object_id] * 2
    # Fewer embedding rows than objects.
    short = check_embeddings(result_of(objects), unit_rows(2), 4)
    assert failed(short, IN_SET, "has_vector").observed["rows"] == [2]


# --- index ------------------------------------------------------------------------------------------


def test_index_gate_passes_equal_stores() -> None:
    ids = {f"id-{i}" for i in range(5)}
    result = check_index("seg0003", ids, set(ids))
    assert result.success, result.summary()
    assert result.subject == "seg0003"
    assert check_index("seg0004", set(), set()).success


def test_index_gate_rejects_different_stores() -> None:
    result = check_index("seg0003", {"a", "b", "c", "d"}, {"a", "b", "x"})
    counts = failed(result, "expect_column_sum_to_be_between", "pg_minus_wv")
    assert counts.observed == 1  # one more object in Postgres than in Weaviate
    only_pg = failed(result, "expect_column_values_to_be_null", "only_in_postgres")
    assert only_pg.observed["unexpected_count"] == 2
    assert only_pg.observed["partial_unexpected_list"] == ["c", "d"]
    only_wv = failed(result, "expect_column_values_to_be_null", "only_in_weaviate")
    assert only_wv.observed["unexpected_count"] == 1 and only_wv.observed["partial_unexpected_list"] == ["x"]


def test_index_gate_rejects_equal_counts_with_different_ids() -> None:
    result = check_index("seg0003", {"a", "b"}, {"a", "c"})
    assert failed_columns(result) == {"only_in_postgres", "only_in_weaviate"}  # counts agree, sets do not


# --- enforce, reports, configuration ----------------------------------------------------------------


def test_enforce_raises_a_permanent_error_naming_the_expectation() -> None:
    good = check_index("seg0003", {"a"}, {"a"})
    assert enforce(good) is good
    bad = check_frames(segment_1(), bundle_of([1.0, 1.5]), good_stats(2), 4.0, None)
    with pytest.raises(QualityGateError) as info:
        enforce(bad)
    assert isinstance(info.value, PermanentError)
    message = str(info.value)
    assert message.startswith("frames gate failed for seg0003: expect_table_row_count_to_be_between observed 2")
    assert "\n" not in message
    assert info.value.gate_result is bad  # type: ignore[attr-defined]


def test_write_report_writes_json_and_markdown(tmp_path: Path) -> None:
    arrays = [np.random.default_rng(i).integers(0, 256, (90, 160, 3), dtype=np.uint8) for i in range(4)]
    result = check_frames(segment_1(), bundle_of(GOOD_PTS), frame_stats(arrays), 4.0, None, decoder_errors=2)
    prefix = f"file://{tmp_path}/reports"
    md_uri = write_report(result, prefix)
    assert md_uri == f"{prefix}/frames-seg0003.md"
    stored = GateResult.model_validate_json((tmp_path / "reports" / "frames-seg0003.json").read_text())
    assert stored == result
    md = (tmp_path / "reports" / "frames-seg0003.md").read_text()
    assert "frames" in md and "seg0003" in md and "FAIL" in md
    table = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == result.evaluated == 7
    damage_row = next(line for line in table if "decoder_errors" in line)
    assert "| FAIL |" in damage_row and "| 2 |" in damage_row
    assert sum("| PASS |" in line for line in table) == 6


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert QualityConfig.from_env() == QualityConfig()
    monkeypatch.setenv(quality.ENV_VAR, '{"blank_std_min": 1.0, "max_fps": 500}')
    cfg = QualityConfig.from_env()
    assert cfg.blank_std_min == 1.0 and cfg.max_fps == 500 and cfg.min_fps == 1.0
    # Gates without an explicit config read the environment.
    assert check_probe(manifest(frame_rate=400.0)).success
    monkeypatch.setenv(quality.ENV_VAR, '{"blank_std_minimum": 1.0}')
    with pytest.raises(quality.QualityConfigError, match="blank_std_minimum"):
        QualityConfig.from_env()
    with pytest.raises(ValueError):
        QualityConfig.from_env({quality.ENV_VAR: "not json"})
    with pytest.raises(PermanentError):
        QualityConfig.from_env({quality.ENV_VAR: '{"unit_norm_tol": -1}'})
    with pytest.raises(ValidationError):
        cfg.blank_std_min = 3.0  # type: ignore[misc]  # frozen


def test_importing_quality_does_not_import_great_expectations() -> None:
    import os
    import subprocess
    import sys

    import vidsearch

    code = "import sys, vidsearch.quality; print('great_expectations' in sys.modules, 'pandas' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(vidsearch.__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["False", "False"]


def test_gates_are_fast_once_warm() -> None:
    check_index("seg0000", {"a"}, {"a"})  # GX imported and context built
    objects = [detection((i % 150, 1, i % 150 + 5, 9), frame=i % 4) for i in range(500)]
    started = time.perf_counter()
    check_detections(result_of(objects), bundle_of(GOOD_PTS), 0.7, LABELS)
    check_embeddings(result_of(objects), unit_rows(500), 4)
    check_frames(segment_1(), bundle_of(GOOD_PTS), good_stats(4), 4.0, None)
    assert time.perf_counter() - started < 3.0


def test_importing_gx_leaves_the_log_readable():
    """A task process that imports GX itself (dag.test(), VIDSEARCH_PRELOAD=0) logs at INFO: GX's
    import chatter must not reach it, our own lines must."""
    import subprocess
    import sys

    probe = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(name)s %(message)s')\n"
        "from vidsearch.quality import gx\n"
        "gx.warm_up()\n"
        "logging.getLogger('vidsearch.test').info('our own line')\n"
        "logging.getLogger('great_expectations.test').warning('a GX warning')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.splitlines()
    assert "vidsearch.test our own line" in lines
    assert "great_expectations.test a GX warning" in lines  # warnings still show
    assert not any("Skipping registering" in line for line in lines)
    assert len(lines) < 20, lines[:40]
