"""Exports of a collection: its labelled objects as a COCO detection dataset, its tracks as MOT Challenge
files (docs/export.md). Library code: no Airflow; the search API streams what these functions return.

* `coco(...)`: `annotations.json` (COCO detection: `images`, `annotations`, `categories`), or a zip of it
  with the frame images (`images/<file_name>`).
* `mot(...)`: a zip with one MOT Challenge sequence per video (`<video_id>/gt/gt.txt`, `seqinfo.ini`,
  `frames.csv`, `tracks.csv`) and the class list (`classes.json`).

Which labels count (both formats, `ExportReads`/`included_label` in `stores/browse.py`): positive human
labels, and positive propagated ones when `min_propagated_score` is given and they score at least that.
Negative labels never count: COCO has no negative annotations, and an object labelled negative is not an
example of the label. A COCO category is a label name; an object with several counted labels gives one
annotation per label.

Tracks come from a `TrackSource`: `(collection, video_id) -> Iterable[TrackRow]`. Until the catalog has a
tracks table, `object_tracks(browser, track_of)` builds them from the objects, grouped by a per-object
key the caller passes (`track_of(object row) -> track key | None`); `each_object` makes every detection
its own track (not tracked).

Every export reads one snapshot of the catalog (`CatalogBrowser.export_snapshot`), is checked before
its first byte (unknown collection or video: `NotFoundError`; bad parameters or more than the bounds:
`InputError`) and is produced chunk by chunk (`Export.chunks`), so memory stays bounded by the chunk
size, one frame bundle's member and, for MOT, one video's boxes.
"""

from __future__ import annotations

import collections as _collections
import csv
import datetime as dt
import io
import json
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vidsearch.errors import InputError, NotFoundError
from vidsearch.stores import storage
from vidsearch.stores.browse import CatalogBrowser, ExportReads

# Bounds of one export (`InputError`, a 422, beyond: checked before anything is sent).
MAX_ANNOTATIONS = 1_000_000  # COCO annotations (counted labels) in one export
MAX_IMAGES = 20_000  # frame images in one COCO zip
MAX_MOT_BOXES = 2_000_000  # objects of the exported videos (a bound on the MOT boxes)
CHUNK_BYTES = 1 << 16  # what the exports yield at a time (about)
MAX_LABEL_NAME = 200
FORMAT_VERSION = 1


# -------------------------------------------------------------------------------------------- tracks


@dataclass(frozen=True)
class TrackMember:
    """One box of a track: the catalog's frame key (`segment_index`, `frame_index`), its time and its
    box in display pixels (x0, y0, x1, y1), and the object it is (None when the source has no ids)."""

    segment_index: int
    frame_index: int
    pts_s: float
    box: tuple[float, float, float, float]
    object_id: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class TrackRow:
    """One track of one video: its id (any text, e.g. the tracks table's uuid) and its boxes."""

    track_id: str
    video_id: str
    members: list[TrackMember] = field(default_factory=list)


# (collection, video_id) -> that video's tracks. What `mot` reads tracks from.
TrackSource = Callable[[str, str], Iterable[TrackRow]]
# An object row (the `objects` columns, as a dict) -> its track key; None: in no track.
TrackOf = Callable[[dict[str, Any]], Any]


def each_object(obj: dict[str, Any]) -> str:
    """Every detection its own track (what an untracked video is): the key is the object id."""
    return str(obj["object_id"])


def stored_track(obj: dict[str, Any]) -> str:
    """The object's stored track (`objects.track_id`, stitched at finalize); an object indexed before
    tracks is a track of its own."""
    return str(obj["track_id"]) if obj.get("track_id") else each_object(obj)


def object_tracks(browser: CatalogBrowser, track_of: TrackOf = each_object) -> TrackSource:
    """A `TrackSource` over the catalog's objects: a video's objects grouped by `track_of(row)` (objects
    whose key is None are in no track), each group a `TrackRow` with the key as its id."""

    def source(collection: str, video_id: str) -> Iterator[TrackRow]:
        groups: dict[str, list[TrackMember]] = {}
        for obj in browser.video_objects(collection, video_id):
            key = track_of(obj)
            if key is None:
                continue
            groups.setdefault(str(key), []).append(_member(obj))
        for key, members in groups.items():
            yield TrackRow(track_id=key, video_id=video_id, members=members)

    return source


