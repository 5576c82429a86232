"""Detect+embed throughput of the worker's own code on a GPU: full-size DETR-ResNet-50 + CLIP ViT-B/32.

Weights are random (built from the models' default configs and saved with `save_pretrained`, then
loaded through the same `Detector` / `Embedder` classes the worker uses): the FLOPs are those of the
real models. Frames are 1280x720 RGB with a fixed number of boxes per frame for the embedder, so the
embed cost does not depend on what random weights happen to detect.

    python bench/gpu_detect_embed.py                      # on a CUDA machine; writes bench/reports/
    python bench/gpu_detect_embed.py --smoke --device cpu # a seconds-long check that the script works

Reports frames/s (detect + embed, end to end through the library), the split between detect and
embed, and the GPU busy fraction sampled from nvidia-smi while each configuration runs. Target:
>= 1000 frames/s on one H100.

The sweep is dtype x batch size with the library's defaults (preprocessing on the device, NHWC backbone
on CUDA); then, at the fastest setting, two ablations: preprocessing on the host (transformers'
processors on numpy frames, one crop at a time) and the backbone in NCHW. Crops have random sizes, as
real detections do, so per-crop preprocessing pays its real price.

    python bench/gpu_detect_embed.py --device cpu --frames 32 --batch-sizes 8 --dtypes float32 \
        --out-name detect_embed_cpu                       # the same measurement on this machine's CPU
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

import benchlib  # noqa: E402  (bench/ is on sys.path: the script runs as python bench/gpu_detect_embed.py)


def build_models(folder: Path, smoke: bool) -> tuple[str, str]:
    """Random-init full-size (or, with `smoke`, tiny) models saved for `from_pretrained`."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        DetrConfig,
        DetrForObjectDetection,
        DetrImageProcessor,
        ResNetConfig,
    )

    torch.manual_seed(0)
    if smoke:
        from vidsearch.models import modelstore

        return (
            str(modelstore.ensure_tiny_model("detector", folder)),
            str(modelstore.ensure_tiny_model("embedder", folder)),
        )
    detr = DetrConfig(
        use_timm_backbone=False,
        backbone_config=ResNetConfig(out_features=["stage4"]),  # ResNet-50 layout
        use_pretrained_backbone=False,
    )
    det_dir, emb_dir = folder / "detr-resnet-50-random", folder / "clip-vit-b32-random"
    DetrForObjectDetection(detr).save_pretrained(det_dir)
    DetrImageProcessor().save_pretrained(det_dir)
    CLIPModel(CLIPConfig()).save_pretrained(emb_dir)  # defaults are ViT-B/32 with a 512-d projection
    CLIPImageProcessor().save_pretrained(emb_dir)
    return str(det_dir), str(emb_dir)


