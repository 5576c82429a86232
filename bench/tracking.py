"""Tracking benchmark: `vidsearch.tracking` on a generated street scene with known trajectories.

    .venv/bin/python bench/tracking.py [--seed 0] [--heldout 100-109] [--tune 1-5] [--out bench/reports]
    .venv/bin/python bench/tracking.py --render bench/reports/tracking.json   # redraw tracking.md and .png

What it does (docs/tracking.md explains how to read it):

1. Generates a scene (`make_scene`): 1280x720, 60 s sampled at 1 fps, cut into 10 s segments (so tracks
   must be stitched across 5 boundaries). About ten objects (persons, cars, a dog; one parked car) enter
   from a side and cross the frame at different speeds (persons 30-110 px/s, cars 120-300 px/s: at 1 fps
   a walking person moves about its own width between samples), pairs of persons walk towards each other
   on nearly the same line and cross, and about half the objects are hidden for 2-4 frames
   (occlusion). Ground truth is the box of every visible object in every frame.
2. Synthesises detections from it: box jitter (4 % of the size), 7 % random misses, misses when an object
   is mostly covered by a nearer one, about 0.7 false positives per frame, 5 % of cars labelled `truck`.
   Embeddings (512-d, CLIP ViT-B/32's dimension) are `normalise(a*G + a*C[label] + a*O[object] + noise)`:
   a direction shared by all crops, one per class, one per object; the two persons of the first crossing
   pair look alike (object directions with cosine 0.8); a crop partly covered by a nearer object mixes in
   that object's appearance. The report lists the resulting cosine similarities (same object, same class,
   the look-alike pair, unrelated), the assumption everything else rests on.
3. Tracks every segment with `track_segment`, stitches adjacent segments (`segment_track_ends`, `stitch`)
   and names the tracks (`track_ids`); scores the whole video with motmetrics (MOTA, IDF1, ID switches,
   boxes matched at IoU >= 0.5) and counts the objects stitched across every boundary they cross (their
   matched track id is the same in the last frame before and the first frame after each). Ablations:
   IoU only, appearance only, no motion prediction, no stitching, labels not required to match.
4. The defaults (`TrackerConfig()`) were tuned on the `--tune` seeds: `--tune` also re-runs that grid and
   records it. The reported figures are for `--seed` and the held-out seeds, none of them a tuning seed.
5. Writes tracking.json (everything), tracking.md (a summary) and tracking.png (charts).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import fmt, load_note, machine_facts, r, version
from vidsearch.tracking import (
    FrameDetections,
    TrackerConfig,
    iou_matrix,
    segment_track_ends,
    stitch,
    track_ids,
    track_segment,
)

WIDTH, HEIGHT = 1280, 720
DURATION_S = 60
FPS = 1.0
SEGMENT_S = 10
DIM = 512
MATCH_IOU = 0.5  # motmetrics: a hypothesis box matches a ground-truth box at IoU >= 0.5

# Per label: (width range, height range, speed range px/s, band of y for the box bottom).
KINDS = {
    "person": ((50, 70), (130, 170), (30, 110), (330, 470)),
    "car": ((160, 220), (80, 110), (120, 300), (520, 690)),
    "dog": ((60, 80), (40, 50), (60, 150), (430, 520)),
}
BASE_WEIGHT = 0.55  # of the shared, class and object directions in an embedding
NOISE = 0.35  # per-crop noise (norm); same-object cosine about 0.88
LOOKALIKE_COSINE = 0.8  # object directions of the look-alike pair


@dataclasses.dataclass
class GTObject:
    gid: int
    label: str
    size: tuple[float, float]
    start_t: float
    start_xy: tuple[float, float]  # box bottom centre
    velocity: tuple[float, float]
    end_t: float
    hidden: tuple[int, ...]  # frame numbers it is occluded in


def _unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_scene(seed: int) -> dict[str, Any]:
    """Ground-truth objects, their boxes per frame, and appearance directions."""
    rng = np.random.default_rng(seed)
    n_frames = int(DURATION_S * FPS)
    objects: list[GTObject] = []

    def add(label: str, start_t: float, from_left: bool, y: float, speed: float, size=None) -> GTObject:
        (w0, w1), (h0, h1), _, _ = KINDS[label]
        w, h = size or (float(rng.uniform(w0, w1)), float(rng.uniform(h0, h1)))
        x = w / 2 + 1 if from_left else WIDTH - w / 2 - 1
        vx = speed if from_left else -speed
        vy = float(rng.uniform(-3, 3))
        end_t = start_t + (WIDTH - w - 2) / speed if speed else DURATION_S
        obj = GTObject(len(objects), label, (w, h), start_t, (x, y), (vx, vy), min(end_t, DURATION_S), ())
        objects.append(obj)
        return obj

    # Two pairs of persons walking towards each other on nearly one line (the first pair look alike).
    for _ in range(2):
        t0 = float(rng.uniform(0, 20))
        y = float(rng.uniform(*KINDS["person"][3]))
        s1, s2 = float(rng.uniform(*KINDS["person"][2])), float(rng.uniform(*KINDS["person"][2]))
        add("person", t0, True, y, s1)
        add("person", t0 + float(rng.uniform(-3, 3)) if t0 > 3 else t0, False, y + float(rng.uniform(-15, 15)), s2)
    # Other persons, cars, a dog, at random times and sides; one parked car.
    for label in ("person", "person", "car", "car", "car", "dog"):
        t0 = float(rng.uniform(0, DURATION_S - 12))
        add(
            label, t0, bool(rng.integers(2)), float(rng.uniform(*KINDS[label][3])), float(rng.uniform(*KINDS[label][2]))
        )
    parked = add("car", 0.0, True, float(rng.uniform(*KINDS["car"][3])), 0.0)
    parked.start_xy = (float(rng.uniform(300, 1000)), parked.start_xy[1])

    frames_t = np.arange(n_frames) / FPS
    for obj in objects:
        alive = [i for i, t in enumerate(frames_t) if obj.start_t <= t <= obj.end_t]
        if len(alive) > 8 and rng.random() < 0.6:
            length = int(rng.integers(2, 5))
            first = int(rng.integers(alive[2], alive[-2 - length]))
            obj.hidden = tuple(range(first, first + length))

    gt: list[dict[int, np.ndarray]] = []
    for i, t in enumerate(frames_t):
        boxes = {}
        for obj in objects:
            if not obj.start_t <= t <= obj.end_t or i in obj.hidden:
                continue
            dt_ = t - obj.start_t
            cx, by = obj.start_xy[0] + obj.velocity[0] * dt_, obj.start_xy[1] + obj.velocity[1] * dt_
            w, h = obj.size
            box = np.array([cx - w / 2, by - h, cx + w / 2, by])
            box[[0, 2]] = np.clip(box[[0, 2]], 0, WIDTH)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, HEIGHT)
            if (box[2] - box[0]) > 0.3 * w:
                boxes[obj.gid] = box
        gt.append(boxes)

    shared = _unit(rng)[0]
    classes = {label: _unit(rng)[0] for label in (*KINDS, "truck")}
    own = _unit(rng, len(objects))
    own[1] = LOOKALIKE_COSINE * own[0] + np.sqrt(1 - LOOKALIKE_COSINE**2) * _unit(rng)[0]  # the look-alike pair
    base = BASE_WEIGHT * (shared + np.array([classes[o.label] for o in objects]) + own)
    return {"objects": objects, "gt": gt, "frames_t": frames_t, "base": base, "shared": shared, "classes": classes}


def _noisy(rng: np.random.Generator, vector: np.ndarray) -> np.ndarray:
    v = vector + NOISE * rng.normal(size=DIM) / np.sqrt(DIM)
    return v / np.linalg.norm(v)


def synthesise_detections(scene: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Per frame: boxes, embeddings, labels and the ground-truth object of each (-1: false positive)."""
    rng = np.random.default_rng(10_000 + seed)
    objects, base = scene["objects"], scene["base"]
    out = []
    for i, boxes in enumerate(scene["gt"]):
        det_boxes, det_emb, det_labels, det_gid = [], [], [], []
        gids = sorted(boxes)
        for g in gids:
            box = boxes[g]
            w, h = box[2] - box[0], box[3] - box[1]
            # Covered by a nearer object (box bottom lower in the image): appearance mixes, may be missed.
            covered, cover_g = 0.0, None
            for other in gids:
                if other != g and boxes[other][3] > box[3]:
                    ob = boxes[other]
                    ix = max(0.0, min(box[2], ob[2]) - max(box[0], ob[0]))
                    iy = max(0.0, min(box[3], ob[3]) - max(box[1], ob[1]))
                    if ix * iy / (w * h) > covered:
                        covered, cover_g = ix * iy / (w * h), other
            if rng.random() < 0.07 or (covered > 0.7 and rng.random() < 0.8):
                continue
            jitter = rng.normal(size=4) * 0.04 * np.array([w, h, w, h])
            noisy_box = np.clip(box + jitter, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])
            if noisy_box[2] <= noisy_box[0] + 2 or noisy_box[3] <= noisy_box[1] + 2:
                continue
            appearance = base[g]
            if cover_g is not None and covered > 0.2:
                appearance = (1 - covered) * base[g] + covered * base[cover_g]
            label = objects[g].label
            if label == "car" and rng.random() < 0.05:
                label = "truck"
            det_boxes.append(noisy_box)
            det_emb.append(_noisy(rng, appearance))
            det_labels.append(label)
            det_gid.append(g)
        for _ in range(rng.poisson(0.7)):
            label = str(rng.choice(["person", "car", "dog"]))
            (w0, w1), (h0, h1), _, _ = KINDS[label]
            w, h = rng.uniform(w0, w1), rng.uniform(h0, h1)
            x0, y0 = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            det_boxes.append(np.array([x0, y0, x0 + w, y0 + h]))
            clutter = BASE_WEIGHT * (scene["shared"] + scene["classes"][label] + _unit(rng)[0])
            det_emb.append(_noisy(rng, clutter))
            det_labels.append(label)
            det_gid.append(-1)
        order = rng.permutation(len(det_boxes))  # the detector's order says nothing about identity
        out.append(
            {
                "pts_s": float(scene["frames_t"][i]),
                "boxes": np.array(det_boxes).reshape(-1, 4)[order],
                "embeddings": np.array(det_emb).reshape(-1, DIM)[order],
                "labels": [det_labels[k] for k in order],
                "gid": [det_gid[k] for k in order],
            }
        )
    return out


