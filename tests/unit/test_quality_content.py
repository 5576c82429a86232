"""Gates tell damage from content: real-world-like content passes every gate; damaged files fail a
named damage expectation with the observed value (issue 12, item 1).

Each video runs probe -> split -> segment facts -> split gate -> frame extraction -> frames gate with
the library functions, as the pipeline does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vidsearch.errors import InputError
from vidsearch.media import ffmpeg as ff
from vidsearch.media import frames, probe, split, synth
from vidsearch.quality import GateResult, check_frames, check_probe, check_segment, check_split, segment_facts

SEGMENT_S = 4.0

CONTENT = {
    "fade_from_and_to_black": synth.make_fade_video,
    "hard_cut_to_black_slate": synth.make_black_slate_cut,
    "letterboxed": synth.make_letterboxed,
    "static_scene_30s": synth.make_static_scene,
    "one_frame": synth.make_one_frame,
    "short_0_4s": synth.make_short_video,
    "title_card": synth.make_title_card,
}


def run_gates(video: Path, tmp: Path, sample_fps: float = 2.0) -> dict[str, Any]:
    """probe, split and frames with their gates; every gate result (one per segment for frames)."""
    manifest = probe.probe_video(video)
    out: dict[str, Any] = {"manifest": manifest, "probe": check_probe(manifest)}
    plan = split.plan_split(manifest.duration_s, SEGMENT_S)
    seg_dir = tmp / "segments"
    seg_dir.mkdir()
    files = split.split_local(video, manifest, plan, seg_dir)
    from vidsearch.records import Segment

    segments = [
        Segment(video_id=manifest.video_id, index=i, start_s=s, end_s=e, uri=str(p))
        for i, (p, s, e) in enumerate(files)
    ]
    facts = [segment_facts(p) for p, _, _ in files]
    out["facts"] = facts
    out["split"] = check_split(manifest, segments, None)
    out["segment"] = [check_segment(manifest, seg, f) for seg, f in zip(segments, facts)]
    out["frames"] = []
    for seg, (path, _, _) in zip(segments, files):
        stats: list[dict[str, Any]] = []
        errors: list[str] = []
        bundle = frames.extract_frames(
            path,
            seg,
            sample_fps,
            tmp / f"{seg.name}.zip",
            video_start_s=manifest.start_time_s,
            expected_size=(manifest.width, manifest.height),
            stats=stats,
            decode_errors=errors,
        )
        out["frames"].append(
            (
                errors,
                stats,
                check_frames(
                    seg, bundle, stats, sample_fps, None, source_fps=manifest.frame_rate, decoder_errors=errors
                ),
            )
        )
    return out


def results(out: dict[str, Any]) -> list[GateResult]:
    return [out["probe"], out["split"], *out["segment"], *(r for _, _, r in out["frames"])]


@pytest.mark.parametrize("name", sorted(CONTENT))
def test_content_passes_every_gate(name: str, tmp_path: Path) -> None:
    video = CONTENT[name](tmp_path / f"{name}.mp4")
    out = run_gates(video, tmp_path)
    for result in results(out):
        assert result.success, result.summary()
    assert all(not errors for errors, _, _ in out["frames"])


def test_black_frames_are_measured_but_pass(tmp_path: Path) -> None:
    """The fade's first frame is black (pixel std 0): recorded in the stats, never a failure."""
    out = run_gates(synth.make_fade_video(tmp_path / "fade.mp4"), tmp_path)
    _, stats, result = out["frames"][0]
    assert stats[0]["std"] < 2.0 and result.success


def test_one_frame_video_reaches_its_end(tmp_path: Path) -> None:
    """Regression: end_shortfall 0.04 s (one frame) > 0.002 failed the split gate and the run."""
    out = run_gates(synth.make_one_frame(tmp_path / "one.mp4"), tmp_path)
    assert out["facts"][0].packet_count == 1
    for result in (out["split"], *out["segment"]):
        assert result.success, result.summary()


def test_damaged_h264_fails_the_frames_gate_naming_decoder_errors(tmp_path: Path) -> None:
    out = run_gates(synth.make_damaged_h264(tmp_path / "damaged.mp4"), tmp_path)
    assert out["probe"].success and out["split"].success, out["split"].summary()
    assert all(r.success for r in out["segment"]), [r.summary() for r in out["segment"]]
    failed = [r for _, _, r in out["frames"] if not r.success]
    assert failed, "the damaged segment must fail"
    for result in failed:
        names = {f.column for f in result.failed}
        assert "decoder_errors" in names, result.summary()
        f = next(f for f in result.failed if f.column == "decoder_errors")
        assert isinstance(f.observed, (int, float)) and f.observed > 0
        assert "damaged bitstream" in f.damage
        assert "decoder_errors" in result.summary()


def test_untimed_ts_packets_mostly_lack_timestamps(tmp_path: Path) -> None:
    """The generator reproduces "most packets carry no timestamp" (ffprobe: pts and dts N/A)."""
    video = synth.make_untimed_ts(tmp_path / "untimed.ts")
    doc = ff.ffprobe_json(
        ["-select_streams", "v:0", "-show_entries", "packet=pts,dts,size", ff.file_url(video)], timeout_s=60
    )
    packets = doc["packets"]
    untimed = [p for p in packets if p.get("pts") in (None, "N/A") and p.get("dts") in (None, "N/A")]
    assert len(untimed) > 0.3 * len(packets)


def test_untimed_ts_is_rejected_naming_its_timing(tmp_path: Path) -> None:
    """Broken container timing is damage: the probe's decode check already rejects the file."""
    video = synth.make_untimed_ts(tmp_path / "untimed.ts")
    with pytest.raises(InputError, match="dts"):
        probe.probe_video(video)


def test_segment_gate_names_untimed_and_empty_packets(tmp_path: Path) -> None:
    """The segment gate's packet-timing expectations fail with their observed fractions."""
    out = run_gates(synth.make_short_video(tmp_path / "short.mp4"), tmp_path)
    bad = [
        f.model_copy(
            update={"untimed_packet_count": f.packet_count, "empty_packet_count": f.packet_count, "dts_backwards": 3}
        )
        for f in out["facts"]
    ]
    manifest = out["manifest"]
    from vidsearch.records import Segment

    segs = [Segment(video_id=manifest.video_id, index=0, start_s=0.0, end_s=manifest.duration_s, uri="x")]
    result = check_segment(manifest, segs[0], bad[0])
    columns = {f.column for f in result.failed}
    assert columns == {"untimed_packet_fraction", "empty_packet_fraction", "dts_backwards"}, result.summary()
    assert all(f.damage for f in result.failed)
