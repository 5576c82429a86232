"""One segment's audio for speech recognition: 16 kHz mono 16-bit PCM WAV, with its loudness.

`extract_audio_clip` decodes the first audio stream of the staged source video (not the
stream-copied segment file: that one starts at a keyframe, and its audio is cut with its packets) over
[segment start - overlap, segment end + overlap], clipped to [0, video duration], into a WAV file that
Whisper-family models take as is (16 kHz, one channel, s16). The overlap lets a phrase spoken across a
segment boundary be heard whole by both neighbours; `vidsearch.transcripts.owned_chunks` keeps it once.

Loudness: the RMS level of the whole clip in dBFS (0 dBFS: a full-scale square wave; a full-scale sine
is -3 dBFS); digital silence (every sample 0) is -inf. A clip is `speech_likely` when its level is
above `SPEECH_THRESHOLD_DBFS` (-50 dBFS): quiet room tone and dithered silence sit around -60 to
-90 dBFS, speech recorded at any usable level well above -40 dBFS. A clip that is not speech-likely is
not sent to the speech model (the transcribe worker writes an empty transcript for it).

Errors: a source without an audio stream raises `NoAudioStreamError` (an `InputError`: permanent;
callers may skip the audio branch for such a video); audio that does not decode raises `InputError`
naming the file and ffmpeg's reason; an ffmpeg run past its timeout raises `FFmpegTimeoutError`
(transient), and so does a URL source the network or the server failed (`TransientError`).
"""

from __future__ import annotations

import math
import os
import wave
from pathlib import Path
from typing import Protocol

from vidsearch.errors import InputError, TransientError
from vidsearch.media import ffmpeg as ff
from vidsearch.records import AudioClip

SAMPLE_RATE = 16_000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes: s16
SPEECH_THRESHOLD_DBFS = -50.0
AUDIO_TIMEOUT_S = 300.0
_PROBE_TIMEOUT_S = 60.0


class NoAudioStreamError(InputError):
    """The video has no audio stream: there is nothing to transcribe."""


class SegmentLike(Protocol):
    """What `extract_audio_clip` needs of a segment (e.g. `vidsearch.records.Segment`)."""

    @property
    def index(self) -> int: ...

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...


def clip_range(
    segment_start_s: float, segment_end_s: float, video_duration_s: float, overlap_s: float
) -> tuple[float, float]:
    """[start, end] of a segment's clip in the video: the segment widened by `overlap_s` each side,
    clipped to [0, video_duration_s]. Raises InputError for a range that holds nothing."""
    if overlap_s < 0:
        raise InputError(f"overlap_s must be >= 0, got {overlap_s}")
    if not segment_end_s > segment_start_s >= 0:
        raise InputError(f"segment [{segment_start_s}, {segment_end_s}] is not a positive range")
    start = max(0.0, segment_start_s - overlap_s)
    end = min(video_duration_s, segment_end_s + overlap_s)
    if end <= start:
        raise InputError(
            f"segment [{segment_start_s}, {segment_end_s}] lies outside the video (duration {video_duration_s} s)"
        )
    return start, end


def extract_audio_clip(
    source: str | os.PathLike[str],
    video_id: str,
    segment: SegmentLike,
    video_duration_s: float,
    overlap_s: float,
    out_path: str | os.PathLike[str],
    *,
    uri: str | None = None,
    name: str | None = None,
    timeout_s: float = AUDIO_TIMEOUT_S,
) -> AudioClip:
    """Decode the audio of `segment` (widened by `overlap_s`, see the module docstring) from the source
    video into the WAV file `out_path`; return its AudioClip. `source` is a local path, or an HTTP(S)
    URL (`storage.media_input`: ffmpeg seeks in it with ranged requests); `name` is how messages call it
    (default: the file's name; a URL is never shown). `uri` is where the caller will keep the WAV in
    object storage (default: the `file://` URI of `out_path`)."""
    remote = ff.is_url(source)
    if remote:
        name = name or "the source video"
    else:
        name = name or Path(source).name
        if not Path(source).is_file():
            raise InputError(f"no such file: {name!r}")
    start, end = clip_range(segment.start_s, segment.end_s, video_duration_s, overlap_s)
    _require_audio_stream(source, name)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    input_args, prefix = ff.source_input(source, before=["-ss", f"{start:.6f}"])
    try:
        ff.ffmpeg(
            [
                "-xerror",
                *input_args,
                "-t",
                f"{end - start:.6f}",
                "-map",
                "0:a:0",
                "-vn",
                "-sn",
                "-dn",
                "-ac",
                str(CHANNELS),
                "-ar",
                str(SAMPLE_RATE),
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                "-y",
                ff.file_url(out),
            ],
            timeout_s=timeout_s,
            strip_prefix=prefix,
        )
    except ff.FFmpegTimeoutError:
        out.unlink(missing_ok=True)
        raise
    except ff.FFmpegError as exc:
        out.unlink(missing_ok=True)
        _raise_if_network(exc, remote, name)
        raise InputError(f"corrupt audio in {name!r}: the audio does not decode ({exc.reason})") from exc
    level = rms_dbfs(read_wav_pcm(out))
    return AudioClip(
        video_id=video_id,
        segment_index=segment.index,
        uri=uri if uri is not None else out.absolute().as_uri(),
        segment_start_s=segment.start_s,
        segment_end_s=segment.end_s,
        start_s=start,
        end_s=end,
        sample_rate=SAMPLE_RATE,
        rms_dbfs=level,
        speech_likely=level > SPEECH_THRESHOLD_DBFS,
    )


def _require_audio_stream(source: str | os.PathLike[str], name: str) -> None:
    input_args, prefix = ff.source_input(source)
    try:
        doc = ff.ffprobe_json(
            ["-select_streams", "a", "-show_entries", "stream=index,codec_name", *input_args],
            timeout_s=_PROBE_TIMEOUT_S,
            strip_prefix=prefix,
        )
    except ff.FFmpegTimeoutError:
        raise
    except ff.FFmpegError as exc:
        _raise_if_network(exc, ff.is_url(source), name)
        raise InputError(f"cannot read {name!r}: {exc.reason}") from exc
    if not doc.get("streams"):
        raise NoAudioStreamError(f"no audio stream in {name!r}: nothing to transcribe")


def _raise_if_network(exc: ff.FFmpegError, remote: bool, name: str) -> None:
    """A URL input that failed for the network's or the server's sake is worth a retry (TransientError);
    the reason is kept, the URL (a credential) is not."""
    if remote and ff.is_network_failure(exc.reason):
        raise TransientError(f"cannot fetch {name!r} from object storage: {exc.reason}") from None


def read_wav_pcm(path: str | os.PathLike[str]) -> bytes:
    """The raw s16 mono 16 kHz samples of a WAV file `extract_audio_clip` wrote; InputError for another
    layout or a file that is not a WAV."""
    try:
        with wave.open(str(path), "rb") as wav:
            layout = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
            if layout != (CHANNELS, SAMPLE_WIDTH, SAMPLE_RATE):
                raise InputError(f"{Path(path).name!r} is {layout} (channels, bytes, rate), expected 1, 2, 16000")
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InputError(f"{Path(path).name!r} is not a readable WAV file: {exc}") from exc


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of little-endian s16 samples in dBFS (full scale: 32768); -inf for digital silence or no
    samples."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(samples * samples)))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -math.inf
