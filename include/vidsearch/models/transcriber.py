"""The transcribe worker: one segment's audio clip in, its transcript chunks and their text embeddings out.

    python -m vidsearch.models.transcriber --clip-uri URI --output-uri PREFIX [--last-segment] [options]
    python -m vidsearch.models.transcriber --check-models [--model ... --embedder ... options]

The sibling of the detect+embed worker (`vidsearch.models.worker`), with the same contract: the same
argv runs as a local subprocess (`launcher.run_transcribe_local`), as a job of the warm worker
(`worker_server`, models kept loaded) or in a Kubernetes pod; it touches only object storage URIs under
its storage root (env `VIDSEARCH_STORAGE_ROOT`, `worker.confine_uri`); exit codes 0 / 3 permanent /
75 transient / 1 other, the last stderr line on a typed failure being
`vidsearch-worker-error: <kind>: <reason>`.

Input: `--clip-uri` names the segment's `AudioClip` record as JSON (written by whoever cut the audio,
`vidsearch.media.audio.extract_audio_clip`, next to the WAV): the video and segment, the segment's own
range, the clip's range in the video, its loudness, and `uri`, the 16 kHz mono s16 WAV (also confined to
the storage root). `--last-segment` says the segment is the video's last, which owns its end point
(`vidsearch.transcripts.owned_chunks`). All times come from the record: one JSON instead of five flags
that could disagree with the WAV they describe.

Output under PREFIX: `text_embeddings.npy` (float32 N x D, row i <-> chunks[i]: each chunk's text
embedded by the CLIP-family `--embedder`'s text tower, L2-normalised, so text queries match them and
the index can do hybrid search), then `transcript.json` (a TranscriptResult): written last, it marks
completion; a stale one is removed before any work starts. A clip that is not `speech_likely` loads no
model: zero chunks, and a (0, 0) embeddings array. `--check-models` loads the speech model and the
embedder (checking the embedder can embed text) and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from vidsearch.errors import InputError, ModelUnavailableError
from vidsearch.models.worker import (
    ModelCache,
    WorkerArgumentParser,
    add_runtime_arguments,
    confine_uri,
    execute_job,
    load_model,
    release_model_memory,
    remove_stale,
    run_main,
    storage_root,
    write_float32,
)
from vidsearch.params import DEFAULT_EMBEDDER
from vidsearch.records import AudioClip, TranscriptResult
from vidsearch.stores import storage

logger = logging.getLogger("vidsearch.models.transcriber")

DEFAULT_ASR_MODEL = "openai/whisper-base"
TRANSCRIPT_FILE = "transcript.json"
TEXT_EMBEDDINGS_FILE = "text_embeddings.npy"


def build_parser() -> argparse.ArgumentParser:
    """The transcribe worker's command line (also the documentation of its argv)."""
    parser = WorkerArgumentParser(
        prog="python -m vidsearch.models.transcriber",
        description="Transcribe one segment's audio clip; write text_embeddings.npy and transcript.json.",
    )
    parser.add_argument("--clip-uri", help="URI of the segment's AudioClip JSON (its uri names the WAV); required")
    parser.add_argument("--output-uri", help="URI prefix for transcript.json and text_embeddings.npy; required")
    parser.add_argument(
        "--last-segment", action="store_true", help="the video's last segment: it also owns its end point"
    )
    parser.add_argument(
        "--check-models",
        action="store_true",
        help="only load the speech model and the embedder (on --device, in --dtype) and exit: 0 when both load",
    )
    parser.add_argument("--model", default=DEFAULT_ASR_MODEL, help="Whisper model: hub id or model folder")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="CLIP-family embedder for the chunk texts")
    parser.add_argument("--language", default="auto", help="auto (detected per clip) or a language code such as en")
    parser.add_argument("--batch-size", type=int, default=8, help="30 s windows (or texts) per forward pass")
    add_runtime_arguments(parser)
    return parser


def read_clip(uri: str) -> AudioClip:
    """The AudioClip record at `uri`; InputError when it is missing or not an AudioClip."""
    try:
        return AudioClip.model_validate_json(storage.read_bytes(uri))
    except FileNotFoundError as exc:
        raise InputError(f"audio clip record {uri} does not exist") from exc
    except ValidationError as exc:
        raise InputError(f"{uri} is not a valid AudioClip: {exc.error_count()} errors") from exc


