"""Object detection over decoded frames with any transformers object-detection model (DETR family).

The detector takes a folder from `modelstore.resolve_model` (real or tiny, loaded the same way), runs
frames through its image processor in batches and turns the processor's post-processed output into
pixel boxes clipped to each frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vidsearch.errors import InputError, ModelUnavailableError
from vidsearch.models.modelstore import loading, select_device, select_dtype
from vidsearch.models.preprocess import to_device
from vidsearch.records import Box

# Boxes smaller than this after clipping (in px²) carry no usable crop: they are dropped.
MIN_BOX_AREA_PX2 = 1.0

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Detection:
    """One detected object in one frame: a pixel box inside the frame, its label and score in [0, 1]."""

    box: Box
    label: str
    label_id: int
    score: float


def check_frames(frames: Sequence[np.ndarray], *, first_index: int = 0) -> None:
    """Raise InputError unless every frame is an RGB uint8 array of shape (H, W, 3) with H, W >= 1.

    Errors name frames counting from `first_index` (a batch's place in a longer stream).
    """
    for i, frame in enumerate(frames, start=first_index):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise InputError(f"frame {i} is not a uint8 numpy array")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
            raise InputError(f"frame {i} has shape {frame.shape}, expected (H, W, 3)")


def check_batch_size(batch_size: int) -> None:
    """Raise InputError unless `batch_size` is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {batch_size!r}")


def move_inputs(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    """Processor output on `device`; floating tensors (pixels) in the model's dtype, masks and ids unchanged."""
    moved = {}
    for key, value in inputs.items():
        if torch.is_tensor(value):
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved


class Detector:
    """An object detector loaded from a model folder, ready for batched inference on one device."""

    def __init__(
        self, model_path: str, *, device: str = "auto", dtype: str = "float32", channels_last: bool | None = None
    ) -> None:
        """Load the model and its image processor from `model_path` onto `device` in `dtype`.

        `channels_last` stores the convolutional backbone's tensors as NHWC, the layout GPU tensor cores
        run convolutions in (None: on for CUDA, off elsewhere; results are the same either way).
        Raises ModelUnavailableError when the folder does not hold a loadable object-detection model,
        InputError for an unusable device or dtype.
        """
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        self.model_path = model_path
        self.device = select_device(device)
        self.dtype = select_dtype(dtype, self.device)
        # Loaded on the CPU first: a loading failure here is a model problem (permanent), while a
        # failure moving to the GPU below (out of memory) is not and must not be reported as one.
        with loading("an object-detection model", model_path):
            model = AutoModelForObjectDetection.from_pretrained(model_path, dtype=torch.float32)
            self.processor = AutoImageProcessor.from_pretrained(model_path)
        if not hasattr(self.processor, "post_process_object_detection"):
            raise ModelUnavailableError(
                f"the image processor in {model_path!r} ({type(self.processor).__name__}) has no "
                "post_process_object_detection"
            )
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.channels_last = self.device.type == "cuda" if channels_last is None else bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # A torchvision-backed processor (transformers 5's default) resizes and normalises on the
        # model's device: frames go there once, as uint8. A PIL-backed one works on the host.
        self.preprocess_on_device = getattr(self.processor, "backend", None) == "torchvision"
        self._labels = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}

    @property
    def labels(self) -> dict[int, str]:
        """The model's label set: label id -> label name (a copy)."""
        return dict(self._labels)

    def detect(
        self,
        frames: Sequence[np.ndarray],
        score_threshold: float,
        batch_size: int,
        progress: ProgressCallback | None = None,
    ) -> list[list[Detection]]:
        """Detections for each frame, in frame order; within a frame, highest score first.

        Every detection has a box inside its frame (pixel coordinates rounded to 1/100 px, area
        >= 1 px²), a label from `labels` and a score in [score_threshold, 1]. Results do not depend on
        `batch_size` beyond float rounding. `progress(done, total)` is called after each batch.
        Raises InputError for a threshold outside [0, 1], a bad batch size or malformed frames.
        """
        if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)):
            raise InputError(f"score threshold must be a number, got {score_threshold!r}")
        if not 0.0 <= float(score_threshold) <= 1.0:  # also rejects NaN
            raise InputError(f"score threshold must be in [0, 1], got {score_threshold}")
        check_batch_size(batch_size)
        check_frames(frames)
        results: list[list[Detection]] = []
        total = len(frames)
        for start in range(0, total, batch_size):
            batch = list(frames[start : start + batch_size])
            results.extend(self._detect_batch(batch, float(score_threshold)))
            if progress is not None:
                progress(min(start + batch_size, total), total)
        return results

    @torch.inference_mode()
    def _detect_batch(self, frames: list[np.ndarray], threshold: float) -> list[list[Detection]]:
        if self.preprocess_on_device:
            images = to_device(frames, self.device)
            inputs = self.processor(
                images=images, return_tensors="pt", device=self.device, input_data_format="channels_first"
            )
        else:
            inputs = self.processor(images=frames, return_tensors="pt", input_data_format="channels_last")
        inputs = move_inputs(dict(inputs), self.device, self.dtype)
        if self.channels_last:
            inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=torch.channels_last)
        outputs = self.model(**inputs)
        # Post-process in float32 whatever the compute dtype: softmax and box scaling in half precision
        # lose whole pixels on large frames.
        for key, value in list(outputs.items()):
            if torch.is_tensor(value) and value.is_floating_point():
                outputs[key] = value.float()
        sizes = torch.tensor([frame.shape[:2] for frame in frames], device=self.device)
        processed = self.processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        return [
            self._to_detections(result, frame.shape[0], frame.shape[1], threshold)
            for result, frame in zip(processed, frames)
        ]

    def _to_detections(self, result: dict, height: int, width: int, threshold: float) -> list[Detection]:
        scores = result["scores"].detach().float().cpu().numpy()
        label_ids = result["labels"].detach().cpu().numpy().astype(np.int64)
        boxes = result["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
        detections: list[Detection] = []
        for score, label_id, (x0, y0, x1, y1) in zip(scores, label_ids, boxes):
            if not np.isfinite([score, x0, y0, x1, y1]).all():
                continue
            # Clip to the frame (models happily predict boxes reaching past the edges) and order corners.
            x0, x1 = sorted((min(max(float(x0), 0.0), width), min(max(float(x1), 0.0), width)))
            y0, y1 = sorted((min(max(float(y0), 0.0), height), min(max(float(y1), 0.0), height)))
            box = Box(x0=round(x0, 2), y0=round(y0, 2), x1=round(x1, 2), y1=round(y1, 2))
            if box.area < MIN_BOX_AREA_PX2:
                continue
            # Post-processing keeps score > threshold already; the clamp guards against float drift.
            score = min(max(float(score), 0.0), 1.0)
            if score < threshold:
                continue
            label_id = int(label_id)
            detections.append(
                Detection(box=box, label=self._labels.get(label_id, str(label_id)), label_id=label_id, score=score)
            )
        detections.sort(key=lambda d: -d.score)
        return detections
