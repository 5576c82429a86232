"""``python -m devstack up|down|status|env|build-weaviate`` — the embedded dev stack CLI.

* ``up``      start Postgres, Weaviate, Airflow (api-server, scheduler, dag-processor, triggerer) and
              the warm detect+embed worker under ``$VIDSEARCH_DATA_DIR`` (default ``<repo>/data``)
              and wait until all are healthy.
              Safe to repeat: running, healthy parts are left alone; stale pid files are cleaned.
* ``down``    stop everything ``up`` started, in reverse order; parts already down are fine.
* ``status``  a table of components with pid, port and health (``--check``: exit 1 unless all healthy).
* ``env``     ``export`` lines for a shell or a script to talk to the stack.
* ``build-weaviate``  build (or find) the weaviate-server binary in the user cache.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

import psutil

from . import DevstackError, StackConfig, live_pid, log_tail, port_is_open, stop_process, write_pid_file
from . import airflow as af
from . import worker as warm
from .postgres import PostgresServer, load_credentials, postmaster_info, start_postgres
from .weaviate import WeaviateServer, http_ok, serves_port, start_weaviate, weaviate_binary

DATABASES = ("airflow", "vidsearch")


def _say(component: str, message: str) -> None:
    print(f"  {component:<22} {message}", flush=True)


def _port_owner(port: int) -> str:
    """' (pid N, name)' of the process listening on `port`, when visible."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f" (pid {conn.pid}, {psutil.Process(conn.pid).name()})"
    return ""


def _require_free(port: int, what: str, env_var: str) -> None:
    """Raise a clear error when `port` is taken by something that is not ours."""
    if port_is_open(port):
        raise DevstackError(
            f"port {port} for {what} is already in use by another program{_port_owner(port)}; "
            f"stop it or choose another port with {env_var}=<port>"
        )


# --------------------------------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------------------------------


def _up_weaviate(cfg: StackConfig) -> WeaviateServer:
    """Start Weaviate without waiting for readiness (it warms up while Postgres and Airflow start)."""
    pid_file = cfg.pid_file("weaviate")
    pid = live_pid(pid_file)
    if pid is not None and serves_port(pid, cfg.weaviate_http_port):
        _say("weaviate", f"already running (pid {pid})")
    else:
        if pid is not None:  # ours, but on other ports: start_weaviate replaces it
            _say("weaviate", f"restarting (pid {pid} serves other ports)")
        else:
            _require_free(cfg.weaviate_http_port, "Weaviate HTTP", "VIDSEARCH_WEAVIATE_HTTP_PORT")
            _require_free(cfg.weaviate_grpc_port, "Weaviate gRPC", "VIDSEARCH_WEAVIATE_GRPC_PORT")
        weaviate_binary()  # build first if needed, with its own message
    server = start_weaviate(
        cfg.weaviate_dir,
        cfg.weaviate_http_port,
        cfg.weaviate_grpc_port,
        cfg.log_file("weaviate"),
        pid_file=pid_file,
        detach=True,
        wait=False,
    )
    if server.pid != pid:
        _say("weaviate", f"started (pid {server.pid}, log {server.log_path})")
    return server


def _up_postgres(cfg: StackConfig) -> PostgresServer:
    started = time.monotonic()
    info = postmaster_info(cfg.postgres_dir / "pgdata")
    if info is None:
        _require_free(cfg.pg_port, "Postgres", "VIDSEARCH_PG_PORT")
    server = start_postgres(cfg.postgres_dir, cfg.pg_port, log_path=cfg.log_file("postgres"), detach=True)
    write_pid_file(cfg.pid_file("postgres"), server.pid)
    created = [name for name in DATABASES if server.ensure_database(name)]
    if info is not None and info[0] == server.pid:
        _say("postgres", f"already running (pid {server.pid}, port {server.port})")
    else:
        extra = f", created databases {', '.join(created)}" if created else ""
        _say(
            "postgres", f"ready on 127.0.0.1:{server.port} (pid {server.pid}, {time.monotonic() - started:.1f}s{extra})"
        )
    return server


