"""Detector and embedder on tiny models: output invariants, batching, determinism, input checks."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from vidsearch.errors import InputError, ModelUnavailableError
from vidsearch.models import modelstore
from vidsearch.models.detect import Detection, Detector
from vidsearch.models.embed import Embedder, crop_box
from vidsearch.records import Box


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def detector(model_cache: Path) -> Detector:
    return Detector(modelstore.resolve_model("x", "detector", tiny=True, cache_dir=model_cache), device="cpu")


@pytest.fixture(scope="module")
def embedder(model_cache: Path) -> Embedder:
    return Embedder(modelstore.resolve_model("x", "embedder", tiny=True, cache_dir=model_cache), device="cpu")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Five small frames: noise with a bright rectangle moving across."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(5):
        frame = rng.integers(0, 120, size=(48, 64, 3), dtype=np.uint8)
        frame[10:30, 5 + 8 * i : 25 + 8 * i] = (250, 40, 40)
        out.append(frame)
    return out


def _flat(results: list[list[Detection]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    boxes = np.array([[d.box.x0, d.box.y0, d.box.x1, d.box.y1] for r in results for d in r]).reshape(-1, 4)
    scores = np.array([d.score for r in results for d in r])
    return boxes, scores, [d.label_id for r in results for d in r]


def test_detections_are_valid(detector: Detector, frames: list[np.ndarray]) -> None:
    threshold = 0.3
    results = detector.detect(frames, score_threshold=threshold, batch_size=2)
    assert len(results) == len(frames)
    assert sum(map(len, results)) > 0, "the tiny detector should find something at this threshold"
    labels = detector.labels
    assert set(labels.values()) == set(modelstore.TINY_DETECTOR_LABELS)
    for frame, detections in zip(frames, results):
        height, width = frame.shape[:2]
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        for d in detections:
            assert 0 <= d.box.x0 <= d.box.x1 <= width and 0 <= d.box.y0 <= d.box.y1 <= height
            assert d.box.area >= 1.0
            assert threshold <= d.score <= 1.0
            assert labels[d.label_id] == d.label


def test_threshold_only_filters(detector: Detector, frames: list[np.ndarray]) -> None:
    everything = detector.detect(frames, score_threshold=0.0, batch_size=5)
    confident = detector.detect(frames, score_threshold=0.6, batch_size=5)
    for all_d, conf_d in zip(everything, confident):
        assert conf_d == [d for d in all_d if d.score >= 0.6]
    assert detector.detect(frames, score_threshold=1.0, batch_size=5) == [[] for _ in frames]


def test_batching_does_not_change_detections(detector: Detector, frames: list[np.ndarray]) -> None:
    one = detector.detect(frames, score_threshold=0.0, batch_size=1)
    for batch_size in (2, 5, 16):
        other = detector.detect(frames, score_threshold=0.0, batch_size=batch_size)
        assert [len(r) for r in other] == [len(r) for r in one]
        boxes_a, scores_a, labels_a = _flat(one)
        boxes_b, scores_b, labels_b = _flat(other)
        np.testing.assert_allclose(boxes_b, boxes_a, atol=0.02)
        np.testing.assert_allclose(scores_b, scores_a, atol=1e-4)
        assert labels_b == labels_a


def test_detection_is_deterministic_across_loads(detector: Detector, frames: list[np.ndarray]) -> None:
    again = Detector(detector.model_path, device="cpu")
    assert again.detect(frames, 0.2, 3) == detector.detect(frames, 0.2, 3)


def test_frames_of_different_sizes_in_one_batch(detector: Detector) -> None:
    rng = np.random.default_rng(1)
    mixed = [rng.integers(0, 255, size=shape, dtype=np.uint8) for shape in [(40, 30, 3), (24, 80, 3), (2, 2, 3)]]
    seen = []
    results = detector.detect(mixed, 0.0, batch_size=3, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 3)]
    for frame, detections in zip(mixed, results):
        for d in detections:
            assert d.box.x1 <= frame.shape[1] and d.box.y1 <= frame.shape[0] and d.box.area >= 1.0


@pytest.mark.parametrize("threshold", [-0.01, 1.01, math.nan, "0.5"])
def test_bad_threshold_is_input_error(detector: Detector, frames: list[np.ndarray], threshold: object) -> None:
    with pytest.raises(InputError):
        detector.detect(frames, threshold, 2)  # type: ignore[arg-type]


def test_bad_frames_and_batch_size_are_input_errors(detector: Detector, frames: list[np.ndarray]) -> None:
    with pytest.raises(InputError):
        detector.detect(frames, 0.5, 0)
    with pytest.raises(InputError):
        detector.detect([np.zeros((8, 8, 3), dtype=np.float32)], 0.5, 1)
    with pytest.raises(InputError):
        detector.detect([np.zeros((8, 8), dtype=np.uint8)], 0.5, 1)
    assert detector.detect([], 0.5, 4) == []


def test_loading_the_wrong_kind_of_model_is_model_unavailable(detector: Detector, embedder: Embedder) -> None:
    with pytest.raises(ModelUnavailableError):
        Detector(embedder.model_path, device="cpu")
    with pytest.raises(ModelUnavailableError, match="not an image-text embedding model"):
        Embedder(detector.model_path, device="cpu")


def test_crop_box_rounds_clips_and_keeps_one_pixel() -> None:
    frame = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    assert crop_box(frame, Box(x0=2.4, y0=1.6, x1=7.5, y1=5.2)).shape == (3, 6, 3)  # x 2..8, y 2..5
    assert crop_box(frame, Box(x0=5, y0=5, x1=5, y1=5)).shape == (1, 1, 3)
    assert crop_box(frame, Box(x0=-9, y0=-9, x1=99, y1=99)).shape == (10, 20, 3)
    assert crop_box(frame, Box(x0=25, y0=12, x1=30, y1=15)).shape == (1, 1, 3)


def test_crop_embeddings_are_unit_norm_ordered_and_batch_invariant(
    detector: Detector, embedder: Embedder, frames: list[np.ndarray]
) -> None:
    boxes = [[d.box for d in r] for r in detector.detect(frames, 0.2, 5)]
    total = sum(map(len, boxes))
    assert total > 1
    emb = embedder.embed_crops(frames, boxes, batch_size=4)
    assert emb.shape == (total, embedder.dim) and emb.dtype == np.float32
    assert embedder.dim == 32
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_crops(frames, boxes, batch_size=1), emb, atol=1e-5)
    # Row order is the flattened box order: the last row is the last box of the last frame with boxes.
    last_frame = max(i for i, b in enumerate(boxes) if b)
    single = embedder.embed_crops([frames[last_frame]], [[boxes[last_frame][-1]]], batch_size=1)
    np.testing.assert_allclose(single[0], emb[-1], atol=1e-5)
    # Deterministic across loads.
    np.testing.assert_allclose(
        Embedder(embedder.model_path, device="cpu").embed_crops(frames, boxes, 8), emb, atol=1e-6
    )


def test_degenerate_and_empty_crops(embedder: Embedder, frames: list[np.ndarray]) -> None:
    boxes = [[Box(x0=3, y0=3, x1=3, y1=3), Box(x0=60, y0=40, x1=90, y1=90)], [], [], [], []]
    emb = embedder.embed_crops(frames, boxes, batch_size=8)
    assert emb.shape == (2, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_crops(frames, [[] for _ in frames], 8).shape == (0, embedder.dim)
    with pytest.raises(InputError):
        embedder.embed_crops(frames, [[]], 8)


def test_text_embeddings_share_the_space(embedder: Embedder) -> None:
    assert embedder.supports_text
    texts = embedder.embed_texts(["a red car", "a person walking a dog", "cat"])
    assert texts.shape == (3, embedder.dim) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_texts(["cat"], batch_size=1)[0], texts[2], atol=1e-5)
    with pytest.raises(InputError):
        embedder.embed_texts([" "])
