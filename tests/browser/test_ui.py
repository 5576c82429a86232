"""The vidsearch UI page (plugins/vidsearch_api/static/) in a real headless Chromium, against the real API.

The API runs on a real uvicorn (the `live_api` fixture of tests/search/conftest.py) over data ingested
from a generated video with tiny models. The browser logs in the way the Airflow UI leaves a browser
after its login: a `_token` cookie holding a JWT for the server's origin.

Covers: picking the collection and video, scrubbing frames (keys, buttons, slider), boxes drawn over
the frame at the displayed scale, finding similar objects from a box (mouse and keyboard), limiting a
search to a time range (and refusing a bad one before sending it), labeling objects positive and
negative under a name full of HTML (which must stay text), the live propagation preview and
propagating, the labels persisting across a reload, undoing a propagation, and the login message for a
browser without a session (and for one whose session ends while the page is open);
the video player (an object's video from the ranged video route at its `pts_s`, its box over the
picture, keyboard use, Escape) and its fallback for a source this browser cannot play; the transcript
panel (chunks seeded as the audio branch writes them: listed in time order, the chunk at the frame's
time marked while stepping, a click going to its time, HTML in a chunk staying text, the empty states
and the segments' audio states) and the "Said" search (keyword and hybrid, and "said X while Y is
visible", checked against the API's answers; a click on a moment going to it; a 422 in the status line). The test video
(the pipeline-ingested H.264 MP4) plays in Debian's Chromium as it is: no extra rendition is generated.

Uses Debian's Chromium (/usr/bin/chromium); Playwright's own browsers are not needed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

pytestmark = pytest.mark.integration

from playwright import sync_api as playwright_sync  # noqa: E402 - pinned: a missing one fails, never skips

expect = playwright_sync.expect

CHROMIUM = os.environ.get("VIDSEARCH_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 30_000  # the first text search loads the CLIP text tower
expect.set_options(timeout=TIMEOUT_MS)


def _search_fixtures():
    """The fixtures of tests/search/conftest.py (`ingested`, `live_api`, ...), which pytest only offers
    to tests under tests/search/: loaded here under a private module name and re-exported below."""
    path = Path(__file__).resolve().parents[1] / "search" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_vidsearch_search_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_fx = _search_fixtures()
search_services = _fx.search_services
ingested = _fx.ingested
api_token = _fx.api_token
api_app = _fx.api_app
live_api = _fx.live_api


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    # `make test` installs Debian's chromium (scripts/install-system-deps.sh): missing is a failure.
    assert os.access(CHROMIUM, os.X_OK), f"no Chromium at {CHROMIUM}: run scripts/install-system-deps.sh"
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("VIDSEARCH_SCREENSHOT_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def label_name(live_api):
    """A fresh label name full of HTML and quotes (it must be shown as text, never parsed); its labels
    and propagations are removed afterwards, so the other tests of the session see the data untouched."""
    import httpx

    name = f'<b>bold</b> "q" {uuid.uuid4().hex[:6]}'
    yield name
    api = f"{live_api.base_url}api/collections/{_quote(live_api.data['collection'])}"
    with httpx.Client(headers=live_api.headers, timeout=60) as client:
        for p in client.get(f"{api}/labels/{_quote(name)}/propagations").json():
            if not p["undone_at"]:
                client.delete(f"{api}/propagations/{p['propagation_id']}").raise_for_status()
        body = {"object_ids": live_api.data["object_ids"], "name": name}
        client.request("DELETE", f"{api}/labels", json=body).raise_for_status()
        assert name not in {c["name"] for c in client.get(f"{api}/labels").json()}


def _quote(value: str) -> str:
    return quote(value, safe="")


def _context(browser, live_api, *, logged_in: bool):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    if logged_in:
        # Exactly what the Airflow UI's login leaves in the browser: the JWT in the `_token` cookie.
        context.add_cookies([{"name": live_api.cookie_name, "value": live_api.token, "url": live_api.origin}])
    return context


class _Watch:
    """JavaScript exceptions, console errors and failed HTTP responses of a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        page.on("response", self._response)

    def _response(self, response) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.request.method} {response.url}: {response.status} {response.text()[:300]}")


@pytest.fixture
def page(browser, live_api):
    context = _context(browser, live_api, logged_in=True)
    page = context.new_page()
    page.watch = _Watch(page)
    yield page
    context.close()


def _api(page, live_api, method: str, path: str, **kwargs):
    """A JSON API call with the page's cookies (for expected values, computed beside the UI)."""
    response = page.context.request.fetch(f"{live_api.base_url}api/{path}", method=method, **kwargs)
    assert response.ok, f"{method} {path}: {response.status} {response.text()}"
    return response.json()


def _open(page, live_api, collection: str, video_id: str) -> None:
    page.goto(live_api.base_url)
    page.wait_for_selector("body[data-ready=true]")
    if page.input_value("#collection-select") != collection:
        page.select_option("#collection-select", collection)
    expect(page.locator("#video-select")).to_be_enabled()
    if page.input_value("#video-select") != video_id:
        page.select_option("#video-select", video_id)


# -------------------------------------------------------------------------------------------- tests


