"""The detect+embed worker: one frame bundle in, detected objects and their embeddings out.

    python -m vidsearch.models.worker --frames-uri URI --output-uri PREFIX [options]
    python -m vidsearch.models.worker --check-models [--detector ... --embedder ... options]

It knows nothing about Airflow and touches only object storage URIs, so the same argv runs as a local
subprocess (`launcher.run_local`) or in a Kubernetes GPU pod. Under PREFIX it writes
`embeddings.npy` (float32 N x D, row i <-> objects[i]) and then `result.json` (a DetectEmbedResult):
result.json is written last and marks completion; a stale one is removed before any work starts.
`--check-models` loads the detector and the embedder and exits, touching no bundle: the probe stage
runs it where detect+embed will run, so a model that cannot be loaded fails a run before any segment
is cut (a warm worker keeps the models it checked loaded for the segments that follow).
Frames the bundle marks blank or as repeats of an earlier frame (`FrameRef.detect` false: the
sampler's content rules, `vidsearch.media.content`) are not decoded or detected: they get no objects.
After embedding, the segment's objects are associated into tracks (`vidsearch.tracking.track_segment`,
flags `--track-*`, defaults `TrackerConfig()`): every object gets its segment-local `track`.

Confinement (whoever sent the argv: a task, a warm worker's caller, a pod spec): the worker reads and
writes only under its own storage root, env `VIDSEARCH_STORAGE_ROOT` (`file://<folder>` or
`s3://bucket/prefix`; never taken from the argv). `--frames-uri` and `--output-uri` must lie under it:
no other scheme (http(s), ...), no other bucket or prefix, no `..`, `?` or `#`, no local path that
resolves (symlinks followed) outside the root folder. A worker without a root runs no job. Model
folders are confined by `modelstore.resolve_model` to the model roots (`VIDSEARCH_MODEL_CACHE`,
`VIDSEARCH_MODEL_ROOTS`).

Exit codes (the contract with whoever runs it):
    0   success
    3   permanent error: bad input, bad parameters, model unavailable. Do not retry. The last stderr
        line is `vidsearch-worker-error: permanent: <one-line reason>`.
    75  transient error (EX_TEMPFAIL): object storage or another service hiccupped. Retry.
    1   anything else (a bug, out of memory, ...): retryable by the orchestrator's normal policy.
Progress and timing lines are logged to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import urlparse

from vidsearch.errors import InputError, PermanentError, TransientError, one_line
from vidsearch.params import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
from vidsearch.records import Box, DetectedObject, DetectEmbedResult, FrameRef, object_id
from vidsearch.stores import storage

if TYPE_CHECKING:
    import numpy as np

    from vidsearch.media.bundle import BundleReader
    from vidsearch.models.detect import Detection
    from vidsearch.models.modelstore import ModelKind
    from vidsearch.tracking import TrackerConfig

logger = logging.getLogger("vidsearch.models.worker")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_PERMANENT = 3
EXIT_TRANSIENT = 75  # sysexits.h EX_TEMPFAIL

RESULT_FILE = "result.json"
EMBEDDINGS_FILE = "embeddings.npy"
# Prefix of the worker's last stderr line on a typed failure; the launcher reads the reason from it.
ERROR_MARKER = "vidsearch-worker-error:"
# The one folder or bucket prefix the worker reads bundles from and writes outputs to (its own env).
STORAGE_ROOT_ENV = "VIDSEARCH_STORAGE_ROOT"
_LOCAL_SCHEMES = ("", "file")
_S3_SCHEMES = ("s3", "s3a")


class WorkerArgumentParser(argparse.ArgumentParser):
    """argparse that raises InputError (permanent, exit 3) instead of exiting 2."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"invalid arguments: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The worker's command line (also the documentation of its argv)."""
    parser = WorkerArgumentParser(
        prog="python -m vidsearch.models.worker",
        description="Detect objects in a frame bundle and embed their crops; write result.json and embeddings.npy.",
    )
    parser.add_argument("--frames-uri", help="URI of the frame bundle (zip of JPEGs + bundle.json); required")
    parser.add_argument("--output-uri", help="URI prefix for result.json and embeddings.npy; required")
    parser.add_argument(
        "--check-models",
        action="store_true",
        help="only load the detector and the embedder (on --device, in --dtype) and exit: 0 when both load",
    )
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="hub id or model folder")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="hub id or model folder")
    parser.add_argument("--score-threshold", type=float, default=0.7, help="keep detections scoring at least this")
    parser.add_argument("--batch-size", type=int, default=16, help="frames (or crops) per forward pass")
    add_runtime_arguments(parser)
    add_tracker_arguments(parser)
    return parser


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how every worker command runs its models: --device, --dtype, --tiny-models, --model-cache."""
    from vidsearch.models.modelstore import default_cache_dir, is_tiny_mode

    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (half only on CUDA)")
    parser.add_argument(
        "--tiny-models",
        action=argparse.BooleanOptionalAction,
        default=is_tiny_mode(),
        help="use tiny random models (tests, offline demos); default from VIDSEARCH_TINY_MODELS",
    )
    parser.add_argument(
        "--model-cache",
        default=str(default_cache_dir()),
        help="folder for built tiny models; default from VIDSEARCH_MODEL_CACHE",
    )


def add_tracker_arguments(parser: argparse.ArgumentParser) -> None:
    """The tracker's flags (`vidsearch.tracking.TrackerConfig`), its defaults when absent."""
    from vidsearch.tracking import TrackerConfig

    default = TrackerConfig()
    group = parser.add_argument_group("tracking", "associate the segment's detections into tracks (docs/tracking.md)")
    group.add_argument(
        "--track-iou-threshold", type=float, default=default.iou_threshold, help="admit a pair at this box IoU"
    )
    group.add_argument(
        "--track-cosine-threshold",
        type=float,
        default=default.cosine_threshold,
        help="... or at this embedding cosine",
    )
    group.add_argument("--track-iou-weight", type=float, default=default.iou_weight, help="weight of 1 - IoU")
    group.add_argument("--track-cosine-weight", type=float, default=default.cosine_weight, help="weight of 1 - cosine")
    group.add_argument(
        "--track-max-gap", type=int, default=default.max_gap, help="sampled frames a track may skip and resume"
    )
    group.add_argument(
        "--track-label-must-match",
        action=argparse.BooleanOptionalAction,
        default=default.label_must_match,
        help="associate only detections with the same label",
    )
    group.add_argument(
        "--track-predict-motion",
        action=argparse.BooleanOptionalAction,
        default=default.predict_motion,
        help="compare with the box moved by the track's last velocity",
    )
    group.add_argument(
        "--track-appearance-momentum",
        type=float,
        default=default.appearance_momentum,
        help="moving-average momentum of a track's appearance",
    )


