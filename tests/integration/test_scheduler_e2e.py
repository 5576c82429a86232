"""`video_ingest` on the real scheduler: the `make up` stack on free ports, a run triggered through the
REST API with `segment_seconds: auto`, as a user runs it (not `dag.test()`).

Checks what only the real stack shows: the planned segment count, every task's own timings (pushed
as XCom `vidsearch_timing`) from processes forked by the preloading executor (no GX set-up in any
task), no retries, and both stores agreeing.
"""

from __future__ import annotations

import math
import os

import pytest
from devstack.client import AirflowClient, timestamp
from stack_helpers import running_stack
from vidsearch.media import split, synth
from vidsearch.models import modelstore

pytestmark = pytest.mark.integration

DAG_ID = "video_ingest"
SEGMENT_TASKS = ("segment.extract_frames", "segment.detect_embed", "segment.index")


@pytest.fixture(scope="module")
def stack():
    """The CLI stack (Postgres, Weaviate, Airflow on LocalExecutor, warm worker) on free ports."""
    with running_stack("vidsearch-sched-") as running:
        yield running


def test_auto_segments_through_the_real_scheduler(stack):
    cfg, base = stack
    cache = base / "models"
    detector = modelstore.ensure_tiny_model("detector", cache)
    embedder = modelstore.ensure_tiny_model("embedder", cache)
    video = synth.make_video(base / "clip.mp4", duration_s=40, width=320, height=180, fps="25", gop_frames=25)

    api = AirflowClient.for_stack(cfg)
    api.wait_for_dag(DAG_ID)
    conf = {
        "source": str(video),
        "collection": "sched_e2e",
        "detector_model": str(detector),
        "embedder_model": str(embedder),
        "score_threshold": 0.0,
    }  # segment_seconds left out: "auto"
    run_id = api.trigger(DAG_ID, conf)
    run = api.wait_run(DAG_ID, run_id, timeout_s=600)
    tis = api.task_instances(DAG_ID, run_id)
    states = {(t["task_id"], t["map_index"]): t["state"] for t in tis}
    assert run["state"] == "success", states

    # The planner's segment count for this video on this machine's slots.
    seconds = split.auto_segment_seconds(40.0, os.cpu_count() or 1)
    expected_segments = math.ceil(40.0 / seconds - 1e-9)
    mapped = sorted(t["map_index"] for t in tis if t["task_id"] == "segment.extract_frames")
    assert mapped == list(range(expected_segments))
    # probe, split, finalize, 3 per segment, plan_reviews; nothing quarantined: review, plan_reprocess
    # and the 3 tasks of the in-run reprocess group are skipped (one instance each, never run).
    assert len(tis) == 4 + 3 * expected_segments + 5
    ran = [t for t in tis if t["state"] != "skipped"]
    assert len(ran) == 4 + 3 * expected_segments
    assert all(t["try_number"] == 1 for t in ran), "no task needed a retry"

    for ti in ran:
        timing = api.xcom(DAG_ID, run_id, ti["task_id"], "vidsearch_timing", ti["map_index"])
        assert timing, f"{ti['task_id']}[{ti['map_index']}] pushed no timings"
        assert timing["preloaded"] is True, "the task process was not forked from the preloading executor"
        assert timing["gx_setup_s"] == 0.0, f"{ti['task_id']} set up Great Expectations itself"
        # The task's own code runs inside the task instance's start and end.
        assert timestamp(ti["start_date"]) - 1 <= timing["code_started_at"] <= timing["finished_at"]
        assert timing["finished_at"] <= timestamp(ti["end_date"]) + 1
        assert 0 < timing["max_rss_bytes"] < 1.5 * 2**30

    # Readable task logs: our own lines, not pages of library chatter (GX logs hundreds at INFO).
    for ti in tis:
        if ti["task_id"].startswith("segment."):
            lines = api.task_log(DAG_ID, run_id, ti["task_id"], 1, ti["map_index"])
            assert lines, f"{ti['task_id']}[{ti['map_index']}] has no log"
            assert len(lines) < 60, (ti["task_id"], len(lines), lines[:80])
            assert not any("Skipping registering" in line for line in lines)

    summary = api.xcom(DAG_ID, run_id, "finalize")
    assert summary["segments"] == summary["segments_done"] == expected_segments
    assert summary["objects"] == summary["weaviate_objects"] > 0
