"""A segment's audio clip: 16 kHz mono WAV of the segment widened by the overlap, its loudness, typed errors."""

from __future__ import annotations

import math
import random
import wave
from pathlib import Path

import pytest
from vidsearch.errors import InputError
from vidsearch.media import audio
from vidsearch.media import ffmpeg as ff
from vidsearch.records import AudioClip, Segment

DURATION = 6.0


def _make(path: Path, audio_source: str | None, audio_codec: str = "aac") -> Path:
    """A 6 s 64x48 H.264 video with the lavfi `audio_source` as its audio (None: no audio stream)."""
    args = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={DURATION}"]
    maps = ["-map", "0:v"]
    if audio_source is not None:
        args += ["-f", "lavfi", "-i", f"{audio_source}:duration={DURATION}"]
        maps += ["-map", "1:a", "-c:a", audio_codec]
    ff.ffmpeg([*args, *maps, "-c:v", "libx264", "-preset", "ultrafast", "-t", str(DURATION), "-y", ff.file_url(path)])
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio")
    made = {
        "tone": _make(folder / "tone.mp4", "sine=frequency=440:sample_rate=48000"),
        "noise": _make(folder / "noise.mp4", "anoisesrc=color=pink:amplitude=0.3:sample_rate=44100"),
        # PCM in Matroska: the silence stays digital (every sample 0) through encoding.
        "silent": _make(folder / "silent.mkv", "anullsrc=channel_layout=stereo:sample_rate=48000", "pcm_s16le"),
        "mute": _make(folder / "mute.mp4", None),
    }
    # Audio packets overwritten with noise, the index intact: the file opens, its audio does not decode.
    data = bytearray(made["tone"].read_bytes())
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    if moov > mdat:  # index at the end: keep it, garble what lies between
        end = moov - 4
    else:
        end = len(data)
    rng = random.Random(1)
    for k in range(mdat + 8, end):
        data[k] = rng.randrange(256)
    made["corrupt"] = folder / "corrupt.mp4"
    made["corrupt"].write_bytes(bytes(data))
    return made


def _segment(index: int, start: float, end: float) -> Segment:
    return Segment(video_id="v", index=index, start_s=start, end_s=end, uri=f"file:///segments/seg{index:04d}.mkv")


def _wav_facts(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes() / wav.getframerate()


def test_a_tone_becomes_a_16k_mono_wav_of_the_segment_and_its_overlap(videos, tmp_path):
    out = tmp_path / "seg1.wav"
    clip = audio.extract_audio_clip(videos["tone"], "v" * 32, _segment(1, 2.0, 4.0), DURATION, 0.5, out)
    assert isinstance(clip, AudioClip)
    assert (clip.start_s, clip.end_s) == (1.5, 4.5)
    assert (clip.segment_start_s, clip.segment_end_s, clip.segment_index) == (2.0, 4.0, 1)
    rate, channels, width, seconds = _wav_facts(out)
    assert (rate, channels, width) == (16_000, 1, 2)
    assert seconds == pytest.approx(3.0, abs=0.05)
    assert clip.uri == out.absolute().as_uri()
    # ffmpeg's sine source is 1/8 of full scale: -18 dBFS peak, -21 dBFS RMS.
    assert clip.rms_dbfs == pytest.approx(-21.1, abs=1.0)
    assert clip.speech_likely


def test_noise_is_loud_enough_to_hold_speech(videos, tmp_path):
    clip = audio.extract_audio_clip(videos["noise"], "v", _segment(0, 0.0, 3.0), DURATION, 1.0, tmp_path / "n.wav")
    assert clip.rms_dbfs > audio.SPEECH_THRESHOLD_DBFS
    assert clip.speech_likely


def test_a_silent_track_is_minus_infinity_and_not_speech(videos, tmp_path):
    clip = audio.extract_audio_clip(videos["silent"], "v", _segment(0, 0.0, 3.0), DURATION, 1.0, tmp_path / "s.wav")
    assert clip.rms_dbfs == -math.inf
    assert not clip.speech_likely
    # -inf survives the JSON the transcribe worker reads.
    assert AudioClip.model_validate_json(clip.model_dump_json()).rms_dbfs == -math.inf


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0.0, 2.0, (0.0, 3.0)), (4.0, DURATION, (3.0, DURATION)), (0.0, DURATION, (0.0, DURATION))],
    ids=["first-segment", "last-segment", "whole-video"],
)
def test_the_overlap_is_clipped_to_the_video(videos, tmp_path, start, end, expected):
    out = tmp_path / "c.wav"
    clip = audio.extract_audio_clip(videos["tone"], "v", _segment(0, start, end), DURATION, 1.0, out)
    assert (clip.start_s, clip.end_s) == expected
    assert _wav_facts(out)[3] == pytest.approx(expected[1] - expected[0], abs=0.05)


def test_a_video_without_audio_is_a_typed_permanent_error(videos, tmp_path):
    with pytest.raises(audio.NoAudioStreamError, match="no audio stream in 'mute.mp4'") as caught:
        audio.extract_audio_clip(videos["mute"], "v", _segment(0, 0.0, 2.0), DURATION, 1.0, tmp_path / "m.wav")
    assert isinstance(caught.value, InputError)
    assert not (tmp_path / "m.wav").exists()