def test_browse_label_propagate_and_persist(page, live_api, screenshot_dir, label_name):
    label = label_name
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    frames_page = _api(page, live_api, "GET", f"collections/{collection}/videos/{video_id}/frames")
    total = frames_page["total"]
    frames = frames_page["frames"]
    assert total == data["frames"] >= 4

    _open(page, live_api, collection, video_id)
    info = page.locator("#frame-info")
    boxes = page.locator("#boxes .box")

    # -- scrubbing: first frame, keys, buttons, slider -------------------------------------------
    expect(info).to_contain_text(f"Frame 1 / {total}")
    expect(boxes).to_have_count(len(frames[0]["objects"]))
    page.locator("body").press("ArrowRight")
    expect(info).to_contain_text(f"Frame 2 / {total}")
    page.click("#next-frame")
    expect(info).to_contain_text(f"Frame 3 / {total}")
    page.keyboard.press("ArrowLeft")
    expect(info).to_contain_text(f"Frame 2 / {total}")
    page.fill("#frame-slider", str(total - 1))
    expect(info).to_contain_text(f"Frame {total} / {total}")
    expect(page.locator("#next-frame")).to_be_disabled()
    page.click("#prev-frame")
    expect(info).to_contain_text(f"Frame {total - 1} / {total}")

    # The frame with the most objects: its image is shown and every box sits where the API says,
    # scaled from frame pixels to the displayed size.
    busiest = max(range(total), key=lambda i: len(frames[i]["objects"]))
    frame = frames[busiest]
    page.fill("#frame-slider", str(busiest))
    expect(info).to_contain_text(f"Frame {busiest + 1} / {total}")
    expect(boxes).to_have_count(len(frame["objects"]))
    image = page.locator("#frame-image")
    expect(image).to_have_attribute("src", re.compile(re.escape(frame["image_url"]) + "$"))
    page.wait_for_function(
        "() => { const i = document.getElementById('frame-image'); return i.complete && i.naturalWidth > 0; }"
    )
    shown = image.bounding_box()
    sx, sy = shown["width"] / frame["width"], shown["height"] / frame["height"]
    assert shown["width"] > frame["width"] * 0.99  # small frames are scaled up, not shown tiny
    for obj in frame["objects"][:5]:
        box = page.locator(f'#boxes .box[data-object-id="{obj["object_id"]}"]')
        got = box.bounding_box()
        x0, y0, x1, y1 = obj["box"]
        assert got["x"] == pytest.approx(shown["x"] + x0 * sx, abs=2)
        assert got["y"] == pytest.approx(shown["y"] + y0 * sy, abs=2)
        assert got["width"] == pytest.approx((x1 - x0) * sx, abs=2)
        assert got["height"] == pytest.approx((y1 - y0) * sy, abs=2)
        expect(box).to_contain_text(f"{obj['detector_label']} {obj['score']:.2f}")

    # -- a box, clicked with the mouse: its crop and similar objects --------------------------------
    smallest = min(frame["objects"], key=lambda o: (o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]))
    page.locator(f'#boxes .box[data-object-id="{smallest["object_id"]}"]').click()
    expect(page.locator(f'#boxes .box[data-object-id="{smallest["object_id"]}"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#query-card")).to_have_attribute("data-object-id", smallest["object_id"])
    expect(page.locator("#query-card")).to_contain_text(f"Query: {smallest['detector_label']}")
    results = page.locator("#results > li")
    expect(results.first).to_be_visible()

    # ... and another one with the keyboard (Tab to the box, Enter).
    query = frame["objects"][0] if frame["objects"][0] is not smallest else frame["objects"][1]
    page.locator(f'#boxes .box[data-object-id="{query["object_id"]}"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator(f'#boxes .box[data-object-id="{query["object_id"]}"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#query-card")).to_have_attribute("data-object-id", query["object_id"])
    similar = _api(
        page,
        live_api,
        "GET",
        f"collections/{collection}/objects/{query['object_id']}/similar",
        params={"k": 20, "min_similarity": 0, "group": "track"},
    )
    # The UI searches by track (moments): one card per track, its best member shown.
    expected_ids = [t["best"]["object_id"] for t in similar["results"]]
    assert len(expected_ids) >= 5, "the tiny models should give at least a few similar objects"
    expect(results).to_have_count(len(expected_ids))
    assert results.evaluate_all("items => items.map(li => li.dataset.objectId)") == expected_ids
    first = similar["results"][0]
    expect(results.first.locator(".track-line")).to_contain_text(f"{first['object_count']} frame")
    sims = [float(t) for t in page.locator("#results .sim").all_inner_texts()]
    assert sims == sorted(sims, reverse=True)
    assert sims[0] == pytest.approx(similar["results"][0]["similarity"], abs=1e-3)
    page.wait_for_function(
        "() => { const i = document.querySelector('#query-card img'); return i && i.complete && i.naturalWidth > 0; }"
    )
    page.wait_for_function(
        "() => { const i = document.querySelector('#results li img'); return i && i.complete && i.naturalWidth > 0; }"
    )

    # The k input limits the results.
    page.fill("#k-input", "3")
    page.click("#refresh-results")
    expect(results).to_have_count(3)
    page.fill("#k-input", "20")
    page.click("#refresh-results")
    expect(results).to_have_count(len(expected_ids))
    # Every object instead of one per track: the object search's results.
    by_object = _api(
        page,
        live_api,
        "GET",
        f"collections/{collection}/objects/{query['object_id']}/similar",
        params={"k": 20, "min_similarity": 0, "group": "object"},
    )["results"]

    # -- a moment labelled: selecting a result shown by track labels every object of its track -----
    moment_label = f"{label} moment"
    page.fill("#label-name", moment_label)
    page.uncheck("#include-query")
    page.check(f'#results li[data-object-id="{expected_ids[0]}"] input[type=checkbox]')
    expect(page.locator("#selection-info")).to_contain_text("labels every object of its track")
    page.click("#label-positive")
    n = first["object_count"]
    expect(page.locator("#status")).to_contain_text(f"Labeled {n} object{'' if n == 1 else 's'} positive")
    counts = {c["name"]: c for c in _api(page, live_api, "GET", f"collections/{collection}/labels")}
    assert counts[moment_label]["positive"] == n
    page.check(f'#results li[data-object-id="{expected_ids[0]}"] input[type=checkbox]')
    page.click("#label-remove")
    expect(page.locator("#status")).to_contain_text(f"Removed label “{moment_label}” from {n} object")
    page.check("#include-query")

    # The rest of this test labels single objects: every object, not one per track.
    page.select_option("#group-select", "object")
    expect(results).to_have_count(len(by_object))
    assert results.evaluate_all("items => items.map(li => li.dataset.objectId)") == [o["object_id"] for o in by_object]
    expected_ids = [o["object_id"] for o in by_object]

    # -- label: the query object and two results positive, one more result negative ---------------
    positives = [query["object_id"], expected_ids[0], expected_ids[1]]
    negative = expected_ids[-1]
    page.fill("#label-name", label)
    # A new name has no positive examples yet: nothing to propagate from.
    expect(page.locator("#preview-info")).to_contain_text("first: propagation starts from them")
    expect(page.locator("#propagate")).to_be_disabled()
    page.check(f'#results li[data-object-id="{expected_ids[0]}"] input[type=checkbox]')
    page.check(f'#results li[data-object-id="{expected_ids[1]}"] input[type=checkbox]')
    expect(page.locator("#selection-info")).to_contain_text("3 objects to label")
    page.click("#label-positive")
    expect(page.locator("#status")).to_contain_text(f"Labeled 3 objects positive as “{label}”")

    page.uncheck("#include-query")
    page.check(f'#results li[data-object-id="{negative}"] input[type=checkbox]')
    expect(page.locator("#selection-info")).to_contain_text("1 object to label")
    page.click("#label-negative")
    expect(page.locator("#status")).to_contain_text(f"Labeled 1 object negative as “{label}”")

    row = page.locator("#labels-body tr").filter(has_text=label)
    expect(row).to_have_count(1)
    expect(row.locator("th")).to_have_text(label)
    expect(row.locator("td")).to_have_text(["3", "1", "0"])
    # The labels show up on the boxes and the result cards as text.
    expect(page.locator(f'#boxes .box[data-object-id="{query["object_id"]}"] .chip.positive')).to_have_text(
        re.compile(re.escape(label))
    )
    expect(page.locator(f'#results li[data-object-id="{expected_ids[0]}"] .chip.positive')).to_contain_text(label)
    # Nothing of the label was parsed as HTML.
    assert page.locator("b").count() == 0
    assert "<b>bold</b>" not in page.evaluate("document.body.innerHTML")
    counts = {c["name"]: c for c in _api(page, live_api, "GET", f"collections/{collection}/labels")}
    assert (counts[label]["positive"], counts[label]["negative"]) == (3, 1)

    # -- propagation: live preview, then apply -----------------------------------------------------
    def api_preview(threshold: float, unit: str) -> tuple[list[str], int]:
        path = f"collections/{collection}/labels/{_quote(label)}/propagation/preview"
        out = _api(page, live_api, "POST", path, data={"threshold": threshold, "unit": unit})
        assert out["count"] == len(out["candidates"])
        return [c["object_id"] for c in out["candidates"]], len(out["tracks"])

    # By object, then (the default) by whole track: the preview says how many objects, in how many tracks.
    preview = page.locator("#preview-info")
    expect(page.locator("#prop-unit")).to_have_value("track")
    page.select_option("#prop-unit", "object")
    high = len(api_preview(1.0, "object")[0])
    page.fill("#threshold", "1")
    expect(page.locator("#threshold-value")).to_have_text("1.00")
    expect(preview).to_have_text(re.compile(rf"^Would label {high} objects? at threshold 1\.00"))
    by_object = len(api_preview(0.0, "object")[0])
    page.fill("#threshold", "0")
    expect(preview).to_have_text(re.compile(rf"^Would label {by_object} objects? at threshold 0\.00"))
    page.select_option("#prop-unit", "track")
    candidates, n_tracks = api_preview(0.0, "track")
    low = len(candidates)
    assert low > high and n_tracks > 0, "at threshold 0 some tracks should be proposed"
    expect(preview).to_have_text(re.compile(rf"^Would label {low} objects? in {n_tracks} tracks? at threshold 0\.00"))
    expect(page.locator("#propagate")).to_be_enabled()

    screenshot = screenshot_dir / "ui-labeled.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    page.click("#propagate")
    expect(page.locator("#status")).to_contain_text(f"Propagated “{label}” to {low} object")
    expect(row.locator("td")).to_have_text(["3", "1", str(low)])
    expect(page.locator("#propagations li")).to_have_count(1)
    expect(page.locator("#propagations li").first).to_contain_text(f"{low} object")
    expect(page.locator("#propagations li").first).to_contain_text("by track")
    (record,) = _api(page, live_api, "GET", f"collections/{collection}/labels/{_quote(label)}/propagations")
    assert sorted(record["sources"]) == sorted(positives) and record["negatives"] == [negative]
    assert record["unit"] == "track"
    # Propagated labels are shown (as dashed chips) on the boxes and results that got one.
    shown_ids = page.locator("#boxes .box, #results > li").evaluate_all("els => els.map(e => e.dataset.objectId)")
    got_one = [i for i in shown_ids if i in set(candidates)]
    assert got_one, "some shown object should have been proposed at threshold 0"
    for object_id in got_one:
        chip = page.locator(f'[data-object-id="{object_id}"] .chip.propagated').first
        expect(chip).to_contain_text(label)

    screenshot = screenshot_dir / "ui-propagated.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    # -- reload: everything persisted --------------------------------------------------------------
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#collection-select")).to_have_value(collection)
    expect(page.locator("#video-select")).to_have_value(video_id)
    expect(info).to_contain_text(f"Frame {busiest + 1} / {total}")  # the position is in the URL hash
    row = page.locator("#labels-body tr").filter(has_text=label)
    expect(row.locator("td")).to_have_text(["3", "1", str(low)])
    expect(page.locator(f'#boxes .box[data-object-id="{query["object_id"]}"] .chip.positive')).to_contain_text(label)

    # -- undo the propagation from its list ----------------------------------------------------------
    row.locator("th button").click()  # use this label
    expect(page.locator("#label-name")).to_have_value(label)
    undo = page.locator("#propagations li button", has_text="Undo")
    expect(undo).to_have_count(1)
    undo.click()
    expect(page.locator("#status")).to_contain_text(f"removed {low} label")
    expect(row.locator("td")).to_have_text(["3", "1", "0"])
    expect(page.locator("#propagations li.undone")).to_have_count(1)
    assert page.locator("b").count() == 0

    assert page.watch.errors == []


def test_text_search_shows_results(page, live_api):
    data = live_api.data
    _open(page, live_api, data["collection"], data["video_id"])
    page.fill("#min-sim-input", "-1")  # tiny random text tower: similarities are anywhere in -1..1
    page.fill("#text-query", "a red box")
    page.press("#text-query", "Enter")
    expect(page.locator("#results-heading")).to_have_text("Text search: “a red box”")
    expected = _api(
        page,
        live_api,
        "GET",
        f"collections/{data['collection']}/search/text",
        params={"q": "a red box", "k": 20, "min_similarity": -1, "group": "track"},
    )["results"]
    assert expected
    results = page.locator("#results > li")
    expect(results).to_have_count(len(expected))
    assert results.evaluate_all("items => items.map(li => li.dataset.objectId)") == [
        t["best"]["object_id"] for t in expected
    ]
    # Each card names its video and time (results come from every video of the collection).
    expect(results.first.locator(".video-line")).to_contain_text("shapes.mp4")
    expect(page.locator("#query-card")).to_be_hidden()
    assert page.watch.errors == []


def test_image_search_shows_the_moments_of_an_uploaded_picture(page, live_api, tmp_path):
    """Query by example from the UI: an object's crop, uploaded, gives the API's image-search results
    for the same bytes, one card per track."""
    data = live_api.data
    collection = data["collection"]
    _open(page, live_api, collection, data["video_id"])
    oid = data["object_ids"][0]
    crop = page.context.request.get(f"{live_api.base_url}api/collections/{collection}/objects/{oid}/crop").body()
    path = tmp_path / "crop.jpg"
    path.write_bytes(crop)
    page.set_input_files("#image-query", str(path))
    page.click("#image-search button[type=submit]")
    expect(page.locator("#results-heading")).to_have_text("Image search: crop.jpg")
    response = page.context.request.post(
        f"{live_api.base_url}api/collections/{collection}/search/image",
        params={"k": 20, "min_similarity": 0, "group": "track"},
        multipart={"image": {"name": "crop.jpg", "mimeType": "image/jpeg", "buffer": crop}},
    )
    assert response.ok, response.text()
    expected = [t["best"]["object_id"] for t in response.json()["results"]]
    assert expected
    results = page.locator("#results > li")
    expect(results).to_have_count(len(expected))
    assert results.evaluate_all("items => items.map(li => li.dataset.objectId)") == expected
    assert page.watch.errors == []


def _result_ids(page) -> list[str]:
    return page.locator("#results > li").evaluate_all("items => items.map(li => li.dataset.objectId)")


def _wait_for_results(page, ids: list[str]) -> None:
    """Until the result cards are exactly `ids`, in order (earlier searches may answer in between)."""
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#results > li')].map(li => li.dataset.objectId))"
        " === JSON.stringify(ids)",
        arg=ids,
    )


def test_a_time_range_limits_the_results_and_a_bad_one_is_not_sent(page, live_api):
    """The time range inputs ("From (s)", "To (s)"): sent as from_s / to_s (seconds, or m:ss typed),
    every result inside the range, by track and by object; from > to or a negative time is said in the
    status line and no search is sent."""
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    index, frame = _busiest_frame(page, live_api)
    query = frame["objects"][0]
    similar = f"collections/{collection}/objects/{query['object_id']}/similar"
    everything = _api(page, live_api, "GET", similar, params={"k": 20, "min_similarity": 0, "group": "track"})
    times = sorted({t["best"]["pts_s"] for t in everything["results"]})
    assert len(times) >= 4, times
    # Inside the results' times, so that some results fall outside it; the ends are included.
    lo, hi = times[len(times) // 4], times[(3 * len(times)) // 4]
    assert lo < hi

    def expected(group: str) -> list[str]:
        params = {"k": 20, "min_similarity": 0, "group": group, "from_s": lo, "to_s": hi}
        results = _api(page, live_api, "GET", similar, params=params)["results"]
        return [t["best"]["object_id"] for t in results] if group == "track" else [o["object_id"] for o in results]

    sent: list[dict[str, list[str]]] = []
    page.on("request", lambda r: "/similar?" in r.url and sent.append(parse_qs(urlsplit(r.url).query)))

    _open(page, live_api, collection, video_id)
    page.fill("#frame-slider", str(index))
    expect(page.locator("#frame-info")).to_contain_text(f"Frame {index + 1} /")
    page.locator(f'#boxes .box[data-object-id="{query["object_id"]}"]').focus()
    page.keyboard.press("Enter")
    _wait_for_results(page, [t["best"]["object_id"] for t in everything["results"]])
    assert "from_s" not in sent[-1] and "to_s" not in sent[-1]  # empty: no bound

    # From in seconds, To as m:ss (what the cards show), Enter in the form.
    page.fill("#from-s", f"{lo:g}")
    page.fill("#to-s", f"{int(hi // 60)}:{hi % 60:06.3f}")
    page.press("#to-s", "Enter")
    by_track = expected("track")
    # Tracks here span the video: a range changes which member of a track is shown, not always how many.
    assert by_track and by_track != [t["best"]["object_id"] for t in everything["results"]]
    _wait_for_results(page, by_track)
    assert float(sent[-1]["from_s"][0]) == lo and float(sent[-1]["to_s"][0]) == pytest.approx(hi)
    for object_id in by_track:
        pts = _api(page, live_api, "GET", f"collections/{collection}/objects/{object_id}")["pts_s"]
        assert lo <= pts <= hi, (object_id, pts, lo, hi)

    # The range stays on when the grouping changes: every object, each inside it.
    page.select_option("#group-select", "object")
    by_object = expected("object")
    unbounded = _api(page, live_api, "GET", similar, params={"k": 20, "min_similarity": 0, "group": "object"})
    assert any(not lo <= o["pts_s"] <= hi for o in unbounded["results"]), "the range should leave some objects out"
    _wait_for_results(page, by_object)
    assert float(sent[-1]["from_s"][0]) == lo and sent[-1]["group"] == ["object"]
    for object_id in by_object:
        pts = _api(page, live_api, "GET", f"collections/{collection}/objects/{object_id}")["pts_s"]
        assert lo <= pts <= hi, (object_id, pts, lo, hi)

    # From after To: said in the status line, both inputs marked; nothing sent, the results stay.
    before = len(sent)
    page.fill("#from-s", f"{hi + 1:g}")
    page.press("#from-s", "Tab")  # change
    status = page.locator("#status")
    expect(status).to_contain_text("Not searched")
    expect(status).to_contain_text("is after")
    expect(status).to_have_class(re.compile(r"\berror\b"))
    expect(page.locator("#from-s")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#to-s")).to_have_attribute("aria-invalid", "true")
    page.click("#refresh-results")  # "Search again" neither
    # A negative time: the same.
    page.fill("#from-s", "-1")
    page.press("#from-s", "Enter")
    expect(status).to_contain_text("cannot be negative")
    assert _result_ids(page) == by_object

    # Back to a valid range: the message goes, the marks too, and the next search is the first one sent.
    page.fill("#from-s", f"{lo:g}")
    page.press("#from-s", "Tab")
    expect(status).to_have_text("")
    expect(page.locator("#from-s")).to_have_attribute("aria-invalid", "false")
    with page.expect_request(lambda r: "/similar?" in r.url):
        page.click("#refresh-results")
    _wait_for_results(page, by_object)
    assert len(sent) == before + 1, sent[before:]
    assert float(sent[-1]["from_s"][0]) == lo and float(sent[-1]["to_s"][0]) == pytest.approx(hi)
    assert page.watch.errors == []


def test_the_timeline_shows_every_track_and_goes_to_its_first_frame(page, live_api):
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    tracks = _api(page, live_api, "GET", f"collections/{collection}/videos/{video_id}/tracks")
    _open(page, live_api, collection, video_id)
    bars = page.locator("#timeline .track")
    expect(bars).to_have_count(len(tracks))
    assert bars.evaluate_all("els => els.map(e => e.dataset.trackId)") == [t["track_id"] for t in tracks]
    # No two bars of one lane overlap.
    boxes = [b.bounding_box() for b in bars.all()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if abs(a["y"] - b["y"]) < 1:
                assert a["x"] + a["width"] <= b["x"] + 0.5 or b["x"] + b["width"] <= a["x"] + 0.5
    # The latest-starting track: its bar, clicked, shows its first frame.
    last = tracks[-1]
    frames = _api(page, live_api, "GET", f"collections/{collection}/videos/{video_id}/frames", params={"limit": 1000})
    index = next(i for i, f in enumerate(frames["frames"]) if f["pts_s"] >= last["start_pts_s"] - 1e-6)
    page.locator(f'#timeline .track[data-track-id="{last["track_id"]}"]').click()
    expect(page.locator("#frame-info")).to_contain_text(f"Frame {index + 1} /")
    assert page.watch.errors == []


def test_unauthenticated_browser_is_sent_to_login(browser, live_api):
    context = _context(browser, live_api, logged_in=False)
    try:
        page = context.new_page()
        response = page.goto(live_api.base_url)
        # Every route requires authentication, the page included: without credentials it answers 401
        # with a sign-in page instead of the UI.
        assert response.status == 401
        message = page.locator("#auth-message")
        expect(message).to_be_visible()
        expect(message).to_contain_text("not signed in")
        link = page.locator("#login-link")
        expect(link).to_have_attribute("href", re.compile(r"^/auth/login\?next=%2Fvidsearch%2F"))
        # No data was shown.
        expect(page.locator("#collection-select option")).to_have_count(0)
        expect(page.locator("#boxes .box")).to_have_count(0)
    finally:
        context.close()


def test_session_ending_while_open_shows_login_message(page, live_api):
    data = live_api.data
    _open(page, live_api, data["collection"], data["video_id"])
    expect(page.locator("#boxes .box").first).to_be_attached()
    expect(page.locator("#auth-message")).to_be_hidden()
    page.context.clear_cookies()  # logged out elsewhere / the token expired
    page.fill("#text-query", "anything")
    page.press("#text-query", "Enter")
    expect(page.locator("#auth-message")).to_be_visible()
    expect(page.locator("#login-link")).to_have_attribute("href", re.compile(r"^/auth/login\?next="))


# ----------------------------------------------------------------------------------- video player


def _busiest_frame(page, live_api):
    data = live_api.data
    frames = _api(page, live_api, "GET", f"collections/{data['collection']}/videos/{data['video_id']}/frames")
    index = max(range(len(frames["frames"])), key=lambda i: len(frames["frames"][i]["objects"]))
    # Not the first frame: the player has to seek to it.
    index = index if frames["frames"][index]["pts_s"] > 0.5 else len(frames["frames"]) // 2
    return index, frames["frames"][index]


def _player_at_object(page, obj, width: int, height: int, frame_rate: float) -> None:
    """The player is open on `obj`, its video at the object's frame, the box drawn over the picture
    where the object is, scaled to the displayed size."""
    dialog = page.locator("#player")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("data-object-id", obj["object_id"])
    expect(dialog).to_have_attribute("data-state", "ready")
    current = page.evaluate("document.getElementById('player-video').currentTime")
    assert current == pytest.approx(obj["pts_s"], abs=min(0.1, 1 / frame_rate)), (current, obj["pts_s"])
    box = page.locator("#player-box")
    expect(box).to_be_visible()
    expect(dialog).to_have_attribute("data-box-visible", "true")
    expect(box).to_contain_text(obj["detector_label"])
    shown = page.locator("#player-video").bounding_box()
    assert shown["width"] / shown["height"] == pytest.approx(width / height, rel=0.02)
    sx, sy = shown["width"] / width, shown["height"] / height
    got = box.bounding_box()
    x0, y0, x1, y1 = obj["box"]
    assert got["x"] == pytest.approx(shown["x"] + x0 * sx, abs=2)
    assert got["y"] == pytest.approx(shown["y"] + y0 * sy, abs=2)
    assert got["width"] == pytest.approx((x1 - x0) * sx, abs=2)
    assert got["height"] == pytest.approx((y1 - y0) * sy, abs=2)
    # The picture is really decoded, not just the metadata.
    assert page.evaluate("document.getElementById('player-video').videoWidth") == width


def test_this_chromium_plays_the_stored_source(page, live_api):
    """What Debian's Chromium here plays: the ingested H.264 MP4 (the test video) decodes; so do VP9 in
    WebM; HEVC does not (the player falls back to a download link for it)."""
    data = live_api.data
    _open(page, live_api, data["collection"], data["video_id"])
    (video,) = _api(page, live_api, "GET", f"collections/{data['collection']}/videos")
    support = page.evaluate(
        """types => types.map(t => document.createElement('video').canPlayType(t))""",
        [video["playback_type"], 'video/webm; codecs="vp9"', 'video/mp4; codecs="hvc1.1.6.L93.B0"'],
    )
    assert support[0] == "probably" and support[1] == "probably", support
    print(f"canPlayType: {video['playback_type']} -> {support[0]}; vp9/webm -> {support[1]}; hevc -> {support[2]!r}")


def test_playing_an_object_opens_its_video_at_its_frame_with_its_box(page, live_api, screenshot_dir):
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    (video,) = _api(page, live_api, "GET", f"collections/{collection}/videos")
    index, frame = _busiest_frame(page, live_api)
    _open(page, live_api, collection, video_id)
    page.fill("#frame-slider", str(index))
    expect(page.locator("#frame-info")).to_contain_text(f"Frame {index + 1} /")
    # The smallest box: the viewer draws it on top, so it is clickable.
    obj = min(frame["objects"], key=lambda o: (o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]))

    # A box clicked: its query card offers to play the video there.
    page.locator(f'#boxes .box[data-object-id="{obj["object_id"]}"]').click()
    expect(page.locator("#query-card")).to_have_attribute("data-object-id", obj["object_id"])
    play = page.locator("#query-card button.play")
    play.click()
    _player_at_object(page, obj, frame["width"], frame["height"], video["frame_rate"])
    screenshot = screenshot_dir / "ui-player.png"
    page.screenshot(path=str(screenshot))
    print(f"screenshot: {screenshot}")

    # Playing on: the box belongs to its frame and goes; "Back to the object's frame" brings both back.
    page.evaluate("document.getElementById('player-video').play()")
    page.wait_for_function(f"document.getElementById('player-video').currentTime > {obj['pts_s'] + 0.3}")
    page.evaluate("document.getElementById('player-video').pause()")
    expect(page.locator("#player-box")).to_be_hidden()
    page.click("#player-seek")
    expect(page.locator("#player-box")).to_be_visible()
    # The box can be switched off and on.
    page.uncheck("#player-box-toggle")
    expect(page.locator("#player-box")).to_be_hidden()
    page.check("#player-box-toggle")
    expect(page.locator("#player-box")).to_be_visible()

    # Escape closes it, stops the video and gives the focus back to the button that opened it.
    page.keyboard.press("Escape")
    expect(page.locator("#player")).to_be_hidden()
    page.wait_for_function("document.getElementById('player-video').getAttribute('src') === null")  # on `close`
    expect(play).to_be_focused()

    # A search result's Play button: that result's object, at its own time.
    results = page.locator("#results > li")
    expect(results.first).to_be_visible()
    result_id = results.nth(0).get_attribute("data-object-id")
    result = _api(page, live_api, "GET", f"collections/{collection}/objects/{result_id}")
    results.nth(0).locator("button.play").click()
    _player_at_object(page, result, video["width"], video["height"], video["frame_rate"])
    page.click("#player-close")
    expect(page.locator("#player")).to_be_hidden()

    # Keyboard only: Tab to a box, P plays it; the player's controls take the focus; Escape closes.
    box = page.locator(f'#boxes .box[data-object-id="{obj["object_id"]}"]')
    box.focus()
    page.keyboard.press("p")
    _player_at_object(page, obj, frame["width"], frame["height"], video["frame_rate"])
    assert page.evaluate("document.activeElement.id") == "player-video"
    page.keyboard.press("ArrowLeft")  # the video's keys, not the frame viewer's
    expect(page.locator("#frame-info")).to_contain_text(f"Frame {index + 1} /")
    page.keyboard.press("Escape")
    expect(page.locator("#player")).to_be_hidden()
    expect(box).to_be_focused()
    assert page.watch.errors == []


def test_a_source_this_browser_cannot_play_gets_a_message_and_a_download_link(page, live_api):
    """A codec canPlayType refuses (HEVC here), and a file the media element fails to decode: the player
    says so and links the file instead of showing a black box."""
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    videos_url = f"{live_api.base_url}api/collections/{collection}/videos"

    def hevc(route):
        response = route.fetch()
        body = response.json()
        for v in body:
            v["video_codec"] = "hevc"
            v["playback_type"] = 'video/mp4; codecs="hvc1.1.6.L93.B0"'
        route.fulfill(response=response, json=body)

    page.route(videos_url, hevc)
    _open(page, live_api, collection, video_id)
    page.locator("#boxes .box").first.focus()  # a box, by keyboard (the mouse may hit one on top)
    page.keyboard.press("Enter")
    page.locator("#query-card button.play").click()
    dialog = page.locator("#player")
    expect(dialog).to_have_attribute("data-state", "unplayable")
    expect(page.locator("#player-unplayable")).to_be_visible()
    expect(page.locator("#player-reason")).to_contain_text("cannot play")
    expect(page.locator("#player-reason")).to_contain_text("hevc")
    link = page.locator("#player-download")
    expect(link).to_have_attribute("href", re.compile(rf"/api/collections/{collection}/videos/{video_id}/video$"))
    expect(link).to_be_focused()
    expect(page.locator("#player-video")).to_be_hidden()
    # The link fetches the real file (same-origin, with the session's cookie).
    response = page.context.request.get(link.get_attribute("href"))
    assert response.status == 200 and response.headers["content-type"] == "video/mp4"
    # "Show the object's frame" closes the player and shows the frame in the viewer.
    page.click("#player-show-frame")
    expect(dialog).to_be_hidden()
    page.unroute(videos_url)

    # canPlayType says yes, the bytes say otherwise: the media element's error decides.
    page.route(
        re.compile(r".*/videos/[^/]+/video$"), lambda route: route.fulfill(body=b"\0" * 4096, content_type="video/mp4")
    )
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.locator("#boxes .box").first.focus()  # a box, by keyboard (the mouse may hit one on top)
    page.keyboard.press("Enter")
    page.locator("#query-card button.play").click()
    expect(dialog).to_have_attribute("data-state", "unplayable")
    expect(page.locator("#player-reason")).to_contain_text("cannot play")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.watch.errors == []


# ------------------------------------------------------------------------------------- transcripts


@pytest.fixture(scope="module")
def transcript(live_api, search_services):
    """Transcript chunks on the test video, written the way the audio branch's index task writes them
    (`TranscriptStore.replace_segment` in Postgres, `ObjectIndex.replace_segment_transcripts` in
    Weaviate, no vectors: keyword search needs none), placed on sampled frames' times; one holds HTML,
    which must stay text. Removed afterwards."""
    import httpx
    from vidsearch.records import TranscriptChunk, transcript_chunk_id
    from vidsearch.stores.transcripts import TranscriptStore

    collection, video_id = live_api.data["collection"], live_api.data["video_id"]
    api = f"{live_api.base_url}api/collections/{_quote(collection)}"
    with httpx.Client(headers=live_api.headers, timeout=60) as client:
        response = client.get(f"{api}/videos/{video_id}/frames", params={"limit": 1000})
        response.raise_for_status()
    frames = response.json()["frames"]
    assert len(frames) >= 11
    store = TranscriptStore(search_services.catalog.engine)
    index = search_services.index()

    def chunk(first: int, last: int, text: str) -> TranscriptChunk:
        """A chunk over the sampled frames first..last (and not the ones around them)."""
        segment = frames[first]["segment_index"]
        start = round(frames[first]["pts_s"] - 0.05, 3) if first else 0.0
        return TranscriptChunk(
            chunk_id=transcript_chunk_id(video_id, segment, start),
            video_id=video_id,
            segment_index=segment,
            start_s=start,
            end_s=round(frames[last]["pts_s"] + 0.05, 3),
            text=text,
            language="en",
            avg_logprob=-0.2,
            no_speech_prob=0.01,
        )

    chunks = {
        "octopus": chunk(1, 2, "the marmalade octopus waves hello"),
        "quokka": chunk(4, 4, "beware <b>x</b> and <script>window.__vidsearchXss = 1</script> a quokka"),
        "pelican": chunk(8, 9, "a pelican juggles by the octopus"),
    }
    by_segment: dict[int, list[TranscriptChunk]] = {}
    for c in chunks.values():
        by_segment.setdefault(c.segment_index, []).append(c)
    for segment, cs in by_segment.items():
        store.replace_segment(collection, video_id, segment, cs, model="test", language="en", language_probability=1.0)
        index.replace_segment_transcripts(collection, video_id, segment, cs, None)
    yield {"frames": frames, "chunks": chunks}
    store.delete_video(collection, video_id)
    index.delete_transcripts(collection, video_id)


def _fmt_time(seconds: float) -> str:
    """The UI's fmtTime: mm:ss.sss."""
    minutes = int(seconds // 60)
    return f"{minutes:02d}:{seconds - minutes * 60:06.3f}"


def _frame_at(frames: list[dict], t: float) -> int:
    """The frame the UI's gotoTime shows for `t`: the first at or after it (else the last)."""
    return next((i for i, f in enumerate(frames) if f["pts_s"] >= t - 1e-6), len(frames) - 1)


def _expect_at(page, frames: list[dict], index: int, chunk_id: str | None) -> None:
    """The frame view at frame `index` (and the hash saying so), the transcript marking `chunk_id`."""
    expect(page.locator("#frame-info")).to_contain_text(f"Frame {index + 1} / {len(frames)}")
    current = page.locator("#transcript-list li.current")
    if chunk_id is None:
        expect(current).to_have_count(0)
    else:
        expect(current).to_have_count(1)
        expect(current).to_have_attribute("data-chunk-id", chunk_id)
        expect(current.locator("button")).to_have_attribute("aria-current", "true")
    assert parse_qs(urlsplit(page.url).fragment)["f"] == [str(index)]


def _no_html_from_text(page) -> None:
    """The chunk holding HTML is shown as text: no element of it, its script never ran."""
    for where in ("#transcript-list", "#said-results"):
        assert page.locator(f"{where} b, {where} script").count() == 0
    assert page.evaluate("() => window.__vidsearchXss") is None


def test_the_transcript_panel_lists_the_chunks_and_jumps_to_them(page, live_api, transcript, screenshot_dir):
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    frames, chunks = transcript["frames"], transcript["chunks"]
    listed = _api(page, live_api, "GET", f"collections/{collection}/videos/{video_id}/transcript")["chunks"]
    assert [c["chunk_id"] for c in listed] == [c.chunk_id for c in sorted(chunks.values(), key=lambda c: c.start_s)]
    _open(page, live_api, collection, video_id)
    items = page.locator("#transcript-list > li")
    expect(items).to_have_count(len(listed))
    assert items.evaluate_all("els => els.map(e => e.dataset.chunkId)") == [c["chunk_id"] for c in listed]
    expect(items.nth(1).locator(".text")).to_have_text(chunks["quokka"].text)
    expect(items.nth(1).locator(".time")).to_have_text(_fmt_time(chunks["quokka"].start_s))
    expect(page.locator("#transcript-info")).to_have_text("3 chunks · en")
    expect(page.locator("#transcript-audio")).to_be_hidden()  # every segment's audio is done
    _no_html_from_text(page)
    _expect_at(page, frames, 0, None)  # frame 0 is before the first chunk

    # A click on a chunk shows its first frame and marks it; stepping through frames moves the mark.
    pelican = chunks["pelican"]
    page.locator(f'#transcript-list li[data-chunk-id="{pelican.chunk_id}"] button').click()
    at = _frame_at(frames, pelican.start_s)
    _expect_at(page, frames, at, pelican.chunk_id)
    page.keyboard.press("ArrowRight")  # still inside the chunk
    _expect_at(page, frames, at + 1, pelican.chunk_id)
    page.keyboard.press("ArrowRight")  # past its end: no chunk there
    _expect_at(page, frames, at + 2, None)
    page.keyboard.press("ArrowLeft")
    _expect_at(page, frames, at + 1, pelican.chunk_id)
    page.screenshot(path=str(screenshot_dir / "transcript-panel.png"), full_page=True)
    # The mark survives a reload (the hash keeps the frame).
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    _expect_at(page, frames, at + 1, pelican.chunk_id)
    assert page.watch.errors == []


def test_said_search_finds_a_chunk_and_jumps_to_it(page, live_api, transcript):
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    frames, quokka = transcript["frames"], transcript["chunks"]["quokka"]
    expected = _api(
        page, live_api, "GET", f"collections/{collection}/search/transcript", params={"q": "quokka", "mode": "keyword"}
    )["results"]
    assert [m["chunk_id"] for m in expected] == [quokka.chunk_id]
    _open(page, live_api, collection, video_id)
    page.fill("#said-query", "quokka")
    page.press("#said-query", "Enter")
    results = page.locator("#said-results > li")
    expect(results).to_have_count(len(expected))
    expect(page.locator("#said-info")).to_have_text("1 moment")
    first = results.first
    expect(first.locator(".said-text")).to_have_text(quokka.text)
    expect(first.locator(".said-text mark")).to_have_text("quokka")
    expect(first.locator(".video-line")).to_contain_text(
        f"shapes.mp4 · {_fmt_time(quokka.start_s)}–{_fmt_time(quokka.end_s)}"
    )
    expect(first.locator("img.thumb")).to_have_attribute(
        "src", re.compile(re.escape(expected[0]["frame"]["image_url"]) + "$")
    )
    _no_html_from_text(page)
    first.locator("button").click()
    _expect_at(page, frames, _frame_at(frames, quokka.start_s), quokka.chunk_id)

    # Hybrid: the API's answer (BM25 fused with the text embedding; these chunks have no vectors).
    hybrid = _api(
        page, live_api, "GET", f"collections/{collection}/search/transcript", params={"q": "octopus", "mode": "hybrid"}
    )["results"]
    page.select_option("#said-mode", "hybrid")
    page.fill("#said-query", "octopus")
    page.press("#said-query", "Enter")
    expect(page.locator("#said-info")).to_have_text(f"{len(hybrid)} moment{'' if len(hybrid) == 1 else 's'}")
    assert results.evaluate_all("els => els.map(e => e.dataset.chunkId)") == [m["chunk_id"] for m in hybrid]

    assert page.watch.errors == []

    # An error of the API is said in the status line, readable (the browser logs the failed request).
    search_url = re.compile(r".*/search/transcript\?.*")
    detail = {"detail": [{"loc": ["query", "q"], "msg": "String should have at most 500 characters"}]}
    page.route(search_url, lambda route: route.fulfill(status=422, json=detail))
    page.press("#said-query", "Enter")
    expect(page.locator("#status")).to_have_text("Said search: q String should have at most 500 characters")
    page.unroute(search_url)
    expect(results).to_have_count(len(hybrid))  # the last results stay


def test_said_while_visible_gives_the_moments_the_api_computes(page, live_api, transcript, screenshot_dir):
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    frames = transcript["frames"]
    tracks = _api(page, live_api, "GET", f"collections/{collection}/videos/{video_id}/tracks")
    label = max(tracks, key=lambda t: (t["end_pts_s"] - t["start_pts_s"], t["object_count"]))["detector_label"]
    said = "octopus or quokka or pelican"
    expected = _api(
        page,
        live_api,
        "GET",
        f"collections/{collection}/search/moments",
        params={"said": said, "visible_label": label},
    )
    moments = [m for v in expected["videos"] for m in v["moments"]]
    assert expected["chunks_matched"] >= len(transcript["chunks"])  # each chunk says one of the words
    _open(page, live_api, collection, video_id)
    page.select_option("#said-visible-kind", "detector")
    page.fill("#said-visible", label)
    expect(page.locator("#said-mode")).to_be_disabled()  # the combined query matches by keyword
    page.fill("#said-query", said)
    page.press("#said-query", "Enter")
    results = page.locator("#said-results > li")
    if moments:
        expect(page.locator("#said-info")).to_contain_text(f"{len(moments)} moment")
        expect(results).to_have_count(len(moments))
        assert results.evaluate_all("els => els.map(e => e.dataset.chunkId)") == [
            m["chunk"]["chunk_id"] for m in moments
        ]
        first = moments[0]
        n = len(first["track_ids"])
        expect(results.first.locator(".seen-line")).to_contain_text(
            f"{label} visible · {n} track{'' if n == 1 else 's'}"
        )
        results.first.locator("button").click()
        _expect_at(page, frames, _frame_at(frames, first["start_s"]), first["chunk"]["chunk_id"])
        page.screenshot(path=str(screenshot_dir / "said-while-visible.png"), full_page=True)
    else:
        expect(page.locator("#said-info")).to_contain_text("No moments")
        expect(results).to_have_count(0)

    # A label nobody gave: no moments, said so.
    page.select_option("#said-visible-kind", "label")
    page.fill("#said-visible", "nobody-gave-this-label")
    page.press("#said-query", "Enter")
    expect(page.locator("#said-info")).to_have_text(
        "No moments: “octopus or quokka or pelican” is not said while objects labelled “nobody-gave-this-label” "
        f"is visible (said {expected['chunks_matched']} times, never then)."
    )
    expect(results).to_have_count(0)
    # Without the visible part: a transcript search again, the mode can be chosen.
    page.fill("#said-visible", "")
    expect(page.locator("#said-mode")).to_be_enabled()
    assert page.watch.errors == []


def test_a_video_without_a_transcript_says_why(page, live_api):
    """The empty states and the segments' audio states, from the transcript route's answer (replaced
    here: the test video has no audio track, and no audio branch ran on it)."""
    data = live_api.data
    collection, video_id = data["collection"], data["video_id"]
    answer = {"audio": []}

    def fake(route):
        route.fulfill(json={"video_id": video_id, "chunks": [], "audio": answer["audio"]})

    page.route(re.compile(r".*/videos/[^/]+/transcript$"), fake)
    _open(page, live_api, collection, video_id)
    expect(page.locator("#transcript-info")).to_have_text("No transcript: this video has no audio track.")
    expect(page.locator("#transcript-audio")).to_be_hidden()
    expect(page.locator("#transcript-list > li")).to_have_count(0)

    def audio(segment: int, status: str, error: str | None = None) -> dict:
        return {"segment_index": segment, "status": status, "error": error, "chunk_count": 0}

    answer["audio"] = [
        audio(0, "skipped", "no audio track"),
        audio(1, "quarantined", "clipped audio"),
        audio(2, "quarantined", "clipped audio"),
        audio(3, "done"),
    ]
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#transcript-audio > li")).to_have_text(
        ["seg0000: skipped (no audio track)", "seg0001–seg0002: quarantined (clipped audio)"]
    )
    expect(page.locator("#transcript-info")).to_contain_text("could not be transcribed")
    answer["audio"] = [audio(0, "done"), audio(1, "pending")]
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#transcript-info")).to_have_text("No transcript: not transcribed yet.")
    expect(page.locator("#transcript-audio > li")).to_have_text(["seg0001: pending"])
    assert page.watch.errors == []
