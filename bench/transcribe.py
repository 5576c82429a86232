"""Transcription benchmark: the audio branch's real-time factor next to the video branch's, per segment.

    .venv/bin/python bench/transcribe.py [--minutes 2] [--segment-seconds 30] [--models tiny,base-random]
                                         [--device auto|cpu|cuda] [--dtype float32] [--out bench/reports]
    .venv/bin/python bench/transcribe.py --device cuda                  # on a GPU machine (make bench-transcribe
                                                                        #   TRANSCRIBE_ARGS="--device cuda")
    .venv/bin/python bench/transcribe.py --decoder-cap 128              # base-random decoding a real model's length
    .venv/bin/python bench/transcribe.py --render bench/reports/transcribe.json   # redraw transcribe.md only

Other options: --language (auto), --overlap (the pipeline's audio overlap, 1 s), --asr-batch (8), --threads,
--no-video, --no-warmup.

What it measures (issue 16, item 6: which of the two branches of a segment is the slower one):

1. Input: generates (or reuses from ~/.cache/vidsearch/bench/) one 1280x720, 30000/1001 fps H.264 video
   of moving boxes with an AAC track (`vidsearch.media.synth.make_video`: a 440 Hz sine, loud enough
   to be `speech_likely`), `--minutes` long, probes it (`media.probe.probe_video`) and splits it the
   way the pipeline does (`media.split.run_split`, stream copy at keyframes, a keyframe every 2 s) into
   segments of about `--segment-seconds`, on local object storage in a temporary folder.
2. Audio branch, per model of `--models`, per segment, timed one after another in this process:
   `media.audio.extract_audio_clip` (ffmpeg decodes the segment's range plus `--overlap` seconds each
   side from the source into a 16 kHz mono WAV, as the DAG's extract_audio task does) and
   `models.asr.Transcriber.transcribe_clip` on its samples (what the transcribe worker runs: 30 s
   windows, language detection, `generate` with timestamps, the teacher-forced log-probability pass).
   The model is loaded once (`Transcriber(...)`, timed apart, as a warm worker keeps it) and called
   once on a 5 s slice before the measured segments (the first call's one-time costs, reported apart).
   Models:
   * `tiny`: the project's tiny random Whisper (`modelstore.ensure_tiny_model("asr", ...)`), what tests
     and offline demos run.
   * `base-random`: openai/whisper-base's exact architecture (d_model 512, 6+6 layers, 8 heads, ffn
     2048, 80 mel bins, vocabulary 51865, 448 decoder positions; ~73M parameters) with random weights,
     saved with `save_pretrained` and loaded through the same `from_pretrained` path as a real
     checkpoint: the FLOPs per encoder pass and per decoder step are whisper-base's. Its tokenizer is
     the tiny model's byte-level vocabulary padded to whisper-base's layout (filler tokens up to id
     50256, then <|endoftext|> 50257, <|startoftranscript|>, 99 languages, the task and control
     tokens, <|notimestamps|> 50363 and the 1501 timestamp tokens, as in the real vocabulary), so that
     `generate`'s timestamp and suppression rules see the real token ids. The tiny model's own
     tokenizer does not fit: its timestamp tokens end below id 2,000, and every id above
     <|notimestamps|> counts as a timestamp for `generate`. Built once into
     ~/.cache/vidsearch/bench-models/. **Its text is meaningless, and so is its decode length**: a
     random model rarely predicts <|endoftext|>, so a window runs to the decoder cap (the generation
     config's max_length, 448 positions, which is what bounds the Transcriber: it passes no
     max_new_tokens), and `generate`'s seek loop may decode a window again from its last complete
     segment; a real whisper-base writes about 2-4 tokens per second of speech (60-120 per full
     window) and stops. The decoder steps inside `generate` (its forward calls: one per generated
     position, for the whole batch of windows) are counted and reported per segment, so the decode
     share can be scaled to a real model's length.
   Real-time factor (RTF) = processing seconds / seconds of video the segment covers (lower is
   faster; below 1 keeps up with real time). The clip heard is longer than the segment by the
   overlap on each side; RTF per second heard is reported too.
3. Video branch, per segment: `media.frames.run_frames` at 1 frame/s (decode, select, JPEG, bundle
   upload) and the detect+embed worker (`models.worker.run` in-process with a `ModelCache`, as the
   warm worker runs jobs: models loaded once, timed apart) with the tiny DETR and CLIP, score
   threshold 0 (every box kept), batch 16; same `--device` and `--dtype`. Its seconds and RTF sit next
   to each audio model's, segment by segment, with which branch is slower.
4. Writes transcribe.json (every figure: per segment, per model, per `generate` call) and transcribe.md
   (the summary table), with the machine, torch's thread count, the device and the load average.

The two branches run one after the other here, each with the machine to itself; in the DAG they are
parallel tasks and compete for the same cores. On a CUDA machine (`--device cuda`) both branches run
their models on the GPU; the timers synchronise the device, and the GPU's name and peak memory per
model are recorded. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

import benchlib  # noqa: E402  (bench/ is on sys.path)
from benchlib import fmt, load_note, machine_facts, quiet, r, version  # noqa: E402
from devstack import cache_dir  # noqa: E402

SCHEMA_VERSION = 1
WIDTH, HEIGHT, FPS = 1280, 720, "30000/1001"
GOP_FRAMES = 60  # a keyframe every ~2 s (as bench/stages.py): segment cuts land close to the asked length
SAMPLE_FPS = 1.0  # the DAG's default
DETECT_BATCH = 16  # the worker's default
SCORE_THRESHOLD = 0.0  # every non-degenerate box of the tiny DETR's queries is kept (as bench/stages.py)
WARMUP_S = 5.0
MODELS = ("tiny", "base-random")

# openai/whisper-base's config.json (the architecture; token ids are those of its vocabulary).
BASE_ARCH: dict[str, Any] = {
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "activation_function": "gelu",
    "scale_embedding": False,
}
_BASE_RECIPE_VERSION = 1
_BASE_SEED = 0
_EOT = 50257  # <|endoftext|> in whisper-base's vocabulary; the special tokens follow it
_BASE_LANGUAGES = 99  # whisper-base knows the first 99 of transformers' LANGUAGES (not yue)

log = logging.getLogger("bench.transcribe")


# --------------------------------------------------------------------------------------------- input


def make_input(minutes: float) -> tuple[Path, dict[str, Any]]:
    """The test video, generated once per parameters and synth.py source (cached)."""
    params = {
        "duration_s": round(minutes * 60.0, 3),
        "width": WIDTH,
        "height": HEIGHT,
        "fps": FPS,
        "audio": True,
        "gop_frames": GOP_FRAMES,
    }
    return benchlib.cached_video(params, timeout_s=600 + 60 * params["duration_s"])


# ------------------------------------------------------------------------------------ base-random


def _base_vocab() -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int]]:
    """The tiny tokenizer's byte-level tokens and merges, filler tokens up to <|endoftext|>'s id, then
    whisper-base's special and timestamp tokens at their real ids (51865 tokens in all)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    # The tiny recipe's pieces (private to modelstore: the benchmark reuses them rather than copy them).
    from vidsearch.models.modelstore import _TINY_WORDS, _WHISPER_CONTROL, _add_merges, _bytes_to_unicode

    tokens = list(_bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    space = _bytes_to_unicode()[ord(" ")]
    _add_merges((list(w) for w in (*(space + w for w in _TINY_WORDS), *_TINY_WORDS)), tokens, merges)
    tokens += [f"<|filler{i}|>" for i in range(_EOT - len(tokens))]
    special_tokens = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in list(LANGUAGES)[:_BASE_LANGUAGES]),
        *_WHISPER_CONTROL,
        "<|notimestamps|>",
    ]
    tokens += special_tokens
    tokens += [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    if len(tokens) != BASE_ARCH["vocab_size"]:
        raise RuntimeError(f"base-random vocabulary has {len(tokens)} tokens, expected {BASE_ARCH['vocab_size']}")
    vocab = {t: i for i, t in enumerate(tokens)}
    special = {t: vocab[t] for t in special_tokens}
    if special["<|endoftext|>"] != _EOT or special["<|notimestamps|>"] != 50363:
        raise RuntimeError("base-random special tokens are not at whisper-base's ids")
    return vocab, merges, special


def ensure_base_random(models_dir: Path) -> Path:
    """Build the random whisper-base once (staging folder, atomic rename) and return its folder."""
    import transformers

    blob = json.dumps(
        {
            "arch": BASE_ARCH,
            "recipe": _BASE_RECIPE_VERSION,
            "seed": _BASE_SEED,
            "transformers": ".".join(transformers.__version__.split(".")[:2]),
        },
        sort_keys=True,
    )
    target = models_dir / f"whisper-base-random-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=models_dir))
    try:
        _build_base_random(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _build_base_random(folder: Path) -> None:
    import torch
    from transformers import WhisperConfig
    from vidsearch.models.modelstore import save_whisper

    vocab, merges, special = _base_vocab()
    eot, sot = special["<|endoftext|>"], special["<|startoftranscript|>"]
    config = WhisperConfig(
        **BASE_ARCH,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    torch.manual_seed(_BASE_SEED)
    # As openai/whisper-base's generation_config.json, less its suppress_tokens list (punctuation ids of
    # the real vocabulary, meaningless here) and alignment heads (word timestamps are not used).
    lang_to_id = {t: i for t, i in special.items() if t[2:-2] not in _NON_LANGUAGE}
    save_whisper(
        folder,
        config,
        vocab,
        merges,
        special,
        lang_to_id,
        {"feature_size": 80, "sampling_rate": 16_000, "chunk_length": 30},
    )


_NON_LANGUAGE = {
    "endoftext",
    "startoftranscript",
    "translate",
    "transcribe",
    "startoflm",
    "startofprev",
    "nospeech",
    "notimestamps",
}


# ------------------------------------------------------------------------------------------ timing


def _sync(device: Any) -> None:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Any = None) -> tuple[Any, float]:
    _sync(device)
    started = time.perf_counter()
    value = fn()
    _sync(device)
    return value, time.perf_counter() - started


class GenerateProbe:
    """Wraps a loaded Whisper model's `generate` (the Transcriber's decode call) and counts the
    decoder's forward calls inside it. Per call: wall time, windows (the batch), decoder steps (one per
    generated position, for the whole batch at once: the decode cost), the tokens of the timestamped
    segments it returned per window (what the Transcriber turns into phrases; neighbouring segments
    share their boundary timestamp token, so this can exceed the steps of one pass) and the length of
    the returned sequences. `generate` may decode a window more than once (Whisper's seek loop
    restarts after the last complete segment when a pass ends inside one), which the steps include."""

    def __init__(self, model: Any, device: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        self._generate = model.generate
        self._device = device
        self._steps: int | None = None
        model.get_decoder().register_forward_hook(self._count)
        model.generate = self

    def _count(self, *_: Any) -> None:
        if self._steps is not None:
            self._steps += 1

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._steps = 0
        try:
            out, seconds = timed(lambda: self._generate(*args, **kwargs), self._device)
            steps = self._steps
        finally:
            self._steps = None
        segments = out["segments"] if isinstance(out, dict) and "segments" in out else None
        sequences = out["sequences"] if isinstance(out, dict) else out
        per_window = [sum(len(seg["tokens"]) for seg in window) for window in segments] if segments else []
        self.calls.append(
            {
                "generate_s": r(seconds, 4),
                "windows": len(per_window),
                "decoder_steps": steps,
                "segment_tokens_per_window": per_window,
                "phrases_per_window": [len(window) for window in segments] if segments else [],
                "sequence_length": int(sequences.shape[-1]) if hasattr(sequences, "shape") else None,
            }
        )
        return out

    def take(self) -> list[dict[str, Any]]:
        calls, self.calls = self.calls, []
        return calls


def stats(values: list[float], digits: int = 3) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "mean": None, "min": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {
        "p50": r(float(np.percentile(a, 50)), digits),
        "mean": r(float(a.mean()), digits),
        "min": r(float(a.min()), digits),
        "max": r(float(a.max()), digits),
    }


def _cuda_facts(device: Any) -> dict[str, Any]:
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return {}
    return {
        "gpu_name": torch.cuda.get_device_name(device),
        "peak_memory_allocated_mib": r(torch.cuda.max_memory_allocated(device) / 2**20, 1),
    }


def _reset_peak(device: Any) -> None:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


# ---------------------------------------------------------------------------------------- branches


def video_branch(segments: list[Any], root: str, args: argparse.Namespace, models_dir: Path) -> dict[str, Any]:
    """Frames at 1 fps and detect+embed (warm, in-process worker) per segment."""
    from vidsearch.media import frames
    from vidsearch.models import launcher, worker
    from vidsearch.models.modelstore import select_device
    from vidsearch.params import DEFAULT_DETECTOR, DEFAULT_EMBEDDER
    from vidsearch.stores import storage

    device = select_device(args.device)
    _reset_peak(device)
    parser = worker.build_parser()

    def job_args(frames_uri: str, output_uri: str) -> argparse.Namespace:
        argv = launcher.worker_argv(
            frames_uri,
            output_uri,
            DEFAULT_DETECTOR,
            DEFAULT_EMBEDDER,
            SCORE_THRESHOLD,
            DETECT_BATCH,
            args.device,
            True,
            dtype=args.dtype,
            model_cache=str(models_dir),
        )
        return parser.parse_args(argv[3:])  # less "python -m vidsearch.models.worker"

    cache = worker.ModelCache()
    loaded, load_s = timed(lambda: worker.check_models(job_args("", ""), cache), device)
    rows = []
    for seg in segments:
        bundle_uri = storage.join(root, "frames", f"{seg.name}.zip")
        bundle, frames_s = timed(lambda seg=seg, uri=bundle_uri: frames.run_frames(seg, SAMPLE_FPS, uri))
        job = job_args(bundle_uri, storage.join(root, "detect", seg.name))
        result, detect_s = timed(lambda job=job: worker.run(job, cache), device)
        seconds = seg.end_s - seg.start_s
        total = frames_s + detect_s
        rows.append(
            {
                "segment": seg.index,
                "start_s": r(seg.start_s),
                "end_s": r(seg.end_s),
                "seconds": r(seconds),
                "frames": len(bundle.frames),
                "objects": len(result.objects),
                "frames_s": r(frames_s),
                "detect_embed_s": r(detect_s),
                "worker_timings_s": result.timings_s,
                "total_s": r(total),
                "rtf": r(total / seconds, 4),
            }
        )
        log.info(
            "video %s: frames %.2f s, detect+embed %.2f s (RTF %.3f)", seg.label, frames_s, detect_s, total / seconds
        )
    return {
        "models": [Path(p).name for p in loaded],
        "device": str(device),
        "load_s": r(load_s),
        "segments": rows,
        "summary": {
            "total_s": stats([x["total_s"] for x in rows]),
            "frames_s": stats([x["frames_s"] for x in rows]),
            "detect_embed_s": stats([x["detect_embed_s"] for x in rows]),
            "rtf": stats([x["rtf"] for x in rows], 4),
            "sum_s": r(sum(x["total_s"] for x in rows)),
        },
        **_cuda_facts(device),
    }


def audio_branch(
    name: str, model_path: Path, video: Path, manifest: Any, segments: list[Any], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """extract_audio_clip + Transcriber.transcribe_clip per segment with one model, loaded once."""
    import torch
    from vidsearch.media.audio import extract_audio_clip
    from vidsearch.models.asr import Transcriber, load_wav, plan_windows
    from vidsearch.models.modelstore import select_device

    device = select_device(args.device)
    _reset_peak(device)
    transcriber, load_s = timed(lambda: Transcriber(str(model_path), device=args.device, dtype=args.dtype), device)
    model = transcriber.model
    own_cap = int(model.generation_config.max_length or model.config.max_target_positions)
    if args.decoder_cap:
        # A benchmark knob (recorded): what a real model's shorter decode would cost; generate never
        # goes past the model's positions anyway.
        model.generation_config.max_length = min(args.decoder_cap, int(model.config.max_target_positions))
    cap = int(model.generation_config.max_length)
    probe = GenerateProbe(model, transcriber.device)

    clip_dir = tmp / f"audio-{name}"
    rows = []
    warmup: dict[str, Any] = {}
    for seg in segments:
        wav = clip_dir / f"{seg.name}.wav"
        clip, extract_s = timed(
            lambda seg=seg, wav=wav: extract_audio_clip(
                video, manifest.video_id, seg, manifest.duration_s, args.overlap, wav
            )
        )
        samples = load_wav(wav.read_bytes())
        if not warmup and args.warmup:
            piece = samples[: int(WARMUP_S * 16_000)]
            _, first_s = timed(lambda piece=piece: transcriber.transcribe(piece, language=args.language), device)
            warmup = {"audio_s": r(len(piece) / 16_000), "seconds": r(first_s), "generate": probe.take()}
        result, transcribe_s = timed(
            lambda samples=samples, clip=clip, seg=seg: transcriber.transcribe_clip(
                samples,
                clip,
                is_last=seg.index == len(segments) - 1,
                model_name=name,
                language=args.language,
                batch_size=args.asr_batch,
            ),
            device,
        )
        calls = probe.take()
        tokens = [t for call in calls for t in call["segment_tokens_per_window"]]
        steps = sum(c["decoder_steps"] or 0 for c in calls)
        seconds, heard = seg.end_s - seg.start_s, len(samples) / 16_000
        total = extract_s + transcribe_s
        generate_s = sum(c["generate_s"] for c in calls)
        rows.append(
            {
                "segment": seg.index,
                "seconds": r(seconds),
                "clip_start_s": r(clip.start_s),
                "clip_end_s": r(clip.end_s),
                "audio_s": r(heard),
                "rms_dbfs": r(clip.rms_dbfs, 1),
                "speech_likely": clip.speech_likely,
                "windows": len(plan_windows(samples, 16_000, transcriber.window_s)),
                "extract_s": r(extract_s),
                "transcribe_s": r(transcribe_s),
                "generate_s": r(generate_s),
                "total_s": r(total),
                "rtf": r(total / seconds, 4),
                "rtf_per_audio_s": r(total / heard, 4),
                "decoder_steps": steps,
                "segment_tokens_per_window": tokens,
                "generate": calls,
                "language": result.language,
                "chunks": len(result.chunks),
                "text_sample": " ".join(c.text for c in result.chunks)[:120],
            }
        )
        log.info(
            "audio %s %s: extract %.2f s, transcribe %.2f s (generate %.2f s, %d decoder steps), RTF %.3f",
            name,
            seg.label,
            extract_s,
            transcribe_s,
            generate_s,
            steps,
            total / seconds,
        )
    all_tokens = [t for x in rows for t in x["segment_tokens_per_window"]]
    return {
        "model": name,
        "path": str(model_path),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "architecture": {
            k: getattr(model.config, k)
            for k in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "encoder_ffn_dim")
        }
        | {"vocab_size": model.config.vocab_size, "max_target_positions": model.config.max_target_positions},
        "decoder_cap_positions": cap,
        "decoder_cap_own": own_cap,
        "decoder_cap_overridden": cap != own_cap,
        "device": str(transcriber.device),
        "dtype": str(transcriber.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "load_s": r(load_s),
        "warmup": warmup,
        "segments": rows,
        "summary": {
            "audio_s": r(sum(x["audio_s"] for x in rows)),
            "video_s": r(sum(x["seconds"] for x in rows)),
            "total_s": stats([x["total_s"] for x in rows]),
            "extract_s": stats([x["extract_s"] for x in rows]),
            "transcribe_s": stats([x["transcribe_s"] for x in rows]),
            "generate_s": stats([x["generate_s"] for x in rows]),
            "rtf": stats([x["rtf"] for x in rows], 4),
            "rtf_per_audio_s": stats([x["rtf_per_audio_s"] for x in rows], 4),
            "decoder_steps": stats([float(x["decoder_steps"]) for x in rows], 1),
            "segment_tokens_per_window": stats([float(t) for t in all_tokens], 1),
            "windows": len(all_tokens),
            "sum_s": r(sum(x["total_s"] for x in rows)),
        },
        **_cuda_facts(transcriber.device),
    }


def compare(audio: dict[str, Any], video: dict[str, Any]) -> dict[str, Any]:
    """Per segment, which branch took longer."""
    per_segment = []
    for a, v in zip(audio["segments"], video["segments"]):
        per_segment.append(
            {
                "segment": a["segment"],
                "audio_s": a["total_s"],
                "video_s": v["total_s"],
                "ratio_audio_to_video": r(a["total_s"] / v["total_s"], 3) if v["total_s"] else None,
                "slower": "audio" if a["total_s"] > v["total_s"] else "video",
            }
        )
    slower_audio = sum(1 for x in per_segment if x["slower"] == "audio")
    ratios = [x["ratio_audio_to_video"] for x in per_segment if x["ratio_audio_to_video"] is not None]
    return {
        "per_segment": per_segment,
        "audio_slower_segments": slower_audio,
        "segments": len(per_segment),
        "ratio_audio_to_video": stats(ratios),
        "slower_branch": "audio" if slower_audio * 2 > len(per_segment) else "video",
    }


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the generated video")
    parser.add_argument("--segment-seconds", type=float, default=30.0, help="segment length asked of the split")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (half only on CUDA)")
    parser.add_argument("--language", default="auto", help="auto (the pipeline's default: detected) or a code")
    parser.add_argument("--overlap", type=float, default=None, help="audio overlap, s (default: the pipeline's)")
    parser.add_argument("--asr-batch", type=int, default=8, help="30 s windows per forward pass (worker default)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--decoder-cap",
        type=int,
        default=None,
        help="override the models' generation max_length (decoder positions per pass); default: their own "
        "(448 for base-random, 48 for tiny), which is what bounds the Transcriber",
    )
    parser.add_argument("--no-video", action="store_true", help="skip the video branch")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="no untimed first call")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "reports"))
    parser.add_argument("--render", help="redraw transcribe.md from this transcribe.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.render:
        render(json.loads(Path(args.render).read_text()), Path(args.render).parent)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)} (expected {', '.join(MODELS)})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("vidsearch", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet()

    started = time.perf_counter()
    load_start = [r(x, 2) for x in os.getloadavg()]
    import torch
    from vidsearch.media import probe, split
    from vidsearch.models.modelstore import ensure_tiny_model, select_device
    from vidsearch.params import DEFAULT_AUDIO_OVERLAP_S
    from vidsearch.stores import storage

    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.overlap is None:
        args.overlap = DEFAULT_AUDIO_OVERLAP_S
    device = select_device(args.device)
    models_dir = cache_dir() / "bench-models"
    os.environ["VIDSEARCH_MODEL_CACHE"] = str(models_dir)  # the worker loads models only from its cache

    video, video_info = make_input(args.minutes)
    paths: dict[str, Path] = {}
    build: dict[str, dict[str, Any]] = {}
    for name in models:
        builder = (
            (lambda: ensure_tiny_model("asr", models_dir))
            if name == "tiny"
            else (lambda: ensure_base_random(models_dir))
        )
        before = {p.name for p in models_dir.iterdir()} if models_dir.is_dir() else set()
        paths[name], seconds = timed(builder)
        build[name] = {"seconds": r(seconds), "cached": paths[name].name in before}

    with tempfile.TemporaryDirectory(prefix="vidsearch-bench-transcribe-") as tmp_name:
        tmp = Path(tmp_name)
        root = f"file://{tmp / 'objects'}"
        os.environ["VIDSEARCH_STORAGE_ROOT"] = root  # the worker reads and writes only under it
        manifest, probe_s = timed(lambda: probe.probe_video(video, str(video)))
        segments, split_s = timed(
            lambda: split.run_split(video, manifest, args.segment_seconds, None, storage.join(root, "segments"))
        )
        log.info(
            "%d segments of %.3f s video (probe %.2f s, split %.2f s)",
            len(segments),
            manifest.duration_s,
            probe_s,
            split_s,
        )
        video_result = None if args.no_video else video_branch(segments, root, args, models_dir)
        audio = {name: audio_branch(name, paths[name], video, manifest, segments, args, tmp) for name in models}

    report = {
        "schema": SCHEMA_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "bench/transcribe.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "duration_s": r(time.perf_counter() - started, 1),
        "machine": {
            **machine_facts(
                torch=torch.__version__,
                transformers=version("transformers"),
                numpy=version("numpy"),
                cuda=torch.version.cuda,
                cuda_available=torch.cuda.is_available(),
            ),
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            **({"gpu_name": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}),
            "loadavg_at_start": load_start,
            "loadavg_at_end": [r(x, 2) for x in os.getloadavg()],
        },
        "params": {
            "minutes": args.minutes,
            "segment_seconds": args.segment_seconds,
            "models": models,
            "device": args.device,
            "dtype": args.dtype,
            "language": args.language,
            "audio_overlap_s": args.overlap,
            "asr_batch": args.asr_batch,
            "sample_fps": SAMPLE_FPS,
            "detect_batch": DETECT_BATCH,
            "score_threshold": SCORE_THRESHOLD,
            "warmup": args.warmup,
            "decoder_cap": args.decoder_cap,
        },
        "input": {
            **video_info,
            "duration_s": r(manifest.duration_s),
            "video_id": manifest.video_id,
            "probe_s": r(probe_s),
            "split_s": r(split_s),
            "segments": [{"index": s.index, "start_s": r(s.start_s), "end_s": r(s.end_s)} for s in segments],
        },
        "model_build": build,
        "video_branch": video_result,
        "audio_branch": audio,
        "comparison": {name: compare(a, video_result) for name, a in audio.items()} if video_result else {},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "transcribe.json").write_text(json.dumps(report, indent=1) + "\n")
    render(report, out)
    for name, a in audio.items():
        s = a["summary"]
        vs = f"; video branch RTF p50 {video_result['summary']['rtf']['p50']}" if video_result else ""
        print(f"{name} on {a['device']}: RTF p50 {s['rtf']['p50']} max {s['rtf']['max']}{vs}")
    print(f"-> {out / 'transcribe.md'}")
    return 0


def _built(build: dict[str, Any] | None) -> str:
    if not build:
        return "build n/a"
    return (
        "cached (found in " + str(build["seconds"]) + " s)" if build["cached"] else f"built in {build['seconds']:.2f} s"
    )


def render(report: dict[str, Any], out: Path) -> None:
    m, p, inp = report["machine"], report["params"], report["input"]
    video = report.get("video_branch")
    lines = [
        "# Transcription benchmark: audio branch next to video branch",
        "",
        f"Generated {report['generated_at']} by `{report['command']}` in {report['duration_s']} s.",
        "",
        f"Machine: {m['cpu_count']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB; device **{m['device']}**"
        + (f" ({m['gpu_name']})" if m.get("gpu_name") else "")
        + f", torch {m['torch']} with {m['torch_threads']} threads, transformers {m['transformers']}; "
        f"commit `{(m['git_commit'] or '')[:10]}`" + (" (with local changes)." if m["git_dirty"] else "."),
        "",
        load_note(m),
        f"Input: `synth.make_video`, {inp['duration_s']:.1f} s of {WIDTH}x{HEIGHT} H.264 at {FPS} fps with an AAC "
        f"440 Hz sine (not speech), split by `split.run_split` into {len(inp['segments'])} segments of about "
        f"{p['segment_seconds']:g} s (keyframe every {GOP_FRAMES} frames). Audio clips reach {p['audio_overlap_s']:g} s "
        f"past each segment end; language `{p['language']}`, {p['asr_batch']} windows per batch, dtype {p['dtype']}.",
        "",
        "RTF = processing seconds / seconds of video the segment covers (below 1: faster than real time). "
        "Audio = `extract_audio_clip` + `Transcriber.transcribe_clip`; video = `frames.run_frames` at "
        f"{p['sample_fps']:g} fps + the detect+embed worker (tiny DETR + CLIP, warm: models loaded once). "
        "The branches ran one after the other, each with the machine to itself.",
        "",
        "| model | device | params | load s | audio heard s | processing s (sum) | per segment p50 / max s "
        "| RTF p50 / max | RTF per heard s p50 | decoder steps per segment p50 / max (cap per pass) | windows "
        "| video branch s p50 | video RTF p50 "
        "| slower branch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, a in report["audio_branch"].items():
        s = a["summary"]
        cmp = report["comparison"].get(name)
        vsum = video["summary"] if video else None
        slower = (
            f"{cmp['slower_branch']} (audio slower in {cmp['audio_slower_segments']}/{cmp['segments']} segments)"
            if cmp
            else "n/a"
        )
        lines.append(
            f"| {name} | {a['device']} ({a['dtype']}) | {a['parameters'] / 1e6:.1f}M | {a['load_s']:.2f} "
            f"| {s['audio_s']:.1f} | {s['sum_s']:.2f} | {fmt(s['total_s']['p50'], 2)} / {fmt(s['total_s']['max'], 2)} "
            f"| {fmt(s['rtf']['p50'], 3)} / {fmt(s['rtf']['max'], 3)} | {fmt(s['rtf_per_audio_s']['p50'], 3)} "
            f"| {fmt(s['decoder_steps']['p50'], 0)} / {fmt(s['decoder_steps']['max'], 0)} ({a['decoder_cap_positions']}{', overridden' if a.get('decoder_cap_overridden') else ''}) "
            f"| {s['windows']} "
            f"| {fmt(vsum['total_s']['p50'], 2) if vsum else 'n/a'} | {fmt(vsum['rtf']['p50'], 3) if vsum else 'n/a'} "
            f"| {slower} |"
        )
    if video:
        vs = video["summary"]
        lines += [
            "",
            f"Video branch ({video['device']}, models {', '.join(video['models'])}; load {video['load_s']:.2f} s once): "
            f"frames p50 {fmt(vs['frames_s']['p50'], 2)} s, detect+embed p50 {fmt(vs['detect_embed_s']['p50'], 2)} s, "
            f"total p50 {fmt(vs['total_s']['p50'], 2)} s (max {fmt(vs['total_s']['max'], 2)}), RTF p50 "
            f"{fmt(vs['rtf']['p50'], 3)} (max {fmt(vs['rtf']['max'], 3)}), {vs['sum_s']:.2f} s in all.",
        ]
    lines += ["", "## Per segment", ""]
    names = list(report["audio_branch"])
    header = "| segment | s |" + (" video frames + detect s | video RTF |" if video else "")
    header += "".join(
        f" {n}: extract + transcribe (generate) s | {n} RTF | {n} windows, decoder steps |" for n in names
    )
    lines += [header, "|" + "---:|" * (header.count("|") - 1)]
    for i, seg in enumerate(inp["segments"]):
        row = f"| {seg['index']} | {seg['end_s'] - seg['start_s']:.2f} |"
        if video:
            v = video["segments"][i]
            row += f" {v['frames_s']:.2f} + {v['detect_embed_s']:.2f} | {v['rtf']:.3f} |"
        for n in names:
            a = report["audio_branch"][n]["segments"][i]
            row += (
                f" {a['extract_s']:.2f} + {a['transcribe_s']:.2f} ({a['generate_s']:.2f}) | {a['rtf']:.3f} "
                f"| {a['windows']}, {a['decoder_steps']} |"
            )
        lines.append(row)
    lines += ["", "## One-time costs", ""]
    for name, a in report["audio_branch"].items():
        w = a.get("warmup") or {}
        lines.append(
            f"* {name}: {_built(report.get('model_build', {}).get(name))}, loaded in {a['load_s']:.2f} s; "
            + (
                f"first call on {w['audio_s']:g} s of audio {w['seconds']:.2f} s (not in the table)"
                if w
                else "no warm-up"
            )
            + (f"; peak GPU memory {a['peak_memory_allocated_mib']} MiB" if a.get("peak_memory_allocated_mib") else "")
            + "."
        )
    lines += [
        f"* Input: probe {inp['probe_s']:.2f} s, split {inp['split_s']:.2f} s"
        + (f", generated in {inp['generate_s']:.1f} s" if inp.get("generate_s") else " (video cached)")
        + ".",
        "",
        "## Caveats",
        "",
        "* **Random weights: the text is meaningless**, and so is the decode length. `tiny` is the project's tiny "
        "random Whisper (d_model 32, one layer each side, decoder cap 48 positions); `base-random` has "
        "openai/whisper-base's exact architecture (the FLOPs of an encoder pass and of a decoder step are "
        "whisper-base's) with random weights and a vocabulary padded to whisper-base's token ids. A random model "
        "rarely predicts <|endoftext|>, so its windows decode to the cap (the generation config's max_length in "
        "positions, which is all that bounds the Transcriber's `generate`), and `generate`'s seek loop may decode a "
        "window again from its last complete timestamped segment (then a segment takes two or more passes); a real "
        "whisper-base writes about 2-4 tokens per second of speech (60-120 per full 30 s window) and stops, or "
        "almost nothing on silence. The decoder steps column counts the decoder's forward calls inside `generate` "
        "(one per generated position for the whole batch of windows): scale the generate share (in transcribe.json) "
        "by a real model's steps over these for an estimate.",
        "* A clip is its segment plus the overlap on both sides (within the video), so an inner 30 s segment is "
        "heard as ~32 s: two Whisper windows, each padded to 30 s for the encoder and decoded in one batch, so "
        "30 s segments pay about two encoder passes where 28 s ones would pay one (the windows column).",
        "* The Transcriber runs the encoder once per window (its states give the language and no-speech "
        "probabilities, and `generate` decodes from them), and a teacher-forced decoder pass scores the generated "
        "tokens: all inside the transcribe time, as in the worker.",
        "* The audio is a sine tone, not speech (the pipeline transcribes it: it is loud enough to be speech-likely).",
        "* Single runs on whatever machine ran them; the load average above says how busy it was.",
        "",
    ]
    (out / "transcribe.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
