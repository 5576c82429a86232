"""Vector index settings, measured (issue 15): which HNSW and quantiser settings to default to.

For each configuration (`vidsearch.params.IndexSettings`), a fresh Weaviate server gets the same
synthetic objects (`bench/search.py`'s generator: 512-d vectors of 80 classes and 4,000 identities)
through the project's import path (`ObjectIndex.upsert_segment`, 4 writer threads, 100 objects per
call), then answers k=20 searches the way the API's similar-object search asks them: near the stored
vector of a random object (`near_object`), that object excluded by an id filter. Per configuration:
import rate, Weaviate resident memory and disk after the import, search p50/p90/p99 (sequential, from
this process; the API's own overhead is `make bench-search`'s subject), and recall@20 against exact
cosine search over every imported vector (the query object excluded). One run, one machine, the
machine's load next to every figure.

    .venv/bin/python bench/search_sweep.py --objects 250000

writes bench/reports/search_sweep.{json,md,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib
import search as bs
from benchlib import quiet, r
from devstack.weaviate import TUNING_ENV

SCHEMA_VERSION = 1
COLLECTION = "sweep"
K = 20

# The index docs/configuration.md recommends for large collections.
LARGE: dict[str, Any] = {"quantizer": "rq8", "rescore_limit": 200, "ef_construction": 256}

# name -> IndexSettings fields, and optionally `env`: the Weaviate server's tuning variables
# (devstack.weaviate.TUNING_ENV). The first is today's default (Weaviate's).
CONFIGS: dict[str, dict[str, Any]] = {
    "default (ef dyn 100-500, efC 128, M 32)": {},
    "ef dyn 200-800": {"dynamic_ef_min": 200, "dynamic_ef_max": 800, "dynamic_ef_factor": 10},
    "efC 256, M 32": {"ef_construction": 256},
    "efC 64, M 16": {"ef_construction": 64, "max_connections": 16},
    "rq8 (rescore 200)": {"quantizer": "rq8", "rescore_limit": 200},
    "rq8 (rescore 200), ef dyn 200-800": {
        "quantizer": "rq8",
        "rescore_limit": 200,
        "dynamic_ef_min": 200,
        "dynamic_ef_max": 800,
        "dynamic_ef_factor": 10,
    },
    "efC 192, M 32": {"ef_construction": 192},
    "rq8 (rescore 200), efC 256": LARGE,
    "sq (rescore 200)": {"quantizer": "sq", "rescore_limit": 200},
    "bq": {"quantizer": "bq"},
    # Server settings (the `env` entry; docs/configuration.md), with the large-collection index.
    "rq8 (rescore 200), efC 256, pread": {**LARGE, "env": {"PERSISTENCE_LSM_ACCESS_STRATEGY": "pread"}},
    "rq8 (rescore 200), efC 256, async indexing": {**LARGE, "env": {"ASYNC_INDEXING": "true"}},
    "rq1 (rescore 400), efC 256, pread": {
        **LARGE,
        "quantizer": "rq1",
        "rescore_limit": 400,
        "env": {"PERSISTENCE_LSM_ACCESS_STRATEGY": "pread"},
    },
}


def say(message: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", flush=True)


def measure(name: str, fields: dict[str, Any], data: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    from vidsearch.params import IndexSettings
    from vidsearch.stores.index import ObjectIndex, StoredVector, weaviate_collection_name

    fields = dict(fields)
    server_env = fields.pop("env", {})
    unknown = set(server_env) - set(TUNING_ENV)
    if unknown:
        raise ValueError(f"{name}: not Weaviate tuning variables: {sorted(unknown)}")
    settings = IndexSettings(**fields)
    base = Path(tempfile.mkdtemp(prefix="vidsearch-sweep-"))
    stack = benchlib.ServerStack(base)
    saved = {k: os.environ.get(k) for k in TUNING_ENV}
    for k in TUNING_ENV:
        os.environ.pop(k, None)
    os.environ.update(server_env)
    try:
        stack.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out: dict[str, Any] = {
        "name": name,
        "settings": settings.model_dump(),
        "weaviate_env": server_env,
        "load_at_start": os.getloadavg()[0],
    }
    try:
        client = stack.weaviate_client()
        index = ObjectIndex(client)
        index.ensure_collection(COLLECTION, settings)
        assert index.index_settings(COLLECTION) == settings
        w_pid = stack.weaviate.pid
        rss_before = bs.rss_mib(w_pid) or 0.0
        ids: list[str] = []
        t0 = time.perf_counter()
        loads = []
        with ThreadPoolExecutor(args.writers) as writers:
            for batch in data:
                offsets = [i * bs.OBJECTS_PER_SEGMENT for i in range(len(batch["segments"]))]

                def upsert(i: int, batch: dict[str, Any] = batch, offsets: list[int] = offsets) -> None:
                    vid, s, objs = batch["segments"][i]
                    vecs = batch["vectors"][offsets[i] : offsets[i] + bs.OBJECTS_PER_SEGMENT]
                    index.upsert_segment(COLLECTION, vid, s, objs, vecs)

                list(writers.map(upsert, range(len(batch["segments"]))))
                loads.append(os.getloadavg()[0])
                for _, _, objs in batch["segments"]:
                    ids.extend(o.object_id for o in objs)
        written_s = time.perf_counter() - t0
        # With asynchronous indexing the writes return before the HNSW graph has them: the import
        # counts until the vector queue is empty.
        index_wait_s = bs.wait_indexed(client, weaviate_collection_name(COLLECTION))
        import_s = time.perf_counter() - t0
        n = len(ids)
        out["import"] = {
            "objects": n,
            "seconds": r(import_s, 1),
            "objects_per_s": r(n / import_s, 1),
            "written_s": r(written_s, 1),
            "index_wait_s": r(index_wait_s, 1),
        }
        say(
            f"{name}: imported {n:,} in {import_s:.0f} s ({n / import_s:,.0f}/s; waited {index_wait_s:.0f} s for the index)"
        )
        time.sleep(2)  # let background compaction of the last batch start before memory is read
        vectors = np.concatenate([b["vectors"] for b in data])
        rng = np.random.default_rng([args.seed, 9])
        picks = rng.choice(n, bs.WARMUP + args.queries, replace=False)
        times, found = [], []
        for j, row in enumerate(picks):
            t = time.perf_counter()
            own = ids[int(row)]
            if args.self_exclusion == "filter":
                hits = index.near(COLLECTION, StoredVector(own), K, -1.0, exclude_ids=[own])
            else:  # one more, unfiltered, and the query object dropped afterwards
                hits = [h for h in index.near(COLLECTION, StoredVector(own), K + 1, -1.0) if h[0] != own][:K]
            elapsed = time.perf_counter() - t
            if j >= bs.WARMUP:
                times.append(elapsed)
                found.append([h for h, _ in hits])
        measured = picks[bs.WARMUP :]
        exact = bs.exact_top(vectors, n, np.asarray(measured, dtype=np.int64), K)
        row_of = {oid: i for i, oid in enumerate(ids)}
        recall = [len({row_of[h] for h in got} & set(exact[i].tolist())) / K for i, got in enumerate(found)]
        out["search"] = {**bs.stats_ms(times), "recall_at_20": r(float(np.mean(recall)), 4)}
        out["weaviate_rss_mib"] = bs.rss_mib(w_pid)
        out["weaviate_rss_parts_mib"] = bs.rss_parts_mib(w_pid)
        out["weaviate_rss_before_mib"] = rss_before
        out["weaviate_disk_mib"] = bs.dir_mib(stack.weaviate.data_dir)
        out["load_mean"] = r(float(np.mean(loads + [os.getloadavg()[0]])), 2)
        s = out["search"]
        say(
            f"{name}: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, recall@20 {s['recall_at_20']:.3f}, "
            f"RSS {out['weaviate_rss_mib'] / 1024:.2f} GiB"
        )
        client.close()
    finally:
        stack.stop()
    return out


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The readable report; its raw figures are in the JSON of the same name."""
    n = report["config"]["objects"]
    lines = [
        "# Vector index settings sweep",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` in {report['runtime_s']:.0f} s.",
        "",
        f"Machine: {report['machine']}. Load average (1 min) {report['load_start']:.2f} at the start, "
        f"{report['load_end']:.2f} at the end.",
        "",
        f"{n:,} synthetic 512-d objects (bench/search.py's generator, seed {report['config']['seed']}) per "
        "configuration, each in a fresh Weaviate, imported through `ObjectIndex.upsert_segment` "
        f"({report['config']['writers']} writer threads); then {report['config']['queries']} k=20 searches near a "
        "random object's stored vector with that object excluded, sequential, from the benchmark process: "
        + (
            "by an id filter inside Weaviate (what the API asks today)"
            if report["config"].get("self_exclusion", "filter") == "filter"
            else "by asking for 21 unfiltered and dropping it"
        )
        + ". Recall against exact cosine search over every vector.",
        "",
        "| configuration | import (objects/s) | p50 (ms) | p90 (ms) | p99 (ms) | recall@20 | Weaviate RSS (GiB) | "
        "of it anonymous / file-backed (GiB) | on disk (GiB) | load mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["configs"]:
        if "error" in c:
            lines.append(f"| {c['name']} | failed: {c['error']} | | | | | | | | |")
            continue
        s = c["search"]
        parts = c.get("weaviate_rss_parts_mib") or {}
        split = (
            f"{parts['RssAnon'] / 1024:.2f} / {parts['RssFile'] / 1024:.2f}"
            if "RssAnon" in parts and "RssFile" in parts
            else "n/a"
        )
        lines.append(
            f"| {c['name']} | {c['import']['objects_per_s']:,.0f} | {s['p50_ms']:.1f} | {s['p90_ms']:.1f} | "
            f"{s['p99_ms']:.1f} | {s['recall_at_20']:.3f} | {c['weaviate_rss_mib'] / 1024:.2f} | {split} | "
            f"{c['weaviate_disk_mib'] / 1024:.2f} | {c['load_mean']:.2f} |"
        )
    lines += [
        "",
        "Import rates count until the vector index holds every object (with asynchronous indexing, until "
        "Weaviate's vector queue is empty). File-backed memory is memory-mapped LSM segments, which the "
        "kernel drops under pressure; `PERSISTENCE_LSM_ACCESS_STRATEGY=pread` reads them without mapping.",
    ]
    lines += ["", f"Every raw figure is in `{path.with_suffix('.json').name}`.", ""]
    path.write_text("\n".join(lines))


def write_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in report["configs"] if "search" in c]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    for c in ok:
        a.scatter(c["search"]["p99_ms"], c["search"]["recall_at_20"])
        a.annotate(c["name"], (c["search"]["p99_ms"], c["search"]["recall_at_20"]), fontsize=7)
        b.scatter(c["weaviate_rss_mib"] / 1024, c["search"]["recall_at_20"])
        b.annotate(c["name"], (c["weaviate_rss_mib"] / 1024, c["search"]["recall_at_20"]), fontsize=7)
    a.set_xlabel("k=20 p99 (ms)")
    b.set_xlabel("Weaviate resident memory (GiB)")
    for ax in (a, b):
        ax.set_ylabel("recall@20")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Index settings at {report['config']['objects']:,} objects")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=250_000, help="objects per configuration (multiple of 10k)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    parser.add_argument(
        "--self-exclusion",
        choices=("filter", "overfetch"),
        default="filter",
        help="leave the query object out by an id filter inside Weaviate (the API today), or ask for k+1 "
        "unfiltered and drop it",
    )
    parser.add_argument("--tag", default="", help="suffix of the report files (search_sweep<tag>.*)")
    parser.add_argument("--out", type=Path, default=bs.ROOT / "bench" / "reports")
    args = parser.parse_args()
    if args.objects % bs.BATCH_OBJECTS:
        parser.error(f"--objects must be a multiple of {bs.BATCH_OBJECTS:,}")
    quiet()
    started = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": ".venv/bin/python " + " ".join(["bench/search_sweep.py", *sys.argv[1:]]),
        "config": {
            "objects": args.objects,
            "queries": args.queries,
            "writers": args.writers,
            "seed": args.seed,
            "self_exclusion": args.self_exclusion,
        },
        "machine": f"{os.cpu_count()} CPU, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "load_start": os.getloadavg()[0],
        "configs": [],
    }
    say(f"generating {args.objects:,} objects")
    synth = bs.Synth(args.seed)
    data = [synth.batch(b) for b in range(args.objects // bs.BATCH_OBJECTS)]
    for name, fields in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        try:
            report["configs"].append(measure(name, fields, data, args))
        except Exception as exc:  # noqa: BLE001 - a configuration the server refuses is a result too
            say(f"{name}: failed: {exc}")
            report["configs"].append({"name": name, "settings": fields, "error": str(exc)[:300]})
    report["load_end"] = os.getloadavg()[0]
    report["runtime_s"] = r(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"search_sweep{args.tag}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, args.out / f"{stem}.md")
    write_chart(report, args.out / f"{stem}.png")
    say(f"wrote {args.out / stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
