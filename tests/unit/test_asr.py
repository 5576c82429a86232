"""Speech recognition with the tiny random Whisper: it builds, loads through from_pretrained and runs end to
end (its text is garbage, its shapes, times and code paths are the real ones); bad models fail fast."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from vidsearch.errors import InputError, ModelUnavailableError
from vidsearch.models import asr, modelstore
from vidsearch.records import AudioClip, TranscriptResult


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny_asr(model_cache: Path) -> Path:
    return Path(modelstore.resolve_model("openai/whisper-base", "asr", tiny=True, cache_dir=model_cache))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded 2-core machine, OpenMP threads spinning for each other made the
    tiny model's decoding 40 times slower (20 s against 0.5 s; the worker itself sleeps-waits,
    `worker.configure_logging`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def transcriber(tiny_asr: Path) -> asr.Transcriber:
    return asr.Transcriber(str(tiny_asr), device="cpu")


def _speechy(seconds: float, seed: int = 0, pause_at: float | None = None) -> np.ndarray:
    """Amplitude-modulated noise (syllable-like bursts) at 16 kHz; a 0.3 s pause at `pause_at`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * asr.SAMPLE_RATE)) / asr.SAMPLE_RATE
    samples = rng.normal(0, 0.2, t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    if pause_at is not None:
        a = int(pause_at * asr.SAMPLE_RATE)
        samples[a : a + int(0.3 * asr.SAMPLE_RATE)] = 0
    return samples.astype(np.float32)


def test_the_tiny_whisper_builds_small_and_loads_through_from_pretrained(tiny_asr: Path, model_cache: Path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    assert tiny_asr.parent == model_cache and tiny_asr.name.startswith("tiny-asr-")
    assert sum(f.stat().st_size for f in tiny_asr.iterdir()) < 10 * 1024 * 1024
    model = WhisperForConditionalGeneration.from_pretrained(tiny_asr)
    processor = WhisperProcessor.from_pretrained(tiny_asr)
    tokenizer = processor.tokenizer
    generation = model.generation_config
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    # The layout the tokenizer and generate rely on: languages right after <|startoftranscript|>,
    # timestamps right after <|notimestamps|>.
    assert tokenizer.convert_tokens_to_ids("<|en|>") == sot + 1 == generation.lang_to_id["<|en|>"]
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == generation.no_timestamps_token_id + 1
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == generation.no_timestamps_token_id + 1501
    assert generation.task_to_id["transcribe"] == tokenizer.convert_tokens_to_ids("<|transcribe|>")
    ids = tokenizer("the red car").input_ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the red car"
    # Deterministic: the same recipe in another folder gives the same bytes.
    assert modelstore.tiny_model_dir("asr", model_cache) == tiny_asr
    assert json.loads((tiny_asr / "config.json").read_text())["model_type"] == "whisper"


def test_transcribe_gives_a_result_with_times_inside_the_clip_in_order(transcriber: asr.Transcriber):
    clip = AudioClip(
        video_id="cd" * 16,
        segment_index=1,
        uri="file:///audio/seg0001.wav",
        segment_start_s=10.0,
        segment_end_s=40.0,
        start_s=8.0,
        end_s=42.0,
        rms_dbfs=-20.0,
        speech_likely=True,
    )
    samples = _speechy(clip.end_s - clip.start_s, pause_at=28.0)
    result = transcriber.transcribe_clip(samples, clip, is_last=False, model_name="tiny", batch_size=2)
    assert isinstance(result, TranscriptResult)
    assert (result.clip_start_s, result.clip_end_s, result.segment_start_s, result.segment_end_s) == (8, 42, 10, 40)
    assert result.chunks, "the tiny model always says something"
    assert result.language is not None and result.language in transcriber.lang_to_id
    assert 0.0 <= result.language_probability <= 1.0
    starts = [c.start_s for c in result.chunks]
    assert starts == sorted(starts)
    for chunk in result.chunks:
        assert clip.start_s <= chunk.start_s <= chunk.end_s <= clip.end_s
        assert clip.segment_start_s <= (chunk.start_s + chunk.end_s) / 2 < clip.segment_end_s
        assert chunk.language == result.language
        assert chunk.avg_logprob is not None and chunk.avg_logprob <= 0
        assert 0.0 <= chunk.no_speech_prob <= 1.0
        assert chunk.text.strip()


def test_long_clips_are_cut_in_pauses_into_windows_of_at_most_30_s():
    samples = _speechy(70.0, pause_at=27.0)
    windows = asr.plan_windows(samples)
    assert windows[0][0] == 0 and windows[-1][1] == len(samples)
    assert all(b == c for (_, b), (c, _) in zip(windows, windows[1:]))
    assert all(0 < b - a <= 30 * asr.SAMPLE_RATE for a, b in windows)
    assert 27.0 <= windows[0][1] / asr.SAMPLE_RATE <= 27.3  # in the pause
    assert asr.plan_windows(np.zeros(0, np.float32)) == []
    assert asr.plan_windows(samples[: 16_000 * 5]) == [(0, 16_000 * 5)]


def test_batched_windows_give_the_same_phrases_as_one_at_a_time(transcriber: asr.Transcriber):
    samples = _speechy(45.0, seed=2)
    one = transcriber.transcribe(samples, batch_size=1)
    both = transcriber.transcribe(samples, batch_size=4)
    assert one.windows == both.windows == 2
    assert [(p.start_s, p.end_s, p.text) for p in one.phrases] == [(p.start_s, p.end_s, p.text) for p in both.phrases]
    assert all(p.end_s <= 45.0 for p in both.phrases)


def test_a_forced_language_is_recorded_without_a_probability(transcriber: asr.Transcriber):
    heard = transcriber.transcribe(_speechy(4.0), language="german")
    assert (heard.language, heard.language_probability) == ("de", None)
    with pytest.raises(InputError, match="unknown language 'klingon'"):
        transcriber.transcribe(_speechy(1.0), language="klingon")


def test_wav_bytes_are_read_as_float_samples():
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(np.array([0, 16384, -32768], dtype="<i2").tobytes())
    assert asr.load_wav(buffer.getvalue()).tolist() == [0.0, 0.5, -1.0]
    with pytest.raises(InputError, match="not a readable WAV"):
        asr.load_wav(b"RIFF nonsense")


def test_a_bad_model_id_fails_fast_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="asr model 'openai/no-such-whisper' is not in the Hugging Face"):
        modelstore.resolve_model("openai/no-such-whisper", "asr", tiny=False, cache_dir=tmp_path)
    with pytest.raises(ModelUnavailableError, match="asr model folder .* does not exist"):
        modelstore.resolve_model(str(tmp_path / "missing"), "asr", tiny=False, cache_dir=tmp_path)
    assert time.monotonic() - started < 5


def test_a_model_that_is_not_whisper_is_refused(tmp_path: Path, model_cache: Path):
    clip = tmp_path / "clip"
    shutil.copytree(modelstore.ensure_tiny_model("embedder", model_cache), clip)
    with pytest.raises(ModelUnavailableError, match="is a 'clip' model, not a Whisper model"):
        modelstore.resolve_model(str(clip), "asr", tiny=False, cache_dir=tmp_path)


def test_a_damaged_whisper_folder_is_a_model_error(tmp_path: Path, tiny_asr: Path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_asr, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    folder = modelstore.resolve_model(str(broken), "asr", tiny=False, cache_dir=tmp_path)
    with pytest.raises(ModelUnavailableError, match="cannot load a Whisper speech recognition model"):
        asr.Transcriber(folder, device="cpu")
