"""quality: the transcript gate (the audio branch) and its repeated-token loop detector.

A segment [10, 20) with a 2 s overlap: its clip is [8, 22]. Normal transcripts (a chunk straddling the
segment start that the segment owns by its midpoint, zero chunks, a quiet room) pass; damage (loops,
misplaced or out-of-order chunks, empty texts, NaN confidences, language names) fails naming the
expectation.
"""

from __future__ import annotations

import math

import pytest
from quality_helpers import BETWEEN, IN_SET, failed, failed_columns
from vidsearch import quality
from vidsearch.errors import QualityGateError
from vidsearch.quality import (
    QualityConfig,
    check_transcript,
    compression_ratio,
    enforce,
    longest_repeat,
    repeated_loop,
)
from vidsearch.quality.suites import SUITES
from vidsearch.records import TranscriptChunk, TranscriptResult, transcript_chunk_id

VIDEO_ID = "cd" * 16
SEGMENT = 3
N_EXPECTATIONS = len(SUITES["transcript"].checks)


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quality.ENV_VAR, raising=False)


def chunk(start: float, end: float, text: str, **update: object) -> TranscriptChunk:
    good = TranscriptChunk(
        chunk_id=transcript_chunk_id(VIDEO_ID, SEGMENT, start),
        video_id=VIDEO_ID,
        segment_index=SEGMENT,
        start_s=start,
        end_s=end,
        text=text,
        language="en",
        avg_logprob=-0.31,
        no_speech_prob=0.02,
    )
    return good.model_copy(update=update)  # no validation: how a broken chunk reaches the gate


GOOD_CHUNKS = [
    (9.2, 11.4, " So the bridge opened in the spring,"),  # straddles the segment start; midpoint 10.3
    (11.4, 14.0, " and no, no, no, nobody expected the crowds."),
    (14.0, 17.52, " Thank you. Thank you very much."),
    (17.52, 21.0, " The the next part is the tunnel."),  # ends in the overlap; midpoint 19.26
]


def transcript(chunks: list[TranscriptChunk] | None = None, **update: object) -> TranscriptResult:
    good = TranscriptResult(
        video_id=VIDEO_ID,
        segment_index=SEGMENT,
        model="whisper-small",
        device="cpu",
        language="en",
        language_probability=0.97,
        segment_start_s=10.0,
        segment_end_s=20.0,
        clip_start_s=8.0,
        clip_end_s=22.0,
        speech_likely=True,
        chunks=[chunk(*c) for c in GOOD_CHUNKS] if chunks is None else chunks,
    )
    return good.model_copy(update=update)


# --- the gate ---------------------------------------------------------------------------------------


def test_transcript_gate_passes_a_normal_transcript() -> None:
    result = check_transcript(transcript())
    assert result.success, result.summary()
    assert result.stage == "transcript" and result.subject == "seg0003"
    assert result.evaluated == N_EXPECTATIONS == 15
    assert "transcript" in quality.STAGES


def test_transcript_gate_passes_zero_chunks_even_where_speech_is_likely() -> None:
    for speech_likely in (True, False):
        result = check_transcript(transcript([], speech_likely=speech_likely, language=None))
        assert result.success, result.summary()
        assert result.evaluated == N_EXPECTATIONS  # every expectation still ran (and is reported)


def test_transcript_gate_passes_chunks_without_optional_fields() -> None:
    chunks = [chunk(*c, language=None, avg_logprob=None, no_speech_prob=None) for c in GOOD_CHUNKS]
    result = check_transcript(transcript(chunks, language=None, language_probability=None))
    assert result.success, result.summary()


def test_transcript_gate_passes_a_three_letter_language_and_the_first_segment() -> None:
    chunks = [chunk(0.0, 2.0, " Aloha mai kākou.", language="haw")]
    first = transcript(chunks, language="haw", segment_start_s=0.0, segment_end_s=10.0, clip_start_s=0.0)
    result = check_transcript(first.model_copy(update={"clip_end_s": 12.0}))
    assert result.success, result.summary()


