"""Model resolution: turn a model id into a local folder that `from_pretrained` loads without the network.

Two modes:

* Real mode: `model` is a local folder (used as is, after checking it holds a model) or a Hugging Face
  hub id. A local folder must lie under a model root (`model_roots`: the model cache, plus the folders
  in `VIDSEARCH_MODEL_ROOTS`), wherever its symlinks lead; any other path gets one generic error that
  does not say whether it exists (a model parameter is not a way to probe or load the filesystem). A hub id is looked up in the local HF cache first (`HF_HOME`), then downloaded when the hub is
  reachable. When the weights cannot be had, `ModelUnavailableError` says so in one line, quickly: with
  `HF_HUB_OFFLINE=1` nothing touches the network, and otherwise one short-timeout metadata call decides.
* Tiny mode (`VIDSEARCH_TINY_MODELS=1`, tests and offline demos): small random models are built from
  fixed configs with a fixed seed, saved once into `cache_dir/tiny-<kind>-<hash>` and returned, so they
  load through exactly the same `from_pretrained` path as real models. They detect and embed nonsense,
  but every shape, dtype and code path is the real one.

Nothing here imports torch or transformers at module import time: the worker's `--help` and the
Airflow scheduler stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from vidsearch.errors import InputError, ModelUnavailableError, one_line

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ModelKind = Literal["detector", "embedder", "asr"]
_KINDS: tuple[str, ...] = ("detector", "embedder", "asr")

TINY_ENV = "VIDSEARCH_TINY_MODELS"
CACHE_ENV = "VIDSEARCH_MODEL_CACHE"
# More folders model folders may be loaded from (os.pathsep-separated), besides the model cache.
ROOTS_ENV = "VIDSEARCH_MODEL_ROOTS"
# Short: a metadata call that does not answer in this time means "no hub here", not "wait longer".
HUB_METADATA_TIMEOUT_S = 10.0

# Bump when the tiny recipes change in a way the config hash cannot see (tokenizer, processor code).
_TINY_RECIPE_VERSION = 1
_TINY_SEED = 1234
_BUILD_LOCK = threading.Lock()
TINY_DETECTOR_LABELS: tuple[str, ...] = ("person", "car", "bicycle", "dog", "cat", "truck")

_CONFIG_FILE = "config.json"
# An image processor is saved on its own (preprocessor_config.json) or inside a processor's config.
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a hub snapshot needs for our loaders: configs, tokenizer files, one weight format.
_HUB_COMMON_PATTERNS = ["*.json", "*.txt", "*.model"]

_HOW_TO_PROVIDE = (
    "download it where the hub is reachable and save_pretrained() the model and its processor into a "
    "folder and pass that folder, or pre-populate the Hugging Face cache (HF_HOME), or set "
    f"{TINY_ENV}=1 to use tiny random models (tests and offline demos only)"
)


def is_tiny_mode() -> bool:
    """True when env `VIDSEARCH_TINY_MODELS` is 1/true/yes (case-insensitive)."""
    return os.environ.get(TINY_ENV, "").strip().lower() in ("1", "true", "yes")


def default_cache_dir() -> Path:
    """Where tiny models are built: env `VIDSEARCH_MODEL_CACHE`, else `~/.cache/vidsearch/models`."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "vidsearch" / "models"


def model_roots() -> list[Path]:
    """The folders model folders may be loaded from (and tiny models built in), resolved: the model
    cache (`default_cache_dir`) and every folder in env `VIDSEARCH_MODEL_ROOTS` (os.pathsep-separated).
    Read from this process's environment on every call, never from a job's arguments."""
    entries = [
        default_cache_dir(),
        *(Path(e.strip()).expanduser() for e in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if e.strip()),
    ]
    return [entry.resolve() for entry in entries]


