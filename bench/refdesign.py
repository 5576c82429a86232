"""The reference design, re-implemented faithfully, to compare the Airflow pipeline against.

    .venv/bin/python bench/refdesign.py --video V.mp4 --start-weaviate            # standalone
    .venv/bin/python bench/refdesign.py --video V.mp4 --weaviate-http 8081 --weaviate-grpc 50051 \
        --collection refdesign_demo --json out.json                              # against a running Weaviate

The design being replaced (README: "a hand-made microservice pipeline: splitter -> frame extractor
-> indexer over Kafka"), with its per-item habits kept as they were, because they are what is being
measured:

* **splitter**: `ffmpeg -c copy -f segment` cuts the video into 10 s segment files (stream copy, cuts
  at keyframes) in "object storage" (a local folder here) and publishes one message per segment on a
  queue (a `multiprocessing` queue stands in for Kafka);
* **N workers** (N = cores by default), each a long-lived process that loads its models once at start
  (as a long-lived microservice would) and then, per segment message:
  * **frame extractor**: `ffmpeg -vf fps=<sample fps>` writes the segment's sampled frames as PNG files;
  * **detector**: each PNG is loaded and sent through the DETR model alone (batch 1: one
    `AutoImageProcessor` + `AutoModelForObjectDetection` call per frame), then
    `post_process_object_detection` with the same score threshold as the pipeline;
  * **crops**: every detection is cut out and saved as its own PNG file, then loaded back (the
    extractor and the indexer only shared files);
  * **embedder**: each crop PNG goes through CLIP alone (batch 1: one processor +
    `CLIPModel.get_image_features` call per crop), L2-normalised;
  * **indexer**: the segment's vectors are written to Weaviate in one batch (`insert_many`, which
    overwrites existing ids: an upsert), ids uuid5 of video/segment/frame/detection (deterministic).
* Boxes are clipped to the frame and boxes under 1 px² are dropped (a crop needs pixels), as the
  pipeline's detector does, so the two count the same objects.

Timing: the worker processes are started and their models loaded first ("services up", reported as
`startup_s`); `wall_s` runs from the splitter's start until the last segment's vectors are written,
`first_object_s` until the first segment's are. CPU: machine-wide from /proc/stat over the wall time,
and this process tree's own user+system seconds. Each worker reports per-phase seconds and its peak
RSS. The JSON result goes to `--json` (and a summary to stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

NAMESPACE = uuid.UUID("6f0b3a52-4a43-4c1e-9b8e-2f1d0c6a7e11")
MIN_BOX_AREA_PX2 = 1.0
WEAVIATE_BATCH = 500


# --------------------------------------------------------------------------------------------------
# Machine CPU (shared with e2e.py, which imports these)
# --------------------------------------------------------------------------------------------------


def proc_stat_busy_s() -> float:
    """Machine-wide busy CPU seconds since boot: user+nice+system+irq+softirq of /proc/stat's cpu line."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """User+system seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --------------------------------------------------------------------------------------------------
# Splitter
# --------------------------------------------------------------------------------------------------


def ffmpeg_bin() -> str:
    return os.environ.get("VIDSEARCH_FFMPEG") or shutil.which("ffmpeg") or "ffmpeg"


