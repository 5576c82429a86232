"""Damage in one segment file quarantines that segment only (issue 12): the split gate judges the cut
as a whole, and each segment file is gated by its own segment task, against real Postgres, Weaviate
and file storage."""

from __future__ import annotations

import pytest
from vidsearch import pipeline
from vidsearch.errors import QualityGateError
from vidsearch.media import synth
from vidsearch.stores import storage
from vidsearch.stores.index import ObjectIndex

pytestmark = pytest.mark.integration


def test_a_damaged_segment_file_quarantines_its_segment_and_the_others_go_on(
    tmp_path, catalog, weaviate_client, storage_root
):
    video = synth.make_video(tmp_path / "street.mp4", duration_s=6.0, width=160, height=90, fps=25, gop_frames=25)
    svc = pipeline.Services(catalog=catalog, index=lambda: ObjectIndex(weaviate_client), storage_root=storage_root)
    params = pipeline.IngestParams(source=str(video), collection="segdamage", segment_seconds=2, review=False)
    run_id = "segment-damage-test"
    probed = pipeline.probe_video(svc, run_id, "video_ingest", params)
    segments = pipeline.split_video(svc, run_id, params, probed)
    assert len(segments) == 3

    # The middle segment's file loses its tail half in storage (a truncated copy).
    damaged = storage.local_path(segments[1].uri)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])

    outcomes = {}
    for segment in segments:
        try:
            pipeline.extract_frames(svc, run_id, params, segment, probed.manifest)
            outcomes[segment.index] = "sampled"
        except QualityGateError as exc:
            outcomes[segment.index] = exc
    assert outcomes[0] == outcomes[2] == "sampled"
    error = outcomes[1]
    assert isinstance(error, QualityGateError)
    assert error.gate_result.stage == "segment" and error.gate_result.subject == "seg0001"
    assert {f.column for f in error.gate_result.failed} == {"end_excess_s"}, error.gate_result.summary()

    states = catalog.segment_states("segdamage", probed.manifest.video_id)
    assert states[1]["state"] == "quarantined"
    (failed,) = states[1]["quality"]
    assert failed["column"] == "end_excess_s" and failed["damage"] == "segment file ends early: frames lost in the copy"
    assert failed["observed"]["partial_unexpected_list"][0] > 0.5  # about a second of the segment is gone
    assert states[0]["state"] == states[2]["state"] == "pending"  # sampled; detection comes next
    # The run goes on: nothing marked it failed.
    assert catalog.get_run(run_id)["state"] == "running"
