"""The transcribe worker command and its launcher: output files, silent clips, confinement, exit codes, and
the warm worker running transcribe jobs next to detect+embed ones."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from vidsearch.errors import PermanentError
from vidsearch.models import launcher, modelstore, transcriber, worker
from vidsearch.records import AudioClip

INCLUDE = Path(launcher.__file__).resolve().parents[2]
VIDEO = "ef" * 16


@pytest.fixture(autouse=True)
def storage_root(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """The worker reads and writes only under its storage root: here, all of pytest's temp folders."""
    root = f"file://{tmp_path_factory.getbasetemp()}"
    monkeypatch.setenv(worker.STORAGE_ROOT_ENV, root)
    monkeypatch.delenv(launcher.WORKER_URL_ENV, raising=False)
    return root


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Warm-worker jobs run in this process: one intra-op thread (see tests/unit/test_asr.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _clip(folder: Path, seconds: float = 4.0, *, speech: bool = True, index: int = 2) -> str:
    """A WAV of `seconds` (bursts of noise, or digital silence) and its AudioClip JSON; the JSON's URI."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(index)
    n = int(seconds * 16_000)
    samples = rng.normal(0, 3000, n) * (np.arange(n) % 8000 < 5000) if speech else np.zeros(n)
    wav_path = folder / f"seg{index:04d}.wav"
    with wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(samples.astype("<i2").tobytes())
    start = 10.0 * index
    clip = AudioClip(
        video_id=VIDEO,
        segment_index=index,
        uri=f"file://{wav_path}",
        segment_start_s=start + 1.0,
        segment_end_s=start + seconds - 1.0,
        start_s=start,
        end_s=start + seconds,
        rms_dbfs=-20.0 if speech else -math.inf,
        speech_likely=speech,
    )
    clip_path = folder / f"seg{index:04d}.json"
    clip_path.write_text(clip.model_dump_json())
    return f"file://{clip_path}"


def _argv(clip_uri: str, output_uri: str, model_cache: Path, **overrides: object) -> list[str]:
    kwargs: dict = dict(
        model="openai/whisper-base",
        embedder="openai/clip-vit-base-patch32",
        last_segment=False,
        batch_size=2,
        device="cpu",
        tiny=True,
        model_cache=str(model_cache),
    )
    kwargs.update(overrides)
    return launcher.transcriber_argv(clip_uri, output_uri, **kwargs)


def test_transcriber_argv_is_a_pod_command(model_cache: Path) -> None:
    argv = _argv("s3://b/a.json", "s3://b/out", model_cache, last_segment=True, language="en")
    assert argv[:3] == ["python", "-m", "vidsearch.models.transcriber"]
    assert "--last-segment" in argv and argv[argv.index("--language") + 1] == "en"
    assert "--tiny-models" in argv and "--detector" not in argv
    args = transcriber.build_parser().parse_args(argv[3:])
    assert (args.clip_uri, args.output_uri, args.model, args.last_segment) == (
        "s3://b/a.json",
        "s3://b/out",
        "openai/whisper-base",
        True,
    )


def test_transcribe_end_to_end_in_a_subprocess(tmp_path: Path, model_cache: Path) -> None:
    clip_uri = _clip(tmp_path / "audio")
    output_uri = f"file://{tmp_path / 'out'}"
    result = launcher.run_transcribe_local(_argv(clip_uri, output_uri, model_cache), timeout_s=300)
    assert (tmp_path / "out" / transcriber.TRANSCRIPT_FILE).is_file()
    assert (tmp_path / "out" / transcriber.TEXT_EMBEDDINGS_FILE).is_file()
    read, embeddings = launcher.read_transcript(output_uri)
    assert read == result
    assert result.model.startswith("tiny-asr-") and result.device == "cpu"
    assert result.speech_likely and result.language is not None
    assert result.chunks, "the tiny model always says something"
    for chunk in result.chunks:
        assert result.clip_start_s <= chunk.start_s <= chunk.end_s <= result.clip_end_s
        assert result.segment_start_s <= (chunk.start_s + chunk.end_s) / 2 < result.segment_end_s
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(result.chunks), 32)  # the tiny CLIP's width
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert {"load_asr", "transcribe", "load_embedder", "embed_texts", "total"} <= set(result.timings_s)


def test_a_silent_clip_loads_no_model_and_has_no_chunks(
    tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidsearch.models import asr

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a silent clip loaded the speech model")

    monkeypatch.setattr(asr, "Transcriber", no_model)
    clip_uri = _clip(tmp_path / "audio", speech=False)
    output_uri = f"file://{tmp_path / 'out'}"
    code, reason = transcriber.execute(_argv(clip_uri, output_uri, model_cache)[3:])
    assert (code, reason) == (0, None)
    result, embeddings = launcher.read_transcript(output_uri)
    assert result.chunks == [] and not result.speech_likely and embeddings.shape == (0, 0)
    assert "load_asr" not in result.timings_s and "load_embedder" not in result.timings_s
    assert result.model.startswith("tiny-asr-")


def test_paths_outside_the_storage_root_are_refused_with_exit_3(tmp_path: Path, model_cache: Path) -> None:
    clip_uri = _clip(tmp_path / "audio")
    env = {**os.environ, worker.STORAGE_ROOT_ENV: f"file://{tmp_path / 'elsewhere'}"}
    env["PYTHONPATH"] = os.pathsep.join([str(INCLUDE), env.get("PYTHONPATH", "")])
    argv = _argv(clip_uri, f"file://{tmp_path / 'elsewhere' / 'out'}", model_cache)
    done = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == worker.EXIT_PERMANENT
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{worker.ERROR_MARKER} permanent: --clip-uri") and "storage root" in last
    assert not (tmp_path / "elsewhere").exists()

    # The WAV the record names is confined too, and a stale transcript is never left to pair with new output.
    folder = tmp_path / "sneaky"
    record = AudioClip.model_validate_json((tmp_path / "audio" / "seg0002.json").read_text())
    folder.mkdir()
    (folder / "clip.json").write_text(record.model_copy(update={"uri": "file:///etc/passwd"}).model_dump_json())
    with pytest.raises(PermanentError, match="the clip's uri '/etc/passwd'|the clip's uri 'file:///etc/passwd'"):
        launcher.run_transcribe_local(
            _argv(f"file://{folder / 'clip.json'}", f"file://{tmp_path / 'o'}", model_cache), timeout_s=120
        )


def test_a_stale_transcript_is_removed_when_the_job_fails(tmp_path: Path, model_cache: Path) -> None:
    clip_uri = _clip(tmp_path / "audio")
    (tmp_path / "audio" / "seg0002.wav").unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / transcriber.TRANSCRIPT_FILE).write_text("{}")
    code, reason = transcriber.execute(_argv(clip_uri, f"file://{out}", model_cache)[3:])
    assert code == worker.EXIT_PERMANENT and "does not exist" in reason
    assert not (out / transcriber.TRANSCRIPT_FILE).exists()
    # Bad arguments and a missing record are permanent too.
    assert transcriber.execute(["--clip-uri", clip_uri])[0] == worker.EXIT_PERMANENT
    code, reason = transcriber.execute(_argv(f"file://{tmp_path / 'none.json'}", f"file://{out}", model_cache)[3:])
    assert code == worker.EXIT_PERMANENT and "does not exist" in reason


def test_the_warm_worker_runs_transcribe_jobs_and_keeps_their_models(
    tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidsearch.models import worker_server

    clip_uri = _clip(tmp_path / "audio")
    with worker_server.serving() as (url, state):
        monkeypatch.setenv(launcher.WORKER_URL_ENV, url)
        first = launcher.run_transcribe_local(_argv(clip_uri, f"file://{tmp_path / 'w1'}", model_cache), timeout_s=300)
        second = launcher.run_transcribe_local(_argv(clip_uri, f"file://{tmp_path / 'w2'}", model_cache), timeout_s=300)
        launcher.check_models_local(
            launcher.transcriber_check_argv(
                "openai/whisper-base", "openai/clip-vit-base-patch32", "cpu", True, model_cache=str(model_cache)
            ),
            timeout_s=300,
        )
        assert state.jobs == 3 and state.models.loads == 2
        assert sorted(line.split()[0] for line in state.models.describe()) == ["asr", "embedder"]
        # An unknown command is refused before anything runs.
        request = urllib.request.Request(
            f"{url}/run",
            data=json.dumps({"argv": ["--help"], "module": "os"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {state.token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        assert raised.value.code == 400 and state.jobs == 3
    assert [c.model_dump() for c in first.chunks] == [c.model_dump() for c in second.chunks]
