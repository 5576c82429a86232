"""The detect+embed worker command and its launcher: output files, exit-code contract, error mapping."""

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
from vidsearch.errors import PermanentError, QualityGateError, TransientError
from vidsearch.media.bundle import BUNDLE_JSON, member_name
from vidsearch.models import launcher, modelstore, worker
from vidsearch.records import FrameBundle, FrameRef
from vidsearch.stores import storage

INCLUDE = Path(launcher.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def storage_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """The worker reads and writes only under its storage root: here, all of pytest's temp folders."""
    root = f"file://{tmp_path_factory.getbasetemp()}"
    monkeypatch.setenv(worker.STORAGE_ROOT_ENV, root)
    return root


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


def write_bundle(path: Path, frames: list[np.ndarray], video_id: str = "ab" * 16, segment_index: int = 2) -> str:
    """A bundle in the frames-stage format: stored zip of JPEG members plus bundle.json."""
    height, width = frames[0].shape[:2]
    refs = [FrameRef(index=i, pts_s=20.0 + 0.5 * i, member=member_name(i)) for i in range(len(frames))]
    bundle = FrameBundle(
        video_id=video_id,
        segment_index=segment_index,
        uri=str(path),
        width=width,
        height=height,
        sample_fps=2.0,
        frames=refs,
    )
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for ref, frame in zip(refs, frames):
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG", quality=90)
            zf.writestr(ref.member, buf.getvalue())
        zf.writestr(BUNDLE_JSON, bundle.model_dump_json())
    return str(path)


@pytest.fixture()
def bundle_uri(tmp_path: Path) -> str:
    rng = np.random.default_rng(3)
    frames = []
    for i in range(4):
        frame = rng.integers(0, 100, size=(48, 64, 3), dtype=np.uint8)
        frame[8:40, 4 + 10 * i : 24 + 10 * i] = (40, 220, 60)
        frames.append(frame)
    return write_bundle(tmp_path / "seg0002.zip", frames)


def _argv(frames_uri: str, output_uri: str, model_cache: Path, **overrides: object) -> list[str]:
    kwargs = dict(
        frames_uri=frames_uri,
        output_uri=output_uri,
        detector="facebook/detr-resnet-50",
        embedder="openai/clip-vit-base-patch32",
        score_threshold=0.3,
        batch_size=3,
        device="cpu",
        tiny=True,
        model_cache=str(model_cache),
    )
    kwargs.update(overrides)
    return launcher.worker_argv(**kwargs)  # type: ignore[arg-type]


def test_worker_argv_is_a_pod_command(model_cache: Path) -> None:
    argv = _argv("s3://b/f.zip", "s3://b/out", model_cache)
    assert argv[:3] == ["python", "-m", "vidsearch.models.worker"]
    assert argv[argv.index("--frames-uri") + 1] == "s3://b/f.zip"
    assert argv[argv.index("--score-threshold") + 1] == "0.3"
    assert "--tiny-models" in argv
    real = _argv("a", "b", model_cache, tiny=False)
    assert "--tiny-models" not in real and "--no-tiny-models" in real
    parsed = worker.build_parser().parse_args(argv[3:])
    assert (parsed.batch_size, parsed.device, parsed.tiny_models) == (3, "cpu", True)
    assert worker.build_parser().parse_args(real[3:]).tiny_models is False


def test_worker_end_to_end_in_a_subprocess(bundle_uri: str, tmp_path: Path, model_cache: Path) -> None:
    output_uri = f"file://{tmp_path / 'out' / 'seg0002'}"
    result = launcher.run_local(_argv(bundle_uri, output_uri, model_cache), timeout_s=300)

    assert storage.exists(storage.join(output_uri, "result.json"))
    assert storage.exists(storage.join(output_uri, "embeddings.npy"))
    again, embeddings = launcher.read_result(output_uri)
    assert again == result
    assert (result.video_id, result.segment_index, result.frame_count) == ("ab" * 16, 2, 4)
    assert result.device == "cpu"
    assert result.detector_model.startswith("tiny-detector-") and result.embedder_model.startswith("tiny-embedder-")
    assert len(result.objects) > 0
    assert embeddings.shape == (len(result.objects), result.embedding_dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert len({o.object_id for o in result.objects}) == len(result.objects)
    for obj in result.objects:
        assert 0 <= obj.frame_index < 4 and obj.pts_s == 20.0 + 0.5 * obj.frame_index
        assert 0 <= obj.box.x0 < obj.box.x1 <= 64 and 0 <= obj.box.y0 < obj.box.y1 <= 48
        assert obj.score >= 0.3
    assert [o.frame_index for o in result.objects] == sorted(o.frame_index for o in result.objects)
    assert {"read_bundle", "detect", "embed", "total"} <= set(result.timings_s)

    # A re-run over the same output (in-process this time: same code, no second interpreter start)
    # gives the same ids and vectors: an overwrite, not copies.
    assert worker.main(_argv(bundle_uri, output_uri, model_cache)[3:]) == worker.EXIT_OK
    rerun, rerun_embeddings = launcher.read_result(output_uri)
    assert [o.object_id for o in rerun.objects] == [o.object_id for o in result.objects]
    np.testing.assert_allclose(rerun_embeddings, embeddings, atol=1e-5)


def _run_worker_process(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INCLUDE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("damage", ["missing", "not-a-zip", "no-bundle-json", "bad-jpeg"])
def test_unusable_bundle_exits_3_and_raises_permanent(
    damage: str, tmp_path: Path, model_cache: Path, bundle_uri: str
) -> None:
    path = tmp_path / "broken.zip"
    if damage == "not-a-zip":
        path.write_bytes(b"this is not a zip file")
    elif damage == "no-bundle-json":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(member_name(0), b"\xff\xd8")
    elif damage == "bad-jpeg":
        with zipfile.ZipFile(bundle_uri) as src, zipfile.ZipFile(path, "w") as dst:
            for name in src.namelist():
                dst.writestr(name, src.read(name) if name == BUNDLE_JSON else b"garbage")
    argv = _argv(str(path), str(tmp_path / "out"), model_cache)

    if damage == "missing":  # the raw contract once: exit code 3 and a marked one-line reason
        proc = _run_worker_process(argv)
        assert proc.returncode == worker.EXIT_PERMANENT, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"{worker.ERROR_MARKER} permanent: ") and str(path) in last
    # run_local raises PermanentError only for exit code 3, with the worker's reason as message.
    with pytest.raises(PermanentError, match="broken.zip"):
        launcher.run_local(argv, timeout_s=120)
    assert not (tmp_path / "out").exists()


def test_invalid_arguments_exit_3(tmp_path: Path, model_cache: Path) -> None:
    proc = _run_worker_process(_argv(str(tmp_path / "x.zip"), str(tmp_path / "out"), model_cache, score_threshold=1.5))
    assert proc.returncode == worker.EXIT_PERMANENT
    assert "score-threshold" in proc.stderr.strip().splitlines()[-1]
    proc = _run_worker_process(["python", "-m", "vidsearch.models.worker", "--frames-uri", "x"])
    assert proc.returncode == worker.EXIT_PERMANENT and "--output-uri" in proc.stderr


def test_unavailable_model_is_permanent_and_clears_a_stale_result(
    bundle_uri: str,
    tmp_path: Path,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    output = tmp_path / "out"
    output.mkdir()
    (output / "result.json").write_text("{}")  # left by an earlier run
    argv = _argv(bundle_uri, str(output), model_cache, tiny=False, detector="vidsearch-tests/no-such-detector")
    assert worker.main(argv[3:]) == worker.EXIT_PERMANENT
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"{worker.ERROR_MARKER} permanent:") and "vidsearch-tests/no-such-detector" in last
    assert not (output / "result.json").exists()


def test_transient_errors_exit_75(
    bundle_uri: str, tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def storage_down(uri: str, *args: object, **kwargs: object) -> bytes:
        raise TransientError(f"object storage unavailable for {uri}: connection reset")

    # The worker streams the bundle from storage.local_file (a download for s3); read_bytes for
    # anything that still reads a whole object.
    monkeypatch.setattr(storage, "read_bytes", storage_down)
    monkeypatch.setattr(storage, "local_file", storage_down)
    argv = _argv(bundle_uri, str(tmp_path / "out"), model_cache)
    assert worker.main(argv[3:]) == worker.EXIT_TRANSIENT


def _script(code: str) -> list[str]:
    return ["python", "-c", code, "--output-uri", "file:///nonexistent"]


def test_launcher_maps_exit_codes_and_timeouts() -> None:
    marker = worker.ERROR_MARKER
    with pytest.raises(PermanentError) as info:
        launcher.run_local(
            _script(f"import sys; print('{marker} permanent: bad input here', file=sys.stderr); sys.exit(3)")
        )
    assert str(info.value) == "bad input here"
    with pytest.raises(TransientError, match="storage down"):
        launcher.run_local(
            _script(f"import sys; print('{marker} transient: storage down', file=sys.stderr); sys.exit(75)")
        )
    with pytest.raises(RuntimeError, match="exited with code 1.*boom"):
        launcher.run_local(_script("raise SystemExit('boom')"))
    with pytest.raises(TransientError, match="timed out"):
        launcher.run_local(_script("import time; time.sleep(30)"), timeout_s=0.5)
    with pytest.raises(RuntimeError, match="exited 0 but"):
        launcher.run_local(_script("pass"))
    # The include/ folder is on the child's path and env is layered over ours.
    with pytest.raises(PermanentError, match="^vidsearch yes$"):
        launcher.run_local(
            _script(
                "import os, sys, vidsearch; print('vidsearch', os.environ['X_TEST'], file=sys.stderr); sys.exit(3)"
            ),
            env={"X_TEST": "yes"},
        )


def test_read_result_rejects_mismatched_files(bundle_uri: str, tmp_path: Path, model_cache: Path) -> None:
    output_uri = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        launcher.read_result(output_uri)
    result = {
        "video_id": "v",
        "segment_index": 0,
        "detector_model": "d",
        "embedder_model": "e",
        "embedding_dim": 4,
        "device": "cpu",
        "frame_count": 1,
        "objects": [],
        "timings_s": {},
    }
    storage.write_bytes(storage.join(output_uri, "result.json"), json.dumps(result).encode())
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 4), dtype=np.float32))
    storage.write_bytes(storage.join(output_uri, "embeddings.npy"), buf.getvalue())
    with pytest.raises(QualityGateError, match="expected float32"):
        launcher.read_result(output_uri)
    buf = io.BytesIO()
    np.save(buf, np.zeros((0, 4), dtype=np.float32))
    storage.write_bytes(storage.join(output_uri, "embeddings.npy"), buf.getvalue())
    loaded, vectors = launcher.read_result(output_uri)
    assert loaded.embedding_dim == 4 and vectors.shape == (0, 4)
    storage.write_bytes(storage.join(output_uri, "result.json"), b'{"video_id": "v"}')
    with pytest.raises(QualityGateError, match="not a valid DetectEmbedResult"):
        launcher.read_result(output_uri)


