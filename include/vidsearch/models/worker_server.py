"""The warm worker: the detect+embed worker served by one long-lived process that keeps its models loaded.

    python -m vidsearch.models.worker_server [--host 127.0.0.1] [--port 8795]

A worker process spends most of a short segment starting Python, importing torch and loading two
models (tens of seconds on a CPU, against seconds of inference). On one machine, a process that stays up
pays that once. Each job is exactly a worker command line, run through `worker.execute`: the same
parsing, checks, outputs in object storage and exit codes as `python -m vidsearch.models.worker`.

    POST /run     {"argv": [worker arguments, without "python -m vidsearch.models.worker"]}
                  -> {"exit_code": int, "log": [lines]}  (the last line is the marked reason on failure)
    GET  /health  -> {"ok": true, "jobs": int, "model_loads": int, "models": [...], "busy": bool}

Jobs run one at a time (one device; concurrent jobs would only contend for it); a request waits for
the one before it. `launcher.run_local` sends its jobs here when VIDSEARCH_WORKER_URL is set and falls
back to a worker process when nothing listens there; in the `service` execution mode (a Deployment of
warm workers on GPU nodes) `launcher.run_on_service` sends them with no fallback.

Callers authenticate: when VIDSEARCH_WORKER_TOKEN is set (the embedded stack and the Kubernetes
manifest always set it), POST /run needs `Authorization: Bearer <token>` (401 otherwise) and a JSON
body (`Content-Type: application/json`, 415 otherwise: a web page cannot send that without a CORS
preflight, which this server never answers). Without a token it accepts jobs from anyone who can
reach it and says so at start: then bind it to loopback (the default) only.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vidsearch.models.worker import ModelCache, configure_logging, execute

logger = logging.getLogger("vidsearch.models.worker_server")

# Not 8793 or 8794: Airflow's worker and triggerer log servers listen there.
DEFAULT_PORT = 8795
MAX_REQUEST_BYTES = 1 << 20
TOKEN_ENV = "VIDSEARCH_WORKER_TOKEN"  # launcher.WORKER_TOKEN_ENV: the same variable on both sides


class _JobLog(logging.Handler):
    """Collects the log lines one job's thread emits (the job's log, returned to the caller)."""

    def __init__(self, thread_id: int) -> None:
        super().__init__(level=logging.INFO)
        self.thread_id = thread_id
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            self.lines.append(self.format(record))


class WarmWorker:
    """The models and the job lock shared by the server's request threads."""

    def __init__(self, token: str | None = None) -> None:
        self.models = ModelCache()
        self.jobs = 0
        self.token = token or None
        self._lock = threading.Lock()

    def authorised(self, header: str | None) -> bool:
        """Whether an Authorization header carries the token (always, when none is configured)."""
        if self.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def run_job(self, argv: list[str]) -> dict[str, Any]:
        """Run one worker job (after any job in progress); its exit code and log lines."""
        with self._lock:
            self.jobs += 1
            job = self.jobs
            started = time.perf_counter()
            capture = _JobLog(threading.get_ident())
            root = logging.getLogger()
            root.addHandler(capture)
            try:
                code, reason = execute(argv, self.models)
            finally:
                root.removeHandler(capture)
            lines = capture.lines + ([reason] if reason else [])
            logger.info("job %d: exit %d in %.2fs", job, code, time.perf_counter() - started)
            return {"exit_code": code, "log": lines}

    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "jobs": self.jobs,
            "model_loads": self.models.loads,
            "models": self.models.describe(),
            "busy": self.busy,
        }


def _handler(worker: WarmWorker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vidsearch-worker"

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/health":
                self._reply(404, {"error": f"no such path {self.path}"})
                return
            self._reply(200, worker.health())

        def do_POST(self) -> None:
            if self.path != "/run":
                self._reply(404, {"error": f"no such path {self.path}"})
                return
            if not worker.authorised(self.headers.get("Authorization")):
                self._reply(401, {"error": "a valid bearer token is required"})
                return
            if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
                self._reply(415, {"error": "the body must be application/json"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_REQUEST_BYTES:
                self._reply(400, {"error": f"a JSON body of 1 to {MAX_REQUEST_BYTES} bytes is required"})
                return
            try:
                argv = json.loads(self.rfile.read(length))["argv"]
            except (ValueError, KeyError, TypeError):
                argv = None
            if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
                self._reply(400, {"error": 'the body must be {"argv": [strings]}'})
                return
            self._reply(200, worker.run_job(argv))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler


def make_server(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None
) -> tuple[ThreadingHTTPServer, WarmWorker]:
    """A bound, not yet serving, warm-worker server (port 0: any free port, see server_address);
    `token`: the bearer token callers must send (None: VIDSEARCH_WORKER_TOKEN, if set)."""
    worker = WarmWorker(token if token is not None else os.environ.get(TOKEN_ENV))
    server = ThreadingHTTPServer((host, port), _handler(worker))
    server.daemon_threads = True
    return server, worker


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> Iterator[tuple[str, WarmWorker]]:
    """A warm worker serving from a thread of this process for the duration of the block: its URL
    and its state (tests and benchmarks; `main` is the long-lived process)."""
    server, worker = make_server(host, port, token)
    threading.Thread(target=server.serve_forever, name="warm-worker", daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}", worker
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vidsearch.models.worker_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        server, worker = make_server(args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    logger.info("warm worker listening on http://%s:%d", *server.server_address[:2])
    if worker.token is None:
        logger.warning("%s is not set: any process that can reach this port can run jobs", TOKEN_ENV)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
