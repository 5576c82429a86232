"""`video_ingest` end to end with `dag.test()` against the real Postgres and Weaviate.

The video is generated: moving shapes, an audio track, a non-integer frame rate (30000/1001).
Models are tiny random ones built from configs and loaded through `from_pretrained`.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
from vidsearch.media import synth
from vidsearch.stores import storage

pytestmark = pytest.mark.integration

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag(airflow_db, weaviate_server):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["video_ingest"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "shapes.mp4"
    synth.make_video(path, duration_s=9.0, width=320, height=180, fps="30000/1001", audio=True, gop_frames=30)
    return path


def _conf(source: str, **extra) -> dict:
    conf = {
        "source": source,
        "collection": "e2e",
        "segment_seconds": 3,
        "sample_fps": 2,
        "score_threshold": 0.0,  # tiny random models: keep every non-degenerate box
        "detector_model": "facebook/detr-resnet-50",
        "embedder_model": "openai/clip-vit-base-patch32",
    }
    conf.update(extra)
    return conf


def _states(dagrun) -> dict[tuple[str, int], tuple[str, int]]:
    return {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in dagrun.get_task_instances()}


def _asset_events(uri: str, run_id: str) -> list[dict]:
    """Extras of the asset events a run emitted for `uri`."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.settings import Session

    with Session() as session:
        rows = session.execute(
            sa.select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
        ).all()
    return [dict(r[0]) for r in rows]


def _everything_under(root: str) -> set[str]:
    return set(storage.list_prefix(root))


def _store_counts(catalog, weaviate_client, collection: str) -> tuple[int, int]:
    import sqlalchemy as sa
    from vidsearch.stores.catalog import objects

    with catalog.engine.connect() as conn:
        pg = conn.execute(
            sa.select(sa.func.count()).select_from(objects).where(objects.c.collection == collection)
        ).scalar_one()
    name = f"VideoObjects_{collection}"
    if not weaviate_client.collections.exists(name):
        return pg, 0
    wv = weaviate_client.collections.use(name).aggregate.over_all(total_count=True).total_count
    return pg, wv


def test_ingest_end_to_end_then_rerun_changes_nothing(dag, video, catalog, weaviate_client):
    from vidsearch.media.probe import probe_video

    manifest = probe_video(video, str(video))
    dagrun = dag.test(run_conf=_conf(str(video)))
    states = _states(dagrun)
    assert dagrun.state == "success", states

    segments = catalog.segment_states("e2e", manifest.video_id)
    n_segments = len(segments)
    assert n_segments == 3
    assert {s["state"] for s in segments.values()} == {"done"}
    # One mapped task instance per segment, each named after its segment and time range.
    mapped = sorted(
        (ti for ti in dagrun.get_task_instances() if ti.task_id == "segment.index"), key=lambda t: t.map_index
    )
    assert len(mapped) == n_segments
    names = [ti.rendered_map_index for ti in mapped]
    assert names[0].startswith("seg0000 [00:00.000-") and names[2].startswith("seg0002 ["), names

    counts = catalog.counts("e2e", manifest.video_id)
    # Sampled on a global grid t = k / 2 over [0, duration): one frame per grid time.
    assert abs(counts["frames"] - manifest.duration_s * 2) <= 1
    assert counts["frames"] == sum(s["frame_count"] for s in segments.values())
    assert counts["objects"] > 0
    assert counts["objects"] == sum(s["object_count"] for s in segments.values())

    pg_ids = catalog.object_ids("e2e", manifest.video_id)
    from vidsearch.stores.index import ObjectIndex

    index = ObjectIndex(weaviate_client)
    wv_ids = set()
    for seg in segments:
        wv_ids |= set(index.ids("e2e", manifest.video_id, seg))
    assert pg_ids == wv_ids and len(pg_ids) == counts["objects"]

    run = catalog.get_run(dagrun.run_id)
    assert run["state"] == "done" and run["video_id"] == manifest.video_id
    assert run["summary"]["objects"] == counts["objects"]
    assert _asset_events("vidsearch://collections/e2e", dagrun.run_id) == [run["summary"]]

    # Tracks (issue 14): every object in one, the tracks table built from them, counted in the summary.
    tracks = {m["object_id"]: m["track_id"] for m in catalog.track_members("e2e", manifest.video_id)}
    assert set(tracks) == pg_ids and all(tracks.values())
    track_rows = catalog.video_tracks("e2e", manifest.video_id)
    assert {r["track_id"] for r in track_rows} == set(tracks.values()) and run["summary"]["tracks"] == len(track_rows)
    assert len(track_rows) < len(pg_ids)  # the tracker joined detections of successive frames
    # ...and Weaviate's track collection holds one vector per track, no more.
    track_vectors = {t for seg in segments for t in index.stored_tracks("e2e", manifest.video_id, seg)}
    assert track_vectors == {r["track_id"] for r in track_rows}

    # The audio branch (issue 16): every segment's audio done, the same chunks in both stores, in
    # time order inside the video. (The tiny random Whisper writes stray bytes, not words: keyword and
    # hybrid search over indexed chunks are tested in tests/search/test_transcripts_search.py.)
    from vidsearch.stores.transcripts import TranscriptStore

    transcripts = TranscriptStore(catalog.engine)
    audio = transcripts.audio_status("e2e", manifest.video_id)
    assert [a["status"] for a in audio] == ["done"] * n_segments
    chunk_ids = set(transcripts.chunk_ids("e2e", manifest.video_id))
    assert chunk_ids == set(index.transcript_ids("e2e", manifest.video_id))
    assert run["summary"]["transcript_chunks"] == len(chunk_ids)
    chunks = transcripts.video_transcript("e2e", manifest.video_id)
    assert chunks, "the generated audio track (a tone: loud enough to be transcribed) gave no chunks"
    assert all(c["text"].strip() for c in chunks)
    starts = [c["start_s"] for c in chunks]
    assert starts == sorted(starts) and all(0 <= t <= manifest.duration_s for t in starts)

    # The same video again: same ids, same counts, same tracks, in both stores.
    before = _store_counts(catalog, weaviate_client, "e2e")
    again = dag.test(run_conf=_conf(str(video)))
    assert again.state == "success", _states(again)
    assert catalog.counts("e2e", manifest.video_id) == counts
    assert catalog.object_ids("e2e", manifest.video_id) == pg_ids
    assert _store_counts(catalog, weaviate_client, "e2e") == before
    assert set(transcripts.chunk_ids("e2e", manifest.video_id)) == chunk_ids
    assert set(index.transcript_ids("e2e", manifest.video_id)) == chunk_ids
    assert {m["object_id"]: m["track_id"] for m in catalog.track_members("e2e", manifest.video_id)} == tracks
    assert [r["track_id"] for r in catalog.video_tracks("e2e", manifest.video_id)] == [
        r["track_id"] for r in track_rows
    ]
    assert {t for seg in segments for t in index.stored_tracks("e2e", manifest.video_id, seg)} == track_vectors