@dataclasses.dataclass(frozen=True)
class _Member:
    object_id: str
    segment_index: int
    pts_s: float
    track: int | None


def run_tracker(detections: list[dict[str, Any]], cfg: TrackerConfig, stitched: bool = True) -> dict[str, Any]:
    """Track every segment, stitch, name: per frame the hypothesis id of each detection."""
    per_segment = int(SEGMENT_S * FPS)
    segments = [detections[s : s + per_segment] for s in range(0, len(detections), per_segment)]
    members: list[_Member] = []
    ends = []
    track_times = []
    for k, frames in enumerate(segments):
        fd = [FrameDetections(f["pts_s"], f["boxes"], f["embeddings"], f["labels"]) for f in frames]
        started = time.perf_counter()
        tracks = track_segment(fd, cfg)
        track_times.append(time.perf_counter() - started)
        ends.append(segment_track_ends(k, fd, tracks, cfg))
        flat = iter(tracks)
        for fi, f in enumerate(frames):
            for j in range(len(f["labels"])):
                members.append(_Member(f"{k}-{fi}-{j}", k, f["pts_s"], next(flat)))
    started = time.perf_counter()
    pairs = []
    if stitched:
        for k in range(len(segments) - 1):
            pairs += stitch(ends[k][0], ends[k + 1][1], cfg)
    ids = track_ids("bench-video", members, pairs)
    stitch_s = time.perf_counter() - started
    numbered = {tid: n for n, tid in enumerate(dict.fromkeys(ids))}
    hyp: list[list[int]] = []
    flat_ids = iter(ids)
    for f in detections:
        hyp.append([numbered[next(flat_ids)] for _ in f["labels"]])
    return {
        "hyp": hyp,
        "tracks": len(numbered),
        "track_s": track_times,
        "stitch_s": stitch_s,
        "pairs": len(pairs),
        "segments": len(segments),
    }


