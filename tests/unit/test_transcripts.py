"""Transcript chunks: times relative to the video, clamped into the clip, and each phrase kept by exactly
one of two neighbouring segments whose clips overlap."""

from __future__ import annotations

import math

import pytest
from vidsearch.records import AudioClip, transcript_chunk_id
from vidsearch.transcripts import Phrase, build_chunks, owned_chunks, transcript_result

VIDEO = "ab" * 16
OVERLAP = 2.0


def _clip(index: int, start: float, end: float, duration: float, speech: bool = True) -> AudioClip:
    return AudioClip(
        video_id=VIDEO,
        segment_index=index,
        uri=f"file:///audio/seg{index:04d}.wav",
        segment_start_s=start,
        segment_end_s=end,
        start_s=max(0.0, start - OVERLAP),
        end_s=min(duration, end + OVERLAP),
        rms_dbfs=-20.0 if speech else -math.inf,
        speech_likely=speech,
    )


def _heard(clip: AudioClip, spoken: list[tuple[float, float, str]]) -> list[Phrase]:
    """What a model hears in `clip` of phrases spoken at video times: those inside the clip, as clip times."""
    return [
        Phrase(start - clip.start_s, end - clip.start_s, text)
        for start, end, text in spoken
        if start >= clip.start_s and end <= clip.end_s
    ]


def test_times_become_video_times_clamped_into_the_clip():
    chunks = build_chunks(
        [Phrase(0.5, 2.0, " hello  world "), Phrase(3.0, 9.0, "past the end"), Phrase(4.0, 4.5, "   ")],
        video_id=VIDEO,
        segment_index=3,
        clip_start_s=10.0,
        clip_end_s=15.0,
        language="en",
    )
    assert [(c.start_s, c.end_s, c.text) for c in chunks] == [(10.5, 12.0, "hello world"), (13.0, 15.0, "past the end")]
    assert chunks[0].chunk_id == transcript_chunk_id(VIDEO, 3, 10.5)
    assert all(c.language == "en" and c.segment_index == 3 for c in chunks)


def test_a_phrase_before_the_clip_is_clamped_to_its_start_and_ends_never_precede_starts():
    (chunk,) = build_chunks(
        [Phrase(-1.0, -0.5, "early")], video_id=VIDEO, segment_index=0, clip_start_s=5.0, clip_end_s=8.0
    )
    assert (chunk.start_s, chunk.end_s) == (5.0, 5.0)


def test_phrases_starting_at_the_same_millisecond_become_one_chunk():
    chunks = build_chunks(
        [Phrase(1.0, 1.0, "a", -0.5, 0.1), Phrase(1.0, 2.0, "b", -0.9, 0.3)],
        video_id=VIDEO,
        segment_index=0,
        clip_start_s=0.0,
        clip_end_s=5.0,
    )
    assert [(c.text, c.end_s, c.avg_logprob, c.no_speech_prob) for c in chunks] == [("a b", 2.0, -0.9, 0.3)]


def test_a_phrase_straddling_a_boundary_is_kept_once_across_neighbouring_segments():
    duration = 30.0
    # Segments [0, 10), [10, 20), [20, 30]; phrases across both boundaries and one at the very end.
    spoken = [
        (1.0, 3.0, "first"),
        (8.5, 11.0, "across ten"),  # midpoint 9.75: segment 0's
        (9.5, 12.5, "later across ten"),  # midpoint 11.0: segment 1's
        (19.0, 21.0, "exactly on twenty"),  # midpoint 20.0: segment 2's (half-open)
        (29.0, 30.0, "the end"),  # midpoint 29.5
    ]
    segments = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    kept = []
    for index, (start, end) in enumerate(segments):
        clip = _clip(index, start, end, duration)
        result = transcript_result(
            clip, _heard(clip, spoken), is_last=index == len(segments) - 1, model="m", device="cpu"
        )
        assert all(start <= (c.start_s + c.end_s) / 2 <= end for c in result.chunks)
        assert all(clip.start_s <= c.start_s <= c.end_s <= clip.end_s for c in result.chunks)
        kept += [(index, c.text) for c in result.chunks]
    assert kept == [
        (0, "first"),
        (0, "across ten"),
        (1, "later across ten"),
        (2, "exactly on twenty"),
        (2, "the end"),
    ]


def test_the_last_segment_owns_its_end_and_no_other_segment_does():
    chunks = build_chunks(
        [Phrase(10.0, 10.0, "at the end")], video_id=VIDEO, segment_index=1, clip_start_s=0.0, clip_end_s=10.0
    )
    assert owned_chunks(chunks, 5.0, 10.0, is_last=True) == chunks
    assert owned_chunks(chunks, 5.0, 10.0, is_last=False) == []
    assert owned_chunks(chunks, 10.0, 15.0, is_last=False) == chunks  # the next segment starts there


def test_a_silent_clip_gives_an_empty_result_with_its_ranges():
    clip = _clip(0, 0.0, 10.0, 30.0, speech=False)
    result = transcript_result(clip, [], is_last=False, model="tiny-asr-x", device="cpu")
    assert result.chunks == [] and not result.speech_likely
    assert (result.segment_start_s, result.segment_end_s, result.clip_start_s, result.clip_end_s) == (
        0.0,
        10.0,
        0.0,
        12.0,
    )


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="segment ends"):
        owned_chunks([], 5.0, 4.0, is_last=False)
    with pytest.raises(ValueError, match="clip ends"):
        build_chunks([], video_id=VIDEO, segment_index=0, clip_start_s=5.0, clip_end_s=4.0)