def test_ingest_through_the_warm_worker_loads_the_models_once(dag, video, catalog, weaviate_client, monkeypatch):
    """Local mode with a warm worker: every segment's detect+embed is a job of one process."""
    from vidsearch.media.probe import probe_video
    from vidsearch.models import launcher, worker_server

    with worker_server.serving() as (url, warm):
        monkeypatch.setenv(launcher.WORKER_URL_ENV, url)
        dagrun = dag.test(run_conf=_conf(str(video), collection="e2e_warm"))
    assert dagrun.state == "success", _states(dagrun)
    video_id = probe_video(video, str(video)).video_id
    segments = catalog.segment_states("e2e_warm", video_id)
    assert len(segments) == 3 and {s["state"] for s in segments.values()} == {"done"}
    # One detect+embed and one transcribe job per segment, plus the probe's model check, which loaded
    # the models the segments then used; the transcriber reuses the loaded embedder (its text tower):
    # one load each of the detector, the embedder and Whisper.
    assert (warm.jobs, warm.models.loads) == (7, 3)
    pg, wv = _store_counts(catalog, weaviate_client, "e2e_warm")
    assert pg == wv == catalog.counts("e2e_warm", video_id)["objects"] > 0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output readable
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bad_sources(tmp: Path, video: Path, http_root) -> dict[str, tuple[str, str | tuple[str, ...]]]:
    """name -> (source, the phrase, or phrases, the one-line reason must contain)."""
    www, base = http_root
    text = tmp / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    audio = tmp / "audio.m4a"
    synth.make_audio_only(audio)
    truncated = tmp / "truncated.mp4"
    synth.make_truncated(video, truncated)
    corrupt = tmp / "corrupt.mp4"
    data = bytearray(video.read_bytes())
    for i in range(4096, len(data), 97):  # overwrite the stream with noise, keep the size
        data[i] = (data[i] * 31 + 7) % 256
    corrupt.write_bytes(bytes(data[:64]) + os.urandom(len(data) - 64))
    return {
        "missing": (str(tmp / "does-not-exist.mp4"), "no such file"),
        "text": (str(text), "not a video: 'notes.txt' has an unsupported format"),
        "zero_byte": (str(empty), "empty"),
        "audio_only": (str(audio), "no video stream"),
        # The index promises 9 s but the data stops half way: the end of the video does not decode.
        "truncated": (str(truncated), ("corrupt or truncated video 'truncated.mp4'", "last second")),
        # The index is noise after its first bytes: ffprobe finds no stream at all.
        "corrupt": (str(corrupt), "no video stream in 'corrupt.mp4' (streams: none)"),
        "unreachable_url": (f"http://127.0.0.1:{_closed_port()}/v.mp4", "cannot reach"),
        "file_url": (f"file://{video}", "file://"),
        "link_local_url": ("http://169.254.169.254/latest/video.mp4", "source URL not allowed"),
    }


