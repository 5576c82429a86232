"""End-to-end benchmark through the real scheduler, next to the reference design and Pixeltable.

    make bench-e2e                                     # = .venv/bin/python bench/e2e.py
    .venv/bin/python bench/e2e.py --minutes 1 --out /tmp/e2e        # a quick look
    .venv/bin/python bench/e2e.py --only refdesign --minutes 1       # one system

One invocation:

1. generates (once; cached under data/bench/videos) 1280x720 30000/1001 fps H.264 + AAC videos of moving
   boxes with `vidsearch.media.synth.make_video`, one per `--minutes` length (default 1, 10, 30); videos
   over 10 minutes are made in 10-minute parts joined by stream copy;
2. builds the tiny models once (`vidsearch.models.modelstore.ensure_tiny_model`): all three systems load the
   same two folders with `from_pretrained`, at the same sampling rate and score threshold;
3. starts the embedded stack (`python -m devstack up`, ports and data folder from the environment as
   `devstack.StackConfig.from_env` reads them), and ingests each video through the Airflow REST API
   (`POST /api/v2/dags/video_ingest/dagRuns`), polling the run to its end; then reads the run, every
   task instance, the tasks' `vidsearch_timing` XComs and the object counts in Postgres and Weaviate;
4. runs the reference design (bench/refdesign.py: N worker processes, PNG frames, batch-1 DETR and
   CLIP, Weaviate) and Pixeltable (bench/peer_pixeltable.py, in its own virtual environment under
   data/bench, created here) on the same video, right after ours;
5. writes e2e.json (every figure), e2e.md (the summary and the targets, met or not) and e2e.png
   (wall time against video length) into `--out` (default bench/reports), and stops the stack it
   started (not one that was already running; `--keep-stack` keeps it).

The load average is sampled every second throughout; every figure is reported with the mean and
maximum load average over its own time window, and the machine's busy CPU seconds (user + nice +
system + irq + softirq from /proc/stat) over the same window. See bench/README.md, "End-to-end
benchmark".
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT / "bench")]

import benchlib  # noqa: E402
from benchlib import cmd_output, fmt, r, version  # noqa: E402
from devstack.client import AirflowClient, timestamp  # noqa: E402
from refdesign import proc_stat_busy_s  # noqa: E402

SCHEMA_VERSION = 1
DAG_ID = "video_ingest"
WIDTH, HEIGHT, FPS, GOP_FRAMES = 1280, 720, "30000/1001", 60
CHUNK_S = 600.0  # synth.make_video gives ffmpeg 10 minutes: longer videos are made in parts
PIXELTABLE_VERSION = "0.7.21"
PINNED_WITH_PIXELTABLE = ("torch", "torchvision", "transformers")
SEGMENT_TASKS = ("segment.extract_frames", "segment.detect_embed", "segment.index")
AUDIO_TASKS = ("segment.extract_audio", "segment.transcribe", "segment.index_transcript")
TASK_ORDER = ("probe", "split", *SEGMENT_TASKS, *AUDIO_TASKS, "finalize")
SYSTEMS = ("ours", "refdesign", "pixeltable")
TWO_HOURS_S = 7200.0
WARMUP_MINUTES = 0.25  # a 15 s clip, two segments
# Targets (reported, never asserted).
TARGET_RATIO_REFDESIGN = 1 / 5
TARGET_RATIO_PIXELTABLE = 1 / 2
TARGET_ONE_MINUTE_S = 20.0
TARGET_FIXED_COST_S = 1.5
TARGET_RSS_BYTES = 1.5e9
TARGET_TWO_HOURS_S = 20 * 60.0


def say(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or broke; the message says what and where to look."""