def tracker_config(args: argparse.Namespace) -> TrackerConfig:
    """The TrackerConfig of parsed `args`; InputError when a value is out of range."""
    from vidsearch.tracking import TrackerConfig

    try:
        return TrackerConfig(
            iou_threshold=args.track_iou_threshold,
            cosine_threshold=args.track_cosine_threshold,
            iou_weight=args.track_iou_weight,
            cosine_weight=args.track_cosine_weight,
            max_gap=args.track_max_gap,
            label_must_match=args.track_label_must_match,
            predict_motion=args.track_predict_motion,
            appearance_momentum=args.track_appearance_momentum,
        )
    except ValueError as exc:
        raise InputError(f"invalid tracker arguments: {exc}") from exc


def track_objects(
    objects: Sequence[DetectedObject], embeddings: np.ndarray, frames: Sequence[FrameRef], cfg: TrackerConfig
) -> list[DetectedObject]:
    """`objects` (in frame order, row i <-> embeddings[i]) with their segment-local `track`.

    `frames` are the sampled frames detection ran on, in time order, those without objects included (they
    count towards a track's gap); blank frames and repeats are not among them: a repeat shows what the
    frame it repeats showed, and a blank frame is not an occlusion of anything.
    """
    import numpy as np

    from vidsearch.tracking import FrameDetections, track_segment

    rows_by_frame: dict[int, list[int]] = {}
    for row, obj in enumerate(objects):
        rows_by_frame.setdefault(obj.frame_index, []).append(row)
    order: list[int] = []
    detections = []
    for ref in frames:
        rows = rows_by_frame.get(ref.index, [])
        order.extend(rows)
        boxes = np.array([[o.box.x0, o.box.y0, o.box.x1, o.box.y1] for o in (objects[r] for r in rows)]).reshape(-1, 4)
        detections.append(FrameDetections(ref.pts_s, boxes, embeddings[rows], [objects[r].label for r in rows]))
    if len(order) != len(objects):  # a broken invariant: every object comes from one of the frames
        raise RuntimeError(f"{len(objects) - len(order)} objects are not in the detected frames")
    track_of = dict(zip(order, track_segment(detections, cfg)))
    return [obj.model_copy(update={"track": track_of[row]}) for row, obj in enumerate(objects)]


