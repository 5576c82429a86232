"""What the tests that run the real stack (scheduler, triggerer, api-server, warm worker) share."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from devstack import PORT_ENV_VARS, StackConfig, free_port
from devstack.__main__ import main as devstack_main


@contextlib.contextmanager
def running_stack(prefix: str, env: Mapping[str, str] | None = None) -> Iterator[tuple[StackConfig, Path]]:
    """The CLI stack (`make up`) on free ports with its data in a temporary folder, `env` added to the
    environment its processes inherit; stopped, and the environment restored, afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    saved = dict(os.environ)
    os.environ["VIDSEARCH_DATA_DIR"] = str(base / "data")
    for name in PORT_ENV_VARS:
        os.environ[name] = str(free_port())
    # The session's Airflow settings (tests/conftest.py) are for dag.test(): the stack sets its own.
    for name in list(os.environ):
        if name.startswith("AIRFLOW") or name in ("VIDSEARCH_STORAGE_ROOT",):
            del os.environ[name]
    # The stack's tests keep their videos in its folder: sources there are allowed (docs/security.md §2).
    os.environ["VIDSEARCH_SOURCE_ROOTS"] = str(base.resolve())
    os.environ.update(env or {})
    cfg = StackConfig.from_env()
    try:
        assert devstack_main(["up"]) == 0
        yield cfg, base
    finally:
        devstack_main(["down"])
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(base, ignore_errors=True)
