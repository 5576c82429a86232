"""Frame bundles: the format `frames.extract_frames` writes, and the readers every later stage uses.

Bundle format: ONE uncompressed zip (ZIP_STORED: JPEG does not compress further, and stored members
can be read at random) per segment, holding `000000.jpg`, `000001.jpg`, ... (JPEG, quality 90,
display orientation and size) and `bundle.json`, the `FrameBundle` record. A segment with no frame in
range (possible only when a time limit ends inside it) gives a valid bundle with zero frames.

Reading: `open_bundle` / `iter_bundle` decode a bundle batch by batch from a local file (the object
itself, or one temporary download), so a reader's memory is bounded by its batch size, not by the
bundle's length; `read_frame` reads one member; `read_bundle` (everything at once) is for small
bundles and tests.

This module imports no quality, database or model code: the detect+embed worker reads bundles with it.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from vidsearch.errors import QualityGateError
from vidsearch.records import FrameBundle, FrameRef
from vidsearch.stores import storage

BUNDLE_JSON = "bundle.json"


# Threads decoding a batch of bundle members (JPEG decoding releases the GIL too).
_DECODE_THREADS = max(1, min(16, os.cpu_count() or 1))


def member_name(index: int) -> str:
    """Name of frame `index` inside a bundle."""
    return f"{index:06d}.jpg"


def _open_bundle(zf: zipfile.ZipFile, uri: str) -> FrameBundle:
    try:
        return FrameBundle.model_validate_json(zf.read(BUNDLE_JSON))
    except KeyError as exc:
        raise QualityGateError(f"frame bundle {uri} has no {BUNDLE_JSON}") from exc


def _decode_jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    # Bundle JPEGs are RGB already: convert() would only copy the decoded frame.
    return image if image.mode == "RGB" else image.convert("RGB")


def _decode_array(data: bytes) -> np.ndarray:
    return np.array(_decode_jpeg(data), dtype=np.uint8)


# What a damaged member raises while decoding (PIL: UnidentifiedImageError and truncation are OSError).
_DECODE_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError)


class BundleReader:
    """An open frame bundle (`open_bundle`): its record, and its frames decoded batch by batch."""

    def __init__(self, zf: zipfile.ZipFile, uri: str) -> None:
        self.uri = uri
        self._zf = zf
        self.bundle = _open_bundle(zf, uri)
        names = set(zf.NameToInfo)
        missing = [f.member for f in self.bundle.frames if f.member not in names]
        if missing:
            raise QualityGateError(
                f"damaged frame bundle {uri}: {len(missing)} listed frames are missing (first: {missing[0]})"
            )

    def _member(self, ref: FrameRef) -> bytes:
        try:
            return self._zf.read(ref.member)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise QualityGateError(f"damaged frame bundle {self.uri}: {exc}") from exc

    def _decoded(self, future: Future[np.ndarray]) -> np.ndarray:
        try:
            return future.result()
        except _DECODE_ERRORS as exc:
            raise QualityGateError(f"damaged frame bundle {self.uri}: {exc}") from exc

    def frame(self, position: int) -> np.ndarray:
        """The frame `self.bundle.frames[position]` as an RGB uint8 array (H x W x 3)."""
        data = self._member(self.bundle.frames[position])
        try:
            return _decode_array(data)
        except _DECODE_ERRORS as exc:
            raise QualityGateError(f"damaged frame bundle {self.uri}: {exc}") from exc

    def batches(
        self,
        batch_size: int,
        positions: Sequence[int] | None = None,
        *,
        prefetch: bool = True,
        threads: int | None = None,
    ) -> Iterator[list[tuple[FrameRef, np.ndarray]]]:
        """Lists of up to `batch_size` (frame ref, RGB uint8 array) pairs, in bundle order.

        `positions` (ascending indices into `bundle.frames`) restricts the frames read. A batch's
        members are decoded in parallel (`threads`, default one per core up to 16). With `prefetch`,
        the next batch decodes while the caller works on this one (worth it when the caller's work
        runs elsewhere, e.g. on a GPU): two batches of frames are alive at a time, else one (plus the
        previous batch if the caller keeps it while asking for the next), however many frames the
        bundle holds. Raises `QualityGateError` for a member that does not read or decode.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        refs = self.bundle.frames if positions is None else [self.bundle.frames[i] for i in positions]
        workers = max(1, min(batch_size, threads or _DECODE_THREADS))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vidsearch-bundle")

        def submit(chunk: list[FrameRef]) -> tuple[list[FrameRef], list[Future[np.ndarray]]]:
            # Member bytes are read here, in order (one file position); decoding is threaded.
            return chunk, [pool.submit(_decode_array, self._member(ref)) for ref in chunk]

        def collect(item: tuple[list[FrameRef], list[Future[np.ndarray]]]) -> list[tuple[FrameRef, np.ndarray]]:
            return list(zip(item[0], [self._decoded(f) for f in item[1]]))

        chunks = (refs[start : start + batch_size] for start in range(0, len(refs), batch_size))
        try:
            pending: tuple[list[FrameRef], list[Future[np.ndarray]]] | None = None
            for chunk in chunks:
                upcoming: tuple[list[FrameRef], list[Future[np.ndarray]]] | None = submit(chunk)
                if not prefetch:
                    pending, upcoming = upcoming, None
                if pending is not None:
                    batch = collect(pending)
                    pending = None
                    yield batch
                    # Dropped before the next batch is read: a caller that let go of it holds no more.
                    del batch
                pending = upcoming
            if pending is not None:
                yield collect(pending)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def open_bundle(uri: str) -> Iterator[BundleReader]:
    """The bundle at `uri`, open for streaming reads (`BundleReader`).

    The zip is read from a local file: the object itself for a local URI, else one temporary download,
    removed on leaving the block. Raises `QualityGateError` for a damaged bundle (not a zip, no
    bundle.json, listed members missing), `ValueError` for a malformed bundle.json,
    `FileNotFoundError` when there is none.
    """
    with storage.local_file(uri, suffix=".zip") as path:
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise QualityGateError(f"damaged frame bundle {uri}: {exc}") from exc
        with zf:
            yield BundleReader(zf, uri)