def test_transcript_gate_rejects_a_repeated_token_loop() -> None:
    chunks = [chunk(*c) for c in GOOD_CHUNKS[:2]] + [
        chunk(14.0, 17.5, " the" * 30),
        chunk(17.5, 19.0, " Thank you." * 12),
    ]
    result = check_transcript(transcript(chunks))
    assert not result.success
    loop = failed(result, BETWEEN, "repeat_count")
    assert loop.observed["partial_unexpected_list"] == [30, 12]
    assert loop.observed["rows"] == [2, 3]
    assert loop.expected == "<= 8" and "repeated-token loop" in loop.description
    assert "decoding loop" in loop.damage
    with pytest.raises(QualityGateError) as info:
        enforce(result)
    assert "expect_column_values_to_be_between(repeat_count) observed 2 unexpected [30, 12]" in str(info.value)
    # The thresholds are the configuration's.
    loose = check_transcript(
        transcript(chunks), QualityConfig(transcript_max_repeats=40, transcript_max_compression_ratio=50)
    )
    assert loose.success, loose.summary()


def test_transcript_gate_rejects_a_looped_phrase_by_its_compression_ratio() -> None:
    looped = " I am going to the store now." * 12  # a 7-word phrase: beyond the n-gram counter
    result = check_transcript(transcript([chunk(10.0, 19.0, looped)]))
    ratio = failed(result, BETWEEN, "compression_ratio")
    assert ratio.observed["partial_unexpected_list"][0] > 6
    assert failed_columns(result) == {"compression_ratio"}


def test_transcript_gate_rejects_timestamps_outside_the_clip() -> None:
    chunks = [chunk(7.0, 9.5, " Too early."), chunk(12.0, 14.0, " Fine."), chunk(19.0, 23.5, " Too late.")]
    result = check_transcript(transcript(chunks))
    start = failed(result, BETWEEN, "start_s")
    assert start.observed["partial_unexpected_list"] == [7.0] and start.observed["rows"] == [0]
    assert start.expected == "in [7.5, 22.5]"
    end = failed(result, BETWEEN, "end_s")
    assert end.observed["partial_unexpected_list"] == [23.5] and end.observed["rows"] == [2]


def test_transcript_gate_rejects_chunks_outside_their_segment() -> None:
    # Both lie inside the clip, in the overlap: chunks the neighbouring segments own.
    chunks = [chunk(8.0, 9.0, " Before."), chunk(12.0, 14.0, " Ours."), chunk(20.4, 21.8, " After.")]
    result = check_transcript(transcript(chunks))
    mid = failed(result, BETWEEN, "midpoint_s")
    assert mid.observed["partial_unexpected_list"] == [8.5, 21.1]
    assert mid.observed["rows"] == [0, 2]
    assert mid.expected == "in [9.5, 20.5]"
    assert failed_columns(result) == {"midpoint_s"}
    # Within the tolerance passes; a wider tolerance is the configuration's.
    assert check_transcript(transcript([chunk(9.4, 9.8, " Just before.")])).success
    assert check_transcript(transcript(chunks), QualityConfig(transcript_time_tolerance_s=2.0)).success


def test_transcript_gate_rejects_an_inverted_chunk() -> None:
    result = check_transcript(transcript([chunk(12.0, 11.0, " Backwards.")]))
    pair = failed(result, "expect_column_pair_values_a_to_be_greater_than_b", "end_s,start_s")
    assert pair.expected == "end_s >= start_s"
    assert pair.observed["partial_unexpected_list"] == [[11.0, 12.0]]


def test_transcript_gate_rejects_decreasing_start_times() -> None:
    chunks = [chunk(10.0, 12.0, " One."), chunk(14.0, 15.0, " Three."), chunk(12.0, 13.0, " Two.")]
    result = check_transcript(transcript(chunks))
    order = failed(result, IN_SET, "start_after_previous")
    assert order.observed["unexpected_count"] == 1 and order.observed["rows"] == [2]
    assert failed_columns(result) == {"start_after_previous"}
    # Equal starts are in order (non-decreasing); their ids collide, which is damage of its own.
    same = check_transcript(transcript([chunk(10.0, 11.0, " A."), chunk(10.0, 12.0, " B.")]))
    assert failed_columns(same) == {"chunk_id"}


def test_transcript_gate_rejects_an_empty_text() -> None:
    chunks = [chunk(10.0, 12.0, " Words."), chunk(12.0, 13.0, "   "), chunk(13.0, 14.0, "")]
    result = check_transcript(transcript(chunks))
    text = failed(result, "expect_column_value_lengths_to_be_between", "text")
    assert text.observed["unexpected_count"] == 2 and text.observed["rows"] == [1, 2]
    assert failed_columns(result) == {"text"}
    # All texts empty fails the same way.
    assert failed_columns(check_transcript(transcript([chunk(10.0, 12.0, " ")]))) == {"text"}


