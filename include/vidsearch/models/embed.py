"""Image-text embeddings of object crops (and of search texts) with a CLIP-family model.

Crops and texts land in the same L2-normalised space, so a text query is a cosine (dot product)
search over crop embeddings. The model folder comes from `modelstore.resolve_model`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from vidsearch.errors import InputError, ModelUnavailableError, QualityGateError
from vidsearch.models.detect import ProgressCallback, check_batch_size, check_frames, move_inputs
from vidsearch.models.modelstore import loading, select_device, select_dtype
from vidsearch.models.preprocess import CropSpec, boxes_tensor, crop_pixels, to_device
from vidsearch.records import Box

logger = logging.getLogger(__name__)

# Families whose text tower was trained on fixed-length padded input.
_PAD_TO_MAX_LENGTH = ("siglip", "siglip2")


def _pooled(output: Any, *fields: str) -> torch.Tensor:
    """The feature tensor of a `get_*_features`/forward result: a tensor (transformers 4.x) or a model
    output whose `pooler_output` holds the projected features (transformers 5.x)."""
    if torch.is_tensor(output):
        return output
    for name in ("pooler_output", *fields):
        value = getattr(output, name, None)
        if torch.is_tensor(value):
            return value
    raise ModelUnavailableError(f"the embedding model returned {type(output).__name__} without features")


def crop_box(frame: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of `box` in `frame`: corners rounded to integers, clipped, at least 1x1 px."""
    height, width = frame.shape[:2]
    x0 = min(max(int(round(box.x0)), 0), width - 1)
    y0 = min(max(int(round(box.y0)), 0), height - 1)
    x1 = min(max(int(round(box.x1)), x0 + 1), width)
    y1 = min(max(int(round(box.y1)), y0 + 1), height)
    return frame[y0:y1, x0:x1]


def l2_normalise(features: torch.Tensor) -> np.ndarray:
    """float32 rows of unit L2 norm. Raises QualityGateError on non-finite or all-zero rows (they would
    poison similarity search; half-precision overflow is the usual cause)."""
    values = features.detach().float()
    norms = values.norm(dim=-1, keepdim=True)
    if not torch.isfinite(values).all() or bool((norms <= 1e-12).any()):
        raise QualityGateError("the embedding model produced non-finite or zero vectors (try --dtype float32)")
    return (values / norms).cpu().numpy().astype(np.float32, copy=False)


