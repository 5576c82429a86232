"""Media: where videos come from and how they become segments and frame bundles.

`sources` (local paths, URLs, S3), `probe` (the manifest), `split` (segments), `frames` (sampling) and
`bundle` (the bundle format and its readers), `audio` (a segment's audio clip for speech
recognition), `stats` (pixel statistics of frames), `content` (which
sampled frames are blank or repeats, skipped by detection), `ffmpeg` (the subprocess wrapper), `synth` (synthetic
videos for tests and benchmarks).
"""

from __future__ import annotations

from vidsearch import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "sources": ("redact", "check_url", "fetch_source"),
        "probe": (
            "display_name",
            "sha256_file",
            "primary_video_stream",
            "rotation_cw",
            "is_variable_frame_rate",
            "build_manifest",
            "check_decodable",
            "probe_video",
        ),
        "split": (
            "SplitPlan",
            "plan_split",
            "auto_segment_seconds",
            "segment_bounds",
            "parse_segment_list",
            "split_local",
            "run_split",
        ),
        "frames": ("select_frames", "extract_frames", "run_frames"),
        "bundle": ("member_name", "BundleReader", "open_bundle", "iter_bundle", "read_bundle", "read_frame"),
        "audio": ("NoAudioStreamError", "clip_range", "extract_audio_clip", "read_wav_pcm", "rms_dbfs"),
        "stats": ("frame_stats",),
        "content": ("ContentRules", "ContentFilter", "Signature", "signature", "is_blank"),
        "ffmpeg": (
            "FFmpegNotFoundError",
            "FFmpegError",
            "FFmpegTimeoutError",
            "ffmpeg_bin",
            "ffprobe_bin",
            "file_url",
            "input_args",
            "summarize_stderr",
            "Result",
            "run",
            "ffmpeg",
            "ffprobe_json",
            "Stream",
            "stream",
            "parse_rate",
            "parse_float",
            "parse_clock",
        ),
        "synth": (
            "make_video",
            "make_vfr_video",
            "make_audio_only",
            "make_audio_with_cover",
            "make_truncated",
            "make_zero_byte",
            "make_text_file",
            "make_corrupt",
            "frame_interval",
        ),
    },
)
