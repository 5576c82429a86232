"""Launching the detect+embed worker and reading back what it wrote.

`worker_argv` builds the exact command a Kubernetes pod runs; `run_local` runs the same command on this
machine, as a subprocess or as a job of the warm worker (`vidsearch.models.worker_server`) when
VIDSEARCH_WORKER_URL names one, and turns its exit code into the library's typed errors; `read_result`
loads a finished worker's output (the indexer's input) and checks that its two files agree.
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
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from vidsearch.errors import PermanentError, QualityGateError, TransientError
from vidsearch.models.worker import EMBEDDINGS_FILE, ERROR_MARKER, EXIT_PERMANENT, EXIT_TRANSIENT, RESULT_FILE
from vidsearch.records import DetectEmbedResult
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
    detector: str, embedder: str, device: str, tiny: bool, dtype: str, model_cache: str | None
) -> list[str]:
    args = ["--detector", detector, "--embedder", embedder, "--device", device, "--dtype", dtype]
    # Explicit either way: the pod's command must not depend on an environment variable it may not have.
    args.append("--tiny-models" if tiny else "--no-tiny-models")
    if model_cache:
        args += ["--model-cache", str(model_cache)]
    return args


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


def _job_arguments(argv: list[str]) -> list[str] | None:
    """The worker's own arguments in a `python -m vidsearch.models.worker ...` argv (None for another form)."""
    if len(argv) >= 3 and argv[1:3] == ["-m", _WORKER_MODULE]:
        return argv[3:]
    return None


def _run_on_warm_worker(
    url: str, arguments: list[str], timeout_s: float | None, token: str | None = None
) -> tuple[int, list[str]] | None:
    """Send one job to the warm worker at `url`: (exit code, its log lines), or None when nothing
    listens there (the caller then starts a worker process, or fails)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url.rstrip("/") + "/run",
        data=json.dumps({"argv": arguments}).encode(),
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
    return _finish(*_run_job(argv, env, timeout_s), output_uri)


def check_models_local(argv: list[str], timeout_s: float | None = None) -> None:
    """Run a `check_argv` command where `run_local` would run jobs (the warm worker, else a process);
    raises as `run_local` does, e.g. PermanentError naming a model that cannot be loaded."""
    _raise_for_exit(*_run_job(list(argv), None, timeout_s))


def _run_job(
    argv: list[str], env: Mapping[str, str] | None, timeout_s: float | None
) -> tuple[int, collections.deque[str]]:
    """(exit code, last output lines) of the worker argv, on the warm worker when one listens."""
    url = os.environ.get(WORKER_URL_ENV, "").strip()
    arguments = _job_arguments(argv)
    if url and not env and arguments is not None:
        outcome = _warm_job(url, arguments, timeout_s, os.environ.get(WORKER_TOKEN_ENV))
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
        raise TransientError(f"detect+embed worker timed out after {timeout_s:g}s") from None
    except BaseException:
        # Interrupted (task killed, Ctrl-C): do not leave an orphan holding the GPU.
        proc.kill()
        proc.wait()
        raise
    reader.join(timeout=5)
    return returncode, tail


def _warm_job(
    url: str, arguments: list[str], timeout_s: float | None, token: str | None
) -> tuple[int, collections.deque[str]] | None:
    logger.info("sending worker job to the warm worker at %s: %s", url, " ".join(arguments))
    outcome = _run_on_warm_worker(url, arguments, timeout_s, token)
    if outcome is None:
        return None
    returncode, lines = outcome
    for line in lines:
        logger.info("[worker] %s", line)
    return returncode, collections.deque(lines, maxlen=_TAIL_LINES)


def _service_job(
    argv: list[str], url: str, token: str | None, timeout_s: float | None
) -> tuple[int, collections.deque[str]]:
    arguments = _job_arguments(list(argv))
    if arguments is None:
        raise ValueError("a service job must be a `python -m vidsearch.models.worker ...` argv")
    outcome = _warm_job(url, arguments, timeout_s, token)
    if outcome is None:
        raise TransientError(f"no warm worker service answers at {url}")
    return outcome


def run_on_service(
    argv: list[str], url: str, token: str | None = None, timeout_s: float | None = None
) -> DetectEmbedResult:
    """Run the worker argv as a job of the warm-worker service at `url` (GPU nodes of a cluster) and
    return its result. Unlike `run_local` there is no fallback: a service that does not answer is a
    TransientError (retried), a refused token a PermanentError."""
    return _finish(*_service_job(argv, url, token, timeout_s), _output_uri(list(argv)))


def check_models_on_service(
    argv: list[str], url: str, token: str | None = None, timeout_s: float | None = None
) -> None:
    """Run a `check_argv` command on the warm-worker service at `url` (no fallback, as `run_on_service`)."""
    _raise_for_exit(*_service_job(argv, url, token, timeout_s))


def _finish(returncode: int, tail: collections.deque[str], output_uri: str) -> DetectEmbedResult:
    """The result of a worker that ended with `returncode`, or the typed error its exit code means."""
    _raise_for_exit(returncode, tail)
    try:
        result, _ = read_result(output_uri)
    except FileNotFoundError as exc:
        raise RuntimeError(f"detect+embed worker exited 0 but {exc} is missing") from exc
    return result


def _raise_for_exit(returncode: int, tail: collections.deque[str]) -> None:
    """The typed error a worker's non-zero exit code means (nothing for 0)."""
    if returncode == EXIT_PERMANENT:
        raise PermanentError(_failure_reason(tail))
    if returncode == EXIT_TRANSIENT:
        raise TransientError(f"detect+embed worker: {_failure_reason(tail)}")
    if returncode != 0:
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise RuntimeError(f"detect+embed worker {how}: {_failure_reason(tail)}")


def read_result(output_uri: str) -> tuple[DetectEmbedResult, np.ndarray]:
    """The worker output under `output_uri`: its result and float32 (N, D) embeddings, row i <-> objects[i].

    Raises FileNotFoundError when the worker has not finished there (no result.json, or no
    embeddings.npy), QualityGateError when the two files disagree (row count, dimension, dtype,
    non-finite values).
    """
    result_uri = storage.join(output_uri, RESULT_FILE)
    embeddings_uri = storage.join(output_uri, EMBEDDINGS_FILE)
    try:
        result = DetectEmbedResult.model_validate_json(storage.read_bytes(result_uri))
    except FileNotFoundError:
        raise FileNotFoundError(result_uri) from None
    except ValidationError as exc:
        raise QualityGateError(f"{result_uri} is not a valid DetectEmbedResult: {exc.error_count()} errors") from exc
    try:
        raw = storage.read_bytes(embeddings_uri)
    except FileNotFoundError:
        raise FileNotFoundError(embeddings_uri) from None
    try:
        embeddings = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise QualityGateError(f"{embeddings_uri} is not a numpy array: {exc}") from exc
    expected = (len(result.objects), result.embedding_dim)
    if embeddings.dtype != np.float32 or embeddings.shape != expected:
        raise QualityGateError(
            f"{embeddings_uri} holds {embeddings.dtype} {embeddings.shape}, expected float32 {expected}"
        )
    if not np.isfinite(embeddings).all():
        raise QualityGateError(f"{embeddings_uri} holds non-finite values")
    return result, embeddings
