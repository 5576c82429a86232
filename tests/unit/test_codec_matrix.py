"""Healthy video in the codecs and containers footage arrives in passes every gate with no decoder
error: a damage gate that fires on normal files would quarantine real footage."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from vidsearch import quality
from vidsearch.media import ffmpeg as ff
from vidsearch.media import frames, probe, split

# name -> (encoder arguments, container): B-frames, open GOPs, long GOPs, letterboxing, intra-only
# codecs, MPEG-TS and AVI timing.
CODECS: dict[str, tuple[tuple[str, ...], str]] = {
    "h264_bframes": (("-c:v", "libx264", "-bf", "3", "-g", "48", "-pix_fmt", "yuv420p"), "mp4"),
    "h264_long_gop_letterbox": (
        ("-vf", "pad=iw:ih+40:0:20:black", "-c:v", "libx264", "-g", "250", "-pix_fmt", "yuv420p"),
        "mkv",
    ),
    "hevc_open_gop": (
        ("-c:v", "libx265", "-x265-params", "open-gop=1:keyint=48:bframes=4:log-level=error", "-pix_fmt", "yuv420p"),
        "mkv",
    ),
    "vp9": (("-c:v", "libvpx-vp9", "-b:v", "300k", "-g", "48", "-deadline", "realtime", "-cpu-used", "8"), "webm"),
    "mpeg2_ts": (("-c:v", "mpeg2video", "-b:v", "1M", "-g", "15", "-bf", "2"), "ts"),
    "mpeg4_avi": (("-c:v", "mpeg4", "-q:v", "5", "-g", "30", "-bf", "1"), "avi"),
    "mjpeg_avi": (("-c:v", "mjpeg", "-q:v", "5"), "avi"),
    "prores_mov": (("-c:v", "prores_ks", "-profile:v", "0"), "mov"),
}


@pytest.mark.parametrize("name", list(CODECS))
def test_healthy_files_pass_every_gate_without_decoder_errors(name, tmp_path):
    args, ext = CODECS[name]
    video = tmp_path / f"{name}.{ext}"
    subprocess.run(
        [ff.ffmpeg_bin(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "6"]
        + list(args)
        + [str(video)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    manifest = probe.probe_video(video, str(video))
    assert quality.check_probe(manifest).success
    segments = split.run_split(video, manifest, 2.0, None, f"file://{tmp_path}/segments")
    facts = [quality.segment_facts(Path(s.uri.removeprefix("file://"))) for s in segments]
    for gate in (
        quality.check_split(manifest, segments, None),
        *(quality.check_segment(manifest, s, f) for s, f in zip(segments, facts)),
    ):
        assert gate.success, gate.summary()
    for seg in segments:
        stats: list[dict] = []
        errors: list[str] = []
        bundle = frames.run_frames(
            seg,
            2.0,
            f"file://{tmp_path}/frames/{seg.name}.zip",
            video_start_s=manifest.start_time_s,
            stats=stats,
            decode_errors=errors,
        )
        assert errors == [], (seg.label, errors[:3])
        result = quality.check_frames(
            seg, bundle, stats, 2.0, None, source_fps=manifest.frame_rate, decoder_errors=errors
        )
        assert result.success, result.summary()
