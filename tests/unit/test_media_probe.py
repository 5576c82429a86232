"""probe_video: manifest fields of good videos, readable rejections of bad ones."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from vidsearch.errors import InputError, PermanentError
from vidsearch.media import ffmpeg as ff
from vidsearch.media import probe


def test_manifest_of_2997_video_with_audio(cfr_video: Path, cfr_spec: dict) -> None:
    m = probe.probe_video(cfr_video, source="s3://bucket/videos/cfr.mp4")
    sha = hashlib.sha256(cfr_video.read_bytes()).hexdigest()
    assert m.content_sha256 == sha and m.video_id == sha[:32]
    assert m.source == "s3://bucket/videos/cfr.mp4"
    assert m.size_bytes == cfr_video.stat().st_size
    assert "mp4" in m.container
    assert m.frame_rate == pytest.approx(29.97, abs=0.01)
    assert m.nominal_frame_rate == pytest.approx(30000 / 1001, abs=1e-6)
    assert not m.variable_frame_rate
    assert abs(m.duration_s - cfr_spec["seconds"]) <= 1001 / 30000 + 1e-6
    assert (m.width, m.height) == cfr_spec["size"] == (m.coded_width, m.coded_height)
    assert m.rotation == 0
    assert m.video_codec == "h264"
    assert m.has_audio and m.audio_codec == "aac"
    assert m.frame_count == round(m.duration_s * 30000 / 1001)
    assert m.start_time_s == 0.0


def test_same_bytes_same_id(cfr_video: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.mov"
    shutil.copyfile(cfr_video, copy)
    assert probe.probe_video(copy).video_id == probe.probe_video(cfr_video).video_id


def test_rotation_swaps_display_size(rotated_video: Path) -> None:
    m = probe.probe_video(rotated_video)
    assert m.rotation == 90
    assert (m.coded_width, m.coded_height) == (192, 108)
    assert (m.width, m.height) == (108, 192)
    assert not m.has_audio and m.audio_codec is None


def test_variable_frame_rate_detected(vfr_video: Path) -> None:
    m = probe.probe_video(vfr_video)
    assert m.variable_frame_rate
    assert m.frame_rate == pytest.approx(30, rel=0.02)


def _assert_one_line(exc: pytest.ExceptionInfo[BaseException], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message and len(message) < 400
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    ("fixture", "fragments"),
    [
        ("text_file", ("not a video", "notes.txt")),
        ("zero_byte", ("empty", "empty.mp4")),
        ("audio_only", ("not a video", "no video stream", "tone.m4a")),
        ("audio_with_cover", ("not a video", "no video stream", "song.m4a")),
        ("truncated_video", ("truncated", "truncated.mp4")),
        ("truncated_tail_video", ("truncated", "truncated_tail.mp4")),
        ("truncated_no_index", ("not a video", "truncated_no_index.mp4")),
        ("corrupt_file", ("not a video", "garbage.mp4")),
    ],
)
def test_bad_inputs_are_rejected(fixture: str, fragments: tuple[str, ...], request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    with pytest.raises(InputError) as exc:
        probe.probe_video(path)
    assert isinstance(exc.value, PermanentError)
    _assert_one_line(exc, *fragments)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        probe.probe_video(tmp_path / "nope.mp4")
    _assert_one_line(exc, "no such file", "nope.mp4")


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        probe.probe_video(tmp_path)


def test_message_names_url_source_without_query(text_file: Path) -> None:
    with pytest.raises(InputError) as exc:
        probe.probe_video(text_file, source="https://example.com/media/clip.mp4?X-Amz-Signature=secret")
    assert "clip.mp4" in str(exc.value) and "secret" not in str(exc.value)


# --- pure helpers -----------------------------------------------------------------------------------


def test_vfr_rule() -> None:
    cfr = [i * 1001 / 30000 for i in range(100)]
    assert not probe.is_variable_frame_rate(29.97, 29.97, cfr, 1 / 30000)
    # Millisecond rounding (33/34 ms steps) is not VFR.
    assert not probe.is_variable_frame_rate(29.97, 29.97, [round(t, 3) for t in cfr], 0.001)
    alternating = [(i // 2) / 15 + (i % 2) / 20 for i in range(100)]
    assert probe.is_variable_frame_rate(30, 30, alternating, 1 / 90000)
    assert probe.is_variable_frame_rate(25, 30, [], 0)  # rates differ by far more than 1 %
    assert not probe.is_variable_frame_rate(29.97, 59.94, [], 0)  # interlaced: r is the field rate


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ({}, 0),
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}, 90),
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 90}]}, 270),
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 180}]}, 180),
        ({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": 45}]}, 0),
        ({"tags": {"rotate": "90"}}, 90),
    ],
)
def test_rotation_cw(stream: dict, expected: int) -> None:
    assert probe.rotation_cw(stream) == expected


def test_attached_picture_is_not_video() -> None:
    doc = {
        "format": {"format_name": "mp3", "duration": "3.0"},
        "streams": [
            {"codec_type": "audio", "codec_name": "mp3"},
            {
                "codec_type": "video",
                "codec_name": "mjpeg",
                "width": 500,
                "height": 500,
                "disposition": {"attached_pic": 1},
            },
        ],
    }
    with pytest.raises(InputError, match="no video stream in 'x.mp3'"):
        probe.build_manifest(doc, source="x.mp3", content_sha256="0" * 64, size_bytes=1)


def test_zero_duration_is_rejected() -> None:
    doc = {
        "format": {"format_name": "mov", "duration": "0"},
        "streams": [
            {
                "codec_type": "video",
                "codec_name": "h264",
                "width": 64,
                "height": 64,
                "avg_frame_rate": "25/1",
                "duration": "0.000000",
            }
        ],
    }
    with pytest.raises(InputError, match="no positive duration"):
        probe.build_manifest(doc, source="x.mp4", content_sha256="0" * 64, size_bytes=1)


def test_stderr_summary_is_one_meaningful_line() -> None:
    stderr = (
        "[h264 @ 0x55d0c3a1b2c0] error while decoding MB 3 4\n"
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5600] stream 0, offset 0x1f72c: partial file\n"
        "file:/tmp/x.mp4: Invalid data found when processing input\n"
        "Conversion failed!\n\n"
    )
    assert ff.summarize_stderr(stderr, strip_prefix="file:/tmp/x.mp4") == "Invalid data found when processing input"
    assert (
        ff.summarize_stderr(stderr.rsplit("file:", 1)[0])
        == "[mov,mp4,m4a,3gp,3g2,mj2] stream 0, offset 0x1f72c: partial file"
    )
    assert ff.summarize_stderr("") == ""


def test_ffmpeg_failure_raises_typed_one_line_error(text_file: Path) -> None:
    with pytest.raises(ff.FFmpegError) as exc:
        ff.ffmpeg([*ff.input_args(text_file), "-f", "null", "-"], timeout_s=30)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("ffmpeg failed: ")
    assert exc.value.returncode not in (0, None)


# --- size and frame rate are judged before anything is decoded ----------------------------------------


def _uniform_jpeg(width: int, height: int) -> bytes:
    """A valid baseline 4:2:0 JPEG of one flat colour, written by hand: every 8x8 block is "DC
    unchanged, end of block" (2 bits, with one-code Huffman tables), so the scan is all zero bytes
    and a 16000x16000 picture takes 1.5 MB (an encoder would need gigabytes of memory to make it)."""
    import struct

    def seg(marker: int, payload: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload

    one_code = bytes([1] + [0] * 15) + b"\x00"
    out = b"\xff\xd8" + seg(0xDB, b"\x00" + bytes([1] * 64))
    out += seg(0xC0, b"\x08" + struct.pack(">HH", height, width) + b"\x03\x01\x22\x00\x02\x11\x00\x03\x11\x00")
    out += seg(0xC4, b"\x00" + one_code) + seg(0xC4, b"\x10" + one_code)
    out += seg(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
    blocks = 6 * ((width + 15) // 16) * ((height + 15) // 16)
    return out + b"\x00" * ((2 * blocks + 7) // 8) + b"\xff\xd9"


def _mjpeg_video(tmp_path: Path, width: int, height: int, frames: int = 1) -> Path:
    jpeg = tmp_path / f"{width}x{height}.jpg"
    jpeg.write_bytes(_uniform_jpeg(width, height) * frames)
    out = tmp_path / f"{width}x{height}.mkv"
    # Stream copy: the container gets the picture size from the JPEG header, nothing is re-encoded.
    ff.ffmpeg(["-f", "mjpeg", "-framerate", "25", "-i", ff.file_url(jpeg), "-c", "copy", "-y", ff.file_url(out)])
    return out


_PEAK_RSS = """
import resource, sys
from pathlib import Path
from vidsearch.errors import InputError
from vidsearch.media import probe
try:
    probe.probe_video(Path(sys.argv[1]))
    print("ACCEPTED")