def iter_bundle(uri: str, batch_size: int) -> Iterator[list[tuple[FrameRef, np.ndarray]]]:
    """The frames of the bundle at `uri` in batches of `batch_size` (ref, RGB array) pairs, in order;
    memory is bounded by the batch size (see `BundleReader.batches`)."""
    with open_bundle(uri) as reader:
        yield from reader.batches(batch_size)


def read_bundle(uri: str) -> tuple[FrameBundle, list[np.ndarray]]:
    """The bundle record and ALL its frames as RGB uint8 arrays (H x W x 3), in bundle order.

    Holds every frame in memory at once: for small bundles and tests. Pipelines stream with
    `open_bundle` / `iter_bundle`. The whole object is fetched at once. Raises `QualityGateError` for
    a damaged bundle, `FileNotFoundError` when there is none.
    """
    data = storage.read_bytes(uri)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            bundle = _open_bundle(zf, uri)
            members = [zf.read(f.member) for f in bundle.frames]
        # JPEG decoding releases the GIL: a thread per core decodes a bundle several times faster.
        with ThreadPoolExecutor(max_workers=max(1, min(len(members), _DECODE_THREADS))) as pool:
            arrays = list(pool.map(_decode_array, members))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise QualityGateError(f"damaged frame bundle {uri}: {exc}") from exc
    return bundle, arrays


def read_frame(uri: str, frame_index: int) -> Image.Image:
    """Frame `frame_index` of the bundle at `uri` as an RGB image, reading only that member.

    The zip's central directory and one stored member are read (ranged reads on S3), so the UI can cut
    crops without fetching the bundle. Raises `IndexError` for an index the bundle does not have.
    """
    with storage.open_uri(uri) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                bundle = _open_bundle(zf, uri)
                ref = next((f for f in bundle.frames if f.index == frame_index), None)
                if ref is None:
                    raise IndexError(f"frame {frame_index} not in bundle {uri} ({len(bundle.frames)} frames)")
                image = _decode_jpeg(zf.read(ref.member))
        except zipfile.BadZipFile as exc:
            raise QualityGateError(f"damaged frame bundle {uri}: {exc}") from exc
    image.load()
    return image
