"""The sweep that closes catalog runs whose Airflow run ended without finalize (issue 12), against
real Postgres, Weaviate and file storage; the Airflow lookup is a table of states. The sweep as an
Airflow DAG on the real scheduler is in test_review_e2e.py."""

from __future__ import annotations

import pytest
from vidsearch import pipeline
from vidsearch.media import synth
from vidsearch.stores import catalog as cat
from vidsearch.stores.index import ObjectIndex

pytestmark = pytest.mark.integration


def test_only_runs_airflow_has_ended_are_closed_from_their_segments(tmp_path, catalog, weaviate_client, storage_root):
    svc = pipeline.Services(catalog=catalog, index=lambda: ObjectIndex(weaviate_client), storage_root=storage_root)
    runs = {}
    for n, name in enumerate(("failed", "success", "running", "unknown")):
        video = synth.make_video(
            tmp_path / f"{name}.mp4", duration_s=4.0, width=160 + 16 * n, height=90, fps=25, gop_frames=25
        )
        params = pipeline.IngestParams(source=str(video), collection="abandoned_sweep", segment_seconds=2)
        run_id = f"sweep-{name}"
        probed = pipeline.probe_video(svc, run_id, "video_ingest", params)
        segments = pipeline.split_video(svc, run_id, params, probed)
        runs[name] = (run_id, probed.manifest.video_id)
        # The first segment got through, the second never ran.
        catalog.set_segment_state("abandoned_sweep", segments[0].video_id, 0, cat.SegmentState.DONE)
    airflow = {"sweep-failed": "failed", "sweep-success": "success", "sweep-running": "running"}

    def lookup(dag_id: str, run_id: str) -> str | None:
        assert dag_id == "video_ingest"
        return airflow.get(run_id)  # None: Airflow knows no such run (e.g. its metadata DB was reset)

    closed = pipeline.close_abandoned_runs(svc, lookup)

    assert {r: closed[r] for r in closed if r.startswith("sweep-")} == {
        "sweep-failed": "partial",
        "sweep-success": "partial",
    }
    for name, expected in (
        ("failed", "partial"),
        ("success", "partial"),
        ("running", "running"),
        ("unknown", "running"),
    ):
        run_id, video_id = runs[name]
        run = catalog.get_run(run_id)
        assert run["state"] == expected, (name, run)
        assert catalog.get_video("abandoned_sweep", video_id)["state"] == (
            "partial" if expected == "partial" else "ingesting"
        )
    assert "ended failed before finalize" in catalog.get_run("sweep-failed")["error"]
    # A second sweep finds nothing more to close among these runs.
    again = pipeline.close_abandoned_runs(svc, lookup)
    assert not {r for r in again if r.startswith("sweep-")}