class ModelCache:
    """Models kept loaded between the jobs of one long-lived process (the warm worker).

    Keyed by kind, model folder, device and dtype; `loads` counts actual loads. One model of each kind
    is kept: a job asking for another detector (or embedder) replaces the loaded one, so memory stays
    bounded whatever the jobs ask for. Without a cache the worker loads each model for its one job and
    frees the detector before loading the embedder.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str, str], Any] = {}
        self.loads = 0

    def get(self, kind: str, path: str, device: str, dtype: str, load: Callable[[], Any]) -> Any:
        key = (kind, path, device, dtype)
        if key not in self._models:
            stale = [k for k in self._models if k[0] == kind]
            for k in stale:
                del self._models[k]
            if stale:
                release_model_memory()
            self._models[key] = load()
            self.loads += 1
        return self._models[key]

    def describe(self) -> list[str]:
        """One line per loaded model: kind, folder, device, dtype."""
        return [" ".join(key) for key in self._models]


@contextlib.contextmanager
def open_frames(uri: str) -> Iterator[BundleReader]:
    """The bundle at `uri` open for batch-by-batch reads (`bundle.open_bundle`); every way a bundle
    can be unusable when opened becomes InputError (a member that does not decode later raises
    QualityGateError, also permanent)."""
    from PIL import UnidentifiedImageError

    from vidsearch.media.bundle import open_bundle

    with contextlib.ExitStack() as stack:
        try:
            reader = stack.enter_context(open_bundle(uri))
        except (PermanentError, TransientError):
            raise
        except FileNotFoundError as exc:
            raise InputError(f"frame bundle {uri} does not exist") from exc
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError, UnidentifiedImageError) as exc:
            # ValueError covers malformed bundle.json (JSON and pydantic validation errors).
            raise InputError(f"frame bundle {uri} is corrupt: {type(exc).__name__}: {one_line(exc, 400)}") from exc
        yield reader


def storage_root() -> str:
    """This worker's storage root (env VIDSEARCH_STORAGE_ROOT); InputError when it has none."""
    root = os.environ.get(STORAGE_ROOT_ENV, "").strip().rstrip("/")
    if not root:
        raise InputError(f"this worker has no storage root ({STORAGE_ROOT_ENV} is not set): it runs no job")
    return root


