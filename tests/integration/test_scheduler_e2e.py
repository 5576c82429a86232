"""`video_ingest` on the real scheduler: the `make up` stack on free ports, a run triggered through the
REST API with `segment_seconds: auto`, as a user runs it (not `dag.test()`).

Checks what only the real stack shows: the planned segment count, every task's own timings (pushed
as XCom `vidsearch_timing`) from processes forked by the preloading executor (no GX set-up in any
task), no retries, both stores agreeing, and the audio branch running beside the frames (their task
times overlap), transcripts in both stores, a re-run changing no counts, and a video without audio
skipping the branch (skipped, not failed).
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
VIDEO_TASKS = ("segment.extract_frames", "segment.detect_embed", "segment.index")
AUDIO_TASKS = ("segment.extract_audio", "segment.transcribe", "segment.index_transcript")
SEGMENT_TASKS = VIDEO_TASKS + AUDIO_TASKS


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
    # probe, split, finalize, 6 per segment, plan_reviews; nothing quarantined: review, plan_reprocess
    # and the 6 tasks of the in-run reprocess group are skipped (one instance each, never run).
    per_segment = len(SEGMENT_TASKS)
    assert len(tis) == 4 + per_segment * expected_segments + 2 + per_segment
    ran = [t for t in tis if t["state"] != "skipped"]
    assert len(ran) == 4 + per_segment * expected_segments
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
    assert summary["audio"] == {"done": expected_segments}

    # The two branches of a segment run side by side: the audio branch starts before the frames'
    # branch has finished (the scheduler runs them in parallel, not one after the other).
    def span(task_ids, i):
        mine = [t for t in tis if t["task_id"] in task_ids and t["map_index"] == i]
        return min(timestamp(t["start_date"]) for t in mine), max(timestamp(t["end_date"]) for t in mine)

    overlaps = []
    for i in range(expected_segments):
        (v0, v1), (a0, a1) = span(VIDEO_TASKS, i), span(AUDIO_TASKS, i)
        overlaps.append(min(v1, a1) - max(v0, a0))
    assert max(overlaps) > 0, overlaps

    # A re-run changes no counts (deterministic ids, replaced segments).
    rerun = api.trigger(DAG_ID, conf)
    assert api.wait_run(DAG_ID, rerun, timeout_s=600)["state"] == "success"
    again = api.xcom(DAG_ID, rerun, "finalize")
    for key in ("objects", "weaviate_objects", "transcript_chunks", "audio"):
        assert again[key] == summary[key], key


def test_a_video_without_audio_skips_the_audio_branch(stack):
    cfg, base = stack
    cache = base / "models"
    video = synth.make_video(base / "silent.mp4", duration_s=8, width=320, height=180, fps="25", audio=False)
    api = AirflowClient.for_stack(cfg)
    api.wait_for_dag(DAG_ID)
    conf = {
        "source": str(video),
        "collection": "sched_e2e_noaudio",
        "detector_model": str(modelstore.ensure_tiny_model("detector", cache)),
        "embedder_model": str(modelstore.ensure_tiny_model("embedder", cache)),
        "segment_seconds": 4,
    }
    run_id = api.trigger(DAG_ID, conf)
    run = api.wait_run(DAG_ID, run_id, timeout_s=600)
    tis = api.task_instances(DAG_ID, run_id)
    assert run["state"] == "success"
    audio = [t for t in tis if t["task_id"] in AUDIO_TASKS]
    assert audio and all(t["state"] == "skipped" for t in audio), [(t["task_id"], t["state"]) for t in audio]
    frames = [t for t in tis if t["task_id"] in VIDEO_TASKS]
    assert frames and all(t["state"] == "success" for t in frames)
    summary = api.xcom(DAG_ID, run_id, "finalize")
    assert summary["state"] == "done" and summary["transcript_chunks"] == 0
    assert set(summary["audio"]) == {"skipped"}
