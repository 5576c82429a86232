"""Content-aware sampling end to end with `dag.test()`: skipped frames never reach detection, and their
counts reach Postgres (frames, segments, the run's summary) and the finalize summary.

The video: 3 s of moving boxes, 3 s of a still test card, 3 s of a dim, nearly flat picture; sampled
in `scenes` mode at a 2 fps floor, one segment per scene. The dim picture (pixel std about 1) is blank to
the sampler; the frames gate, which still rejects blank frames on its own (its `blank_std_min`), is set
below it here so that the segment is indexed and its blank frames are counted, not quarantined.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vidsearch.media import synth

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"
COLLECTION = "content"


@pytest.fixture(scope="module")
def dag(airflow_db, weaviate_server):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["video_ingest"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("content") / "boxes-card-dim.mp4"
    return synth.make_scene_video(path, [("boxes", 3.0), ("bars", 3.0), ("dim", 3.0)], 320, 180, "25", gop_frames=25)


def test_blank_and_repeated_frames_are_skipped_and_counted(dag, video, catalog, monkeypatch):
    import sqlalchemy as sa
    from vidsearch import quality
    from vidsearch.media.probe import probe_video
    from vidsearch.stores.catalog import frames, objects

    monkeypatch.setenv(quality.ENV_VAR, '{"blank_std_min": 0.5}')
    manifest = probe_video(video, str(video))
    conf = {
        "source": str(video),
        "collection": COLLECTION,
        "segment_seconds": 3,
        "sample_fps": 2,
        "sampling": "scenes",
        "score_threshold": 0.0,  # tiny random models: keep every non-degenerate box
    }
    dagrun = dag.test(run_conf=conf)
    assert dagrun.state == "success", {(ti.task_id, ti.map_index): ti.state for ti in dagrun.get_task_instances()}

    segments = catalog.segment_states(COLLECTION, manifest.video_id)
    assert {i: s["state"] for i, s in segments.items()} == {0: "done", 1: "done", 2: "done"}
    # The still card: its first frame is kept, the 5 others repeat it; the dim picture: 6 blank frames.
    assert segments[1]["frames_skipped"] == {"blank": 0, "duplicate": 5}
    assert segments[2]["frames_skipped"] == {"blank": 6, "duplicate": 0}
    assert segments[0]["frames_skipped"]["blank"] == 0

    with catalog.engine.connect() as conn:
        rows = conn.execute(
            sa.select(frames.c.segment_index, frames.c.frame_index, frames.c.blank, frames.c.duplicate_of)
            .where(frames.c.collection == COLLECTION, frames.c.video_id == manifest.video_id)
            .order_by(frames.c.segment_index, frames.c.frame_index)
        ).all()
        detected_on = set(
            conn.execute(
                sa.select(objects.c.segment_index, objects.c.frame_index).where(
                    objects.c.collection == COLLECTION, objects.c.video_id == manifest.video_id
                )
            ).all()
        )
    card = [(r.blank, r.duplicate_of) for r in rows if r.segment_index == 1]
    assert card == [(False, None)] + [(False, 0)] * 5
    assert all(r.blank and r.duplicate_of is None for r in rows if r.segment_index == 2)
    skipped = {(r.segment_index, r.frame_index) for r in rows if r.blank or r.duplicate_of is not None}
    # No object comes from a skipped frame; the kept ones were detected (tiny models find boxes anywhere).
    assert detected_on and not detected_on & skipped
    assert (1, 0) in detected_on and {(0, r.frame_index) for r in rows if r.segment_index == 0} <= detected_on | skipped

    totals = {reason: sum(s["frames_skipped"][reason] for s in segments.values()) for reason in ("blank", "duplicate")}
    assert totals["blank"] == 6 and totals["duplicate"] >= 5
    assert catalog.frames_skipped(COLLECTION, manifest.video_id) == totals
    run = catalog.get_run(dagrun.run_id)
    assert run["state"] == "done"
    assert run["summary"]["frames_skipped"] == totals  # the finalize summary, as stored on the run
    assert run["summary"]["frames"] == len(rows)
    finalize = next(ti for ti in dagrun.get_task_instances() if ti.task_id == "finalize")
    assert finalize.state == "success"
