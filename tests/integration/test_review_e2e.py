"""Reviewing quarantined segments on the real stack (scheduler + api-server), answered through the
Airflow REST API (`PATCH .../hitlDetails`) as a reviewer would, and left unanswered to time out.

One stack, four runs at once, each of its own video (3 segments): segment 1 is quarantined by fault
injection (`segment.index:1:quarantine`: its detect+embed output exists, the in-run `reprocess`
group is not affected). The reviews are answered reprocess / accept / drop, the fourth times out to
the default (drop). Checked: the decision, who and when in `segment_reviews`, segment, run and video
states, and the Airflow run's outcome. Then a run marked failed while its review waits is closed in
the catalog by the catalog_maintenance DAG.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from devstack.airflow import ADMIN_USER, env_for_stack
from devstack.client import AirflowClient
from stack_helpers import running_stack
from vidsearch.media import synth
from vidsearch.media.probe import probe_video
from vidsearch.models import modelstore
from vidsearch.stores.catalog import Catalog

pytestmark = pytest.mark.integration

DAG_ID = "video_ingest"
FAULTS = "segment.index:1:quarantine"


@pytest.fixture(scope="module")
def stack():
    """The CLI stack on free ports, its tasks quarantining segment 1 of every video_ingest run."""
    with running_stack("vidsearch-review-", {"VIDSEARCH_FAULTS": FAULTS}) as running:
        yield running


def _wait_awaiting_review(api: AirflowClient, run_id: str, timeout_s: float = 600) -> dict:
    """The run's review task once it waits for input (fails fast if the run ends first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tis = [t for t in api.task_instances(DAG_ID, run_id) if t["task_id"] == "review"]
        waiting = [t for t in tis if t["state"] == "awaiting_input"]
        if waiting:
            assert len(tis) == 1, tis  # one quarantined segment, one review
            return waiting[0]
        if api.run(DAG_ID, run_id)["state"] in ("success", "failed"):
            raise AssertionError(f"run {run_id} ended without waiting for a review: {tis}")
        time.sleep(2)
    raise TimeoutError(f"no review of run {run_id} waited for input within {timeout_s:.0f} s")


