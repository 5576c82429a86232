"""Quality gate configuration: which gates run, their thresholds, and the environment override."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vidsearch.errors import PermanentError

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


ENV_VAR = "VIDSEARCH_QUALITY"
STAGES: tuple[str, ...] = (
    "probe",
    "split",
    "segment",
    "frames",
    "detections",
    "embeddings",
    "index",
    "transcript",
)


class QualityConfigError(PermanentError, ValueError):
    """The quality configuration (e.g. `VIDSEARCH_QUALITY`) is invalid."""


class QualityConfig(BaseModel):
    """Every threshold of every gate. Override any of them with `VIDSEARCH_QUALITY` (JSON object)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Rule for every threshold here: damage (a broken file, decoder or store) fails a gate; content
    # (black, flat, static, short, letterboxed footage) never does.
    # probe
    min_fps: float = Field(
        1.0, gt=0, description="Lowest acceptable average frame rate (below: broken timing metadata)."
    )
    max_fps: float = Field(
        240.0, gt=0, description="Highest acceptable average frame rate (above: broken timing metadata)."
    )
    min_dim: int = Field(
        16, ge=1, description="Smallest acceptable display width/height in px (below: a broken stream header)."
    )
    max_dim: int = Field(
        8192, ge=1, description="Largest acceptable display width/height in px (above: a broken stream header)."
    )
    # split
    split_tolerance_s: float | None = Field(
        None,
        ge=0,
        description="Allowed gap/overlap between segments (split gate) and between a segment and its "
        "file's timestamps (segment gate). None: the floor between segments (the cut makes them "
        "contiguous), the largest keyframe interval measured in the file for a segment file.",
    )
    split_min_tolerance_s: float = Field(
        0.002, ge=0, description="Floor of the split tolerance (Matroska stores 1 ms timestamps)."
    )
    max_untimed_packet_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Largest share of a segment file's video packets with neither PTS nor DTS (more: "
        "broken container timing). Not zero: MPEG streams may legitimately omit some timestamps.",
    )
    max_empty_packet_fraction: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of zero-size video packets in a segment file (more: a damaged or "
        "padded stream; a few are dropped-frame markers some capture tools write).",
    )
    # frames
    frame_count_abs_tol: float = Field(1.0, ge=0, description="Allowed frame-count error, in frames.")
    frame_count_rel_tol: float = Field(
        0.10, ge=0, description="Allowed frame-count error, relative; the larger of the two applies."
    )
    max_decoder_errors: int = Field(
        0,
        ge=0,
        description="Most error lines the decoder may report while the frames stage decodes a segment "
        "(any: damaged bitstream, concealed macroblocks).",
    )
    blank_std_min: float = Field(
        2.0,
        ge=0,
        description="A frame whose pixel standard deviation is not above this is blank. A content "
        "property (fades, slates, title cards): it classifies frames, no gate fails on it.",
    )
    # embeddings
    unit_norm_tol: float = Field(1e-3, gt=0, description="Allowed |L2 norm - 1| of an embedding.")
    # transcript (the audio branch: Whisper chunks of one segment's clip)
    transcript_time_tolerance_s: float = Field(
        0.5,
        ge=0,
        description="Allowed slack of a transcript chunk's times against its clip ([clip start, clip "
        "end]) and its segment (the chunk's midpoint, which decides ownership, within [segment start, "
        "segment end]). Whisper's timestamps step by 20 ms and its last end can overrun the audio "
        "(the transcriber is to clamp ends to the clip); 0.5 s still catches misplaced chunks: a clip "
        "offset missing or applied twice, a chunk kept by the wrong segment.",
    )
    transcript_max_repeats: int = Field(
        8,
        ge=1,
        description="Most consecutive repeats of any 1-4 word n-gram in a chunk's text (case and "
        "punctuation ignored). More: Whisper's decoding loop ('the the the ...', 'Thank you. Thank "
        "you. ...', which runs to dozens). Speech and lyrics repeat a word a few times ('no, no, no').",
    )
    transcript_max_compression_ratio: float = Field(
        6.0,
        gt=0,
        description="Highest zlib compression ratio of a chunk's text (UTF-8 bytes over compressed "
        "bytes): a loop of a longer phrase, or in a script without spaces, that the n-gram count "
        "misses. Normal phrases stay below ~2 (Whisper itself retries a window above 2.4), a phrase "
        "repeated ten times reaches ~7.",
    )
    # reporting
    partial_unexpected_count: int = Field(
        20, ge=1, le=1000, description="How many unexpected values GX lists per expectation."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QualityConfig:
        """Defaults, overridden by the JSON object in `VIDSEARCH_QUALITY` (unknown keys are an error)."""
        env = os.environ if environ is None else environ
        raw = (env.get(ENV_VAR) or "").strip()
        if not raw:
            return cls()
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise QualityConfigError(f"{ENV_VAR} is not valid JSON: {exc.msg}") from None
        if not isinstance(overrides, dict):
            raise QualityConfigError(f"{ENV_VAR} must be a JSON object, got {type(overrides).__name__}")
        try:
            return cls.model_validate(overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            raise QualityConfigError(f"invalid {ENV_VAR}: {problems}") from None
