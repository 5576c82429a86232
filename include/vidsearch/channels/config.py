"""Channel configuration: the channels file, its schema, and the ingest settings a channel passes on."""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from vidsearch.errors import PermanentError, TransientError
from vidsearch.params import DEFAULT_COLLECTION, optional_fields

log = logging.getLogger(__name__)


REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CHANNELS_FILE = REPO_ROOT / "include" / "channels.yaml"
CHANNELS_FILE_ENV = "VIDSEARCH_CHANNELS_FILE"
UTC = dt.UTC


DEFAULT_PATTERNS = ("*.mp4", "*.m4v", "*.mov", "*.mkv", "*.webm", "*.avi", "*.mpg", "*.mpeg", "*.ts")


class ChannelConfigError(PermanentError):
    """The channels file is missing, unreadable or invalid."""


class ChannelUnavailable(TransientError):
    """A channel's folder, bucket or feed cannot be read right now (a mount gone, a 503): retry.

    Not skipped silently: with discovery keyed on time windows, a window read while the source was away
    would lose its files for good; a failed run can be cleared and re-run once the source is back.
    """


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


class _IngestSettingsBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def collection_name(self) -> str:
        return getattr(self, "collection", None) or DEFAULT_COLLECTION

    def conf(self, source: str) -> dict[str, Any]:
        """The `video_ingest` run conf for one video."""
        return {"source": source, **self.model_dump(exclude_none=True)}


# What each of the channel's videos is ingested with: `video_ingest`'s form fields except `source`,
# each optional (left out: video_ingest's default), with IngestParams' bounds, so a typo fails when the
# channels file is loaded, not in a triggered run.
IngestSettings = create_model(
    "IngestSettings",
    __base__=_IngestSettingsBase,
    __doc__="A channel's ingest settings: video_ingest's params except `source`, each optional.",
    **optional_fields(exclude=("source",)),
)


class Channel(BaseModel):
    """One recurring source (an entry of the channels file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Unique; part of run ids, so lowercase letters, digits, '_' and '-' only.",
    )
    kind: Literal["folder", "s3", "feed"]
    location: str = Field(
        min_length=1,
        description="folder: a path (relative ones are relative to the repository root); "
        "s3: s3://bucket/prefix; feed: an http(s) URL, an s3:// URI or a path of the feed or URL list.",
    )
    bucket: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,62}$",
        description="feed only: the S3 bucket whose s3:// entries the feed may name; without it, s3:// "
        "entries are refused (a feed's author must not reach every bucket the workers can read).",
    )
    description: str = ""
    enabled: bool = True
    schedule: str | None = Field(
        None, description="Cron expression or preset (@hourly, @daily, ...); empty: every channel_ingest run."
    )
    timezone: str = "UTC"
    patterns: tuple[str, ...] = Field(DEFAULT_PATTERNS, description="Glob patterns on file names (folder, s3).")
    recursive: bool = True
    ingest: IngestSettings = Field(default_factory=IngestSettings)

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from croniter import croniter

        if not croniter.is_valid(value.strip()):
            raise ValueError(f"not a valid cron expression: {value!r}")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("patterns")
    @classmethod
    def _some_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not p.strip() for p in value):
            raise ValueError("patterns must be a non-empty list of non-empty globs")
        return value

    @model_validator(mode="after")
    def _location_fits_kind(self) -> Channel:
        scheme = urlsplit(self.location).scheme.lower() if "://" in self.location else ""
        if self.kind == "folder" and scheme:
            raise ValueError(f"channel {self.name}: a folder location is a path, not {self.location!r}")
        if self.kind == "s3" and scheme != "s3":
            raise ValueError(f"channel {self.name}: an s3 location starts with s3://, got {self.location!r}")
        if self.kind == "feed" and scheme not in ("", "http", "https", "s3"):
            raise ValueError(f"channel {self.name}: a feed location is http(s)://, s3:// or a path")
        if self.bucket is not None and self.kind != "feed":
            raise ValueError(f"channel {self.name}: only a feed channel has a bucket setting")
        return self

    @property
    def collection(self) -> str:
        return self.ingest.collection_name

    def folder(self) -> Path:
        path = Path(os.path.expandvars(self.location)).expanduser()
        return path if path.is_absolute() else REPO_ROOT / path

    def matches(self, name: str) -> bool:
        return not name.startswith(".") and any(fnmatch.fnmatch(name.lower(), p.lower()) for p in self.patterns)


class ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ChannelsFile:
        names = [c.name for c in self.channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate channel name(s): {', '.join(dupes)}")
        return self


def channels_file() -> Path:
    """The channels file in use: VIDSEARCH_CHANNELS_FILE, else include/channels.yaml."""
    return Path(os.environ.get(CHANNELS_FILE_ENV) or DEFAULT_CHANNELS_FILE)


def load_channels(path: Path | str | None = None) -> list[Channel]:
    """Every channel of the file (enabled or not); raises ChannelConfigError naming what is wrong."""
    path = Path(path) if path is not None else channels_file()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ChannelConfigError(f"channels file {path} does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ChannelConfigError(f"channels file {path} is unreadable: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ChannelConfigError(f"channels file {path}: expected a mapping with a 'channels' list")
    try:
        return ChannelsFile.model_validate(data).channels
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'file'}: {err['msg']}" for err in exc.errors())
        raise ChannelConfigError(f"channels file {path} is invalid: {problems}") from exc


def as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
