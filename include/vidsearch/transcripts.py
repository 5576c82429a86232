"""Transcript chunks: from a speech model's timestamped phrases to the chunks one segment owns.

Pure functions over the records (no torch, no transformers, no numpy): the transcribe worker runs
them after the model, and anything that re-reads a transcript can run them again.

Times. The model hears one segment's audio clip, which starts at `clip_start_s` in the video, and
gives phrase times relative to the clip. `build_chunks` makes them relative to the video start
(`clip_start_s + t`), clamps them into the clip ([clip_start_s, clip_end_s]: a model may place an end
timestamp past the audio it heard) and drops phrases with no text.

Ownership at segment boundaries. A segment's clip reaches `overlap_s` past each end of the segment
(`vidsearch.media.audio.extract_audio_clip`), so a phrase spoken across a boundary is heard by both
neighbours. Each chunk belongs to exactly one segment: the one its midpoint
`(start_s + end_s) / 2` falls in, with half-open ranges [segment_start_s, segment_end_s); the last
segment of a video also owns its end point (`is_last`). `owned_chunks` keeps the chunks a segment
owns. Since neighbouring segments share their boundary (one's end is the next one's start), a phrase
both transcribe with (nearly) the same times is kept by exactly one of them. A phrase whose two
transcriptions differ in time may, at worst, have midpoints on both sides of the boundary (kept twice)
or neither (lost); the overlap makes both rare: the phrase is heard whole by both clips, and Whisper
places it within its timestamp precision (0.02 s) in both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from vidsearch.records import AudioClip, TranscriptChunk, TranscriptResult, transcript_chunk_id


@dataclass(frozen=True)
class Phrase:
    """One timestamped phrase as a speech model gives it: times in seconds from the clip start."""

    start_s: float
    end_s: float
    text: str
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


def build_chunks(
    phrases: Iterable[Phrase],
    *,
    video_id: str,
    segment_index: int,
    clip_start_s: float,
    clip_end_s: float,
    language: str | None = None,
) -> list[TranscriptChunk]:
    """TranscriptChunks of `phrases` (times relative to the clip), in time order: times made relative to
    the video start and clamped into the clip, text stripped, phrases without text dropped, end never
    before start; chunk ids from (video, segment, start)."""
    if clip_end_s < clip_start_s:
        raise ValueError(f"clip ends ({clip_end_s}) before it starts ({clip_start_s})")
    chunks = []
    for phrase in phrases:
        text = " ".join(phrase.text.split())
        if not text:
            continue
        start = _clamp(clip_start_s + phrase.start_s, clip_start_s, clip_end_s)
        end = _clamp(clip_start_s + phrase.end_s, start, clip_end_s)
        start, end = round(start, 3), round(end, 3)
        chunks.append(
            TranscriptChunk(
                chunk_id=transcript_chunk_id(video_id, segment_index, start),
                video_id=video_id,
                segment_index=segment_index,
                start_s=start,
                end_s=max(end, start),
                text=text,
                language=language,
                avg_logprob=phrase.avg_logprob,
                no_speech_prob=None if phrase.no_speech_prob is None else _clamp(phrase.no_speech_prob, 0.0, 1.0),
            )
        )
    chunks.sort(key=lambda c: (c.start_s, c.end_s))
    return _unique_ids(chunks)


def midpoint(chunk: TranscriptChunk) -> float:
    """Where a chunk is, for ownership: the middle of its time range."""
    return (chunk.start_s + chunk.end_s) / 2.0


def owns(midpoint_s: float, segment_start_s: float, segment_end_s: float, is_last: bool) -> bool:
    """Whether the segment [segment_start_s, segment_end_s) (closed at the end when `is_last`) owns a
    chunk whose midpoint is `midpoint_s` (see the module docstring)."""
    if midpoint_s < segment_start_s:
        return False
    return midpoint_s <= segment_end_s if is_last else midpoint_s < segment_end_s


def owned_chunks(
    chunks: Sequence[TranscriptChunk], segment_start_s: float, segment_end_s: float, is_last: bool
) -> list[TranscriptChunk]:
    """The chunks (times relative to the video) the segment [segment_start_s, segment_end_s) owns: those
    whose midpoint falls in it; the last segment also owns its end (`is_last`). Order is kept."""
    if segment_end_s < segment_start_s:
        raise ValueError(f"segment ends ({segment_end_s}) before it starts ({segment_start_s})")
    return [c for c in chunks if owns(midpoint(c), segment_start_s, segment_end_s, is_last)]


def transcript_result(
    clip: AudioClip,
    phrases: Iterable[Phrase],
    *,
    is_last: bool,
    model: str,
    device: str,
    language: str | None = None,
    language_probability: float | None = None,
    timings_s: dict[str, float] | None = None,
) -> TranscriptResult:
    """The TranscriptResult of one segment: `phrases` (times relative to the clip) as chunks, only those
    the segment owns (`owned_chunks`). A clip that is not speech-likely gets no phrases from the caller
    and so no chunks."""
    chunks = build_chunks(
        phrases,
        video_id=clip.video_id,
        segment_index=clip.segment_index,
        clip_start_s=clip.start_s,
        clip_end_s=clip.end_s,
        language=language,
    )
    return TranscriptResult(
        video_id=clip.video_id,
        segment_index=clip.segment_index,
        model=model,
        device=device,
        language=language,
        language_probability=language_probability,
        segment_start_s=clip.segment_start_s,
        segment_end_s=clip.segment_end_s,
        clip_start_s=clip.start_s,
        clip_end_s=clip.end_s,
        speech_likely=clip.speech_likely,
        chunks=owned_chunks(chunks, clip.segment_start_s, clip.segment_end_s, is_last),
        timings_s=dict(timings_s or {}),
    )


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _unique_ids(chunks: list[TranscriptChunk]) -> list[TranscriptChunk]:
    """Chunks (sorted by start) with distinct ids: the id is derived from the start to the millisecond,
    so phrases starting at the same millisecond become one chunk (texts joined in order, the latest
    end, the lowest confidence, the highest no-speech probability)."""
    out: list[TranscriptChunk] = []
    for chunk in chunks:
        if out and out[-1].chunk_id == chunk.chunk_id:
            last = out[-1]
            out[-1] = last.model_copy(
                update={
                    "text": f"{last.text} {chunk.text}",
                    "end_s": max(last.end_s, chunk.end_s),
                    "avg_logprob": _pick(min, last.avg_logprob, chunk.avg_logprob),
                    "no_speech_prob": _pick(max, last.no_speech_prob, chunk.no_speech_prob),
                }
            )
        else:
            out.append(chunk)
    return out


def _pick(choose: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return choose(a, b)