class GpuSampler:
    """Samples nvidia-smi's utilization.gpu every 100 ms in a thread (None where there is no GPU)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                self.samples.append(float(out.splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(0.1)

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def busy_fraction(self) -> float | None:
        return round(float(np.mean(self.samples)) / 100.0, 3) if self.samples else None


def run_config(
    det_path: str,
    emb_path: str,
    device: str,
    dtype: str,
    batch: int,
    frames: list,
    boxes: list,
    *,
    preprocess: str = "device",
    channels_last: bool | None = None,
) -> dict:
    import torch
    from vidsearch.models.detect import Detector
    from vidsearch.models.embed import Embedder

    detector = Detector(det_path, device=device, dtype=dtype, channels_last=channels_last)
    embedder = Embedder(emb_path, device=device, dtype=dtype)
    if preprocess == "host":
        detector.preprocess_on_device = False
        embedder.crop_spec = None
    warm = frames[: 2 * batch]
    detector.detect(warm, 0.0, batch)
    embedder.embed_crops(warm, boxes[: len(warm)], batch * 8)
    sync = torch.cuda.synchronize if torch.cuda.is_available() and device != "cpu" else (lambda: None)
    sync()
    with GpuSampler() as sampler:
        t0 = time.perf_counter()
        detector.detect(frames, 0.0, batch)
        sync()
        t1 = time.perf_counter()
        embedder.embed_crops(frames, boxes, batch * 8)
        sync()
        t2 = time.perf_counter()
    n, crops = len(frames), sum(len(b) for b in boxes)
    return {
        "dtype": dtype,
        "batch_size": batch,
        "preprocess": preprocess,
        "channels_last": detector.channels_last,
        "frames": n,
        "crops": crops,
        "detect_s": round(t1 - t0, 4),
        "embed_s": round(t2 - t1, 4),
        "frames_per_s": rounded(n / (t2 - t0)),
        "detect_frames_per_s": rounded(n / (t1 - t0)),
        "embed_crops_per_s": rounded(crops / (t2 - t1)),
        "gpu_busy_fraction": sampler.busy_fraction,
    }


_COLD_START = """
import json, sys, time
t0 = time.perf_counter()
import torch, transformers
from vidsearch.models.detect import Detector
from vidsearch.models.embed import Embedder
t1 = time.perf_counter()
det_path, emb_path, device, dtype = sys.argv[1:5]
detector = Detector(det_path, device=device, dtype=dtype)
embedder = Embedder(emb_path, device=device, dtype=dtype)
sync = torch.cuda.synchronize if torch.cuda.is_available() and device != "cpu" else (lambda: None)
sync()
t2 = time.perf_counter()
import numpy as np
from vidsearch.records import Box
frames = [np.zeros((720, 1280, 3), dtype=np.uint8)] * 2
detector.detect(frames, 0.0, 2)
embedder.embed_crops(frames, [[Box(x0=0, y0=0, x1=200, y1=100)]] * 2, 16)
sync()
t3 = time.perf_counter()
print(json.dumps({"import_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3), "first_batch_s": round(t3 - t2, 3)}))
"""


def cold_start(det_path: str, emb_path: str, device: str, dtype: str, repeats: int = 3) -> dict:
    """What a fresh worker process (a pod per segment) pays before its first useful frame: importing
    torch/transformers and the library, loading both models from local disk onto the device, the
    first (warm-up) batch. Best of `repeats` fresh processes (the page cache is warm after the first:
    a node-local model cache)."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT / "include"), "OMP_WAIT_POLICY": "PASSIVE"}
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", _COLD_START, det_path, emb_path, device, dtype],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            check=True,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["process_s"] = round(time.perf_counter() - t0, 3)
        runs.append(row)
    best = min(runs, key=lambda r: r["process_s"])
    return {"device": device, "dtype": dtype, "runs": runs, "best": best}


def rounded(rate: float) -> float:
    """A rate with three significant digits (CPU rates are fractions of a frame per second)."""
    return float(f"{rate:.3g}")


def random_boxes(rng: np.random.Generator, count: int, width: int, height: int) -> list:
    """`count` boxes of random position and size (40 px up to half the frame each way) inside a frame."""
    from vidsearch.records import Box

    out = []
    for _ in range(count):
        w = float(rng.uniform(40, width / 2))
        h = float(rng.uniform(40, height / 2))
        x0 = float(rng.uniform(0, width - w))
        y0 = float(rng.uniform(0, height - h))
        out.append(Box(x0=round(x0, 2), y0=round(y0, 2), x1=round(x0 + w, 2), y1=round(y0 + h, 2)))
    return out


def write_report(report: dict, out: Path, name: str) -> None:
    """`<name>.json` (every number) and `<name>.md` (the table) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    best = max(report["results"], key=lambda r: r["frames_per_s"])
    lines = [
        f"# detect+embed on {report['device']} ({report['date']})",
        "",
        f"{report['models']}, {report['frame_size']} frames, {report['boxes_per_frame']} crops per frame of "
        f"random size. torch {report['torch']}, transformers {report['transformers']}, "
        f"{report['cpu_threads']} CPU threads.",
        "",
        f"Command: `{report['command']}`. Target: {report['target_frames_per_s']} frames/s on one H100; "
        f"best here: {best['frames_per_s']} frames/s ({best['dtype']}, batch {best['batch_size']}, "
        f"preprocessing on the {best['preprocess']}, NHWC {best['channels_last']}).",
        "",
        "| dtype | batch | preprocess | NHWC | frames/s | detect frames/s | embed crops/s | GPU busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        busy = "-" if r["gpu_busy_fraction"] is None else r["gpu_busy_fraction"]
        lines.append(
            f"| {r['dtype']} | {r['batch_size']} | {r['preprocess']} | {r['channels_last']} | {r['frames_per_s']} | "
            f"{r['detect_frames_per_s']} | {r['embed_crops_per_s']} | {busy} |"
        )
    if report.get("cold_start"):
        c = report["cold_start"]["best"]
        lines += [
            "",
            f"A fresh worker process (what a pod per segment pays, best of {len(report['cold_start']['runs'])}): "
            f"{c['process_s']} s in all: imports {c['import_s']} s, loading both models {c['load_s']} s, "
            f"first batch {c['first_batch_s']} s.",
        ]
    lines += ["", *report.get("notes", [])]
    (out / f"{name}.md").write_text("\n".join(lines).rstrip() + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--boxes-per-frame", type=int, default=8)
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--dtypes", default="float32,float16,bfloat16")
    parser.add_argument("--smoke", action="store_true", help="tiny models, few frames: checks the script runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "reports")
    parser.add_argument("--out-name", default="gpu_detect_embed", help="report file name, without extension")
    parser.add_argument("--no-ablations", action="store_true", help="skip the host-preprocessing and NCHW rows")
    parser.add_argument(
        "--cold-start-only",
        action="store_true",
        help="only measure a fresh worker process's import + model load + first batch (the cost model's input)",
    )
    args = parser.parse_args()

    import torch
    import transformers

    if args.smoke:
        args.frames, args.batch_sizes, args.dtypes = 8, "4", "float32"
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(min(args.frames, 64))]
    frames = (frames * (args.frames // len(frames) + 1))[: args.frames]
    boxes = [random_boxes(rng, args.boxes_per_frame, 1280, 720) for _ in frames]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        det_path, emb_path = build_models(Path(tmp), args.smoke)
        start = cold_start(det_path, emb_path, args.device, args.dtypes.split(",")[0])
        print(json.dumps({"cold_start": start["best"]}), flush=True)
        if args.cold_start_only:
            report = {
                "benchmark": "worker_cold_start",
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "device": benchlib.cpu_model() or platform.machine() if args.device == "cpu" else args.device,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "models": "DETR-ResNet-50 + CLIP ViT-B/32, random init, safetensors on local disk",
                "command": " ".join(["python", "bench/gpu_detect_embed.py", *sys.argv[1:]]),
                "cold_start": start,
            }
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{args.out_name}.json").write_text(json.dumps(report, indent=2) + "\n")
            return 0

        def measure(dtype: str, batch: int, **options: object) -> dict:
            row = run_config(det_path, emb_path, args.device, dtype, batch, frames, boxes, **options)
            print(json.dumps(row), flush=True)
            results.append(row)
            return row

        for dtype in args.dtypes.split(","):
            for batch in map(int, args.batch_sizes.split(",")):
                measure(dtype, batch)
        best = max(results, key=lambda r: r["frames_per_s"])
        if not args.no_ablations:
            measure(best["dtype"], best["batch_size"], preprocess="host")
            measure(best["dtype"], best["batch_size"], channels_last=not best["channels_last"])
    if args.smoke:
        return 0
    report = {
        "benchmark": "gpu_detect_embed",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0)
        if torch.cuda.is_available() and args.device != "cpu"
        else benchlib.cpu_model() or platform.machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "models": "DETR-ResNet-50 + CLIP ViT-B/32, random init (same FLOPs)",
        "frame_size": "1280x720",
        "boxes_per_frame": args.boxes_per_frame,
        "cpu_threads": torch.get_num_threads(),
        "command": " ".join(["python", "bench/gpu_detect_embed.py", *sys.argv[1:]]),
        "target_frames_per_s": 1000,
        "results": results,
        "best_frames_per_s": max(r["frames_per_s"] for r in results),
        "cold_start": start,
    }
    write_report(report, args.out, args.out_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