def confine_uri(uri: str, root: str, what: str) -> str:
    """`uri` when it names an object under the storage root `root`; InputError (permanent) otherwise.

    Decided from the text of the URI and, for local paths, where the path resolves (symlinks followed):
    the same path `storage` opens. Nothing outside the root is read, listed or written to decide.
    """
    refused = InputError(f"{what} {uri!r} is not under the worker's storage root ({STORAGE_ROOT_ENV})")
    if not uri or any(char in uri for char in "?#\\\x00") or ".." in uri.split("/"):
        raise refused
    parsed, base = urlparse(uri), urlparse(root)
    scheme, root_scheme = parsed.scheme.lower(), base.scheme.lower()
    if scheme in _LOCAL_SCHEMES and root_scheme in _LOCAL_SCHEMES:
        if parsed.netloc not in ("", "localhost") or base.netloc not in ("", "localhost"):
            raise refused
        root_path = storage.local_path(root).expanduser().resolve()
        # The path `storage` writes (local_path) and the one fsspec reads must both be under the root.
        for path in (storage.local_path(uri), Path(storage.filesystem(uri)[1])):
            if not path.is_absolute() or not path.resolve().is_relative_to(root_path):
                raise refused
        return uri
    if scheme in _S3_SCHEMES and root_scheme in _S3_SCHEMES:
        key, prefix = parsed.path.strip("/"), base.path.strip("/")
        parts, prefix_parts = key.split("/"), prefix.split("/") if prefix else []
        if (
            parsed.netloc != base.netloc
            or any(part in ("", ".") for part in parts)
            or parts[: len(prefix_parts)] != prefix_parts
        ):
            raise refused
        return uri
    raise refused


def _timed(batches: Iterator[Any], waited: list[float]) -> Iterator[Any]:
    """`batches`, adding the time spent waiting for each one to `waited[0]` (and keeping no batch
    while the next one is read)."""
    while True:
        started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            return
        finally:
            waited[0] += time.perf_counter() - started
        yield batch
        del batch


