// vidsearch UI: browse frames, find similar objects, label them and propagate labels.
// Plain ES module, no build step. All data coming from the API (label names, sources, ...) is
// rendered with textContent / attributes only — never parsed as HTML.

const PAGE_SIZE = 200; // frames per request (the API's default page)
const PREVIEW_DEBOUNCE_MS = 250;
const DENSE_BOXES = 12; // above this many boxes in a frame, box tags show on hover / focus only

// ---------------------------------------------------------------------------------------------
// Where the API lives: the page is served at <prefix>/ and the API at <prefix>/api/.
function pageBase() {
  const url = new URL(window.location.href);
  url.hash = "";
  url.search = "";
  if (!url.pathname.endsWith("/")) {
    // <prefix>/index.html -> <prefix>/ ; <prefix> (no trailing slash) -> <prefix>/
    url.pathname = /\.[a-z0-9]+$/i.test(url.pathname)
      ? url.pathname.replace(/[^/]*$/, "")
      : url.pathname + "/";
  }
  return url;
}
const PAGE_BASE = pageBase();
export const API_BASE = new URL("api/", PAGE_BASE);

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------
// State
const state = {
  collections: [],
  videos: [],
  collection: null,
  video: null, // video record
  total: 0, // frames in the current video
  pages: new Map(), // offset -> frames[]
  frameIndex: 0,
  frame: null,
  query: null, // {kind: "object", object} | {kind: "text", q} | {kind: "image", file}
  results: [],
  selected: new Set(),
  labelCounts: new Map(), // name -> {positive, negative, propagated}
  includeQuery: true,
  searchedRange: "", // the time range ("from_s,to_s") of the last search sent
  rangeApplied: false, // the results shown come from a search with a time range
  // The selected video's transcript: its chunks in time order, each segment's audio state, and the
  // chunk a jump to a moment asked to mark (while the frame it went to is shown).
  transcript: { videoId: null, chunks: [], audio: [], pinned: null, currentId: null, seq: 0 },
  frameSeq: 0,
  resultsSeq: 0,
  saidSeq: 0,
  previewSeq: 0,
  propsSeq: 0,
};

// ---------------------------------------------------------------------------------------------
// HTTP
class AuthError extends Error {}

function errorText(body, response) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((d) => (d && d.msg ? `${(d.loc || []).slice(1).join(".")} ${d.msg}`.trim() : String(d)))
      .join("; ");
  }
  return `${response.status} ${response.statusText}`;
}

async function api(path, { method = "GET", params, body } = {}) {
  const url = new URL(path, API_BASE);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
    }
  }
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body; // multipart: the browser sets the Content-Type with its boundary
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (response.status === 401) {
    showAuthMessage();
    throw new AuthError("not authenticated");
  }
  let data = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(data, response));
  return data;
}

// Image and crop URLs from the API are resolved against the page (absolute paths work as-is).
const resolveUrl = (u) => new URL(u, PAGE_BASE).href;

const col = () => `collections/${enc(state.collection)}`;

function showAuthMessage() {
  const box = $("auth-message");
  const next = window.location.pathname + window.location.search + window.location.hash;
  $("login-link").href = `/auth/login?next=${enc(next)}`;
  box.hidden = false;
  document.body.classList.add("unauthenticated");
  document.querySelector("main").inert = true; // nothing there works without a session
}

// ---------------------------------------------------------------------------------------------
// Status line
let statusTimer = null;
function status(message, kind = "info") {
  const el = $("status");
  el.textContent = message;
  el.className = `banner ${kind}`;
  clearTimeout(statusTimer);
  if (kind !== "error" && message) statusTimer = setTimeout(() => (el.textContent = ""), 6000);
}

function reportError(err, what) {
  if (err instanceof AuthError) return;
  console.error(err);
  status(`${what}: ${err.message}`, "error");
}