# --------------------------------------------------------------------------------------------------
# The warm worker (vidsearch.models.worker_server) behind launcher.run_local
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def warm_worker(monkeypatch: pytest.MonkeyPatch):
    """A warm worker serving on a free loopback port, with VIDSEARCH_WORKER_URL pointing at it (and
    VIDSEARCH_WORKER_TOKEN holding the random token `serving` made for it)."""
    from vidsearch.models import worker_server

    with worker_server.serving() as (url, state):
        monkeypatch.setenv(launcher.WORKER_URL_ENV, url)
        yield url, state


def _health(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        return json.loads(response.read())


def test_warm_worker_runs_jobs_like_the_command_and_keeps_its_models(
    warm_worker, bundle_uri: str, tmp_path: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = warm_worker
    caplog.set_level("INFO", logger="vidsearch")  # the worker's and the launcher's loggers
    first = launcher.run_local(_argv(bundle_uri, f"file://{tmp_path / 'warm1'}", model_cache), timeout_s=300)
    second = launcher.run_local(_argv(bundle_uri, f"file://{tmp_path / 'warm2'}", model_cache), timeout_s=300)
    health = _health(url)
    assert (health["jobs"], health["model_loads"], health["busy"]) == (2, 2, False)
    assert sorted(line.split()[0] for line in health["models"]) == ["detector", "embedder"]
    assert any("[worker] INFO vidsearch.models.worker: detect:" in r.getMessage() for r in caplog.records)

    # The same job as a worker process (no warm worker): the same objects and vectors.
    cold_uri = f"file://{tmp_path / 'cold'}"
    os.environ.pop(launcher.WORKER_URL_ENV)
    cold = launcher.run_local(_argv(bundle_uri, cold_uri, model_cache), timeout_s=300)
    _, cold_embeddings = launcher.read_result(cold_uri)
    for warm, warm_uri in ((first, "warm1"), (second, "warm2")):
        assert [(o.object_id, o.label) for o in warm.objects] == [(o.object_id, o.label) for o in cold.objects]
        _, embeddings = launcher.read_result(f"file://{tmp_path / warm_uri}")
        np.testing.assert_allclose(embeddings, cold_embeddings, atol=1e-4)
    assert len(cold.objects) > 0


def test_warm_worker_errors_map_like_the_command(
    warm_worker, bundle_uri: str, tmp_path: Path, model_cache: Path
) -> None:
    url, _ = warm_worker
    missing = f"file://{tmp_path / 'nope.zip'}"
    with pytest.raises(PermanentError, match="does not exist"):
        launcher.run_local(_argv(missing, f"file://{tmp_path / 'o1'}", model_cache), timeout_s=60)
    with pytest.raises(PermanentError, match="batch-size must be positive"):
        launcher.run_local(_argv(bundle_uri, f"file://{tmp_path / 'o2'}", model_cache, batch_size=0), timeout_s=60)
    bad_args = ["python", "-m", "vidsearch.models.worker", "--output-uri", f"file://{tmp_path / 'o3'}", "--bogus"]
    with pytest.raises(PermanentError, match="invalid arguments"):
        launcher.run_local(bad_args, timeout_s=60)
    # Still serving, nothing loaded for jobs that failed before their models were needed.
    assert _health(url)["jobs"] == 3 and _health(url)["model_loads"] == 0


def test_warm_worker_rejects_malformed_requests(warm_worker) -> None:
    import urllib.error
    import urllib.request

    url, state = warm_worker
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {state.token}"}
    for body in (b"not json", b'{"argv": "--frames-uri x"}', b'{"argv": [1, 2]}', b"{}"):
        request = urllib.request.Request(f"{url}/run", data=body, method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        assert raised.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{url}/nothing", timeout=10)
    assert raised.value.code == 404
    assert _health(url)["jobs"] == 0


def test_run_local_starts_a_process_when_no_warm_worker_listens(
    monkeypatch: pytest.MonkeyPatch,
    bundle_uri: str,
    tmp_path: Path,
    model_cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from devstack import free_port

    monkeypatch.setenv(launcher.WORKER_URL_ENV, f"http://127.0.0.1:{free_port()}")
    caplog.set_level("WARNING", logger="vidsearch.models.launcher")
    result = launcher.run_local(_argv(bundle_uri, f"file://{tmp_path / 'out'}", model_cache), timeout_s=300)
    assert len(result.objects) > 0
    assert any("no warm worker listens" in r.getMessage() for r in caplog.records)


def test_model_cache_keeps_one_model_of_each_kind() -> None:
    cache = worker.ModelCache()
    made: list[str] = []

    def load(name: str):
        return lambda: made.append(name) or name

    assert cache.get("detector", "a", "cpu", "float32", load("det-a")) == "det-a"
    assert cache.get("embedder", "e", "cpu", "float32", load("emb-e")) == "emb-e"
    assert cache.get("detector", "a", "cpu", "float32", load("never")) == "det-a"
    assert cache.get("detector", "b", "cpu", "float32", load("det-b")) == "det-b"  # replaces det-a
    assert cache.get("detector", "a", "cpu", "float32", load("det-a2")) == "det-a2"
    assert made == ["det-a", "emb-e", "det-b", "det-a2"] and cache.loads == 4
    assert sorted(cache.describe()) == ["detector a cpu float32", "embedder e cpu float32"]


def test_worker_skips_blank_and_repeated_frames(bundle_uri: str, tmp_path: Path, model_cache: Path) -> None:
    """Frames the sampler marked blank or duplicate are not detected: no objects, and the objects of the
    other frames are those of an unmarked run (one-shot and warm paths alike)."""
    plain_uri = f"file://{tmp_path / 'plain'}"
    assert worker.main(_argv(bundle_uri, plain_uri, model_cache)[3:]) == worker.EXIT_OK
    plain, _ = launcher.read_result(plain_uri)
    assert {o.frame_index for o in plain.objects} >= {1, 3}  # the tiny detector finds boxes everywhere

    path = Path(bundle_uri)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    bundle = FrameBundle.model_validate_json(members.pop(BUNDLE_JSON))
    marked = [
        f.model_copy(update={"blank": True} if f.index == 1 else {"duplicate_of": 2} if f.index == 3 else {})
        for f in bundle.frames
    ]
    bundle = bundle.model_copy(update={"frames": marked})
    assert bundle.frames_skipped() == {"blank": 1, "duplicate": 1}
    marked_path = tmp_path / "marked.zip"
    with zipfile.ZipFile(marked_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(BUNDLE_JSON, bundle.model_dump_json())

    kept = [(o.object_id, o.frame_index) for o in plain.objects if o.frame_index in (0, 2)]
    for label, models in (("oneshot", None), ("warm", worker.ModelCache())):
        out = f"file://{tmp_path / label}"
        code, reason = worker.execute(_argv(str(marked_path), out, model_cache)[3:], models)
        assert code == worker.EXIT_OK, reason
        result, embeddings = launcher.read_result(out)
        assert result.frame_count == 4
        assert [(o.object_id, o.frame_index) for o in result.objects] == kept
        assert embeddings.shape == (len(kept), result.embedding_dim)


def test_worker_tracks_every_object_and_a_static_scene_keeps_its_tracks(tmp_path: Path, model_cache: Path) -> None:
    """Every object gets a segment-local track; in a scene that does not change, each detection of a frame
    continues one of the first frame's tracks (same box, same crop)."""
    rng = np.random.default_rng(5)
    still = rng.integers(0, 100, size=(48, 64, 3), dtype=np.uint8)
    still[8:40, 14:34] = (40, 220, 60)
    uri = write_bundle(tmp_path / "still.zip", [still] * 4)
    out = f"file://{tmp_path / 'still-out'}"
    code, reason = worker.execute(_argv(uri, out, model_cache)[3:])
    assert code == worker.EXIT_OK, reason
    result, _ = launcher.read_result(out)
    assert result.objects and all(o.track is not None for o in result.objects)
    assert "track" in result.timings_s
    by_frame: dict[int, list[int | None]] = {}
    for o in result.objects:
        by_frame.setdefault(o.frame_index, []).append(o.track)
    assert sorted(by_frame) == [0, 1, 2, 3]
    first = sorted(by_frame[0], key=lambda t: t or 0)
    assert first == list(range(len(first)))  # numbered by first member, in row order
    for tracks in by_frame.values():
        assert sorted(tracks, key=lambda t: t or 0) == first  # the same tracks in every frame


def test_worker_tracker_flags_default_to_the_tracker_config_and_are_checked(tmp_path: Path, model_cache: Path) -> None:
    from vidsearch.tracking import TrackerConfig

    args = worker.build_parser().parse_args(["--frames-uri", "a", "--output-uri", "b"])
    assert worker.tracker_config(args) == TrackerConfig()
    args = worker.build_parser().parse_args(["--track-max-gap", "5", "--no-track-label-must-match"])
    assert worker.tracker_config(args) == TrackerConfig(max_gap=5, label_must_match=False)
    bad = _argv(str(tmp_path / "x.zip"), f"file://{tmp_path / 'o'}", model_cache)[3:] + ["--track-max-gap", "-1"]
    code, reason = worker.execute(bad)
    assert code == worker.EXIT_PERMANENT and reason is not None and "max_gap" in reason