def run(args: argparse.Namespace, models: ModelCache | None = None) -> TranscriptResult:
    """Do the work described by parsed `args`; raises typed errors (see the module docstring)."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    root = storage_root()
    confine_uri(args.clip_uri, root, "--clip-uri")
    confine_uri(args.output_uri, root, "--output-uri")
    clip = read_clip(args.clip_uri)
    confine_uri(clip.uri, root, "the clip's uri")
    transcript_uri = storage.join(args.output_uri, TRANSCRIPT_FILE)
    embeddings_uri = storage.join(args.output_uri, TEXT_EMBEDDINGS_FILE)
    logger.info(
        "clip %s: video %s segment %d, [%.2f, %.2f] s of the video, %.1f dBFS, speech likely: %s",
        clip.uri,
        clip.video_id,
        clip.segment_index,
        clip.start_s,
        clip.end_s,
        clip.rms_dbfs,
        clip.speech_likely,
    )

    import numpy as np

    from vidsearch.models.asr import load_wav
    from vidsearch.models.modelstore import select_device, select_dtype
    from vidsearch.transcripts import transcript_result

    # Device and dtype first: an unusable one is reported before any model download.
    device = select_device(args.device)
    select_dtype(args.dtype, device)
    remove_stale(transcript_uri)

    if not clip.speech_likely:
        logger.info("silent clip: no speech model call, no chunks")
        result = transcript_result(
            clip, [], is_last=args.last_segment, model=_model_name(args, None), device=str(device)
        )
        embeddings = np.zeros((0, 0), dtype=np.float32)
    else:
        phase = time.perf_counter()
        try:
            data = storage.read_bytes(clip.uri)
        except FileNotFoundError as exc:
            raise InputError(f"audio clip {clip.uri} does not exist") from exc
        samples = load_wav(data, f"audio clip {clip.uri}")
        timings["read_audio"] = time.perf_counter() - phase
        heard_s = len(samples) / 16_000
        if abs(heard_s - (clip.end_s - clip.start_s)) > 0.5:
            logger.warning("the WAV holds %.2f s, the clip record says %.2f s", heard_s, clip.end_s - clip.start_s)

        phase = time.perf_counter()
        asr_path, transcriber = load_model("asr", args, models)
        timings["load_asr"] = time.perf_counter() - phase
        phase = time.perf_counter()
        result = transcriber.transcribe_clip(
            samples,
            clip,
            is_last=args.last_segment,
            model_name=_model_name(args, asr_path),
            language=args.language,
            batch_size=args.batch_size,
        )
        timings["transcribe"] = time.perf_counter() - phase
        if models is None:  # a one-shot process frees the speech model before the embedder loads
            del transcriber
            release_model_memory()

        phase = time.perf_counter()
        _, embedder = load_model("embedder", args, models)
        timings["load_embedder"] = time.perf_counter() - phase
        if not embedder.supports_text:
            raise ModelUnavailableError(
                f"the embedder {args.embedder!r} cannot embed text (no text tower or tokenizer)"
            )
        phase = time.perf_counter()
        texts = [chunk.text for chunk in result.chunks]
        embeddings = embedder.embed_texts(texts, args.batch_size) if texts else np.zeros((0, embedder.dim), np.float32)
        timings["embed_texts"] = time.perf_counter() - phase
        if embeddings.shape[0] != len(result.chunks):  # a broken invariant, not bad input
            raise RuntimeError(f"{embeddings.shape[0]} text embeddings for {len(result.chunks)} chunks")

    phase = time.perf_counter()
    write_float32(embeddings_uri, embeddings)
    timings["write_embeddings"] = time.perf_counter() - phase
    timings["total"] = time.perf_counter() - started
    result = result.model_copy(update={"timings_s": {k: round(v, 4) for k, v in timings.items()}})
    # Last: its presence means text_embeddings.npy is complete and matches it.
    storage.write_bytes(transcript_uri, json.dumps(result.model_dump(mode="json")).encode())
    logger.info(
        "done: %d chunks (language %s), %s",
        len(result.chunks),
        result.language,
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    return result


def _model_name(args: argparse.Namespace, path: str | None) -> str:
    """The speech model as recorded: in tiny mode the folder name (tiny-asr-<hash>), so its output is
    never taken for the real model's."""
    if args.tiny_models:
        if path is None:
            from vidsearch.models.modelstore import tiny_model_dir

            path = str(tiny_model_dir("asr", Path(args.model_cache).expanduser()))
        return Path(path).name
    return str(args.model)


def check_models(args: argparse.Namespace, models: ModelCache | None = None) -> list[str]:
    """Load the speech model and the embedder as a job would; returns their folders. Raises
    ModelUnavailableError (permanent) naming the one that fails, or when the embedder has no text tower."""
    from vidsearch.models.modelstore import select_device, select_dtype

    select_dtype(args.dtype, select_device(args.device))
    started = time.perf_counter()
    asr_path, transcriber = load_model("asr", args, models)
    if models is None:
        del transcriber
        release_model_memory()
    embedder_path, embedder = load_model("embedder", args, models)
    if not embedder.supports_text:
        raise ModelUnavailableError(f"the embedder {args.embedder!r} cannot embed text (no text tower or tokenizer)")
    logger.info("models load: speech %s, embedder %s (%.2f s)", asr_path, embedder_path, time.perf_counter() - started)
    return [asr_path, embedder_path]


def execute(
    argv: Sequence[str] | None = None, models: ModelCache | None = None, usage: TextIO | None = None
) -> tuple[int, str | None]:
    """Parse and run one transcribe job: (exit code, the marked one-line reason, or None on success);
    the command and the warm worker run jobs through here (`worker.execute_job`)."""

    def job(args: argparse.Namespace) -> None:
        if args.check_models:
            check_models(args, models)
        elif not args.clip_uri or not args.output_uri:
            raise InputError("invalid arguments: --clip-uri and --output-uri are required (or --check-models)")
        else:
            run(args, models)

    return execute_job(build_parser(), job, argv, usage)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the transcribe worker; returns the process exit code (see the module docstring)."""
    return run_main(execute, argv)


if __name__ == "__main__":
    sys.exit(main())
