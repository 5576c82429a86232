"""The per-segment work (`extract_frames` → `detect_embed` → `index`) shared by `video_ingest` and
`reprocess_segments`, and the retry, timeout and pool policy of every vidsearch task.

Retries and timeouts are sized per stage (`STAGES`): every task retries with exponential backoff
(doubling, capped); `vidsearch.errors.PermanentError` (bad input, bad params, a failed quality gate,
missing model weights) fails a task at once through an `ExceptionRetryPolicy`, everything else
(Weaviate 5xx, S3 throttling, network errors, a killed worker, a timeout) is retried. Three pools
bound the shared resources: `cpu` (split, extract_frames: one per core), `gpu` (detect+embed) and
`weaviate_writers` (index). All must exist (the embedded stack creates them, `airflow_settings.yaml`
lists them): the scheduler does not run tasks of a pool that does not exist.

Each segment task logs which segment (and time range) of which video it works on and which try it is,
the library logs progress (frames sampled, detect/embed batches, objects written), and the grid names
every mapped instance after its segment, e.g. `seg0003 [00:30.000-00:40.000]`.

Fault injection (tests and drills only): the environment variable `VIDSEARCH_FAULTS` holds
comma-separated `<stage>:<segment index>:<kind>[:<tries>]` entries, e.g. `detect_embed:1:transient`
or `detect_embed:1:kill:2`. The segment task for that stage and segment then fails with `kind`
(`transient`: a TransientError; `permanent`: a PermanentError; `kill`: a worker process killed by
SIGKILL, through the real launcher) on every try, or on tries 1..`tries` only. Unset (the default),
nothing is injected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from datetime import timedelta
from typing import Any, Iterator, Optional

from airflow.sdk import get_current_context, task, task_group
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

log = logging.getLogger(__name__)

GPU_POOL = "gpu"
WEAVIATE_POOL = "weaviate_writers"
# The CPU-heavy stages (split, extract_frames: ffmpeg decode + JPEG encode): as many at once as the
# machine has cores (the embedded stack sizes the pool so), not as many as the executor has slots.
CPU_POOL = "cpu"
# XCom key of each task's own timings (`timed`), read by bench/e2e.py.
TIMING_XCOM_KEY = "vidsearch_timing"
FAULTS_ENV = "VIDSEARCH_FAULTS"

PERMANENT_ERRORS_FAIL_AT_ONCE = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception="vidsearch.errors.PermanentError",
            action=RetryAction.FAIL,
            reason="permanent error: retrying cannot help",
        )
    ]
)

# Permanent errors (bad input, bad parameters, missing model weights) fail at once; everything else
# (Weaviate 5xx, storage or network hiccups, a crashed worker) retries with exponential backoff.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "vidsearch",
    "retries": 3,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "retry_policy": PERMANENT_ERRORS_FAIL_AT_ONCE,
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """Retries, backoff start and cap, timeout and pool of one kind of task."""

    retries: int
    retry_delay: timedelta
    max_retry_delay: timedelta
    execution_timeout: timedelta
    pool: Optional[str] = None

    def task_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "execution_timeout": self.execution_timeout,
        }
        if self.pool:
            kwargs["pool"] = self.pool
        return kwargs


_s, _m = (lambda n: timedelta(seconds=n)), (lambda n: timedelta(minutes=n))
STAGES: dict[str, Stage] = {
    # Fetching a large source over the network can take a while; a flaky origin deserves patience.
    "probe": Stage(3, _s(30), _m(10), _m(30)),
    "split": Stage(3, _s(30), _m(10), _m(30), pool=CPU_POOL),
    "extract_frames": Stage(3, _s(15), _m(10), _m(20), pool=CPU_POOL),
    # A crashed or evicted worker (OOM, preempted GPU node) is retried twice, a minute apart at first:
    # each try reloads the models. One hour covers a 10-minute segment at 30 fps on CPU.
    "detect_embed": Stage(2, _s(60), _m(15), _m(60), pool=GPU_POOL),
    # Weaviate 5xx/429 are the most common transient errors: retry often, starting soon.
    "index": Stage(5, _s(10), _m(5), _m(20), pool=WEAVIATE_POOL),
    "finalize": Stage(3, _s(15), _m(10), _m(10)),
    # channel_ingest and reprocess_segments
    "discover": Stage(3, _s(60), _m(15), _m(30)),
    "trigger": Stage(3, _s(15), _m(5), _m(5)),
    "plan": Stage(3, _s(15), _m(5), _m(10)),
}


# --------------------------------------------------------------------------------------------------
# Helpers used inside tasks
# --------------------------------------------------------------------------------------------------


def ingest_params(ingest: Optional[dict] = None) -> Any:
    """The run's IngestParams: from `ingest` when given (reprocess_segments passes the original
    run's), else from the run's params (video_ingest's trigger form)."""
    from vidsearch.pipeline import IngestParams

    if ingest is not None:
        return IngestParams.model_validate(ingest)
    params = dict(get_current_context()["params"])
    return IngestParams.model_validate({k: params[k] for k in IngestParams.model_fields if k in params})


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
        except Exception:  # noqa: BLE001 - timings must never fail a task
            log.warning("could not push the %s timings", stage, exc_info=True)


def injected_fault(stage: str, segment_index: int, try_number: int) -> Optional[str]:
    """The fault `VIDSEARCH_FAULTS` asks for at this stage, segment and try, if any."""
    spec = os.environ.get(FAULTS_ENV, "").strip()
    if not spec:
        return None
    for entry in spec.split(","):
        fields = entry.strip().split(":")
        if len(fields) not in (3, 4) or fields[2] not in ("transient", "permanent", "kill"):
            raise ValueError(f"{FAULTS_ENV}: bad entry {entry!r} (want stage:segment:transient|permanent|kill[:tries])")
        name, index, kind = fields[0], int(fields[1]), fields[2]
        tries = int(fields[3]) if len(fields) == 4 else None
        if name == stage and index == segment_index and (tries is None or try_number <= tries):
            return kind
    return None


def _raise_fault(kind: str, stage: str, label: str) -> None:
    from vidsearch.models import launcher
    from vidsearch.errors import PermanentError, TransientError

    log.warning("%s: injecting a %s fault into %s (%s is set)", label, kind, stage, FAULTS_ENV)
    if kind == "transient":
        raise TransientError(f"{label}: injected transient fault in {stage}")
    if kind == "permanent":
        raise PermanentError(f"{label}: injected permanent fault in {stage}")
    # A worker process killed by SIGKILL (OOM killer, evicted pod), through the real launcher.
    launcher.run_local(
        ["python", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "--output-uri", "file:///dev/null"]
    )
    raise RuntimeError(f"{label}: injected kill did not kill")  # pragma: no cover


def name_segment(segment: Any) -> None:
    """Let the grid name this mapped task instance after its segment and time range (first thing a
    segment task does, so even a failure to connect anywhere shows under the segment's name)."""
    get_current_context()["segment_label"] = segment.label


def begin_segment_task(stage: str, segment: Any, svc: Any, params: Any) -> None:
    """Log what the task works on (segment, time range, try), apply an injected fault, and reopen the
    catalog run when the run is being repaired.

    A run whose finalize failed is marked failed in the catalog; when a segment of it runs again
    (its failed tasks cleared in the UI), the run is running again, so finalize re-checks it instead
    of repeating the old error. (Probe and split failures never get here: no segment runs then.)
    """
    from vidsearch.stores import catalog as cat
    from vidsearch import pipeline

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
    kind = injected_fault(stage, segment.index, try_number)
    if kind:
        try:
            _raise_fault(kind, stage, segment.label)
        except Exception as exc:
            pipeline.mark_segment_failed(svc, params, segment, exc)
            raise


# --------------------------------------------------------------------------------------------------
# The mapped task group
# --------------------------------------------------------------------------------------------------


def segment_group(group_id: str = "segment") -> Any:
    """The per-segment task group: map it over segment records with
    `segment_group().partial(probed=..., [ingest=...]).expand(segment=...)`.

    `probed` is probe's output (manifest + staged source URI); `ingest` (optional) the IngestParams
    as JSON, otherwise the run's params are used.
    """

    @task(map_index_template="{{ segment_label }}", **STAGES["extract_frames"].task_kwargs())
    def extract_frames(segment: dict, probed: dict, ingest: Optional[dict] = None) -> dict:
        """Sample the segment's frames into one bundle."""
        from vidsearch import pipeline
        from vidsearch.records import Segment
        from vidsearch_airflow.services import services

        seg = Segment.model_validate(segment)
        name_segment(seg)
        with timed("extract_frames"):
            params, svc = ingest_params(ingest), services()
            begin_segment_task("extract_frames", seg, svc, params)
            manifest = pipeline.ProbeOutput.model_validate(probed).manifest
            run_id = get_current_context()["run_id"]
            bundle = pipeline.extract_frames(svc, run_id, params, seg, manifest)
            return bundle.model_dump(mode="json")

    @task(map_index_template="{{ segment_label }}", **STAGES["index"].task_kwargs())
    def index(segment: dict, bundle: dict, output_uri: str, ingest: Optional[dict] = None) -> dict:
        """Upsert the segment's objects into Weaviate and its frames and objects into Postgres."""
        from vidsearch import pipeline
        from vidsearch.records import FrameBundle, Segment
        from vidsearch_airflow.services import services

        seg = Segment.model_validate(segment)
        name_segment(seg)
        with timed("index"):
            params, svc = ingest_params(ingest), services()
            begin_segment_task("index", seg, svc, params)
            run_id = get_current_context()["run_id"]
            bundle_record = FrameBundle.model_validate(bundle)
            return pipeline.index_segment(svc, run_id, params, seg, bundle_record, output_uri)

    @task_group(group_id=group_id)
    def process_segment(segment: dict, probed: dict, ingest: Optional[dict] = None) -> None:
        from vidsearch_airflow.gpu import DetectEmbedOperator

        bundle = extract_frames(segment=segment, probed=probed, ingest=ingest)
        # A local worker process or a GPU pod (Variable `vidsearch_gpu`), decided when it runs.
        output_uri = DetectEmbedOperator(
            task_id="detect_embed",
            segment=segment,
            bundle=bundle,
            ingest=ingest,
            map_index_template="{{ segment_label }}",
            **STAGES["detect_embed"].task_kwargs(),
        ).output
        index(segment=segment, bundle=bundle, output_uri=output_uri, ingest=ingest)

    return process_segment
