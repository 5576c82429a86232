"""Transcripts in both stores and the searches over them (issue 16): chunks written the way the indexer
writes them (`TranscriptStore.replace_segment` in Postgres, `ObjectIndex.replace_segment_transcripts`
in Weaviate, with text embeddings from the collection's embedder), against the session's ingested
video (real pipeline, Postgres and Weaviate). Keyword and hybrid search, highlighting, the video filter,
idempotent and stale-dropping rewrites, the audio states, the combined query "said X while Y is
visible" checked against an oracle computed from the catalog's objects, and the API routes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

pytestmark = pytest.mark.integration

C = "search_api"  # the session's ingested collection (tests/search/conftest.py)
API = f"api/collections/{C}"
MODEL = "tiny-whisper-test"


@pytest.fixture(scope="module")
def svc(search_services):
    from vidsearch.search import SearchService

    return SearchService.from_services(search_services)


@pytest.fixture(scope="module")
def store(search_services):
    from vidsearch.stores.transcripts import TranscriptStore

    return TranscriptStore(search_services.catalog.engine)


@pytest.fixture(scope="module")
def index(search_services):
    return search_services.index()


def _chunk(video_id: str, segment: int, start: float, end: float, text: str):
    from vidsearch.records import TranscriptChunk, transcript_chunk_id

    return TranscriptChunk(
        chunk_id=transcript_chunk_id(video_id, segment, start),
        video_id=video_id,
        segment_index=segment,
        start_s=start,
        end_s=end,
        text=text,
        language="en",
        avg_logprob=-0.2,
        no_speech_prob=0.01,
    )


class Writer:
    """Writes a segment's transcript to both stores, as the audio branch's index task does."""

    def __init__(self, svc, store, index):
        self.svc, self.store, self.index = svc, store, index

    def __call__(self, chunks, segment: int, video_id: str, with_vectors: bool = True) -> None:
        vectors = None
        if with_vectors and chunks:
            _, loaded = self.svc.embedder_for(C)
            vectors = np.asarray(loaded.embedder.embed_texts([c.text for c in chunks]), dtype=np.float32)
        self.store.replace_segment(C, video_id, segment, chunks, model=MODEL, language="en", language_probability=0.97)
        self.index.replace_segment_transcripts(C, video_id, segment, chunks, vectors)


@pytest.fixture(scope="module")
def transcript(ingested, svc, store, index, search_services):
    """Two segments of transcript on the ingested 6 s video (segments [0, 3) and [3, 6)), one chunk
    placed to overlap the longest track's start; returns the chunks by name, the track and a writer."""
    vid = ingested["video_id"]
    tracks = search_services.catalog.video_tracks(C, vid)
    track = max(tracks, key=lambda t: (t["end_pts_s"] - t["start_pts_s"], t["object_count"], str(t["track_id"])))
    seg_of_track = 0 if track["start_pts_s"] < 3.0 else 1
    near = max(seg_of_track * 3.0, track["start_pts_s"] - 0.3)
    chunks = {
        "crossing": _chunk(vid, 0, 0.2, 1.4, "hello zebra crossing"),
        "bold": _chunk(vid, 0, 1.5, 2.8, 'the <b>bold</b> & "brave" zebra'),
        "river": _chunk(vid, 1, 3.1, 4.5, "a quiet afternoon by the river"),
        "again": _chunk(vid, 1, 4.6, 5.9, "zebra again near the end"),
        "track": _chunk(vid, seg_of_track, near + 0.001, track["start_pts_s"] + 0.2, "look a zebra here"),
    }
    write = Writer(svc, store, index)
    by_segment: dict[int, list] = {0: [], 1: []}
    for c in chunks.values():
        by_segment[c.segment_index].append(c)
    for segment, cs in by_segment.items():
        write(cs, segment, vid)
    return {"video_id": vid, "chunks": chunks, "by_segment": by_segment, "track": track, "write": write}


def test_both_stores_hold_the_chunks_and_the_audio_is_done(transcript, store, index):
    vid = transcript["video_id"]
    ids = sorted(c.chunk_id for c in transcript["chunks"].values())
    assert store.chunk_ids(C, vid) == ids
    assert index.transcript_ids(C, vid) == ids
    audio = store.audio_status(C, vid)
    assert [(a["segment_index"], a["status"], a["chunk_count"], a["model"]) for a in audio] == [
        (s, "done", len(transcript["by_segment"][s]), MODEL) for s in (0, 1)
    ]
    rows = store.video_transcript(C, vid)
    assert [r["start_s"] for r in rows] == sorted(r["start_s"] for r in rows)
    assert store.video_transcript(C, vid, from_s=3.0, to_s=4.0)[0]["text"] == "a quiet afternoon by the river"


