"""The warm worker: the detect+embed and transcribe workers served by one long-lived process that keeps
its models loaded.

    VIDSEARCH_WORKER_TOKEN=<secret> VIDSEARCH_STORAGE_ROOT=<root> \
        python -m vidsearch.models.worker_server [--host 127.0.0.1] [--port 8795] [--allowed-host NAME ...]

A worker process spends most of a short segment starting Python, importing torch and loading two
models (tens of seconds on a CPU, against seconds of inference). On one machine, a process that stays up
pays that once. Each job is exactly a worker command line, run through its module's `execute`
(`worker.execute`, `transcriber.execute`): the same parsing, checks, outputs in object storage and exit
codes as `python -m vidsearch.models.worker` (or `.transcriber`).

    POST /run     {"argv": [worker arguments, without "python -m <module>"], "module": <module>}
                  -> {"exit_code": int, "log": [lines]}  (the last line is the marked reason on failure)
                  "module" is "vidsearch.models.worker" (detect+embed, the default when absent) or
                  "vidsearch.models.transcriber" (transcribe); any other is refused (400).
    GET  /health  -> {"ok": true, "jobs": int, "model_loads": int, "models": [...], "busy": bool}

Jobs run one at a time (one device; concurrent jobs would only contend for it); a request waits for
the one before it. `launcher.run_local` sends its jobs here when VIDSEARCH_WORKER_URL is set and falls
back to a worker process when nothing listens there; in the `service` execution mode (a Deployment of
warm workers on GPU nodes) `launcher.run_on_service` sends them with no fallback.

Callers authenticate, and there is no open mode: POST /run needs `Authorization: Bearer <token>`,
the token being VIDSEARCH_WORKER_TOKEN (401 otherwise; the embedded stack generates it, compose and the
Kubernetes manifest take it from a secret). `main` refuses to start without a token, and a server made
without one (`make_server`) refuses every job. The body must be JSON (`Content-Type:
application/json`, 415 otherwise: a web page cannot send that without a CORS preflight, which this
server never answers). Every request's Host header must name this server (421 otherwise), which
defeats DNS rebinding (a page whose own name resolves to 127.0.0.1): bound to loopback, only the bound
address and `localhost`; bound to all interfaces (a container), any IP address, `localhost` and the
names given with --allowed-host or VIDSEARCH_WORKER_ALLOWED_HOSTS (comma-separated: the service's DNS
names). What a job may touch is confined by the worker itself (`worker.confine_uri`, model roots).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vidsearch.models import transcriber, worker
from vidsearch.models.worker import STORAGE_ROOT_ENV, ModelCache, configure_logging

logger = logging.getLogger("vidsearch.models.worker_server")

# Not 8793 or 8794: Airflow's worker and triggerer log servers listen there.
DEFAULT_PORT = 8795
MAX_REQUEST_BYTES = 1 << 20
TOKEN_ENV = "VIDSEARCH_WORKER_TOKEN"  # launcher.WORKER_TOKEN_ENV: the same variable on both sides
ALLOWED_HOSTS_ENV = "VIDSEARCH_WORKER_ALLOWED_HOSTS"
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")
DEFAULT_MODULE = "vidsearch.models.worker"
# The worker commands a job may name, and how each runs one job (parse, run, classify errors).
JOBS: dict[str, Callable[..., tuple[int, str | None]]] = {
    DEFAULT_MODULE: worker.execute,
    "vidsearch.models.transcriber": transcriber.execute,
}


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

    def __init__(
        self, token: str | None = None, bind_host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = ()
    ) -> None:
        self.models = ModelCache()
        self.jobs = 0
        self.token = token or None
        self.bind_host = bind_host
        self.allowed_hosts = {_host_name(name) for name in allowed_hosts if name.strip()}
        self._lock = threading.Lock()

    def authorised(self, header: str | None) -> bool:
        """Whether an Authorization header carries the token (never, when none is configured)."""
        if self.token is None:
            return False
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's Host header names this server (see the module docstring)."""
        if not header:
            return False
        name = _host_name(header)
        if name in self.allowed_hosts:
            return True
        bound = _host_name(self.bind_host)
        if bound in _WILDCARD_HOSTS:
            # DNS rebinding needs a name; a request to an address is one the client meant for this host.
            return name == "localhost" or _is_ip(name)
        if name == bound:
            return True
        return name == "localhost" and _is_ip(bound) and ipaddress.ip_address(bound).is_loopback

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def run_job(self, argv: list[str], module: str = DEFAULT_MODULE) -> dict[str, Any]:
        """Run one job of the worker command `module` (after any job in progress); its exit code and log
        lines. The models it loads stay in this worker's one ModelCache, shared by both commands."""
        execute = JOBS[module]
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


