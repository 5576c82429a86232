// vidsearch UI: the export download links (docs/export.md). A module of its own, next to app.js: it
// reads the pickers and the label name of the page and builds the links' URLs; it renders nothing from
// the API (no HTML is parsed, only attributes are set). Downloads are plain same-origin links, so the
// Airflow session cookie authorises them like every other request of the page.

const $ = (id) => document.getElementById(id);

// The API root, as app.js computes it (one module instance: the page already loaded it).
import { API_BASE } from "./app.js";

const LINKS = [
  { id: "export-coco", path: "export/coco", params: {} },
  { id: "export-coco-images", path: "export/coco", params: { images: "true" } },
  { id: "export-mot", path: "export/mot", params: {} },
];

function scope() {
  const collection = $("collection-select")?.value || "";
  const video = $("video-select")?.value || "";
  const label = ($("label-name")?.value || "").trim();
  return {
    collection,
    video: $("export-this-video")?.checked ? video : "",
    label: $("export-this-label")?.checked ? label : "",
  };
}

function update() {
  const s = scope();
  for (const link of LINKS) {
    const a = $(link.id);
    if (!a) continue;
    if (!s.collection) {
      a.removeAttribute("href");
      a.setAttribute("aria-disabled", "true");
      continue;
    }
    const url = new URL(`collections/${encodeURIComponent(s.collection)}/${link.path}`, API_BASE);
    for (const [k, v] of Object.entries(link.params)) url.searchParams.set(k, v);
    if (s.video) url.searchParams.set("video_id", s.video);
    if (s.label) url.searchParams.set("label", s.label);
    a.href = url.href;
    a.removeAttribute("aria-disabled");
  }
  const info = $("export-info");
  if (info) {
    const parts = [s.collection ? `collection ${s.collection}` : "no collection"];
    if (s.video) parts.push(`video ${s.video}`);
    if (s.label) parts.push(`label “${s.label}”`);
    info.textContent = `Exports: ${parts.join(", ")}. Human labels only; negatives are left out.`;
  }
}

function wire() {
  if (!$("export-panel")) return;
  for (const id of ["collection-select", "video-select"]) $(id)?.addEventListener("change", update);
  for (const id of ["export-this-video", "export-this-label"]) $(id)?.addEventListener("change", update);
  $("label-name")?.addEventListener("input", update);
  // The pickers are also set by the page's own script (no change event): build the URL again just
  // before a link is followed, and whenever the pointer or the focus reaches it.
  for (const link of LINKS) {
    const a = $(link.id);
    if (!a) continue;
    for (const ev of ["pointerenter", "focus", "click"]) a.addEventListener(ev, update);
    a.addEventListener("click", (e) => {
      if (!a.hasAttribute("href")) e.preventDefault();
    });
  }
  update();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
else wire();