def split(video: Path, out_dir: Path, segment_seconds: float) -> list[dict[str, Any]]:
    """Stream-copy `video` into segment files; returns [{index, path, start_s, end_s}]."""
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = out_dir / "segments.csv"
    subprocess.run(
        [
            ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video),
            "-map", "0", "-c", "copy", "-f", "segment", "-segment_time", f"{segment_seconds:g}",
            "-reset_timestamps", "1", "-segment_list", str(listing), "-segment_list_type", "csv",
            "-y", str(out_dir / "seg%04d.mp4"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    segments = []
    for index, line in enumerate(listing.read_text().splitlines()):
        name, start, end = line.rsplit(",", 2)
        segments.append({"index": index, "path": str(out_dir / name), "start_s": float(start), "end_s": float(end)})
    return segments


# --------------------------------------------------------------------------------------------------
# Worker (one long-lived process per "service replica")
# --------------------------------------------------------------------------------------------------


class _Models:
    def __init__(self, detector_dir: str, embedder_dir: str):
        import torch
        from transformers import AutoImageProcessor, AutoModelForObjectDetection, AutoProcessor, CLIPModel

        self.torch = torch
        self.det_processor = AutoImageProcessor.from_pretrained(detector_dir)
        self.detector = AutoModelForObjectDetection.from_pretrained(detector_dir).eval()
        self.clip_processor = AutoProcessor.from_pretrained(embedder_dir)
        self.clip = CLIPModel.from_pretrained(embedder_dir).eval()

    def detect(self, image: Any, threshold: float) -> list[dict[str, Any]]:
        """One batch-1 detector call; boxes clipped to the frame, empty ones dropped."""
        torch = self.torch
        width, height = image.size
        with torch.inference_mode():
            inputs = self.det_processor(images=image, return_tensors="pt")
            outputs = self.detector(**inputs)
            result = self.det_processor.post_process_object_detection(
                outputs, threshold=threshold, target_sizes=[(height, width)]
            )[0]
        found = []
        labels = self.detector.config.id2label or {}
        for score, label, box in zip(result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()):
            x0, x1 = sorted((min(max(box[0], 0.0), width), min(max(box[2], 0.0), width)))
            y0, y1 = sorted((min(max(box[1], 0.0), height), min(max(box[3], 0.0), height)))
            if (x1 - x0) * (y1 - y0) < MIN_BOX_AREA_PX2:
                continue
            # The pixels to crop: corners rounded, at least 1x1 px (as vidsearch.models.embed.crop_box).
            ix0, iy0 = min(max(int(round(x0)), 0), width - 1), min(max(int(round(y0)), 0), height - 1)
            crop = (ix0, iy0, min(max(int(round(x1)), ix0 + 1), width), min(max(int(round(y1)), iy0 + 1), height))
            found.append(
                {
                    "box": [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)],
                    "crop": crop,
                    "score": float(score),
                    "label": str(labels.get(label, label)),
                }
            )
        return found

    def embed(self, crop: Any) -> list[float]:
        """One batch-1 CLIP image-embedding call, L2-normalised."""
        torch = self.torch
        with torch.inference_mode():
            inputs = self.clip_processor(images=crop, return_tensors="pt")
            output = self.clip.get_image_features(pixel_values=inputs["pixel_values"])
            features = output if torch.is_tensor(output) else output.pooler_output  # transformers 4 / 5
            features = features / features.norm(dim=-1, keepdim=True)
        return features[0].tolist()


def _collection(client: Any, name: str) -> Any:
    return client.collections.use(name)


def worker_main(worker_id: int, cfg: dict[str, Any], tasks: Any, results: Any) -> None:
    """Load the models once, then take segment messages until a None arrives."""
    started = time.time()
    try:
        import torch

        torch.set_num_threads(cfg["threads"])
        import weaviate
        from PIL import Image
        from weaviate.classes.data import DataObject

        models = _Models(cfg["detector"], cfg["embedder"])
        client = weaviate.connect_to_local(host="127.0.0.1", port=cfg["weaviate_http"], grpc_port=cfg["weaviate_grpc"])
        coll = _collection(client, cfg["collection"])
    except Exception as exc:  # noqa: BLE001 - reported to the main process, which fails the run
        results.put({"type": "error", "worker": worker_id, "error": f"{type(exc).__name__}: {exc}"})
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.put({"type": "ready", "worker": worker_id, "startup_s": time.time() - started,
                 "cpu_s": usage.ru_utime + usage.ru_stime})  # fmt: skip

    work = Path(cfg["work_dir"])
    while True:
        msg = tasks.get()
        if msg is None:
            break
        try:
            results.put(_process_segment(msg, cfg, models, coll, work, Image, DataObject, worker_id))
        except Exception as exc:  # noqa: BLE001
            results.put(
                {"type": "error", "worker": worker_id, "segment": msg["index"], "error": f"{type(exc).__name__}: {exc}"}
            )
    client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    results.put({
        "type": "exit", "worker": worker_id,
        "max_rss_bytes": usage.ru_maxrss * 1024, "children_max_rss_bytes": children.ru_maxrss * 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime, "children_cpu_s": children.ru_utime + children.ru_stime,
    })  # fmt: skip


def _process_segment(
    msg: dict[str, Any],
    cfg: dict[str, Any],
    models: _Models,
    coll: Any,
    work: Path,
    Image: Any,  # noqa: N803 - the classes, passed in
    DataObject: Any,  # noqa: N803
    worker_id: int,
) -> dict[str, Any]:
    t: dict[str, float] = {
        k: 0.0 for k in ("extract", "load_frames", "detect", "save_crops", "load_crops", "embed", "upsert")
    }
    seg = msg["index"]
    frames_dir = work / "frames" / f"seg{seg:04d}"
    crops_dir = work / "crops" / f"seg{seg:04d}"
    frames_dir.mkdir(parents=True, exist_ok=True)
    crops_dir.mkdir(parents=True, exist_ok=True)

    # Frame extractor: every sampled frame as a PNG file.
    mark = time.perf_counter()
    subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", msg["path"], "-map", "0:v:0",
         "-vf", f"fps={cfg['sample_fps']:g}", "-start_number", "0", "-y", str(frames_dir / "%06d.png")],
        check=True, capture_output=True,
    )  # fmt: skip
    t["extract"] += time.perf_counter() - mark
    frame_files = sorted(frames_dir.glob("*.png"))

    # Detector: one call per frame; crops written as PNG files.
    crops: list[tuple[Path, int, int, dict[str, Any]]] = []
    for frame_index, path in enumerate(frame_files):
        mark = time.perf_counter()
        image = Image.open(path).convert("RGB")
        t["load_frames"] += time.perf_counter() - mark
        mark = time.perf_counter()
        detections = models.detect(image, cfg["score_threshold"])
        t["detect"] += time.perf_counter() - mark
        mark = time.perf_counter()
        for k, det in enumerate(detections):
            crop_path = crops_dir / f"{frame_index:06d}_{k:02d}.png"
            image.crop(det["crop"]).save(crop_path)
            crops.append((crop_path, frame_index, k, det))
        t["save_crops"] += time.perf_counter() - mark

    # Embedder: each crop read back from its file, one call per crop.
    objects = []
    for crop_path, frame_index, k, det in crops:
        mark = time.perf_counter()
        crop = Image.open(crop_path).convert("RGB")
        t["load_crops"] += time.perf_counter() - mark
        mark = time.perf_counter()
        vector = models.embed(crop)
        t["embed"] += time.perf_counter() - mark
        pts_s = msg["start_s"] + frame_index / cfg["sample_fps"]
        objects.append(
            DataObject(
                uuid=uuid.uuid5(NAMESPACE, f"{cfg['video_id']}/{seg}/{frame_index}/{k}"),
                properties={
                    "video_id": cfg["video_id"], "segment_index": seg, "frame_index": frame_index,
                    "pts_s": pts_s, "box": det["box"], "label": det["label"], "score": det["score"],
                },
                vector=vector,
            )
        )  # fmt: skip

    # Indexer: the segment's vectors in batches.
    mark = time.perf_counter()
    for start in range(0, len(objects), WEAVIATE_BATCH):
        result = coll.data.insert_many(objects[start : start + WEAVIATE_BATCH])
        if result.errors:
            first = next(iter(result.errors.values()))
            raise RuntimeError(f"{len(result.errors)} objects failed to import: {getattr(first, 'message', first)}")
    t["upsert"] += time.perf_counter() - mark
    return {
        "type": "done", "worker": worker_id, "segment": seg, "frames": len(frame_files), "objects": len(objects),
        "finished_at": time.time(), "timings_s": t,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------


def ensure_collection(http_port: int, grpc_port: int, name: str) -> None:
    """A fresh collection: self-provided vectors, HNSW, cosine (as the pipeline's)."""
    import weaviate
    from weaviate.classes.config import Configure, DataType, Property, VectorDistances

    with weaviate.connect_to_local(host="127.0.0.1", port=http_port, grpc_port=grpc_port) as client:
        if client.collections.exists(name):
            client.collections.delete(name)
        client.collections.create(
            name,
            properties=[
                Property(name="video_id", data_type=DataType.TEXT, skip_vectorization=True),
                Property(name="segment_index", data_type=DataType.INT),
                Property(name="frame_index", data_type=DataType.INT),
                Property(name="pts_s", data_type=DataType.NUMBER),
                Property(name="box", data_type=DataType.NUMBER_ARRAY),
                Property(name="label", data_type=DataType.TEXT, skip_vectorization=True),
                Property(name="score", data_type=DataType.NUMBER),
            ],
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
            ),
        )