def test_corrupt_audio_is_a_permanent_error_naming_the_file(videos, tmp_path):
    out = tmp_path / "x.wav"
    with pytest.raises(InputError, match="corrupt audio in 'corrupt.mp4'"):
        audio.extract_audio_clip(videos["corrupt"], "v", _segment(0, 0.0, 4.0), DURATION, 1.0, out)
    assert not out.exists()


def test_bad_ranges_are_refused():
    with pytest.raises(InputError, match="overlap_s"):
        audio.clip_range(0.0, 2.0, DURATION, -1.0)
    with pytest.raises(InputError, match="not a positive range"):
        audio.clip_range(3.0, 2.0, DURATION, 1.0)
    with pytest.raises(InputError, match="outside the video"):
        audio.clip_range(7.5, 9.0, DURATION, 1.0)


def test_rms_of_known_signals():
    assert audio.rms_dbfs(b"") == -math.inf
    assert audio.rms_dbfs(b"\x00\x00" * 100) == -math.inf
    full = (32767).to_bytes(2, "little", signed=True) + (-32768).to_bytes(2, "little", signed=True)
    assert audio.rms_dbfs(full * 50) == pytest.approx(0.0, abs=0.01)


def test_the_media_package_exports_it():
    from vidsearch import media

    assert media.extract_audio_clip is audio.extract_audio_clip
    assert media.NoAudioStreamError is audio.NoAudioStreamError


# ------------------------------------------------------------------------------------------ from S3


@pytest.fixture()
def bucket(s3_bucket) -> str:
    return s3_bucket("audio-test")


def _pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def test_an_s3_source_is_read_through_a_presigned_url_not_copied(videos, tmp_path, bucket, monkeypatch):
    from vidsearch.stores import storage

    uri = f"{bucket}/videos/v/source.mp4"
    storage.upload(videos["tone"], uri)

    def no_copies(*args, **kwargs):
        raise AssertionError("the whole source was downloaded")

    monkeypatch.setattr(storage, "local_file", no_copies)
    segment = _segment(1, 2.0, 4.0)
    with storage.media_input(uri) as source:
        assert isinstance(source, str) and source.startswith("http://") and "X-Amz-Signature=" in source  # SigV4
        clip = audio.extract_audio_clip(source, "v", segment, DURATION, 0.5, tmp_path / "s3.wav", name="source.mp4")
    local = audio.extract_audio_clip(videos["tone"], "v", segment, DURATION, 0.5, tmp_path / "local.wav")
    assert (clip.start_s, clip.end_s, clip.rms_dbfs) == (local.start_s, local.end_s, local.rms_dbfs)
    assert _pcm(tmp_path / "s3.wav") == _pcm(tmp_path / "local.wav")  # the very samples

    # Without audio, and with corrupt audio: the same permanent errors as from a local file, named.
    storage.upload(videos["mute"], f"{bucket}/mute.mp4")
    with storage.media_input(f"{bucket}/mute.mp4") as source, pytest.raises(audio.NoAudioStreamError, match="mute"):
        audio.extract_audio_clip(source, "v", segment, DURATION, 0.5, tmp_path / "m.wav", name="mute.mp4")
    storage.upload(videos["corrupt"], f"{bucket}/corrupt.mp4")
    with storage.media_input(f"{bucket}/corrupt.mp4") as source, pytest.raises(InputError, match="corrupt audio in"):
        audio.extract_audio_clip(source, "v", segment, DURATION, 0.5, tmp_path / "c.wav", name="corrupt.mp4")
    with pytest.raises(FileNotFoundError), storage.media_input(f"{bucket}/missing.mp4"):
        pass


def test_an_url_the_server_cannot_serve_or_nobody_serves_is_transient_and_not_shown(videos, tmp_path, bucket):
    from devstack import free_port
    from vidsearch.errors import TransientError
    from vidsearch.stores import storage

    uri = f"{bucket}/source.mp4"
    storage.upload(videos["tone"], uri)
    with storage.media_input(uri) as url:
        pass
    # The object gone since the URL was signed (the server answers 404), and nobody listening.
    gone = url.replace("/source.mp4?", "/gone.mp4?")
    unserved = f"http://127.0.0.1:{free_port()}/audio-test/source.mp4?Signature=secret"
    for bad in (gone, unserved):
        with pytest.raises(TransientError) as caught:
            audio.extract_audio_clip(bad, "v", _segment(0, 0.0, 2.0), DURATION, 0.5, tmp_path / "t.wav", name="src.mp4")
        assert "'src.mp4'" in str(caught.value) and "Signature" not in str(caught.value)
        assert not (tmp_path / "t.wav").exists()


def test_url_inputs_allow_http_only_and_local_sources_stay_files(tmp_path):
    from vidsearch.stores import storage

    args = ff.url_input_args("https://example.invalid/v.mp4")
    assert args[args.index("-protocol_whitelist") + 1] == "http,https,tcp,tls"
    assert args[-2:] == ["-i", "https://example.invalid/v.mp4"]
    with pytest.raises(ValueError):
        ff.url_input_args("file:/etc/passwd")
    assert ff.source_input(tmp_path / "a.mp4") == (ff.input_args(tmp_path / "a.mp4"), ff.file_url(tmp_path / "a.mp4"))
    (tmp_path / "a.mp4").write_bytes(b"x")
    with storage.media_input(f"file://{tmp_path / 'a.mp4'}") as local:
        assert local == tmp_path / "a.mp4"