def test_keyword_search_finds_a_chunk_the_indexer_wrote(transcript, svc):
    river = transcript["chunks"]["river"]
    found = svc.transcript_search(C, "afternoon")
    assert [m["chunk_id"] for m in found] == [river.chunk_id]
    hit = found[0]
    assert hit["text"] == river.text and hit["start_s"] == river.start_s and hit["end_s"] == river.end_s
    assert hit["segment_index"] == 1 and hit["language"] == "en" and hit["score"] > 0
    assert hit["highlighted"] == "a quiet <mark>afternoon</mark> by the river"
    # The sampled frame nearest its start, from the catalog.
    assert hit["frame"] is not None and abs(hit["frame"]["pts_s"] - river.start_s) <= 1.0
    zebras = {m["chunk_id"] for m in svc.transcript_search(C, "zebra", k=10)}
    assert zebras == {transcript["chunks"][n].chunk_id for n in ("crossing", "bold", "again", "track")}


def test_hybrid_search_uses_the_text_vectors(transcript, svc):
    chunks = transcript["chunks"]
    found = svc.transcript_search(C, "zebra crossing", mode="hybrid", alpha=0.5, k=5)
    assert chunks["crossing"].chunk_id in [m["chunk_id"] for m in found]
    assert all(m["score"] >= 0 for m in found)
    # Vector side only: the chunk with the very same text embeds to the query's own vector.
    exact = svc.transcript_search(C, chunks["river"].text, mode="hybrid", alpha=1.0, k=3)
    assert exact[0]["chunk_id"] == chunks["river"].chunk_id


def test_highlight_escapes_html(transcript, svc):
    found = svc.transcript_search(C, "bold brave")
    assert found[0]["chunk_id"] == transcript["chunks"]["bold"].chunk_id
    assert found[0]["highlighted"] == (
        "the &lt;b&gt;<mark>bold</mark>&lt;/b&gt; &amp; &quot;<mark>brave</mark>&quot; zebra"
    )


def test_video_filter(transcript, svc):
    assert svc.transcript_search(C, "zebra", video_id="no-such-video") == []
    assert svc.transcript_search(C, "zebra", mode="hybrid", video_id="no-such-video") == []
    assert len(svc.transcript_search(C, "zebra", video_id=transcript["video_id"], k=10)) == 4
    fulltext = svc.transcripts.fulltext(C, "zebra", video_id="no-such-video", limit=10)
    assert fulltext == []


def test_invalid_input_is_refused(transcript, svc):
    from vidsearch.errors import InputError, NotFoundError

    for kwargs in ({"q": ""}, {"q": "   "}, {"q": "x", "k": 0}, {"q": "x", "k": 201}, {"q": "x", "alpha": 1.5}):
        with pytest.raises(InputError):
            svc.transcript_search(C, **kwargs)
    with pytest.raises(InputError):
        svc.transcript_search(C, "x", mode="semantic")
    with pytest.raises(InputError):
        svc.transcript_search(C, "x", alpha=float("nan"))
    with pytest.raises(NotFoundError):
        svc.transcript_search("no_such_collection", "x")
    with pytest.raises(InputError):
        svc.moments(C, "zebra")  # nothing named visible
    with pytest.raises(InputError):
        svc.moments(C, "zebra", visible_label="cat", tolerance_s=-1)
    with pytest.raises(InputError):
        svc.video_transcript(C, transcript["video_id"], from_s=4, to_s=3)


def _counts(store, index, vid):
    return (
        len(store.chunk_ids(C, vid)),
        len(index.transcript_ids(C, vid)),
        [(a["segment_index"], a["chunk_count"]) for a in store.audio_status(C, vid)],
    )


def test_rewriting_the_same_segment_changes_no_counts(transcript, store, index):
    vid = transcript["video_id"]
    before = _counts(store, index, vid)
    for _ in range(2):
        transcript["write"](transcript["by_segment"][0], 0, vid)
    assert _counts(store, index, vid) == before


def test_a_rewrite_drops_stale_chunks_in_both_stores(transcript, store, index, svc):
    vid = transcript["video_id"]
    old = transcript["by_segment"][1]
    moved = _chunk(vid, 1, 3.2, 4.5, "a quiet afternoon by the river")  # another start: another id
    try:
        transcript["write"]([moved], 1, vid)
        for ids in (store.chunk_ids(C, vid), index.transcript_ids(C, vid)):
            assert moved.chunk_id in ids and not any(c.chunk_id in ids for c in old)
        assert [m["chunk_id"] for m in svc.transcript_search(C, "afternoon")] == [moved.chunk_id]
        assert {a["segment_index"]: a["chunk_count"] for a in store.audio_status(C, vid)}[1] == 1
    finally:
        transcript["write"](old, 1, vid)
    assert store.chunk_ids(C, vid) == index.transcript_ids(C, vid)


