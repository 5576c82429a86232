"""Segment planning: `segment_seconds: auto` against explicit lengths, its bounds, long videos."""

from __future__ import annotations

import math

import pytest
from vidsearch import pipeline
from vidsearch.errors import InputError, PermanentError
from vidsearch.media import split
from vidsearch.pipeline import IngestParams


def _segments(covered_s: float, seconds: float) -> int:
    return math.ceil(covered_s / seconds - 1e-9)


def test_auto_is_the_default_and_explicit_values_still_work():
    assert IngestParams(source="a.mp4").segment_seconds == "auto"
    assert IngestParams(source="a.mp4", segment_seconds=12.5).segment_seconds == 12.5
    # The trigger form's text field sends numbers as strings.
    assert IngestParams(source="a.mp4", segment_seconds="12").segment_seconds == 12.0
    params = IngestParams(source="a.mp4", segment_seconds=7)
    assert pipeline.planned_segment_seconds(params, 3600) == 7.0


@pytest.mark.parametrize("bad", [0, -1, 3601, "ten", "Auto", "", None])
def test_bad_segment_seconds_are_rejected(bad):
    with pytest.raises(ValueError):
        IngestParams(source="a.mp4", segment_seconds=bad)


def test_auto_gives_every_slot_work_and_each_segment_enough():
    # A 10-minute video on 2 slots: 2 waves per slot, 150 s each.
    assert split.auto_segment_seconds(600, slots=2) == 150
    assert _segments(600, split.auto_segment_seconds(600, slots=2)) == 4
    # More slots: shorter segments, more of them.
    assert split.auto_segment_seconds(600, slots=8) < split.auto_segment_seconds(600, slots=2)
    assert _segments(600, split.auto_segment_seconds(600, slots=8)) == 16


def test_auto_bounds_short_and_long_videos():
    # Short: never below the minimum, so a 1-minute clip is 2 segments, a 10 s clip one.
    assert split.auto_segment_seconds(60, slots=2) == split.AUTO_MIN_SEGMENT_S
    assert _segments(10, split.auto_segment_seconds(10, slots=2)) == 1
    # Long: never above the maximum, so the slots stay busy and a retry repeats at most 5 minutes.
    assert split.auto_segment_seconds(1800, slots=2) == split.AUTO_MAX_SEGMENT_S
    two_hours = split.auto_segment_seconds(7200, slots=2)
    assert two_hours == split.AUTO_MAX_SEGMENT_S
    assert _segments(7200, two_hours) == 24  # 24 mapped groups, 72 segment tasks: far below 1024


def test_auto_stays_within_max_map_length_for_any_length():
    for hours in (1, 24, 100, 1000):
        covered = hours * 3600.0
        seconds = split.auto_segment_seconds(covered, slots=64)
        assert _segments(covered, seconds) <= split.MAX_MAPPED_SEGMENTS
        assert seconds >= split.AUTO_MIN_SEGMENT_S


def test_auto_shortens_segments_when_more_frames_are_sampled():
    one = split.auto_segment_seconds(3600, slots=2, sample_fps=1)
    five = split.auto_segment_seconds(3600, slots=2, sample_fps=5)
    assert five == pytest.approx(one / 5, abs=0.001)
    # Sparse sampling does not make segments longer than the maximum.
    assert split.auto_segment_seconds(3600, slots=2, sample_fps=0.1) == split.AUTO_MAX_SEGMENT_S


@pytest.mark.parametrize("covered, slots, fps", [(0, 2, 1), (-5, 2, 1), (math.nan, 2, 1), (60, 0, 1), (60, 2, 0)])
def test_auto_rejects_bad_inputs(covered, slots, fps):
    with pytest.raises(InputError):
        split.auto_segment_seconds(covered, slots, fps)


def test_parallel_slots_follow_the_machine_or_the_setting(monkeypatch):
    monkeypatch.delenv(pipeline.PARALLEL_SLOTS_ENV, raising=False)
    import os

    assert pipeline.parallel_slots() == (os.cpu_count() or 1)
    monkeypatch.setenv(pipeline.PARALLEL_SLOTS_ENV, "6")
    assert pipeline.parallel_slots() == 6
    assert pipeline.planned_segment_seconds(IngestParams(source="a.mp4"), 600) == 50
    monkeypatch.setenv(pipeline.PARALLEL_SLOTS_ENV, "zero")
    with pytest.raises(PermanentError, match="VIDSEARCH_PARALLEL_SLOTS"):
        pipeline.parallel_slots()


def test_a_pod_per_segment_raises_the_floor():
    """Kubernetes mode: every segment is a GPU pod that starts and loads its models, so auto plans at
    least `min_segment_s` (and the cap moves up with it)."""
    assert split.auto_segment_seconds(600, slots=2, min_segment_s=600) == 600
    assert split.auto_segment_seconds(7200, slots=2, min_segment_s=600) == 600
    assert split.auto_segment_seconds(60, slots=2, min_segment_s=600) == 600  # one segment
    params = IngestParams(source="a.mp4", segment_seconds=20)
    assert pipeline.planned_segment_seconds(params, 7200, min_segment_s=600) == 20, "explicit wins"
    with pytest.raises(InputError):
        split.auto_segment_seconds(600, slots=2, min_segment_s=0)
