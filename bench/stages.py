"""Stage benchmark: time every pipeline stage on a generated one-minute 720p video with tiny models.

    .venv/bin/python bench/stages.py [--duration 60] [--out bench/reports] [--no-e2e] [--keep-temp]

What it does (see bench/README.md for how to read the results):

1. Starts Postgres and Weaviate on free ports with their data in a temporary folder (stopped at the
   end, always), and configures Airflow, tiny models and object storage through environment
   variables, exactly as the test suite does (tests/conftest.py).
2. Generates (or reuses from ~/.cache/vidsearch/bench/) a 1280x720, 30000/1001 fps, H.264 + AAC video
   of moving boxes with `vidsearch.media.synth.make_video`.
3. Times each stage through the same plain functions the DAG tasks call (`vidsearch.pipeline`):
   probe, split, extract_frames, the detect+embed worker command per segment (with the worker's own
   phase timings), indexing into Weaviate + Postgres, and finalize, with the time each spends in its
   data-quality gates; and frame sampling alone at 1 and 5 frames/s next to ffmpeg's decode-only
   rate on the same file.
4. Runs `video_ingest` end to end once with `dag.test()` in a fresh process and sets its wall time
   next to the sum of the task instances' durations and the sum of the stage times of step 3.
5. Writes stages.json (everything), stages.md (a readable summary) and stages.png (a bar chart).

Nothing is downloaded: the tiny models are random models built from configs (cached in
~/.cache/vidsearch/bench-models), so detections are nonsense but every shape and code path is real.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

import benchlib  # noqa: E402  (bench/ is on sys.path: scripts run as python bench/<name>.py)
from benchlib import cmd_output, fmt, load_note, quiet, r, version  # noqa: E402
from devstack import cache_dir  # noqa: E402

SCHEMA_VERSION = 1
WIDTH, HEIGHT, FPS = 1280, 720, "30000/1001"
GOP_FRAMES = 60  # a keyframe every ~2 s, as streaming encoders typically write
SEGMENT_SECONDS = 10.0
SAMPLE_RATES = (1.0, 5.0)
E2E_SAMPLE_FPS = 1.0  # the DAG's default; the stage sum compared with the e2e run uses this rate
DECODE_RUNS = 3
SAMPLING_RUNS = 2
COLLECTION = "bench"
E2E_COLLECTION = "bench_e2e"
RUN_ID = "bench__stages"
DAG_ID = "video_ingest"
STAGE_ORDER = ("probe", "split", "extract_frames", "detect_embed", "index", "finalize")

log = logging.getLogger("bench")


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def rate(count: float, seconds: float) -> float | None:
    return round(count / seconds, 2) if seconds > 0 else None


# --------------------------------------------------------------------------------------------------
# Environment: servers, Airflow configuration, machine facts
# --------------------------------------------------------------------------------------------------


class Stack(benchlib.ServerStack):
    """The servers, plus the connections, storage root and tiny models the DAG run uses."""

    def __init__(self, base: Path, model_cache: Path):
        super().__init__(base)
        self.model_cache = model_cache

    def env(self) -> dict[str, str]:
        weaviate_conn = {
            "conn_type": "weaviate",
            "host": "127.0.0.1",
            "port": self.weaviate.http_port,
            "extra": {
                "grpc_host": "127.0.0.1",
                "grpc_port": self.weaviate.grpc_port,
                "http_secure": False,
                "grpc_secure": False,
            },
        }
        return {
            "AIRFLOW_CONN_VIDSEARCH_POSTGRES": self.pg.url("vidsearch"),
            "AIRFLOW_CONN_WEAVIATE_DEFAULT": json.dumps(weaviate_conn),
            # The DAG run gets its own storage root: it must not find the stage run's copy of the video.
            "VIDSEARCH_STORAGE_ROOT": f"file://{self.base / 'objects-e2e'}",
            "VIDSEARCH_TINY_MODELS": "1",
            "VIDSEARCH_MODEL_CACHE": str(self.model_cache),
        }


def machine_facts() -> dict[str, Any]:
    import torch
    import transformers

    ffmpeg = (cmd_output(["ffmpeg", "-version"]) or "").splitlines()[:1]
    return benchlib.machine_facts(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cuda_available=torch.cuda.is_available(),
        transformers=transformers.__version__,
        # not `import airflow`: that configures Airflow's logging for this whole process
        airflow=version("apache-airflow"),
        ffmpeg=" ".join(ffmpeg[0].split()[:3]) if ffmpeg else None,
    )


# --------------------------------------------------------------------------------------------------
# The video
# --------------------------------------------------------------------------------------------------


def bench_video(duration_s: float) -> tuple[Path, dict[str, Any]]:
    """The benchmark video, generated once per parameter set (and synth.py version) and cached."""
    params = {
        "duration_s": float(duration_s),
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "audio": True,
        "gop_frames": GOP_FRAMES,
    }
    return benchlib.cached_video(params)


def decode_only(path: Path, runs: int = DECODE_RUNS) -> dict[str, Any]:
    """ffmpeg decoding the whole video stream to nowhere: the floor for any frame sampling."""
    from vidsearch.media import ffmpeg as ff

    argv = [ff.ffmpeg_bin(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
    times = []
    frames = None
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        # The final progress line: "frame= 1798 fps=... ".
        for chunk in reversed(proc.stderr.replace("\r", "\n").splitlines()):
            if chunk.startswith("frame="):
                frames = int(chunk.split("=", 1)[1].split()[0])
                break
    best = min(times)
    return {
        "command": " ".join(["ffmpeg", *argv[1:4], "<video>", *argv[5:]]),
        "runs_s": [r(t) for t in times],
        "best_s": r(best),
        "frames": frames,
    }


# --------------------------------------------------------------------------------------------------
# Stages, measured through the pipeline functions the DAG tasks call
# --------------------------------------------------------------------------------------------------


class GateMeter:
    """Times the data-quality gate work inside the pipeline functions, per stage.

    The pipeline calls `quality.check_*` (and the fact gatherer `segment_facts`) through module
    attributes, so wrapping those attributes in this process measures the gates without changing what
    runs. The frames gate's per-frame statistics are computed inside extraction, in its JPEG threads
    (`frames.extract_frames(stats=...)`), so they count as extraction time, not gate time.
    """

    QUALITY_FUNCS = (
        "check_probe", "check_split", "check_segment", "segment_facts", "check_frames",
        "check_detections", "check_embeddings", "check_index", "write_report",
    )  # fmt: skip

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._patched: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        from vidsearch import quality

        for name in self.QUALITY_FUNCS:
            if hasattr(quality, name):
                self._wrap(quality, name, name)

    def _wrap(self, module: Any, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - start

        setattr(module, name, wrapper)
        self._patched.append((module, name, original))

    def take(self) -> dict[str, Any]:
        """Gate time since the last call: total and per function."""
        detail = {k: r(v) for k, v in sorted(self.totals.items())}
        self.totals = {}
        return {"quality_gates_s": r(sum(detail.values())), "quality_gates_detail_s": detail}

    def uninstall(self) -> None:
        for module, name, original in reversed(self._patched):
            setattr(module, name, original)
        self._patched = []


def run_stages(stack: Stack, video: Path, duration_s: float) -> dict[str, Any]:
    # The stage run has its own storage root; the worker reads and writes only under its
    # VIDSEARCH_STORAGE_ROOT, so that names the stage run's root meanwhile (then the DAG run's again).
    e2e_root = os.environ.get("VIDSEARCH_STORAGE_ROOT")
    os.environ["VIDSEARCH_STORAGE_ROOT"] = f"file://{stack.base / 'objects'}"
    try:
        return _run_stages(stack, video, duration_s)
    finally:
        if e2e_root is None:
            os.environ.pop("VIDSEARCH_STORAGE_ROOT", None)
        else:
            os.environ["VIDSEARCH_STORAGE_ROOT"] = e2e_root


def _run_stages(stack: Stack, video: Path, duration_s: float) -> dict[str, Any]:
    from vidsearch import pipeline, quality
    from vidsearch.media import frames
    from vidsearch.models import launcher, modelstore
    from vidsearch.stores import catalog as cat
    from vidsearch.stores import storage
    from vidsearch.stores.index import ObjectIndex

    quiet()
    catalog = cat.Catalog.from_url(stack.pg.url("vidsearch"))
    cat.migrate(catalog.engine)
    client = stack.weaviate_client()
    index = ObjectIndex(client)
    svc = pipeline.Services(
        catalog=catalog,
        index=lambda: index,
        storage_root=os.environ["VIDSEARCH_STORAGE_ROOT"],
        tiny_models=True,
        model_cache=str(stack.model_cache),
    )
    params = pipeline.IngestParams(
        source=str(video),
        collection=COLLECTION,
        segment_seconds=SEGMENT_SECONDS,
        sample_fps=E2E_SAMPLE_FPS,
        score_threshold=0.0,
    )
    out: dict[str, Any] = {}
    meter = GateMeter()
    try:
        # Build the tiny models before anything is timed, so no segment pays for it.
        _, seconds = timed(
            lambda: [
                modelstore.resolve_model("x", kind, tiny=True, cache_dir=stack.model_cache)
                for kind in ("detector", "embedder")
            ]
        )
        out["tiny_models_ready_s"] = r(seconds)
        # Great Expectations: imported and set up once per process, on the first gate. Timed apart,
        # so the first stage does not carry it; every Airflow task process pays it once.
        _, seconds = timed(quality._context)
        out["gx_context_s"] = r(seconds)
        quiet()
        meter.install()

        say("probe")
        probed, seconds = timed(lambda: pipeline.probe_video(svc, RUN_ID, "bench", params))
        manifest = probed.manifest
        out["probe"] = {"wall_s": r(seconds), **meter.take()}
        out["manifest"] = manifest.model_dump(mode="json")

        say("split")
        segments, seconds = timed(lambda: pipeline.split_video(svc, RUN_ID, params, probed))
        out["split"] = {
            "wall_s": r(seconds),
            **meter.take(),
            "segments": len(segments),
            "segment_bounds_s": [[s.start_s, s.end_s] for s in segments],
        }

        say(f"decode-only baseline (best of {DECODE_RUNS})")
        base = decode_only(video)
        frames_decoded = base["frames"] or manifest.frame_count or 0
        base["frames_per_s"] = rate(frames_decoded, base["best_s"])
        base["video_s_per_s"] = rate(manifest.duration_s, base["best_s"])
        out["decode_only"] = base

        # Sampling alone (frames.run_frames: decode, select, JPEG, upload) at each rate, next to
        # decode-only; best of SAMPLING_RUNS passes over all segments, like the decode baseline.
        out["sampling"] = {}
        for fps in SAMPLE_RATES:
            say(f"sampling at {fps:g} frames/s (best of {SAMPLING_RUNS})")
            passes = []
            for _ in range(SAMPLING_RUNS):
                per_seg = []
                for seg in segments:
                    uri = storage.join(pipeline.video_root(svc, seg.video_id), f"frames-{fps:g}fps", f"{seg.name}.zip")
                    bundle, seconds = timed(
                        lambda seg=seg, uri=uri, fps=fps: frames.run_frames(
                            seg, fps, uri, video_start_s=manifest.start_time_s
                        )
                    )
                    per_seg.append(
                        {
                            "segment": seg.index,
                            "frames": len(bundle.frames),
                            "wall_s": r(seconds),
                            "video_s": r(seg.end_s - seg.start_s),
                        }
                    )
                passes.append(per_seg)
            totals = [sum(p["wall_s"] for p in per_seg) for per_seg in passes]
            per_seg = passes[totals.index(min(totals))]
            wall = min(totals)
            n = sum(p["frames"] for p in per_seg)
            out["sampling"][f"{fps:g}"] = {
                "sample_fps": fps,
                "runs_s": [r(t) for t in totals],
                "wall_s": r(wall),
                "frames": n,
                "sampled_frames_per_s": rate(n, wall),
                "video_s_per_s": rate(manifest.duration_s, wall),
                "x_decode_only": round(wall / base["best_s"], 2) if base["best_s"] else None,
                "per_segment": per_seg,
            }
        meter.take()

        # The DAG's extract_frames task: sampling at the DAG's rate plus the frames quality gate.
        say(f"extract_frames (pipeline, {E2E_SAMPLE_FPS:g} frame/s, with its quality gate)")
        per_seg = []
        bundles = []
        for seg in segments:
            bundle, seconds = timed(lambda seg=seg: pipeline.extract_frames(svc, RUN_ID, params, seg, manifest))
            bundles.append(bundle)
            per_seg.append({"segment": seg.index, "frames": len(bundle.frames), "wall_s": r(seconds)})
        wall = sum(p["wall_s"] for p in per_seg)
        out["extract_frames"] = {
            "sample_fps": E2E_SAMPLE_FPS,
            "wall_s": r(wall),
            **meter.take(),
            "frames": sum(p["frames"] for p in per_seg),
            "per_segment": per_seg,
        }

        say(f"detect_embed: worker command per segment ({len(bundles)} segments)")
        det_segments = []
        for seg, bundle in zip(segments, bundles):
            argv = pipeline.worker_argv(svc, params, bundle)
            result, seconds = timed(lambda argv=argv: launcher.run_local(argv))
            t = result.timings_s
            det_segments.append(
                {
                    "segment": seg.index,
                    "frames": result.frame_count,
                    "objects": len(result.objects),
                    "wall_s": r(seconds),
                    "timings_s": t,
                    # Outside the worker's own clock: interpreter start, the worker's module imports,
                    # and reading the result back in this process.
                    "process_start_s": r(seconds - t.get("total", 0.0)),
                    # Inside its clock but in no named phase: importing torch and selecting the device.
                    "worker_imports_s": r(t.get("total", 0.0) - sum(v for k, v in t.items() if k != "total")),
                    "model_load_s": r(t.get("load_detector", 0.0) + t.get("load_embedder", 0.0)),
                    "output_uri": pipeline.detections_uri(svc, bundle),
                }
            )
        out["detect_embed"] = summarize_detect(det_segments, result.device)
        meter.take()

        say(f"detect_embed: the same worker commands as jobs of one warm worker ({len(bundles)} segments)")
        out["detect_embed_warm"] = warm_worker_jobs([pipeline.worker_argv(svc, params, b) for b in bundles])
        meter.take()

        say("index: Weaviate + Postgres per segment, with the detections, embeddings and index gates")
        idx_segments = []
        for seg, bundle, det in zip(segments, bundles, det_segments):
            counts, seconds = timed(
                lambda seg=seg, bundle=bundle, det=det: pipeline.index_segment(
                    svc, RUN_ID, params, seg, bundle, det["output_uri"]
                )
            )
            idx_segments.append(
                {"segment": seg.index, "objects": counts["objects"], "frames": counts["frames"], "wall_s": r(seconds)}
            )
        wall = sum(s["wall_s"] for s in idx_segments)
        objects = sum(s["objects"] for s in idx_segments)
        gates = meter.take()
        writes = wall - gates["quality_gates_s"]
        out["index"] = {
            "wall_s": r(wall),
            **gates,
            "objects": objects,
            "objects_per_s": rate(objects, wall),
            "writes_s": r(writes),
            "objects_per_s_writes_only": rate(objects, writes),
            "per_segment": idx_segments,
        }

        say("finalize")
        summary, seconds = timed(lambda: pipeline.finalize(svc, RUN_ID, params, manifest.video_id))
        out["finalize"] = {"wall_s": r(seconds), **meter.take(), "summary": summary.model_dump(mode="json")}
    finally:
        meter.uninstall()
        client.close()
        catalog.engine.dispose()

    out["stage_sum_s"] = {stage: out[stage]["wall_s"] for stage in STAGE_ORDER}
    out["stage_sum_s"]["total"] = r(sum(out["stage_sum_s"].values()))
    out["quality_gates_sum_s"] = r(sum(out[stage].get("quality_gates_s", 0.0) for stage in STAGE_ORDER))
    return out


def warm_worker_jobs(argvs: list[list[str]]) -> dict[str, Any]:
    """Run the worker commands through a warm worker (`vidsearch.models.worker_server`, in this process, as
    `make up` runs it beside Airflow): the first job loads the models, the others reuse them."""
    from vidsearch.models import launcher, worker_server

    per_segment = []
    with worker_server.serving() as (url, warm):
        os.environ[launcher.WORKER_URL_ENV] = url
        try:
            for argv in argvs:
                result, seconds = timed(lambda argv=argv: launcher.run_local(argv))
                per_segment.append(
                    {
                        "frames": result.frame_count,
                        "objects": len(result.objects),
                        "wall_s": r(seconds),
                        "timings_s": result.timings_s,
                    }
                )
        finally:
            os.environ.pop(launcher.WORKER_URL_ENV, None)
    later = [p["wall_s"] for p in per_segment[1:]]
    return {
        "segments": len(per_segment),
        "wall_s": r(sum(p["wall_s"] for p in per_segment)),
        "first_segment_s": per_segment[0]["wall_s"] if per_segment else None,
        "later_segment_mean_s": r(statistics.mean(later)) if later else None,
        "model_loads": warm.models.loads,
        "per_segment": per_segment,
    }


def summarize_detect(segments: list[dict[str, Any]], device: str) -> dict[str, Any]:
    def total(key: str) -> float:
        return sum(s["timings_s"].get(key, 0.0) for s in segments)

    frames_n = sum(s["frames"] for s in segments)
    objects = sum(s["objects"] for s in segments)
    wall = sum(s["wall_s"] for s in segments)
    detect_s, embed_s = total("detect"), total("embed")
    load_s = total("load_detector") + total("load_embedder")
    overhead = sum(s["process_start_s"] + s["worker_imports_s"] for s in segments)
    return {
        "device": device,
        "score_threshold": 0.0,
        "segments": len(segments),
        "frames": frames_n,
        "objects": objects,
        "wall_s": r(wall),
        "wall_per_segment_s": {
            "mean": r(statistics.mean(s["wall_s"] for s in segments)),
            "min": r(min(s["wall_s"] for s in segments)),
            "max": r(max(s["wall_s"] for s in segments)),
        },
        "phase_sums_s": {
            "process_start": r(sum(s["process_start_s"] for s in segments)),
            "worker_imports": r(sum(s["worker_imports_s"] for s in segments)),
            "read_bundle": r(total("read_bundle")),
            "load_models": r(load_s),
            "detect": r(detect_s),
            "embed": r(embed_s),
            "write_embeddings": r(total("write_embeddings")),
        },
        "model_load_per_segment_s": r(load_s / len(segments)),
        # Process start + imports (python, vidsearch, torch): paid again by every segment's process.
        "startup_per_segment_s": r(overhead / len(segments)),
        "fixed_cost_share": r((load_s + overhead) / wall, 3) if wall else None,
        "detect_frames_per_s": rate(frames_n, detect_s),
        "detections_per_s": rate(objects, detect_s),
        "embed_crops_per_s": rate(objects, embed_s),
        "per_segment": segments,
    }


# --------------------------------------------------------------------------------------------------
# End to end: one dag.test() run of video_ingest
# --------------------------------------------------------------------------------------------------


def run_e2e(stack: Stack, video: Path, video_id: str, segments: int) -> dict[str, Any]:
    """Migrate the Airflow DB, then run `dag.test()` in a fresh process (see `e2e_child`)."""
    out: dict[str, Any] = {}
    say("end to end: airflow db migrate")
    _, seconds = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    out["airflow_db_migrate_s"] = r(seconds)

    log_path = stack.base / "dag_test.log"
    result_path = stack.base / "e2e.json"
    say(f"end to end: dag.test() of {DAG_ID} in a fresh process (task logs: {log_path})")
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--e2e-child",
        str(result_path),
        "--video",
        str(video),
        "--video-id",
        video_id,
        "--segments",
        str(segments),
    ]
    with open(log_path, "wb") as log_file:
        proc, seconds = timed(
            lambda: subprocess.run(argv, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy(), cwd=ROOT)
        )
    out["process_wall_s"] = r(seconds)
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"the dag.test() process failed (exit {proc.returncode}):\n" + "\n".join(tail))
    out.update(json.loads(result_path.read_text()))
    if out["state"] != "success":
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        out["log_tail"] = tail
        say(f"end-to-end run ended {out['state']}; last log lines:\n" + "\n".join(tail))
    return out


def e2e_child(result_path: Path, video: Path, video_id: str, segments: int) -> int:
    """The `dag.test()` run, in its own process so it pays its own imports and set-up, as a task
    process would, and shares nothing with the stage measurements. Writes its findings as JSON."""
    quiet()
    out: dict[str, Any] = {}
    conf = {
        "source": str(video),
        "collection": E2E_COLLECTION,
        "segment_seconds": SEGMENT_SECONDS,
        "sample_fps": E2E_SAMPLE_FPS,
        "score_threshold": 0.0,
    }
    out["conf"] = conf

    def parse_dag():
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(ROOT / "dags")).dags[DAG_ID]

    dag, seconds = timed(parse_dag)
    out["import_and_parse_s"] = r(seconds)
    quiet()

    dagrun, seconds = timed(lambda: dag.test(run_conf=conf))
    out["wall_s"] = r(seconds)
    out["state"] = str(getattr(dagrun.state, "value", dagrun.state))

    tis = []
    for ti in dagrun.get_task_instances():
        duration = ti.duration
        if duration is None and ti.start_date and ti.end_date:
            duration = (ti.end_date - ti.start_date).total_seconds()
        tis.append(
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": str(getattr(ti.state, "value", ti.state)),
                "try_number": ti.try_number,
                "duration_s": r(duration or 0.0),
                "start": ti.start_date.isoformat() if ti.start_date else None,
                "end": ti.end_date.isoformat() if ti.end_date else None,
            }
        )
    tis.sort(key=lambda t: (t["start"] or "", t["task_id"], t["map_index"]))
    out["task_instances"] = tis
    by_task: dict[str, float] = {}
    for ti in tis:
        stage = ti["task_id"].split(".")[-1]
        by_task[stage] = r(by_task.get(stage, 0.0) + ti["duration_s"])
    out["ti_sum_by_stage_s"] = by_task
    out["ti_sum_s"] = r(sum(by_task.values()))
    starts = [t["start"] for t in tis if t["start"]]
    ends = [t["end"] for t in tis if t["end"]]
    if starts and ends:
        first = dt.datetime.fromisoformat(min(starts))
        last = dt.datetime.fromisoformat(max(ends))
        out["first_start_to_last_end_s"] = r((last - first).total_seconds())
    out["worker_timings"] = e2e_worker_timings(video_id, segments)
    result_path.write_text(json.dumps(out, indent=1))
    return 0


def e2e_worker_timings(video_id: str, segments: int) -> list[dict[str, Any]]:
    """The worker's own phase timings in the DAG run: its result.json per segment, in the DAG's storage."""
    from vidsearch.models import launcher
    from vidsearch.stores import storage

    rows = []
    for index in range(segments):
        uri = storage.join(os.environ["VIDSEARCH_STORAGE_ROOT"], "videos", video_id, "objects", f"seg{index:04d}")
        try:
            result, _ = launcher.read_result(uri)
        except Exception as exc:  # noqa: BLE001 - a report detail, not a benchmark failure
            log.warning("no worker result for segment %d of the DAG run: %s", index, exc)
            continue
        rows.append(
            {
                "segment": index,
                "frames": result.frame_count,
                "objects": len(result.objects),
                "timings_s": result.timings_s,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def write_markdown(report: dict[str, Any], path: Path) -> None:
    s = report["stages"]
    m = report["machine"]
    v = report["video"]
    man = s["manifest"]
    dec = s["decode_only"]
    de = s["detect_embed"]
    idx = s["index"]
    ex = s["extract_frames"]
    ss = s["stage_sum_s"]

    def gates(stage: dict[str, Any]) -> str:
        return fmt(stage.get("quality_gates_s"), 2) if stage.get("quality_gates_s") else ""

    lines = [
        "# Stage benchmark",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` in {fmt(report['runtime_s'])} s.",
        "",
        f"Machine: {m['cpu_count']} CPU ({m['cpu_model']}), {fmt(m['memory_gib'])} GiB, "
        f"{'CUDA' if m['cuda_available'] else 'no GPU'}; torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, Airflow {m['airflow']}, {m['ffmpeg']}; "
        f"commit `{(m['git_commit'] or '?')[:10]}`{' (with local changes)' if m['git_dirty'] else ''}.",
        "",
        load_note(m),
        f"Video: generated by `synth.make_video`, {man['duration_s']:.2f} s, {man['width']}x{man['height']} "
        f"@ {man['frame_rate']:.3f} fps ({man['frame_count']} frames), {man['video_codec']} + {man['audio_codec']}, "
        f"keyframe every {GOP_FRAMES} frames, {v['size_bytes'] / 1e6:.1f} MB. "
        f"Segments of {SEGMENT_SECONDS:g} s: {s['split']['segments']}. "
        "Models: tiny random DETR and CLIP (score_threshold 0.0 keeps every box; up to 8 per frame).",
        "",
        "## Stages",
        "",
        "Each stage run through the function its DAG task calls, one segment after another, in one "
        "process (detect+embed: one worker process per segment, as the DAG runs it), at the DAG's "
        f'{E2E_SAMPLE_FPS:g} frame/s. "gates" is the part of a stage\'s time spent in its data-quality '
        "gates (Great Expectations checks and the facts they look at, such as decoding the sampled "
        f"frames again). Setting up Great Expectations took {fmt(s.get('gx_context_s'), 2)} s once in this "
        "process, not counted below; every Airflow task process pays it once.",
        "",
        "| stage | time (s) | gates (s) | throughput | notes |",
        "|---|---:|---:|---|---|",
        f"| probe | {fmt(s['probe']['wall_s'], 2)} | {gates(s['probe'])} | | copy, SHA-256, ffprobe, "
        "decode check, catalog rows |",
        f"| split | {fmt(s['split']['wall_s'], 2)} | {gates(s['split'])} | | stream copy into "
        f"{s['split']['segments']} segment files |",
        f"| extract_frames | {fmt(ex['wall_s'], 2)} | {gates(ex)} | "
        f"{fmt(rate(ex['frames'], ex['wall_s']))} frames/s, {fmt(rate(man['duration_s'], ex['wall_s']))} video s/s | "
        f"{ex['frames']} frames sampled at {ex['sample_fps']:g} fps |",
        f"| detect_embed | {fmt(de['wall_s'], 2)} | | {fmt(de['detect_frames_per_s'])} frames/s and "
        f"{fmt(de['detections_per_s'])} detections/s detect, {fmt(de['embed_crops_per_s'])} crops/s embed | "
        f"{de['frames']} frames, {de['objects']} objects, on {de['device']}; "
        f"{fmt(de['wall_per_segment_s']['mean'], 2)} s per segment, a worker process each |",
        *warm_row(s.get("detect_embed_warm"), de),
        f"| index | {fmt(idx['wall_s'], 2)} | {gates(idx)} | {fmt(idx['objects_per_s'])} objects/s "
        f"({fmt(idx['objects_per_s_writes_only'])} without the gates) | {idx['objects']} objects into "
        "Weaviate and Postgres |",
        f"| finalize | {fmt(s['finalize']['wall_s'], 2)} | {gates(s['finalize'])} | | both stores "
        "compared object for object |",
        f"| **sum of stages** | **{fmt(ss['total'], 2)}** | **{fmt(s['quality_gates_sum_s'], 2)}** | | |",
        "",
        "### Frame sampling next to decode only",
        "",
        "Sampling alone (`frames.run_frames` per segment: one decode of the segment with a `select` "
        "filter, RGB, JPEG, bundle upload; no gate; best of "
        f"{SAMPLING_RUNS} passes), against ffmpeg decoding the whole file to nowhere "
        f"(`{dec['command']}`, best of {len(dec['runs_s'])}).",
        "",
        "| | time (s) | frames/s | video s/s | x decode-only time |",
        "|---|---:|---:|---:|---:|",
        f"| ffmpeg decode only | {fmt(dec['best_s'], 2)} | {fmt(dec['frames_per_s'])} decoded | "
        f"{fmt(dec['video_s_per_s'])} | 1.0 |",
    ]
    for key, fr in s["sampling"].items():
        lines.append(
            f"| sampling at {key} fps | {fmt(fr['wall_s'], 2)} | {fmt(fr['sampled_frames_per_s'])} sampled | "
            f"{fmt(fr['video_s_per_s'])} | {fmt(fr['x_decode_only'])} |"
        )
    ph = de["phase_sums_s"]
    lines += [
        "",
        "### Detect + embed",
        "",
        "Per phase, summed over segments (s): "
        + ", ".join(f"{k.replace('_', ' ')} {fmt(val, 2)}" for k, val in ph.items())
        + f". Per segment: process start and imports {fmt(de['startup_per_segment_s'], 2)} s, model load "
        f"{fmt(de['model_load_per_segment_s'], 2)} s; these fixed costs are "
        f"{fmt(100 * (de['fixed_cost_share'] or 0))}% of the worker's wall time. The tiny models' weights "
        "are a few kilobytes: their load time is almost all transformers importing and initialising "
        "the model and processor classes.",
        "",
    ]
    e2e = report.get("end_to_end")
    if e2e:
        by = e2e["ti_sum_by_stage_s"]
        lines += [
            "## End to end (`dag.test()`)",
            "",
            f"One run of `{DAG_ID}` (segment_seconds {SEGMENT_SECONDS:g}, sample_fps {E2E_SAMPLE_FPS:g}, "
            f"score_threshold 0.0) in a fresh process: **{e2e['state']}**, {len(e2e['task_instances'])} "
            f"task instances. Importing Airflow and parsing the DAG first took {fmt(e2e.get('import_and_parse_s'), 2)} s "
            "(not counted).",
            "",
            "| | time (s) |",
            "|---|---:|",
            f"| wall time of `dag.test()` | {fmt(e2e['wall_s'], 2)} |",
            f"| first task start to last task end | {fmt(e2e.get('first_start_to_last_end_s'), 2)} |",
            f"| sum of task instance durations (Airflow start/end) | {fmt(e2e['ti_sum_s'], 2)} |",
            f"| sum of stage times measured above | {fmt(ss['total'], 2)} |",
            "",
            "| stage | stage time (s) | task instances (s) | difference (s) |",
            "|---|---:|---:|---:|",
        ]
        for stage in STAGE_ORDER:
            a, b = ss.get(stage), by.get(stage)
            diff = b - a if a is not None and b is not None else None
            lines.append(f"| {stage} | {fmt(a, 2)} | {fmt(b, 2)} | {'+' if (diff or 0) >= 0 else ''}{fmt(diff, 2)} |")
        gap = e2e["wall_s"] - e2e["ti_sum_s"]
        first_extra = (by.get("probe") or 0.0) - (ss.get("probe") or 0.0)
        lines += [
            "",
            "Reading it:",
            "",
            f"* `dag.test()` runs every task instance one after another in one process (the mapped "
            f"segments do not overlap), so its wall time is the sum of the task instances plus "
            f"{fmt(gap, 2)} s of Airflow's own work between and around them: syncing the DAG bundle into "
            "the metadata DB, scheduling each task instance, rendering templates, recording states.",
            f"* The task instances take {fmt(e2e['ti_sum_s'] - ss['total'], 2)} s more than the stages run "
            f"directly. The first task pays one-time costs: `probe` takes {fmt(first_extra, 2)} s longer as "
            "a task instance, for `dag.test()` starting its in-process Execution API, the first import of "
            "the Airflow provider hooks (Postgres, Weaviate) and of the task code, and setting up Great "
            f"Expectations ({fmt(s.get('gx_context_s'), 2)} s measured above). Every other task adds less: "
            "XCom push and pull, a fresh connection to the catalog and to Weaviate per task.",
            "* Inside the stages, each `detect_embed` task starts a new worker process that imports torch "
            f"and transformers and loads both models again: "
            f"{fmt(de['startup_per_segment_s'] + de['model_load_per_segment_s'], 2)} s per segment here, "
            "before the first frame is processed. It is paid in the DAG as in the direct run, and it is "
            "the largest fixed cost in the pipeline." + worker_comparison(de, e2e, by),
            "* A real deployment (scheduler + executor) runs the mapped segments in parallel, as executor "
            "slots or one GPU pod per segment, so its wall time can fall below the sum of stages: towards "
            "probe + split + the slowest segment + finalize when there are cores or GPUs for every "
            "segment. It also adds the scheduler's latency between dependent tasks, which `dag.test()` "
            "does not have, and each task runs in its own process, so every task that runs a gate pays "
            "the Great Expectations set-up again.",
            "",
        ]
    lines += [
        "## Notes",
        "",
        "* Throughputs with tiny random models measure the pipeline's plumbing, not real model cost: "
        "real DETR-ResNet-50 and CLIP ViT-B/32 are orders of magnitude slower per frame and crop, so "
        "in production detect+embed dominates and its fixed costs matter less.",
        "* `video s/s` is seconds of source video processed per second of wall time (realtime factor).",
        "* The full numbers, per segment, per gate function and per task instance, are in `stages.json`.",
        "",
    ]
    path.write_text("\n".join(lines))


def warm_row(warm: dict[str, Any] | None, de: dict[str, Any]) -> list[str]:
    """The table row of the warm-worker run (none in reports from before it existed)."""
    if not warm:
        return []
    return [
        f"| detect_embed, warm worker | {fmt(warm['wall_s'], 2)} | | {fmt(rate(de['frames'], warm['wall_s']))} "
        f"frames/s overall | the same {warm['segments']} jobs sent to one warm worker (models loaded "
        f"{warm['model_loads']} times in all): first segment {fmt(warm['first_segment_s'], 2)} s, then "
        f"{fmt(warm['later_segment_mean_s'], 2)} s per segment |"
    ]


def worker_comparison(de: dict[str, Any], e2e: dict[str, Any], by: dict[str, float]) -> str:
    """A sentence comparing the worker's own clock in the DAG run with the direct run."""
    rows = e2e.get("worker_timings") or []
    if not rows or "detect_embed" not in by:
        return ""
    dag_total = sum(row["timings_s"].get("total", 0.0) for row in rows)
    dag_load = sum(
        row["timings_s"].get("load_detector", 0.0) + row["timings_s"].get("load_embedder", 0.0) for row in rows
    )
    direct_total = sum(row["timings_s"].get("total", 0.0) for row in de["per_segment"])
    outside = by["detect_embed"] - dag_total
    return (
        f" The workers' own clocks (result.json `timings_s.total`) add up to {fmt(dag_total, 2)} s in the "
        f"DAG run ({fmt(dag_load, 2)} s of it model load) against {fmt(direct_total, 2)} s in the direct "
        f"run; the other {fmt(outside, 2)} s of the `detect_embed` task instances "
        f"({fmt(outside / len(rows), 2)} s per segment) is the worker process starting and the task's "
        "own overhead."
    )


