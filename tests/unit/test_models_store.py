"""Model resolution: tiny models (built once, deterministic, loaded like real ones) and fast, clear
failures when real weights cannot be had."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from vidsearch.errors import InputError, ModelUnavailableError
from vidsearch.models import modelstore


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared with the rest of the session when the suite's conftest configured one.
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture()
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face home with the hub switched off."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_tiny_models_build_once_and_load_through_from_pretrained(model_cache: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel, AutoModelForObjectDetection, AutoTokenizer

    det = Path(modelstore.resolve_model("ignored/in-tiny-mode", "detector", tiny=True, cache_dir=model_cache))
    emb = Path(modelstore.resolve_model("ignored/in-tiny-mode", "embedder", tiny=True, cache_dir=model_cache))
    assert det.parent == model_cache and det.name.startswith("tiny-detector-")
    assert emb.parent == model_cache and emb.name.startswith("tiny-embedder-")
    stamp = (det / "model.safetensors").stat().st_mtime_ns
    # Second resolution: same folder, not rebuilt.
    assert modelstore.resolve_model("x", "detector", tiny=True, cache_dir=model_cache) == str(det)
    assert (det / "model.safetensors").stat().st_mtime_ns == stamp

    detector = AutoModelForObjectDetection.from_pretrained(det)
    assert type(detector).__name__ == "DetrForObjectDetection"
    assert detector.config.num_queries == 8 and detector.config.d_model == 32
    assert detector.config.backbone_config.model_type == "resnet"  # transformers ResNet, not timm
    assert list(detector.config.id2label.values()) == list(modelstore.TINY_DETECTOR_LABELS)
    assert sum(p.numel() for p in detector.parameters()) < 200_000
    assert type(AutoImageProcessor.from_pretrained(det)).__name__.startswith("DetrImageProcessor")

    clip = AutoModel.from_pretrained(emb)
    assert type(clip).__name__ == "CLIPModel" and clip.config.projection_dim == 32
    tokenizer = AutoTokenizer.from_pretrained(emb)
    ids = tokenizer("a red car")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(ids)[1:-1] == ["a</w>", "red</w>", "car</w>"]
    assert (emb / "vocab.json").is_file() and (emb / "merges.txt").is_file()
    assert max(json.loads((emb / "vocab.json").read_text()).values()) < clip.config.text_config.vocab_size


def test_tiny_models_are_deterministic(tmp_path: Path, model_cache: Path) -> None:
    shared = modelstore.ensure_tiny_model("detector", model_cache)
    fresh = modelstore.ensure_tiny_model("detector", tmp_path)
    assert fresh.name == shared.name  # same recipe -> same hash -> same folder name
    a, b = _tensors(shared), _tensors(fresh)
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a)
    shared_emb = modelstore.ensure_tiny_model("embedder", model_cache)
    fresh_emb = modelstore.ensure_tiny_model("embedder", tmp_path)
    a, b = _tensors(shared_emb), _tensors(fresh_emb)
    assert all(a[k].equal(b[k]) for k in a)


def test_tiny_build_race_keeps_the_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = modelstore._build_tiny_detector
    target = modelstore.tiny_model_dir("detector", tmp_path)

    def build_while_another_process_finishes_first(folder: Path) -> None:
        real_build(folder)
        real_build(target)  # the "other process" renames its complete copy into place first

    monkeypatch.setattr(modelstore, "_build_tiny_detector", build_while_another_process_finishes_first)
    assert modelstore.ensure_tiny_model("detector", tmp_path) == target
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no staging folder left behind


def test_unknown_hub_id_offline_fails_fast_and_says_how_to_fix(offline_hub: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        modelstore.resolve_model("vidsearch-tests/no-such-model", "detector", tiny=False, cache_dir=tmp_path)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "vidsearch-tests/no-such-model" in message
    assert "save_pretrained" in message and "HF_HOME" in message and modelstore.TINY_ENV in message
    assert "\n" not in message


def test_hub_id_found_in_prepopulated_cache_offline(offline_hub: Path, model_cache: Path, tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "hub" / "models--vidsearch-tests--tiny-detr"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(modelstore.ensure_tiny_model("detector", model_cache), repo / "snapshots" / commit)
    folder = modelstore.resolve_model("vidsearch-tests/tiny-detr", "detector", tiny=False, cache_dir=tmp_path)
    assert Path(folder) == repo / "snapshots" / commit


def test_folders_that_are_not_models_are_rejected(tmp_path: Path, model_cache: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    with pytest.raises(ModelUnavailableError, match="not a model folder"):
        modelstore.resolve_model(str(empty), "detector", tiny=False, cache_dir=tmp_path)

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text('{"model_type": "detr"}')
    with pytest.raises(ModelUnavailableError, match="has no weights"):
        modelstore.resolve_model(str(no_weights), "detector", tiny=False, cache_dir=tmp_path)

    with pytest.raises(ModelUnavailableError, match="does not exist"):
        modelstore.resolve_model(str(tmp_path / "missing"), "embedder", tiny=False, cache_dir=tmp_path)

    no_processor = tmp_path / "no-processor"
    shutil.copytree(modelstore.ensure_tiny_model("detector", model_cache), no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(ModelUnavailableError, match="no image processor"):
        modelstore.resolve_model(str(no_processor), "detector", tiny=False, cache_dir=tmp_path)

    # A real model of the wrong kind: CLIP is not an object detector.
    clip = modelstore.ensure_tiny_model("embedder", model_cache)
    with pytest.raises(ModelUnavailableError, match="not an object detector"):
        modelstore.resolve_model(str(clip), "detector", tiny=False, cache_dir=tmp_path)


def test_local_model_folder_is_used_as_is(model_cache: Path, tmp_path: Path) -> None:
    folder = modelstore.ensure_tiny_model("detector", model_cache)
    assert modelstore.resolve_model(str(folder), "detector", tiny=False, cache_dir=tmp_path) == str(folder.resolve())


def test_mode_and_cache_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv(modelstore.TINY_ENV, value)
        assert modelstore.is_tiny_mode() is expected
    monkeypatch.setenv(modelstore.CACHE_ENV, str(tmp_path / "cache"))
    assert modelstore.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(modelstore.CACHE_ENV)
    assert modelstore.default_cache_dir() == Path.home() / ".cache" / "vidsearch" / "models"


def test_device_and_dtype_selection() -> None:
    import torch

    assert modelstore.select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert modelstore.select_device("auto").type == expected
    with pytest.raises(InputError):
        modelstore.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            modelstore.select_device("cuda")
    cpu = torch.device("cpu")
    assert modelstore.select_dtype("bf16", cpu) == torch.float32  # half precision only on CUDA
    assert modelstore.select_dtype("float32", cpu) == torch.float32
    with pytest.raises(InputError):
        modelstore.select_dtype("int8", cpu)
