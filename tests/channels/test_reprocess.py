"""Retries and reprocessing on the real Postgres and Weaviate: a segment made to fail (an injected
transient error, a killed worker) retries; once its retries are spent it is completed by
`reprocess_segments` or by clearing its failed tasks, leaving done segments untouched, and the counts
equal those of a clean run, with no duplicates. A permanent error does not retry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from channel_helpers import fresh_dag, run_existing_dagrun, task_states
from vidsearch.media import synth
from vidsearch_airflow.task_context import FAULTS_ENV

pytestmark = pytest.mark.integration


def _fast_retries(dag, retries: int = 1):
    """Test-only: one retry, a second apart (production delays are 10 s to minutes)."""
    for task in dag.tasks:
        task.retries = retries
        task.retry_delay = dt.timedelta(seconds=1)
        task.max_retry_delay = dt.timedelta(seconds=2)
    return dag


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reprocess") / "boxes.mp4"
    # 6 s with a keyframe every second: three 2 s segments.
    synth.make_video(path, duration_s=6.0, width=160, height=90, fps="25", audio=False, gop_frames=25)
    return path


@pytest.fixture(scope="module")
def video_id(video) -> str:
    from vidsearch.media.probe import probe_video

    return probe_video(video, str(video)).video_id


def _conf(video: Path, collection: str) -> dict:
    return {
        "source": str(video),
        "collection": collection,
        "segment_seconds": 2,
        "sample_fps": 1,
        "score_threshold": 0.0,  # tiny random models: keep every non-degenerate box
    }


def _snapshot(catalog, weaviate_client, collection: str, video_id: str) -> dict:
    from vidsearch.stores.index import ObjectIndex

    segments = catalog.segment_states(collection, video_id)
    index = ObjectIndex(weaviate_client)
    wv_ids: list[str] = []
    for seg in segments:
        wv_ids += list(index.ids(collection, video_id, seg))
    return {
        "counts": catalog.counts(collection, video_id),
        "per_segment": catalog.object_counts_by_segment(collection, video_id),
        "frames_per_segment": {i: s["frame_count"] for i, s in segments.items()},
        "states": {i: s["state"] for i, s in segments.items()},
        "pg_ids": catalog.object_ids(collection, video_id),
        "wv_ids": wv_ids,
        "updated_at": {i: s["updated_at"] for i, s in segments.items()},
    }


@pytest.fixture(scope="module")
def clean(airflow_db, weaviate_server, video, video_id, catalog, weaviate_client) -> dict:
    """A clean run of the video: the reference counts."""
    dagrun = fresh_dag("video_ingest").test(run_conf=_conf(video, "rp_clean"))
    assert dagrun.state == "success", task_states(dagrun)
    snap = _snapshot(catalog, weaviate_client, "rp_clean", video_id)
    assert len(snap["states"]) == 3 and snap["counts"]["objects"] > 0
    return snap


def _assert_like_clean(snap: dict, clean: dict) -> None:
    assert snap["states"] == {0: "done", 1: "done", 2: "done"}
    assert snap["counts"] == clean["counts"]
    assert snap["per_segment"] == clean["per_segment"]
    assert snap["frames_per_segment"] == clean["frames_per_segment"]
    # Same video, same ids (ids derive from the content, not the collection); no duplicates anywhere.
    assert snap["pg_ids"] == clean["pg_ids"]
    assert sorted(snap["wv_ids"]) == sorted(snap["pg_ids"]) and len(snap["wv_ids"]) == snap["counts"]["objects"]


def test_failed_segments_retry_then_reprocess_segments_completes_them(
    clean, video, video_id, catalog, weaviate_client, monkeypatch
):
    # Segment 1: a transient error on every try (retried, then out of retries).
    # Segment 2: a permanent error (fails at once, no retry).
    monkeypatch.setenv(FAULTS_ENV, "detect_embed:1:transient,extract_frames:2:permanent")
    ingest = _fast_retries(fresh_dag("video_ingest"))
    dagrun = ingest.test(run_conf=_conf(video, "rp_fix"))
    states = task_states(dagrun)
    assert dagrun.state == "failed"
    assert states[("segment.detect_embed", 1)] == ("failed", 2), states
    assert states[("segment.extract_frames", 2)] == ("failed", 1), states
    assert states[("segment.index", 0)] == ("success", 1)
    assert states[("finalize", -1)][0] == "failed"
    before = _snapshot(catalog, weaviate_client, "rp_fix", video_id)
    assert before["states"] == {0: "done", 1: "failed", 2: "failed"}
    segments = catalog.segment_states("rp_fix", video_id)
    assert "injected transient fault" in segments[1]["error"]
    assert "injected permanent fault" in segments[2]["error"]
    run = catalog.get_run(dagrun.run_id)
    # Segment 0 is usable: the run (and the video) ends partial, naming the failed segments.
    assert run["state"] == "partial" and "seg0001" in run["error"] and "seg0002" in run["error"]
    assert catalog.get_video("rp_fix", video_id)["state"] == "partial"

    monkeypatch.delenv(FAULTS_ENV)
    reprocess = fresh_dag("reprocess_segments")
    conf = {"collection": "rp_fix", "video_id": video_id, "states": ["failed"]}
    rerun = reprocess.test(run_conf=conf)
    states = task_states(rerun)
    assert rerun.state == "success", states
    # Only the two failed segments ran, each named after its segment.
    mapped = sorted(
        (ti for ti in rerun.get_task_instances() if ti.task_id == "segment.index"), key=lambda t: t.map_index
    )
    assert [ti.rendered_map_index.split(" ")[0] for ti in mapped] == ["seg0001", "seg0002"]
    after = _snapshot(catalog, weaviate_client, "rp_fix", video_id)
    _assert_like_clean(after, clean)
    assert after["updated_at"][0] == before["updated_at"][0]  # the done segment was not touched
    assert catalog.get_run(rerun.run_id)["state"] == "done", task_states(rerun)
    assert catalog.get_video("rp_fix", video_id)["state"] == "done"  # partial -> done by reprocessing

    # Idempotent: nothing is left to reprocess; the run succeeds and changes nothing.
    again = fresh_dag("reprocess_segments").test(run_conf=conf)
    assert again.state == "success", task_states(again)
    assert task_states(again)[("segment.extract_frames", -1)][0] == "skipped"  # mapped over nothing
    assert task_states(again)[("finalize", -1)][0] == "success"
    assert catalog.get_run(again.run_id)["state"] == "done"  # closed, not left running
    assert _snapshot(catalog, weaviate_client, "rp_fix", video_id) == after


def test_a_killed_worker_retries_and_clearing_its_failed_tasks_completes_the_run(
    clean, video, video_id, catalog, weaviate_client, monkeypatch
):
    import sqlalchemy as sa
    from airflow.models.taskinstance import clear_task_instances
    from airflow.settings import Session

    monkeypatch.setenv(FAULTS_ENV, "detect_embed:1:kill")
    ingest = _fast_retries(fresh_dag("video_ingest"))
    dagrun = ingest.test(run_conf=_conf(video, "rp_clear"))
    states = task_states(dagrun)
    assert dagrun.state == "failed"
    assert states[("segment.detect_embed", 1)] == ("failed", 2), states  # killed twice
    error = catalog.segment_states("rp_clear", video_id)[1]["error"]
    assert "killed by signal 9" in error, error
    before = _snapshot(catalog, weaviate_client, "rp_clear", video_id)

    # The grid's "Clear" on the failed mapped task with downstream: detect_embed[1], index[1], finalize.
    monkeypatch.delenv(FAULTS_ENV)
    with Session() as session:
        from airflow.models.taskinstance import TaskInstance

        tis = session.scalars(
            sa.select(TaskInstance).where(
                TaskInstance.dag_id == "video_ingest",
                TaskInstance.run_id == dagrun.run_id,
                sa.or_(
                    sa.and_(TaskInstance.task_id == "segment.detect_embed", TaskInstance.map_index == 1),
                    sa.and_(TaskInstance.task_id == "segment.index", TaskInstance.map_index == 1),
                    TaskInstance.task_id == "finalize",
                ),
            )
        ).all()
        assert len(tis) == 3
        clear_task_instances(tis, session)
        session.commit()
    repaired = run_existing_dagrun(ingest, dagrun.run_id)
    states = task_states(repaired)
    assert repaired.state == "success", states
    assert states[("segment.detect_embed", 1)] == ("success", 3)
    assert states[("segment.index", 0)] == ("success", 1)  # the done segments did not run again
    after = _snapshot(catalog, weaviate_client, "rp_clear", video_id)
    _assert_like_clean(after, clean)
    assert after["updated_at"][0] == before["updated_at"][0]
    assert catalog.get_run(dagrun.run_id)["state"] == "done"