def within_model_roots(path: Path) -> bool:
    """Whether `path`, resolved (symlinks followed, `..` collapsed), lies under a model root."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError):
        return False
    return any(resolved.is_relative_to(root) for root in model_roots())


def _outside_roots(subject: str) -> ModelUnavailableError:
    # The same text whether or not the folder exists: nothing about it is told to the caller.
    return ModelUnavailableError(
        f"{subject} is not under an allowed model folder (the model cache {CACHE_ENV}, or one "
        f"of {ROOTS_ENV}): put the model there, or pass a hub id"
    )


def resolve_model(model: str, kind: ModelKind, *, tiny: bool, cache_dir: Path) -> str:
    """A local folder holding a loadable model (config, weights, processor) for `model`.

    Real mode: a local folder is returned (resolved) when it holds a model; a hub id is returned as the
    folder of its cached or freshly downloaded snapshot. Tiny mode ignores `model` and returns the folder
    of the tiny model of `kind`, building it under `cache_dir` the first time.

    Folders (and the tiny-model `cache_dir`) must lie under `model_roots()`: any other path raises the
    same ModelUnavailableError whether it exists or not.

    Raises ModelUnavailableError (one line, naming the model and how to provide it) when the weights
    cannot be had: offline and not cached, unknown id, gated repo, or a folder that is not a model.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    if tiny:
        if not within_model_roots(Path(cache_dir)):
            raise _outside_roots("the tiny-model cache folder")
        return str(ensure_tiny_model(kind, Path(cache_dir)))
    model = model.strip()
    if not model:
        raise ModelUnavailableError(f"no {kind} model given; {_HOW_TO_PROVIDE}")
    path = Path(model).expanduser()
    if _looks_like_path(model):
        # Confined before anything about the path is looked at: no existence oracle outside the roots.
        if not within_model_roots(path):
            raise _outside_roots(f"{kind} model folder")
        if not path.is_dir():
            raise ModelUnavailableError(f"{kind} model folder {model!r} does not exist; {_HOW_TO_PROVIDE}")
    elif not (within_model_roots(path) and path.is_dir()):
        # A hub id (`name`, `org/name`): a folder of that name is used only inside the roots.
        return _resolve_hub_model(model, kind)
    _check_model_folder(path, model, kind)
    return str(path.resolve())


@contextlib.contextmanager
def loading(what: str, model_path: str) -> Iterator[None]:
    """Turn a failure inside the block (transformers loading `what` from `model_path`) into a one-line
    ModelUnavailableError: a model that does not load is a permanent error, not a crash."""
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, TypeError, RuntimeError)
    try:
        yield
    except errors + _weight_file_errors() as exc:
        raise ModelUnavailableError(
            f"cannot load {what} from {model_path!r}: {type(exc).__name__}: {one_line(exc, 300)}"
        ) from exc


def _weight_file_errors() -> tuple[type[BaseException], ...]:
    """What a damaged weights file raises besides the built-in errors (safetensors' own error type
    derives from Exception only): permanent too, a retry reads the same bytes."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors is a transformers dependency
        return ()
    return (SafetensorError,)


def select_device(device: str) -> torch.device:
    """`auto` -> the first CUDA GPU when there is one, else the CPU; `cpu`; `cuda` or `cuda:N`.

    Raises InputError for an unknown name or when CUDA is asked for but not available (a pod scheduled
    without a GPU is a configuration error: retrying on the same node cannot help).
    """
    import torch

    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available")
        try:
            selected = torch.device(name)
        except RuntimeError:
            raise InputError(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)") from None
        index = selected.index if selected.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise InputError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
        return torch.device("cuda", index)
    raise InputError(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)")


def select_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The compute dtype: `float32`, `float16` or `bfloat16` (also `fp32`/`fp16`/`bf16`).

    Half precision is only used on CUDA; on the CPU it falls back to float32 (slow and lossy there)
    with a warning, so one argv works on GPU pods and CPU fallbacks alike.
    """
    import torch

    aliases = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    try:
        selected = aliases[dtype.strip().lower()]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r} (expected float32, float16 or bfloat16)") from None
    if selected != torch.float32 and device.type != "cuda":
        logger.warning("dtype %s is only used on CUDA; running in float32 on %s", dtype, device)
        return torch.float32
    return selected


# --------------------------------------------------------------------------------------------- real


