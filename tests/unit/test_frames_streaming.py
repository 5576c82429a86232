"""frames: reading a bundle batch by batch (bounded memory), and the worker's streamed detect+embed
giving the same objects and vectors as whole-bundle calls."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vidsearch.errors import QualityGateError
from vidsearch.media import bundle as frame_bundle
from vidsearch.models import modelstore, worker
from vidsearch.records import FrameBundle, FrameRef, object_id

HEIGHT, WIDTH = 120, 160


def _frame(i: int) -> np.ndarray:
    """A frame that JPEG keeps recognisable: a gradient and a bright block whose place encodes `i`."""
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[..., 0] = np.linspace(0, 200, WIDTH, dtype=np.uint8)[None, :]
    frame[..., 1] = (i * 7) % 256
    x = (i * 5) % (WIDTH - 20)
    frame[20:60, x : x + 20] = (250, 250, 40)
    return frame


def write_bundle(path: Path, count: int) -> FrameBundle:
    refs = [FrameRef(index=i, pts_s=0.5 * i, member=frame_bundle.member_name(i)) for i in range(count)]
    bundle = FrameBundle(
        video_id="cd" * 16, segment_index=1, uri=str(path), width=WIDTH, height=HEIGHT, sample_fps=2.0, frames=refs
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, ref in enumerate(refs):
            buf = io.BytesIO()
            Image.fromarray(_frame(i)).save(buf, format="JPEG", quality=90)
            zf.writestr(ref.member, buf.getvalue())
        zf.writestr(frame_bundle.BUNDLE_JSON, bundle.model_dump_json())
    return bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[int, FrameBundle]:
    root = tmp_path_factory.mktemp("bundles")
    return {n: write_bundle(root / f"b{n}.zip", n) for n in (0, 23, 60, 300)}


def test_batches_arrive_in_order_with_their_refs(bundles: dict[int, FrameBundle]) -> None:
    bundle = bundles[23]
    _, whole = frame_bundle.read_bundle(bundle.uri)
    batches = list(frame_bundle.iter_bundle(bundle.uri, 5))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    pairs = [pair for batch in batches for pair in batch]
    assert [ref for ref, _ in pairs] == bundle.frames
    for (_, array), expected in zip(pairs, whole):
        assert array.dtype == np.uint8 and array.shape == (HEIGHT, WIDTH, 3)
        assert np.array_equal(array, expected)  # the very pixels read_bundle gives
    # A file:// URI, and a batch larger than the bundle.
    (only,) = list(frame_bundle.iter_bundle(f"file://{bundle.uri}", 100))
    assert [ref for ref, _ in only] == bundle.frames
    assert list(frame_bundle.iter_bundle(bundles[0].uri, 4)) == []


def test_reader_reads_a_subset_and_single_frames(bundles: dict[int, FrameBundle]) -> None:
    bundle = bundles[23]
    _, whole = frame_bundle.read_bundle(bundle.uri)
    positions = [0, 3, 4, 11, 22]
    with frame_bundle.open_bundle(bundle.uri) as reader:
        assert reader.bundle == bundle
        got = [pair for batch in reader.batches(2, positions) for pair in batch]
        assert [ref.index for ref, _ in got] == positions
        assert all(np.array_equal(array, whole[i]) for (_, array), i in zip(got, positions))
        assert np.array_equal(reader.frame(7), whole[7])
        # Reading twice (the worker's two passes) gives the same frames again.
        again = [pair for batch in reader.batches(4) for pair in batch]
        assert all(np.array_equal(a, b) for (_, a), b in zip(again, whole))
        with pytest.raises(ValueError):
            next(reader.batches(0))


PEAK_WHILE_ITERATING = r"""
import sys, tracemalloc
from vidsearch.media import bundle as frame_bundle

uri, batch_size = sys.argv[1], int(sys.argv[2])
peaks = []
for _ in range(3):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    for batch in frame_bundle.iter_bundle(uri, batch_size):
        del batch
    peaks.append(tracemalloc.get_traced_memory()[1] - base)
    tracemalloc.stop()
