"""Launching the detect+embed and transcribe workers and reading back what they wrote.

`worker_argv` builds the exact command a Kubernetes pod runs; `run_local` runs the same command on this
machine, as a subprocess or as a job of the warm worker (`vidsearch.models.worker_server`) when
VIDSEARCH_WORKER_URL names one, and turns its exit code into the library's typed errors; `read_result`
loads a finished worker's output (the indexer's input) and checks that its two files agree.
The transcribe worker goes the same ways: `transcriber_argv`, `run_transcribe_local`,
`run_transcribe_on_service`, `read_transcript`.
"""

from __future__ import annotations

import collections
import errno
import http.client
import io
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from vidsearch.errors import PermanentError, QualityGateError, TransientError
from vidsearch.models.transcriber import TEXT_EMBEDDINGS_FILE, TRANSCRIPT_FILE
from vidsearch.models.worker import EMBEDDINGS_FILE, ERROR_MARKER, EXIT_PERMANENT, EXIT_TRANSIENT, RESULT_FILE
from vidsearch.records import DetectEmbedResult, TranscriptResult
from vidsearch.stores import storage

logger = logging.getLogger(__name__)

# The folder that holds the `vidsearch` package: the worker subprocess must import it.
INCLUDE_DIR = Path(__file__).resolve().parents[2]
_TAIL_LINES = 50
# URL of a warm worker (`python -m vidsearch.models.worker_server`) that `run_local` sends its jobs to.
WORKER_URL_ENV = "VIDSEARCH_WORKER_URL"
# The bearer token a warm worker requires (the same variable on both sides).
WORKER_TOKEN_ENV = "VIDSEARCH_WORKER_TOKEN"
_WORKER_MODULE = "vidsearch.models.worker"
_TRANSCRIBER_MODULE = "vidsearch.models.transcriber"
# The worker commands a warm worker runs (`worker_server.JOBS`), and what each is called in messages.
_JOB_MODULES = {_WORKER_MODULE: "detect+embed worker", _TRANSCRIBER_MODULE: "transcribe worker"}


def worker_argv(
    frames_uri: str,
    output_uri: str,
    detector: str,
    embedder: str,
    score_threshold: float,
    batch_size: int,
    device: str,
    tiny: bool,
    *,
    dtype: str = "float32",
    model_cache: str | None = None,
) -> list[str]:
    """The worker command line, starting `python -m vidsearch.models.worker`: exactly what a pod runs.

    `model_cache` (tiny-model folder) is passed only when given; otherwise the worker uses
    VIDSEARCH_MODEL_CACHE or its default.
    """
    return [
        "python", "-m", _WORKER_MODULE,
        "--frames-uri", frames_uri,
        "--output-uri", output_uri,
        "--score-threshold", repr(float(score_threshold)),
        "--batch-size", str(int(batch_size)),
        *_model_arguments(detector, embedder, device, tiny, dtype, model_cache),
    ]  # fmt: skip


def check_argv(
    detector: str, embedder: str, device: str, tiny: bool, *, dtype: str = "float32", model_cache: str | None = None
) -> list[str]:
    """The worker command that only loads the models a job with the same arguments would use."""
    return [
        "python",
        "-m",
        _WORKER_MODULE,
        "--check-models",
        *_model_arguments(detector, embedder, device, tiny, dtype, model_cache),
    ]


def _model_arguments(
    detector: str | None, embedder: str, device: str, tiny: bool, dtype: str, model_cache: str | None
) -> list[str]:
    args = ["--detector", detector] if detector is not None else []
    args += ["--embedder", embedder, "--device", device, "--dtype", dtype]
    # Explicit either way: the pod's command must not depend on an environment variable it may not have.
    args.append("--tiny-models" if tiny else "--no-tiny-models")
    if model_cache:
        args += ["--model-cache", str(model_cache)]
    return args


def transcriber_argv(
    clip_uri: str,
    output_uri: str,
    model: str,
    embedder: str,
    *,
    last_segment: bool,
    language: str = "auto",
    batch_size: int = 8,
    device: str = "auto",
    tiny: bool = False,
    dtype: str = "float32",
    model_cache: str | None = None,
) -> list[str]:
    """The transcribe worker command line, starting `python -m vidsearch.models.transcriber`: exactly
    what a pod runs. `clip_uri` names the segment's AudioClip JSON (see the transcriber's docstring)."""
    return [
        "python", "-m", _TRANSCRIBER_MODULE,
        "--clip-uri", clip_uri,
        "--output-uri", output_uri,
        *(["--last-segment"] if last_segment else []),
        "--language", language,
        "--batch-size", str(int(batch_size)),
        *_transcriber_model_arguments(model, embedder, device, tiny, dtype, model_cache),
    ]  # fmt: skip