BAD = [
    "missing",
    "text",
    "zero_byte",
    "audio_only",
    "truncated",
    "corrupt",
    "unreachable_url",
    "file_url",
    "link_local_url",
]


@pytest.mark.parametrize("name", BAD)
def test_bad_input_fails_at_probe_without_retry_or_writes(
    name, dag, video, http_root, tmp_path, catalog, weaviate_client, storage_root
):
    source, expected = _bad_sources(tmp_path, video, http_root)[name]
    files_before = _everything_under(storage_root)
    stores_before = _store_counts(catalog, weaviate_client, "bad_inputs")

    dagrun = dag.test(run_conf=_conf(source, collection="bad_inputs"))

    states = _states(dagrun)
    assert dagrun.state == "failed"
    assert states[("probe", -1)] == ("failed", 1), states  # one try: permanent errors do not retry
    assert all(state != "success" for (task, _), (state, _) in states.items() if task != "probe")
    run = catalog.get_run(dagrun.run_id)
    assert run["state"] == "failed"
    assert run["error"] and "\n" not in run["error"]
    for phrase in (expected,) if isinstance(expected, str) else expected:
        assert phrase.lower() in run["error"].lower(), run["error"]
    # Nothing staged or indexed: at most the run's probe gate report (the size and rate gate runs on
    # ffprobe's data before the decode check that rejects a truncated file).
    written = _everything_under(storage_root) - files_before
    assert all("/quality/" in uri and "/probe-video." in uri for uri in written), written
    assert _store_counts(catalog, weaviate_client, "bad_inputs") == stores_before


@pytest.fixture(scope="module")
def video_with_damaged_middle(tmp_path_factory) -> Path:
    """9 s of moving shapes (2 s GOPs) whose bitstream is damaged around 4.5 s: the second segment.

    (Issue 12: this test used a flat black middle stretch, i.e. content; damage is what quarantines.)
    """
    tmp = tmp_path_factory.mktemp("damaged")
    return synth.make_damaged_h264(tmp / "damaged-middle.mp4", duration_s=9.0, at=(0.5,))


def test_a_bad_segment_is_quarantined_and_the_others_are_indexed(
    dag, video_with_damaged_middle, catalog, weaviate_client, storage_root
):
    from vidsearch.media.probe import probe_video
    from vidsearch.stores.index import ObjectIndex

    video = video_with_damaged_middle
    manifest = probe_video(video, str(video))
    # No human review under dag.test(): the quarantined segment stays quarantined (test_review_e2e.py
    # answers reviews on the real stack).
    dagrun = dag.test(run_conf=_conf(str(video), collection="quarantine", review=False))
    states = _states(dagrun)
    assert dagrun.state == "failed", states

    segments = catalog.segment_states("quarantine", manifest.video_id)
    assert {i: s["state"] for i, s in segments.items()} == {0: "done", 1: "quarantined", 2: "done"}
    bad = segments[1]
    assert "frames gate failed for seg0001" in bad["error"] and "decoder_errors" in bad["error"]
    damage = next(f for f in bad["quality"] if f["column"] == "decoder_errors")
    assert damage["observed"] > 0 and "damaged bitstream" in damage["damage"], bad["quality"]
    # The grid shows which segment failed: its frames task failed once (no retry), downstream did not run.
    assert states[("segment.extract_frames", 1)] == ("failed", 1)
    assert states[("segment.index", 1)][0] == "upstream_failed"
    assert states[("segment.index", 0)][0] == states[("segment.index", 2)][0] == "success"
    assert states[("finalize", -1)][0] == "failed"

    # Both stores hold exactly the good segments' objects.
    good = {i for i, s in segments.items() if s["state"] == "done"}
    pg_ids = catalog.object_ids("quarantine", manifest.video_id)
    index = ObjectIndex(weaviate_client)
    wv_ids = set()
    for seg in segments:
        wv_ids |= set(index.ids("quarantine", manifest.video_id, seg))
    assert pg_ids == wv_ids
    assert len(pg_ids) == sum(segments[i]["object_count"] for i in good) > 0
    assert catalog.object_ids("quarantine", manifest.video_id, 1) == set()

    run = catalog.get_run(dagrun.run_id)
    assert run["state"] == "partial" and "seg0001" in run["error"] and "quarantined" in run["error"]
    assert catalog.get_video("quarantine", manifest.video_id)["state"] == "partial"
    # Validation results are kept per run: JSON + Markdown per gate, the failure among them.
    reports = storage.list_prefix(run["quality_report"])
    names = {r.rsplit("/", 1)[-1] for r in reports}
    assert {"probe-video.json", "split-video.json", "frames-seg0001.json", "frames-seg0001.md"} <= names
    assert "FAIL" in storage.read_bytes(next(r for r in reports if r.endswith("frames-seg0001.md"))).decode()