def score(scene: dict[str, Any], detections: list[dict[str, Any]], hyp: list[list[int]]) -> dict[str, Any]:
    """motmetrics over the whole video, plus the boundary-stitching count."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for boxes, frame, ids in zip(scene["gt"], detections, hyp):
        gids = sorted(boxes)
        gt_boxes = np.array([boxes[g] for g in gids]).reshape(-1, 4)
        # motmetrics 1.4.0's iou_matrix uses np.asfarray (gone in numpy 2): the distances are computed here.
        dist = 1.0 - iou_matrix(gt_boxes, frame["boxes"])
        dist[dist > 1.0 - MATCH_IOU] = np.nan
        acc.update(gids, ids, dist)
    mh = mm.metrics.create()
    names = [
        "mota",
        "motp",
        "idf1",
        "idp",
        "idr",
        "num_switches",
        "num_fragmentations",
        "precision",
        "recall",
        "num_false_positives",
        "num_misses",
        "num_objects",
        "num_unique_objects",
        "mostly_tracked",
        "partially_tracked",
        "mostly_lost",
    ]
    summary = mh.compute(acc, metrics=names, name="all")
    metrics: dict[str, Any] = {}
    for n in names:
        v = summary[n].iloc[0]
        metrics[n] = int(v) if n.startswith(("num_", "mostly", "partially")) else r(v, 4)
    metrics["motp_iou"] = r(1.0 - metrics.pop("motp"), 4)

    # Stitched across every boundary: the matched hypothesis id in the last frame before a boundary it
    # is matched in and the first after are equal, for every boundary the object crosses.
    events = acc.mot_events.reset_index()
    matched = events[events["Type"].isin(["MATCH", "SWITCH"])]
    per_segment = int(SEGMENT_S * FPS)
    by_object: dict[int, list[tuple[int, int]]] = {}
    for frame_id, oid, hid in zip(matched["FrameId"], matched["OId"], matched["HId"]):
        by_object.setdefault(int(oid), []).append((int(frame_id), int(hid)))
    crossing = stitched_all = boundary_crossings = boundary_stitched = 0
    for _, seen in sorted(by_object.items()):
        seen.sort()
        segs = {f // per_segment for f, _ in seen}
        boundaries = [k for k in range(min(segs), max(segs)) if k in segs and k + 1 in segs]
        if not boundaries:
            continue
        crossing += 1
        ok_all = True
        for k in boundaries:
            before = [h for f, h in seen if f // per_segment == k][-1]
            after = [h for f, h in seen if f // per_segment == k + 1][0]
            boundary_crossings += 1
            boundary_stitched += before == after
            ok_all &= before == after
        stitched_all += ok_all
    metrics.update(
        objects_crossing_a_boundary=crossing,
        objects_stitched_across_every_boundary=stitched_all,
        boundary_crossings=boundary_crossings,
        boundary_crossings_stitched=boundary_stitched,
    )
    return metrics


def appearance_stats(scene: dict[str, Any], detections: list[dict[str, Any]]) -> dict[str, float]:
    """Mean cosine of detection embeddings: same object, same class, the look-alike pair, unrelated."""
    emb = np.concatenate([f["embeddings"] for f in detections])
    gid = np.concatenate([f["gid"] for f in detections]).astype(int)
    labels = {o.gid: o.label for o in scene["objects"]}
    cos = emb @ emb.T
    iu = np.triu_indices(len(gid), 1)
    a, b, c = gid[iu[0]], gid[iu[1]], cos[iu]
    real = (a >= 0) & (b >= 0)
    same_class = real & np.array([labels.get(x) == labels.get(y) for x, y in zip(a, b)])
    pair = real & (((a == 0) & (b == 1)) | ((a == 1) & (b == 0)))
    return {
        "same_object": r(c[real & (a == b)].mean()),
        "same_class_other_object": r(c[same_class & (a != b) & ~pair].mean()),
        "lookalike_pair": r(c[pair].mean()) if pair.any() else None,
        "other_class": r(c[real & ~same_class].mean()),
        "false_positive_vs_object": r(c[(a < 0) ^ (b < 0)].mean()),
    }


VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "iou_only": {"cosine_weight": 0.0, "cosine_threshold": 1.0},
    "appearance_only": {"iou_weight": 0.0, "iou_threshold": 1.0},
    "no_motion_prediction": {"predict_motion": False},
    "labels_need_not_match": {"label_must_match": False},
}


def evaluate(seed: int, cfg: TrackerConfig, stitched: bool = True) -> dict[str, Any]:
    scene = make_scene(seed)
    detections = synthesise_detections(scene, seed)
    run = run_tracker(detections, cfg, stitched)
    return {"scene": scene, "detections": detections, "run": run, "metrics": score(scene, detections, run["hyp"])}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",") if s]


# Only the ratio iou_weight / cosine_weight matters to the assignment, so cosine_weight stays 1.
TUNING_GRID = {
    "iou_threshold": [0.2, 0.3, 0.5],
    "cosine_threshold": [0.7, 0.75, 0.8, 0.85],
    "iou_weight": [0.25, 0.5, 1.0],
    "max_gap": [2, 3, 5],
    "appearance_momentum": [0.0, 0.5, 0.8],
}


def tune(seeds: list[int]) -> dict[str, Any]:
    """Mean IDF1 over `seeds` of every grid point (the defaults were chosen from this)."""
    prepared = []
    for seed in seeds:
        scene = make_scene(seed)
        prepared.append((scene, synthesise_detections(scene, seed)))
    rows = []
    keys = list(TUNING_GRID)
    for values in itertools.product(*(TUNING_GRID[k] for k in keys)):
        cfg = TrackerConfig(**dict(zip(keys, values)))
        idf1 = [score(s, d, run_tracker(d, cfg)["hyp"])["idf1"] for s, d in prepared]
        rows.append({**dict(zip(keys, values)), "idf1_mean": r(float(np.mean(idf1)), 4)})
    rows.sort(key=lambda row: -row["idf1_mean"])
    defaults = {k: getattr(TrackerConfig(), k) for k in keys}
    at_defaults = next(row for row in rows if all(row[k] == defaults[k] for k in keys))
    return {"seeds": seeds, "grid": TUNING_GRID, "top": rows[:10], "defaults": at_defaults, "points": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the reported scene")
    parser.add_argument("--heldout", default="100-109", help="more scenes, none used for tuning")
    parser.add_argument("--tune", default="", help="re-run the tuning grid on these seeds (e.g. 1-5)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "reports"))
    parser.add_argument("--render", help="redraw tracking.md and tracking.png from this tracking.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        report = json.loads(Path(args.render).read_text())
        render(report, Path(args.render).parent)
        return 0

    started = time.perf_counter()
    load_start = [r(x, 2) for x in os.getloadavg()]
    import scipy.optimize  # noqa: F401  (imported once per process: not part of the per-segment time)

    cfg = TrackerConfig()
    main_run = evaluate(args.seed, cfg)
    scene, detections = main_run["scene"], main_run["detections"]
    variants = {name: evaluate(args.seed, dataclasses.replace(cfg, **kw))["metrics"] for name, kw in VARIANTS.items()}
    variants["no_stitching"] = evaluate(args.seed, cfg, stitched=False)["metrics"]

    heldout_seeds = _seeds(args.heldout)
    heldout: dict[str, dict[str, Any]] = {}
    for name, kw in {**VARIANTS, "no_stitching": {}}.items():
        runs = [
            evaluate(s, dataclasses.replace(cfg, **kw), stitched=name != "no_stitching")["metrics"]
            for s in heldout_seeds
        ]
        heldout[name] = {
            m: {"mean": r(float(np.mean([x[m] for x in runs])), 4), "min": r(float(min(x[m] for x in runs)), 4)}
            for m in ("idf1", "mota", "num_switches")
        }
        heldout[name]["stitched_objects"] = {
            "stitched": sum(x["objects_stitched_across_every_boundary"] for x in runs),
            "crossing": sum(x["objects_crossing_a_boundary"] for x in runs),
        }
    tuning = tune(_seeds(args.tune)) if args.tune else None

    n_dets = sum(len(f["labels"]) for f in detections)
    run = main_run["run"]
    report = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "bench/tracking.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "duration_s": r(time.perf_counter() - started, 1),
        "machine": {
            **machine_facts(numpy=version("numpy"), scipy=version("scipy"), motmetrics=version("motmetrics")),
            "loadavg_at_start": load_start,
            "loadavg_at_end": [r(x, 2) for x in os.getloadavg()],
        },
        "scene": {
            "seed": args.seed,
            "size": [WIDTH, HEIGHT],
            "duration_s": DURATION_S,
            "fps": FPS,
            "segment_s": SEGMENT_S,
            "segments": run["segments"],
            "objects": [
                {
                    "gid": o.gid,
                    "label": o.label,
                    "speed_px_s": r(abs(o.velocity[0]), 1),
                    "start_s": r(o.start_t, 1),
                    "end_s": r(o.end_t, 1),
                    "hidden_frames": list(o.hidden),
                }
                for o in scene["objects"]
            ],
            "detections": n_dets,
            "false_positives": sum(g < 0 for f in detections for g in f["gid"]),
            "appearance_cosine": appearance_stats(scene, detections),
        },
        "config": dataclasses.asdict(cfg),
        "metrics": main_run["metrics"],
        "tracks": run["tracks"],
        "stitch_pairs": run["pairs"],
        "timing_ms": {
            "track_segment_mean": r(1000 * float(np.mean(run["track_s"])), 2),
            "track_segment_max": r(1000 * max(run["track_s"]), 2),
            "detections_per_segment": r(n_dets / run["segments"], 1),
            "stitch_and_name_video": r(1000 * run["stitch_s"], 2),
        },
        "variants": variants,
        "heldout": {"seeds": heldout_seeds, "variants": heldout},
        "tuning": tuning,
        "trajectories": {
            "gt": [{str(g): [r(v, 1) for v in b] for g, b in boxes.items()} for boxes in scene["gt"]],
            "detections": [
                {"boxes": [[r(v, 1) for v in b] for b in f["boxes"]], "gid": f["gid"], "hyp": h}
                for f, h in zip(detections, run["hyp"])
            ],
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tracking.json").write_text(json.dumps(report, indent=1) + "\n")
    render(report, out)
    m = report["metrics"]
    print(f"IDF1 {m['idf1']} MOTA {m['mota']} switches {m['num_switches']} -> {out / 'tracking.md'}")
    return 0


def render(report: dict[str, Any], out: Path) -> None:
    m, sc, t = report["metrics"], report["scene"], report["timing_ms"]
    lines = [
        "# Tracking benchmark",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` in {report['duration_s']} s.",
        "",
        f"Machine: {report['machine']['cpu_count']} CPU ({report['machine']['cpu_model']}); numpy "
        f"{report['machine']['numpy']}, scipy {report['machine']['scipy']}, motmetrics {report['machine']['motmetrics']}; "
        f"commit `{(report['machine']['git_commit'] or '')[:10]}`"
        + (" (with local changes)." if report["machine"]["git_dirty"] else "."),
        "",
        load_note(report["machine"]),
        f"Scene (seed {sc['seed']}): {sc['size'][0]}x{sc['size'][1]}, {sc['duration_s']} s at {sc['fps']:g} fps in "
        f"{sc['segments']} segments of {sc['segment_s']} s; {len(sc['objects'])} objects, {sc['detections']} detections "
        f"({sc['false_positives']} false positives). Generated, not filmed: see bench/tracking.py and docs/tracking.md.",
        "",
        "Mean cosine of crop embeddings (the synthetic appearance model): "
        + ", ".join(f"{k.replace('_', ' ')} {fmt(v, 3)}" for k, v in sc["appearance_cosine"].items())
        + ".",
        "",
        "## Summary (defaults, `TrackerConfig()`)",
        "",
        f"* **IDF1 {m['idf1']:.3f}** (target >= 0.8), MOTA {m['mota']:.3f}, **{m['num_switches']} ID switches**, "
        f"{m['num_fragmentations']} fragmentations; precision {m['precision']:.3f}, recall {m['recall']:.3f} "
        f"(IoU >= {MATCH_IOU} matching; misses and false positives are the synthetic detector's, not the tracker's).",
        f"* Stitching: **{m['objects_stitched_across_every_boundary']} of {m['objects_crossing_a_boundary']}** objects "
        f"that cross a segment boundary keep one id across every boundary they cross "
        f"({m['boundary_crossings_stitched']} of {m['boundary_crossings']} crossings).",
        f"* {report['tracks']} tracks for {len(sc['objects'])} objects + {sc['false_positives']} false positives; "
        f"{report['stitch_pairs']} stitch pairs.",
        f"* Time: `track_segment` {t['track_segment_mean']:.2f} ms per segment on average (max {t['track_segment_max']:.2f}; "
        f"{t['detections_per_segment']} detections per segment); stitching and naming the whole video "
        f"{t['stitch_and_name_video']:.2f} ms.",
        "",
        "## Ablations (same scene)",
        "",
        "| variant | IDF1 | MOTA | ID switches | stitched / crossing |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in report["variants"].items():
        lines.append(
            f"| {name} | {v['idf1']:.3f} | {v['mota']:.3f} | {v['num_switches']} | "
            f"{v['objects_stitched_across_every_boundary']} / {v['objects_crossing_a_boundary']} |"
        )
    ho = report["heldout"]
    lines += [
        "",
        f"## Held-out scenes (seeds {ho['seeds'][0]}..{ho['seeds'][-1]}, none used for tuning)",
        "",
        "| variant | IDF1 mean (min) | MOTA mean (min) | ID switches mean | stitched / crossing (all scenes) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in ho["variants"].items():
        lines.append(
            f"| {name} | {v['idf1']['mean']:.3f} ({v['idf1']['min']:.3f}) | {v['mota']['mean']:.3f} ({v['mota']['min']:.3f}) "
            f"| {v['num_switches']['mean']:.1f} | {v['stitched_objects']['stitched']} / {v['stitched_objects']['crossing']} |"
        )
    tuning = report.get("tuning")
    if tuning:
        lines += [
            "",
            f"## Tuning (seeds {tuning['seeds'][0]}..{tuning['seeds'][-1]}, {tuning['points']} grid points, mean IDF1)",
            "",
            f"Defaults: {tuning['defaults']['idf1_mean']:.4f}. Best points:",
            "",
            "| " + " | ".join(tuning["grid"]) + " | IDF1 |",
            "|" + "---:|" * (len(tuning["grid"]) + 1),
        ]
        for row in tuning["top"][:5]:
            lines.append("| " + " | ".join(str(row[k]) for k in tuning["grid"]) + f" | {row['idf1_mean']:.4f} |")
    lines += ["", "![trajectories and ablations](tracking.png)", ""]
    (out / "tracking.md").write_text("\n".join(lines))
    _plot(report, out / "tracking.png")


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    traj = report["trajectories"]
    gt_paths: dict[str, list[tuple[int, float]]] = {}
    for i, boxes in enumerate(traj["gt"]):
        for g, b in boxes.items():
            gt_paths.setdefault(g, []).append((i, (b[0] + b[2]) / 2))
    for points in gt_paths.values():
        ax.plot([p[0] for p in points], [p[1] for p in points], color="0.85", lw=6, zorder=1)
    cmap = plt.get_cmap("tab20")
    for i, f in enumerate(traj["detections"]):
        for b, h in zip(f["boxes"], f["hyp"]):
            ax.scatter(i, (b[0] + b[2]) / 2, color=cmap(h % 20), s=14, zorder=2)
    for k in range(1, report["scene"]["segments"]):
        ax.axvline(k * report["scene"]["segment_s"] * report["scene"]["fps"] - 0.5, color="0.5", ls=":", lw=1)
    ax.set_xlabel("sampled frame (1 fps); dotted: segment boundaries")
    ax.set_ylabel("box centre x (px)")
    ax.set_title("ground truth (grey) and detections coloured by final track id")
    names = list(report["heldout"]["variants"])
    bx.barh(names, [report["heldout"]["variants"][n]["idf1"]["mean"] for n in names], color="tab:blue")
    bx.axvline(0.8, color="tab:red", ls="--", lw=1)
    bx.set_xlim(0, 1)
    bx.invert_yaxis()
    bx.set_title("IDF1, mean over held-out scenes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
