"""Device-side preprocessing: the batched crop path against the image processor it stands in for."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPImageProcessor, DetrImageProcessor, SiglipImageProcessor
from vidsearch.models import modelstore
from vidsearch.models.detect import Detector
from vidsearch.models.embed import Embedder, crop_box
from vidsearch.models.preprocess import CropSpec, boxes_tensor, crop_pixels, to_device
from vidsearch.records import Box

CPU = torch.device("cpu")


def smooth_frame(height: int = 360, width: int = 640) -> np.ndarray:
    """A frame with structure at several scales but no pixel-level noise (resamplers agree on it)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        127 + 100 * np.sin(xx / 19.0) * np.cos(yy / 13.0),
        127 + 100 * np.sin((xx + yy) / 29.0),
        40 + 170 * xx / width,
    ]
    return np.stack(channels, axis=-1).clip(0, 255).astype(np.uint8)


BOXES = [
    Box(x0=50, y0=25, x1=130, y1=125),  # tall, shrunk a little
    Box(x0=10.3, y0=20.7, x1=30.2, y1=30.9),  # small, enlarged
    Box(x0=250, y0=50, x1=600, y1=350),  # wide, shrunk a lot
    Box(x0=0, y0=0, x1=640, y1=360),  # the whole frame
]


def test_to_device_keeps_pixels_and_order() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (6, 9, 3), dtype=np.uint8) for _ in range(3)] + [
        rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    ]
    tensors = to_device(frames, CPU)
    assert [tuple(t.shape) for t in tensors] == [(3, 6, 9)] * 3 + [(3, 4, 5)]
    for frame, tensor in zip(frames, tensors):
        assert tensor.dtype == torch.uint8
        np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), frame)
    assert to_device([], CPU) == []


def test_crop_spec_follows_the_processor() -> None:
    clip = CropSpec.from_processor(CLIPImageProcessor())
    assert clip is not None and (clip.out_h, clip.out_w, clip.shortest_edge) == (224, 224, 224)
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    siglip = CropSpec.from_processor(SiglipImageProcessor(size={"height": 96, "width": 128}))
    assert siglip is not None and (siglip.out_h, siglip.out_w, siglip.shortest_edge) == (96, 128, None)
    assert siglip.mean == pytest.approx((0.5, 0.5, 0.5))
    # Output sizes that depend on the input cannot be batched: the caller keeps the processor.
    assert CropSpec.from_processor(CLIPImageProcessor(do_center_crop=False)) is None
    assert CropSpec.from_processor(CLIPImageProcessor(do_resize=False)) is None
    assert CropSpec.from_processor(DetrImageProcessor()) is None
    raw = CropSpec.from_processor(CLIPImageProcessor(do_rescale=False, do_normalize=False))
    assert raw is not None and (raw.rescale, raw.mean, raw.std) == (1.0, (0.0,) * 3, (1.0,) * 3)


def test_crop_windows_match_resize_then_centre_crop() -> None:
    spec = CropSpec(224, 224, 224, 1.0, (0.0,) * 3, (1.0,) * 3)
    windows = spec.windows(boxes_tensor([Box(x0=10, y0=20, x1=110, y1=320), Box(x0=5, y0=5, x1=5, y1=5)]))
    # A 100 x 300 box: the centred 100 x 100 square; an empty box becomes 1 px about its centre.
    torch.testing.assert_close(windows, torch.tensor([[10.0, 120.0, 110.0, 220.0], [4.5, 4.5, 5.5, 5.5]]))
    larger = CropSpec(224, 224, 256, 1.0, (0.0,) * 3, (1.0,) * 3)  # resize to 256, keep the central 224
    torch.testing.assert_close(
        larger.windows(boxes_tensor([Box(x0=0, y0=0, x1=256, y1=256)])), torch.tensor([[16.0, 16.0, 240.0, 240.0]])
    )