class Embedder:
    """A CLIP-family image-text model: crop embeddings now, text embeddings for search later."""

    def __init__(self, model_path: str, *, device: str = "auto", dtype: str = "float32") -> None:
        """Load the model, its image processor and (when the folder has one) its tokenizer.

        Accepts a two-tower model with `get_image_features` (CLIPModel, SiglipModel, ...) or an image
        tower with a projection (CLIPVisionModelWithProjection; no text search then). Raises
        ModelUnavailableError when the folder holds neither, InputError for a bad device or dtype.
        """
        import transformers
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        self.model_path = model_path
        self.device = select_device(device)
        self.dtype = select_dtype(dtype, self.device)
        with loading("an image-text embedding model", model_path):
            config = AutoConfig.from_pretrained(model_path)
            architecture = (getattr(config, "architectures", None) or [""])[0]
            # Prefer the class the checkpoint was saved from: AutoModel maps an image-tower config to
            # the model without its projection head, which would give unaligned features.
            model_class = getattr(transformers, architecture, None) if architecture else None
            if model_class is None or not (
                hasattr(model_class, "get_image_features") or architecture.endswith("WithProjection")
            ):
                model_class = AutoModel
            model = model_class.from_pretrained(model_path, dtype=torch.float32)
            self.processor = AutoImageProcessor.from_pretrained(model_path)
        if not hasattr(model, "get_image_features") and not type(model).__name__.endswith("WithProjection"):
            raise ModelUnavailableError(
                f"{model_path!r} holds a {type(model).__name__}, not an image-text embedding model "
                "(expected a CLIP-family model)"
            )
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.model_type = str(getattr(config, "model_type", ""))
        # Crops are cut, resized and normalised on the device in batches (see `preprocess`) when the
        # processor's output has a fixed size; otherwise each crop goes through the processor.
        self.crop_spec = CropSpec.from_processor(self.processor)
        self.tokenizer: Any = None  # a transformers tokenizer when the model has a text tower
        if hasattr(model, "get_text_features"):
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Crops can still be embedded; only text search needs the tokenizer.
                logger.warning("no tokenizer in %s (%s): text embeddings unavailable", model_path, exc)
        text_config = getattr(config, "text_config", None)
        self._max_text_tokens = int(getattr(text_config, "max_position_embeddings", 0) or 77)
        # One forward pass on a blank image gives the embedding size for every family alike and proves
        # the model runs on this device before any real work is done.
        self._dim = int(self._image_features([np.zeros((8, 8, 3), dtype=np.uint8)]).shape[1])

    @property
    def dim(self) -> int:
        """Embedding size D (rows of `embed_crops` and `embed_texts` have D columns)."""
        return self._dim

    @property
    def supports_text(self) -> bool:
        """True when `embed_texts` works (the model has a text tower and a tokenizer)."""
        return self.tokenizer is not None

    def embed_crops(
        self,
        frames: Sequence[np.ndarray],
        boxes: Sequence[Sequence[Box]],
        batch_size: int,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """float32 (N, dim) embeddings of every box crop, rows in flattened order (frame 0's boxes first).

        Every row has unit L2 norm. `boxes[i]` are pixel boxes in `frames[i]`; crops use integer-rounded
        corners, at least 1 px each way. `progress(done, total)` counts crops. Raises InputError when
        `boxes` does not have one list per frame, a bad batch size or malformed frames.
        """
        check_batch_size(batch_size)
        check_frames(frames)
        if len(boxes) != len(frames):
            raise InputError(f"{len(boxes)} box lists for {len(frames)} frames")
        total = sum(len(frame_boxes) for frame_boxes in boxes)
        return self.embed_crop_stream(zip(frames, boxes), batch_size, progress, total=total)

    def embed_crop_stream(
        self,
        items: Iterable[tuple[np.ndarray, Sequence[Box]]],
        batch_size: int,
        progress: ProgressCallback | None = None,
        *,
        total: int | None = None,
    ) -> np.ndarray:
        """`embed_crops` over (frame, boxes) pairs that arrive one by one (e.g. decoded batch by batch
        from a bundle): the same rows, forward passes and values, while only the frames holding about
        one batch of crops are held at a time. `total` (the number of crops, when known) is what
        `progress(done, total)` reports as the total.
        """
        check_batch_size(batch_size)
        if self.crop_spec is not None:
            return self._embed_crops_on_device(items, batch_size, progress, total)
        parts: list[np.ndarray] = []
        crops: list[np.ndarray] = []
        done = 0
        for i, (frame, frame_boxes) in enumerate(items):
            check_frames([frame], first_index=i)
            for box in frame_boxes:
                # A copy: a view would keep the whole frame alive until its batch runs.
                crops.append(np.ascontiguousarray(crop_box(frame, box)))
                if len(crops) == batch_size:
                    parts.append(l2_normalise(self._image_features(crops)))
                    done += len(crops)
                    crops = []
                    if progress is not None:
                        progress(done, total if total is not None else done)
        if crops:
            parts.append(l2_normalise(self._image_features(crops)))
            done += len(crops)
            if progress is not None:
                progress(done, total if total is not None else done)
        if not parts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.concatenate(parts, axis=0)

    def embed_images(self, images: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        """float32 (N, dim) unit-norm embeddings of whole RGB uint8 images (query by example).

        An image is embedded exactly as a crop whose box is the whole image.
        """
        check_batch_size(batch_size)
        check_frames(images)
        whole = [[Box(x0=0.0, y0=0.0, x1=float(image.shape[1]), y1=float(image.shape[0]))] for image in images]
        return self.embed_crops(images, whole, batch_size)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 (N, dim) unit-norm embeddings of `texts`, comparable with crop embeddings by dot product.

        Raises ModelUnavailableError when the model has no text tower or tokenizer, InputError for
        empty texts.
        """
        if self.tokenizer is None:
            raise ModelUnavailableError(f"the embedding model in {self.model_path!r} cannot embed text")
        check_batch_size(batch_size)
        if any(not isinstance(text, str) or not text.strip() for text in texts):
            raise InputError("texts must be non-empty strings")
        return self._embed_batched(list(texts), batch_size, self._text_features, None)

    def _embed_batched(
        self,
        items: list[Any],
        batch_size: int,
        features: Callable[[list[Any]], torch.Tensor],
        progress: ProgressCallback | None,
    ) -> np.ndarray:
        if not items:
            return np.zeros((0, self._dim), dtype=np.float32)
        parts = []
        for start in range(0, len(items), batch_size):
            parts.append(l2_normalise(features(items[start : start + batch_size])))
            if progress is not None:
                progress(min(start + batch_size, len(items)), len(items))
        return np.concatenate(parts, axis=0)

    def _embed_crops_on_device(
        self,
        items: Iterable[tuple[np.ndarray, Sequence[Box]]],
        batch_size: int,
        progress: ProgressCallback | None,
        total: int | None,
    ) -> np.ndarray:
        """`embed_crop_stream` through `preprocess.crop_pixels`: the frames holding about one batch of
        crops go to the device together, their crops are cut there in one call, and forward passes
        always get `batch_size` crops (the last one what is left)."""
        assert self.crop_spec is not None
        spec = self.crop_spec
        parts: list[np.ndarray] = []
        pending: torch.Tensor | None = None
        done = 0

        def forward(pixels: torch.Tensor) -> None:
            nonlocal done
            parts.append(l2_normalise(self._pixel_features(pixels)))
            done += int(pixels.shape[0])
            if progress is not None:
                progress(done, total if total is not None else done)

        def cut(group: list[tuple[np.ndarray, Sequence[Box]]]) -> None:
            nonlocal pending
            with torch.inference_mode():
                images = to_device([frame for frame, _ in group], self.device)
                pixels = crop_pixels(images, [boxes_tensor(frame_boxes) for _, frame_boxes in group], spec)
            pending = pixels if pending is None else torch.cat([pending, pixels])
            while pending.shape[0] >= batch_size:
                forward(pending[:batch_size])
                pending = pending[batch_size:]

        # A group: consecutive frames with boxes until they hold at least one batch of crops.
        group: list[tuple[np.ndarray, Sequence[Box]]] = []
        count = 0
        for i, (frame, frame_boxes) in enumerate(items):
            check_frames([frame], first_index=i)
            if not frame_boxes:
                continue
            group.append((frame, frame_boxes))
            count += len(frame_boxes)
            if count >= batch_size:
                cut(group)
                group, count = [], 0
        if group:
            cut(group)
        if pending is not None and pending.shape[0]:
            forward(pending)
        if not parts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.concatenate(parts, axis=0)

    @torch.inference_mode()
    def _image_features(self, images: list[np.ndarray]) -> torch.Tensor:
        inputs = self.processor(images=images, return_tensors="pt", input_data_format="channels_last")
        return self._pixel_features(inputs["pixel_values"])

    @torch.inference_mode()
    def _pixel_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        if hasattr(self.model, "get_image_features"):
            return _pooled(self.model.get_image_features(pixel_values=pixel_values), "image_embeds")
        return _pooled(self.model(pixel_values=pixel_values).image_embeds)

    @torch.inference_mode()
    def _text_features(self, texts: list[str]) -> torch.Tensor:
        assert self.tokenizer is not None
        padding: str | bool = "max_length" if self.model_type in _PAD_TO_MAX_LENGTH else True
        inputs = self.tokenizer(
            texts, padding=padding, truncation=True, max_length=self._max_text_tokens, return_tensors="pt"
        )
        inputs = move_inputs(dict(inputs), self.device, self.dtype)
        kwargs = {"input_ids": inputs["input_ids"]}
        if "attention_mask" in inputs:
            kwargs["attention_mask"] = inputs["attention_mask"]
        return _pooled(self.model.get_text_features(**kwargs), "text_embeds")
