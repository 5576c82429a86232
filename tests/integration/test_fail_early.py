"""A run whose detector or embedder cannot be loaded fails at probe: nothing is split, sampled, staged
or indexed, and the catalog run names the model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vidsearch.media import synth
from vidsearch.models import modelstore
from vidsearch.stores import storage

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag(airflow_db, weaviate_server):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["video_ingest"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("early") / "shapes.mp4"
    synth.make_video(path, duration_s=4.0, width=160, height=90, fps=25)
    return path


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(good detector, good embedder, a detector whose weights are cut in half)."""
    cache = tmp_path_factory.mktemp("early-models")
    detector = modelstore.ensure_tiny_model("detector", cache)
    embedder = modelstore.ensure_tiny_model("embedder", cache)
    broken = cache / "broken-detector"
    shutil.copytree(detector, broken)
    (weights,) = [p for p in broken.iterdir() if p.suffix in (".safetensors", ".bin")]
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return detector, embedder, broken


@pytest.mark.parametrize("case", ["missing_folder", "damaged_weights"])
def test_a_model_that_cannot_load_fails_the_run_at_probe(
    case, dag, video, model_folders, catalog, storage_root, monkeypatch
):
    detector, embedder, broken = model_folders
    monkeypatch.setenv("VIDSEARCH_TINY_MODELS", "0")  # real model resolution: the folders given are used
    bad = Path(storage_root.removeprefix("file://")).parent / "no-such-detector" if case == "missing_folder" else broken
    files_before = set(storage.list_prefix(storage_root))

    dagrun = dag.test(
        run_conf={
            "source": str(video),
            "collection": "fail_early",
            "segment_seconds": 2,
            "detector_model": str(bad),
            "embedder_model": str(embedder),
        }
    )

    states = {ti.task_id: (ti.state, ti.try_number) for ti in dagrun.get_task_instances()}
    assert dagrun.state == "failed"
    assert states["probe"] == ("failed", 1), states  # permanent: no retry
    assert states["split"][0] != "success", states  # nothing was cut
    run = catalog.get_run(dagrun.run_id)
    assert run["state"] == "failed" and str(bad) in run["error"], run["error"]
    assert ("does not exist" if case == "missing_folder" else "cannot load") in run["error"]
    written = set(storage.list_prefix(storage_root)) - files_before
    # Only the run's probe gate report: no staged source, segment, bundle or detection.
    assert written and all("/quality/" in uri and "/probe-video." in uri for uri in written), written
