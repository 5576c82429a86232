"""Helpers every vidsearch task calls inside its own code: the run's params, timings, segment names,
the per-try log line, and fault injection.

Each segment task logs which segment (and time range) of which video it works on and which try it is,
and the grid names every mapped instance after its segment, e.g. `seg0003 [00:30.000-00:40.000]`.

Fault injection (tests and drills only): the environment variable `VIDSEARCH_FAULTS` holds
comma-separated `<stage>:<segment index>:<kind>[:<tries>]` entries, e.g. `detect_embed:1:transient`
or `detect_embed:1:kill:2`. The segment task for that stage and segment then fails with `kind`
(`transient`: a TransientError; `permanent`: a PermanentError; `quarantine`: a QualityGateError, so
the segment is quarantined as by a failed gate; `kill`: a worker process killed by SIGKILL, through
the real launcher) on every try, or on tries 1..`tries` only. `<stage>` may also be a full task id
(`segment.index`): then only that task group's task fails, not the in-run `reprocess` group's.
Unset (the default), nothing is injected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, cast

from airflow.sdk import get_current_context
from vidsearch.params import IngestParams

log = logging.getLogger(__name__)

# XCom key of each task's own timings (`timed`), read by bench/e2e.py.
TIMING_XCOM_KEY = "vidsearch_timing"
FAULTS_ENV = "VIDSEARCH_FAULTS"


def ingest_params(ingest: dict | None = None) -> IngestParams:
    """The run's IngestParams: from `ingest` when given (reprocess_segments passes the original
    run's), else from the run's params (video_ingest's trigger form)."""
    if ingest is not None:
        return IngestParams.model_validate(ingest)
    return IngestParams.from_conf(dict(get_current_context()["params"]))


@contextlib.contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time the task's own code and push the figures as XCom `vidsearch_timing` (also on failure).

    `process_started_at` (when this OS process was created), `code_started_at`, `finished_at` (unix
    seconds), `work_s`, `gx_setup_s` (seconds this process spent importing GX and building suites:
    0 when it inherited them from a preloading executor), `preloaded`, `max_rss_bytes` (peak RSS of
    this process, pages shared with the executor worker it was forked from included) and
    `children_max_rss_bytes` (of its largest finished child, e.g. ffmpeg; an upper bound). With the
    task instance's start and end dates they split a task's wall time into start-up, work and exit.
    """
    from vidsearch import procinfo, quality

    from vidsearch_airflow.executor import PRELOADED_ENV

    code_started = time.time()
    gx_before = quality.setup_seconds()
    try:
        yield
    finally:
        finished = time.time()
        timing = {
            "task": stage,
            "pid": os.getpid(),
            "process_started_at": procinfo.started_at(),
            "code_started_at": code_started,
            "finished_at": finished,
            "work_s": round(finished - code_started, 4),
            "gx_setup_s": round(quality.setup_seconds() - gx_before, 4),
            "preloaded": os.environ.get(PRELOADED_ENV) == "1",
            "max_rss_bytes": procinfo.peak_rss_bytes(),
            "children_max_rss_bytes": procinfo.children_peak_rss_bytes(),
        }
        log.info("%s timing: %s", stage, timing)
        try:
            get_current_context()["ti"].xcom_push(key=TIMING_XCOM_KEY, value=timing)
        except Exception:
            log.warning("could not push the %s timings", stage, exc_info=True)


FAULT_KINDS = ("transient", "permanent", "quarantine", "kill")


def injected_fault(stage: str, segment_index: int, try_number: int, task_id: str | None = None) -> str | None:
    """The fault `VIDSEARCH_FAULTS` asks for at this stage (or task id), segment and try, if any."""
    spec = os.environ.get(FAULTS_ENV, "").strip()
    if not spec:
        return None
    for entry in spec.split(","):
        fields = entry.strip().split(":")
        if len(fields) not in (3, 4) or fields[2] not in FAULT_KINDS:
            raise ValueError(f"{FAULTS_ENV}: bad entry {entry!r} (want stage:segment:{'|'.join(FAULT_KINDS)}[:tries])")
        name, index, kind = fields[0], int(fields[1]), fields[2]
        tries = int(fields[3]) if len(fields) == 4 else None
        if name in (stage, task_id) and index == segment_index and (tries is None or try_number <= tries):
            return kind
    return None


def _raise_fault(kind: str, stage: str, label: str) -> None:
    from vidsearch.errors import PermanentError, QualityGateError, TransientError
    from vidsearch.models import launcher

    log.warning("%s: injecting a %s fault into %s (%s is set)", label, kind, stage, FAULTS_ENV)
    if kind == "transient":
        raise TransientError(f"{label}: injected transient fault in {stage}")
    if kind == "permanent":
        raise PermanentError(f"{label}: injected permanent fault in {stage}")
    if kind == "quarantine":
        raise QualityGateError(f"{label}: injected quality gate failure in {stage}")
    # A worker process killed by SIGKILL (OOM killer, evicted pod), through the real launcher.
    launcher.run_local(
        ["python", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "--output-uri", "file:///dev/null"]
    )
    raise RuntimeError(f"{label}: injected kill did not kill")  # pragma: no cover


def name_segment(segment: Any) -> None:
    """Let the grid name this mapped task instance after its segment and time range (first thing a
    segment task does, so even a failure to connect anywhere shows under the segment's name)."""
    # A key of our own in the context, read by map_index_template (not one of Context's typed keys).
    cast(dict[str, Any], get_current_context())["segment_label"] = segment.label


def begin_segment_task(stage: str, segment: Any, svc: Any, params: Any) -> None:
    """Log what the task works on (segment, time range, try), apply an injected fault, and reopen the
    catalog run when the run is being repaired.

    A run whose finalize failed is marked failed in the catalog; when a segment of it runs again
    (its failed tasks cleared in the UI), the run is running again, so finalize re-checks it instead
    of repeating the old error. (Probe and split failures never get here: no segment runs then.)
    """
    from vidsearch import pipeline
    from vidsearch.stores import catalog as cat

    ctx = get_current_context()
    ti = ctx["ti"]
    try_number = int(getattr(ti, "try_number", 1) or 1)
    max_tries = getattr(ti, "max_tries", None)
    of = f" of {int(max_tries) + 1}" if max_tries is not None else ""
    log.info(
        "%s: %s of video %s (collection %s, %.3f-%.3f s), try %d%s",
        segment.label,
        stage,
        segment.video_id,
        params.collection,
        segment.start_s,
        segment.end_s,
        try_number,
        of,
    )
    run_id = ctx["run_id"]
    run = svc.catalog.get_run(run_id)
    if run and run["state"] == cat.RunState.FAILED.value:
        log.info("catalog run %s was failed (%s); running again for %s", run_id, run["error"], segment.label)
        svc.catalog.end_run(run_id, cat.RunState.RUNNING)
    kind = injected_fault(stage, segment.index, try_number, getattr(ti, "task_id", None))
    if kind:
        try:
            _raise_fault(kind, stage, segment.label)
        except Exception as exc:
            pipeline.mark_segment_failed(svc, params, segment, exc)
            raise