@pytest.mark.parametrize("processor", [CLIPImageProcessor(), SiglipImageProcessor()], ids=["clip", "siglip"])
def test_batched_crops_match_the_processor(processor) -> None:
    frame = smooth_frame()
    spec = CropSpec.from_processor(processor)
    assert spec is not None
    expected = processor(
        images=[crop_box(frame, box) for box in BOXES], return_tensors="pt", input_data_format="channels_last"
    )["pixel_values"]
    got = crop_pixels(to_device([frame], CPU), [boxes_tensor(BOXES)], spec)
    assert got.shape == expected.shape
    # Same region, different resampling filter (area/bilinear against bicubic): about one grey level
    # on average, a few at most; the pixel values span about 4 units after normalisation.
    difference = (got - expected).abs()
    assert float(difference.mean()) < 0.03
    assert float(difference.amax()) < 0.25


def test_crop_by_crop_equals_whole_frame_cropping() -> None:
    """The CPU path (each crop reads the pixels under its window) against whole-frame roi_align, on
    noise (every pixel matters) with windows inside, touching and crossing the frame's edges."""
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (120, 200, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [
        Box(x0=10.3, y0=20.7, x1=60.2, y1=40.9),
        Box(x0=0, y0=0, x1=200, y1=120),
        Box(x0=0.2, y0=100.5, x1=3.1, y1=120),  # tiny, in a corner: enlarged
        Box(x0=150, y0=10, x1=199.6, y1=118),
        Box(x0=70, y0=30, x1=70.4, y1=30.2),  # under 1 px
    ]
    for spec in (
        CropSpec(32, 32, 32, 1 / 255, (0.5,) * 3, (0.25,) * 3),  # centre crop
        CropSpec(24, 40, None, 1.0, (0.0,) * 3, (1.0,) * 3),  # fixed resize
        CropSpec(64, 64, 48, 1.0, (0.0,) * 3, (1.0,) * 3),  # crop larger than the resize: windows leave the frame
    ):
        tensors = [boxes_tensor(boxes), boxes_tensor(boxes[::-1])]
        whole = crop_pixels(to_device(frames, CPU), tensors, spec, per_crop=False)
        one_by_one = crop_pixels(to_device(frames, CPU), tensors, spec, per_crop=True)
        # Float rounding of the shifted coordinates only: under 1/100 of a grey level.
        torch.testing.assert_close(one_by_one, whole, atol=1e-2, rtol=0)


def test_crop_geometry_is_exact_on_flat_regions() -> None:
    frame = np.zeros((100, 200, 3), dtype=np.uint8)
    frame[:, :100] = (200, 10, 10)
    frame[:, 100:] = (10, 10, 200)
    spec = CropSpec(8, 8, None, 1.0, (0.0,) * 3, (1.0,) * 3)  # raw pixel values, whole box resized
    crops = crop_pixels(
        to_device([frame], CPU),
        [boxes_tensor([Box(x0=10, y0=10, x1=90, y1=90), Box(x0=60, y0=0, x1=140, y1=100)])],
        spec,
    )
    assert torch.allclose(crops[0], torch.tensor([200.0, 10.0, 10.0]).view(3, 1, 1).expand(3, 8, 8))
    # A box straddling the boundary: red on its left half, blue on its right half.
    assert torch.allclose(crops[1][:, :, :4], torch.tensor([200.0, 10.0, 10.0]).view(3, 1, 1).expand(3, 8, 4))
    assert torch.allclose(crops[1][:, :, 4:], torch.tensor([10.0, 10.0, 200.0]).view(3, 1, 1).expand(3, 8, 4))


def test_crops_keep_order_across_frames_shapes_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import vidsearch.models.preprocess as preprocess

    spec = CropSpec(4, 4, None, 1.0, (0.0,) * 3, (1.0,) * 3)
    sizes = [(20, 30), (20, 30), (10, 10), (20, 30)]
    frames = [np.full((h, w, 3), 10 * i + 5, dtype=np.uint8) for i, (h, w) in enumerate(sizes)]
    boxes = [
        boxes_tensor([Box(x0=1, y0=1, x1=5, y1=5)] * 2),
        boxes_tensor([]),
        boxes_tensor([Box(x0=0, y0=0, x1=10, y1=10)]),
        boxes_tensor([Box(x0=2, y0=2, x1=8, y1=8)] * 3),
    ]
    expected = [5.0, 5.0, 25.0, 35.0, 35.0, 35.0]
    for budget in (10**9, 600, 1):  # one chunk per shape run, two frames a chunk, one frame a chunk
        monkeypatch.setattr(preprocess, "CROP_CHUNK_PIXELS", budget)
        crops = crop_pixels(to_device(frames, CPU), boxes, spec)
        assert crops.shape == (6, 3, 4, 4)
        assert crops.mean(dim=(1, 2, 3)).tolist() == pytest.approx(expected)
        # The CPU's crop-by-crop path gives the same values.
        assert crop_pixels(to_device(frames, CPU), boxes, spec, per_crop=True).mean(dim=(1, 2, 3)).tolist() == (
            pytest.approx(expected)
        )
    assert crop_pixels([], [], spec).shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match="box tensors"):
        crop_pixels(to_device(frames, CPU), boxes[:2], spec)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(modelstore.CACHE_ENV)
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