def _member(obj: dict[str, Any]) -> TrackMember:
    return TrackMember(
        segment_index=int(obj["segment_index"]),
        frame_index=int(obj["frame_index"]),
        pts_s=float(obj["pts_s"]),
        box=(float(obj["x0"]), float(obj["y0"]), float(obj["x1"]), float(obj["y1"])),
        object_id=str(obj["object_id"]),
        score=float(obj["score"]),
    )


# -------------------------------------------------------------------------------------------- exports


@dataclass
class Export:
    """What an export gives: a file name, its media type and its bytes, chunk by chunk. Iterate
    `chunks` once; `close()` ends it early (and frees its database connection)."""

    filename: str
    media_type: str
    chunks: Iterator[bytes]

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()

    def read(self) -> bytes:
        """Every byte at once (small exports, tests)."""
        return b"".join(self.chunks)


def image_file_name(video_id: str, segment_index: int, frame_index: int) -> str:
    """The stable name of a frame's image in a COCO export: `{video_id}/{segment:04d}_{frame:05d}.jpg`."""
    return f"{video_id}/{segment_index:04d}_{frame_index:05d}.jpg"


def coco(
    browser: CatalogBrowser,
    collection: str,
    *,
    video_id: str | None = None,
    label: str | None = None,
    min_propagated_score: float | None = None,
    images: bool = False,
    track_of: TrackOf | None = None,
    max_annotations: int = MAX_ANNOTATIONS,
    max_images: int = MAX_IMAGES,
    read_images: Callable[[str, list[str]], Iterator[bytes]] | None = None,
) -> Export:
    """The collection's labelled objects as a COCO detection dataset (docs/export.md).

    `images=False`: the JSON (`application/json`). `images=True`: a zip holding `annotations.json` and
    `images/<file_name>` for every image (the stored JPEGs, as stored). `video_id` / `label` narrow it to
    one video / one label name; `min_propagated_score` also counts propagated labels scoring at least
    that; `track_of(object row)` fills the annotations' `track_id` (None without it).
    `read_images(bundle_uri, members)` yields the members' bytes in order (default: from object storage).
    """
    _check_filters(label, min_propagated_score)
    kw = dict(
        browser=browser,
        collection=collection,
        video_id=video_id,
        label=label,
        min_propagated_score=min_propagated_score,
        images=images,
        track_of=track_of,
        max_annotations=max_annotations,
        max_images=max_images,
        read_images=read_images,
    )
    name = _filename(collection, "coco", video_id, "zip" if images else "json")
    gen = _coco_zip(kw) if images else _coco_json_file(kw)
    return Export(name, "application/zip" if images else "application/json", _primed(gen))


def mot(
    browser: CatalogBrowser,
    collection: str,
    *,
    tracks: TrackSource,
    video_id: str | None = None,
    label: str | None = None,
    min_propagated_score: float | None = None,
    max_boxes: int = MAX_MOT_BOXES,
) -> Export:
    """The videos' tracks as MOT Challenge sequences, zipped (docs/export.md): one sequence per video
    (`<video_id>/gt/gt.txt`, `seqinfo.ini`, `frames.csv`, `tracks.csv`) and `classes.json`.

    A track's class is the counted label most of its boxes carry (-1: none). With `label`, only the
    tracks of which some box carries that label (counted) are written."""
    _check_filters(label, min_propagated_score)
    kw = dict(
        browser=browser,
        collection=collection,
        tracks=tracks,
        video_id=video_id,
        label=label,
        min_propagated_score=min_propagated_score,
        max_boxes=max_boxes,
    )
    name = _filename(collection, "mot", video_id, "zip")
    return Export(name, "application/zip", _primed(_mot_zip(kw)))


# ---------------------------------------------------------------------------------------------- COCO


def _coco_json_file(kw: dict[str, Any]) -> Generator[bytes, None, None]:
    with kw["browser"].export_snapshot(kw["collection"]) as reads:
        counts = _check_coco(reads, kw)
        yield b""  # checked: what follows is sent
        yield from _batched(_coco_json(reads, kw, counts))


def _check_coco(reads: ExportReads, kw: dict[str, Any]) -> tuple[int, int]:
    _check_scope(reads, kw["collection"], kw["video_id"])
    n_images, n_annotations = reads.count_labelled(kw["video_id"], kw["label"], kw["min_propagated_score"])
    if n_annotations > kw["max_annotations"]:
        raise InputError(
            f"the export would hold {n_annotations} annotations, more than {kw['max_annotations']}: "
            "narrow it to one video or one label"
        )
    if kw.get("images") and n_images > kw["max_images"]:
        raise InputError(
            f"the export would hold {n_images} images, more than {kw['max_images']} in one zip: "
            "narrow it to one video or one label, or export the annotations alone (images=false)"
        )
    return n_images, n_annotations