# --------------------------------------------------------------------------------------------------
# Load average and machine CPU, sampled every second
# --------------------------------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Samples (unix time, 1-min load average, busy CPU seconds) every `interval` seconds."""

    def __init__(self, interval: float = 1.0):
        super().__init__(daemon=True, name="load-sampler")
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def sample(self) -> None:
        with self._lock:
            self.samples.append((time.time(), os.getloadavg()[0], proc_stat_busy_s()))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()

    def busy_at(self, t: float) -> float | None:
        """Busy CPU seconds at unix time `t`, interpolated between the samples around it."""
        with self._lock:
            samples = list(self.samples)
        if not samples:
            return None
        times = [s[0] for s in samples]
        i = bisect.bisect_left(times, t)
        if i <= 0:
            return samples[0][2]
        if i >= len(samples):
            return samples[-1][2]
        (t0, _, b0), (t1, _, b1) = samples[i - 1], samples[i]
        return b0 + (b1 - b0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Machine CPU seconds and the load average (mean, max of the 1-min value) over [start, end]."""
        with self._lock:
            loads = [s[1] for s in self.samples if start <= s[0] <= end]
        b0, b1 = self.busy_at(start), self.busy_at(end)
        return {
            "machine_cpu_s": r(b1 - b0, 2) if b0 is not None and b1 is not None else None,
            "load_mean": r(statistics.fmean(loads), 2) if loads else r(os.getloadavg()[0], 2),
            "load_max": r(max(loads), 2) if loads else r(os.getloadavg()[0], 2),
            "load_samples": len(loads),
        }


def tree_cpu_s(pids: list[int]) -> float:
    """User+system CPU seconds of the process trees under `pids`: every living process's own time plus
    its reaped children's (a process that exits moves its time into its parent's children_* when the
    parent waits for it, so the sum stays whole as long as the parents are in the trees)."""
    import psutil

    seen: set[int] = set()
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
    return total


# --------------------------------------------------------------------------------------------------
# Videos and models
# --------------------------------------------------------------------------------------------------


def minutes_label(minutes: float) -> str:
    return f"{minutes:g}".replace(".", "p") + "min"


def bench_video(minutes: float, folder: Path) -> tuple[Path, dict[str, Any]]:
    """The benchmark video of `minutes`, generated once per parameters and synth.py version."""
    from vidsearch.media import ffmpeg as ff
    from vidsearch.media import synth

    params = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "audio": True, "gop_frames": GOP_FRAMES}
    duration = float(minutes) * 60.0
    recipe = json.dumps({**params, "duration_s": duration, "chunk_s": CHUNK_S}, sort_keys=True)
    key = hashlib.sha256((recipe + Path(synth.__file__).read_text()).encode()).hexdigest()[:12]
    path = folder / f"shapes-{minutes_label(minutes)}-{WIDTH}x{HEIGHT}-{key}.mp4"
    info: dict[str, Any] = {"minutes": minutes, "duration_s": duration, "params": params, "path": str(path),
                            "cached": path.exists()}  # fmt: skip
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        say(f"generating the {minutes:g}-minute video (once; cached in {folder})")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="e2e-video-", dir=folder) as tmp:
            parts, left, n = [], duration, 0
            while left > 1e-6:
                part = min(CHUNK_S, left)
                parts.append(synth.make_video(Path(tmp) / f"part{n:03d}.mp4", duration_s=part, **params))
                left -= part
                n += 1
            staged = Path(tmp) / "video.mp4"
            if len(parts) == 1:
                parts[0].replace(staged)
            else:
                listing = Path(tmp) / "parts.txt"
                listing.write_text("".join(f"file '{p}'\n" for p in parts))
                ff.ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0", "-c", "copy",
                           "-movflags", "+faststart", "-y", ff.file_url(staged)], timeout_s=1800)  # fmt: skip
            staged.replace(path)
        info["generate_s"] = r(time.perf_counter() - started, 1)
        info["parts"] = n
    info["size_bytes"] = path.stat().st_size
    return path, info


def tiny_models(model_cache: Path) -> dict[str, str]:
    from vidsearch.models import modelstore

    return {kind: str(modelstore.ensure_tiny_model(kind, model_cache)) for kind in ("detector", "embedder", "asr")}


# --------------------------------------------------------------------------------------------------
# The embedded stack
# --------------------------------------------------------------------------------------------------


class Stack:
    """`python -m devstack up|down|status` with this environment (ports and data dir from the env)."""

    def __init__(self, log_dir: Path):
        from devstack import StackConfig, env_for_stack

        self.cfg = StackConfig.from_env()
        self.stack_env = env_for_stack(self.cfg)
        self.env = {**os.environ, "PYTHONPATH": self.stack_env["PYTHONPATH"]}
        self.log_dir = log_dir
        self.started_here = False

    def _devstack(self, *args: str, timeout: float, log: Path | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "devstack", *args]
        if log is None:
            return subprocess.run(argv, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        with open(log, "a") as handle:
            return subprocess.run(argv, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout)  # fmt: skip

    def is_up(self) -> bool:
        try:
            return self._devstack("status", "--check", timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def up(self, timeout: float = 900) -> float:
        log = self.log_dir / "devstack-up.log"
        started = time.perf_counter()
        try:
            result = self._devstack("up", timeout=timeout, log=log)
        except subprocess.TimeoutExpired as exc:
            self.started_here = True
            raise BenchError(f"'python -m devstack up' did not finish in {timeout:.0f} s; log {log}") from exc
        self.started_here = True
        if result.returncode != 0:
            raise BenchError(f"'python -m devstack up' failed (exit {result.returncode}); log {log}:\n"
                             + "\n".join(log.read_text().splitlines()[-25:]))  # fmt: skip
        return time.perf_counter() - started

    def down(self) -> None:
        log = self.log_dir / "devstack-down.log"
        try:
            self._devstack("down", timeout=600, log=log)
        except subprocess.TimeoutExpired:
            say(f"'python -m devstack down' did not finish in 600 s; see {log} and 'python -m devstack status'")

    def component_pids(self) -> dict[str, int]:
        """The stack's processes (pid files under the data dir's run/), read only."""
        pids = {}
        for path in sorted(self.cfg.run_dir.glob("*.pid")):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids[path.stem] = int(path.read_text().split()[0])
        pg = self.cfg.postgres_dir / "pgdata" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids["postgres"] = int(pg.read_text().split()[0])
        return pids

    @property
    def api_url(self) -> str:
        return self.stack_env["AIRFLOW_API_URL"]


class StandaloneWeaviate:
    """A Weaviate on free ports for the reference design when our stack is not part of the run."""

    def __init__(self, base: Path):
        from devstack import free_port, start_weaviate

        self.base = base
        self.server = start_weaviate(base / "weaviate", free_port(), free_port(), base / "weaviate.log")
        self.http_port, self.grpc_port = self.server.http_port, self.server.grpc_port

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()
        shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The Airflow REST API
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Our pipeline: one DAG run per video, then everything the API knows about it
# --------------------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return r(statistics.fmean(values)) if values else None


def _max(values: list[float]) -> float | None:
    return r(max(values)) if values else None


def task_breakdown(ti: dict[str, Any], timing: dict[str, Any] | None) -> dict[str, Any]:
    """One task instance: Airflow's own times, and the split its `vidsearch_timing` XCom allows."""
    start, end = timestamp(ti.get("start_date")), timestamp(ti.get("end_date"))
    queued = timestamp(ti.get("queued_when"))
    row: dict[str, Any] = {
        "task_id": ti["task_id"], "map_index": ti.get("map_index", -1), "label": ti.get("rendered_map_index"),
        "state": ti.get("state"), "try_number": ti.get("try_number"), "duration_s": ti.get("duration"),
        "queued_at": queued, "start_at": start, "end_at": end,
        "queue_to_start_s": r(start - queued) if start and queued else None,
        "timing": timing,
    }  # fmt: skip
    if timing and start and end:

        def f(key: str) -> float | None:
            value = timing.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        proc, code, fin = f("process_started_at"), f("code_started_at"), f("finished_at")
        row.update({
            "process_start_s": r(proc - start) if proc is not None else None,
            "imports_s": r(code - proc) if code is not None and proc is not None else None,
            "start_to_code_s": r(code - start) if code is not None else None,
            "gx_setup_s": f("gx_setup_s"),
            "work_s": f("work_s"),
            "exit_s": r(end - fin) if fin is not None else None,
            "fixed_cost_s": r((code - start) + (end - fin)) if code is not None and fin is not None else None,
            "preloaded": timing.get("preloaded"),
            "max_rss_bytes": timing.get("max_rss_bytes"),
            "children_max_rss_bytes": timing.get("children_max_rss_bytes"),
        })  # fmt: skip
    return row