def test_device_crops_embed_like_processor_crops(model_cache: Path) -> None:
    embedder = Embedder(modelstore.resolve_model("x", "embedder", tiny=True, cache_dir=model_cache), device="cpu")
    assert embedder.crop_spec is not None, "the tiny CLIP processor has a fixed output size"
    frame = smooth_frame()
    batched = embedder.embed_crops([frame], [BOXES], batch_size=3)
    one_by_one = np.concatenate([embedder._image_features([crop_box(frame, b)]).numpy() for b in BOXES])
    one_by_one /= np.linalg.norm(one_by_one, axis=1, keepdims=True)
    same_crop = np.sum(batched * one_by_one, axis=1)
    other_crops = (batched @ one_by_one.T)[~np.eye(len(BOXES), dtype=bool)]
    assert same_crop.min() > 0.98
    # Far closer to its own processor embedding than any crop is to another crop's.
    assert same_crop.min() > other_crops.max()
    # A whole image is embedded as the crop of a whole-image box.
    whole = embedder.embed_images([frame], batch_size=4)
    np.testing.assert_allclose(whole[0], batched[3], atol=1e-5)


def assert_same_detections(first: list, second: list) -> None:
    """Same objects, labels and order; boxes and scores equal up to float rounding."""
    assert [[d.label_id for d in r] for r in first] == [[d.label_id for d in r] for r in second]
    for a, b in zip((d for r in first for d in r), (d for r in second for d in r)):
        assert [a.box.x0, a.box.y0, a.box.x1, a.box.y1] == pytest.approx(
            [b.box.x0, b.box.y0, b.box.x1, b.box.y1], abs=0.05
        )
        assert a.score == pytest.approx(b.score, abs=1e-4)


def test_detector_preprocesses_on_device_like_on_the_host(model_cache: Path) -> None:
    detector = Detector(modelstore.resolve_model("x", "detector", tiny=True, cache_dir=model_cache), device="cpu")
    assert detector.preprocess_on_device
    frames = [smooth_frame(90, 160), smooth_frame(90, 160)[::-1].copy(), smooth_frame(60, 60)]
    on_device = detector.detect(frames, 0.2, batch_size=2)
    detector.preprocess_on_device = False
    on_host = detector.detect(frames, 0.2, batch_size=2)
    assert sum(map(len, on_device)) > 0
    assert_same_detections(on_device, on_host)


def test_channels_last_detector_finds_the_same_objects(model_cache: Path) -> None:
    path = modelstore.resolve_model("x", "detector", tiny=True, cache_dir=model_cache)
    frames = [smooth_frame(90, 160), smooth_frame(90, 160)[:, ::-1].copy()]
    nchw = Detector(path, device="cpu").detect(frames, 0.2, batch_size=2)
    nhwc_detector = Detector(path, device="cpu", channels_last=True)
    assert nhwc_detector.channels_last
    nhwc = nhwc_detector.detect(frames, 0.2, batch_size=2)
    assert sum(map(len, nchw)) > 0
    assert_same_detections(nchw, nhwc)