def write_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["stages"]
    e2e = report.get("end_to_end")
    ss = s["stage_sum_s"]
    stages = list(STAGE_ORDER)
    direct = [ss.get(k, 0.0) for k in stages]
    airflow = [e2e["ti_sum_by_stage_s"].get(k, 0.0) for k in stages] if e2e else None

    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.35, 1]}, constrained_layout=True
    )
    ypos = list(range(len(stages)))[::-1]
    height = 0.38 if airflow else 0.6
    bars = ax1.barh(
        [y + (height / 2 if airflow else 0) for y in ypos], direct, height, label="stage, run directly", color="#1e88e5"
    )
    ax1.bar_label(bars, fmt="%.1f", padding=3, fontsize=8)
    gate_s = [s[k].get("quality_gates_s", 0.0) for k in stages]
    if any(gate_s):
        ax1.barh(
            [y + (height / 2 if airflow else 0) for y in ypos],
            gate_s,
            height,
            color="#0d47a1",
            edgecolor="#90caf9",
            hatch="///",
            linewidth=0,
            label="of which quality gates",
        )
    if airflow:
        bars = ax1.barh(
            [y - height / 2 for y in ypos], airflow, height, label="task instances in dag.test()", color="#fb8c00"
        )
        ax1.bar_label(bars, fmt="%.1f", padding=3, fontsize=8)
    ax1.set_yticks(ypos, stages)
    ax1.set_xlabel("seconds (summed over segments)")
    title = f"Per-stage time, {s['manifest']['duration_s']:.0f} s 720p video, tiny models"
    if e2e:
        title += (
            f"\nsum of stages {ss['total']:.1f} s; dag.test() wall {e2e['wall_s']:.1f} s "
            f"(task instances {e2e['ti_sum_s']:.1f} s)"
        )
    ax1.set_title(title, fontsize=10)
    ax1.legend(loc="lower right", fontsize=8)
    ax1.margins(x=0.15)
    ax1.grid(axis="x", alpha=0.3)

    de = s["detect_embed"]["per_segment"]
    parts = [
        ("process start + imports", lambda d: d["process_start_s"] + d["worker_imports_s"], "#9e9e9e"),
        ("model load", lambda d: d["model_load_s"], "#e53935"),
        ("read bundle", lambda d: d["timings_s"].get("read_bundle", 0.0), "#8e24aa"),
        ("detect", lambda d: d["timings_s"].get("detect", 0.0), "#43a047"),
        ("embed", lambda d: d["timings_s"].get("embed", 0.0), "#fdd835"),
        ("write", lambda d: d["timings_s"].get("write_embeddings", 0.0), "#00897b"),
    ]
    labels = [f"seg{d['segment']}" for d in de]
    left = [0.0] * len(de)
    for name, get, colour in parts:
        widths = [get(d) for d in de]
        ax2.barh(labels[::-1], widths[::-1], left=left[::-1], color=colour, label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax2.set_xlabel("seconds")
    ax2.set_title("detect_embed worker, per segment: where the time goes", fontsize=10)
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8)
    ax2.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="Time each pipeline stage (writes JSON, Markdown, PNG).")
    parser.add_argument("--duration", type=float, default=60.0, help="video length in seconds (default 60)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reports", help="report folder")
    parser.add_argument("--no-e2e", action="store_true", help="skip the dag.test() run")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (servers' data, logs)")
    parser.add_argument("--e2e-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--video-id", help=argparse.SUPPRESS)
    parser.add_argument("--segments", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.e2e_child:
        return e2e_child(args.e2e_child, args.video, args.video_id, args.segments)
    if args.duration <= 0:
        parser.error("--duration must be positive")

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet()
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    model_cache = cache_dir() / "bench-models"
    base = Path(tempfile.mkdtemp(prefix="vidsearch-bench-"))
    stack = Stack(base, model_cache)
    report: dict[str, Any] = {"schema": SCHEMA_VERSION, "generated_at": started_at.isoformat(timespec="seconds")}
    argv = ["bench/stages.py", *sys.argv[1:]]
    report["command"] = ".venv/bin/python " + " ".join(argv)
    try:
        say(f"starting Postgres and Weaviate under {base}")
        _, seconds = timed(stack.start)
        report["stack_start_s"] = r(seconds)
        report["machine"] = machine_facts()
        report["machine"]["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
        say(f"video: {args.duration:g} s {WIDTH}x{HEIGHT} @ {FPS}")
        video, info = bench_video(args.duration)
        report["video"] = info
        report["config"] = {
            "segment_seconds": SEGMENT_SECONDS,
            "sample_rates": list(SAMPLE_RATES),
            "dag_sample_fps": E2E_SAMPLE_FPS,
            "score_threshold": 0.0,
            "batch_size": 16,
            "tiny_models": True,
            "model_cache": str(model_cache),
        }
        report["stages"] = run_stages(stack, video, args.duration)
        if not args.no_e2e:
            report["end_to_end"] = run_e2e(
                stack, video, report["stages"]["manifest"]["video_id"], report["stages"]["split"]["segments"]
            )
    finally:
        stack.stop()
        if args.keep_temp:
            say(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    report["runtime_s"] = r(time.perf_counter() - started, 1)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "stages.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "stages.md")
    write_chart(report, out / "stages.png")
    say(f"wrote {out / 'stages.json'}, stages.md, stages.png in {report['runtime_s']:.0f} s")
    print((out / "stages.md").read_text())
    e2e = report.get("end_to_end")
    return 0 if not e2e or e2e["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