def summarize_tasks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind of task (probe, split, segment.*, finalize): counts, means and maxima."""
    kinds: dict[str, Any] = {}
    for kind in sorted({row["task_id"] for row in rows}, key=lambda k: (TASK_ORDER + (k,)).index(k)):
        group = [row for row in rows if row["task_id"] == kind]

        def values(key: str, group: list[dict[str, Any]] = group) -> list[float]:
            return [float(row[key]) for row in group if isinstance(row.get(key), (int, float))]

        entry: dict[str, Any] = {
            "count": len(group),
            "states": {
                s: sum(1 for row in group if row["state"] == s) for s in sorted({str(row["state"]) for row in group})
            },
            "max_try_number": max((row["try_number"] or 1) for row in group),
            "timing_missing": sum(1 for row in group if not row.get("timing")),
            "duration_sum_s": r(sum(values("duration_s"))),
        }
        for key in ("duration_s", "queue_to_start_s", "process_start_s", "imports_s", "start_to_code_s",
                    "gx_setup_s", "work_s", "exit_s", "fixed_cost_s"):  # fmt: skip
            entry[f"{key[:-2]}_mean_s"] = _mean(values(key))
            entry[f"{key[:-2]}_max_s"] = _max(values(key))
        rss = values("max_rss_bytes")
        child = values("children_max_rss_bytes")
        entry["max_rss_bytes"] = int(max(rss)) if rss else None
        entry["children_max_rss_bytes"] = int(max(child)) if child else None
        entry["preloaded"] = sum(1 for row in group if row.get("preloaded") is True)
        kinds[kind] = entry
    return kinds


def object_counts(stack: Stack, collection: str, video_id: str) -> dict[str, Any]:
    """Objects of the video in Postgres (catalog) and Weaviate (index), read directly."""
    import weaviate
    from vidsearch.stores.catalog import Catalog
    from vidsearch.stores.index import ObjectIndex

    out: dict[str, Any] = {}
    try:
        catalog = Catalog.from_url(stack.stack_env["VIDSEARCH_DATABASE_URL"])
        out["postgres"] = catalog.counts(collection, video_id)
        catalog.engine.dispose()
    except Exception as exc:  # noqa: BLE001 - a count we cannot read is reported, not fatal
        out["postgres_error"] = f"{type(exc).__name__}: {exc}"
    try:
        client = weaviate.connect_to_local(host="127.0.0.1", port=stack.cfg.weaviate_http_port,
                                           grpc_port=stack.cfg.weaviate_grpc_port)  # fmt: skip
        try:
            out["weaviate_objects"] = ObjectIndex(client).count(collection, video_id)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001
        out["weaviate_error"] = f"{type(exc).__name__}: {exc}"
    benchlib.quiet()
    return out


def run_ours(
    api: AirflowClient,
    stack: Stack,
    sampler: Sampler,
    video: Path,
    minutes: float,
    conf: dict[str, Any],
    run_id: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Trigger video_ingest for `video`, follow it to its end, and collect every figure."""
    out: dict[str, Any] = {"system": "ours", "run_id": run_id, "conf": conf}
    pids = list(stack.component_pids().values())
    own0 = tree_cpu_s(pids)
    triggered_at = time.time()
    api.trigger(DAG_ID, conf, run_id)
    deadline = time.monotonic() + timeout_s
    state = "queued"
    while True:
        run = api.run(DAG_ID, run_id)
        state = run["state"]
        if state in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            say(f"run {run_id} still {state} after {timeout_s:.0f} s: marking it failed")
            with contextlib.suppress(RuntimeError):
                api.fail_run(DAG_ID, run_id)
            state = "timeout"
            run = api.run(DAG_ID, run_id)
            break
        time.sleep(1.0)
    seen_end = time.time()
    # The stack's own processes (Airflow, its task processes, the warm worker, Postgres, Weaviate),
    # from the trigger until the end was seen: what this system cost, whatever else the machine ran.
    out["own_cpu_s"] = r(tree_cpu_s(pids) - own0, 2)
    out["own_cpu_s_per_video_minute"] = r(out["own_cpu_s"] / minutes, 2)
    start, end = timestamp(run.get("start_date")), timestamp(run.get("end_date"))
    out.update({
        "state": state, "triggered_at": triggered_at, "start_at": start, "end_at": end,
        "wall_s": r(end - start) if start and end else None,
        "trigger_to_end_s": r(end - triggered_at) if end else r(seen_end - triggered_at),
        "trigger_to_start_s": r(start - triggered_at) if start else None,
    })  # fmt: skip
    window = sampler.window(start or triggered_at, end or seen_end)
    out["window"] = window
    if window["machine_cpu_s"] is not None:
        out["cpu_s_per_video_minute"] = r(window["machine_cpu_s"] / minutes, 2)

    tis = api.task_instances(DAG_ID, run_id)
    rows = []
    for ti in tis:
        timing = api.xcom(DAG_ID, run_id, ti["task_id"], "vidsearch_timing", ti.get("map_index", -1))
        rows.append(task_breakdown(ti, timing if isinstance(timing, dict) else None))
    rows.sort(key=lambda row: ((TASK_ORDER + (row["task_id"],)).index(row["task_id"]), row["map_index"]))
    out["task_instances"] = rows
    out["task_instance_count"] = len(rows)
    out["max_try_number"] = max((row["try_number"] or 1) for row in rows) if rows else None
    out["retries"] = sum(max(0, (row["try_number"] or 1) - 1) for row in rows)
    out["segments"] = sum(1 for row in rows if row["task_id"] == "segment.index")
    out["tasks"] = summarize_tasks(rows)
    # Time inside the run when no task instance was running: scheduling latency between dependent tasks
    # (and the run's own start and end bookkeeping).
    spans = sorted((row["start_at"], row["end_at"]) for row in rows if row["start_at"] and row["end_at"])
    covered, cursor = 0.0, None
    for a, b in spans:
        if cursor is None or a > cursor:
            covered += b - a
            cursor = b
        elif b > cursor:
            covered += b - cursor
            cursor = b
    if start and end:
        out["no_task_running_s"] = r(max(0.0, (end - start) - covered))
        out["critical_path"] = {
            "run_start_to_first_task_s": r(spans[0][0] - start) if spans else None,
            "last_task_to_run_end_s": r(end - max(b for _, b in spans)) if spans else None,
        }
    index_ends = [row["end_at"] for row in rows if row["task_id"] == "segment.index" and row["state"] == "success"
                  and row["end_at"]]  # fmt: skip
    out["first_object_s"] = r(min(index_ends) - start) if index_ends and start else None
    seg_rows = [row for row in rows if row["task_id"] in SEGMENT_TASKS + AUDIO_TASKS]
    fixed = [row["fixed_cost_s"] for row in seg_rows if isinstance(row.get("fixed_cost_s"), (int, float))]
    out["fixed_cost_per_segment_task_s"] = _mean(fixed)
    out["fixed_cost_measured_tasks"] = len(fixed)
    rss = [row["max_rss_bytes"] for row in rows if isinstance(row.get("max_rss_bytes"), (int, float))]
    child = [
        row["children_max_rss_bytes"] for row in rows if isinstance(row.get("children_max_rss_bytes"), (int, float))
    ]
    out["max_rss_per_task_bytes"] = int(max(rss)) if rss else None
    out["children_max_rss_bytes"] = int(max(child)) if child else None
    out["timing_xcoms_missing"] = sum(1 for row in rows if not row.get("timing"))

    probe = api.xcom(DAG_ID, run_id, "probe", "return_value")
    video_id = ((probe or {}).get("manifest") or {}).get("video_id") if isinstance(probe, dict) else None
    out["video_id"] = video_id
    final = api.xcom(DAG_ID, run_id, "finalize", "return_value")
    out["finalize"] = final if isinstance(final, dict) else None
    if video_id:
        out["counts"] = object_counts(stack, conf["collection"], video_id)
    pg = (out.get("counts") or {}).get("postgres") or {}
    out["frames"] = pg.get("frames")
    out["objects"] = pg.get("objects")
    out["weaviate_objects"] = (out.get("counts") or {}).get("weaviate_objects")
    return out


# --------------------------------------------------------------------------------------------------
# The peers
# --------------------------------------------------------------------------------------------------


def run_refdesign(
    sampler: Sampler,
    video: Path,
    minutes: float,
    models: dict[str, str],
    weaviate_ports: tuple[int, int],
    weaviate_pid: int | None,
    collection: str,
    args: argparse.Namespace,
    work_dir: Path,
    log: Path,
) -> dict[str, Any]:
    result_file = log.parent / f"{collection}.json"
    result_file.unlink(missing_ok=True)
    argv = [
        sys.executable, str(ROOT / "bench" / "refdesign.py"), "--video", str(video),
        "--detector", models["detector"], "--embedder", models["embedder"],
        "--weaviate-http", str(weaviate_ports[0]), "--weaviate-grpc", str(weaviate_ports[1]),
        "--collection", collection, "--workers", str(args.workers), "--sample-fps", f"{args.sample_fps:g}",
        "--segment-seconds", "10", "--score-threshold", f"{args.score_threshold:g}",
        "--work-dir", str(work_dir), "--timeout", f"{run_timeout(args, minutes):.0f}", "--json", str(result_file),
    ]  # fmt: skip
    # The child's own timeout ends its run cleanly; ours (a minute later) is the backstop.
    weaviate0 = tree_cpu_s([weaviate_pid]) if weaviate_pid else None
    out = _peer("refdesign", argv, sampler, minutes, result_file, log, run_timeout(args, minutes) + 60, env=None)
    if weaviate0 is not None and out.get("own_cpu_s") is not None:
        # Its process tree (measured inside, over its wall time) plus Weaviate's CPU over the whole
        # process (Weaviate is idle outside the wall time), as ours counts its Weaviate and Postgres.
        out["weaviate_cpu_s"] = r(tree_cpu_s([weaviate_pid]) - weaviate0, 2)
        out["system_cpu_s"] = r(out["own_cpu_s"] + out["weaviate_cpu_s"], 2)
        out["own_cpu_s_per_video_minute"] = r(out["system_cpu_s"] / minutes, 2)
    return out