print(min(peaks))
"""


def _peak_while_iterating(uri: str, batch_size: int) -> int:
    """Peak traced bytes (numpy tracks its arrays) while a reader that keeps nothing iterates, the least
    of three passes. Measured in a fresh interpreter: tracemalloc counts every thread's allocations, and
    threads left by earlier tests of the session (client pools, log handlers) would add to the peak."""
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_WHILE_ITERATING, uri, str(batch_size)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_as_the_bundle_grows(bundles: dict[int, FrameBundle]) -> None:
    frame_bytes = HEIGHT * WIDTH * 3
    small = _peak_while_iterating(bundles[60].uri, 4)
    large = _peak_while_iterating(bundles[300].uri, 4)
    # About two batches of decoded frames (this one and the next) plus decoding transients, whatever the
    # bundle's length: the 300 frames at once would be 300 frames' worth (17 MB), 60 of them 3.5 MB.
    # The peak itself wanders between passes (it is the worst moment of the decoding threads' timing:
    # 0.55 MB for 60 frames and 1.1 MB for 300 in one CI run), so the bundles are compared with a
    # margin far below what holding the extra 240 frames would add (13.8 MB).
    assert large < 4 * 4 * frame_bytes + 2_000_000, large
    assert large < small + 2_000_000, (small, large)
    assert large < 300 * frame_bytes / 5


def test_damaged_bundles_raise_quality_gate_errors(bundles: dict[int, FrameBundle], tmp_path: Path) -> None:
    source = bundles[23]
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"garbage")
    with pytest.raises(QualityGateError, match="damaged"):
        next(frame_bundle.iter_bundle(str(not_zip), 4))
    with pytest.raises(FileNotFoundError):
        next(frame_bundle.iter_bundle(str(tmp_path / "missing.zip"), 4))

    def copy(path: Path, replace: dict[str, bytes | None]) -> str:
        with zipfile.ZipFile(source.uri) as src, zipfile.ZipFile(path, "w") as dst:
            for name in src.namelist():
                data = replace.get(name, src.read(name))
                if data is not None:
                    dst.writestr(name, data)
        return str(path)

    missing_member = copy(tmp_path / "m.zip", {frame_bundle.member_name(5): None})
    with pytest.raises(QualityGateError, match="missing"):
        with frame_bundle.open_bundle(missing_member):
            pass
    bad_jpeg = copy(tmp_path / "j.zip", {frame_bundle.member_name(12): b"not a jpeg"})
    seen = []
    with pytest.raises(QualityGateError, match="damaged frame bundle"):
        for batch in frame_bundle.iter_bundle(bad_jpeg, 5):
            seen.extend(ref.index for ref, _ in batch)
    assert seen == list(range(10))  # the batches before the damaged one came through
    bad_json = copy(tmp_path / "b.zip", {frame_bundle.BUNDLE_JSON: json.dumps({"video_id": 1}).encode()})
    with pytest.raises(ValueError):
        next(frame_bundle.iter_bundle(bad_json, 5))


def test_abandoning_a_reader_midway_is_clean(bundles: dict[int, FrameBundle]) -> None:
    iterator = frame_bundle.iter_bundle(bundles[60].uri, 4)
    first = next(iterator)
    assert len(first) == 4
    iterator.close()  # stops the decoding threads and closes the zip


# --- the worker streams its bundle ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


def test_worker_streaming_gives_the_objects_and_vectors_of_whole_bundle_calls(
    bundles: dict[int, FrameBundle], tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidsearch.models.detect import Detector
    from vidsearch.models.embed import Embedder

    bundle = bundles[23]
    threshold, batch_size = 0.3, 4
    output = tmp_path / "out"
    argv = [
        "--frames-uri", bundle.uri, "--output-uri", str(output), "--score-threshold", str(threshold),
        "--batch-size", str(batch_size), "--device", "cpu", "--tiny-models", "--model-cache", str(model_cache),
    ]  # fmt: skip
    # The worker reads and writes only under its storage root: all of pytest's temp folders here.
    monkeypatch.setenv(worker.STORAGE_ROOT_ENV, f"file://{tmp_path.parent}")
    assert worker.main(argv) == worker.EXIT_OK
    result = json.loads((output / worker.RESULT_FILE).read_text())
    vectors = np.load(output / worker.EMBEDDINGS_FILE)

    # What the worker computed before it streamed: every frame in memory, one call per model.
    _, arrays = frame_bundle.read_bundle(bundle.uri)
    detector = Detector(modelstore.resolve_model("x", "detector", tiny=True, cache_dir=model_cache), device="cpu")
    embedder = Embedder(modelstore.resolve_model("x", "embedder", tiny=True, cache_dir=model_cache), device="cpu")
    seen: set[str] = set()
    expected_ids, boxes = [], []
    for ref, detections in zip(bundle.frames, detector.detect(arrays, threshold, batch_size)):
        frame_boxes = []
        for det in detections:
            oid = object_id(bundle.video_id, bundle.segment_index, ref.pts_s, det.box)
            if oid not in seen:
                seen.add(oid)
                expected_ids.append(oid)
                frame_boxes.append(det.box)
        boxes.append(frame_boxes)
    expected = embedder.embed_crops(arrays, boxes, batch_size)

    assert len(expected_ids) > 0
    assert [o["object_id"] for o in result["objects"]] == expected_ids
    assert result["frame_count"] == len(bundle.frames)
    assert vectors.shape == expected.shape and vectors.tobytes() == expected.tobytes()
    assert {"read_bundle", "detect", "embed"} <= set(result["timings_s"])
