"""The preloading executor: task processes forked after `preload()` start with GX and the task
libraries ready, and still gate correctly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: preload, then fork a "task process" that times its imports and a gate.
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    preload = sys.argv[1] == "1"
    if preload:
        from vidsearch_airflow import executor
        timings = executor.preload()
    else:
        timings = {}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        started = time.perf_counter()
        from vidsearch.stores import catalog
        from vidsearch import pipeline, quality
        from vidsearch.records import VideoManifest
        import_s = time.perf_counter() - started
        manifest = VideoManifest(
            video_id="0" * 32, source="a.mp4", content_sha256="ab" * 32, size_bytes=1000,
            container="mov,mp4,m4a,3gp,3g2,mj2", duration_s=3.0, video_codec="h264", width=160,
            height=90, coded_width=160, coded_height=90, rotation=0, frame_rate=10.0,
            nominal_frame_rate=10.0, variable_frame_rate=False, frame_count=30, start_time_s=0.0,
            has_audio=False,
        )
        good = quality.check_probe(manifest)
        bad = quality.check_probe(manifest.model_copy(update={"duration_s": 0.0}))
        out = {
            "import_s": import_s,
            "gx_setup_s": quality.setup_seconds(),
            "good": good.success,
            "bad": bad.success,
            "bad_failed": [f.column for f in bad.failed],
            "head": catalog.head_revision(),
            "preloaded_env": os.environ.get("VIDSEARCH_PRELOADED"),
        }
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.waitpid(pid, 0)
    print(json.dumps({"parent": sorted(timings), "child": json.loads(data)}))
    """
)


def _run(preload: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")])}
    env.pop("VIDSEARCH_PRELOADED", None)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "1" if preload else "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_forked_task_inherits_gx_and_gates_correctly():
    cold, warm = _run(preload=False), _run(preload=True)
    # Without preloading the task process builds GX itself; with it, it spends nothing on it.
    assert cold["child"]["gx_setup_s"] > 0.5  # importing GX, building the context and suite
    assert warm["child"]["gx_setup_s"] == 0.0
    assert warm["child"]["import_s"] < 0.05, "every module was already imported"
    assert warm["child"]["preloaded_env"] == "1" and cold["child"]["preloaded_env"] is None
    # The inherited context validates like a fresh one: a good manifest passes, a bad one fails on
    # the same expectation.
    for run in (cold, warm):
        assert run["child"]["good"] is True and run["child"]["bad"] is False
    assert warm["child"]["bad_failed"] == cold["child"]["bad_failed"] == ["duration_s"]
    assert warm["child"]["head"] == cold["child"]["head"]
    assert {"great_expectations", "vidsearch.pipeline", "warm_up"} <= set(warm["parent"])


def test_preload_can_be_turned_off(monkeypatch):
    from vidsearch_airflow import executor

    monkeypatch.setenv(executor.PRELOAD_ENV, "0")
    assert not executor.preload_enabled()
    monkeypatch.setenv(executor.PRELOAD_ENV, "1")
    assert executor.preload_enabled()


def test_a_module_that_cannot_be_imported_is_skipped(monkeypatch):
    from vidsearch_airflow import executor

    monkeypatch.setenv(executor.PRELOAD_EXTRA_ENV, "no_such_module_for_vidsearch")
    monkeypatch.delenv(executor.PRELOADED_ENV, raising=False)  # preload() sets it; restored after
    timings = executor.preload()
    assert "no_such_module_for_vidsearch" not in timings
    assert "vidsearch.pipeline" in timings