def _looks_like_path(model: str) -> bool:
    # Hub ids are `name` or `org/name`; anything with more parts or a path prefix was meant as a folder.
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def _offline() -> bool:
    # Read the environment on every call: huggingface_hub freezes HF_HUB_OFFLINE at import time.
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_cache_dir() -> str:
    """The HF hub cache as the environment says now (huggingface_hub freezes it at import time)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _check_model_folder(path: Path, model: str, kind: ModelKind) -> None:
    """Raise ModelUnavailableError unless `path` holds a config, weights and a processor for `kind` (an
    image processor; for "asr" a Whisper feature extractor and a Whisper config)."""
    config_file = path / _CONFIG_FILE
    if not config_file.is_file():
        raise ModelUnavailableError(
            f"{kind} model {model!r} is not a model folder (no {_CONFIG_FILE}); {_HOW_TO_PROVIDE}"
        )
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise ModelUnavailableError(
            f"{kind} model {model!r} has no weights (expected one of {', '.join(_WEIGHT_FILES)}); {_HOW_TO_PROVIDE}"
        )
    if not any((path / name).is_file() for name in _PROCESSOR_FILES):
        raise ModelUnavailableError(
            f"{kind} model {model!r} has no {'feature extractor' if kind == 'asr' else 'image processor'} "
            f"({' or '.join(_PROCESSOR_FILES)}): save the processor with save_pretrained() into the same folder"
        )
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"{kind} model {model!r} has an unreadable {_CONFIG_FILE}: {exc}") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not model_type:
        raise ModelUnavailableError(f"{kind} model {model!r}: {_CONFIG_FILE} names no model_type")
    if kind == "detector":
        from transformers.models.auto.modeling_auto import MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES

        if model_type not in MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES:
            raise ModelUnavailableError(
                f"detector model {model!r} is a {model_type!r} model, not an object detector "
                f"(supported: {', '.join(sorted(MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES))})"
            )
    if kind == "asr" and model_type != "whisper":
        raise ModelUnavailableError(
            f"asr model {model!r} is a {model_type!r} model, not a Whisper model (expected model_type 'whisper')"
        )


def _resolve_hub_model(model: str, kind: ModelKind) -> str:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    # 1. The local cache, never the network: the common case in a pod with a pre-populated HF_HOME.
    try:
        folder = Path(snapshot_download(model, local_files_only=True, cache_dir=_hub_cache_dir()))
    except HFValidationError as exc:
        raise ModelUnavailableError(f"{kind} model {model!r} is neither a folder nor a valid hub id") from exc
    except (LocalEntryNotFoundError, OSError, ValueError):
        folder = None
    if folder is not None:
        try:
            _check_model_folder(folder, model, kind)
            return str(folder)
        except ModelUnavailableError as exc:
            if _offline():
                raise
            # An incomplete cache entry (e.g. only config.json fetched earlier): try a real download.
            logger.info("cached snapshot of %s is incomplete (%s); downloading", model, exc)

    if _offline():
        raise ModelUnavailableError(
            f"{kind} model {model!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {_HOW_TO_PROVIDE}"
        )

    # 2. One short metadata call: it tells "unknown id" from "no network" without download retries.
    try:
        info = HfApi().model_info(model, timeout=HUB_METADATA_TIMEOUT_S)
    except GatedRepoError as exc:
        raise ModelUnavailableError(
            f"{kind} model {model!r} is gated on the hub: accept its terms and set HF_TOKEN, or {_HOW_TO_PROVIDE}"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelUnavailableError(f"{kind} model {model!r} does not exist on the hub; {_HOW_TO_PROVIDE}") from exc
    except Exception as exc:
        raise ModelUnavailableError(
            f"{kind} model {model!r} cannot be fetched, the hub is unreachable "
            f"({type(exc).__name__}); {_HOW_TO_PROVIDE}"
        ) from exc

    files = [sibling.rfilename for sibling in (info.siblings or [])]
    # One weight format only: repos often carry safetensors, PyTorch, TF and Flax copies of the weights.
    if any(name.endswith(".safetensors") for name in files):
        patterns = [*_HUB_COMMON_PATTERNS, "*.safetensors"]
    else:
        patterns = [*_HUB_COMMON_PATTERNS, "pytorch_model*.bin"]
    try:
        folder = Path(
            snapshot_download(
                model, allow_patterns=patterns, etag_timeout=HUB_METADATA_TIMEOUT_S, cache_dir=_hub_cache_dir()
            )
        )
    except Exception as exc:
        raise ModelUnavailableError(
            f"{kind} model {model!r} could not be downloaded ({type(exc).__name__}: {one_line(exc, 200)}); "
            f"{_HOW_TO_PROVIDE}"
        ) from exc
    _check_model_folder(folder, model, kind)
    return str(folder)


# --------------------------------------------------------------------------------------------- tiny


def tiny_detector_spec() -> dict[str, Any]:
    """The tiny DETR recipe: the config kwargs and the image processor kwargs (JSON-able, hashed)."""
    id2label = dict(enumerate(TINY_DETECTOR_LABELS))
    return {
        "model": {
            "backbone_config": {
                # A transformers ResNet (not timm): no timm weights, no network, a few thousand parameters.
                "model_type": "resnet",
                "num_channels": 3,
                "embedding_size": 8,
                "hidden_sizes": [8, 16, 16, 32],
                "depths": [1, 1, 1, 1],
                "layer_type": "basic",
                "out_features": ["stage4"],
            },
            "num_queries": 8,
            "d_model": 32,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            # DETR's default init (std 0.02) makes every query of an untrained model identical (same box,
            # same score). A wide init gives varied scores and boxes, some reaching past the frame edges
            # or collapsing to zero area: exactly the cases thresholding and clipping must handle.
            "init_std": 0.5,
            "id2label": {str(k): v for k, v in id2label.items()},
            "label2id": {v: k for k, v in id2label.items()},
        },
        "processor": {"size": {"shortest_edge": 64, "longest_edge": 96}},
    }


def tiny_embedder_spec() -> dict[str, Any]:
    """The tiny CLIP recipe: vision/text tower configs and the image processor kwargs (hashed)."""
    vocab, merges = _tiny_bpe_vocab()
    return {
        "model": {
            "projection_dim": 32,
            "vision_config": {
                "image_size": 32,
                "patch_size": 8,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
            },
            "text_config": {
                "vocab_size": len(vocab),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "max_position_embeddings": 32,
                "bos_token_id": vocab["<|startoftext|>"],
                "eos_token_id": vocab["<|endoftext|>"],
                "pad_token_id": vocab["<|endoftext|>"],
            },
        },
        "processor": {
            "size": {"shortest_edge": 32},
            "crop_size": {"height": 32, "width": 32},
        },
        "tokenizer": {"vocab_size": len(vocab), "merges": [" ".join(m) for m in merges]},
    }


def tiny_asr_spec() -> dict[str, Any]:
    """The tiny Whisper recipe: model config kwargs, feature extractor kwargs and the token layout (hashed).

    The encoder keeps Whisper's real input geometry (80 mel bins, 3000 frames = 30 s, 1500 positions)
    so feature extraction, windowing and timestamps are the real ones; everything else is tiny.
    """
    vocab, merges, special = _tiny_whisper_vocab()
    return {
        "model": {
            "vocab_size": len(vocab),
            "num_mel_bins": 80,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "d_model": 32,
            "max_source_positions": 1500,
            # Short: a random model never predicts <|endoftext|> on purpose, so every window decodes to
            # this many tokens; 48 keeps a tiny job at a fraction of a second per window.
            "max_target_positions": 48,
            "bos_token_id": special["<|endoftext|>"],
            "eos_token_id": special["<|endoftext|>"],
            "pad_token_id": special["<|endoftext|>"],
            "decoder_start_token_id": special["<|startoftranscript|>"],
        },
        "feature_extractor": {"feature_size": 80, "sampling_rate": 16_000, "chunk_length": 30, "hop_length": 160},
        "tokenizer": {"vocab_size": len(vocab), "merges": [" ".join(m) for m in merges], "special": special},
    }


def tiny_model_dir(kind: ModelKind, cache_dir: Path) -> Path:
    """The folder the tiny model of `kind` lives in: `cache_dir/tiny-<kind>-<hash of recipe>`."""
    return Path(cache_dir) / f"tiny-{kind}-{_tiny_hash(kind)}"


def ensure_tiny_model(kind: ModelKind, cache_dir: Path) -> Path:
    """Build the tiny model of `kind` once and return its folder.

    Safe under concurrency: threads of one process build one at a time (model init draws from torch's
    global RNG, which concurrent builds would interleave), and processes race benignly: each builds in
    its own staging folder and the first atomic rename wins.
    """
    target = tiny_model_dir(kind, cache_dir)
    if (target / _CONFIG_FILE).is_file():
        return target
    with _BUILD_LOCK:
        if (target / _CONFIG_FILE).is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build next to the target (same filesystem) so the final rename is atomic: readers see either
        # no folder or a complete one, never a half-written model.
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            if kind == "detector":
                _build_tiny_detector(staging)
            elif kind == "asr":
                _build_tiny_asr(staging)
            else:
                _build_tiny_embedder(staging)
            try:
                os.rename(staging, target)
                logger.info("built tiny %s model in %s", kind, target)
            except OSError:
                # Another process won the race (the target exists and is not empty): use its copy,
                # identical to ours since the build is deterministic.
                if not (target / _CONFIG_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _tiny_hash(kind: ModelKind) -> str:
    import transformers

    specs = {"detector": tiny_detector_spec, "embedder": tiny_embedder_spec, "asr": tiny_asr_spec}
    spec = specs[kind]()
    # The transformers major.minor is part of the key: a saved tiny model is rebuilt, not reinterpreted,
    # after an upgrade that changes how configs or weights are laid out.
    version = ".".join(transformers.__version__.split(".")[:2])
    blob = json.dumps(
        {"recipe": _TINY_RECIPE_VERSION, "seed": _TINY_SEED, "transformers": version, "spec": spec},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _seeded() -> None:
    import torch

    torch.manual_seed(_TINY_SEED)


def _build_tiny_detector(folder: Path) -> None:
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    spec = tiny_detector_spec()
    model_kwargs = dict(spec["model"])
    backbone_kwargs = dict(model_kwargs.pop("backbone_config"))
    backbone_kwargs.pop("model_type")
    config = DetrConfig(
        backbone_config=ResNetConfig(**backbone_kwargs),
        **{**model_kwargs, "id2label": {int(k): v for k, v in model_kwargs["id2label"].items()}},
    )
    _seeded()
    model = DetrForObjectDetection(config).eval()
    model.save_pretrained(folder)
    DetrImageProcessor(**spec["processor"]).save_pretrained(folder)


def _build_tiny_embedder(folder: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    spec = tiny_embedder_spec()
    config = CLIPConfig(**spec["model"])
    _seeded()
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    CLIPImageProcessor(**spec["processor"]).save_pretrained(folder)

    # The tokenizer comes from a self-made byte-level BPE vocabulary written to files the way a real CLIP
    # repo ships them (vocab.json + merges.txt, kept in the folder); save_pretrained adds tokenizer.json.
    vocab, merges = _tiny_bpe_vocab()
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tokenizer = CLIPTokenizer(
        vocab=json.loads(vocab_file.read_text(encoding="utf-8")),
        # transformers 5 takes the merges as pairs (its annotation still says strings).
        merges=cast(
            Any, [tuple(line.split(" ")) for line in merges_file.read_text(encoding="utf-8").splitlines()[1:] if line]
        ),
        model_max_length=spec["model"]["text_config"]["max_position_embeddings"],
    )
    tokenizer.save_pretrained(folder)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


# A few words the tiny tokenizer merges into single tokens (the rest falls back to bytes): enough for
# text-search tests to exercise merges without shipping a real vocabulary.
_TINY_WORDS = ("person", "car", "dog", "cat", "red", "the", "a")


def _tiny_bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style byte-level vocab (every byte, with and without `</w>`) plus merges for `_TINY_WORDS`."""
    symbols = list(_bytes_to_unicode().values())
    vocab_tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[tuple[str, str]] = []
    # The last symbol of a word carries the end-of-word suffix.
    _add_merges((list(word[:-1]) + [word[-1] + "</w>"] for word in _TINY_WORDS), vocab_tokens, merges)
    vocab_tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab_tokens)}, merges