def _coco_json(reads: ExportReads, kw: dict[str, Any], counts: tuple[int, int]) -> Iterator[bytes]:
    """The COCO JSON, piece by piece: info, licenses, categories, images, annotations."""
    video_id, label, min_score = kw["video_id"], kw["label"], kw["min_propagated_score"]
    track_of: TrackOf | None = kw["track_of"]
    names = reads.label_names(video_id, label, min_score)
    category_ids = {n: i for i, n in enumerate(names, 1)}
    info = {
        "description": f"vidsearch collection {kw['collection']}: labelled objects",
        "version": str(FORMAT_VERSION),
        "year": dt.datetime.now(dt.UTC).year,
        "date_created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "contributor": "vidsearch",
        "url": "",
        "vidsearch": {
            "collection": kw["collection"],
            "video_id": video_id,
            "label": label,
            "min_propagated_score": min_score,
            "labels": "positive human labels"
            + ("" if min_score is None else f" and positive propagated labels scoring >= {min_score:g}")
            + "; negative labels excluded",
            "images": counts[0],
            "annotations": counts[1],
        },
    }
    categories = [{"id": i, "name": n, "supercategory": ""} for n, i in category_ids.items()]
    yield b'{"info": ' + _dumps(info) + b', "licenses": [], "categories": ' + _dumps(categories)
    yield b', "images": ['
    image_ids: dict[tuple[str, int, int], int] = {}
    for n, f in enumerate(reads.labelled_frames(video_id, label, min_score), 1):
        image_ids[(f.video_id, f.segment_index, f.frame_index)] = n
        image = {
            "id": n,
            "file_name": image_file_name(f.video_id, f.segment_index, f.frame_index),
            "width": f.width,
            "height": f.height,
            "video_id": f.video_id,
            "segment_index": f.segment_index,
            "frame_index": f.frame_index,
            "pts_s": f.pts_s,
        }
        yield (b", " if n > 1 else b"") + _dumps(image)
    yield b'], "annotations": ['
    for n, o in enumerate(reads.labelled_objects(video_id, label, min_score), 1):
        x, y = o["x0"], o["y0"]
        w, h = max(0.0, o["x1"] - x), max(0.0, o["y1"] - y)
        track = track_of(o) if track_of is not None else None
        ann = {
            "id": n,
            "image_id": image_ids[(o["video_id"], o["segment_index"], o["frame_index"])],
            "category_id": category_ids[o["label_name"]],
            "bbox": [x, y, w, h],
            "area": w * h,
            "iscrowd": 0,
            "score": o["score"],
            "object_id": str(o["object_id"]),
            "track_id": None if track is None else str(track),
            "detector_label": o["label"],
            "label_source": o["label_source"],
            "label_score": o["label_score"],
        }
        yield (b", " if n > 1 else b"") + _dumps(ann)
    yield b"]}\n"


def _coco_zip(kw: dict[str, Any]) -> Generator[bytes, None, None]:
    read_images = kw["read_images"] or read_bundle_members
    with kw["browser"].export_snapshot(kw["collection"]) as reads:
        counts = _check_coco(reads, kw)
        yield b""
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            with zf.open("annotations.json", "w", force_zip64=True) as member:
                for piece in _batched(_coco_json(reads, kw, counts)):
                    member.write(piece)
                    if sink.size >= CHUNK_BYTES:
                        yield sink.take()
            yield sink.take()
            # The images, one bundle (segment) at a time: each bundle is opened once.
            frames = reads.labelled_frames(kw["video_id"], kw["label"], kw["min_propagated_score"])
            for bundle_uri, group in _grouped(frames, lambda f: f.bundle_uri):
                members = [f.member for f in group]
                for f, data in zip(group, read_images(bundle_uri, members), strict=True):
                    info = zipfile.ZipInfo(
                        "images/" + image_file_name(f.video_id, f.segment_index, f.frame_index),
                        date_time=(1980, 1, 1, 0, 0, 0),
                    )
                    info.compress_type = zipfile.ZIP_STORED  # JPEGs do not compress further
                    zf.writestr(info, data)
                    yield sink.take()
        yield sink.take()


