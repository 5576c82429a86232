"""Search benchmark: similar-object query latency through the API and import rate, as the index grows.

    .venv/bin/python bench/search.py [--sizes 10000,100000,250000,500000,1000000] [--budget 1500]
                                     [--writers 4] [--queries 300] [--out bench/reports] [--keep-temp]
    .venv/bin/python bench/search.py --render bench/reports/search.json   # redraw search.md and search.png

What it does (see bench/README.md for how to read the results):

1. Starts Postgres and Weaviate on free ports with their data in a temporary folder (stopped at the
   end, always), creates the Airflow metadata schema on that Postgres (the API validates JWTs with
   Airflow's auth manager, which checks revoked tokens there), and serves the search API
   (`vidsearch_api.create_app`, mounted under /vidsearch as the Airflow plugin mounts it) on a real
   uvicorn server on a free port, with a JWT made by Airflow's auth manager.
2. Grows one collection of synthetic objects: 512-d unit vectors (CLIP ViT-B/32's dimension) drawn
   from a hierarchy (a direction shared by everything, 80 detector classes, 4,000 object identities,
   a per-segment appearance, per-detection noise), laid out as videos of 60 ten-second segments with
   10 sampled frames of 10 objects each, the shape the ingest DAG produces at its defaults.
   Per batch of 10,000 objects the catalog rows (videos, segments, frames, objects) go into Postgres
   with COPY (set-up, timed apart) and the vectors into Weaviate through the project's import path,
   `ObjectIndex.upsert_segment`, one call per segment from `--writers` threads (the DAG indexes
   segments in parallel through the `weaviate_writers` pool): that is the measured import rate.
3. At every size of `--sizes` it reaches, it measures the API sequentially from one client:
   `GET /api/collections/{c}/objects/{id}/similar?k=20` for `--queries` random objects after a
   warm-up, and the same with k=100 for a third of them; with the time each request spent in
   Weaviate (vector fetch + near-vector search), in Postgres and elsewhere (timers around the
   service's methods inside the server), direct near-vector searches without the API (with and
   without the API's id filter), recall against exact search, and Weaviate's memory.
4. Stops importing when `--budget` seconds would be exceeded (keeping time to measure the size
   reached and write the report), and measures that size too.
5. Writes search.json (everything), search.md (a readable summary) and search.png (charts).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

import benchlib  # noqa: E402  (bench/ is on sys.path: scripts run as python bench/<name>.py)
from benchlib import fmt, load_note, quiet, r, version  # noqa: E402
from devstack import free_port  # noqa: E402
from devstack.weaviate import TUNING_ENV  # noqa: E402
from vidsearch.params import DEFAULT_DETECTOR, DEFAULT_EMBEDDER  # noqa: E402

SCHEMA_VERSION = 1
COLLECTION = "bench_search"
PREFIX = "/vidsearch"
USERNAME = "bench"
DIM = 512  # CLIP ViT-B/32
BATCH_OBJECTS = 10_000  # the unit of growth (and of the per-batch import rate)
DEFAULT_SIZES = (10_000, 100_000, 250_000, 500_000, 1_000_000)

# The synthetic layout: what the ingest DAG makes at its defaults (10 s segments sampled at 1 fps),
# with 10 detections per frame.
SEGMENTS_PER_VIDEO = 60
FRAMES_PER_SEGMENT = 10
OBJECTS_PER_FRAME = 10
OBJECTS_PER_SEGMENT = FRAMES_PER_SEGMENT * OBJECTS_PER_FRAME
SEGMENTS_PER_BATCH = BATCH_OBJECTS // OBJECTS_PER_SEGMENT
SEGMENT_SECONDS = 10.0
WIDTH, HEIGHT = 1280, 720

# The vector hierarchy. Squared-norm shares of an identity centre: shared direction, class, identity
# (so two identities of one class have cosine ~0.6, of different classes ~0.3); then a per-segment
# appearance and per-detection noise around the centre (squared norms 0.12 and 0.06 relative to the
# unit centre: two detections of one identity in one segment have cosine ~0.95, in different segments
# ~0.85). Real CLIP image embeddings are similarly anisotropic: unrelated crops are not orthogonal.
N_CLASSES = 80
N_IDENTITIES = 4000
CAST_PER_VIDEO = 40  # identities a video draws its segments' objects from
SHARE_GLOBAL, SHARE_CLASS, SHARE_IDENTITY = 0.30, 0.30, 0.40
APPEARANCE_SQ, NOISE_SQ = 0.12, 0.06
COCO_LIKE = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
    "surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange "
    "broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop "
    "mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors "
    "teddy_bear hair_drier toothbrush"
).split()

WARMUP = 30
K_MAIN, K_WIDE = 20, 100
PROPAGATION_SOURCES = (100, 1000)
PROPAGATION_THRESHOLD = 0.8

log = logging.getLogger("bench")


def say(message: str) -> None:
    print(f"[search] {message}", flush=True)


def clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def stats_ms(seconds: list[float]) -> dict[str, Any]:
    """n, p50, p90, p99, mean, min, max in milliseconds."""
    if not seconds:
        return {"n": 0}
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "n": int(a.size),
        "p50_ms": r(p50, 2),
        "p90_ms": r(p90, 2),
        "p99_ms": r(p99, 2),
        "mean_ms": r(a.mean(), 2),
        "min_ms": r(a.min(), 2),
        "max_ms": r(a.max(), 2),
    }


# --------------------------------------------------------------------------------------------------
# Servers, Airflow auth, the API
# --------------------------------------------------------------------------------------------------


class Stack(benchlib.ServerStack):
    """The servers, plus the search API on a real uvicorn and the JWT secret Airflow's auth checks."""

    def __init__(self, base: Path):
        super().__init__(base)
        self.api_server = None
        self.api_thread: threading.Thread | None = None

    def env(self) -> dict[str, str]:
        return {"AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64)}

    def airflow_db_migrate(self) -> None:
        """The Airflow metadata schema (JWT validation looks up revoked tokens in it)."""
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env=os.environ.copy(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def serve_api(self, service: Any) -> str:
        """The API app under /vidsearch on a real uvicorn (background thread, free port); its base URL."""
        import uvicorn
        from fastapi import FastAPI
        from vidsearch_api.app import create_app

        app = create_app(lambda: service)
        host = FastAPI()
        host.mount(PREFIX, app)
        port = free_port()
        self.api_server = uvicorn.Server(
            uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        self.api_thread = threading.Thread(target=self.api_server.run, name="search-api", daemon=True)
        self.api_thread.start()
        deadline = time.monotonic() + 30
        while not self.api_server.started:
            if not self.api_thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}{PREFIX}/"

    def stop(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
            if self.api_thread is not None:
                self.api_thread.join(timeout=10)
        super().stop()


def make_token() -> str:
    """A JWT for user `bench` (admin), issued the way the Airflow API server issues them."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    try:
        manager = get_auth_manager()
    except RuntimeError:
        # Quietly: the simple auth manager prints its generated admin password and a warning.
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            manager = init_auth_manager()
    return manager.generate_jwt(SimpleAuthManagerUser(username=USERNAME, role="admin"))


class ServiceMeter:
    """Time spent inside the search service's Weaviate and Postgres calls, per request.

    Wraps methods of the one `SearchService` the API serves and of its `ObjectIndex` (as
    bench/stages.py wraps the quality gates): nothing else changes. The benchmark's requests are
    sequential, so one accumulator that is reset before each request holds exactly that request's time.
    """

    PARTS = {
        "index.vectors": "weaviate_fetch_vector",
        "index.near_with_tracks": "weaviate_near_vector",
        "require_collection": "postgres",
        "objects_by_id": "postgres",
        "labels.negative_for_any": "postgres",
    }

    def __init__(self, service: Any):
        self.totals: dict[str, float] = {}
        for path, part in self.PARTS.items():
            *owners, method = path.split(".")
            target = service
            for owner in owners:
                target = getattr(target, owner)
            self._wrap(target, method, part)

    def _wrap(self, service: Any, method: str, part: str) -> None:
        original = getattr(service, method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[part] = self.totals.get(part, 0.0) + time.perf_counter() - start

        setattr(service, method, wrapper)

    def take(self) -> dict[str, float]:
        out, self.totals = self.totals, {}
        return out


# --------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class Synth:
    """Deterministic synthetic videos, segments, frames, objects and their vectors (see the module doc)."""

    def __init__(self, seed: int):
        self.seed = seed
        rng = np.random.default_rng([seed, 0])
        g = _unit(rng.standard_normal((1, DIM)))
        classes = _unit(rng.standard_normal((N_CLASSES, DIM)))
        own = _unit(rng.standard_normal((N_IDENTITIES, DIM)))
        self.identity_class = rng.integers(0, N_CLASSES, N_IDENTITIES)
        centres = (
            np.sqrt(SHARE_GLOBAL) * g
            + np.sqrt(SHARE_CLASS) * classes[self.identity_class]
            + np.sqrt(SHARE_IDENTITY) * own
        )
        self.centres = _unit(centres).astype(np.float32)
        self.labels = [COCO_LIKE[c % len(COCO_LIKE)] for c in range(N_CLASSES)]

    @staticmethod
    def video_id(v: int) -> str:
        return hashlib.sha256(f"bench-search-video-{v}".encode()).hexdigest()[:32]

    def cast(self, v: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, v])
        return rng.choice(N_IDENTITIES, CAST_PER_VIDEO, replace=False)

    def batch(self, b: int) -> dict[str, Any]:
        """Batch `b`: segments SEGMENTS_PER_BATCH*b ... as DetectedObjects, vectors and catalog rows."""
        from vidsearch.records import Box, DetectedObject, object_id

        rng = np.random.default_rng([self.seed, 2, b])
        segs: list[tuple[str, int, list[Any]]] = []
        vectors = np.empty((BATCH_OBJECTS, DIM), dtype=np.float32)
        rows: dict[str, list[tuple]] = {"videos": [], "segments": [], "frames": [], "objects": []}
        appearance_sd = np.sqrt(APPEARANCE_SQ / DIM)
        noise_sd = np.sqrt(NOISE_SQ / DIM)
        n = 0
        for gs in range(b * SEGMENTS_PER_BATCH, (b + 1) * SEGMENTS_PER_BATCH):
            v, s = divmod(gs, SEGMENTS_PER_VIDEO)
            vid = self.video_id(v)
            if s == 0:
                rows["videos"].append(self._video_row(v, vid))
            # The segment shows OBJECTS_PER_FRAME identities of the video's cast in every frame.
            shown = rng.choice(self.cast(v), OBJECTS_PER_FRAME, replace=False)
            looks = self.centres[shown] + rng.standard_normal((OBJECTS_PER_FRAME, DIM)) * appearance_sd
            base_boxes = rng.uniform([0, 0, 40, 40], [WIDTH - 300, HEIGHT - 300, 300, 300], (OBJECTS_PER_FRAME, 4))
            # Boxes drift a little from frame to frame (all frames at once: this loop runs a million times).
            jitter = rng.normal(0, 6, (FRAMES_PER_SEGMENT, OBJECTS_PER_FRAME, 2))
            x0 = np.clip(base_boxes[:, 0] + jitter[..., 0], 0, WIDTH - 40)
            y0 = np.clip(base_boxes[:, 1] + jitter[..., 1], 0, HEIGHT - 40)
            x1 = np.minimum(WIDTH, x0 + base_boxes[:, 2])
            y1 = np.minimum(HEIGHT, y0 + base_boxes[:, 3])
            x0, y0, x1, y1 = (np.round(a, 2).tolist() for a in (x0, y0, x1, y1))
            scores = np.round(rng.uniform(0.7, 1.0, (FRAMES_PER_SEGMENT, OBJECTS_PER_FRAME)), 4).tolist()
            classes = [int(self.identity_class[ident]) for ident in shown]
            objs = []
            for f in range(FRAMES_PER_SEGMENT):
                pts = s * SEGMENT_SECONDS + f
                rows["frames"].append(
                    (COLLECTION, vid, s, f, pts, self._bundle_uri(vid, s), f"{f:06d}.jpg", WIDTH, HEIGHT)
                )
                for j, cls in enumerate(classes):
                    box = Box(x0=x0[f][j], y0=y0[f][j], x1=x1[f][j], y1=y1[f][j])
                    o = DetectedObject(
                        object_id=object_id(vid, s, pts, box),
                        video_id=vid,
                        segment_index=s,
                        frame_index=f,
                        pts_s=pts,
                        box=box,
                        label=self.labels[cls],
                        label_id=cls,
                        score=scores[f][j],
                    )
                    objs.append(o)
                    rows["objects"].append(
                        (
                            COLLECTION,
                            o.object_id,
                            vid,
                            s,
                            f,
                            pts,
                            box.x0,
                            box.y0,
                            box.x1,
                            box.y1,
                            o.label,
                            o.label_id,
                            o.score,
                            DEFAULT_DETECTOR,
                            DEFAULT_EMBEDDER,
                        )
                    )
                vectors[n : n + OBJECTS_PER_FRAME] = looks + rng.standard_normal((OBJECTS_PER_FRAME, DIM)) * noise_sd
                n += OBJECTS_PER_FRAME
            rows["segments"].append(
                (
                    COLLECTION,
                    vid,
                    s,
                    s * SEGMENT_SECONDS,
                    (s + 1) * SEGMENT_SECONDS,
                    f"file:///bench/videos/{vid}/segments/seg{s:04d}.mkv",
                    "done",
                    None,
                    FRAMES_PER_SEGMENT,
                    OBJECTS_PER_SEGMENT,
                    self._bundle_uri(vid, s),
                    None,
                )
            )
            segs.append((vid, s, objs))
        vectors = _unit(vectors).astype(np.float32)
        return {"segments": segs, "vectors": vectors, "rows": rows}

    @staticmethod
    def _bundle_uri(vid: str, s: int) -> str:
        return f"file:///bench/videos/{vid}/frames/seg{s:04d}.zip"

    @staticmethod
    def _video_row(v: int, vid: str) -> tuple:
        duration = SEGMENTS_PER_VIDEO * SEGMENT_SECONDS
        manifest = {
            "video_id": vid,
            "source": f"synthetic://bench/{v}",
            "duration_s": duration,
            "width": WIDTH,
            "height": HEIGHT,
            "frame_rate": 30.0,
        }
        return (
            COLLECTION,
            vid,
            f"synthetic://bench/{v}",
            vid * 2,
            f"file:///bench/videos/{vid}/source.mp4",
            json.dumps(manifest),
            "done",
            "bench__search",
        )


COPY_COLUMNS = {
    "videos": "collection, video_id, source, content_sha256, source_uri, manifest, state, last_run_id",
    "segments": "collection, video_id, segment_index, start_s, end_s, uri, state, error, frame_count, "
    "object_count, bundle_uri, quality",
    "frames": "collection, video_id, segment_index, frame_index, pts_s, bundle_uri, member, width, height",
    "objects": "collection, object_id, video_id, segment_index, frame_index, pts_s, x0, y0, x1, y1, label, "
    "label_id, score, detector_model, embedder_model",
}


def copy_rows(engine: Any, rows: dict[str, list[tuple]]) -> None:
    """The catalog rows of one batch, with COPY (in foreign-key order, one transaction)."""

    def text(value: Any) -> str:
        if value is None:
            return "\\N"
        return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            for table in ("videos", "segments", "frames", "objects"):
                if not rows[table]:
                    continue
                buf = io.StringIO("".join("\t".join(text(v) for v in row) + "\n" for row in rows[table]))
                cur.copy_expert(f"COPY {table} ({COPY_COLUMNS[table]}) FROM STDIN", buf)
        raw.commit()
    finally:
        raw.close()


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    import psutil

    with contextlib.suppress(Exception):
        return r(psutil.Process(pid).memory_info().rss / 2**20, 1)
    return None


def rss_parts_mib(pid: int) -> dict[str, float]:
    """Resident memory split as the kernel counts it: anonymous (the Go heap, HNSW graph, vector
    caches) and file-backed (memory-mapped LSM segments, which the kernel can drop under pressure)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                out[key] = r(int(value.split()[0]) / 1024, 1)
    return out


def wait_indexed(client: Any, collection: str, timeout_s: float = 3600.0) -> float:
    """Block until every shard of `collection` has an empty vector queue (asynchronous indexing has
    caught up; immediately without it); the seconds waited."""
    t0 = time.perf_counter()
    while True:
        nodes = client.cluster.nodes(collection=collection, output="verbose")
        shards = [sh for node in nodes for sh in (node.shards or [])]
        if shards and all(sh.vector_queue_length == 0 and sh.vector_indexing_status == "READY" for sh in shards):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"the vector index of {collection} did not catch up in {timeout_s:.0f} s")
        time.sleep(0.5)


def cpu_s(pid: int) -> float:
    import psutil

    with contextlib.suppress(Exception):
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    return 0.0


def dir_mib(path: Path) -> float:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file():
                total += p.stat().st_size
    return r(total / 2**20, 1)


def exact_top(vectors: np.ndarray, n: int, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the exact `k` nearest (cosine) among vectors[:n], the query row itself excluded."""
    qv = vectors[queries]
    best_sim = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_idx = np.zeros((len(queries), 0), dtype=np.int64)
    chunk = 100_000
    for start in range(0, n, chunk):
        sims = qv @ vectors[start : min(n, start + chunk)].T
        own = (queries >= start) & (queries < start + sims.shape[1])
        sims[np.nonzero(own)[0], queries[own] - start] = -np.inf
        take = min(k, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        best_sim = np.concatenate([best_sim, np.take_along_axis(sims, part, axis=1)], axis=1)
        best_idx = np.concatenate([best_idx, part + start], axis=1)
        keep = np.argsort(-best_sim, axis=1)[:, :k]
        best_sim = np.take_along_axis(best_sim, keep, axis=1)
        best_idx = np.take_along_axis(best_idx, keep, axis=1)
    return best_idx


def measure_size(ctx: dict[str, Any], n: int, queries_n: int, rng: np.random.Generator) -> dict[str, Any]:
    """Latency through the API (k=20 and k=100), direct near-vector searches, recall, memory."""
    import sqlalchemy as sa
    from weaviate.classes.query import Filter, MetadataQuery

    started = time.perf_counter()
    http, meter, ids, vectors = ctx["http"], ctx["meter"], ctx["ids"], ctx["vectors"]
    wide_n = max(1, queries_n // 3)
    picks = rng.choice(n, WARMUP + 2 * queries_n, replace=False)
    warm, measured, others = picks[:WARMUP], picks[WARMUP : WARMUP + queries_n], picks[WARMUP + queries_n :]

    def similar(row: int, k: int) -> tuple[float, dict[str, float], list[str]]:
        url = f"api/collections/{COLLECTION}/objects/{ids[row]}/similar"
        meter.take()
        t0 = time.perf_counter()
        resp = http.get(url, params={"k": k})
        elapsed = time.perf_counter() - t0
        parts = meter.take()
        if resp.status_code != 200:
            raise RuntimeError(f"GET {url}?k={k}: {resp.status_code} {resp.text[:300]}")
        results = resp.json()["results"]
        if len(results) != k:
            raise RuntimeError(f"GET {url}?k={k} returned {len(results)} results")
        return elapsed, parts, [o["object_id"] for o in results]

    out: dict[str, Any] = {"objects": n}
    for row in warm:
        similar(int(row), K_MAIN)
    for k, rows in ((K_MAIN, measured), (K_WIDE, measured[:wide_n])):
        if k == K_WIDE:
            for row in warm[:10]:
                similar(int(row), k)
        times, parts_list, found = [], [], []
        for row in rows:
            elapsed, parts, result_ids = similar(int(row), k)
            times.append(elapsed)
            parts_list.append(parts)
            found.append(result_ids)
        breakdown = {}
        for part in ("weaviate_fetch_vector", "weaviate_near_vector", "postgres"):
            breakdown[part] = [p.get(part, 0.0) for p in parts_list]
        breakdown["other"] = [
            t - sum(p.values()) for t, p in zip(times, parts_list)
        ]  # auth (JWT + revoked-token lookup), FastAPI, JSON, HTTP, the client
        weaviate_s = [a + b for a, b in zip(breakdown["weaviate_fetch_vector"], breakdown["weaviate_near_vector"])]
        # Recall against exact search over every stored vector (the query object excluded, as the API does).
        exact = exact_top(vectors, n, np.asarray(rows, dtype=np.int64), k)
        index_of = ctx["row_of"]
        hits = [len({index_of.get(oid, -1) for oid in got} & set(exact[i].tolist())) / k for i, got in enumerate(found)]
        out[f"k{k}"] = {
            "k": k,
            "latency": stats_ms(times),
            "weaviate_share": r(sum(weaviate_s) / sum(times), 3),
            "mean_breakdown_ms": {p: r(1000 * float(np.mean(v)), 2) for p, v in breakdown.items()},
            "weaviate": stats_ms(weaviate_s),
            "weaviate_near_vector": stats_ms(breakdown["weaviate_near_vector"]),
            f"recall_at_{k}": r(float(np.mean(hits)), 4),
        }
        say(
            f"  {n:,} objects, k={k}: p50 {out[f'k{k}']['latency']['p50_ms']:.1f} ms, "
            f"p99 {out[f'k{k}']['latency']['p99_ms']:.1f} ms, Weaviate {100 * out[f'k{k}']['weaviate_share']:.0f}%, "
            f"recall@{k} {out[f'k{k}'][f'recall_at_{k}']:.3f}"
        )

    # Direct near-vector searches from this process (no API): with the API's filter (the query object
    # excluded by id) and without any filter, each for its own sample of objects that no request has
    # touched yet (a search repeated for the same vector finds its part of the index warmer).
    coll = ctx["wv_coll"]
    direct: dict[str, Any] = {}
    half = len(others) // 2
    for name, with_filter, sample in (("filtered", True, others[:half]), ("unfiltered", False, others[half:])):
        times = []
        for row in sample:
            vec = vectors[int(row)].astype(float).tolist()
            flt = Filter.by_id().contains_none([ids[int(row)]]) if with_filter else None
            t0 = time.perf_counter()
            coll.query.near_vector(
                near_vector=vec,
                limit=K_MAIN,
                distance=1.0 + 1e-6,
                filters=flt,
                return_metadata=MetadataQuery(distance=True),
                return_properties=[],
            )
            times.append(time.perf_counter() - t0)
        direct[name] = stats_ms(times)
    out["direct_near_vector_k20"] = direct
    say(
        f"  direct near_vector k=20: p50 {direct['filtered']['p50_ms']:.1f} ms with the id filter, "
        f"{direct['unfiltered']['p50_ms']:.1f} ms without"
    )
    out["weaviate_rss_mib"] = rss_mib(ctx["weaviate_pid"])
    out["weaviate_rss_parts_mib"] = rss_parts_mib(ctx["weaviate_pid"])
    out["weaviate_disk_mib"] = dir_mib(ctx["weaviate_dir"])
    with ctx["engine"].connect() as conn:
        out["postgres_db_mib"] = r(
            conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one() / 2**20, 1
        )
    out["measure_s"] = r(time.perf_counter() - started, 1)
    return out


PROPAGATION_LABEL = "bench_propagation"


def measure_propagation(ctx: dict[str, Any], n: int, sources: int, rng: np.random.Generator) -> dict[str, Any]:
    """The propagation preview through the API from `sources` human positives (random objects,
    labelled through the API), three times; their labels are removed afterwards."""
    http, ids = ctx["http"], ctx["ids"]
    picked = [ids[int(i)] for i in rng.choice(n, sources, replace=False)]
    base = f"api/collections/{COLLECTION}/labels"
    resp = http.post(base, json={"object_ids": picked, "name": PROPAGATION_LABEL, "polarity": "positive"})
    if resp.status_code != 200:
        raise RuntimeError(f"POST {base}: {resp.status_code} {resp.text[:300]}")
    url = f"{base}/{PROPAGATION_LABEL}/propagation/preview"
    body = {"threshold": PROPAGATION_THRESHOLD, "limit": 1000}
    times, counts = [], []
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            resp = http.post(url, json=body)
            times.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                raise RuntimeError(f"POST {url}: {resp.status_code} {resp.text[:300]}")
            counts.append(resp.json()["count"])
    finally:
        http.request("DELETE", base, json={"object_ids": picked, "name": PROPAGATION_LABEL})
    out = {"sources": sources, "threshold": PROPAGATION_THRESHOLD, "limit": 1000, "count": counts[-1]}
    out.update(stats_ms(times))
    say(
        f"  propagation preview from {sources:,} sources: {1000 * float(np.median(times)):.0f} ms, {counts[-1]:,} candidates"
    )
    return out


# --------------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    return benchlib.machine_facts(
        numpy=np.__version__,
        weaviate_client=version("weaviate-client"),
        airflow=version("apache-airflow"),
        fastapi=version("fastapi"),
        uvicorn=version("uvicorn"),
    )


def weaviate_facts(stack: Stack, coll: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        with urllib.request.urlopen(f"{stack.weaviate.url}/v1/meta", timeout=5) as resp:
            facts["server_version"] = json.load(resp).get("version")
    with contextlib.suppress(Exception):
        vic = coll.config.get().vector_config["default"].vector_index_config
        facts["vector_index"] = {
            "type": type(vic).__name__.removeprefix("_VectorIndexConfig").lower() or "hnsw",
            "distance": str(getattr(vic.distance_metric, "value", vic.distance_metric)),
            "ef_construction": vic.ef_construction,
            "max_connections": vic.max_connections,
            "ef": vic.ef,
            "dynamic_ef_min": vic.dynamic_ef_min,
            "dynamic_ef_max": vic.dynamic_ef_max,
            "dynamic_ef_factor": vic.dynamic_ef_factor,
            "filter_strategy": str(getattr(vic.filter_strategy, "value", vic.filter_strategy)),
            "flat_search_cutoff": vic.flat_search_cutoff,
            "quantizer": None if vic.quantizer is None else type(vic.quantizer).__name__,
        }
    return facts


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, stack: Stack, report: dict[str, Any], t_start: float) -> None:
    import httpx
    from vidsearch.search import SearchService
    from vidsearch.stores import catalog as cat
    from vidsearch.stores import index as vindex

    quiet()
    sizes = sorted(set(args.sizes))
    target = sizes[-1]
    catalog = cat.Catalog.from_url(stack.pg.url("vidsearch"))
    cat.migrate(catalog.engine)

    t0 = time.perf_counter()
    say("creating the Airflow metadata schema (for JWT validation)")
    stack.airflow_db_migrate()
    report["setup"]["airflow_db_migrate_s"] = r(time.perf_counter() - t0, 1)
    token = make_token()

    # The importer's index (the project's import path) and the API's own service and Weaviate client.
    import_client = stack.weaviate_client()
    index = vindex.ObjectIndex(import_client)
    index.ensure_collection(COLLECTION, args.index_settings)
    catalog.register_collection(COLLECTION, DEFAULT_EMBEDDER, DIM, vindex.weaviate_collection_name(COLLECTION))
    api_client = stack.weaviate_client()
    service = SearchService(catalog, vindex.ObjectIndex(api_client))
    meter = ServiceMeter(service)
    base_url = stack.serve_api(service)
    say(f"search API at {base_url}")
    http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    probe = http.get("api/collections")
    if probe.status_code != 200:
        raise RuntimeError(f"the API refused the token: {probe.status_code} {probe.text[:300]}")
    direct_client = stack.weaviate_client()
    wv_coll = direct_client.collections.use(vindex.weaviate_collection_name(COLLECTION))
    report["weaviate"] = weaviate_facts(stack, wv_coll)
    report["setup"]["ready_after_s"] = r(time.perf_counter() - t_start, 1)

    synth = Synth(args.seed)
    vectors = np.empty((target, DIM), dtype=np.float32)  # pages are touched only as they fill
    ids: list[str] = []
    ctx = {
        "http": http,
        "meter": meter,
        "ids": ids,
        "vectors": vectors,
        "row_of": {},
        "wv_coll": wv_coll,
        "client": direct_client,
        "weaviate_pid": stack.weaviate.pid,
        "weaviate_dir": stack.weaviate.data_dir,
        "engine": catalog.engine,
    }
    writers = ThreadPoolExecutor(args.writers, thread_name_prefix="writer")
    batches: list[dict[str, Any]] = []
    measured: list[dict[str, Any]] = []
    imp = report["import"]
    import_s = 0.0
    w_pid, me = stack.weaviate.pid, os.getpid()
    last_measure_s = 30.0
    stopped = None
    n = 0
    b = 0
    try:
        while n < target:
            # Stop when one more batch plus measuring and reporting would not fit in the budget.
            elapsed = time.perf_counter() - t_start
            next_batch = (
                batches[-1]["seconds"] + batches[-1]["prep_s"] + batches[-1]["catalog_copy_s"] if batches else 60
            )
            reserve = 1.5 * last_measure_s + 45
            if n and elapsed + next_batch + reserve > args.budget:
                stopped = (
                    f"time budget: {elapsed:.0f} s elapsed, the next batch would take ~{next_batch:.0f} s and "
                    f"measuring ~{reserve:.0f} s more, beyond --budget {args.budget:.0f} s"
                )
                say(f"stopping the import at {n:,} objects ({stopped})")
                break
            tp = time.perf_counter()
            data = synth.batch(b)
            prep_s = time.perf_counter() - tp
            tc = time.perf_counter()
            copy_rows(catalog.engine, data["rows"])
            copy_s = time.perf_counter() - tc
            vecs = data["vectors"]
            offsets = [i * OBJECTS_PER_SEGMENT for i in range(len(data["segments"]))]

            def upsert(
                i: int, data: dict[str, Any] = data, vecs: np.ndarray = vecs, offsets: list[int] = offsets
            ) -> float:
                vid, s, objs = data["segments"][i]
                t = time.perf_counter()
                index.upsert_segment(COLLECTION, vid, s, objs, vecs[offsets[i] : offsets[i] + OBJECTS_PER_SEGMENT])
                return time.perf_counter() - t

            c_w, c_me = cpu_s(w_pid), cpu_s(me)
            ti = time.perf_counter()
            call_s = list(writers.map(upsert, range(len(data["segments"]))))
            seconds = time.perf_counter() - ti
            import_s += seconds
            vectors[n : n + BATCH_OBJECTS] = vecs
            for seg_objs in data["segments"]:
                for o in seg_objs[2]:
                    ctx["row_of"][o.object_id] = len(ids)
                    ids.append(o.object_id)
            n += BATCH_OBJECTS
            b += 1
            batch = {
                "batch": b,
                "objects_after": n,
                "seconds": r(seconds),
                "objects_per_s": r(BATCH_OBJECTS / seconds, 1),
                "upsert_segment_p50_ms": r(1000 * float(np.median(call_s)), 1),
                "upsert_segment_max_ms": r(1000 * max(call_s), 1),
                "weaviate_cpu_ms_per_object": r(1000 * (cpu_s(w_pid) - c_w) / BATCH_OBJECTS, 3),
                "client_cpu_ms_per_object": r(1000 * (cpu_s(me) - c_me) / BATCH_OBJECTS, 3),
                "weaviate_rss_mib": rss_mib(w_pid),
                "prep_s": r(prep_s),
                "catalog_copy_s": r(copy_s),
                "elapsed_s": r(time.perf_counter() - t_start, 1),
                "loadavg_1m": r(os.getloadavg()[0], 2),
            }
            batches.append(batch)
            if b == 1 or n in sizes or b % 5 == 0:
                done = n / target
                say(
                    f"{n:>9,} objects: last batch {batch['objects_per_s']:,.0f}/s, overall {n / import_s:,.0f}/s, "
                    f"Weaviate {batch['weaviate_cpu_ms_per_object']:.2f} ms CPU/object, "
                    f"RSS {batch['weaviate_rss_mib'] / 1024:.2f} GiB, elapsed {clock(batch['elapsed_s'])}"
                    + (f", import ETA {clock((target - n) / (n / import_s))} at the overall rate" if done < 1 else "")
                )
            if n in sizes:
                # With asynchronous indexing the import is done when the vector queue is empty.
                waited = wait_indexed(direct_client, vindex.weaviate_collection_name(COLLECTION))
                import_s += waited
                batch["index_wait_s"] = r(waited, 1)
                say(f"measuring at {n:,} objects")
                m = measure_size(ctx, n, args.queries, np.random.default_rng([args.seed, 3, n]))
                m["import_s_so_far"] = r(import_s, 1)
                m["import_rate_overall"] = r(n / import_s, 1)
                measured.append(m)
                last_measure_s = m["measure_s"]
        if n < target and (not measured or measured[-1]["objects"] != n):
            import_s += wait_indexed(direct_client, vindex.weaviate_collection_name(COLLECTION))
            say(f"measuring at {n:,} objects (the largest size reached)")
            m = measure_size(ctx, n, args.queries, np.random.default_rng([args.seed, 3, n]))
            m["import_s_so_far"] = r(import_s, 1)
            m["import_rate_overall"] = r(n / import_s, 1)
            m["reached_by_budget"] = True
            measured.append(m)
        if measured:
            last = measured[-1]
            last["propagation"] = [
                measure_propagation(ctx, last["objects"], k, np.random.default_rng([args.seed, 5, k]))
                for k in PROPAGATION_SOURCES
            ]
    finally:
        writers.shutdown(wait=True)
        imp.update(
            {
                "target_objects": target,
                "objects": n,
                "reached_target": n >= target,
                "stopped": stopped,
                "import_s": r(import_s, 1),
                "objects_per_s": r(n / import_s, 1) if import_s else None,
                "catalog_copy_s": r(sum(x["catalog_copy_s"] for x in batches), 1),
                "prep_s": r(sum(x["prep_s"] for x in batches), 1),
                "batches": batches,
            }
        )
        report["sizes"] = measured
        http.close()
        for client in (import_client, api_client, direct_client):
            with contextlib.suppress(Exception):
                client.close()


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def rate_between(batches: list[dict[str, Any]], lo: int, hi: int) -> float | None:
    sel = [b for b in batches if lo < b["objects_after"] <= hi]
    secs = sum(b["seconds"] for b in sel)
    return r(BATCH_OBJECTS * len(sel) / secs, 1) if secs else None


def write_markdown(report: dict[str, Any], path: Path) -> None:
    m, imp, sizes, wv = report["machine"], report["import"], report["sizes"], report.get("weaviate", {})
    vi = wv.get("vector_index", {})
    cfg = report["config"]
    lines = [
        "# Search benchmark",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` in {report['runtime_s']:.1f} s "
        f"(budget {cfg['budget_s']:.0f} s).",
        "",
        f"Machine: {m['cpu_count']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB; Weaviate "
        f"{wv.get('server_version', '?')} (weaviate-client {m['weaviate_client']}), Airflow {m['airflow']}, "
        f"FastAPI {m['fastapi']}, uvicorn {m['uvicorn']}, Python {m['python']}; commit "
        f"`{(m['git_commit'] or '?')[:10]}`{' (with local changes)' if m.get('git_dirty') else ''}.",
        "",
        load_note(m),
        f"Data: one collection of synthetic objects, {DIM}-d unit vectors (CLIP ViT-B/32's dimension) from a "
        f"hierarchy of {N_CLASSES} classes and {N_IDENTITIES:,} identities with per-segment appearance and "
        f"per-detection noise; videos of {SEGMENTS_PER_VIDEO} segments x {FRAMES_PER_SEGMENT} frames x "
        f"{OBJECTS_PER_FRAME} objects ({OBJECTS_PER_SEGMENT} objects per segment). Weaviate index: "
        f"{vi.get('type', 'hnsw')}, {vi.get('distance', 'cosine')}, efConstruction {vi.get('ef_construction')}, "
        f"maxConnections {vi.get('max_connections')}, ef {vi.get('ef')} (dynamic {vi.get('dynamic_ef_min')}-"
        f"{vi.get('dynamic_ef_max')}, factor {vi.get('dynamic_ef_factor')}), filter strategy "
        f"{vi.get('filter_strategy')}, flat search cutoff {fmt(vi.get('flat_search_cutoff'))}, quantizer "
        f"{vi.get('quantizer') or 'none'}"
        + (
            f" (`--index-settings {json.dumps(cfg['index_settings'])}`)"
            if cfg.get("index_settings")
            else " (the project's defaults, `vidsearch.params.IndexSettings`)"
        )
        + (
            ". Weaviate server settings: " + ", ".join(f"`{k}={v}`" for k, v in cfg["weaviate_env"].items())
            if cfg.get("weaviate_env")
            else ""
        )
        + ".",
        "",
        *summary(report),
        "## Import",
        "",
        f"Through `ObjectIndex.upsert_segment`, one call per segment ({OBJECTS_PER_SEGMENT} objects) from "
        f"{cfg['writers']} writer thread(s), in batches of {BATCH_OBJECTS:,} objects. "
        + (
            f"Reached the target of {imp['target_objects']:,} objects."
            if imp["reached_target"]
            else f"**Stopped at {imp['objects']:,} of {imp['target_objects']:,} objects**: {imp['stopped']}."
        ),
        "",
        f"Overall: **{fmt(imp['objects_per_s'], 0)} objects/s** ({imp['objects']:,} objects in "
        f"{fmt(imp['import_s'], 1)} s of import). Catalog rows by COPY (set-up, not in the rate) took "
        f"{fmt(imp['catalog_copy_s'])} s in all; generating the data {fmt(imp['prep_s'])} s.",
        "",
        "| objects in the index | import rate over the step (objects/s) | overall (objects/s) | Weaviate CPU per object (ms) | Weaviate RSS (GiB) | Weaviate on disk (GiB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    prev = 0
    batches = imp["batches"]
    for s in sizes:
        n = s["objects"]
        sel = [b for b in batches if prev < b["objects_after"] <= n]
        cpu = float(np.mean([b["weaviate_cpu_ms_per_object"] for b in sel])) if sel else None
        lines.append(
            f"| {n:,} | {fmt(rate_between(batches, prev, n), 0)} ({size_label(prev) if prev else '0'}-{size_label(n)}) "
            f"| {fmt(s['import_rate_overall'], 0)} | {fmt(cpu, 2)} | {fmt(s['weaviate_rss_mib'] / 1024, 2)} "
            f"| {fmt(s['weaviate_disk_mib'] / 1024, 2)} |"
        )
        prev = n
    lines += [
        "",
        "## Similar-object query latency through the API",
        "",
        f"`GET {PREFIX}/api/collections/{{c}}/objects/{{id}}/similar?k=…` over HTTP (uvicorn, JWT bearer), "
        f"sequential requests from one client, random query objects: {cfg['queries']} for k={K_MAIN} after "
        f"{WARMUP} warm-up requests, {max(1, cfg['queries'] // 3)} for k={K_WIDE}. Milliseconds.",
        "",
        "| objects | k | p50 | p90 | p99 | mean | max | in Weaviate | recall@k |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        for key, k in (("k20", K_MAIN), ("k100", K_WIDE)):
            q = s[key]
            lat = q["latency"]
            lines.append(
                f"| {s['objects']:,} | {k} | **{fmt(lat['p50_ms'])}** | {fmt(lat['p90_ms'])} | **{fmt(lat['p99_ms'])}** "
                f"| {fmt(lat['mean_ms'])} | {fmt(lat['max_ms'])} | {100 * q['weaviate_share']:.0f}% "
                f"| {fmt(q[f'recall_at_{k}'], 3)} |"
            )
    lines += [
        "",
        f"Where a k={K_MAIN} request's time goes (mean ms), from timers around the search service's methods inside "
        "the server: Weaviate vector fetch (none since the search reads the query object's stored vector "
        "itself, `near_object`), Weaviate search (with the query object excluded by an id filter), Postgres (collection lookup, the query object and "
        "the results with their labels), and the rest (JWT validation including Airflow's revoked-token "
        "lookup, FastAPI, JSON, HTTP, the client). Next to it, near-vector searches sent directly to Weaviate "
        "(k=20, two more samples of objects no request had touched), with and without that id filter.",
        "",
        "| objects | total | Weaviate fetch | Weaviate near_vector | Postgres | rest | direct near_vector with id filter p50 / p99 | without filter p50 / p99 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        b = s["k20"]["mean_breakdown_ms"]
        d = s["direct_near_vector_k20"]
        lines.append(
            f"| {s['objects']:,} | {fmt(s['k20']['latency']['mean_ms'])} | {fmt(b['weaviate_fetch_vector'])} "
            f"| {fmt(b['weaviate_near_vector'])} | {fmt(b['postgres'])} | {fmt(b['other'])} "
            f"| {fmt(d['filtered']['p50_ms'])} / {fmt(d['filtered']['p99_ms'])} "
            f"| {fmt(d['unfiltered']['p50_ms'])} / {fmt(d['unfiltered']['p99_ms'])} |"
        )
    lines += ["", "![import rate, latency and where the time goes](search.png)", ""]
    path.write_text("\n".join(lines) + "\n")


def memory_split(size: dict[str, Any]) -> str:
    parts = size.get("weaviate_rss_parts_mib") or {}
    if "RssAnon" not in parts or "RssFile" not in parts:
        return ""
    return (
        f" ({fmt(parts['RssAnon'] / 1024, 2)} GiB anonymous, {fmt(parts['RssFile'] / 1024, 2)} GiB file-backed: "
        "memory-mapped LSM segments the kernel can drop)"
    )


def summary(report: dict[str, Any]) -> list[str]:
    """The headline numbers and where the time goes, from the measurements."""
    imp, sizes = report["import"], report["sizes"]
    if not sizes:
        return []
    last = sizes[-1]
    batches = imp["batches"]
    q20, q100 = last["k20"], last["k100"]
    b = q20["mean_breakdown_ms"]
    total = q20["latency"]["mean_ms"]
    wv = b["weaviate_fetch_vector"] + b["weaviate_near_vector"]
    tail = batches[-10:]
    tail_rate = BATCH_OBJECTS * len(tail) / sum(x["seconds"] for x in tail)
    lines = [
        "## Summary",
        "",
        f"* **At {last['objects']:,} objects**: `similar?k={K_MAIN}` p50 **{fmt(q20['latency']['p50_ms'])} ms**, "
        f"p99 **{fmt(q20['latency']['p99_ms'])} ms** (k={K_WIDE}: {fmt(q100['latency']['p50_ms'])} / "
        f"{fmt(q100['latency']['p99_ms'])} ms), recall@{K_MAIN} {fmt(q20[f'recall_at_{K_MAIN}'], 3)}; Weaviate "
        f"{fmt(last['weaviate_rss_mib'] / 1024, 2)} GiB resident{memory_split(last)}, "
        f"{fmt(last['weaviate_disk_mib'] / 1024, 2)} GiB on disk.",
        f"* **Import**: {fmt(imp['objects_per_s'], 0)} objects/s overall ({fmt(batches[0]['objects_per_s'], 0)}/s "
        f"into the empty index, {fmt(tail_rate, 0)}/s over the last {len(tail) * BATCH_OBJECTS:,}).",
        f"* **Where a k={K_MAIN} request's {fmt(total)} ms go** at {last['objects']:,} objects (means): Weaviate "
        f"{fmt(wv)} ms ({100 * wv / total:.0f}%: {fmt(b['weaviate_fetch_vector'])} fetching the query object's "
        f"vector, {fmt(b['weaviate_near_vector'])} searching), Postgres {fmt(b['postgres'])} ms "
        f"({100 * b['postgres'] / total:.0f}%), auth + FastAPI + JSON + HTTP {fmt(b['other'])} ms "
        f"({100 * b['other'] / total:.0f}%). The same near-vector search sent straight to Weaviate (other "
        f"query objects) takes {fmt(last['direct_near_vector_k20']['filtered']['mean_ms'])} ms on average "
        f"(inside the API: {fmt(q20['weaviate_near_vector']['mean_ms'])}).",
    ]
    for prop in last.get("propagation", []):
        lines.append(
            f"* **Propagation preview** from {prop['sources']:,} human positives (threshold {prop['threshold']}, "
            f"limit {prop['limit']:,}) through the API: p50 {fmt(prop['p50_ms'] / 1000, 2)} s, max "
            f"{fmt(prop['max_ms'] / 1000, 2)} s over 3 requests; {prop['count']:,} candidates."
        )
    cutoff = (report.get("weaviate", {}).get("vector_index") or {}).get("flat_search_cutoff")
    small = [s for s in sizes if cutoff and s["objects"] <= cutoff]
    big = [s for s in sizes if cutoff and s["objects"] > cutoff]
    if small and big:
        s0, s1 = small[0]["direct_near_vector_k20"], big[0]["direct_near_vector_k20"]
        lines.append(
            f"* **The id filter** (the API excludes the query object by id inside Weaviate): up to Weaviate's flat "
            f"search cutoff ({cutoff:,} objects) a filtered search scans every vector, so at "
            f"{small[0]['objects']:,} objects it takes p50 {fmt(s0['filtered']['p50_ms'])} ms against "
            f"{fmt(s0['unfiltered']['p50_ms'])} ms without the filter; above it (HNSW with ACORN), "
            f"{fmt(s1['filtered']['p50_ms'])} against {fmt(s1['unfiltered']['p50_ms'])} ms at {big[0]['objects']:,}."
        )
    w_cpu = float(np.mean([x["weaviate_cpu_ms_per_object"] for x in batches]))
    c_cpu = float(np.mean([x["client_cpu_ms_per_object"] for x in batches]))
    line = (
        f"* **The import is bound by Weaviate's CPU**: {fmt(w_cpu, 2)} ms of Weaviate CPU per object on average "
        f"(mostly HNSW insertion: {fmt(batches[0]['weaviate_cpu_ms_per_object'], 2)} ms into the empty index, "
        f"{fmt(float(np.mean([x['weaviate_cpu_ms_per_object'] for x in tail])), 2)} ms over the last batches) "
        f"against {fmt(c_cpu, 2)} ms in the importing process, on {report['machine']['cpu_count']} cores"
    )
    loads = [x.get("loadavg_1m") for x in batches]
    if len(batches) >= 5 and all(v is not None for v in loads) and np.std(loads) > 0:
        corr = float(np.corrcoef([x["objects_per_s"] for x in batches], loads)[0, 1])
        line += f"; per-batch rates move with the machine's load average (correlation {corr:+.2f})"
    lines += [line + ".", ""]
    return lines


def write_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imp, sizes = report["import"], report["sizes"]
    batches = imp["batches"]
    fig, (ax1, ax2, ax3) = plt.subplots(
        1, 3, figsize=(17, 5.2), gridspec_kw={"width_ratios": [1.3, 1, 1]}, constrained_layout=True
    )
    x = [b["objects_after"] for b in batches]
    ax1.plot(x, [b["objects_per_s"] for b in batches], color="#1e88e5", lw=1.4, label="per 10k-object batch")
    cumulative, secs = [], 0.0
    for b in batches:
        secs += b["seconds"]
        cumulative.append(b["objects_after"] / secs)
    ax1.plot(x, cumulative, color="#0d47a1", lw=1.4, ls="--", label="overall so far")
    for s in sizes:
        ax1.axvline(s["objects"], color="#9e9e9e", lw=0.8, ls=":")
    ax1.set_xlabel("objects in the index")
    ax1.set_ylabel("objects/s imported (upsert_segment)")
    ax1.set_ylim(bottom=0)
    ax1.grid(alpha=0.3)
    ax1r = ax1.twinx()
    ax1r.plot(x, [(b["weaviate_rss_mib"] or 0) / 1024 for b in batches], color="#e53935", lw=1.2, label="Weaviate RSS")
    ax1r.set_ylabel("Weaviate RSS (GiB)", color="#e53935")
    ax1r.set_ylim(bottom=0)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax1r.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=8)
    title = f"Import: {imp['objects']:,} objects, {imp['objects_per_s']:,.0f} objects/s overall"
    if not imp["reached_target"]:
        title += f"\n(stopped by the time budget; target {imp['target_objects']:,})"
    ax1.set_title(title, fontsize=10)
    ax1.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: size_label(int(v)) if v else "0"))

    ns = [s["objects"] for s in sizes]
    for key, colour in (("k20", "#1e88e5"), ("k100", "#fb8c00")):
        k = sizes[0][key]["k"] if sizes else 0
        for stat, style in (("p50_ms", "-o"), ("p90_ms", ":^"), ("p99_ms", "--s")):
            ax2.plot(
                ns,
                [s[key]["latency"][stat] for s in sizes],
                style,
                color=colour,
                ms=4,
                lw=1.2,
                label=f"k={k} {stat.split('_')[0]}",
            )
    ax2.plot(
        ns,
        [s["direct_near_vector_k20"]["unfiltered"]["p50_ms"] for s in sizes],
        "-.x",
        color="#43a047",
        ms=5,
        lw=1,
        label="direct near_vector k=20, no filter, p50",
    )
    ax2.set_xscale("log")
    ax2.set_xticks(ns, [size_label(n) for n in ns])
    ax2.minorticks_off()
    ax2.set_xlabel("objects in the index")
    ax2.set_ylabel("ms per request")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2)
    ax2.set_title("GET …/objects/{id}/similar through the API, sequential", fontsize=10)

    parts = [
        ("weaviate_fetch_vector", "Weaviate: fetch query vector", "#8e24aa"),
        ("weaviate_near_vector", "Weaviate: near_vector (id filter)", "#e53935"),
        ("postgres", "Postgres", "#1e88e5"),
        ("other", "auth + FastAPI + JSON + HTTP", "#9e9e9e"),
    ]
    labels = [size_label(n) for n in ns]
    bottom = [0.0] * len(sizes)
    for key, name, colour in parts:
        vals = [s["k20"]["mean_breakdown_ms"][key] for s in sizes]
        ax3.bar(labels, vals, bottom=bottom, color=colour, label=name, width=0.6)
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax3.set_xlabel("objects in the index")
    ax3.set_ylabel("mean ms per request (k=20)")
    ax3.legend(fontsize=8)
    ax3.grid(axis="y", alpha=0.3)
    ax3.set_title("Where a k=20 request's time goes", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------


def index_settings_arg(text: str) -> Any:
    from vidsearch.params import IndexSettings

    try:
        return IndexSettings.model_validate_json(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not IndexSettings JSON: {exc}") from exc


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        mult = 1_000_000 if part.endswith("m") else 1000 if part.endswith("k") else 1
        value = int(float(part.rstrip("mk")) * mult)
        if value <= 0 or value % BATCH_OBJECTS:
            raise argparse.ArgumentTypeError(f"sizes must be positive multiples of {BATCH_OBJECTS:,}: {part}")
        sizes.append(value)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Similar-object latency through the API and import rate (JSON, Markdown, PNG)."
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="index sizes to measure at, multiples of 10k (default 10k,100k,250k,500k,1M; the largest is the target)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=1500.0,
        help="seconds for the whole run; the import stops early to stay within it (default 1500)",
    )
    parser.add_argument(
        "--writers",
        type=int,
        default=4,
        help="threads calling upsert_segment (default 4, the slots of the DAG's weaviate_writers pool)",
    )
    parser.add_argument("--queries", type=int, default=300, help="measured k=20 requests per size (default 300)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--index-settings",
        type=index_settings_arg,
        default=None,
        metavar="JSON",
        help="the collection's vector index (vidsearch.params.IndexSettings as JSON); default: the project's defaults",
    )
    parser.add_argument(
        "--weaviate-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a Weaviate server setting (one of {', '.join(TUNING_ENV)}); repeatable",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reports", help="report folder")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary folder (servers' data, logs)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only write search.md and search.png again from an existing search.json (into --out)",
    )
    args = parser.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        write_markdown(report, args.out / "search.md")
        write_chart(report, args.out / "search.png")
        say(f"wrote {args.out / 'search.md'} and search.png from {args.render}")
        return 0
    if args.writers < 1 or args.queries < 10:
        parser.error("--writers must be >= 1 and --queries >= 10")
    server_env = {}
    for item in args.weaviate_env:
        key, sep, value = item.partition("=")
        if not sep or key not in TUNING_ENV:
            parser.error(f"--weaviate-env takes KEY=VALUE with KEY one of {', '.join(TUNING_ENV)}: {item!r}")
        server_env[key] = value
    for key in TUNING_ENV:
        os.environ.pop(key, None)
    os.environ.update(server_env)

    from vidsearch.stores import index as vindex

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet()
    t_start = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    base = Path(tempfile.mkdtemp(prefix="vidsearch-bench-search-"))
    stack = Stack(base)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "generated_at": started_at.isoformat(timespec="seconds"),
        "command": ".venv/bin/python " + " ".join(["bench/search.py", *sys.argv[1:]]),
        "config": {
            "sizes": sorted(set(args.sizes)),
            "budget_s": args.budget,
            "index_settings": args.index_settings.model_dump() if args.index_settings else None,
            "weaviate_env": server_env,
            "writers": args.writers,
            "queries": args.queries,
            "queries_k100": max(1, args.queries // 3),
            "warmup": WARMUP,
            "seed": args.seed,
            "collection": COLLECTION,
            "dim": DIM,
            "batch_objects": BATCH_OBJECTS,
            "index_batch_size": vindex.BATCH_SIZE,
        },
        "synthetic": {
            "segments_per_video": SEGMENTS_PER_VIDEO,
            "frames_per_segment": FRAMES_PER_SEGMENT,
            "objects_per_frame": OBJECTS_PER_FRAME,
            "segment_seconds": SEGMENT_SECONDS,
            "classes": N_CLASSES,
            "identities": N_IDENTITIES,
            "cast_per_video": CAST_PER_VIDEO,
            "centre_shares": {"global": SHARE_GLOBAL, "class": SHARE_CLASS, "identity": SHARE_IDENTITY},
            "appearance_sq": APPEARANCE_SQ,
            "noise_sq": NOISE_SQ,
        },
        "setup": {},
        "import": {},
        "sizes": [],
    }
    report["machine"] = machine_facts()
    report["machine"]["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    failed: BaseException | None = None
    try:
        say(f"starting Postgres and Weaviate under {base}")
        t0 = time.perf_counter()
        stack.start()
        report["setup"]["stack_start_s"] = r(time.perf_counter() - t0, 1)
        run(args, stack, report, t_start)
    except BaseException as exc:  # noqa: BLE001 - write what was measured, then re-raise
        failed = exc
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stack.stop()
        if args.keep_temp:
            say(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    report["runtime_s"] = r(time.perf_counter() - t_start, 1)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(report, indent=2) + "\n")
    if failed is not None:
        say(f"failed after {report['runtime_s']:.0f} s; partial results in {out / 'search.json'}")
        raise failed
    write_markdown(report, out / "search.md")
    write_chart(report, out / "search.png")
    say(f"wrote {out / 'search.json'}, search.md, search.png in {report['runtime_s']:.0f} s")
    print((out / "search.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
