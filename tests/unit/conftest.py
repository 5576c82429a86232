"""Synthetic videos for the media unit tests, made once per session with `vidsearch.media.synth`.

Small and short on purpose (the whole media suite must stay well under a minute on two cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vidsearch.media import synth

# 29.97 fps, keyframe every 24 frames (0.8 s): cuts at 3 s / 6 s land on keyframes after them.
CFR_SECONDS = 8.0
CFR_FPS = "30000/1001"
CFR_GOP = 24
CFR_SIZE = (320, 180)


@pytest.fixture(scope="session")
def cfr_spec() -> dict:
    """How `cfr_video` was made (test modules cannot import conftest)."""
    return {"seconds": CFR_SECONDS, "fps": CFR_FPS, "gop": CFR_GOP, "size": CFR_SIZE}


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cfr_video(media_dir: Path) -> Path:
    """8 s, 320x180, 29.97 fps H.264 + AAC, keyframe every 24 frames, index first (faststart)."""
    return synth.make_video(media_dir / "cfr.mp4", CFR_SECONDS, *CFR_SIZE, fps=CFR_FPS, audio=True, gop_frames=CFR_GOP)


@pytest.fixture(scope="session")
def sparse_key_video(media_dir: Path) -> Path:
    """5 s at 25 fps with a single keyframe: stream copy cannot cut it anywhere."""
    return synth.make_video(media_dir / "sparse.mp4", 5.0, 192, 108, fps="25", audio=False, gop_frames=1000)


@pytest.fixture(scope="session")
def rotated_video(media_dir: Path) -> Path:
    """Coded 192x108, displayed rotated 90 degrees clockwise (108x192)."""
    return synth.make_video(media_dir / "rotated.mp4", 2.0, 192, 108, fps="25", audio=False, gop_frames=25, rotate=90)


@pytest.fixture(scope="session")
def vfr_video(media_dir: Path) -> Path:
    """4 s, frame intervals alternating 1/20 s and 1/60 s."""
    return synth.make_vfr_video(media_dir / "vfr.mp4", 4.0, 192, 108)


@pytest.fixture(scope="session")
def audio_only(media_dir: Path) -> Path:
    return synth.make_audio_only(media_dir / "tone.m4a", 1.0)


@pytest.fixture(scope="session")
def audio_with_cover(media_dir: Path) -> Path:
    return synth.make_audio_with_cover(media_dir / "song.m4a", 1.0)


@pytest.fixture(scope="session")
def truncated_video(media_dir: Path, cfr_video: Path) -> Path:
    """The first half of a faststart MP4: it probes fine, its second half is missing."""
    return synth.make_truncated(cfr_video, media_dir / "truncated.mp4", 0.5)


@pytest.fixture(scope="session")
def truncated_tail_video(media_dir: Path, cfr_video: Path) -> Path:
    """A faststart MP4 missing only its last ~3 % (the last second is partly gone)."""
    return synth.make_truncated(cfr_video, media_dir / "truncated_tail.mp4", 0.97)


@pytest.fixture(scope="session")
def truncated_no_index(media_dir: Path) -> Path:
    """The first half of an MP4 whose index (moov) is at the end: the index is gone."""
    full = synth.make_video(media_dir / "moov_last.mp4", 2.0, 160, 90, fps="25", audio=False, faststart=False)
    return synth.make_truncated(full, media_dir / "truncated_no_index.mp4", 0.5)


@pytest.fixture(scope="session")
def text_file(media_dir: Path) -> Path:
    return synth.make_text_file(media_dir / "notes.txt")


@pytest.fixture(scope="session")
def zero_byte(media_dir: Path) -> Path:
    return synth.make_zero_byte(media_dir / "empty.mp4")


@pytest.fixture(scope="session")
def corrupt_file(media_dir: Path) -> Path:
    return synth.make_corrupt(media_dir / "garbage.mp4")