def _add_merges(words: Iterable[list[str]], tokens: list[str], merges: list[tuple[str, str]]) -> None:
    """Merge each word's symbols left to right ((p e) r) ..., appending every new merge to `merges` and
    every new merged symbol to `tokens`."""
    for parts in words:
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = pair[0] + pair[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in tokens:
                tokens.append(merged)
            parts = [merged, *parts[2:]]


# Whisper's task and control tokens, in the order real checkpoints put them after the language tokens.
_WHISPER_CONTROL = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>")
_WHISPER_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> at 0.02 s


def _tiny_whisper_vocab() -> tuple[dict[str, int], list[tuple[str, str]], dict[str, int]]:
    """A GPT-2-style byte-level vocab (no end-of-word suffix, as Whisper's) with merges for `_TINY_WORDS`
    (with and without the leading space), then Whisper's special tokens laid out as in real checkpoints:
    <|endoftext|>, <|startoftranscript|>, one token per language (in the tokenizer's LANGUAGES order: the
    tokenizer finds a language's token at startoftranscript + 1 + its index), the task and control tokens,
    <|notimestamps|> and the timestamp tokens right after it. Returns (vocab, merges, special token ids)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    tokens = list(_bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    space = _bytes_to_unicode()[ord(" ")]
    # Space-prefixed words first: their merges rank higher, so " red" becomes one token, as in GPT-2.
    _add_merges((list(word) for word in (*(space + w for w in _TINY_WORDS), *_TINY_WORDS)), tokens, merges)
    special_tokens = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        *_WHISPER_CONTROL,
        "<|notimestamps|>",
    ]
    tokens += special_tokens
    tokens += [f"<|{i * 0.02:.2f}|>" for i in range(_WHISPER_TIMESTAMPS)]
    vocab = {token: index for index, token in enumerate(tokens)}
    return vocab, merges, {token: vocab[token] for token in special_tokens}


def _build_tiny_asr(folder: Path) -> None:
    from transformers import WhisperConfig
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    spec = tiny_asr_spec()
    vocab, merges, special = _tiny_whisper_vocab()
    # Suppression lives in the generation config only (transformers warns when the model config has it too).
    config = WhisperConfig(**spec["model"], suppress_tokens=None, begin_suppress_tokens=None)
    _seeded()
    lang_to_id = {f"<|{code}|>": special[f"<|{code}|>"] for code in LANGUAGES}
    save_whisper(folder, config, vocab, merges, special, lang_to_id, spec["feature_extractor"])


def save_whisper(
    folder: Path,
    config: Any,
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    special: dict[str, int],
    lang_to_id: dict[str, int],
    feature_extractor: dict[str, Any],
) -> None:
    """A randomly initialised Whisper of `config` with the byte-level tokenizer `vocab`/`merges`, its
    control tokens `special` and 1,501 timestamp tokens, and the generation config `generate` needs to
    detect languages, pick the task and predict timestamps (as real checkpoints' generation_config.json),
    saved into `folder` so that `from_pretrained` loads model, tokenizer and processor."""
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    eot = special["<|endoftext|>"]
    max_length = config.max_target_positions
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=special["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_length,
        begin_suppress_tokens=[vocab[_bytes_to_unicode()[ord(" ")]], eot],
        suppress_tokens=[],
        is_multilingual=True,
        lang_to_id=lang_to_id,
        task_to_id={"translate": special["<|translate|>"], "transcribe": special["<|transcribe|>"]},
        no_timestamps_token_id=special["<|notimestamps|>"],
        prev_sot_token_id=special["<|startofprev|>"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
    )
    model.save_pretrained(folder)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=cast(Any, merges), model_max_length=max_length)
    # Control tokens are special (never split, skipped on decode); timestamp tokens are plain added
    # tokens, as in real checkpoints (decode filters their text out).
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in special], special_tokens=True)
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(_WHISPER_TIMESTAMPS)]
    )
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(**feature_extractor), tokenizer=tokenizer
    ).save_pretrained(folder)
