"""Who may import whom (docs/architecture.md, "Code layout"), checked on every import statement.

Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = (REPO / "include", REPO / "plugins")
OURS = ("vidsearch", "vidsearch_airflow", "vidsearch_api", "devstack", "airflow")

BASE = ("vidsearch.errors", "vidsearch.records", "vidsearch.params", "vidsearch.settings")
# unit -> the modules (prefixes) it may import besides itself and the `vidsearch` package root.
RULES: dict[str, tuple[str, ...]] = {
    "vidsearch.errors": (),
    "vidsearch.records": (),
    "vidsearch.procinfo": (),
    "vidsearch.settings": (),
    "vidsearch.params": ("vidsearch.records",),
    "vidsearch.stores": BASE,
    "vidsearch.media": (*BASE, "vidsearch.stores.storage"),
    "vidsearch.models": (
        *BASE,
        "vidsearch.stores.storage",
        "vidsearch.media.bundle",
        "vidsearch.tracking",
        "vidsearch.transcripts",
    ),
    "vidsearch.quality": (*BASE, "vidsearch.stores.storage", "vidsearch.media"),
    "vidsearch.channels": (*BASE, "vidsearch.stores.storage", "vidsearch.media"),
    "vidsearch.pipeline": (
        *BASE,
        "vidsearch.procinfo",
        "vidsearch.stores",
        "vidsearch.media",
        "vidsearch.models",
        "vidsearch.quality",
        "vidsearch.tracks",
    ),
    # Association of detections into tracks: numpy/scipy only (the worker runs it).
    "vidsearch.tracking": BASE,
    # Transcript chunks from timestamped phrases, boundary ownership: pure (the worker runs it).
    "vidsearch.transcripts": BASE,
    # Tracks in the stores: ids at index time, stitching at finalize.
    "vidsearch.tracks": (*BASE, "vidsearch.stores", "vidsearch.tracking"),
    "vidsearch.reprocess": (*BASE, "vidsearch.stores", "vidsearch.pipeline"),
    "vidsearch.review": (*BASE, "vidsearch.stores", "vidsearch.pipeline", "vidsearch.media.bundle", "vidsearch.models"),
    "vidsearch.search": (*BASE, "vidsearch.stores", "vidsearch.media.bundle", "vidsearch.models"),
    "vidsearch.export": (*BASE, "vidsearch.stores"),
    "vidsearch_airflow": ("airflow", "vidsearch"),
    "vidsearch_api": ("airflow", "vidsearch", "vidsearch_airflow.services"),
    "devstack": ("vidsearch_airflow.airflow_settings",),
}
SUBPACKAGES = ("media", "models", "stores", "quality", "channels")


def _modules() -> dict[str, Path]:
    found = {}
    for root in ROOTS:
        for path in root.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            if parts[0] not in OURS:
                continue
            found[".".join(p for p in parts if p != "__init__")] = path
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "vidsearch" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        # (relative imports stay inside their own package)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.split(".")[0] in OURS}


def _allowed(unit: str, name: str) -> bool:
    if name in ("vidsearch", "vidsearch.lazy_exports") or name == unit or name.startswith(unit + "."):
        return True
    for prefix in RULES[unit]:
        # A package's __init__ (lazy re-exports) comes with any of its modules the unit may import.
        if name == prefix or name.startswith(prefix + ".") or prefix.startswith(name + "."):
            return True
    return False


MODULES = _modules()


def test_every_unit_has_a_rule():
    assert {_unit(m) for m in MODULES} <= set(RULES) | {"vidsearch"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layering(module):
    unit = _unit(module)
    if unit == "vidsearch":  # the package root: lazy_exports only
        assert _imports(MODULES[module]) == set()
        return
    bad = sorted(n for n in _imports(MODULES[module]) if not _allowed(unit, n))
    assert not bad, f"{module} ({unit}) may not import {bad}"


def test_the_rules_can_fail():
    assert not _allowed("vidsearch.media", "vidsearch.quality")
    assert not _allowed("vidsearch.models", "vidsearch.stores.catalog")
    assert not _allowed("vidsearch.stores", "airflow")
    assert _allowed("vidsearch.media", "vidsearch.stores")  # the lazy package init
    assert not _allowed("vidsearch.search", "vidsearch.pipeline")
