"""`--check-models`: the worker loads the run's detector and embedder and exits, wherever jobs run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vidsearch.errors import ModelUnavailableError, PermanentError
from vidsearch.models import launcher, modelstore, worker


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("models")
    return modelstore.ensure_tiny_model("detector", cache), modelstore.ensure_tiny_model("embedder", cache)


def _broken_copy(folder: Path, tmp_path: Path) -> Path:
    """The model folder with its weights cut in half: the structure checks pass, loading fails."""
    broken = tmp_path / f"broken-{folder.name}"
    shutil.copytree(folder, broken)
    (weights,) = [p for p in broken.iterdir() if p.suffix in (".safetensors", ".bin")]
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return broken


def _args(detector: Path | str, embedder: Path | str) -> list[str]:
    return ["--check-models", "--detector", str(detector), "--embedder", str(embedder), "--no-tiny-models"]


def test_check_models_loads_both_and_a_warm_cache_keeps_them(tiny_folders):
    detector, embedder = tiny_folders
    cache = worker.ModelCache()
    assert worker.execute(_args(detector, embedder), models=cache) == (worker.EXIT_OK, None)
    assert cache.loads == 2 and len(cache.describe()) == 2
    # The segments that follow find the models loaded.
    assert worker.execute(_args(detector, embedder), models=cache) == (worker.EXIT_OK, None)
    assert cache.loads == 2


@pytest.mark.parametrize("which", ["detector", "embedder"])
def test_a_model_that_does_not_load_is_a_permanent_error_naming_it(which, tiny_folders, tmp_path):
    detector, embedder = tiny_folders
    bad = detector if which == "detector" else embedder
    if which == "detector":
        detector = _broken_copy(detector, tmp_path)
    else:
        embedder = _broken_copy(embedder, tmp_path)
    code, reason = worker.execute(_args(detector, embedder))
    assert code == worker.EXIT_PERMANENT
    assert reason is not None and f"broken-{bad.name}" in reason and "cannot load" in reason


def test_a_missing_model_folder_fails_before_any_load(tmp_path, tiny_folders):
    _, embedder = tiny_folders
    with pytest.raises(ModelUnavailableError, match="no-such-detector"):
        worker.check_models(worker.build_parser().parse_args(_args(tmp_path / "no-such-detector", embedder)))


def test_a_job_still_needs_its_bundle_and_output():
    code, reason = worker.execute(["--detector", "d", "--embedder", "e"])
    assert code == worker.EXIT_PERMANENT and reason is not None and "--frames-uri and --output-uri" in reason


def test_the_launcher_runs_the_check_as_a_process(tiny_folders, tmp_path, monkeypatch):
    monkeypatch.delenv(launcher.WORKER_URL_ENV, raising=False)
    detector, embedder = tiny_folders
    argv = launcher.check_argv(str(detector), str(embedder), "cpu", False)
    assert argv[:4] == ["python", "-m", "vidsearch.models.worker", "--check-models"]
    launcher.check_models_local(argv, timeout_s=300)  # loads: no error
    broken = launcher.check_argv(str(_broken_copy(detector, tmp_path)), str(embedder), "cpu", False)
    with pytest.raises(PermanentError, match="cannot load"):
        launcher.check_models_local(broken, timeout_s=300)


def test_check_and_job_commands_share_the_model_arguments():
    job = launcher.worker_argv("f", "o", "det", "emb", 0.5, 8, "cpu", True, dtype="float16", model_cache="/m")
    check = launcher.check_argv("det", "emb", "cpu", True, dtype="float16", model_cache="/m")
    assert job[job.index("--detector") :] == check[check.index("--detector") :]