def _up_airflow(cfg: StackConfig) -> None:
    if af.all_running_and_healthy(cfg):
        pids = af.running_pids(cfg)
        _say("airflow", "already running and healthy (" + ", ".join(f"{n} {p}" for n, p in pids.items()) + ")")
        return
    pids = af.running_pids(cfg)
    health = af.component_health(cfg)
    api_up = pids["api-server"] is not None and health["api-server"]
    # Without an answering api-server the others' health is unknown: only restart dead ones then.
    to_start = [
        name
        for name in af.COMPONENTS
        if pids[name] is None or (api_up and not health[name]) or (name == "api-server" and not api_up)
    ]
    if pids["api-server"] is None:
        _require_free(cfg.airflow_port, "the Airflow api-server", "VIDSEARCH_AIRFLOW_PORT")
    _say("airflow db migrate", "running ...")
    _say("airflow db migrate", f"done ({af.migrate_db(cfg):.1f}s)")
    for name in af.COMPONENTS:
        if name not in to_start:
            _say(f"airflow {name}", f"already running (pid {pids[name]})")
            continue
        if pids[name] is not None:
            _say(f"airflow {name}", f"unhealthy, restarting (pid {pids[name]})")
            af.stop_component(cfg, name)
        _say(f"airflow {name}", f"started (pid {af.start_component(cfg, name)}, log {cfg.log_file('airflow-' + name)})")


def _up_worker(cfg: StackConfig) -> None:
    pid = warm.worker_pid(cfg)
    if pid is not None and warm.worker_healthy(cfg):
        _say("worker", f"already running and healthy (pid {pid})")
        return
    if pid is not None:
        _say("worker", f"not answering, restarting (pid {pid})")
        warm.stop_worker(cfg)
    _require_free(cfg.worker_port, "the warm detect+embed worker", "VIDSEARCH_WORKER_PORT")
    _say("worker", f"started (pid {warm.start_worker(cfg)}, log {cfg.log_file(warm.NAME)})")


def cmd_up(cfg: StackConfig, args: argparse.Namespace) -> int:
    started = time.monotonic()
    for folder in (cfg.data_dir, cfg.run_dir, cfg.logs_dir, cfg.airflow_home, cfg.objects_dir):
        folder.mkdir(parents=True, exist_ok=True)
    print(f"devstack up: data in {cfg.data_dir}", flush=True)
    weaviate = _up_weaviate(cfg)
    _up_postgres(cfg)
    _up_airflow(cfg)
    _up_worker(cfg)

    t = time.monotonic()
    weaviate.wait_ready(timeout=args.timeout)
    _say(
        "weaviate",
        f"ready at {weaviate.url} (grpc {weaviate.grpc_port}, pid {weaviate.pid}, waited {time.monotonic() - t:.1f}s)",
    )
    t = time.monotonic()
    af.wait_healthy(cfg, timeout=args.timeout)
    _say("airflow", f"healthy (waited {time.monotonic() - t:.1f}s)")
    if not warm.wait_worker(cfg, timeout=args.timeout):
        log = cfg.log_file(warm.NAME)
        raise DevstackError(f"the warm worker did not start; log {log}:\n{log_tail(log)}")
    _say("worker", f"ready at {warm.worker_url(cfg)}")

    print(f"\nstack up in {time.monotonic() - started:.1f}s")
    print(f"  Airflow UI/API   {af.api_url(cfg)}   user '{af.ADMIN_USER}'  password '{af.admin_password(cfg)}'")
    print(f"                   (password stored in {af.admin_password_file(cfg)})")
    print(f"  Weaviate         {weaviate.url} (grpc 127.0.0.1:{weaviate.grpc_port})")
    print(f"  Postgres         127.0.0.1:{cfg.pg_port} databases {', '.join(DATABASES)}")
    print(f"  warm worker      {warm.worker_url(cfg)} (detect+embed jobs, models kept loaded)")
    print(f"  logs             {cfg.logs_dir}")
    print('  shell env        eval "$(python -m devstack env)"')
    return 0


# --------------------------------------------------------------------------------------------------
# down
# --------------------------------------------------------------------------------------------------