def transcriber_check_argv(
    model: str, embedder: str, device: str, tiny: bool, *, dtype: str = "float32", model_cache: str | None = None
) -> list[str]:
    """The transcribe worker command that only loads the models a job with the same arguments would use."""
    return [
        "python",
        "-m",
        _TRANSCRIBER_MODULE,
        "--check-models",
        *_transcriber_model_arguments(model, embedder, device, tiny, dtype, model_cache),
    ]


def _transcriber_model_arguments(
    model: str, embedder: str, device: str, tiny: bool, dtype: str, model_cache: str | None
) -> list[str]:
    return ["--model", model, *_model_arguments(None, embedder, device, tiny, dtype, model_cache)]


def _output_uri(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--output-uri" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--output-uri="):
            return arg.split("=", 1)[1]
    raise ValueError("worker argv has no --output-uri")


def _failure_reason(tail: collections.deque[str]) -> str:
    """The worker's one-line reason (its marked last line), else the last non-empty line it printed."""
    for line in reversed(tail):
        if line.startswith(ERROR_MARKER):
            reason = line[len(ERROR_MARKER) :].strip()
            for kind in ("permanent:", "transient:", "failed:"):
                if reason.startswith(kind):
                    return reason[len(kind) :].strip()
            return reason
    for line in reversed(tail):
        if line.strip():
            return line.strip()
    return "no output"


