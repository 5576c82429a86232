"""The retry, timeout and pool policy of every vidsearch task.

Retries and timeouts are sized per stage (`STAGES`): every task retries with exponential backoff
(doubling, capped); `vidsearch.errors.PermanentError` (bad input, bad params, a failed quality gate,
missing model weights) fails a task at once through an `ExceptionRetryPolicy`, everything else
(Weaviate 5xx, S3 throttling, network errors, a killed worker, a timeout) is retried. Three pools
bound the shared resources: `cpu` (split, extract_frames: one per core), `gpu` (detect+embed) and
`weaviate_writers` (index). All must exist (the embedded stack creates them, `airflow_settings.yaml`
lists them): the scheduler does not run tasks of a pool that does not exist.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

GPU_POOL = "gpu"
WEAVIATE_POOL = "weaviate_writers"
# The CPU-heavy stages (split, extract_frames: ffmpeg decode + JPEG encode): as many at once as the
# machine has cores (the embedded stack sizes the pool so), not as many as the executor has slots.
CPU_POOL = "cpu"
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
    pool: str | None = None

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
    # The audio branch, beside extract_frames -> detect_embed -> index: the same policy per kind of work
    # (ffmpeg on a core, a model on the GPU pool, writes bounded by the Weaviate writers).
    "extract_audio": Stage(3, _s(15), _m(10), _m(20), pool=CPU_POOL),
    "transcribe": Stage(2, _s(60), _m(15), _m(60), pool=GPU_POOL),
    "index_transcript": Stage(5, _s(10), _m(5), _m(20), pool=WEAVIATE_POOL),
    "finalize": Stage(3, _s(15), _m(10), _m(10)),
    # channel_ingest and reprocess_segments
    "discover": Stage(3, _s(60), _m(15), _m(30)),
    "trigger": Stage(3, _s(15), _m(5), _m(5)),
    "plan": Stage(3, _s(15), _m(5), _m(10)),
    # A review's execution timeout covers asking and acting on the answer (the wait for a human is its
    # response timeout, the run's `review_timeout_hours`); a retry asks again.
    "review": Stage(2, _s(15), _m(5), _m(20)),
}
