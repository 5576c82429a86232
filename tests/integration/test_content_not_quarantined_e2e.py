"""Issue 12: content never quarantines, damage does, through `dag.test()` end to end.

A trailer-like video that fades in from black (its first frame is all black) ends with every
segment done; an H.264 file with a damaged bitstream has its segment quarantined, naming the
decoder errors (the frames gate's damage expectation) with the observed count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vidsearch.media import synth

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _conf(source: str, collection: str) -> dict:
    """As test_video_ingest_e2e runs the DAG: 3 s segments, 2 fps, tiny random models, and no human
    review (dag.test() cannot answer one; test_review_e2e.py does on the real stack)."""
    return {
        "review": False,
        "source": source,
        "collection": collection,
        "segment_seconds": 3,
        "sample_fps": 2,
        "score_threshold": 0.0,
        "detector_model": "facebook/detr-resnet-50",
        "embedder_model": "openai/clip-vit-base-patch32",
    }


@pytest.fixture(scope="module")
def dag(airflow_db, weaviate_server):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["video_ingest"]


def test_fade_from_black_is_not_quarantined(dag, tmp_path, catalog):
    from vidsearch.media.probe import probe_video

    video = synth.make_fade_video(tmp_path / "trailer.mp4", duration_s=6.0)
    manifest = probe_video(video, str(video))
    dagrun = dag.test(run_conf=_conf(str(video), collection="content"))
    segments = catalog.segment_states("content", manifest.video_id)
    assert dagrun.state == "success", segments
    assert segments and all(s["state"] == "done" for s in segments.values()), segments


def test_damaged_h264_segment_is_quarantined_naming_the_damage(dag, tmp_path, catalog):
    from vidsearch.media.probe import probe_video

    video = synth.make_damaged_h264(tmp_path / "damaged.mp4", duration_s=6.0, at=(0.5,))
    manifest = probe_video(video, str(video))
    dagrun = dag.test(run_conf=_conf(str(video), collection="damaged"))
    assert dagrun.state == "failed"
    segments = catalog.segment_states("damaged", manifest.video_id)
    assert catalog.get_run(dagrun.run_id)["state"] == "partial"  # the other segments are indexed
    quarantined = {i: s for i, s in segments.items() if s["state"] == "quarantined"}
    assert quarantined, segments
    for seg in quarantined.values():
        assert "decoder_errors" in seg["error"], seg["error"]
        damage = next(f for f in seg["quality"] if f["column"] == "decoder_errors")
        assert damage["observed"] > 0 and damage["damage"]