except InputError as exc:
    print("REJECTED", exc)
# This process: VmHWM (its ru_maxrss starts at the forking parent's peak: the test process's).
# ffprobe / ffmpeg: RUSAGE_CHILDREN, the largest of them.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_KB", max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


def test_huge_picture_is_rejected_without_decoding(tmp_path: Path) -> None:
    """1.5 MB declaring 16000x16000: decoding it takes >400 MB (ffprobe itself decodes a frame to
    complete the stream parameters); the probe refuses it from the headers, well under 300 MB."""
    import subprocess
    import sys

    video = _mjpeg_video(tmp_path, 16000, 16000)
    assert video.stat().st_size < 2_000_000
    # What ffprobe reports without decoding anything beyond the headers.
    doc = ff.ffprobe_json(["-show_streams", "-max_pixels", "1", ff.file_url(video)])
    assert doc["streams"][0]["codec_name"] == "mjpeg"
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(video)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "REJECTED" in run.stdout and "16000x16000" in run.stdout and "too large" in run.stdout, run.stdout
    peak_mb = int(run.stdout.rsplit("PEAK_KB", 1)[1]) / 1024
    assert peak_mb < 300, f"probe peaked at {peak_mb:.0f} MB"


def test_size_and_rate_are_checked_before_the_decode_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 9000x64 picture is under the decode pixel limit but over max_dim: refused by the checks
    given as `before_decode` (default: ProbeLimits()), and nothing is decoded."""
    video = _mjpeg_video(tmp_path, 9000, 64, frames=3)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(probe, "_decoded_frames", no_decoding)
    with pytest.raises(InputError) as exc:
        probe.probe_video(video)
    _assert_one_line(exc, "9000x64", "[16, 8192]")
    seen = []

    def gate(manifest) -> None:
        seen.append((manifest.width, manifest.height, manifest.frame_rate))
        raise InputError("gate says no")

    with pytest.raises(InputError, match="gate says no"):
        probe.probe_video(video, before_decode=gate)
    assert seen == [(9000, 64, 25.0)]
    with pytest.raises(AssertionError, match="decoded before"):  # a permissive check: then it decodes
        probe.probe_video(video, before_decode=lambda m: None)


def test_ffmpeg_runs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ff.input_args("/x.mp4")
    assert args[args.index("-max_pixels") + 1] == str(8192 * 8192)
    assert 1 <= int(args[args.index("-threads") + 1]) <= 4
    monkeypatch.setenv(ff.THREADS_ENV, "2")
    monkeypatch.setenv(ff.MAX_DECODE_PIXELS_ENV, "1000")
    args = ff.input_args("/x.mp4")
    assert args[args.index("-threads") + 1] == "2" and args[args.index("-max_pixels") + 1] == "1000"
    assert ff._base_argv("ffmpeg", [], "error")[-2:] == ["-filter_threads", "2"]