def run_pixeltable(
    sampler: Sampler,
    python: Path,
    video: Path,
    minutes: float,
    models: dict[str, str],
    home: Path,
    args: argparse.Namespace,
    result_file: Path,
    log: Path,
) -> dict[str, Any]:
    result_file.unlink(missing_ok=True)
    argv = [
        str(python), str(ROOT / "bench" / "peer_pixeltable.py"), "--video", str(video),
        "--detector", models["detector"], "--embedder", models["embedder"], "--home", str(home),
        "--sample-fps", f"{args.sample_fps:g}", "--score-threshold", f"{args.score_threshold:g}",
        "--json", str(result_file),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    out = _peer("pixeltable", argv, sampler, minutes, result_file, log, run_timeout(args, minutes), env=env)
    _stop_leftover_postgres(home)
    if out.get("insert_system_cpu_s") is not None:
        out["own_cpu_s_per_video_minute"] = r(out["insert_system_cpu_s"] / minutes, 2)
    return out


def _peer(
    name: str,
    argv: list[str],
    sampler: Sampler,
    minutes: float,
    result_file: Path,
    log: Path,
    timeout: float,
    env: dict[str, str] | None,
) -> dict[str, Any]:
    """Run one peer as a child process; its own JSON plus the process's wall time and machine CPU."""
    started = time.time()
    with open(log, "a") as handle:
        handle.write(f"\n$ {' '.join(argv)}\n")
        handle.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = "timeout"
    ended = time.time()
    out: dict[str, Any] = {}
    if result_file.exists():
        out = json.loads(result_file.read_text())
    out.update(
        {
            "system": name,
            "exit": rc,
            "process_wall_s": r(ended - started),
            "process_window": sampler.window(started, ended),
        }
    )
    if rc != 0:
        out["state"] = "timeout" if rc == "timeout" else out.get("state", "failed")
        tail = " | ".join(line.strip() for line in log.read_text(errors="replace").splitlines()[-4:])
        out.setdefault("error", f"exit {rc}; log {log}: {tail[-600:]}")
        return out
    # The headline window: the work only (reference design: services up, split to last vector;
    # Pixeltable: the insert), as each script measured it.
    if name == "refdesign":
        window_start = out.get("started_at")
    else:
        out["wall_s"] = out.get("insert_s")
        window_start = out.get("insert_started_at")
    if window_start is not None and out.get("wall_s") is not None:
        window = sampler.window(window_start, window_start + out["wall_s"])
        out["window"] = window
        if window["machine_cpu_s"] is not None:
            out["cpu_s_per_video_minute"] = r(window["machine_cpu_s"] / minutes, 2)
    return out


def _stop_leftover_postgres(home: Path) -> None:
    """Pixeltable's embedded Postgres, when the peer could not stop it (its postmaster.pid names it)."""
    pid_file = home / "pgdata" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
        import psutil

        if psutil.pid_exists(pid) and "postgres" in psutil.Process(pid).name():
            say(f"stopping Pixeltable's leftover Postgres (pid {pid})")
            os.kill(pid, signal.SIGINT)  # Postgres "fast" shutdown
            psutil.Process(pid).wait(timeout=30)


def requirement_pins(names: tuple[str, ...]) -> list[str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = line.split("==")[0].strip().lower()
        if name in names:
            pins[name] = line.strip()
    missing = [n for n in names if n not in pins]
    if missing:
        raise BenchError(f"requirements.txt pins none of {', '.join(missing)}")
    return [pins[n] for n in names]


def ensure_pixeltable_venv(bench_dir: Path, log_dir: Path) -> Path:
    """data/bench/pixeltable-venv with pixeltable and the project's torch/torchvision/transformers pins.

    Created once (pip's cache keeps the wheels); `.installed` records what was installed, so a change of
    pins reinstalls. Constrained by requirements.txt so shared dependencies get the project's versions.
    """
    venv = bench_dir / "pixeltable-venv"
    python = venv / "bin" / "python"
    pins = [f"pixeltable=={PIXELTABLE_VERSION}", *requirement_pins(PINNED_WITH_PIXELTABLE)]
    marker = venv / ".installed"
    spec = " ".join(pins)
    if python.exists() and marker.exists() and marker.read_text().strip() == spec:
        return python
    log = log_dir / "pixeltable-venv-install.log"
    say(f"installing {spec} into {venv} (once; log {log})")
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    with open(log, "a") as handle:
        if not python.exists():
            subprocess.run([base_python, "-m", "venv", str(venv)], check=True, stdout=handle, stderr=subprocess.STDOUT)
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "requirements.txt"), *pins],
            stdout=handle, stderr=subprocess.STDOUT, timeout=3600,
        )  # fmt: skip
    if result.returncode != 0:
        raise BenchError(f"installing Pixeltable failed (exit {result.returncode}); log {log}")
    marker.write_text(spec + "\n")
    return python


# --------------------------------------------------------------------------------------------------
# The 2-hour plan
# --------------------------------------------------------------------------------------------------


def audio_note(config: dict[str, Any]) -> str:
    """What our run did with the sound track (reports written before the audio branch say nothing)."""
    transcribe = config.get("transcribe")
    if transcribe is None:
        return "(Written before the audio branch existed: ours did not transcribe.)"
    if transcribe:
        return ("Ours also runs the audio branch: every segment's AAC track is cut and transcribed by the tiny "
                "random Whisper (the peers and the reference design do not transcribe).")  # fmt: skip
    return "Ours ran with `transcribe: false`: the audio branch's tasks skip, as the peers do not transcribe."


def planned(duration_s: float, segment_seconds: float | None, sample_fps: float) -> dict[str, Any]:
    """Segments and task instances our DAG would make for a video of `duration_s`, from the planner
    the split task itself uses (`segment_seconds: auto`), or from --segment-seconds when given.

    The segment count is duration / segment length rounded up: the split cuts at the first keyframe
    after each nominal boundary, which with a keyframe every 2 s changes nothing but the last
    segment's length.
    """
    from vidsearch import pipeline

    slots = pipeline.parallel_slots()
    out: dict[str, Any] = {"duration_s": duration_s, "slots": slots}
    if segment_seconds is not None:
        seg_s, out["segment_seconds_source"] = float(segment_seconds), "--segment-seconds"
    else:
        params = pipeline.IngestParams(source="planned", sample_fps=sample_fps)
        seg_s = pipeline.planned_segment_seconds(params, duration_s)
        out["segment_seconds_source"] = "the DAG's planner for segment_seconds auto, pipeline.planned_segment_seconds"
    segments = max(1, math.ceil(duration_s / seg_s - 1e-9))
    out.update({
        "segment_seconds": r(seg_s, 3), "segments": segments,
        # probe, split, finalize + per segment extract_frames, detect_embed, index and the audio branch's
        # extract_audio, transcribe, index_transcript (skipped, still instances, with transcribe off)
        "task_instances": 3 + 6 * segments,
    })  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def load_text(window: dict[str, Any] | None) -> str:
    if not window:
        return "n/a"
    return f"{window['load_mean']:.2f} / {window['load_max']:.2f}"


def cpu_pair(entry: dict[str, Any]) -> str:
    return f"{fmt(entry.get('cpu_s_per_video_minute'), 1)} / {fmt(entry.get('own_cpu_s_per_video_minute'), 1)}"