def run(args: argparse.Namespace, models: ModelCache | None = None) -> DetectEmbedResult:
    """Do the work described by parsed `args`; raises typed errors (see the module docstring).

    With `models`, loaded models are taken from and kept in that cache (a warm worker's jobs).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    tracker = tracker_config(args)
    if not 0.0 <= args.score_threshold <= 1.0:
        raise InputError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    root = storage_root()
    confine_uri(args.frames_uri, root, "--frames-uri")
    confine_uri(args.output_uri, root, "--output-uri")

    result_uri = storage.join(args.output_uri, RESULT_FILE)
    embeddings_uri = storage.join(args.output_uri, EMBEDDINGS_FILE)

    # The bundle is read batch by batch (once in a warm worker; twice in a one-shot process, which frees
    # the detector before loading the embedder), so memory is bounded by the batch size whatever the
    # number of frames. "read_bundle" is the time spent waiting for decoded batches.
    phase = time.perf_counter()
    waited = [0.0]
    with open_frames(args.frames_uri) as reader:
        bundle = reader.bundle
        total = len(bundle.frames)
        # Blank frames and repeats are skipped: only these positions are decoded and detected.
        to_detect = [i for i, ref in enumerate(bundle.frames) if ref.detect]
        if total:
            reader.frame(0)  # a bundle whose frames do not decode fails now, before torch loads
        waited[0] += time.perf_counter() - phase
        logger.info(
            "bundle %s: video %s segment %d, %d frames %dx%d, %d to detect (skipped: %s)",
            args.frames_uri,
            bundle.video_id,
            bundle.segment_index,
            total,
            bundle.width,
            bundle.height,
            len(to_detect),
            bundle.frames_skipped(),
        )

        # Imported only now: a bad bundle or bad arguments fail in a fraction of a second, before torch loads.
        from vidsearch.models.modelstore import select_device, select_dtype

        # Device and dtype first: an unusable one is reported before any model download.
        select_dtype(args.dtype, select_device(args.device))

        # A result.json left by an earlier run would pair with the embeddings this run is about to write.
        remove_stale(result_uri)

        cache_dir = Path(args.model_cache).expanduser()
        if args.tiny_models:
            logger.info(
                "tiny-model mode: random tiny models from %s replace %s and %s", cache_dir, args.detector, args.embedder
            )
        phase = time.perf_counter()
        detector_path, detector = load_model("detector", args, models)
        timings["load_detector"] = time.perf_counter() - phase
        device = str(detector.device)
        if detector.device.type == "cuda":
            import torch

            logger.info("device %s (%s), dtype %s", device, torch.cuda.get_device_name(detector.device), detector.dtype)
        else:
            logger.info("device %s, dtype %s", device, detector.dtype)
        detector_labels = sorted(set(detector.labels.values()))
        # On a GPU the next batch decodes while this one is detected; on the CPU both would compete
        # for the same cores, so one batch at a time (and half the memory).
        prefetch = detector.device.type != "cpu"

        # Ids are derived from (video, segment, pts, box): two identical boxes in one frame would collide.
        # They are the same detection for search purposes; keep the higher-scoring one (listed first).
        seen: set[str] = set()
        objects: list[DetectedObject] = []
        detected = [0, 0]  # frames, detections
        detect_s = [0.0]

        def detect_batches() -> Iterator[tuple[Any, np.ndarray, list[Detection]]]:
            """(frame ref, frame, its kept detections) for every frame, a batch of --batch-size frames
            at a time (the detector's batches are those of a whole-bundle call); objects are recorded
            as frames go by."""
            for batch in _timed(reader.batches(args.batch_size, to_detect, prefetch=prefetch), waited):
                refs, arrays = [ref for ref, _ in batch], [frame for _, frame in batch]
                del batch  # not kept while the next batch is read
                started_detect = time.perf_counter()
                found = detector.detect(arrays, args.score_threshold, args.batch_size)
                detect_s[0] += time.perf_counter() - started_detect
                for ref, frame, frame_detections in zip(refs, arrays, found):
                    kept = []
                    for det in frame_detections:
                        oid = object_id(bundle.video_id, bundle.segment_index, ref.pts_s, det.box)
                        if oid in seen:
                            continue
                        seen.add(oid)
                        kept.append(det)
                        objects.append(
                            DetectedObject(
                                object_id=oid,
                                video_id=bundle.video_id,
                                segment_index=bundle.segment_index,
                                frame_index=ref.index,
                                pts_s=ref.pts_s,
                                box=det.box,
                                label=det.label,
                                label_id=det.label_id,
                                score=det.score,
                            )
                        )
                    detected[0] += 1
                    detected[1] += len(frame_detections)
                    yield ref, frame, kept
                del arrays
                logger.info("detect: %d/%d frames", detected[0], len(to_detect))

        if models is not None:
            # A warm worker keeps both models loaded: one pass over the bundle, each batch detected and
            # its crops embedded while its frames are in memory (every frame is decoded once).
            phase = time.perf_counter()
            embedder_path, embedder = load_model("embedder", args, models)
            timings["load_embedder"] = time.perf_counter() - phase
            phase, waited_before = time.perf_counter(), waited[0]
            embeddings = embedder.embed_crop_stream(
                ((frame, [det.box for det in kept]) for _, frame, kept in detect_batches() if kept),
                args.batch_size,
                progress=lambda done, n: logger.info("embed: %d crops", done),
            )
            timings["detect"] = detect_s[0]
            timings["embed"] = time.perf_counter() - phase - (waited[0] - waited_before) - detect_s[0]
        else:
            # A one-shot worker frees the detector before the embedder loads (on a small GPU the two
            # need not fit together), so it reads the bundle twice: detect every frame, then decode
            # again only the frames with objects and embed their crops.
            phase, waited_before = time.perf_counter(), waited[0]
            kept_by_frame = {ref.index: kept for ref, _, kept in detect_batches()}
            timings["detect"] = time.perf_counter() - phase - (waited[0] - waited_before)
            del detector
            release_model_memory()
            phase = time.perf_counter()
            embedder_path, embedder = load_model("embedder", args, None)
            timings["load_embedder"] = time.perf_counter() - phase
            with_objects = [i for i in to_detect if kept_by_frame[bundle.frames[i].index]]

            def crops() -> Iterator[tuple[np.ndarray, list[Box]]]:
                for batch in _timed(reader.batches(args.batch_size, with_objects, prefetch=prefetch), waited):
                    for ref, frame in batch:
                        yield frame, [det.box for det in kept_by_frame[ref.index]]
                    del batch, frame

            phase, waited_before = time.perf_counter(), waited[0]
            embeddings = embedder.embed_crop_stream(
                crops(),
                args.batch_size,
                progress=lambda done, n: logger.info("embed: %d/%d crops", done, n),
                total=len(objects),
            )
            timings["embed"] = time.perf_counter() - phase - (waited[0] - waited_before)
        dropped = detected[1] - len(objects)
        if dropped:
            logger.info("dropped %d duplicate detections (same frame and box)", dropped)
        logger.info("detect: %d objects in %d of %d frames", len(objects), len(to_detect), total)
    timings["read_bundle"] = waited[0]
    if embeddings.shape != (len(objects), embedder.dim):  # a broken invariant, not bad input
        raise RuntimeError(f"embeddings have shape {embeddings.shape} for {len(objects)} objects")

    phase = time.perf_counter()
    objects = track_objects(objects, embeddings, [bundle.frames[i] for i in to_detect], tracker)
    timings["track"] = time.perf_counter() - phase
    logger.info("track: %d tracks", len({obj.track for obj in objects}))

    phase = time.perf_counter()
    write_float32(embeddings_uri, embeddings)
    timings["write_embeddings"] = time.perf_counter() - phase
    timings["total"] = time.perf_counter() - started

    result = DetectEmbedResult(
        video_id=bundle.video_id,
        segment_index=bundle.segment_index,
        # In tiny mode the folder name (tiny-<kind>-<hash>) is the model: its vectors must never be
        # mistaken for, or mixed with, those of the real model that was asked for.
        detector_model=Path(detector_path).name if args.tiny_models else args.detector,
        embedder_model=Path(embedder_path).name if args.tiny_models else args.embedder,
        embedding_dim=embedder.dim,
        detector_labels=detector_labels,
        device=device,
        frame_count=total,
        objects=objects,
        timings_s={k: round(v, 4) for k, v in timings.items()},
    )
    # Last: its presence means embeddings.npy is complete and matches it.
    storage.write_bytes(result_uri, json.dumps(result.model_dump(mode="json")).encode())
    logger.info(
        "done: %d objects, dim %d, %s",
        len(objects),
        embedder.dim,
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    return result


def write_float32(uri: str, array: np.ndarray) -> None:
    """`array` as a float32 .npy file at `uri` (no pickles)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32, copy=False), allow_pickle=False)
    storage.write_bytes(uri, buffer.getvalue())