def test_reviews_reprocess_accept_drop_and_time_out(stack):
    cfg, base = stack
    cache = base / "models"
    detector = modelstore.ensure_tiny_model("detector", cache)
    embedder = modelstore.ensure_tiny_model("embedder", cache)
    catalog = Catalog.from_url(env_for_stack(cfg)["AIRFLOW_CONN_VIDSEARCH_POSTGRES"])
    api = AirflowClient.for_stack(cfg)
    api.wait_for_dag(DAG_ID)

    choices = ("reprocess", "accept", "drop", None)  # None: nobody answers
    runs = {}
    for n, choice in enumerate(choices):
        # A video of its own per run (different size, different content hash), 3 segments of 2 s.
        video = synth.make_video(
            base / f"clip{n}.mp4", duration_s=6.0, width=160 + 16 * n, height=90, fps="25", gop_frames=25
        )
        collection = f"review_{choice or 'timeout'}"
        conf = {
            "source": str(video),
            "collection": collection,
            "segment_seconds": 2,
            "sample_fps": 1,
            "score_threshold": 0.0,
            "detector_model": str(detector),
            "embedder_model": str(embedder),
            # Long enough for an answer on a busy machine; the unanswered one times out in 20 s.
            "review_timeout_hours": 1.0 if choice else 20 / 3600,
        }
        runs[choice] = (api.trigger(DAG_ID, conf), collection, probe_video(video, str(video)).video_id)

    asked_at = {}
    for choice in choices[:3]:
        run_id = runs[choice][0]
        review = _wait_awaiting_review(api, run_id)
        detail = api.get(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/review/{review['map_index']}/hitlDetails")
        assert detail["options"] == ["reprocess", "accept", "drop"] and detail["defaults"] == ["drop"]
        assert "seg0001" in detail["subject"] and "injected quality gate failure" in detail["body"]
        assert "quality" in detail["body"]  # the run's quality report folder is named
        # Answer as a person would, not within the second the task parked: an answer that lands
        # before the scheduler has processed the parked process's exit races it (seen on 3.3: the
        # resumed try is refused with 409 and the task starts a new try, asking again).
        time.sleep(8)
        asked_at[choice] = dt.datetime.now(dt.UTC)
        answer = api.send(
            "PATCH",
            f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/review/{review['map_index']}/hitlDetails",
            {"chosen_options": [choice]},
        )
        assert answer["responded_by"]["name"] == ADMIN_USER

    ended = {c: api.wait_run(DAG_ID, runs[c][0], timeout_s=900) for c in choices}

    def outcome(choice):
        run_id, collection, video_id = runs[choice]
        segs = {i: s["state"] for i, s in catalog.segment_states(collection, video_id).items()}
        reviews = catalog.reviews(collection, video_id)
        assert len(reviews) == 1, reviews
        return (
            ended[choice]["state"],
            catalog.get_run(run_id)["state"],
            catalog.get_video(collection, video_id)["state"],
            segs,
            reviews[0],
        )

    for choice in choices[:3]:
        airflow_state, run_state, video_state, segs, review = outcome(choice)
        assert review["decision"] == choice and review["decided_by"] == ADMIN_USER and not review["timed_out"]
        assert abs((review["decided_at"] - asked_at[choice]).total_seconds()) < 120
        assert review["run_id"] == runs[choice][0] and review["segment_index"] == 1
        assert "injected quality gate failure" in review["error"] and review["quality_report"]
        states_by_choice = {"reprocess": "done", "accept": "accepted", "drop": "dropped"}
        assert segs == {0: "done", 1: states_by_choice[choice], 2: "done"}, (choice, segs)
        assert (airflow_state, run_state, video_state) == (
            ("success", "partial", "partial") if choice == "drop" else ("success", "done", "done")
        ), choice

    # reprocess ran the segment again in the same run; accept indexed its own results as they were.
    reprocessed = {(t["task_id"], t["map_index"]): t["state"] for t in api.task_instances(DAG_ID, runs["reprocess"][0])}
    assert reprocessed[("reprocess.index", 0)] == "success", reprocessed
    for choice in ("reprocess", "accept"):
        _, collection, video_id = runs[choice]
        assert catalog.segment_states(collection, video_id)[1]["object_count"] > 0
        assert catalog.object_ids(collection, video_id, 1)
    _, collection, video_id = runs["drop"]
    assert catalog.object_ids(collection, video_id, 1) == set()

    # Nobody answered: the default (drop) applied at the timeout, by nobody.
    airflow_state, run_state, video_state, segs, review = outcome(None)
    assert review["decision"] == "drop" and review["timed_out"] and review["decided_by"] is None
    assert segs == {0: "done", 1: "dropped", 2: "done"}
    assert (airflow_state, run_state, video_state) == ("success", "partial", "partial")


def test_a_run_marked_failed_while_waiting_is_closed_by_catalog_maintenance(stack):
    """An operator marks a run failed while its review waits: Airflow runs no further task (finalize
    included) and fires no callback; the catalog_maintenance sweep closes the catalog run and the
    video from the segments' states instead of leaving them `running` / `ingesting`."""
    cfg, base = stack
    cache = base / "models"
    catalog = Catalog.from_url(env_for_stack(cfg)["AIRFLOW_CONN_VIDSEARCH_POSTGRES"])
    api = AirflowClient.for_stack(cfg)
    api.wait_for_dag(DAG_ID)
    api.wait_for_dag("catalog_maintenance")
    video = synth.make_video(base / "abandoned.mp4", duration_s=6.0, width=224, height=90, fps="25", gop_frames=25)
    video_id = probe_video(video, str(video)).video_id
    conf = {
        "source": str(video),
        "collection": "abandoned",
        "segment_seconds": 2,
        "sample_fps": 1,
        "score_threshold": 0.0,
        "detector_model": str(modelstore.ensure_tiny_model("detector", cache)),
        "embedder_model": str(modelstore.ensure_tiny_model("embedder", cache)),
    }
    run_id = api.trigger(DAG_ID, conf)
    _wait_awaiting_review(api, run_id)
    api.fail_run(DAG_ID, run_id)
    assert api.wait_run(DAG_ID, run_id, timeout_s=120)["state"] == "failed"
    assert catalog.get_run(run_id)["state"] == "running"  # nothing closed it

    sweep = api.wait_run("catalog_maintenance", api.trigger("catalog_maintenance", {}), timeout_s=300)
    assert sweep["state"] == "success"
    run = catalog.get_run(run_id)
    # Segments 0 and 2 were indexed, segment 1 stays quarantined: the video is partial.
    assert run["state"] == "partial", run
    assert "the Airflow run ended failed before finalize closed it" in run["error"]
    assert catalog.get_video("abandoned", video_id)["state"] == "partial"
    closed = api.xcom("catalog_maintenance", sweep["dag_run_id"], "close_abandoned_runs")
    assert closed.get(run_id) == "partial", closed