def test_audio_states_are_the_audio_branchs_own(transcript, store, index, search_services):
    from vidsearch.errors import InputError

    vid = transcript["video_id"]
    segment_state = {s["segment_index"]: s["state"] for s in _segments(search_services, vid)}
    failed = [{"expectation": "speech_not_clipped", "observed": 1.0}]
    try:
        store.mark_audio(C, vid, 1, "quarantined", error="clipped audio", failed_expectations=failed, model=MODEL)
        index.delete_transcripts(C, vid, 1)
        row = {a["segment_index"]: a for a in store.audio_status(C, vid)}[1]
        assert row["status"] == "quarantined" and row["chunk_count"] == 0 and row["failed_expectations"] == failed
        assert not any(c.segment_index == 1 for c in _chunks_of(store, vid))
        assert {s["segment_index"]: s["state"] for s in _segments(search_services, vid)} == segment_state
        store.mark_audio(C, vid, 0, "failed", error="worker lost")  # keeps what an earlier run wrote
        assert {a["segment_index"]: a for a in store.audio_status(C, vid)}[0]["chunk_count"] == len(
            transcript["by_segment"][0]
        )
        with pytest.raises(InputError):
            store.mark_audio(C, vid, 0, "done")
        with pytest.raises(InputError):
            store.mark_audio(C, vid, 0, "exploded")  # type: ignore[arg-type]
    finally:
        for segment in (0, 1):
            transcript["write"](transcript["by_segment"][segment], segment, vid)
    assert all(a["status"] == "done" for a in store.audio_status(C, vid))


def _segments(search_services, vid):
    import sqlalchemy as sa
    from vidsearch.stores.catalog import segments

    with search_services.catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(segments).where(segments.c.collection == C, segments.c.video_id == vid)).all()
    return [dict(r._mapping) for r in rows]


def _chunks_of(store, vid):
    from vidsearch.records import TranscriptChunk

    return [
        TranscriptChunk(**{k: v for k, v in r.items() if k in TranscriptChunk.model_fields})
        for r in store.video_transcript(C, vid)
    ]


def test_keyword_search_works_without_vectors(index):
    other = f"tx_novec_{uuid.uuid4().hex[:6]}"
    chunks = [_chunk("v-novec", 0, 0.0, 1.0, "penguins march on ice"), _chunk("v-novec", 0, 1.0, 2.0, "other words")]
    index.replace_segment_transcripts(other, "v-novec", 0, chunks, np.zeros((0, 512), dtype=np.float32))
    try:
        assert [cid for cid, _ in index.transcript_keyword(other, "penguins", 5)] == [chunks[0].chunk_id]
        hybrid = index.transcript_hybrid(other, "penguins", np.ones(512, dtype=np.float32), 5, 0.5)
        assert hybrid and hybrid[0][0] == chunks[0].chunk_id
        with pytest.raises(ValueError):
            index.replace_segment_transcripts(other, "v-novec", 0, chunks, np.zeros((1, 512), dtype=np.float32))
    finally:
        index.delete_transcripts(other, "v-novec")
        index.client.collections.delete(f"VideoTranscripts_{other}")
    assert index.transcript_keyword("never_made", "penguins", 5) == []


def _union(ranges):
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _oracle(chunks, ranges):
    """{(chunk id, start, end)}: each chunk against each range of the union, closed intervals."""
    return {
        (c.chunk_id, round(max(c.start_s, s), 6), round(min(c.end_s, e), 6))
        for c in chunks
        for s, e in _union(ranges)
        if max(c.start_s, s) <= min(c.end_s, e)
    }


def _got(out, vid):
    videos = {v["video_id"]: v for v in out["videos"]}
    moments = videos[vid]["moments"] if vid in videos else []
    return moments, {(m["chunk"]["chunk_id"], round(m["start_s"], 6), round(m["end_s"], 6)) for m in moments}