def verdict(value: float | None, limit: float, *, at_most: bool = True) -> str:
    if value is None:
        return "n/a"
    ok = value <= limit if at_most else value >= limit
    return "**met**" if ok else "**not met**"


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    by = {row["minutes"]: row for row in report["runs"]}

    def wall(minutes: float, system: str) -> float | None:
        entry = (by.get(minutes) or {}).get(system) or {}
        return entry.get("wall_s") if entry.get("state") == "success" else None

    def ld(minutes: float, system: str) -> str:
        return load_text(((by.get(minutes) or {}).get(system) or {}).get("window"))

    def ratio(a: float | None, b: float | None) -> float | None:
        return r(a / b, 3) if a is not None and b else None

    ours = [row["ours"] for row in report["runs"] if row.get("ours")]
    targets = []
    w10, ref10, pxt10 = wall(10, "ours"), wall(10, "refdesign"), wall(10, "pixeltable")
    targets.append({"target": "10-minute video: ours <= 1/5 of the reference design's wall time",
                    "value": ratio(w10, ref10), "limit": TARGET_RATIO_REFDESIGN, "unit": "x",
                    "verdict": verdict(ratio(w10, ref10), TARGET_RATIO_REFDESIGN),
                    "detail": f"ours {fmt(w10, 1)} s (load {ld(10, 'ours')}), reference design {fmt(ref10, 1)} s (load {ld(10, 'refdesign')})"})  # fmt: skip
    targets.append({"target": "10-minute video: ours <= 1/2 of Pixeltable's wall time",
                    "value": ratio(w10, pxt10), "limit": TARGET_RATIO_PIXELTABLE, "unit": "x",
                    "verdict": verdict(ratio(w10, pxt10), TARGET_RATIO_PIXELTABLE),
                    "detail": f"ours {fmt(w10, 1)} s (load {ld(10, 'ours')}), Pixeltable {fmt(pxt10, 1)} s (load {ld(10, 'pixeltable')})"})  # fmt: skip
    w1 = wall(1, "ours")
    t1 = ((by.get(1) or {}).get("ours") or {}).get("trigger_to_end_s")
    targets.append({"target": "1-minute clip end to end in <= 20 s (run start to end)", "value": w1,
                    "limit": TARGET_ONE_MINUTE_S, "unit": "s", "verdict": verdict(w1, TARGET_ONE_MINUTE_S),
                    "detail": f"from the trigger request: {fmt(t1, 1)} s; load {ld(1, 'ours')}"})  # fmt: skip
    o30 = (by.get(30) or {}).get("ours") or {}
    if o30:
        ok = o30.get("state") == "success" and o30.get("max_try_number") == 1
        v30 = "**met**" if ok else "**not met**"
        d30 = f"state {o30.get('state')}, {o30.get('retries')} retries, {fmt(o30.get('wall_s'), 1)} s; load {ld(30, 'ours')}"
    else:
        v30, d30 = "n/a", "not run"
    targets.append({"target": "30-minute video in one run with no retries", "value": None, "limit": None,
                    "unit": "", "verdict": v30, "detail": d30})  # fmt: skip
    plan = report.get("two_hour_plan") or {}
    two = (by.get(120) or {}).get("ours") or {}
    if two:
        v2 = verdict(two.get("wall_s") if two.get("state") == "success" else None, TARGET_TWO_HOURS_S)
        d2 = f"ingested: state {two.get('state')}, {fmt(two.get('wall_s'), 1)} s"
    else:
        v2 = "planned only" if plan.get("segments") else "n/a"
        d2 = (
            f"{plan.get('segments')} segments of {fmt(plan.get('segment_seconds'), 1)} s, "
            f"{plan.get('task_instances')} task instances"
            if plan.get("segments")
            else plan.get("segment_seconds_source", "")
        )
        proj = plan.get("projected_wall_s")
        if proj is not None:
            d2 += f"; projected from the {plan.get('projected_from_minutes'):g}-minute run: {proj:.0f} s"
    targets.append({"target": "2-hour video planned (segments, tasks) and, if it fits in 20 minutes, ingested",
                    "value": two.get("wall_s") if two else None, "limit": TARGET_TWO_HOURS_S, "unit": "s",
                    "verdict": v2, "detail": d2})  # fmt: skip
    fixed = [o["fixed_cost_per_segment_task_s"] for o in ours if o.get("fixed_cost_per_segment_task_s") is not None]
    worst_fixed = max(fixed) if fixed else None
    targets.append({"target": "fixed cost per segment task < 1.5 s (worst video length)", "value": worst_fixed,
                    "limit": TARGET_FIXED_COST_S, "unit": "s",
                    "verdict": "n/a" if worst_fixed is None else ("**met**" if worst_fixed < TARGET_FIXED_COST_S else "**not met**"),
                    "detail": "mean over segment tasks of (code start - TI start) + (TI end - code end)"})  # fmt: skip
    rss = [o["max_rss_per_task_bytes"] for o in ours if o.get("max_rss_per_task_bytes") is not None]
    worst_rss = max(rss) if rss else None
    targets.append({"target": "peak RSS per task < 1.5 GB (1.5e9 bytes; task process, children apart)",
                    "value": worst_rss, "limit": TARGET_RSS_BYTES, "unit": "bytes",
                    "verdict": "n/a" if worst_rss is None else ("**met**" if worst_rss < TARGET_RSS_BYTES else "**not met**"),
                    "detail": f"largest child (ffmpeg, ...): {gib(max((o.get('children_max_rss_bytes') or 0) for o in ours) if ours else None)}"})  # fmt: skip
    return targets