def remove_stale(uri: str) -> None:
    """Remove a completion marker an earlier run left at `uri` (it would pair with this run's outputs)."""
    if storage.exists(uri):
        storage.delete_prefix(uri)


def check_models(args: argparse.Namespace, models: ModelCache | None = None) -> list[str]:
    """Load the detector and the embedder of `args` as a job would (same resolution, device, dtype);
    returns the loaded model folders. Raises ModelUnavailableError (permanent) naming the one that fails.

    With `models` (a warm worker) they stay loaded for the jobs that follow; a one-shot process frees
    the detector before it loads the embedder, as a job does.
    """
    from vidsearch.models.modelstore import select_device, select_dtype

    select_dtype(args.dtype, select_device(args.device))
    started = time.perf_counter()
    detector_path, _ = load_model("detector", args, models)
    embedder_path, _ = load_model("embedder", args, models)
    logger.info(
        "models load: detector %s, embedder %s (%.2f s)", detector_path, embedder_path, time.perf_counter() - started
    )
    return [detector_path, embedder_path]


def load_model(kind: ModelKind, args: argparse.Namespace, models: ModelCache | None) -> tuple[str, Any]:
    """(folder, loaded model) of the job's detector, embedder or speech model (`args.detector`,
    `args.embedder`, `args.model`), from the warm worker's cache when given."""
    from vidsearch.models.modelstore import resolve_model

    model_class: Any
    if kind == "detector":
        from vidsearch.models.detect import Detector

        name, model_class = args.detector, Detector
    elif kind == "asr":
        from vidsearch.models.asr import Transcriber

        name, model_class = args.model, Transcriber
    else:
        from vidsearch.models.embed import Embedder

        name, model_class = args.embedder, Embedder
    path = resolve_model(name, kind, tiny=args.tiny_models, cache_dir=Path(args.model_cache).expanduser())
    model = _model(models, kind, path, args, lambda: model_class(path, device=args.device, dtype=args.dtype))
    return path, model