def test_said_while_a_labelled_track_is_visible(transcript, svc, search_services, ingested):
    """A label on every member of one track: the track is visible from its first to its last member,
    padded by `tolerance_s`; the zebra chunks overlapping that are the moments."""
    vid, track = transcript["video_id"], transcript["track"]
    name = f"tx-{uuid.uuid4().hex[:8]}"
    members = search_services.catalog.track_object_ids(C, [str(track["track_id"])])[str(track["track_id"])]
    svc.labels.add(C, members, name, "positive", "transcript-tests")
    tol = 0.25
    out = svc.moments(C, "zebra", label=name, tolerance_s=tol)
    zebra = [transcript["chunks"][n] for n in ("crossing", "bold", "again", "track")]
    expected = _oracle(zebra, [(max(0.0, track["start_pts_s"] - tol), track["end_pts_s"] + tol)])
    moments, got = _got(out, vid)
    assert transcript["chunks"]["track"].chunk_id in {cid for cid, _, _ in expected}
    assert got == expected
    assert out["chunks_matched"] == 4 and out["truncated"] is False
    for m in moments:
        assert m["track_ids"] == [str(track["track_id"])]
        assert set(m["object_ids"]) <= set(members) and m["object_count"] >= len(m["object_ids"]) > 0
        assert "<mark>zebra</mark>" in m["chunk"]["highlighted"]
        assert m["frame"] is not None
    # Words nobody said: nothing; a label nobody carries: nothing.
    assert svc.moments(C, "giraffe", label=name)["videos"] == []
    assert svc.moments(C, "zebra", label=f"{name}-none")["videos"] == []


def test_said_while_a_detector_label_is_visible(transcript, svc, ingested):
    vid = transcript["video_id"]
    rows = list(ingested["objects"].values())
    label = max(ingested["detector_labels"], key=lambda lb: sum(1 for r in rows if r["label"] == lb))
    by_track: dict[str, list[float]] = {}
    for r in rows:
        if r["label"] == label:
            by_track.setdefault(str(r["track_id"]), []).append(r["pts_s"])
    tol = 0.1
    ranges = [(max(0.0, min(p) - tol), max(p) + tol) for p in by_track.values()]
    zebra = [transcript["chunks"][n] for n in ("crossing", "bold", "again", "track")]
    out = svc.moments(C, "zebra", visible_label=label, video_id=vid, tolerance_s=tol)
    moments, got = _got(out, vid)
    assert got == _oracle(zebra, ranges)
    for m in moments:
        assert m["labels"] == [label] and m["chunk"]["start_s"] <= m["start_s"] <= m["end_s"] <= m["chunk"]["end_s"]
    # The default padding (half the sampling interval, 2 fps here) finds at least as much.
    wide = _got(svc.moments(C, "zebra", visible_label=label, video_id=vid), vid)[1]
    assert {cid for cid, _, _ in wide} >= {cid for cid, _, _ in got}


def test_api_routes(transcript, api_client, anon_client):
    vid = transcript["video_id"]
    r = api_client.get(f"{API}/search/transcript", params={"q": "afternoon"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "keyword" and body["query"] == "afternoon"
    assert [m["chunk_id"] for m in body["results"]] == [transcript["chunks"]["river"].chunk_id]
    frame = body["results"][0]["frame"]
    image = api_client.get(frame["image_url"].split("/vidsearch/", 1)[1])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    r = api_client.get(f"{API}/search/transcript", params={"q": "zebra", "mode": "hybrid", "alpha": 0.3, "k": 2})
    assert r.status_code == 200 and len(r.json()["results"]) == 2
    assert api_client.get(f"{API}/search/transcript", params={"q": "x", "mode": "nope"}).status_code == 422
    assert api_client.get(f"{API}/search/transcript", params={"q": "x", "alpha": 2}).status_code == 422
    r = api_client.get(f"{API}/search/moments", params={"said": "zebra", "visible_label": "no-such-label"})
    assert r.status_code == 200 and r.json()["videos"] == [] and r.json()["chunks_matched"] == 4
    assert api_client.get(f"{API}/search/moments", params={"said": "zebra"}).status_code == 422
    r = api_client.get(f"{API}/videos/{vid}/transcript", params={"from_s": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert all(ch["end_s"] >= 3 for ch in body["chunks"]) and body["chunks"]
    assert [a["status"] for a in body["audio"]] == ["done", "done"]
    assert api_client.get(f"{API}/videos/no-such-video/transcript").status_code == 404
    for path in ("search/transcript?q=zebra", "search/moments?said=zebra&visible_label=x", f"videos/{vid}/transcript"):
        assert anon_client.get(f"{API}/{path}").status_code == 401


def test_delete_video_empties_both_stores(transcript, store, index):
    """Last in this module: it removes the transcript, then writes it back."""
    vid = transcript["video_id"]
    try:
        store.delete_video(C, vid)
        index.delete_transcripts(C, vid)
        assert store.chunk_ids(C, vid) == [] and index.transcript_ids(C, vid) == []
        assert store.audio_status(C, vid) == []
    finally:
        for segment in (0, 1):
            transcript["write"](transcript["by_segment"][segment], segment, vid)
    assert store.chunk_ids(C, vid) == index.transcript_ids(C, vid) != []