def write_markdown(report: dict[str, Any], path: Path) -> None:
    m = report["machine"]
    lines = [
        "# End-to-end benchmark",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` in {report['runtime_s']:.0f} s.",
        "",
        f"Machine: {m.get('cpu_count')} CPU ({m.get('cpu_model')}), {m.get('memory_gib')} GiB; torch {m.get('torch')}, "
        f"transformers {m.get('transformers')}, Airflow {m.get('airflow')}, Pixeltable {m.get('pixeltable') or 'n/a'}, "
        f"{m.get('ffmpeg')}; commit `{(m.get('git_commit') or '')[:10]}`{' (with local changes)' if m.get('git_dirty') else ''}.",
        "",
        benchlib.load_note(m).strip(),
        "",
        f"Inputs: `synth.make_video` 1280x720 @ 30000/1001 fps, H.264 (keyframe every {GOP_FRAMES} frames) + AAC, "
        f"moving boxes. Models: the tiny random DETR and CLIP folders of `vidsearch.models.modelstore`, the same two "
        f"folders for all three systems; sampling {report['config']['sample_fps']:g} frame/s; score threshold "
        f"{report['config']['score_threshold']:g}. Ours: `segment_seconds` "
        f"{report['config']['segment_seconds'] if report['config']['segment_seconds'] is not None else 'the DAG default (auto)'}. "
        f"{audio_note(report['config'])} "
        f"Reference design: 10 s segments, {report['config']['workers']} worker processes.",
        "",
        "Every time has the load average (1-minute value, mean / max over that time, sampled every second) next "
        "to it; CPU-s are the whole machine's busy seconds (/proc/stat) over the same window.",
        "",
        "## Wall time",
        "",
        "| video | ours: run start→end (s) | ours: trigger→end (s) | reference design (s) | Pixeltable insert (s) | ours / ref. (target ≤ 0.20) | ours / Pixeltable (target ≤ 0.50) | load ours | load ref. | load Pixeltable |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["runs"]:
        o, ref, pxt = row.get("ours") or {}, row.get("refdesign") or {}, row.get("pixeltable") or {}

        def w(e: dict[str, Any]) -> float | None:
            return e.get("wall_s") if e.get("state") == "success" else None

        def state(e: dict[str, Any], value: str) -> str:
            if not e:
                return "—"
            return value if e.get("state") == "success" else f"{e.get('state')}"

        ro = f"{w(o) / w(ref):.2f}" if w(o) and w(ref) else "n/a"
        rp = f"{w(o) / w(pxt):.2f}" if w(o) and w(pxt) else "n/a"
        lines.append(
            f"| {row['minutes']:g} min | {state(o, fmt(o.get('wall_s'), 1))} | {state(o, fmt(o.get('trigger_to_end_s'), 1))} "
            f"| {state(ref, fmt(ref.get('wall_s'), 1))} | {state(pxt, fmt(pxt.get('wall_s'), 1))} | {ro} | {rp} "
            f"| {load_text(o.get('window'))} | {load_text(ref.get('window'))} | {load_text(pxt.get('window'))} |"
        )
    for row in report["runs"]:
        o = row.get("ours") or {}
        if o.get("no_task_running_s") is not None:
            cp = o.get("critical_path") or {}
            lines.append("")
            lines.append(
                f"Ours, {row['minutes']:g} min: no task instance was running for {o['no_task_running_s']:.1f} s of the "
                f"{fmt(o.get('wall_s'), 1)} s (scheduling between dependent tasks; run start to the first task "
                f"{fmt(cp.get('run_start_to_first_task_s'), 2)} s, last task to run end {fmt(cp.get('last_task_to_run_end_s'), 2)} s); "
                f"trigger request to run start {fmt(o.get('trigger_to_start_s'), 2)} s."
            )
    lines += [
        "",
        "What each wall time covers. **Ours**: the DAG run's own start and end dates from the REST API (trigger→end "
        "adds the scheduler picking the run up); the stack, including the warm detect+embed worker, is up before"
        + (" and a warm-up run has loaded its models" if report["config"].get("warmup") else "")
        + ". **Reference design**: from the splitter's start to the last segment's vectors in Weaviate, with the worker "
        "services already up (their start-up, imports and model loading are reported apart below). **Pixeltable**: "
        "the `insert` of the video into the table whose views, computed columns and embedding index were defined "
        "before (its import, embedded-Postgres start and schema set-up are reported apart below).",
        "",
        "## Per video",
        "",
        "| video | system | state | first object (s) | task instances | retries | CPU-s per video-min: machine / own | peak RSS | frames | objects (Postgres / Weaviate) | start-up outside the wall (s) | load mean / max |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["runs"]:
        o, ref, pxt = row.get("ours"), row.get("refdesign"), row.get("pixeltable")
        if o:
            lines.append(
                f"| {row['minutes']:g} min | ours | {o.get('state')} | {fmt(o.get('first_object_s'), 1)} | {fmt(o.get('task_instance_count'))} "
                f"| {fmt(o.get('retries'))} | {cpu_pair(o)} | {gib(o.get('max_rss_per_task_bytes'))} per task "
                f"| {fmt(o.get('frames'))} | {fmt(o.get('objects'))} / {fmt(o.get('weaviate_objects'))} | — | {load_text(o.get('window'))} |"
            )
        if ref:
            lines.append(
                f"| {row['minutes']:g} min | reference design | {ref.get('state')} | {fmt(ref.get('first_object_s'), 1)} | — | — "
                f"| {cpu_pair(ref)} | {gib(ref.get('max_rss_bytes'))} per worker | {fmt(ref.get('frames'))} "
                f"| — / {fmt(ref.get('weaviate_objects'))} | {fmt(ref.get('startup_s'), 1)} | {load_text(ref.get('window'))} |"
            )
        if pxt:
            startup = (
                sum(pxt.get(k) or 0.0 for k in ("import_s", "init_s", "schema_s"))
                if pxt.get("state") == "success"
                else None
            )
            lines.append(
                f"| {row['minutes']:g} min | Pixeltable | {pxt.get('state')} | — | — | — | {cpu_pair(pxt)} "
                f"| {gib(pxt.get('max_rss_bytes'))} (one process) | {fmt(pxt.get('frames'))} | {fmt(pxt.get('objects'))} (its index) "
                f"| {fmt(startup, 1)} | {load_text(pxt.get('window'))} |"
            )
    lines += ["", "## Targets", "", "| target | value | verdict | detail |", "|---|---:|---|---|"]
    for t in report["targets"]:
        value = t["value"]
        shown = (
            gib(value)
            if t["unit"] == "bytes"
            else (fmt(value, 2) + (f" {t['unit']}" if t["unit"] else "") if value is not None else "n/a")
        )
        lines.append(f"| {t['target']} | {shown} | {t['verdict']} | {t['detail']} |")

    lines += ["", "## Our task instances, per kind", ""]
    lines.append(
        "From Airflow (queued, start and end of each task instance) and from the `vidsearch_timing` XCom each task "
        "pushes: process start = the task process's creation − TI start; imports = our code's start − process "
        "creation; exit = TI end − our code's end; fixed = (code start − TI start) + (TI end − code end). Means, "
        "with the maximum after the slash."
    )
    for row in report["runs"]:
        o = row.get("ours")
        if not o or not o.get("tasks"):
            continue
        lines += [
            "",
            f"**{row['minutes']:g} min** ({o.get('segments')} segments, {o.get('task_instance_count')} task instances, "
            f"load {load_text(o.get('window'))}; timing XComs missing: {o.get('timing_xcoms_missing')}; fixed cost per "
            f"segment task {fmt(o.get('fixed_cost_per_segment_task_s'), 2)} s):",
            "",
            "| task | n | duration (s) | queued→start (s) | process start (s) | imports (s) | GX set-up (s) | work (s) | exit (s) | fixed (s) | peak RSS | largest child |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, e in o["tasks"].items():

            def pair(key: str, e: dict[str, Any] = e) -> str:
                mean, mx = e.get(f"{key}_mean_s"), e.get(f"{key}_max_s")
                return "n/a" if mean is None else f"{mean:.2f} / {mx:.2f}"

            lines.append(
                f"| {kind} | {e['count']} | {pair('duration')} | {pair('queue_to_start')} | {pair('process_start')} "
                f"| {pair('imports')} | {pair('gx_setup')} | {pair('work')} | {pair('exit')} | {pair('fixed_cost')} "
                f"| {gib(e.get('max_rss_bytes'))} | {gib(e.get('children_max_rss_bytes'))} |"
            )
    lines += ["", "## Peers, inside their wall time", ""]
    for row in report["runs"]:
        ref, pxt = row.get("refdesign"), row.get("pixeltable")
        if ref and ref.get("state") == "success":
            phases = ", ".join(f"{k} {v:.1f}" for k, v in (ref.get("phases_s") or {}).items())
            lines.append(
                f"* {row['minutes']:g} min, reference design: {ref.get('segments')} segments on {ref.get('workers')} workers "
                f"({ref.get('torch_threads_per_worker')} torch thread each); split {fmt(ref.get('split_s'), 2)} s; worker "
                f"seconds summed over segments: {phases}; services up in {fmt(ref.get('startup_s'), 1)} s; process wall "
                f"{fmt(ref.get('process_wall_s'), 1)} s."
            )
        if pxt and pxt.get("state") == "success":
            lines.append(
                f"* {row['minutes']:g} min, Pixeltable: import {fmt(pxt.get('import_s'), 2)} s, init (embedded Postgres) "
                f"{fmt(pxt.get('init_s'), 2)} s, schema {fmt(pxt.get('schema_s'), 2)} s, insert {fmt(pxt.get('insert_s'), 2)} s "
                f"({pxt.get('errors')} errors), similarity query {fmt(pxt.get('query_s'), 3)} s; process wall "
                f"{fmt(pxt.get('process_wall_s'), 1)} s."
            )
        for name, e in (("reference design", ref), ("Pixeltable", pxt)):
            if e and e.get("state") != "success":
                lines.append(f"* {row['minutes']:g} min, {name}: **{e.get('state')}**: {e.get('error')}")
    plan = report.get("two_hour_plan") or {}
    lines += ["", "## A 2-hour video", ""]
    if plan.get("segments"):
        text = (
            f"Planned for 7,200 s with {plan['slots']} slots ({plan['segment_seconds_source']}): segments of "
            f"{plan['segment_seconds']:g} s, {plan['segments']} segments, {plan['task_instances']} task instances."
        )
        if plan.get("projected_wall_s") is not None:
            text += (
                f" Projected from the {plan['projected_from_minutes']:g}-minute run's wall time per video minute: "
                f"{plan['projected_wall_s']:.0f} s ({'within' if plan['projected_wall_s'] <= TARGET_TWO_HOURS_S else 'over'} 20 minutes)."
            )
        lines.append(text)
    else:
        lines.append(f"Not planned: {plan.get('segment_seconds_source', 'n/a')}.")
    if report.get("idle"):
        idle = report["idle"]
        lines += ["", f"Idle stack before the runs: {idle['machine_cpu_s']:.1f} CPU-s in {idle['seconds']:.0f} s "
                      f"({idle['machine_cpu_s'] / idle['seconds']:.2f} cores busy), load {idle['load_mean']:.2f}."]  # fmt: skip
    lines += [
        "",
        "## Notes",
        "",
        "* Single runs on whatever machine ran them: other work on the machine inflates and scatters every number "
        "(see the load averages). The tiny models make detection and embedding nearly free, so these figures "
        "measure each system's plumbing (process starts, scheduling, decoding, image files, database writes), "
        "not model cost.",
        '* CPU-s per video minute, "machine": every busy CPU second of the machine over the wall time, whatever '
        'ran; "own": the system\'s own processes only. Ours: Airflow (api-server, scheduler with its executor '
        "and task processes, dag-processor, triggerer), the warm worker, Postgres and Weaviate, from the trigger "
        "until the end was seen (idle scheduler heartbeats included: they are this system's cost). Reference "
        "design: its processes from services-up to the last vector, plus Weaviate. Pixeltable: its process and "
        "its embedded Postgres during the insert.",
        "* Peak RSS per task is the task process's own high-water mark (`VmHWM`), which counts the pages it "
        "shares with the preloaded executor worker it was forked from (about 0.38 GiB of imported libraries, "
        "shared by every task process, not copied). The largest child's figure is `RUSAGE_CHILDREN`'s, which "
        "on Linux also counts what a child shared with the task process before it exec'd ffmpeg: an upper "
        "bound, not ffmpeg's alone.",
        '* "process start" is the task process\'s creation time (`/proc/self/stat` against CLOCK_BOOTTIME, '
        "to about 10 ms) minus the TI's start date: negative because the supervisor forks the process "
        "before the API server records the start.",
        "* The three systems count objects their own way: ours in Postgres and Weaviate (`finalize` checks they "
        "agree), the reference design in its Weaviate collection, Pixeltable in its `objects` view.",
        "* Every raw figure (each task instance, each XCom, each peer's phases) is in `e2e.json`.",
    ]
    path.write_text("\n".join(lines) + "\n")


def write_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    styles = {"ours": ("ours (Airflow, run start→end)", "#1e88e5", "o"),
              "refdesign": ("reference design", "#e53935", "s"),
              "pixeltable": ("Pixeltable (insert)", "#43a047", "^")}  # fmt: skip
    for system, (label, colour, marker) in styles.items():
        points = [(row["minutes"], row[system]["wall_s"]) for row in report["runs"]
                  if (row.get(system) or {}).get("state") == "success" and row[system].get("wall_s") is not None]  # fmt: skip
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=marker, color=colour, label=label)
            for x, y in points:
                ax.annotate(
                    f"{y:.1f}s" if y < 10 else f"{y:.0f}s",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                    color=colour,
                )
    lengths = sorted({row["minutes"] for row in report["runs"]})
    ax.set_xticks(lengths, [f"{m:g}" for m in lengths])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("video length (minutes)")
    ax.set_ylabel("wall time (s)")
    loads = [row[s]["window"]["load_mean"] for row in report["runs"] for s in SYSTEMS
             if (row.get(s) or {}).get("window")]  # fmt: skip
    load = f"; load avg {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    ax.set_title(f"Ingest wall time vs video length, 720p30, tiny models\n"
                 f"{report['machine'].get('cpu_count')} CPU{load}", fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------


def run_timeout(args: argparse.Namespace, minutes: float) -> float:
    return float(args.run_timeout) if args.run_timeout else 600.0 + 120.0 * minutes


def machine_facts() -> dict[str, Any]:
    ffmpeg = (cmd_output(["ffmpeg", "-version"]) or "").splitlines()[:1]
    return benchlib.machine_facts(
        torch=version("torch"), transformers=version("transformers"), airflow=version("apache-airflow"),
        weaviate_client=version("weaviate-client"),
        ffmpeg=" ".join(ffmpeg[0].split()[:3]) if ffmpeg else None,
    )  # fmt: skip


def parse_minutes(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--minutes wants numbers separated by commas, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("--minutes values must be positive")
    return values


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description="End-to-end benchmark through the real scheduler, with two peers.")
    parser.add_argument(
        "--minutes",
        type=parse_minutes,
        default=parse_minutes("1,10,30"),
        help="video lengths in minutes, comma-separated (default 1,10,30; 120 ingests a 2-hour video)",
    )
    parser.add_argument("--only", choices=SYSTEMS, help="run one system only")
    parser.add_argument("--skip-peers", action="store_true", help="run ours only")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--segment-seconds", type=float, help="pass segment_seconds to our DAG (default: not passed)")
    parser.add_argument(
        "--no-transcribe",
        action="store_true",
        help="pass transcribe: false to our DAG (its audio branch skips; the peers never transcribe)",
    )
    parser.add_argument("--sample-fps", type=float, default=1.0, help="frames/s for all three systems (default 1)")
    parser.add_argument("--score-threshold", type=float, default=0.0, help="for all three systems (default 0)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="reference design worker processes (default: cores)"
    )
    parser.add_argument("--run-timeout", type=float, help="seconds per run (default 600 + 120 per video minute)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the 15 s warm-up DAG run before measuring")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reports", help="report folder")
    parser.add_argument(
        "--bench-dir",
        type=Path,
        default=Path(os.environ.get("VIDSEARCH_BENCH_DIR") or ROOT / "data" / "bench"),
        help="videos, Pixeltable's venv and home, scratch (default data/bench)",
    )
    parser.add_argument("--render", type=Path, help="only redraw e2e.md and e2e.png from this e2e.json into --out")
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        write_markdown(report, args.out / "e2e.md")
        if report.get("runs"):
            write_chart(report, args.out / "e2e.png")
        print((args.out / "e2e.md").read_text())
        return 0
    systems = [args.only] if args.only else (["ours"] if args.skip_peers else list(SYSTEMS))

    # SIGTERM (a timeout, kill) unwinds like Ctrl-C, so the stack started here is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    benchlib.quiet()
    started = time.perf_counter()
    stamp = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    bench_dir = args.bench_dir.resolve()
    log_dir = bench_dir / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    sampler = Sampler()
    sampler.start()
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": ".venv/bin/python bench/e2e.py " + " ".join(sys.argv[1:]),
        "systems": systems,
        "config": {
            "minutes": args.minutes,
            "sample_fps": args.sample_fps,
            "score_threshold": args.score_threshold,
            "segment_seconds": args.segment_seconds,
            "transcribe": not args.no_transcribe,
            "workers": args.workers,
            "warmup": False,
            "log_dir": str(log_dir),
        },  # fmt: skip
        "runs": [],
    }
    report["machine"] = machine_facts()
    report["machine"]["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    say(f"systems {', '.join(systems)}; videos of {', '.join(f'{m:g}' for m in args.minutes)} min; logs in {log_dir}")

    stack: Stack | None = None
    api: AirflowClient | None = None
    standalone: StandaloneWeaviate | None = None
    failed = False
    try:
        from devstack import cache_dir

        # The stack's default (devstack.env_for_stack): the models our DAG run would build are these.
        model_cache = Path(os.environ.get("VIDSEARCH_MODEL_CACHE") or cache_dir() / "models")
        models = tiny_models(model_cache)
        report["config"]["models"] = models
        videos = {}
        for minutes in args.minutes:
            videos[minutes] = bench_video(minutes, bench_dir / "videos")
        report["videos"] = {f"{m:g}": info for m, (_, info) in videos.items()}

        pxt_python = None
        if "pixeltable" in systems:
            pxt_python = ensure_pixeltable_venv(bench_dir, log_dir)
            report["machine"]["pixeltable"] = PIXELTABLE_VERSION

        weaviate_ports: tuple[int, int] | None = None
        weaviate_pid: int | None = None
        if "ours" in systems:
            stack = Stack(log_dir)
            was_up = stack.is_up()
            if was_up:
                say(f"the stack is already up ({stack.cfg.data_dir}); using it, and leaving it running")
                report["stack"] = {"already_running": True, "data_dir": str(stack.cfg.data_dir)}
            else:
                say(
                    f"starting the stack (data {stack.cfg.data_dir}, Airflow {stack.api_url}; log {log_dir / 'devstack-up.log'})"
                )
                seconds = stack.up()
                report["stack"] = {
                    "already_running": False,
                    "start_s": r(seconds, 1),
                    "data_dir": str(stack.cfg.data_dir),
                }
                say(f"stack up in {seconds:.0f} s")
            weaviate_ports = (stack.cfg.weaviate_http_port, stack.cfg.weaviate_grpc_port)
            weaviate_pid = stack.component_pids().get("weaviate")
            api = AirflowClient.for_stack(stack.cfg)
            api.wait_for_dag(DAG_ID, timeout_s=300)
            idle_start = time.time()
            time.sleep(10.0)
            idle = sampler.window(idle_start, time.time())
            report["idle"] = {"seconds": r(time.time() - idle_start, 1), **idle}
        elif "refdesign" in systems:
            standalone = StandaloneWeaviate(Path(tempfile.mkdtemp(prefix="e2e-weaviate-", dir=bench_dir)))
            weaviate_ports = (standalone.http_port, standalone.grpc_port)
            weaviate_pid = standalone.server.pid

        collection = f"e2e_{stamp}"
        base_conf: dict[str, Any] = {"collection": collection, "detector_model": models["detector"],
                                     "embedder_model": models["embedder"], "score_threshold": args.score_threshold,
                                     "sample_fps": args.sample_fps, "asr_model": models["asr"],
                                     "transcribe": not args.no_transcribe}  # fmt: skip
        if args.segment_seconds is not None:
            base_conf["segment_seconds"] = args.segment_seconds
        report["config"]["collection"] = collection

        if api is not None and stack is not None and not args.no_warmup:
            warm_path, _ = bench_video(WARMUP_MINUTES, bench_dir / "videos")
            say("warm-up run (15 s clip; loads the warm worker's models; not reported as a measurement)")
            warm = run_ours(api, stack, sampler, warm_path, WARMUP_MINUTES, {**base_conf, "collection": f"e2e_{stamp}_warmup",
                            "source": str(warm_path)}, f"bench_e2e__warmup__{stamp}", run_timeout(args, 1))  # fmt: skip
            report["warmup"] = {k: warm.get(k) for k in ("state", "wall_s", "trigger_to_end_s", "task_instance_count")}
            report["config"]["warmup"] = True
            say(f"warm-up: {warm['state']} in {fmt(warm.get('wall_s'), 1)} s")

        for minutes in args.minutes:
            video, _ = videos[minutes]
            row: dict[str, Any] = {"minutes": minutes, "video": str(video)}
            report["runs"].append(row)
            label = minutes_label(minutes)
            if "ours" in systems and api is not None and stack is not None:
                say(f"{minutes:g} min: ours (video_ingest through the REST API)")
                row["ours"] = o = run_ours(api, stack, sampler, video, minutes, {**base_conf, "source": str(video)},
                                           f"bench_e2e__{label}__{stamp}", run_timeout(args, minutes))  # fmt: skip
                say(
                    f"{minutes:g} min: ours {o['state']}: wall {fmt(o.get('wall_s'), 1)} s (trigger→end "
                    f"{fmt(o.get('trigger_to_end_s'), 1)} s), {o.get('task_instance_count')} task instances, "
                    f"{fmt(o.get('objects'))} objects, load {load_text(o.get('window'))}"
                )
                failed |= o["state"] != "success"
            if "refdesign" in systems and weaviate_ports is not None:
                say(f"{minutes:g} min: reference design ({args.workers} workers)")
                row["refdesign"] = e = run_refdesign(
                    sampler, video, minutes, models, weaviate_ports, weaviate_pid, f"RefDesign_{stamp}_{label}", args,
                    bench_dir / "refdesign-work", log_dir / "refdesign.log",
                )  # fmt: skip
                say(
                    f"{minutes:g} min: reference design {e.get('state')}: wall {fmt(e.get('wall_s'), 1)} s, "
                    f"{fmt(e.get('objects'))} objects, load {load_text(e.get('window'))}"
                )
                failed |= e.get("state") != "success"
            if "pixeltable" in systems and pxt_python is not None:
                say(f"{minutes:g} min: Pixeltable")
                row["pixeltable"] = e = run_pixeltable(
                    sampler, pxt_python, video, minutes, models, bench_dir / "pixeltable-home", args,
                    log_dir / f"pixeltable-{label}.json", log_dir / "pixeltable.log",
                )  # fmt: skip
                say(
                    f"{minutes:g} min: Pixeltable {e.get('state')}: insert {fmt(e.get('wall_s'), 1)} s, "
                    f"{fmt(e.get('objects'))} objects, load {load_text(e.get('window'))}"
                )
                failed |= e.get("state") != "success"
    except (BenchError, RuntimeError) as exc:  # RuntimeError: the Airflow API refused a call
        say(f"error: {exc}")
        report["error"] = str(exc)
        failed = True
    except KeyboardInterrupt:
        say("interrupted")
        report["error"] = "interrupted"
        failed = True
    finally:
        if api is not None:
            api.close()
        if standalone is not None:
            standalone.stop()
        shutil.rmtree(bench_dir / "refdesign-work", ignore_errors=True)
        if stack is not None and stack.started_here:
            if args.keep_stack:
                say("keeping the stack running (--keep-stack); stop it with 'python -m devstack down'")
            else:
                say("stopping the stack")
                stack.down()
        sampler.stop()

    ours_runs = [row for row in report["runs"] if (row.get("ours") or {}).get("state") == "success"]
    report["two_hour_plan"] = plan = planned(TWO_HOURS_S, args.segment_seconds, args.sample_fps)
    if ours_runs:
        longest = max(ours_runs, key=lambda row: row["minutes"])
        plan["projected_from_minutes"] = longest["minutes"]
        plan["projected_wall_s"] = r(longest["ours"]["wall_s"] / longest["minutes"] * TWO_HOURS_S / 60.0, 1)
    report["targets"] = evaluate_targets(report)
    report["runtime_s"] = r(time.perf_counter() - started, 1)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["load_samples"] = [[r(t, 1), r(load, 2)] for t, load, _ in sampler.samples]

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_markdown(report, out / "e2e.md")
    if report["runs"]:
        write_chart(report, out / "e2e.png")
    say(f"wrote {out / 'e2e.json'}, e2e.md, e2e.png in {report['runtime_s']:.0f} s")
    print((out / "e2e.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