def read_bundle_members(bundle_uri: str, members: list[str]) -> Iterator[bytes]:
    """The stored bytes of `members` of one frame bundle, in order (the bundle is opened once)."""
    with storage.open_uri(bundle_uri) as fh:
        try:
            with zipfile.ZipFile(fh) as zf:
                for member in members:
                    yield zf.read(member)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise NotFoundError(f"frame unreadable in {bundle_uri}: {exc}") from exc


# ----------------------------------------------------------------------------------------------- MOT


def _mot_zip(kw: dict[str, Any]) -> Generator[bytes, None, None]:
    collection, video_id, label, min_score = kw["collection"], kw["video_id"], kw["label"], kw["min_propagated_score"]
    with kw["browser"].export_snapshot(collection) as reads:
        _check_scope(reads, collection, video_id)
        n_objects = reads.count_objects(video_id)
        if n_objects > kw["max_boxes"]:
            raise InputError(
                f"the videos hold {n_objects} objects, more than the {kw['max_boxes']} one MOT export takes: "
                "export one video at a time"
            )
        names = reads.label_names(video_id, label, min_score)
        class_ids = {n: i for i, n in enumerate(names, 1)}
        yield b""
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            classes = [{"id": i, "name": n} for n, i in class_ids.items()]
            _write(zf, "classes.json", _dumps(classes, indent=1))
            yield sink.take()
            boxes = 0
            for video in reads.videos(video_id):
                seq = video["video_id"]
                frames = reads.video_frames(seq)
                if not frames:
                    continue
                labels_of = reads.object_label_names(seq, label, min_score)
                written = _mot_sequence(zf, collection, video, frames, kw["tracks"], labels_of, class_ids, label)
                boxes += written
                if boxes > kw["max_boxes"]:
                    raise InputError(f"the tracks hold more than {kw['max_boxes']} boxes: export one video at a time")
                yield sink.take()
        yield sink.take()


def _mot_sequence(
    zf: zipfile.ZipFile,
    collection: str,
    video: dict[str, Any],
    frames: list[dict[str, Any]],
    tracks: TrackSource,
    labels_of: dict[str, list[str]],
    class_ids: dict[str, int],
    label: str | None,
) -> int:
    """Write one video's sequence; returns how many boxes its gt.txt holds."""
    seq = video["video_id"]
    number = {(f["segment_index"], f["frame_index"]): n for n, f in enumerate(frames, 1)}
    kept: list[tuple[int, str, list[tuple[int, TrackMember]], int, str]] = []
    for track in tracks(collection, seq):
        members = sorted(
            (
                (number[(m.segment_index, m.frame_index)], m)
                for m in track.members
                if (m.segment_index, m.frame_index) in number
            ),
            key=lambda t: (t[0], t[1].object_id or ""),
        )
        if not members:
            continue
        votes = _collections.Counter(n for _, m in members for n in labels_of.get(m.object_id or "", ()))
        if label is not None and not votes:
            continue
        best = min(votes, key=lambda n: (-votes[n], n)) if votes else ""
        kept.append((members[0][0], str(track.track_id), members, class_ids.get(best, -1), best))
    kept.sort(key=lambda t: (t[0], t[1]))
    lines: list[tuple[int, int, str]] = []
    track_rows = []
    for mot_id, (_, track_id, members, cls, best) in enumerate(kept, 1):
        for n, m in members:
            x0, y0, x1, y1 = m.box
            # MOT Challenge boxes are 1-based (Matlab): bb_left = x0 + 1, bb_top = y0 + 1.
            left, top, width, height = x0 + 1, y0 + 1, max(0.0, x1 - x0), max(0.0, y1 - y0)
            lines.append((n, mot_id, f"{n},{mot_id},{left:.3f},{top:.3f},{width:.3f},{height:.3f},1,{cls},1"))
        track_rows.append([mot_id, track_id, cls, best, members[0][0], members[-1][0], len(members)])
    lines.sort(key=lambda t: (t[0], t[1]))
    _write(zf, f"{seq}/gt/gt.txt", "".join(line + "\n" for _, _, line in lines).encode())
    _write(zf, f"{seq}/seqinfo.ini", _seqinfo(collection, video, frames).encode())
    _write(
        zf,
        f"{seq}/frames.csv",
        _csv(
            ["frame", "segment_index", "frame_index", "pts_s", "image"],
            (
                [
                    n,
                    f["segment_index"],
                    f["frame_index"],
                    f"{f['pts_s']:.6f}",
                    image_file_name(seq, f["segment_index"], f["frame_index"]),
                ]
                for n, f in enumerate(frames, 1)
            ),
        ),
    )
    _write(
        zf,
        f"{seq}/tracks.csv",
        _csv(["id", "track_id", "class", "label", "first_frame", "last_frame", "boxes"], track_rows),
    )
    return len(lines)