def _model(models: ModelCache | None, kind: str, path: str, args: argparse.Namespace, load: Callable[[], Any]) -> Any:
    if models is None:
        return load()
    return models.get(kind, path, args.device, args.dtype, load)


def release_model_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("VIDSEARCH_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Progress bars from transformers/huggingface_hub are noise in task logs (and full of \r). Both
    # read this variable when first imported, which happens later, in `run`.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # torch's OpenMP threads spin while they wait; on cores shared with ffmpeg and other tasks that
    # collapses: a detect+embed job on 2 cores took 6.5 s next to one ffmpeg decode instead of 0.44 s
    # alone. Sleeping waits: 0.65 s loaded, 0.63 s alone. Read when torch is first imported (in `run`).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def execute(
    argv: Sequence[str] | None = None, models: ModelCache | None = None, usage: TextIO | None = None
) -> tuple[int, str | None]:
    """Parse and run one job: (exit code, the marked one-line reason, or None on success).

    The command and the warm worker (`vidsearch.models.worker_server`) both run jobs through here, so they
    parse, check and classify errors identically. `usage` gets the usage text after bad arguments.
    """

    def job(args: argparse.Namespace) -> None:
        if args.check_models:
            check_models(args, models)
        elif not args.frames_uri or not args.output_uri:
            raise InputError("invalid arguments: --frames-uri and --output-uri are required (or --check-models)")
        else:
            run(args, models)

    return execute_job(build_parser(), job, argv, usage)


def execute_job(
    parser: argparse.ArgumentParser,
    job: Callable[[argparse.Namespace], object],
    argv: Sequence[str] | None,
    usage: TextIO | None = None,
) -> tuple[int, str | None]:
    """Parse `argv` with `parser` (a `WorkerArgumentParser`: bad arguments raise InputError) and run `job`
    on the result: (exit code, the marked one-line reason, or None on success). Every worker command
    (detect+embed, transcribe) classifies its errors here: permanent 3, transient 75, anything else 1."""
    try:
        args = parser.parse_args(argv)
    except InputError as exc:
        # Bad arguments are as permanent as bad input (argparse alone would exit 2).
        if usage is not None:
            parser.print_usage(usage)
        return EXIT_PERMANENT, f"{ERROR_MARKER} permanent: {one_line(exc, 400)}"
    try:
        job(args)
    except PermanentError as exc:
        return EXIT_PERMANENT, f"{ERROR_MARKER} permanent: {one_line(exc, 400)}"
    except TransientError as exc:
        return EXIT_TRANSIENT, f"{ERROR_MARKER} transient: {one_line(exc, 400)}"
    except Exception as exc:
        logger.exception("worker failed")
        return EXIT_FAILURE, f"{ERROR_MARKER} failed: {type(exc).__name__}: {one_line(exc, 400)}"
    return EXIT_OK, None


def run_main(execute_argv: Callable[..., tuple[int, str | None]], argv: Sequence[str] | None) -> int:
    """A worker command's `main`: logging set up, one job run, its marked reason printed last."""
    configure_logging()
    code, reason = execute_argv(argv, usage=sys.stderr)
    if reason is not None:
        print(reason, file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker; returns the process exit code (see the module docstring)."""
    return run_main(execute, argv)


if __name__ == "__main__":
    sys.exit(main())