def _stop_and_report(component: str, pid: int | None, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    if pid is None:
        _say(component, "not running")
        return
    started = time.monotonic()
    killed = stop_process(pid, sig=sig, timeout=timeout)
    _say(component, f"stopped (pid {pid}, {time.monotonic() - started:.1f}s{', killed' if killed else ''})")


def cmd_down(cfg: StackConfig, args: argparse.Namespace) -> int:
    started = time.monotonic()
    print(f"devstack down: data in {cfg.data_dir}", flush=True)
    _stop_and_report("worker", warm.worker_pid(cfg))
    cfg.pid_file(warm.NAME).unlink(missing_ok=True)
    for name in reversed(af.COMPONENTS):
        _stop_and_report(f"airflow {name}", af.component_pid(cfg, name))
        cfg.pid_file(f"airflow-{name}").unlink(missing_ok=True)
    _stop_and_report("weaviate", live_pid(cfg.pid_file("weaviate")))
    cfg.pid_file("weaviate").unlink(missing_ok=True)
    info = postmaster_info(cfg.postgres_dir / "pgdata")
    # SIGINT = Postgres "fast" shutdown (rolls back sessions, checkpoints, exits).
    _stop_and_report("postgres", info[0] if info else None, sig=signal.SIGINT)
    cfg.pid_file("postgres").unlink(missing_ok=True)
    print(f"stack down in {time.monotonic() - started:.1f}s")
    return 0


# --------------------------------------------------------------------------------------------------
# status / env / build-weaviate
# --------------------------------------------------------------------------------------------------


def _status_rows(cfg: StackConfig) -> list[tuple[str, str, str, str]]:
    rows = []
    info = postmaster_info(cfg.postgres_dir / "pgdata")
    if info is None:
        rows.append(("postgres", "-", str(cfg.pg_port), "down"))
    else:
        creds = load_credentials(cfg.postgres_dir)
        pg = PostgresServer(
            cfg.postgres_dir, info[1], creds["user"], creds["password"], info[0], cfg.log_file("postgres")
        )
        rows.append(("postgres", str(info[0]), str(info[1]), "healthy" if pg.is_ready() else "not answering"))

    pid = live_pid(cfg.pid_file("weaviate"))
    ports = f"{cfg.weaviate_http_port}/{cfg.weaviate_grpc_port}"
    ready = pid is not None and http_ok(f"http://127.0.0.1:{cfg.weaviate_http_port}/v1/.well-known/ready")
    rows.append(("weaviate", str(pid or "-"), ports, "down" if pid is None else ("healthy" if ready else "not ready")))

    report = af.health(cfg)
    health = af.component_health(cfg, report)
    for name in af.COMPONENTS:
        pid = af.component_pid(cfg, name)
        port = str(cfg.airflow_port) if name == "api-server" else "-"
        state = "down" if pid is None else ("healthy" if health[name] else "unhealthy")
        rows.append((f"airflow {name}", str(pid or "-"), port, state))
    pid = warm.worker_pid(cfg)
    state = "down" if pid is None else ("healthy" if warm.worker_healthy(cfg) else "not answering")
    rows.append(("worker", str(pid or "-"), str(cfg.worker_port), state))
    return rows


def cmd_status(cfg: StackConfig, args: argparse.Namespace) -> int:
    rows = _status_rows(cfg)
    header = ("component", "pid", "port", "health")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"data: {cfg.data_dir}   logs: {cfg.logs_dir}")
    if args.check and any(r[3] != "healthy" for r in rows):
        return 1
    return 0


def cmd_env(cfg: StackConfig, args: argparse.Namespace) -> int:
    print(f"# vidsearch dev stack ({cfg.data_dir}); admin password in {af.admin_password_file(cfg)}")
    print(af.shell_exports(af.env_for_stack(cfg)))
    return 0


def cmd_build_weaviate(cfg: StackConfig, args: argparse.Namespace) -> int:
    print(weaviate_binary())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack (idempotent)")
    up.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for health (default 240)")
    sub.add_parser("down", help="stop the stack")
    status = sub.add_parser("status", help="show components, pids, ports and health")
    status.add_argument("--check", action="store_true", help="exit 1 unless everything is healthy")
    sub.add_parser("env", help="print export lines for talking to the stack")
    sub.add_parser("build-weaviate", help="build (or find) the weaviate-server binary; print its path")
    args = parser.parse_args(argv)
    commands = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
        "build-weaviate": cmd_build_weaviate,
    }
    try:
        return commands[args.command](StackConfig.from_env(), args)
    except DevstackError as exc:
        print(f"devstack {args.command}: error: {exc}", file=sys.stderr)
        if args.command == "up":
            print(
                "(parts that did start keep running: see 'python -m devstack status', stop with 'down')",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
