"""The worker image holds exactly the library modules the worker imports, and they pull in no database,
quality or Airflow code."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INCLUDE = REPO / "include"
DOCKERFILE = REPO / "images" / "worker" / "Dockerfile"
ENTRY_POINTS = ("vidsearch.models.worker", "vidsearch.models.transcriber", "vidsearch.models.worker_server")
FORBIDDEN = ("sqlalchemy", "great_expectations", "airflow", "pandas", "weaviate", "alembic")


def _module_file(name: str) -> Path:
    path = INCLUDE.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(name: str) -> set[str]:
    """Every vidsearch module `name` imports anywhere (module level or inside functions), with parents."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(_module_file(name).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vidsearch":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}").exists()}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "vidsearch"}
    return {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 2)}


def _worker_closure() -> set[str]:
    seen: set[str] = set()
    todo = list(ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_imports(name))
    return seen


def _copied_files() -> set[str]:
    """Repository paths of the library files the Dockerfile's COPY instructions put in the image."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    copied: set[str] = set()
    for line in text.splitlines():
        words = line.split() if line.startswith("COPY ") else []
        if words and words[0] == "COPY":
            copied |= {w for w in words[1:-1] if w.startswith("include/vidsearch")}
    return copied


def test_the_image_copies_exactly_the_modules_the_worker_imports():
    needed = {str(_module_file(m).relative_to(REPO)) for m in _worker_closure()}
    assert _copied_files() == needed


def test_the_copied_modules_run_the_worker_without_database_quality_or_airflow_code(tmp_path):
    for rel in _copied_files():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    probe = (
        "import importlib, sys\n"
        f"for name in {sorted(_worker_closure())!r}: importlib.import_module(name)\n"
        "from vidsearch.models import worker\n"
        "try:\n    worker.main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "from vidsearch.models import transcriber\n"
        "try:\n    transcriber.main(['--help'])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print('LOADED', loaded)\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path / "include")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "LOADED []" in done.stdout
