"""What the benchmark scripts share: the facts about the machine a report was measured on, and the
formatting of numbers in the readable summaries."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def quiet() -> None:
    """Hide ResourceWarnings (libraries' unclosed pipes and sockets: noise here).

    Call again after imports: importing weaviate resets the warning filters to "default".
    """
    warnings.simplefilter("ignore", ResourceWarning)


def r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def cmd_output(argv: list[str]) -> str | None:
    """The stripped stdout of `argv` run in the repository, or None when it cannot run or fails."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def version(dist: str) -> str | None:
    """The installed version of distribution `dist`, without importing it (None: not installed)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is empty on Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def machine_facts(**extra: Any) -> dict[str, Any]:
    """CPU, memory, platform, Python and the git commit (and whether the tree had local changes),
    followed by `extra` (the library versions a benchmark depends on)."""
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    dirty = cmd_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **extra,
        "git_commit": cmd_output(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


def fmt(value: Any, digits: int = 1) -> str:
    """A number for a summary table: thousands separated, floats to `digits` places, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def load_note(m: dict[str, Any]) -> str:
    """The load average around the run: other work on the machine inflates every timing."""
    start, end = m.get("loadavg_at_start"), m.get("loadavg_at_end")
    if not start or not end:
        return ""
    text = (
        f"Load average (1/5/15 min) {'/'.join(map(str, start))} at start, {'/'.join(map(str, end))} at the end "
        "(the end figure includes the benchmark's own work)"
    )
    if start[0] > 0.5 * (m.get("cpu_count") or 1):
        text += ": **other work was running on this machine when it started; timings are inflated and noisy**"
    return text + ".\n"


class ServerStack:
    """Postgres (databases `airflow` and `vidsearch`) and Weaviate on free ports with their data under
    `base`, and Airflow configured through the environment as in tests/conftest.py. `env()` adds a
    benchmark's own variables; `stop()` ends both servers (also after a failed start)."""

    def __init__(self, base: Path):
        self.base = base
        self.pg: Any = None
        self.weaviate: Any = None

    def env(self) -> dict[str, str]:
        """Variables beyond the common ones (subclasses); `self.pg` and `self.weaviate` are up."""
        return {}

    def start(self) -> None:
        from devstack import free_port, start_postgres, start_weaviate

        self.pg = start_postgres(self.base / "pg", free_port())
        self.pg.ensure_database("airflow")
        self.pg.ensure_database("vidsearch")
        self.weaviate = start_weaviate(self.base / "weaviate", free_port(), free_port(), self.base / "weaviate.log")
        os.environ.update(
            {
                "AIRFLOW_HOME": str(self.base / "airflow"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.pg.sqlalchemy_url("airflow"),
                "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(ROOT / "include"), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")) if p
                ),
                **self.env(),
            }
        )

    def weaviate_client(self) -> Any:
        import weaviate

        return weaviate.connect_to_local(
            host="127.0.0.1", port=self.weaviate.http_port, grpc_port=self.weaviate.grpc_port
        )

    def stop(self) -> None:
        for server in (self.weaviate, self.pg):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()


def cached_video(params: dict[str, Any], timeout_s: float | None = None) -> tuple[Path, dict[str, Any]]:
    """A generated benchmark video (`synth.make_video(**params)`), made once per parameter set and
    synth.py version and kept in the cache folder; (path, facts: params, cached, generate_s, size)."""
    import hashlib
    import json
    import time

    from devstack import cache_dir
    from vidsearch.media import synth

    recipe = json.dumps(params, sort_keys=True) + Path(synth.__file__).read_text()
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    folder = cache_dir() / "bench"
    path = folder / f"shapes-{params['duration_s']:g}s-{params['width']}x{params['height']}-{key}.mp4"
    info: dict[str, Any] = {"params": params, "path": str(path), "cached": path.exists()}
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.mp4")
        started = time.perf_counter()
        extra = {"timeout_s": timeout_s} if timeout_s is not None else {}
        synth.make_video(tmp, **params, **extra)
        tmp.replace(path)
        info["generate_s"] = r(time.perf_counter() - started)
    info["size_bytes"] = path.stat().st_size
    return path, info
