"""One place to run ffmpeg and ffprobe.

Every module that shells out to ffmpeg goes through these helpers so that argv building, timeouts,
safety options for untrusted input and error reporting are the same everywhere:

* the binaries come from `VIDSEARCH_FFMPEG` / `VIDSEARCH_FFPROBE` (default: `ffmpeg` / `ffprobe` on
  PATH); a missing binary is a `PermanentError` (`FFmpegNotFoundError`);
* a failed run raises `FFmpegError` whose message is ONE line: the tool and the last meaningful line
  ffmpeg wrote to stderr (the full stderr tail is kept on the exception for logs);
* a run past its timeout is killed and raises `FFmpegTimeoutError`, which is also a `TransientError`;
* `input_args()` opens a local file defensively: only the `file` protocol and a whitelist of container
  demuxers, so a hostile "video" (an HLS or concat playlist, an ANSI text file) cannot make ffmpeg open
  network URLs or other local files, and is rejected as "not a media file" instead;
  `url_input_args()` does the same for our own staged object behind a presigned HTTP(S) URL (only the
  http(s) protocols, the same demuxers);
* resource bounds on every run: `input_args()` caps decoded frame size (`-max_pixels`, from
  `VIDSEARCH_MAX_DECODE_PIXELS`, default 8192 x 8192: a decoder refuses a larger frame before
  allocating it, so a tiny file declaring a 16000 x 16000 picture cannot take gigabytes) and
  decoder threads (`-threads`); ffmpeg also gets `-filter_threads`. The thread count is
  `VIDSEARCH_FFMPEG_THREADS`, default min(usable cores, 4).

`FFmpegError` itself is neither permanent nor transient: the caller knows what a failure means (probe
turns it into `InputError`; a failure while splitting an already-probed file is worth a retry).

Needs ffmpeg >= 5.1 (`-fps_mode`); developed against Debian bookworm's 5.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vidsearch.errors import PermanentError, TransientError, VidsearchError
from vidsearch.settings import number_from_env

# Demuxers a source video may be opened with (matched against ffmpeg's demuxer names, e.g. "mov"
# matches "mov,mp4,m4a,3gp,3g2,mj2"). Deliberately excludes playlist/indirection demuxers (hls, concat,
# dash), image demuxers and `tty` (which happily "decodes" any .txt file as ANSI art).
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "mov",  # mp4, mov, m4v, 3gp
    "matroska",  # mkv, webm
    "avi",
    "flv",
    "mpegts",
    "mpeg",  # MPEG-PS: .mpg, .vob
    "asf",  # wmv
    "ogg",
    "mxf",
    "nut",
    "ivf",
    "yuv4mpegpipe",
)

DEFAULT_TIMEOUT_S = 600.0

MAX_DECODE_PIXELS_ENV = "VIDSEARCH_MAX_DECODE_PIXELS"
DEFAULT_MAX_DECODE_PIXELS = 8192 * 8192
THREADS_ENV = "VIDSEARCH_FFMPEG_THREADS"
DEFAULT_MAX_THREADS = 4
# What a decoder logs when a frame is over `-max_pixels` ("Picture size 16000x16000 exceeds ...").
_OVER_MAX_PIXELS = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")

# Lines that say nothing about *why* a run failed.
_NOISE = re.compile(
    r"^(conversion failed!?|exiting normally.*|press \[q\].*|frame=.*|size=.*|video:.*muxing overhead.*"
    r"|error while (filtering|decoding|processing).*: ?$|nothing was encoded.*|last message repeated.*"
    # Per-frame filter logging (showinfo at -loglevel info) is output, not a reason.
    r"|\[parsed_showinfo.*|color_range:.*)$",
    re.IGNORECASE,
)
# "[h264 @ 0x55d0c3a1b2c0] msg" -> "[h264] msg": the pointer only makes messages differ between runs.
_CONTEXT_PTR = re.compile(r"\s@\s0x[0-9a-fA-F]+\]")
_MAX_REASON = 300
# "[error] msg" / "[h264] [error] msg": the level tag a `level+...` loglevel adds says nothing itself.
_LEVEL_TAG = re.compile(r"(^|\]\s)\[(?:quiet|panic|fatal|error|warning|info|verbose|debug|trace)\]\s*")
# Protocols a URL input may use (`url_input_args`): HTTP(S) and what they run on, nothing else.
REMOTE_PROTOCOLS = "http,https,tcp,tls"
# How ffmpeg words a failure of the network or of the server behind a URL input.
_NETWORK_FAILURE = re.compile(
    r"Server returned|Connection (refused|reset)|timed out|Input/output error|Network is unreachable"
    r"|Failed to resolve|Broken pipe|HTTP error",
    re.IGNORECASE,
)


class FFmpegNotFoundError(PermanentError):
    """The ffmpeg/ffprobe binary is not installed (or not executable)."""


class FFmpegError(VidsearchError):
    """ffmpeg/ffprobe exited with an error. `str(exc)` is one line; `stderr_tail` has the details."""

    def __init__(
        self,
        tool: str,
        reason: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(f"{tool} failed: {reason}")
        self.tool = tool
        self.reason = reason
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class FFmpegTimeoutError(FFmpegError, TransientError):
    """The run took longer than its timeout and was killed (possibly an overloaded machine)."""


def ffmpeg_bin() -> str:
    return os.environ.get("VIDSEARCH_FFMPEG", "ffmpeg")


def ffprobe_bin() -> str:
    return os.environ.get("VIDSEARCH_FFPROBE", "ffprobe")


def _positive_int_env(name: str, default: int) -> int:
    return number_from_env(name, default, int, positive=True, error=PermanentError)


def max_decode_pixels() -> int:
    """Largest frame (width x height) a decoder may allocate: `VIDSEARCH_MAX_DECODE_PIXELS`."""
    return _positive_int_env(MAX_DECODE_PIXELS_ENV, DEFAULT_MAX_DECODE_PIXELS)


def thread_count() -> int:
    """Threads per decoder and per filter graph: `VIDSEARCH_FFMPEG_THREADS`, else min(cores, 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return _positive_int_env(THREADS_ENV, max(1, min(cores, DEFAULT_MAX_THREADS)))


def over_max_pixels(stderr: str) -> tuple[int, int] | None:
    """(width, height) when ffmpeg/ffprobe refused a frame for being over `max_decode_pixels()`."""
    match = _OVER_MAX_PIXELS.search(stderr)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _resolve(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise FFmpegNotFoundError(f"{binary!r} not found on PATH; install ffmpeg")
    return found


def file_url(path: str | os.PathLike[str]) -> str:
    """An ffmpeg input/output name for a local path that can never be taken for an option or a URL.

    A bare `a:b.mp4` would be parsed as protocol `a`, and `-x.mp4` as an option; `file:/abs/path` is
    always the file.
    """
    return "file:" + str(Path(path).absolute())


def input_args(path: str | os.PathLike[str], *, before: Sequence[str] = ()) -> list[str]:
    """`[... -i file:PATH]` for an untrusted local media file (see the module docstring).

    `before` holds per-input options that must precede `-i` (e.g. `-ss`, `-t`, `-noautorotate`).
    The decoders of this input get `-max_pixels` and `-threads` (see the module docstring).
    """
    return _input_args("file", file_url(path), before)


def url_input_args(url: str, *, before: Sequence[str] = ()) -> list[str]:
    """`[... -i URL]` for a media object behind an HTTP(S) URL (a presigned GET of our own staged
    source, `storage.media_input`): ffmpeg reads it with ranged requests. Only the http(s) protocols
    (and the tcp/tls they run on) are allowed, with the same demuxer whitelist and decoder bounds as
    `input_args`: the file cannot make ffmpeg open a local file or another kind of URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("url_input_args takes an http(s) URL")
    return _input_args(REMOTE_PROTOCOLS, url, before)


def is_url(source: str | os.PathLike[str]) -> bool:
    """Whether `source` is an HTTP(S) URL (`url_input_args`) rather than a local path (`input_args`)."""
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def source_input(source: str | os.PathLike[str], *, before: Sequence[str] = ()) -> tuple[list[str], str]:
    """(`url_input_args` for an HTTP(S) URL, else `input_args`; the name ffmpeg's messages start with,
    for `strip_prefix`)."""
    if is_url(source):
        return url_input_args(str(source), before=before), str(source)
    return input_args(source, before=before), file_url(source)


def is_network_failure(reason: str) -> bool:
    """Whether ffmpeg's one-line `reason` for a URL input is the network's or the server's doing (worth
    a retry: a fresh URL, another connection) rather than the media's."""
    return bool(_NETWORK_FAILURE.search(reason))


def _input_args(protocols: str, name: str, before: Sequence[str]) -> list[str]:
    return [
        "-protocol_whitelist",
        protocols,
        "-format_whitelist",
        ",".join(ALLOWED_DEMUXERS),
        "-max_pixels",
        str(max_decode_pixels()),
        "-threads",
        str(thread_count()),
        *before,
        "-i",
        name,
    ]


def summarize_stderr(stderr: str, *, strip_prefix: str | None = None) -> str:
    """The last meaningful stderr line, normalised to one short line ('' when there is none).

    `strip_prefix` (usually the input name) is removed from the start of the line, so
    "file:/tmp/x.txt: Invalid data found when processing input" reads "Invalid data found ...".
    """
    for raw in reversed(stderr.splitlines()):
        line = _LEVEL_TAG.sub(r"\1", raw).strip()
        if not line or _NOISE.match(line):
            continue
        line = _CONTEXT_PTR.sub("]", line)
        if strip_prefix and line.startswith(strip_prefix + ":"):
            line = line[len(strip_prefix) + 1 :].strip()
        return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."
    return ""


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[-limit:]


@dataclass
class Result:
    """A finished run: stdout (bytes) and stderr (text)."""

    argv: list[str]
    stdout: bytes
    stderr: str


def _base_argv(tool: str, args: Sequence[str], loglevel: str) -> list[str]:
    if tool == "ffmpeg":
        threads = ["-filter_threads", str(thread_count())]
        return [_resolve(ffmpeg_bin()), "-hide_banner", "-nostdin", "-loglevel", loglevel, *threads, *args]
    return [_resolve(ffprobe_bin()), "-hide_banner", "-loglevel", loglevel, *args]


def _failure(tool: str, argv: list[str], returncode: int | None, stderr: str, strip: str | None) -> FFmpegError:
    reason = summarize_stderr(stderr, strip_prefix=strip) or f"exit status {returncode}"
    return FFmpegError(tool, reason, argv=argv, returncode=returncode, stderr_tail=_tail(stderr))


def run(
    tool: str,
    args: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    loglevel: str = "error",
    strip_prefix: str | None = None,
) -> Result:
    """Run `ffmpeg` or `ffprobe` (`tool`) with `args` and wait for it.

    Promises: returns only when the tool exited 0; otherwise raises `FFmpegError` (one-line reason),
    `FFmpegTimeoutError` after `timeout_s` (the process is killed), or `FFmpegNotFoundError`.
    """
    if tool not in ("ffmpeg", "ffprobe"):
        raise ValueError(f"unknown tool {tool!r}")
    argv = _base_argv(tool, args, loglevel)
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = (exc.stderr or b"").decode("utf-8", "replace")
        raise FFmpegTimeoutError(
            tool, f"timed out after {timeout_s:g} s", argv=argv, stderr_tail=_tail(stderr)
        ) from None
    except OSError as exc:  # e.g. binary not executable
        raise FFmpegNotFoundError(f"cannot run {argv[0]}: {exc}") from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise _failure(tool, argv, proc.returncode, stderr, strip_prefix)
    return Result(argv=argv, stdout=proc.stdout, stderr=stderr)


def ffmpeg(args: Sequence[str], **kwargs: Any) -> Result:
    """`run("ffmpeg", args, ...)`."""
    return run("ffmpeg", args, **kwargs)


def ffprobe_json(args: Sequence[str], **kwargs: Any) -> dict[str, Any]:
    """Run ffprobe with `-print_format json` and return the parsed document."""
    return ffprobe_json_stderr(args, **kwargs)[0]


def ffprobe_json_stderr(args: Sequence[str], **kwargs: Any) -> tuple[dict[str, Any], str]:
    """`ffprobe_json`, with what ffprobe logged (a successful run may have refused a frame)."""
    result = run("ffprobe", ["-print_format", "json", *args], **kwargs)
    try:
        doc = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise FFmpegError("ffprobe", f"unparseable JSON output ({exc.msg})", argv=result.argv) from exc
    if not isinstance(doc, dict):
        raise FFmpegError("ffprobe", "unexpected JSON output", argv=result.argv)
    return doc, result.stderr


@dataclass
class Stream:
    """A running ffmpeg whose stdout the caller reads; stderr is collected in the background."""

    proc: subprocess.Popen[bytes]
    argv: list[str]
    _stderr: list[str] = field(default_factory=list)
    timed_out: threading.Event = field(default_factory=threading.Event)

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def stderr_text(self) -> str:
        return "".join(self._stderr)


@contextlib.contextmanager
def stream(
    args: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    loglevel: str = "error",
    strip_prefix: str | None = None,
) -> Iterator[Stream]:
    """Start ffmpeg with stdout piped to the caller (e.g. `-f rawvideo pipe:1`).

    stderr is drained by a thread (so the pipe never fills and blocks ffmpeg) and is available as
    `stream.stderr_text()` once the block ends. On leaving the block normally the process is waited
    for, and a non-zero exit raises `FFmpegError`; a run longer than `timeout_s` is killed and raises
    `FFmpegTimeoutError`. If the block raises, ffmpeg is killed and the caller's exception propagates.
    """
    argv = _base_argv("ffmpeg", args, loglevel)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise FFmpegNotFoundError(f"cannot run {argv[0]}: {exc}") from exc
    handle = Stream(proc=proc, argv=argv)

    def drain() -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            handle._stderr.append(raw.decode("utf-8", "replace"))

    def on_timeout() -> None:
        handle.timed_out.set()
        proc.kill()

    reader = threading.Thread(target=drain, name="ffmpeg-stderr", daemon=True)
    reader.start()
    watchdog = threading.Timer(timeout_s, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        try:
            yield handle
        except BaseException:
            proc.kill()
            raise
        finally:
            # Read whatever is left so ffmpeg can exit (the caller may have stopped reading early).
            if proc.stdout is not None:
                try:
                    while proc.stdout.read(1 << 20):
                        pass
                except (OSError, ValueError):
                    pass
        returncode = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    stderr = handle.stderr_text()
    if handle.timed_out.is_set():
        raise FFmpegTimeoutError("ffmpeg", f"timed out after {timeout_s:g} s", argv=argv, stderr_tail=_tail(stderr))
    if returncode != 0:
        raise _failure("ffmpeg", argv, returncode, stderr, strip_prefix)


def parse_rate(value: str | None) -> float | None:
    """ffprobe's "30000/1001" (or "29.97") as a float; None for missing or "0/0"."""
    if not value:
        return None
    try:
        if "/" in value:
            num, den = value.split("/", 1)
            n, d = float(num), float(den)
            return n / d if d and n > 0 else None
        rate = float(value)
        return rate if rate > 0 else None
    except ValueError:
        return None


def parse_float(value: Any) -> float | None:
    """ffprobe numbers come as strings and may be "N/A"."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN -> None


def parse_clock(value: str | None) -> float | None:
    """Matroska's "HH:MM:SS.nnnnnnnnn" DURATION tag as seconds."""
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*", value)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