def _job_arguments(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, the worker's own arguments) of a `python -m vidsearch.models.worker ...` (or
    `.transcriber`) argv; None for another form."""
    if len(argv) >= 3 and argv[1] == "-m" and argv[2] in _JOB_MODULES:
        return argv[2], argv[3:]
    return None


def _what(argv: list[str]) -> str:
    """What the argv runs, for messages: "detect+embed worker" or "transcribe worker"."""
    job = _job_arguments(argv)
    return _JOB_MODULES[job[0]] if job is not None else "worker"


def _run_on_warm_worker(
    url: str, arguments: list[str], timeout_s: float | None, token: str | None = None, module: str = _WORKER_MODULE
) -> tuple[int, list[str]] | None:
    """Send one job to the warm worker at `url`: (exit code, its log lines), or None when nothing
    listens there (the caller then starts a worker process, or fails)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body: dict[str, object] = {"argv": arguments}
    if module != _WORKER_MODULE:  # detect+embed jobs keep the body older warm workers take
        body["module"] = module
    request = urllib.request.Request(
        url.rstrip("/") + "/run",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 421):
            # 421: the URL's host is not one the worker answers to (its --allowed-host names).
            check = "its allowed host names" if exc.code == 421 else WORKER_TOKEN_ENV
            raise PermanentError(f"warm worker at {url} refused the job: HTTP {exc.code} (check {check})") from exc
        if exc.code >= 500:
            raise TransientError(f"warm worker at {url} failed: HTTP {exc.code}") from exc
        raise RuntimeError(f"warm worker at {url} refused the job: HTTP {exc.code} {exc.read()[:300]!r}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError) or getattr(reason, "errno", None) == errno.ECONNREFUSED:
            return None
        if isinstance(reason, TimeoutError):
            raise TransientError(f"warm worker at {url} did not answer within {timeout_s:g}s") from exc
        raise TransientError(f"warm worker at {url} cannot be reached: {reason}") from exc
    except TimeoutError as exc:
        raise TransientError(f"warm worker at {url} did not answer within {timeout_s:g}s") from exc
    except (http.client.HTTPException, ConnectionError) as exc:
        # It died during the job (killed, out of memory): a retry finds it restarted, or falls back.
        raise RuntimeError(f"warm worker at {url} dropped the job: {type(exc).__name__}: {exc}") from exc
    try:
        return int(payload["exit_code"]), [str(line) for line in payload["log"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError(f"warm worker at {url} answered {str(payload)[:300]}") from exc


def run_local(
    argv: list[str], env: Mapping[str, str] | None = None, timeout_s: float | None = None
) -> DetectEmbedResult:
    """Run the worker argv on this machine and return the DetectEmbedResult it wrote.

    When VIDSEARCH_WORKER_URL is set (and no `env` is given: a warm worker has its own environment),
    the job goes to the warm worker there, which keeps its models loaded between jobs; when nothing
    listens at that URL, a worker process runs it instead. For the process, a leading "python" is
    replaced by this interpreter; `env` adds to (and overrides) this process's environment, and the
    include/ folder is put first on PYTHONPATH. The worker's output lines are logged either way.
    Raises PermanentError (exit 3, with the worker's one-line reason), TransientError (exit 75 or a
    timeout: retry) or RuntimeError (any other failure: retryable).
    """
    argv = list(argv)
    output_uri = _output_uri(argv)
    return _finish(*_run_job(argv, env, timeout_s), output_uri, read_result, _what(argv))


def run_transcribe_local(
    argv: list[str], env: Mapping[str, str] | None = None, timeout_s: float | None = None
) -> TranscriptResult:
    """`run_local` for a `transcriber_argv` command: the TranscriptResult it wrote (same warm-worker
    routing, same typed errors)."""
    argv = list(argv)
    output_uri = _output_uri(argv)
    return _finish(*_run_job(argv, env, timeout_s), output_uri, read_transcript, _what(argv))


def check_models_local(argv: list[str], timeout_s: float | None = None) -> None:
    """Run a `check_argv` command where `run_local` would run jobs (the warm worker, else a process);
    raises as `run_local` does, e.g. PermanentError naming a model that cannot be loaded."""
    _raise_for_exit(*_run_job(list(argv), None, timeout_s), _what(list(argv)))


def _run_job(
    argv: list[str], env: Mapping[str, str] | None, timeout_s: float | None
) -> tuple[int, collections.deque[str]]:
    """(exit code, last output lines) of the worker argv, on the warm worker when one listens."""
    url = os.environ.get(WORKER_URL_ENV, "").strip()
    job = _job_arguments(argv)
    if url and not env and job is not None:
        outcome = _warm_job(url, job[1], timeout_s, os.environ.get(WORKER_TOKEN_ENV), job[0])
        if outcome is not None:
            return outcome
        logger.warning("no warm worker listens at %s (%s): starting a worker process", url, WORKER_URL_ENV)
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(INCLUDE_DIR), child_env.get("PYTHONPATH", "")) if p)
    child_env.setdefault("PYTHONUNBUFFERED", "1")

    logger.info("running worker: %s", " ".join(argv))
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one ordered stream: progress, warnings, tracebacks, the reason line
        stdin=subprocess.DEVNULL,
        env=child_env,
        text=True,
        errors="replace",
        bufsize=1,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            logger.info("[worker] %s", line)

    reader = threading.Thread(target=pump, name="worker-output", daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        raise TransientError(f"{_what(argv)} timed out after {timeout_s:g}s") from None
    except BaseException:
        # Interrupted (task killed, Ctrl-C): do not leave an orphan holding the GPU.
        proc.kill()
        proc.wait()
        raise
    reader.join(timeout=5)
    return returncode, tail


def _warm_job(
    url: str, arguments: list[str], timeout_s: float | None, token: str | None, module: str = _WORKER_MODULE
) -> tuple[int, collections.deque[str]] | None:
    logger.info("sending %s job to the warm worker at %s: %s", module, url, " ".join(arguments))
    outcome = _run_on_warm_worker(url, arguments, timeout_s, token, module)
    if outcome is None:
        return None
    returncode, lines = outcome
    for line in lines:
        logger.info("[worker] %s", line)
    return returncode, collections.deque(lines, maxlen=_TAIL_LINES)


def _service_job(
    argv: list[str], url: str, token: str | None, timeout_s: float | None
) -> tuple[int, collections.deque[str]]:
    job = _job_arguments(list(argv))
    if job is None:
        raise ValueError("a service job must be a `python -m vidsearch.models.worker ...` (or .transcriber) argv")
    outcome = _warm_job(url, job[1], timeout_s, token, job[0])
    if outcome is None:
        raise TransientError(f"no warm worker service answers at {url}")
    return outcome


def run_on_service(
    argv: list[str], url: str, token: str | None = None, timeout_s: float | None = None
) -> DetectEmbedResult:
    """Run the worker argv as a job of the warm-worker service at `url` (GPU nodes of a cluster) and
    return its result. Unlike `run_local` there is no fallback: a service that does not answer is a
    TransientError (retried), a refused token a PermanentError."""
    return _finish(*_service_job(argv, url, token, timeout_s), _output_uri(list(argv)), read_result, _what(argv))


def run_transcribe_on_service(
    argv: list[str], url: str, token: str | None = None, timeout_s: float | None = None
) -> TranscriptResult:
    """`run_on_service` for a `transcriber_argv` command: its TranscriptResult (no fallback)."""
    argv = list(argv)
    return _finish(*_service_job(argv, url, token, timeout_s), _output_uri(argv), read_transcript, _what(argv))


def check_models_on_service(
    argv: list[str], url: str, token: str | None = None, timeout_s: float | None = None
) -> None:
    """Run a `check_argv` command on the warm-worker service at `url` (no fallback, as `run_on_service`)."""
    _raise_for_exit(*_service_job(argv, url, token, timeout_s), _what(list(argv)))


def _finish(
    returncode: int,
    tail: collections.deque[str],
    output_uri: str,
    read: Callable[[str], tuple[_Result, np.ndarray]],
    what: str,
) -> _Result:
    """The result of a worker that ended with `returncode` (read back by `read`), or the typed error its
    exit code means."""
    _raise_for_exit(returncode, tail, what)
    try:
        result, _ = read(output_uri)
    except FileNotFoundError as exc:
        raise RuntimeError(f"{what} exited 0 but {exc} is missing") from exc
    return result


def _raise_for_exit(returncode: int, tail: collections.deque[str], what: str = "detect+embed worker") -> None:
    """The typed error a worker's non-zero exit code means (nothing for 0)."""
    if returncode == EXIT_PERMANENT:
        raise PermanentError(_failure_reason(tail))
    if returncode == EXIT_TRANSIENT:
        raise TransientError(f"{what}: {_failure_reason(tail)}")
    if returncode != 0:
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise RuntimeError(f"{what} {how}: {_failure_reason(tail)}")


def read_result(output_uri: str) -> tuple[DetectEmbedResult, np.ndarray]:
    """The worker output under `output_uri`: its result and float32 (N, D) embeddings, row i <-> objects[i].

    Raises FileNotFoundError when the worker has not finished there (no result.json, or no
    embeddings.npy), QualityGateError when the two files disagree (row count, dimension, dtype,
    non-finite values).
    """
    result = _read_record(storage.join(output_uri, RESULT_FILE), DetectEmbedResult)
    embeddings_uri = storage.join(output_uri, EMBEDDINGS_FILE)
    embeddings = _read_float32(embeddings_uri)
    _check_rows(embeddings_uri, embeddings, (len(result.objects), result.embedding_dim))
    return result, embeddings


def read_transcript(output_uri: str) -> tuple[TranscriptResult, np.ndarray]:
    """The transcribe worker's output under `output_uri`: its TranscriptResult and float32 (N, D) text
    embeddings, row i <-> chunks[i] (N = 0: any width, (0, 0) for a silent clip). Raises as `read_result`."""
    result = _read_record(storage.join(output_uri, TRANSCRIPT_FILE), TranscriptResult)
    embeddings_uri = storage.join(output_uri, TEXT_EMBEDDINGS_FILE)
    embeddings = _read_float32(embeddings_uri)
    # The width is the embedder's: any, as long as there is one when there are rows.
    width = embeddings.shape[1] if embeddings.ndim == 2 and (embeddings.shape[1] or not result.chunks) else -1
    _check_rows(embeddings_uri, embeddings, (len(result.chunks), width))
    return result, embeddings


_Result = TypeVar("_Result", DetectEmbedResult, TranscriptResult)


def _read_record(uri: str, record: type[_Result]) -> _Result:
    try:
        return record.model_validate_json(storage.read_bytes(uri))
    except FileNotFoundError:
        raise FileNotFoundError(uri) from None
    except ValidationError as exc:
        raise QualityGateError(f"{uri} is not a valid {record.__name__}: {exc.error_count()} errors") from exc


def _read_float32(uri: str) -> np.ndarray:
    try:
        raw = storage.read_bytes(uri)
    except FileNotFoundError:
        raise FileNotFoundError(uri) from None
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise QualityGateError(f"{uri} is not a numpy array: {exc}") from exc


def _check_rows(uri: str, embeddings: np.ndarray, expected: tuple[int, int]) -> None:
    if embeddings.dtype != np.float32 or embeddings.shape != expected:
        raise QualityGateError(f"{uri} holds {embeddings.dtype} {embeddings.shape}, expected float32 {expected}")
    if not np.isfinite(embeddings).all():
        raise QualityGateError(f"{uri} holds non-finite values")