def sampled_frame_rate(video: dict[str, Any], frames: list[dict[str, Any]]) -> float:
    """The rate of a video's sampled frames: its run's `sample_fps` when it sampled on the fps grid, else
    the mean rate of the frames (frames per second of the span they cover)."""
    params = video.get("params") or {}
    if params.get("sampling", "fps") == "fps" and isinstance(params.get("sample_fps"), (int, float)):
        return float(params["sample_fps"])
    duration = (video.get("manifest") or {}).get("duration_s") or 0.0
    if len(frames) > 1 and frames[-1]["pts_s"] > frames[0]["pts_s"]:
        return (len(frames) - 1) / (frames[-1]["pts_s"] - frames[0]["pts_s"])
    return len(frames) / duration if duration else 1.0


def _seqinfo(collection: str, video: dict[str, Any], frames: list[dict[str, Any]]) -> str:
    rate = sampled_frame_rate(video, frames)
    params = video.get("params") or {}
    manifest = video.get("manifest") or {}
    return (
        "[Sequence]\n"
        f"name={video['video_id']}\n"
        "imDir=img1\n"
        f"frameRate={_num(rate)}\n"
        f"seqLength={len(frames)}\n"
        f"imWidth={frames[0]['width']}\n"
        f"imHeight={frames[0]['height']}\n"
        "imExt=.jpg\n"
        "\n"
        "[vidsearch]\n"
        f"collection={collection}\n"
        f"video_id={video['video_id']}\n"
        f"sampling={params.get('sampling', 'fps') if params else 'unknown'}\n"
        f"video_frame_rate={_num(manifest.get('frame_rate') or 0)}\n"
        f"duration_s={_num(manifest.get('duration_s') or 0)}\n"
        "frames=frames.csv\n"
        "tracks=tracks.csv\n"
    )


# ------------------------------------------------------------------------------------------- helpers


def _check_filters(label: str | None, min_propagated_score: float | None) -> None:
    if label is not None:
        # The rule of `vidsearch.search.validate_label_name`: a name that could not be stored is refused.
        if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL_NAME:
            raise InputError(f"label must be 1-{MAX_LABEL_NAME} characters")
        if any(unicodedata.category(ch) == "Cc" for ch in label):
            raise InputError("label must not contain control characters")
    if min_propagated_score is not None and not (
        isinstance(min_propagated_score, (int, float)) and 0.0 <= min_propagated_score <= 1.0
    ):
        raise InputError(f"min_propagated_score must be between 0 and 1, got {min_propagated_score!r}")


def _check_scope(reads: ExportReads, collection: str, video_id: str | None) -> None:
    if not reads.has_collection():
        raise NotFoundError(f"no collection {collection[:80]!r}")
    if video_id is not None and not reads.has_video(video_id):
        raise NotFoundError(f"no video {video_id[:80]!r} in collection {collection!r}")


def _filename(collection: str, kind: str, video_id: str | None, ext: str) -> str:
    """A download name of safe characters only (it goes into Content-Disposition)."""
    parts = [collection, kind] + ([video_id] if video_id else [])
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts))[:160] + "." + ext


def _primed(gen: Generator[bytes, None, None]) -> Iterator[bytes]:
    """Run `gen` up to its first yield (every check of the export) now, so a bad request raises here,
    before a byte is sent; the rest runs as the caller iterates."""
    first = next(gen)

    def rest() -> Generator[bytes, None, None]:
        try:
            if first:
                yield first
            for chunk in gen:
                if chunk:
                    yield chunk
        finally:
            gen.close()

    return rest()


def _batched(pieces: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    buf: list[bytes] = []
    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


def _grouped(rows: Iterable[Any], key: Callable[[Any], Any]) -> Iterator[tuple[Any, list[Any]]]:
    """Consecutive rows with the same key, as (key, rows)."""
    current: Any = object()
    group: list[Any] = []
    for row in rows:
        k = key(row)
        if group and k != current:
            yield current, group
            group = []
        current = k
        group.append(row)
    if group:
        yield current, group


def _dumps(value: Any, indent: int | None = None) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _num(value: float) -> str:
    return f"{float(value):.6g}"


def _csv(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


class _Sink:
    """A write-only, non-seekable file: a zip is written into it and taken out as it grows."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts, self.size = [], 0
        return data
