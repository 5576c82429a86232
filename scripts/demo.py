"""`make demo`: start the embedded stack, ingest a sample video through a real DAG run, print a summary.

Steps: decide between real and tiny models (real weights are used when they can be loaded; otherwise
the demo says plainly that it runs on tiny random models), start the stack (`python -m devstack up`),
generate a sample video, trigger `video_ingest` through the Airflow REST API, follow the run until it
ends and print segments, frames and objects with the UI address and login.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

from devstack import StackConfig  # noqa: E402
from devstack.airflow import admin_password_file, api_url  # noqa: E402
from devstack.client import TERMINAL_RUN_STATES, AirflowClient  # noqa: E402
from vidsearch.errors import ModelUnavailableError  # noqa: E402
from vidsearch.media import synth  # noqa: E402
from vidsearch.models import modelstore  # noqa: E402
from vidsearch.params import DEFAULT_ASR_MODEL, DEFAULT_DETECTOR, DEFAULT_EMBEDDER  # noqa: E402

DAG_ID = "video_ingest"


def choose_tiny_models() -> bool:
    """Tiny models when asked for (VIDSEARCH_TINY_MODELS=1) or when real weights cannot be had."""
    setting = os.environ.get("VIDSEARCH_TINY_MODELS", "auto").strip().lower()
    if setting in ("1", "true", "yes"):
        return True
    if setting in ("0", "false", "no"):
        return False
    try:
        for model, kind in ((DEFAULT_DETECTOR, "detector"), (DEFAULT_EMBEDDER, "embedder"), (DEFAULT_ASR_MODEL, "asr")):
            modelstore.resolve_model(model, kind, tiny=False, cache_dir=modelstore.default_cache_dir())
    except ModelUnavailableError as exc:
        print(f"[demo] real model weights are not available here: {exc}")
        return True
    return False


def follow(api: AirflowClient, run_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        run = api.get(f"dags/{DAG_ID}/dagRuns/{run_id}")
        tis = api.task_instances(DAG_ID, run_id)
        counts: dict[str, int] = {}
        for ti in tis:
            counts[ti["state"] or "none"] = counts.get(ti["state"] or "none", 0) + 1
        line = f"[demo] run {run['state']}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if line != last:
            print(line, flush=True)
            last = line
        if run["state"] in TERMINAL_RUN_STATES:
            for ti in tis:
                if ti["state"] == "failed":
                    print(f"[demo]   failed: {ti['task_id']} {ti.get('rendered_map_index') or ''}")
            return run["state"]
        time.sleep(3)
    raise RuntimeError(f"run {run_id} did not finish within {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", help="video to ingest (default: a generated sample)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    tiny = choose_tiny_models()
    os.environ["VIDSEARCH_TINY_MODELS"] = "1" if tiny else "0"
    if tiny:
        print(
            "[demo] *** running on TINY RANDOM MODELS: the pipeline is real, detections and transcripts are not "
            "(a random Whisper writes random words) ***"
        )
    subprocess.run([sys.executable, "-m", "devstack", "up"], check=True, cwd=ROOT, env=os.environ.copy())

    cfg = StackConfig.from_env()
    source = args.source
    if not source:
        sample = cfg.data_dir / "samples" / "demo.mp4"
        if not sample.exists():
            sample.parent.mkdir(parents=True, exist_ok=True)
            synth.make_video(
                sample, duration_s=30.0, width=640, height=360, fps="30000/1001", audio=True, gop_frames=60
            )
        source = str(sample)
        print(f"[demo] sample video: {sample}")

    api = AirflowClient.for_stack(cfg)
    api.wait_for_dag(DAG_ID)
    conf = {"source": source, "collection": "demo", "sample_fps": 1}
    if tiny:
        conf["score_threshold"] = 0.0  # random weights score every class low
    run_id = api.trigger(DAG_ID, conf)
    print(f"[demo] triggered {DAG_ID} run {run_id}")
    state = follow(api, run_id, args.timeout)

    print()
    print(f"[demo] run {run_id}: {state}")
    if state == "success":
        summary = api.xcom(DAG_ID, run_id, "finalize")
        print(
            f"[demo] video {summary['video_id']} in collection '{summary['collection']}': "
            f"{summary['segments']} segments, {summary['frames']} frames, {summary['objects']} objects "
            f"(Weaviate holds {summary['weaviate_objects']}); audio {summary.get('audio', {})}, "
            f"{summary.get('transcript_chunks', 0)} transcript chunks"
        )
    print(f"[demo] Airflow UI: {api_url(cfg)}  (user admin, password in {admin_password_file(cfg)})")
    print(f"[demo] the run: {api_url(cfg)}/dags/{DAG_ID}/runs/{run_id}")
    print(
        f'[demo] search and label the objects: {api_url(cfg)}/vidsearch/  ("Object search" in the Airflow navigation)'
    )
    print("[demo] stop everything with `make down`")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
