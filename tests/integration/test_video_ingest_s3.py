"""`video_ingest` end to end with `s3://` object storage, against a local S3 server (moto's server
mode): the same counts as on a local folder, every blob in the bucket, nothing on local disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from vidsearch.media import synth
from vidsearch.stores import storage

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture()
def s3_root(s3_bucket, monkeypatch):
    root = f"{s3_bucket('vidsearch-test')}/objects"
    monkeypatch.setenv("VIDSEARCH_STORAGE_ROOT", root)
    return root


def test_ingest_with_s3_storage(airflow_db, weaviate_server, s3_root, catalog, tmp_path):
    from airflow.dag_processing.dagbag import DagBag
    from vidsearch.media.probe import probe_video

    video = synth.make_video(tmp_path / "s3.mp4", duration_s=6.0, width=256, height=144, gop_frames=30)
    manifest = probe_video(video, str(video))
    local_before = set(storage.list_prefix(f"file://{tmp_path}"))

    dag = DagBag(dag_folder=str(DAGS)).dags["video_ingest"]
    conf = {"source": str(video), "collection": "s3_e2e", "segment_seconds": 3, "sample_fps": 2, "score_threshold": 0.0}
    dagrun = dag.test(run_conf=conf)
    assert dagrun.state == "success", {(t.task_id, t.map_index): t.state for t in dagrun.get_task_instances()}

    counts = catalog.counts("s3_e2e", manifest.video_id)
    assert counts["segments"] == 2 and counts["objects"] > 0
    assert abs(counts["frames"] - manifest.duration_s * 2) <= 1

    blobs = storage.list_prefix(f"{s3_root}/videos/{manifest.video_id}")
    assert all(b.startswith("s3://vidsearch-test/objects/videos/") for b in blobs)
    names = {b.rsplit("/", 1)[-1] for b in blobs}
    assert {"source.mp4", "seg0000.mkv", "seg0001.mkv", "seg0000.zip", "result.json", "embeddings.npy"} <= names
    # The audio branch ran from S3 too: each segment's clip cut from the staged source (through a presigned
    # URL, tests/unit/test_audio.py) and kept in the bucket beside its record.
    from vidsearch.stores.transcripts import TranscriptStore

    audio = TranscriptStore(catalog.engine).audio_status("s3_e2e", manifest.video_id)
    assert [a["status"] for a in audio] == ["done", "done"]
    assert {"seg0000.wav", "seg0001.wav"} <= names, sorted(names)
    run = catalog.get_run(dagrun.run_id)
    assert run["quality_report"].startswith("s3://vidsearch-test/objects/quality/")
    assert storage.list_prefix(run["quality_report"])
    # Frame bundles are read back from S3 with random access (the search UI's crop path).
    from vidsearch.media.bundle import read_frame

    segs = catalog.segment_states("s3_e2e", manifest.video_id)
    assert read_frame(segs[0]["bundle_uri"], 0).size == (256, 144)
    assert set(storage.list_prefix(f"file://{tmp_path}")) - local_before <= {f"file://{video}"}