def count_objects(http_port: int, grpc_port: int, name: str) -> int:
    import weaviate

    with weaviate.connect_to_local(host="127.0.0.1", port=http_port, grpc_port=grpc_port) as client:
        return int(client.collections.use(name).aggregate.over_all(total_count=True).total_count or 0)


def run(
    video: Path,
    *,
    detector: str,
    embedder: str,
    weaviate_http: int,
    weaviate_grpc: int,
    collection: str,
    workers: int,
    sample_fps: float = 1.0,
    segment_seconds: float = 10.0,
    score_threshold: float = 0.0,
    work_dir: Path | None = None,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Run the reference design on `video`; returns every figure (see the module docstring)."""
    cpus = os.cpu_count() or 1
    workers = max(1, workers)
    threads = max(1, cpus // workers)
    own_work = work_dir is None
    work = Path(work_dir or tempfile.mkdtemp(prefix="refdesign-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ensure_collection(weaviate_http, weaviate_grpc, collection)
    cfg = {
        "detector": detector, "embedder": embedder, "weaviate_http": weaviate_http, "weaviate_grpc": weaviate_grpc,
        "collection": collection, "sample_fps": sample_fps, "score_threshold": score_threshold,
        "work_dir": str(work), "threads": threads, "video_id": video.stem,
    }  # fmt: skip
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(i, cfg, tasks, results), daemon=True) for i in range(workers)]
    out: dict[str, Any] = {
        "system": "refdesign", "video": str(video), "workers": workers, "torch_threads_per_worker": threads,
        "sample_fps": sample_fps, "segment_seconds": segment_seconds, "score_threshold": score_threshold,
        "collection": collection,
    }  # fmt: skip
    deadline = time.monotonic() + timeout_s

    def next_result() -> dict[str, Any]:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"reference design did not finish within {timeout_s:.0f} s")
            try:
                return results.get(timeout=min(remaining, 5.0))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"worker process exited with {dead[0].exitcode}") from None

    try:
        # Services up: worker processes started, imports done, models loaded, Weaviate connected.
        started = time.perf_counter()
        for p in procs:
            p.start()
        ready = []
        while len(ready) < workers:
            msg = next_result()
            if msg["type"] == "error":
                raise RuntimeError(f"worker {msg['worker']} failed to start: {msg['error']}")
            ready.append(msg)
        out["startup_s"] = round(time.perf_counter() - started, 3)
        out["worker_startup_s"] = [round(m["startup_s"], 3) for m in sorted(ready, key=lambda m: m["worker"])]

        # The measured run: split, publish, process, index.
        cpu0, own0, t0, t0_unix = proc_stat_busy_s(), own_cpu_s(), time.perf_counter(), time.time()
        segments = split(video, work / "segments", segment_seconds)
        out["split_s"] = round(time.perf_counter() - t0, 3)
        for seg in segments:
            tasks.put(seg)
        done: list[dict[str, Any]] = []
        while len(done) < len(segments):
            msg = next_result()
            if msg["type"] == "error":
                raise RuntimeError(f"worker {msg['worker']} failed on segment {msg.get('segment')}: {msg['error']}")
            done.append(msg)
        out["wall_s"] = round(time.perf_counter() - t0, 3)
        out["started_at"] = t0_unix
        out["cpu_s"] = round(proc_stat_busy_s() - cpu0, 2)
        main_cpu = own_cpu_s() - own0  # this process and the splitter's ffmpeg (the workers are not reaped yet)
        out["first_object_s"] = round(min(m["finished_at"] for m in done) - t0_unix, 3)
        for _ in procs:
            tasks.put(None)
        exits = []
        while len(exits) < workers:
            msg = next_result()
            if msg["type"] == "exit":
                exits.append(msg)
        for p in procs:
            p.join(timeout=30)
        # Own CPU over the wall time: the main process and splitter, plus each worker from "ready" to its
        # exit (its ffmpeg children included); the workers' start-up is not in it, as it is not in the wall.
        ready_cpu = {m["worker"]: m["cpu_s"] for m in ready}
        out["own_cpu_s"] = round(
            main_cpu + sum(m["cpu_s"] - ready_cpu[m["worker"]] + m["children_cpu_s"] for m in exits), 2
        )
        out["segments"] = len(segments)
        out["frames"] = sum(m["frames"] for m in done)
        out["objects"] = sum(m["objects"] for m in done)
        phases: dict[str, float] = {}
        for m in done:
            for k, v in m["timings_s"].items():
                phases[k] = phases.get(k, 0.0) + v
        out["phases_s"] = {k: round(v, 3) for k, v in phases.items()}
        out["per_segment"] = [
            {"segment": m["segment"], "worker": m["worker"], "frames": m["frames"], "objects": m["objects"],
             "done_at_s": round(m["finished_at"] - t0_unix, 3),
             "timings_s": {k: round(v, 3) for k, v in m["timings_s"].items()}}
            for m in sorted(done, key=lambda m: m["segment"])
        ]  # fmt: skip
        out["worker_max_rss_bytes"] = [m["max_rss_bytes"] for m in sorted(exits, key=lambda m: m["worker"])]
        out["worker_children_max_rss_bytes"] = [m["children_max_rss_bytes"] for m in exits]
        out["max_rss_bytes"] = max(out["worker_max_rss_bytes"])
        out["weaviate_objects"] = count_objects(weaviate_http, weaviate_grpc, collection)
        out["state"] = "success"
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
            if p.is_alive():
                p.kill()
        tasks.close()
        results.close()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _default_models() -> tuple[str, str]:
    sys.path[:0] = [str(ROOT / "include")]
    from devstack import cache_dir
    from vidsearch.models import modelstore

    cache = Path(os.environ.get("VIDSEARCH_MODEL_CACHE") or cache_dir() / "models")
    return str(modelstore.ensure_tiny_model("detector", cache)), str(modelstore.ensure_tiny_model("embedder", cache))


def main() -> int:
    parser = argparse.ArgumentParser(
        description="The reference design (split, PNG frames, batch-1 DETR + CLIP, Weaviate)."
    )
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--detector", help="detector model folder (default: the tiny DETR)")
    parser.add_argument("--embedder", help="embedder model folder (default: the tiny CLIP)")
    parser.add_argument("--weaviate-http", type=int)
    parser.add_argument("--weaviate-grpc", type=int)
    parser.add_argument("--start-weaviate", action="store_true", help="start a Weaviate on free ports for this run")
    parser.add_argument("--collection", default="RefDesign_bench", help="Weaviate collection (replaced)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--sample-fps", type=float, default=1.0)
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--score-threshold", type=float, default=0.0)
    parser.add_argument("--work-dir", type=Path, help="scratch folder for segments, PNG frames and crops (emptied)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before the run is abandoned")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    if not args.video.is_file():
        parser.error(f"no such video: {args.video}")
    detector, embedder = args.detector, args.embedder
    if not (detector and embedder):
        tiny = _default_models()
        detector, embedder = detector or tiny[0], embedder or tiny[1]
    collection = args.collection[:1].upper() + args.collection[1:]  # Weaviate class names start upper-case

    server = None
    base = None
    try:
        if args.start_weaviate:
            sys.path[:0] = [str(ROOT / "include")]
            from devstack import free_port, start_weaviate

            base = Path(tempfile.mkdtemp(prefix="refdesign-weaviate-"))
            server = start_weaviate(base / "weaviate", free_port(), free_port(), base / "weaviate.log")
            http, grpc = server.http_port, server.grpc_port
        elif args.weaviate_http and args.weaviate_grpc:
            http, grpc = args.weaviate_http, args.weaviate_grpc
        else:
            parser.error("give --weaviate-http and --weaviate-grpc, or --start-weaviate")
        result = run(
            args.video, detector=detector, embedder=embedder, weaviate_http=http, weaviate_grpc=grpc,
            collection=collection, workers=args.workers, sample_fps=args.sample_fps,
            segment_seconds=args.segment_seconds, score_threshold=args.score_threshold, work_dir=args.work_dir,
            timeout_s=args.timeout,
        )  # fmt: skip
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)
    result["detector"], result["embedder"] = detector, embedder
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"refdesign: {result['segments']} segments, {result['frames']} frames, {result['objects']} objects "
        f"({result['weaviate_objects']} in Weaviate) in {result['wall_s']:.2f} s wall "
        f"(first object {result['first_object_s']:.2f} s; services up in {result['startup_s']:.2f} s), "
        f"{result['cpu_s']:.1f} CPU-s machine-wide, peak RSS {result['max_rss_bytes'] / 2**20:.0f} MiB per worker"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