def _host_name(host: str) -> str:
    """The name or address of a Host header or bind address, without port or IPv6 brackets, lowercase."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _handler(warm: WarmWorker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vidsearch-worker"

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _host_refused(self) -> bool:
            if warm.host_allowed(self.headers.get("Host")):
                return False
            self._reply(421, {"error": "the Host header does not name this server"})
            return True

        def do_GET(self) -> None:
            if self._host_refused():
                return
            if self.path != "/health":
                self._reply(404, {"error": f"no such path {self.path}"})
                return
            self._reply(200, warm.health())

        def do_POST(self) -> None:
            if self._host_refused():
                return
            if self.path != "/run":
                self._reply(404, {"error": f"no such path {self.path}"})
                return
            if warm.token is None:
                self._reply(401, {"error": f"this worker has no token ({TOKEN_ENV}): it runs no job"})
                return
            if not warm.authorised(self.headers.get("Authorization")):
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
                body = json.loads(self.rfile.read(length))
                argv, module = body["argv"], body.get("module", DEFAULT_MODULE)
            except (ValueError, KeyError, TypeError, AttributeError):
                argv, module = None, None
            if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
                self._reply(400, {"error": 'the body must be {"argv": [strings], "module": name}'})
                return
            if module not in JOBS:
                self._reply(400, {"error": f"unknown module {module!r} (expected one of {', '.join(JOBS)})"})
                return
            self._reply(200, warm.run_job(argv, module))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler


def allowed_hosts_from_env() -> tuple[str, ...]:
    """The extra Host names of VIDSEARCH_WORKER_ALLOWED_HOSTS (comma-separated)."""
    return tuple(name.strip() for name in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if name.strip())


def make_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> tuple[ThreadingHTTPServer, WarmWorker]:
    """A bound, not yet serving, warm-worker server (port 0: any free port, see server_address);
    `token`: the bearer token callers must send (None: VIDSEARCH_WORKER_TOKEN; with neither, the server
    refuses every job); `allowed_hosts`: Host names accepted besides this server's own (plus those of
    VIDSEARCH_WORKER_ALLOWED_HOSTS)."""
    worker = WarmWorker(
        token if token is not None else os.environ.get(TOKEN_ENV),
        bind_host=host,
        allowed_hosts=(*allowed_hosts, *allowed_hosts_from_env()),
    )
    server = ThreadingHTTPServer((host, port), _handler(worker))
    server.daemon_threads = True
    return server, worker


@contextlib.contextmanager
def serving(host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> Iterator[tuple[str, WarmWorker]]:
    """A warm worker serving from a thread of this process for the duration of the block: its URL
    and its state (tests and benchmarks; `main` is the long-lived process).

    Without `token` it uses VIDSEARCH_WORKER_TOKEN, and when that is unset it makes a random one and
    sets VIDSEARCH_WORKER_TOKEN in this process for the block, so this process's launcher (its only
    intended caller) authenticates; never an open worker."""
    env_token = os.environ.get(TOKEN_ENV)
    generated = None
    if token is None and not env_token:
        generated = secrets.token_urlsafe(32)
        os.environ[TOKEN_ENV] = generated
    server, worker = make_server(host, port, token)
    threading.Thread(target=server.serve_forever, name="warm-worker", daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}", worker
    finally:
        server.shutdown()
        server.server_close()
        if generated is not None and os.environ.get(TOKEN_ENV) == generated:
            del os.environ[TOKEN_ENV]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vidsearch.models.worker_server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help=f"a Host name callers use besides the bound address (repeatable; also {ALLOWED_HOSTS_ENV})",
    )
    args = parser.parse_args(argv)
    configure_logging()
    if not os.environ.get(TOKEN_ENV):
        # No open mode: a worker nobody authenticates to would run any job sent to its port.
        print(f"{TOKEN_ENV} is not set: the warm worker does not start without a token", file=sys.stderr)
        return 2
    try:
        server, worker = make_server(args.host, args.port, allowed_hosts=tuple(args.allowed_host))
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    logger.info("warm worker listening on http://%s:%d", *server.server_address[:2])
    if not os.environ.get(STORAGE_ROOT_ENV):
        logger.warning("%s is not set: every job will be refused", STORAGE_ROOT_ENV)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
