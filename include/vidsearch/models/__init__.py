"""Models: detection, crop embedding and speech recognition, and the workers that run them.

`detect` (DETR family), `embed` (CLIP family), `asr` (Whisper), `preprocess` (batched on-device
preprocessing), `modelstore` (model folders, tiny test models, devices), `worker` (one segment's
detect+embed, as a process or a pod), `transcriber` (one segment's transcript), `worker_server` (the
warm worker, both commands), `launcher` (how a task runs them).
"""

from __future__ import annotations

from vidsearch import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "detect": ("Detection", "check_frames", "check_batch_size", "move_inputs", "Detector"),
        "embed": ("crop_box", "l2_normalise", "Embedder"),
        "asr": ("load_wav", "plan_windows", "Transcription", "Transcriber"),
        "preprocess": ("to_device", "boxes_tensor", "CropSpec", "crop_pixels"),
        "modelstore": (
            "is_tiny_mode",
            "default_cache_dir",
            "resolve_model",
            "loading",
            "select_device",
            "select_dtype",
            "tiny_detector_spec",
            "tiny_embedder_spec",
            "tiny_asr_spec",
            "tiny_model_dir",
            "ensure_tiny_model",
        ),
        "worker": ("build_parser", "ModelCache", "open_frames", "run", "configure_logging", "execute", "main"),
        "transcriber": ("read_clip",),
        "worker_server": ("WarmWorker", "make_server", "serving", "main"),
        "launcher": (
            "worker_argv",
            "run_local",
            "run_on_service",
            "read_result",
            "transcriber_argv",
            "transcriber_check_argv",
            "run_transcribe_local",
            "run_transcribe_on_service",
            "read_transcript",
        ),
    },
)