def test_transcript_gate_rejects_non_finite_times_and_confidences() -> None:
    chunks = [
        chunk(10.0, math.nan, " No end."),
        chunk(12.0, 13.0, " Bad confidence.", avg_logprob=math.nan),
        chunk(13.0, 14.0, " Positive.", avg_logprob=0.5),
    ]
    result = check_transcript(transcript(chunks))
    assert failed(result, IN_SET, "times_finite").observed["rows"] == [0]
    assert failed(result, IN_SET, "avg_logprob_finite").observed["rows"] == [1]
    assert failed(result, BETWEEN, "avg_logprob").observed["partial_unexpected_list"] == [0.5]


def test_transcript_gate_rejects_language_names_and_foreign_chunks() -> None:
    chunks = [chunk(10.0, 12.0, " Hello.", language="English"), chunk(12.0, 13.0, " Hi.", segment_index=4)]
    result = check_transcript(transcript(chunks, language="EN"))
    lang = failed(result, "expect_column_values_to_match_regex", "language")
    assert lang.observed["partial_unexpected_list"] == ["English"]
    assert lang.expected == "matches ^[a-z]{2,3}$"
    assert failed(result, "expect_column_values_to_match_regex", "result_language").observed["unexpected_count"] == 2
    assert failed(result, IN_SET, "same_segment").observed["rows"] == [1]


def test_transcript_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = QualityConfig()
    assert (cfg.transcript_time_tolerance_s, cfg.transcript_max_repeats, cfg.transcript_max_compression_ratio) == (
        0.5,
        8,
        6.0,
    )
    monkeypatch.setenv(quality.ENV_VAR, '{"transcript_max_repeats": 20, "transcript_time_tolerance_s": 1}')
    cfg = QualityConfig.from_env()
    assert cfg.transcript_max_repeats == 20 and cfg.transcript_time_tolerance_s == 1.0
    assert QualityConfig.model_validate_json(cfg.model_dump_json()) == cfg
    # Gates without an explicit config read the environment.
    assert check_transcript(transcript([chunk(12.0, 15.0, " the" * 15)])).success
    with pytest.raises(quality.QualityConfigError, match="transcript_max_repeats"):
        QualityConfig.from_env({quality.ENV_VAR: '{"transcript_max_repeats": 0}'})


# --- repeated_loop ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "no, no, no",
        "No. No! NO?",
        "Thank you. Thank you. Thank you.",
        "very very very very very very very very good",  # 8: at the threshold, not past it
        "na na na na na na na na hey hey hey goodbye",
        "So today we are going to talk about how the new bridge was built.",
        "",
        "...",
    ],
)
def test_repeated_loop_passes_normal_repetition(text: str) -> None:
    assert repeated_loop(text, max_repeats=8) is None


def test_repeated_loop_finds_a_single_token_loop() -> None:
    assert repeated_loop(" the" * 30, max_repeats=8) == ("the", 30)
    assert repeated_loop("And then " + "the " * 9 + "end", max_repeats=8) == ("the", 9)
    assert repeated_loop("very " * 8, max_repeats=8) is None


@pytest.mark.parametrize(
    ("text", "gram", "count"),
    [
        ("Thank you. " * 12, "thank you", 12),
        ("I'm here " * 10, "i'm here", 10),
        ("see you soon, " * 11 + "bye", "see you soon", 11),
        ("Well, " + "I don't know what " * 9 + "to say", "i don't know what", 9),
    ],
)
def test_repeated_loop_finds_n_gram_loops(text: str, gram: str, count: int) -> None:
    assert repeated_loop(text, max_repeats=8) == (gram, count)


def test_repeated_loop_ignores_case_and_punctuation() -> None:
    text = "THANK YOU! thank you. Thank You, thank-you " + "thank you; " * 6
    assert longest_repeat(text) == (10, "thank you")
    assert repeated_loop(text, max_repeats=8) == ("thank you", 10)
    assert longest_repeat("The, THE. the!") == (3, "the")


def test_longest_repeat_of_plain_text() -> None:
    assert longest_repeat("") == (0, "")
    assert longest_repeat("one two three") == (1, "one")
    assert longest_repeat("a b a b a b") == (3, "a b")
    # A five-word phrase is beyond max_n (the compression ratio catches those).
    assert longest_repeat("one two three four five " * 10)[0] == 1
    assert longest_repeat("one two three four five " * 10, max_n=5) == (10, "one two three four five")


def test_compression_ratio() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("So today we are going to talk about how the new bridge was built.") < 1.5
    assert compression_ratio("I am going to the store now. " * 12) > 6