// ---------------------------------------------------------------------------------------------
// Small DOM helpers (text only)
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") {
      for (const [prop, value] of Object.entries(v)) {
        if (prop.startsWith("--")) node.style.setProperty(prop, value);
        else node.style[prop] = value;
      }
    }
    else if (v === true) node.setAttribute(k, "");
    else if (v !== false && v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const fmt2 = (x) => (typeof x === "number" ? x.toFixed(2) : "–");
const fmt3 = (x) => (typeof x === "number" ? x.toFixed(3) : "–");

function fmtTime(seconds) {
  if (typeof seconds !== "number") return "–";
  const m = Math.floor(seconds / 60);
  const s = seconds - m * 60;
  return `${String(m).padStart(2, "0")}:${s.toFixed(3).padStart(6, "0")}`;
}

function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function hue(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// One chip per effective label of an object: ✓ positive, ✗ negative, ≈ propagated.
function labelChips(labels) {
  const wrap = el("span", { class: "chips" });
  for (const l of labels || []) {
    const propagated = l.source === "propagated";
    const kind = propagated ? "propagated" : l.polarity === "negative" ? "negative" : "positive";
    const symbol = kind === "positive" ? "✓" : kind === "negative" ? "✗" : "≈";
    const describe = propagated
      ? `propagated label${typeof l.score === "number" ? ` (score ${fmt2(l.score)})` : ""}`
      : `${l.polarity} label`;
    wrap.append(
      el(
        "span",
        { class: `chip ${kind}`, title: `${describe}: ${l.name}` },
        el("span", { "aria-hidden": "true", text: `${symbol} ` }),
        el("span", { class: "visually-hidden", text: `${describe}: ` }),
        el("span", { class: "chip-name", text: l.name }),
      ),
    );
  }
  return wrap;
}

// ---------------------------------------------------------------------------------------------
// URL hash keeps the current collection / video / frame across reloads.
function readHash() {
  const p = new URLSearchParams(window.location.hash.slice(1));
  return { c: p.get("c"), v: p.get("v"), f: Number.parseInt(p.get("f") || "", 10) };
}

function writeHash() {
  const p = new URLSearchParams();
  if (state.collection) p.set("c", state.collection);
  if (state.video) p.set("v", state.video.video_id);
  if (state.video) p.set("f", String(state.frameIndex));
  history.replaceState(null, "", `#${p.toString()}`);
}

// ---------------------------------------------------------------------------------------------
// Collections and videos
async function loadCollections() {
  const select = $("collection-select");
  state.collections = await api("collections");
  select.replaceChildren(
    ...state.collections.map((c) =>
      el("option", { value: c.name, text: `${c.name} (${c.videos} videos, ${c.objects} objects)` }),
    ),
  );
  select.disabled = state.collections.length === 0;
  if (state.collections.length === 0) {
    $("stage-empty").textContent = "No collections yet: ingest a video first.";
    return;
  }
  const wanted = readHash();
  const initial = state.collections.some((c) => c.name === wanted.c) ? wanted.c : state.collections[0].name;
  select.value = initial;
  await selectCollection(initial, wanted);
}

async function selectCollection(name, wanted = {}) {
  state.collection = name;
  state.video = null;
  clearResults();
  clearSaid();
  refreshLabels()
    .then(() => schedulePreview(0))
    .catch((e) => reportError(e, "Loading labels"));
  const select = $("video-select");
  select.disabled = true;
  state.videos = await api(`${col()}/videos`);
  select.replaceChildren(
    ...state.videos.map((v) => {
      const base = String(v.source || v.video_id).split(/[\\/]/).pop();
      return el("option", { value: v.video_id, text: `${base} · ${v.state} · ${v.frames} frames` });
    }),
  );
  select.disabled = state.videos.length === 0;
  if (state.videos.length === 0) {
    resetViewer("This collection has no videos yet.");
    writeHash();
    return;
  }
  const initial = state.videos.some((v) => v.video_id === wanted.v) ? wanted.v : state.videos[0].video_id;
  select.value = initial;
  await selectVideo(initial, Number.isFinite(wanted.f) ? wanted.f : 0);
}

async function selectVideo(videoId, frameIndex = 0) {
  state.video = state.videos.find((v) => v.video_id === videoId) || null;
  state.pages.clear();
  state.total = 0;
  const v = state.video;
  if (!v) return resetViewer("Unknown video.");
  const info = $("video-info");
  info.replaceChildren(
    el("span", { class: "source", title: v.source, text: v.source }),
    ` · ${v.width}×${v.height} · ${fmt2(v.duration_s)} s · ${fmt2(v.frame_rate)} fps · ${v.state}` +
      ` · segments ${v.segments_done}/${v.segments}` +
      (v.segments_quarantined ? ` (${v.segments_quarantined} quarantined)` : "") +
      ` · ${v.objects} objects`,
  );
  loadTranscript(v);
  const first = await loadPage(0);
  if (state.video !== v) return; // switched meanwhile
  state.total = first.total;
  const slider = $("frame-slider");
  slider.max = String(Math.max(0, state.total - 1));
  const enabled = state.total > 0;
  slider.disabled = $("prev-frame").disabled = $("next-frame").disabled = !enabled;
  if (!enabled) return resetViewer("This video has no sampled frames yet.");
  await showFrame(Math.min(Math.max(0, frameIndex), state.total - 1));
  await renderTimeline(v);
}

// The video's tracks on one strip: a bar per track over its time range, stacked in lanes so bars
// never overlap; a track whose members carry labels is marked. A bar goes to the track's first frame.
async function renderTimeline(v) {
  const strip = $("timeline");
  let tracks;
  try {
    tracks = await api(`${col()}/videos/${enc(v.video_id)}/tracks`);
  } catch (err) {
    reportError(err, "Loading tracks");
    return;
  }
  if (state.video !== v) return;
  const duration = Math.max(v.duration_s || 0, ...tracks.map((t) => t.end_pts_s), 1e-3);
  const laneEnds = [];
  const bars = tracks.map((t) => {
    let lane = laneEnds.findIndex((end) => end < t.start_pts_s);
    if (lane < 0) lane = laneEnds.push(0) - 1;
    laneEnds[lane] = t.end_pts_s + duration * 0.005;
    const names = t.labels.map((l) => l.name);
    const text =
      `${t.detector_label} ${fmtTime(t.start_pts_s)}–${fmtTime(t.end_pts_s)}, ${plural(t.object_count, "frame")}` +
      (names.length ? `, labels: ${names.join(", ")}` : "");
    return el("button", {
      type: "button",
      class: `track${names.length ? " labelled" : ""}`,
      title: text,
      "aria-label": text,
      dataset: { trackId: t.track_id },
      style: {
        left: `${(100 * t.start_pts_s) / duration}%`,
        width: `${Math.max(0.6, (100 * (t.end_pts_s - t.start_pts_s)) / duration)}%`,
        top: `${lane * 12}px`,
      },
      onclick: () => gotoTime(t.start_pts_s),
    });
  });
  const detectorNames = [...new Set(tracks.map((t) => t.detector_label))].sort();
  $("detector-names").replaceChildren(...detectorNames.map((name) => el("option", { value: name })));
  strip.style.height = `${Math.max(1, laneEnds.length) * 12}px`;
  strip.replaceChildren(...bars);
  $("timeline-wrap").hidden = tracks.length === 0;
}

// Show the first sampled frame at or after `t` seconds (the last one when `t` is after it).
async function gotoTime(t) {
  try {
    for (let offset = 0; offset < state.total; offset += PAGE_SIZE) {
      const page = await loadPage(offset);
      const i = page.frames.findIndex((f) => f.pts_s >= t - 1e-6);
      if (i >= 0) {
        await showFrame(offset + i);
        return;
      }
    }
    if (state.total > 0) await showFrame(state.total - 1);
  } catch (err) {
    reportError(err, "Loading frames");
  }
}

function resetViewer(message) {
  state.frame = null;
  state.total = 0;
  $("frame-image").removeAttribute("src");
  $("frame-image").alt = "No frame loaded";
  $("boxes").replaceChildren();
  $("stage").hidden = true;
  $("stage-empty").hidden = false;
  $("stage-empty").textContent = message;
  $("frame-info").textContent = "";
  $("frame-slider").disabled = $("prev-frame").disabled = $("next-frame").disabled = true;
  $("timeline-wrap").hidden = true;
  if (!state.video) {
    $("video-info").textContent = "";
    clearTranscript("");
  }
}

// ---------------------------------------------------------------------------------------------
// Frames
async function loadPage(offset) {
  const key = `${state.collection}/${state.video.video_id}/${offset}`;
  if (state.pages.has(offset)) return state.pages.get(offset);
  const page = await api(`${col()}/videos/${enc(state.video.video_id)}/frames`, {
    params: { offset, limit: PAGE_SIZE },
  });
  // Keep it only if nothing changed meanwhile.
  if (key === `${state.collection}/${state.video && state.video.video_id}/${offset}`) state.pages.set(offset, page);
  return page;
}

async function frameAt(index) {
  const offset = Math.floor(index / PAGE_SIZE) * PAGE_SIZE;
  const page = await loadPage(offset);
  state.total = page.total;
  return page.frames[index - offset] || null;
}

async function showFrame(index) {
  if (!state.video || state.total === 0) return;
  index = Math.min(Math.max(0, index), state.total - 1);
  state.frameIndex = index;
  $("frame-slider").value = String(index);
  $("prev-frame").disabled = index <= 0;
  $("next-frame").disabled = index >= state.total - 1;
  writeHash();
  const seq = ++state.frameSeq;
  let frame;
  try {
    frame = await frameAt(index);
  } catch (err) {
    reportError(err, "Loading frames");
    return;
  }
  if (seq !== state.frameSeq || !frame) return;
  state.frame = frame;
  renderFrame(frame, index);
}

function renderFrame(frame, index) {
  $("stage").hidden = false;
  $("stage-empty").hidden = true;
  const img = $("frame-image");
  // The stage keeps the frame's aspect ratio and fills the panel (small frames are scaled up);
  // boxes are placed in percentages of it, so they follow whatever size it is displayed at.
  const w = frame.width || state.video.width;
  const h = frame.height || state.video.height;
  $("stage").style.setProperty("--ar", String(w / h));
  const src = resolveUrl(frame.image_url);
  if (img.getAttribute("src") !== src) img.src = src;
  img.alt = `Frame ${index + 1} of ${state.total}, at ${fmtTime(frame.pts_s)}`;
  const n = frame.objects.length;
  $("frame-info").textContent =
    `Frame ${index + 1} / ${state.total} · ${fmtTime(frame.pts_s)} · segment ${frame.segment_index}, ` +
    `frame ${frame.frame_index} · ${n} object${n === 1 ? "" : "s"}`;
  renderBoxes(frame);
  updateTranscriptHighlight();
}

function renderBoxes(frame) {
  const boxes = $("boxes");
  const width = frame.width || state.video.width;
  const height = frame.height || state.video.height;
  const queryId = state.query && state.query.kind === "object" ? state.query.object.object_id : null;
  const focusedId = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.objectId
    : null;
  // Larger boxes underneath, smaller ones on top, so every box keeps a clickable part.
  const area = (o) => (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]);
  const order = frame.objects.map((o, i) => i).sort((a, b) => area(frame.objects[b]) - area(frame.objects[a]));
  const zIndex = new Map(order.map((objIndex, rank) => [objIndex, 10 + rank]));
  // Many boxes (tiny or permissive detectors): tags only on hover / focus / the query box.
  boxes.classList.toggle("dense", frame.objects.length > DENSE_BOXES);
  const nodes = frame.objects.map((o, i) => {
    const [x0, y0, x1, y1] = o.box;
    const h = hue(o.detector_label);
    const tagBelow = y0 / height < 0.08; // no room above: put the tag inside the box
    const button = el(
      "button",
      {
        type: "button",
        class: `box${tagBelow ? " tag-inside" : ""}`,
        "aria-pressed": String(o.object_id === queryId),
        dataset: { objectId: o.object_id },
        title: `${o.detector_label} ${fmt2(o.score)} — find similar objects`,
        style: {
          left: `${(100 * x0) / width}%`,
          top: `${(100 * y0) / height}%`,
          width: `${(100 * (x1 - x0)) / width}%`,
          height: `${(100 * (y1 - y0)) / height}%`,
          "--box-color": `hsl(${h} 90% 50%)`,
          zIndex: String(zIndex.get(i)),
        },
        onclick: () => queryObject(o),
      },
      el(
        "span",
        { class: "tag" },
        el("span", { class: "visually-hidden", text: "Object: " }),
        el("span", { class: "det", text: `${o.detector_label} ${fmt2(o.score)}` }),
        labelChips(o.labels),
      ),
    );
    return button;
  });
  boxes.replaceChildren(...nodes);
  if (focusedId) {
    const again = boxes.querySelector(`[data-object-id="${CSS.escape(focusedId)}"]`);
    if (again) again.focus();
  }
}

async function reloadFrame() {
  state.pages.clear();
  if (state.video && state.total > 0) await showFrame(state.frameIndex);
}

// The size of the frame an object's box is in: the shown frame's when it is that frame, else the
// video's display size (frames are extracted at it).
function frameDimsOf(o) {
  const f = state.frame;
  if (f && state.video && state.video.video_id === o.video_id && f.segment_index === o.segment_index &&
      f.frame_index === o.frame_index && f.width && f.height) {
    return [f.width, f.height];
  }
  return null;
}

// Make `videoId` the selected video (if it is not already); false (and said so) if it is not listed.
async function showVideo(videoId) {
  if (state.video && state.video.video_id === videoId) return true;
  if (!state.videos.some((v) => v.video_id === videoId)) {
    status("That video is not listed.", "error");
    return false;
  }
  $("video-select").value = videoId;
  await selectVideo(videoId, 0);
  return true;
}

// Jump the viewer to the frame holding an object (switching video if needed).
async function gotoObject(o) {
  try {
    if (!(await showVideo(o.video_id))) return;
    for (let offset = 0; offset < state.total; offset += PAGE_SIZE) {
      const page = await loadPage(offset);
      const i = page.frames.findIndex(
        (f) => f.segment_index === o.segment_index && f.frame_index === o.frame_index,
      );
      if (i >= 0) {
        await showFrame(offset + i);
        $("viewer").focus();
        return;
      }
      const last = page.frames[page.frames.length - 1];
      if (last && last.pts_s > o.pts_s + 1e-6) break;
    }
    status("Could not find that object's frame.", "error");
  } catch (err) {
    reportError(err, "Showing the frame");
  }
}

// ---------------------------------------------------------------------------------------------
// Transcript: the selected video's chunks beside the frame view. The chunk at the shown frame's time
// is marked (and scrolled to in its list); a click on one shows the first frame at its start. Each
// segment's audio state is listed, grouped, while not every segment is done.
const segName = (i) => `seg${String(i).padStart(4, "0")}`;

function clearTranscript(message) {
  const t = state.transcript;
  t.seq++;
  Object.assign(t, { videoId: null, chunks: [], audio: [], pinned: null, currentId: null });
  $("transcript-list").replaceChildren();
  $("transcript-audio").replaceChildren();
  $("transcript-audio").hidden = true;
  $("transcript-info").textContent = message;
}

async function loadTranscript(v) {
  clearTranscript("Loading the transcript…");
  const t = state.transcript;
  const seq = t.seq;
  let data;
  try {
    data = await api(`${col()}/videos/${enc(v.video_id)}/transcript`);
  } catch (err) {
    if (seq !== t.seq) return;
    $("transcript-info").textContent = "";
    reportError(err, "Loading the transcript");
    return;
  }
  if (seq !== t.seq || state.video !== v) return;
  Object.assign(t, { videoId: v.video_id, chunks: data.chunks, audio: data.audio });
  renderTranscript(v);
}

// Why a video has no transcript, from its audio states (and whether its source has an audio track).
function noTranscriptText(v, audio) {
  const noTrack = Boolean(v.video_codec) && !v.audio_codec; // probed, and no audio stream
  const statuses = new Set(audio.map((a) => a.status));
  if (noTrack && (audio.length === 0 || [...statuses].every((s) => s === "skipped"))) {
    return "No transcript: this video has no audio track.";
  }
  if (audio.length === 0) {
    return v.state === "ingesting"
      ? "No transcript: not transcribed yet."
      : "No transcript: transcription was off when this video was ingested.";
  }
  if (statuses.has("pending")) return "No transcript: not transcribed yet.";
  if ([...statuses].every((s) => s === "done" || s === "skipped")) return "No transcript: no speech was heard.";
  return "No transcript: the audio could not be transcribed (see the segments above).";
}

// The segments whose audio is not done, consecutive ones of the same state and reason on one line.
function audioLines(audio) {
  const groups = [];
  for (const a of audio) {
    if (a.status === "done") continue;
    const reason = a.error || "";
    const last = groups[groups.length - 1];
    if (last && last.status === a.status && last.reason === reason && last.to === a.segment_index - 1) {
      last.to = a.segment_index;
    } else {
      groups.push({ from: a.segment_index, to: a.segment_index, status: a.status, reason });
    }
  }
  return groups.map((g) => {
    const segs = g.from === g.to ? segName(g.from) : `${segName(g.from)}–${segName(g.to)}`;
    return el("li", { class: `audio ${g.status}`, text: `${segs}: ${g.status}${g.reason ? ` (${g.reason})` : ""}` });
  });
}

function renderTranscript(v) {
  const t = state.transcript;
  const lines = audioLines(t.audio);
  $("transcript-audio").replaceChildren(...lines);
  $("transcript-audio").hidden = lines.length === 0;
  const languages = [...new Set(t.chunks.map((c) => c.language).filter(Boolean))];
  $("transcript-info").textContent = t.chunks.length
    ? `${plural(t.chunks.length, "chunk")}${languages.length ? ` · ${languages.join(", ")}` : ""}`
    : noTranscriptText(v, t.audio);
  $("transcript-list").replaceChildren(
    ...t.chunks.map((c) =>
      el(
        "li",
        { dataset: { chunkId: c.chunk_id } },
        el(
          "button",
          {
            type: "button",
            class: "chunk",
            title: `${fmtTime(c.start_s)}–${fmtTime(c.end_s)}: show this moment`,
            onclick: () => showMoment({ video_id: v.video_id, chunk_id: c.chunk_id, start_s: c.start_s }),
          },
          el("span", { class: "time", text: fmtTime(c.start_s) }),
          el("span", { class: "text", text: c.text }),
        ),
      ),
    ),
  );
  t.currentId = null;
  updateTranscriptHighlight();
}

// The chunk of the shown frame: the one a jump marked while its frame is shown, else the latest
// starting chunk whose time range holds the frame's time (none between chunks).
function currentChunkId(frame) {
  const t = state.transcript;
  const p = t.pinned;
  if (p && p.frameIndex === state.frameIndex && t.chunks.some((c) => c.chunk_id === p.chunkId)) return p.chunkId;
  let found = null;
  for (const c of t.chunks) {
    if (c.start_s > frame.pts_s + 1e-6) break;
    if (frame.pts_s <= c.end_s + 1e-6) found = c.chunk_id;
  }
  return found;
}

function updateTranscriptHighlight() {
  const t = state.transcript;
  if (!state.frame || !state.video || t.videoId !== state.video.video_id) return;
  const id = currentChunkId(state.frame);
  if (id === t.currentId) return;
  t.currentId = id;
  const list = $("transcript-list");
  let current = null;
  for (const li of list.children) {
    const on = li.dataset.chunkId === id;
    li.classList.toggle("current", on);
    if (on) {
      li.firstChild.setAttribute("aria-current", "true");
      current = li;
    } else {
      li.firstChild.removeAttribute("aria-current");
    }
  }
  // Scroll the list only (never the page): the marked chunk into its view.
  if (current) {
    const top = current.offsetTop;
    const bottom = top + current.offsetHeight;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (bottom > list.scrollTop + list.clientHeight) list.scrollTop = bottom - list.clientHeight;
  }
}

// Show a moment: its video, the first frame at its start, its chunk marked in the transcript.
async function showMoment(m) {
  try {
    if (!(await showVideo(m.video_id))) return;
    await gotoTime(m.start_s);
    state.transcript.pinned = { chunkId: m.chunk_id, frameIndex: state.frameIndex };
    state.transcript.currentId = null;
    updateTranscriptHighlight();
  } catch (err) {
    reportError(err, "Showing the moment");
  }
}

// ---------------------------------------------------------------------------------------------
// "Said" search: transcript moments matching words (keyword or hybrid), or with something named
// visible, the moments they are said while it is in view ("said X while Y is visible").

// The server's `highlighted` text (HTML-escaped, <mark> around the matched words) as nodes: parsed
// inert (a DOMParser document runs no script and loads nothing), rebuilt from its text and marks only.
function markedText(highlighted) {
  const doc = new DOMParser().parseFromString(String(highlighted), "text/html");
  return [...doc.body.childNodes].map((n) =>
    n.nodeName === "MARK" ? el("mark", { text: n.textContent }) : document.createTextNode(n.textContent),
  );
}

function visibleFilter() {
  const name = $("said-visible").value.trim();
  if (!name) return null;
  return $("said-visible-kind").value === "label"
    ? { key: "label", name, what: `objects labelled “${name}”` }
    : { key: "visible_label", name, what: `a “${name}”` };
}

function onSaidVisibleChanged() {
  $("said-visible").setAttribute("list", $("said-visible-kind").value === "label" ? "label-names" : "detector-names");
  // The combined query matches the words by keyword (full text): no mode to choose.
  $("said-mode").disabled = visibleFilter() !== null;
}

function clearSaid() {
  state.saidSeq++; // an answer on its way belongs to the collection left
  $("said-results").replaceChildren();
  $("said-info").textContent = "";
}

async function runSaid() {
  const q = $("said-query").value.trim();
  if (!q || !state.collection) return;
  const visible = visibleFilter();
  const videoId = $("said-this-video").checked && state.video ? state.video.video_id : null;
  const seq = ++state.saidSeq;
  $("said-info").textContent = "Searching…";
  let moments;
  let none;
  let note = "";
  try {
    if (visible) {
      const data = await api(`${col()}/search/moments`, {
        params: { said: q, [visible.key]: visible.name, video_id: videoId },
      });
      if (seq !== state.saidSeq) return;
      moments = data.videos.flatMap((v) =>
        v.moments.map((m) => ({
          video_id: v.video_id,
          chunk_id: m.chunk.chunk_id,
          start_s: m.start_s,
          end_s: m.end_s,
          highlighted: m.chunk.highlighted,
          frame: m.frame,
          seen: `${m.labels.join(", ")} visible · ${plural(m.track_ids.length, "track")} · ${plural(m.object_count, "object")}`,
        })),
      );
      none = `No moments: “${q}” is not said while ${visible.what} is visible` +
        (data.chunks_matched ? ` (said ${plural(data.chunks_matched, "time")}, never then).` : ".");
      if (data.truncated) note = ` (the first ${plural(data.chunks_matched, "matching chunk")} only)`;
    } else {
      const data = await api(`${col()}/search/transcript`, {
        params: { q, mode: $("said-mode").value, video_id: videoId },
      });
      if (seq !== state.saidSeq) return;
      moments = data.results;
      none = `Nothing said matches “${q}”.`;
    }
  } catch (err) {
    if (seq === state.saidSeq) $("said-info").textContent = "";
    reportError(err, "Said search");
    return;
  }
  $("said-results").replaceChildren(...moments.map(momentItem));
  $("said-info").textContent = moments.length ? `${plural(moments.length, "moment")}${note}` : none;
}

function momentItem(m) {
  const range = `${fmtTime(m.start_s)}–${fmtTime(m.end_s)}`;
  return el(
    "li",
    { class: "moment", dataset: { chunkId: m.chunk_id, videoId: m.video_id } },
    el(
      "button",
      { type: "button", class: "moment-open", title: `Show this moment (${range})`, onclick: () => showMoment(m) },
      m.frame
        ? el("img", { class: "thumb", src: resolveUrl(m.frame.image_url), alt: "", loading: "lazy" })
        : el("span", { class: "thumb", "aria-hidden": "true" }),
      el(
        "span",
        { class: "moment-meta" },
        el("span", { class: "muted video-line", text: `${videoName(m.video_id)} · ${range}` }),
        el("span", { class: "said-text" }, ...markedText(m.highlighted)),
        m.seen ? el("span", { class: "muted seen-line", text: m.seen }) : null,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Video player: the stored source from the ranged video route (GET .../videos/{id}/video), opened at
// an object's time with its box drawn over the picture while the video is at the object's frame.
// Whether this browser can play the source is asked first (canPlayType with the codecs the API names)
// and confirmed by the media element itself (its error event, or a picture of zero size): otherwise
// the dialog says so and offers the file as a download. No transcoding happens anywhere.
const player = {
  object: null,
  video: null, // the video record
  dims: null, // [width, height] of the frame the box is in
  target: 0, // where the object's frame is on the media timeline (s)
  seq: 0,
  opener: null,
};

const MEDIA_ERRORS = {
  1: "loading was aborted",
  2: "a network error interrupted loading",
  3: "the browser could not decode it",
  4: "the browser does not support this format or codec",
};

function playerFrameDuration() {
  const fps = player.video && player.video.frame_rate;
  return fps > 0 ? 1 / fps : 1 / 25;
}

function openPlayer(o, dims = null) {
  const v = state.videos.find((x) => x.video_id === o.video_id);
  if (!v) return status("That video is not listed.", "error");
  const dialog = $("player");
  const video = $("player-video");
  const seq = ++player.seq;
  player.object = o;
  player.video = v;
  player.dims = dims || [v.width, v.height];
  // pts_s is the frame's time since the video start, rounded to the millisecond: a quarter frame
  // later is still that frame, never the one before.
  player.target = o.pts_s + playerFrameDuration() / 4;
  player.opener = document.activeElement;
  const [w, h] = player.dims;
  $("player-stage").style.setProperty("--ar", String(w && h ? w / h : 16 / 9));
  const name = String(v.source || v.video_id).split(/[\\/]/).pop();
  $("player-heading").textContent = `${o.detector_label} ${fmt2(o.score)} at ${fmtTime(o.pts_s)} · ${name}`;
  dialog.dataset.objectId = o.object_id;
  dialog.dataset.state = "loading";
  dialog.classList.remove("unplayable");
  $("player-unplayable").hidden = true;
  $("player-info").textContent = "Loading the video…";
  $("player-download").href = resolveUrl(v.video_url);
  $("player-download").setAttribute("download", `${v.video_id}`);
  placePlayerBox();
  if (!dialog.open) dialog.showModal();

  const verdict = video.canPlayType(v.playback_type || v.media_type);
  if (verdict === "") {
    video.removeAttribute("src");
    video.load();
    return playerUnplayable(`This browser cannot play ${describeSource(v)}.`);
  }
  video.src = resolveUrl(v.video_url);
  video.addEventListener(
    "loadedmetadata",
    () => {
      if (seq !== player.seq) return;
      video.currentTime = Math.min(player.target, Number.isFinite(video.duration) ? video.duration : player.target);
    },
    { once: true },
  );
  video.addEventListener(
    "seeked",
    () => {
      if (seq !== player.seq || dialog.dataset.state !== "loading") return;
      if (video.videoWidth === 0) {
        return playerUnplayable(`This browser decoded no picture from ${describeSource(v)}.`);
      }
      dialog.dataset.state = "ready";
      updatePlayerBox();
    },
    { once: true },
  );
  video.focus();
}

function describeSource(v) {
  const codecs = [v.video_codec, v.audio_codec].filter(Boolean).join(" + ") || "unknown codecs";
  return `this video (${codecs} in ${v.media_type})`;
}

function playerUnplayable(reason) {
  const dialog = $("player");
  dialog.dataset.state = "unplayable";
  dialog.classList.add("unplayable");
  $("player-reason").textContent =
    `${reason} The stored source is served as it was ingested; no browser-friendly copy exists yet.`;
  $("player-unplayable").hidden = false;
  $("player-info").textContent = "";
  $("player-box").hidden = true;
  $("player-download").focus();
}

function placePlayerBox() {
  const o = player.object;
  const [w, h] = player.dims;
  const box = $("player-box");
  const [x0, y0, x1, y1] = o.box;
  box.style.left = `${(100 * x0) / w}%`;
  box.style.top = `${(100 * y0) / h}%`;
  box.style.width = `${(100 * (x1 - x0)) / w}%`;
  box.style.height = `${(100 * (y1 - y0)) / h}%`;
  box.style.setProperty("--box-color", `hsl(${hue(o.detector_label)} 90% 50%)`);
  box.classList.toggle("tag-inside", y0 / h < 0.08);
  box.querySelector(".det").textContent = `${o.detector_label} ${fmt2(o.score)}`;
  box.hidden = true;
}

// The box belongs to one frame: shown while the video is at it, hidden elsewhere.
function updatePlayerBox() {
  const dialog = $("player");
  if (!player.object || dialog.dataset.state !== "ready") return;
  const video = $("player-video");
  const atFrame = Math.abs(video.currentTime - player.target) < playerFrameDuration() * 0.75;
  const show = atFrame && !video.seeking && $("player-box-toggle").checked;
  $("player-box").hidden = !show;
  dialog.dataset.boxVisible = String(show);
  $("player-info").textContent = atFrame
    ? `At the object's frame (${fmtTime(player.object.pts_s)}): its box is drawn over the video.`
    : `${fmtTime(video.currentTime)} · the box is drawn at the object's frame (${fmtTime(player.object.pts_s)}).`;
}

// Closing cleans up at once: the dialog's `close` event is queued, and a player opened again before
// it fires (close, then P on a box) must not be torn down by the old close.
function closePlayer() {
  const dialog = $("player");
  if (dialog.open) dialog.close();
  onPlayerClosed();
}

function onPlayerClosed() {
  if ($("player").open || player.object === null) return; // reopened since, or cleaned up already
  player.seq++;
  const video = $("player-video");
  video.pause();
  video.removeAttribute("src"); // stop fetching ranges
  video.load();
  player.object = null;
  delete $("player").dataset.state;
  const back = player.opener;
  player.opener = null;
  if (back && back.isConnected && typeof back.focus === "function") back.focus();
}

function wirePlayer() {
  const video = $("player-video");
  for (const event of ["timeupdate", "seeking", "seeked", "play", "pause"]) {
    video.addEventListener(event, updatePlayerBox);
  }
  video.addEventListener("error", () => {
    if (!player.object || !video.getAttribute("src")) return;
    const code = video.error ? video.error.code : 0;
    playerUnplayable(`This browser cannot play ${describeSource(player.video)}: ${MEDIA_ERRORS[code] || "unknown error"}.`);
  });
  video.addEventListener("loadeddata", () => {
    if (player.object && video.videoWidth === 0) {
      playerUnplayable(`This browser decoded no picture from ${describeSource(player.video)}.`);
    }
  });
  $("player-close").addEventListener("click", closePlayer);
  $("player").addEventListener("close", onPlayerClosed);
  // Escape closes the player ourselves: the browser's own close request is skipped when it judges
  // the key unactivated (Chromium's close-watcher rules), which left the dialog open now and then.
  $("player").addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    closePlayer();
  });
  $("player-seek").addEventListener("click", () => {
    if (!player.object) return;
    video.pause();
    video.currentTime = player.target;
  });
  $("player-box-toggle").addEventListener("change", updatePlayerBox);
  $("player-show-frame").addEventListener("click", () => {
    const o = player.object;
    closePlayer();
    if (o) gotoObject(o);
  });
}

// ---------------------------------------------------------------------------------------------
// Similar objects / text search
function searchParams() {
  const k = Number.parseInt($("k-input").value, 10);
  const minSim = Number.parseFloat($("min-sim-input").value);
  return {
    k: Number.isFinite(k) ? Math.min(200, Math.max(1, k)) : 20,
    min_similarity: Number.isFinite(minSim) ? Math.min(1, Math.max(-1, minSim)) : 0,
    group: $("group-select").value === "object" ? "object" : "track",
  };
}

// The time range ("From (s)", "To (s)"): a time of each result's video, in seconds ("90", "12.5") or
// minutes:seconds ("1:30", "01:30.500" as the cards show times; "1:02:03" with hours); empty: no bound.
function parseTime(text) {
  const t = text.trim();
  if (t === "") return { value: null };
  if (/^[-−]/.test(t)) return { error: "cannot be negative" };
  const parts = t.split(":");
  const whole = /^\d+$/;
  const last = parts[parts.length - 1];
  if (parts.length > 3 || !/^(\d+(\.\d*)?|\.\d+)$/.test(last) || !parts.slice(0, -1).every((p) => whole.test(p))) {
    return { error: `is not a time (“${t}”): give seconds, e.g. 90, or minutes:seconds, e.g. 1:30` };
  }
  if (parts.length > 1 && parts.slice(1).some((p) => Number(p) >= 60)) {
    return { error: `is not a time (“${t}”): minutes and seconds after a colon are below 60` };
  }
  const value = parts.reduce((total, p) => total * 60 + Number(p), 0);
  return Number.isFinite(value) ? { value } : { error: `is not a time (“${t}”)` };
}

const RANGE_INPUTS = [
  ["from-s", "from_s", "From (s)"],
  ["to-s", "to_s", "To (s)"],
];
let rangeError = null; // the message last shown for an invalid time range

// The time range as search parameters ({from_s, to_s}, only those filled), or {error}; an input with
// a bad value is marked aria-invalid. A valid range takes down the message an invalid one put up.
function timeRange() {
  const params = {};
  const invalid = new Set();
  let error = null;
  for (const [id, key, name] of RANGE_INPUTS) {
    const r = parseTime($(id).value);
    if (r.error) {
      invalid.add(id);
      error = error || `“${name}” ${r.error}.`;
    } else if (r.value !== null) {
      params[key] = r.value;
    }
  }
  if (!error && params.from_s !== undefined && params.to_s !== undefined && params.from_s > params.to_s) {
    invalid.add("from-s").add("to-s");
    error = `“From (s)” (${params.from_s} s) is after “To (s)” (${params.to_s} s).`;
  }
  for (const [id] of RANGE_INPUTS) $(id).setAttribute("aria-invalid", String(invalid.has(id)));
  if (error) return { error };
  if (rangeError !== null && $("status").textContent === rangeError) status("");
  rangeError = null;
  return { params };
}

const rangeKey = (params) => `${params.from_s ?? ""},${params.to_s ?? ""}`;

function showRangeError(error) {
  rangeError = `Not searched: ${error}`;
  status(rangeError, "error");
}

// A time-range input changed: search again with it (not when only its spelling changed, "90" -> "1:30").
function onTimeRangeChanged() {
  const range = timeRange();
  if (range.error) return showRangeError(range.error);
  if (rangeKey(range.params) !== state.searchedRange) runQuery();
}

// A result's video, by the name of its source (results come from every video of the collection).
function videoName(videoId) {
  const v = state.videos.find((x) => x.video_id === videoId);
  if (!v) return videoId.slice(0, 8);
  return String(v.source).split("?")[0].split(/[\\/]/).filter(Boolean).pop() || videoId.slice(0, 8);
}

// A result list as objects: by track, each track's best member carrying its track (time range, size).
function resultObjects(data) {
  const results = data.results || [];
  if (data.group !== "track") return results;
  return results.map((t) => ({ ...t.best, track: t }));
}

function queryObject(o) {
  state.query = { kind: "object", object: o };
  state.selected.clear();
  state.includeQuery = true;
  if (state.frame) renderBoxes(state.frame);
  return runQuery();
}

function queryImage(file) {
  state.query = { kind: "image", file };
  state.selected.clear();
  if (state.frame) renderBoxes(state.frame);
  return runQuery();
}

function queryText(q) {
  state.query = { kind: "text", q };
  state.selected.clear();
  if (state.frame) renderBoxes(state.frame);
  return runQuery();
}

async function runQuery({ quiet = false } = {}) {
  const q = state.query;
  if (!q || !state.collection) return;
  $("refresh-results").disabled = false;
  // Checked here, not left to the API: a bad range is said in the status line and nothing is sent.
  const range = timeRange();
  if (range.error) return showRangeError(range.error);
  const params = { ...searchParams(), ...range.params };
  state.searchedRange = rangeKey(range.params);
  const seq = ++state.resultsSeq;
  if (!quiet) $("results-info").textContent = "Searching…";
  try {
    let data;
    if (q.kind === "object") {
      data = await api(`${col()}/objects/${enc(q.object.object_id)}/similar`, { params });
      if (seq !== state.resultsSeq) return;
      state.query = { kind: "object", object: data.query };
      $("results-heading").textContent = "Similar objects";
    } else if (q.kind === "image") {
      const form = new FormData();
      form.append("image", q.file, q.file.name);
      data = await api(`${col()}/search/image`, { method: "POST", params, body: form });
      if (seq !== state.resultsSeq) return;
      $("results-heading").textContent = `Image search: ${q.file.name}`;
    } else {
      data = await api(`${col()}/search/text`, { params: { q: q.q, ...params } });
      if (seq !== state.resultsSeq) return;
      $("results-heading").textContent = `Text search: “${q.q}”`;
    }
    state.results = resultObjects(data);
    state.rangeApplied = "from_s" in params || "to_s" in params;
    renderQueryCard();
    renderResults();
  } catch (err) {
    if (seq === state.resultsSeq) $("results-info").textContent = "";
    reportError(err, "Search");
  }
}

function clearResults() {
  state.query = null;
  state.results = [];
  state.selected.clear();
  $("results-heading").textContent = "Similar objects";
  $("query-card").hidden = true;
  $("query-card").replaceChildren();
  delete $("query-card").dataset.objectId;
  $("results").replaceChildren();
  $("results-empty").hidden = false;
  $("results-info").textContent = "";
  $("refresh-results").disabled = true;
  updateSelection();
}

function renderQueryCard() {
  const card = $("query-card");
  const q = state.query;
  if (!q || q.kind !== "object") {
    card.hidden = true;
    card.replaceChildren();
    delete card.dataset.objectId;
    return;
  }
  const o = q.object;
  card.dataset.objectId = o.object_id;
  const checkbox = el("input", {
    type: "checkbox",
    id: "include-query",
    checked: state.includeQuery,
    onchange: (e) => {
      state.includeQuery = e.target.checked;
      updateSelection();
    },
  });
  card.replaceChildren(
    el("img", {
      class: "crop",
      src: resolveUrl(o.crop_url),
      alt: `Query object: ${o.detector_label}`,
    }),
    el(
      "div",
      { class: "query-meta" },
      el("p", { class: "strong", text: `Query: ${o.detector_label} ${fmt2(o.score)}` }),
      el("p", { class: "muted", text: `at ${fmtTime(o.pts_s)} · segment ${o.segment_index}, frame ${o.frame_index}` }),
      labelChips(o.labels),
      el("p", {}, checkbox, " ", el("label", { for: "include-query", text: "Include this object when labeling" })),
      el(
        "p",
        { class: "card-actions" },
        el("button", { type: "button", onclick: () => gotoObject(o), text: "Show its frame" }),
        el("button", {
          type: "button",
          class: "play",
          onclick: () => openPlayer(o, frameDimsOf(o)),
          text: `▶ Play at ${fmtTime(o.pts_s)}`,
          "aria-label": `Play the video at ${fmtTime(o.pts_s)}, with this object's box`,
        }),
      ),
    ),
  );
  card.hidden = false;
}

function renderResults() {
  const list = $("results");
  const items = state.results.map((o, i) => {
    const id = `sel-${i}`;
    const checkbox = el("input", {
      type: "checkbox",
      id,
      checked: state.selected.has(o.object_id),
      dataset: { objectId: o.object_id },
      onchange: (e) => {
        if (e.target.checked) state.selected.add(o.object_id);
        else state.selected.delete(o.object_id);
        e.target.closest("li").classList.toggle("selected", e.target.checked);
        updateSelection();
      },
    });
    return el(
      "li",
      { class: `card${state.selected.has(o.object_id) ? " selected" : ""}`, dataset: { objectId: o.object_id } },
      el("img", { class: "crop", src: resolveUrl(o.crop_url), alt: `${o.detector_label} crop`, loading: "lazy" }),
      el(
        "div",
        { class: "card-meta" },
        el(
          "p",
          { class: "select-line" },
          checkbox,
          el(
            "label",
            { for: id },
            el("span", { class: "muted", "aria-hidden": "true", text: "sim " }),
            el("span", { class: "visually-hidden", text: "similarity " }),
            el("span", { class: "sim", text: fmt3(o.similarity) }),
            el("span", { class: "visually-hidden", text: "," }),
            " · ",
            el("span", { text: `${o.detector_label} ${fmt2(o.score)}` }),
          ),
        ),
        el("p", { class: "muted video-line", text: `${videoName(o.video_id)} · ${fmtTime(o.pts_s)}` }),
        o.track
          ? el("p", {
              class: "muted track-line",
              text: `moment ${fmtTime(o.track.start_pts_s)}–${fmtTime(o.track.end_pts_s)} · ${o.track.object_count} frame${o.track.object_count === 1 ? "" : "s"}`,
            })
          : null,
        labelChips(o.labels),
        el(
          "p",
          { class: "card-actions" },
          el("button", {
            type: "button",
            class: "small",
            text: "Similar",
            "aria-label": `Find objects similar to result ${i + 1}`,
            onclick: () => queryObject(o),
          }),
          el("button", {
            type: "button",
            class: "small",
            text: "Frame",
            "aria-label": `Show the frame of result ${i + 1}`,
            onclick: () => gotoObject(o),
          }),
          el("button", {
            type: "button",
            class: "small play",
            text: "▶ Play",
            "aria-label": `Play the video of result ${i + 1} at ${fmtTime(o.pts_s)}`,
            onclick: () => openPlayer(o, frameDimsOf(o)),
          }),
        ),
      ),
    );
  });
  list.replaceChildren(...items);
  $("results-empty").hidden = items.length > 0;
  if (items.length === 0) {
    $("results-empty").textContent = state.rangeApplied
      ? "No results above the minimum similarity in this time range."
      : "No results above the minimum similarity.";
  }
  $("results-info").textContent = `${items.length} result${items.length === 1 ? "" : "s"}`;
  $("select-all").disabled = $("select-none").disabled = items.length === 0;
  updateSelection();
}

// ---------------------------------------------------------------------------------------------
// Labeling
function targets() {
  const ids = new Set(state.selected);
  if (state.includeQuery && state.query && state.query.kind === "object") ids.add(state.query.object.object_id);
  return [...ids];
}

function labelName() {
  return $("label-name").value;
}

// URL parsers treat a path segment "." or ".." (even percent-encoded) as a directory step, so
// such a name cannot address the per-label routes.
const pathSafe = (name) => name !== "." && name !== "..";

function updateSelection() {
  const n = targets().length;
  const s = state.selected.size;
  const withQuery = n > s;
  $("selection-info").textContent =
    n === 0
      ? "No objects selected."
      : `${n} object${n === 1 ? "" : "s"} to label` +
        (withQuery ? ` (the query object${s ? ` and ${s} selected` : ""})` : " (selected)") +
        (labelTargets(targets()).track_ids.length ? "; a selected moment labels every object of its track" : "") +
        ".";
  const ok = n > 0 && labelName().trim().length > 0;
  $("label-positive").disabled = $("label-negative").disabled = $("label-remove").disabled = !ok;
}

// What a label call names: a result shown as a moment (by track) stands for its whole track.
function labelTargets(ids) {
  const trackOf = new Map(state.results.filter((o) => o.track).map((o) => [o.object_id, o.track.track_id]));
  return {
    object_ids: ids.filter((i) => !trackOf.has(i)),
    track_ids: [...new Set(ids.filter((i) => trackOf.has(i)).map((i) => trackOf.get(i)))],
  };
}

async function applyLabel(polarity) {
  const name = labelName();
  const ids = targets();
  if (!name.trim() || ids.length === 0) return;
  const named = labelTargets(ids);
  let message;
  try {
    if (polarity === "remove") {
      const r = await api(`${col()}/labels`, { method: "DELETE", body: { ...named, name } });
      message = `Removed label “${name}” from ${r.removed} object${r.removed === 1 ? "" : "s"}.`;
    } else {
      const r = await api(`${col()}/labels`, { method: "POST", body: { ...named, name, polarity } });
      message = `Labeled ${r.updated} object${r.updated === 1 ? "" : "s"} ${polarity} as “${name}”.`;
    }
    state.selected.clear();
    await refreshAfterLabelChange();
    status(message);
  } catch (err) {
    reportError(err, "Labeling");
  }
}

async function refreshAfterLabelChange() {
  await Promise.all([
    refreshLabels(),
    reloadFrame(),
    state.query ? runQuery({ quiet: true }) : null,
    refreshPropagations(),
  ]);
  schedulePreview(0);
  updateSelection();
}

// ---------------------------------------------------------------------------------------------
// Labels panel
async function refreshLabels() {
  if (!state.collection) return;
  const labels = await api(`${col()}/labels`);
  labels.sort((a, b) => a.name.localeCompare(b.name));
  state.labelCounts = new Map(labels.map((l) => [l.name, l]));
  const body = $("labels-body");
  body.replaceChildren(
    ...labels.map((l) =>
      el(
        "tr",
        { dataset: { name: l.name } },
        el(
          "th",
          { scope: "row" },
          el("button", {
            type: "button",
            class: "link",
            text: l.name,
            title: "Use this label",
            onclick: () => useLabel(l.name),
          }),
        ),
        el("td", { class: "num positive", text: l.positive }),
        el("td", { class: "num negative", text: l.negative }),
        el("td", { class: "num propagated", text: l.propagated }),
      ),
    ),
  );
  $("labels-table").hidden = labels.length === 0;
  $("labels-empty").hidden = labels.length > 0;
  $("label-names").replaceChildren(...labels.map((l) => el("option", { value: l.name })));
}

function useLabel(name) {
  $("label-name").value = name;
  onLabelNameChanged();
  $("label-name").focus();
}

function onLabelNameChanged() {
  updateSelection();
  schedulePreview();
  refreshPropagations().catch((e) => reportError(e, "Loading propagations"));
}

// ---------------------------------------------------------------------------------------------
// Propagation
let previewTimer = null;
function schedulePreview(delay = PREVIEW_DEBOUNCE_MS) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(runPreview, delay);
}

function threshold() {
  return Number.parseFloat($("threshold").value);
}

// Propagation scores whole tracks (by their track vectors) or single objects.
function propagationUnit() {
  return $("prop-unit").value === "object" ? "object" : "track";
}

function inTracks(r) {
  return r.tracks && r.tracks.length ? ` in ${plural(r.tracks.length, "track")}` : "";
}

async function runPreview() {
  const name = labelName();
  const info = $("preview-info");
  const seq = ++state.previewSeq;
  if (!name.trim() || !state.collection) {
    info.textContent = "Enter a label name to preview.";
    $("propagate").disabled = true;
    return;
  }
  if (!pathSafe(name)) {
    info.textContent = "A label named “.” or “..” cannot be put in a URL path: no propagation for it.";
    $("propagate").disabled = true;
    return;
  }
  const counts = state.labelCounts.get(name);
  if (!counts || counts.positive === 0) {
    // Propagation starts from the objects a person labeled positive: none yet, nothing to ask.
    info.textContent = `Label some objects positive as “${name}” first: propagation starts from them.`;
    delete info.dataset.count;
    $("propagate").disabled = true;
    return;
  }
  info.textContent = "Previewing…";
  try {
    const r = await api(`${col()}/labels/${enc(name)}/propagation/preview`, {
      method: "POST",
      body: { threshold: threshold(), unit: propagationUnit() },
    });
    if (seq !== state.previewSeq) return;
    info.textContent = `Would label ${r.count} object${r.count === 1 ? "" : "s"}${inTracks(r)} at threshold ${threshold().toFixed(2)}.`;
    info.dataset.count = String(r.count);
    $("propagate").disabled = r.count === 0;
  } catch (err) {
    if (seq !== state.previewSeq) return;
    info.textContent = err instanceof AuthError ? "" : `Preview failed: ${err.message}`;
    delete info.dataset.count;
    $("propagate").disabled = true;
  }
}

async function propagate() {
  const name = labelName();
  if (!name.trim() || !pathSafe(name)) return;
  $("propagate").disabled = true;
  try {
    const r = await api(`${col()}/labels/${enc(name)}/propagation`, {
      method: "POST",
      body: { threshold: threshold(), unit: propagationUnit() },
    });
    await refreshAfterLabelChange();
    status(`Propagated “${name}” to ${r.count} object${r.count === 1 ? "" : "s"}.`);
  } catch (err) {
    reportError(err, "Propagation");
    $("propagate").disabled = false;
  }
}

async function refreshPropagations() {
  const name = labelName();
  const list = $("propagations");
  const seq = ++state.propsSeq;
  if (!name.trim() || !state.collection || !pathSafe(name)) {
    list.replaceChildren();
    return;
  }
  let props;
  try {
    props = await api(`${col()}/labels/${enc(name)}/propagations`);
  } catch (err) {
    if (seq !== state.propsSeq) return;
    list.replaceChildren(el("li", { class: "muted", text: `Could not load propagations: ${err.message}` }));
    return;
  }
  if (seq !== state.propsSeq) return;
  if (props.length === 0) {
    list.replaceChildren(el("li", { class: "muted", text: "None yet." }));
    return;
  }
  list.replaceChildren(
    ...props.map((p) => {
      const summary =
        `${p.count} object${p.count === 1 ? "" : "s"} at ≥ ${fmt2(p.threshold)}` +
        `${p.unit === "track" ? " by track" : ""} · ` +
        `${plural((p.sources || []).length, "source")}, ${plural((p.negatives || []).length, "negative")} · ` +
        `${fmtDate(p.created_at)}${p.created_by ? ` by ${p.created_by}` : ""}`;
      return el(
        "li",
        { class: p.undone_at ? "undone" : "", dataset: { propagationId: p.propagation_id } },
        el("span", { text: summary }),
        " ",
        p.undone_at
          ? el("span", { class: "muted", text: `(undone ${fmtDate(p.undone_at)})` })
          : el("button", {
              type: "button",
              class: "small",
              text: "Undo",
              "aria-label": `Undo propagation of ${fmtDate(p.created_at)} (${p.count} objects)`,
              onclick: () => undoPropagation(p),
            }),
      );
    }),
  );
}

async function undoPropagation(p) {
  try {
    const r = await api(`${col()}/propagations/${enc(p.propagation_id)}`, { method: "DELETE" });
    await refreshAfterLabelChange();
    status(`Undid the propagation: removed ${r.removed} label${r.removed === 1 ? "" : "s"}.`);
  } catch (err) {
    reportError(err, "Undo");
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring
function isTextEntry(target) {
  if (!target || !target.tagName) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName.toLowerCase();
  if (tag === "textarea" || tag === "select") return true;
  if (tag !== "input") return false;
  // Arrow keys belong to text fields, number fields and other sliders; the frame slider moves itself.
  return target.type !== "checkbox" && target.type !== "button" && target.type !== "submit";
}

function wire() {
  wirePlayer();
  $("collection-select").addEventListener("change", (e) =>
    selectCollection(e.target.value).catch((err) => reportError(err, "Loading the collection")),
  );
  $("video-select").addEventListener("change", (e) =>
    selectVideo(e.target.value, 0).catch((err) => reportError(err, "Loading the video")),
  );
  $("frame-slider").addEventListener("input", (e) => showFrame(Number.parseInt(e.target.value, 10)));
  $("prev-frame").addEventListener("click", () => showFrame(state.frameIndex - 1));
  $("next-frame").addEventListener("click", () => showFrame(state.frameIndex + 1));
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if ($("player").open) return; // the player's own controls have the keys
    if ((e.key === "p" || e.key === "P") && e.target && e.target.classList && e.target.classList.contains("box")) {
      const o = state.frame && state.frame.objects.find((x) => x.object_id === e.target.dataset.objectId);
      if (o) {
        e.preventDefault();
        openPlayer(o, [state.frame.width, state.frame.height]);
      }
      return;
    }
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    if (isTextEntry(e.target)) return;
    if (!state.video || state.total === 0) return;
    e.preventDefault();
    showFrame(state.frameIndex + (e.key === "ArrowLeft" ? -1 : 1));
  });
  $("frame-image").addEventListener("error", () => {
    if ($("frame-image").getAttribute("src")) status("Could not load the frame image.", "error");
  });

  $("search-params").addEventListener("submit", (e) => {
    e.preventDefault();
    runQuery();
  });
  $("group-select").addEventListener("change", () => runQuery());
  for (const [id] of RANGE_INPUTS) $(id).addEventListener("change", onTimeRangeChanged);
  $("select-all").addEventListener("click", () => {
    for (const o of state.results) state.selected.add(o.object_id);
    renderResults();
  });
  $("select-none").addEventListener("click", () => {
    state.selected.clear();
    renderResults();
  });

  $("label-name").addEventListener("input", onLabelNameChanged);
  $("label-positive").addEventListener("click", () => applyLabel("positive"));
  $("label-negative").addEventListener("click", () => applyLabel("negative"));
  $("label-remove").addEventListener("click", () => applyLabel("remove"));

  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = threshold().toFixed(2);
    schedulePreview();
  });
  $("prop-unit").addEventListener("change", schedulePreview);
  $("propagate").addEventListener("click", propagate);

  $("text-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("text-query").value.trim();
    if (q) queryText(q);
  });
  $("said-search").addEventListener("submit", (e) => {
    e.preventDefault();
    runSaid();
  });
  $("said-visible-kind").addEventListener("change", onSaidVisibleChanged);
  $("said-visible").addEventListener("input", onSaidVisibleChanged);
  $("image-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("image-query").files[0];
    if (file) queryImage(file);
  });
}

async function main() {
  wire();
  $("threshold-value").textContent = threshold().toFixed(2);
  updateSelection();
  try {
    await loadCollections();
  } catch (err) {
    reportError(err, "Loading collections");
  }
  document.body.dataset.ready = "true";
}

main();
