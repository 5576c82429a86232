"""A LocalExecutor whose worker processes start with the task libraries already imported.

Airflow 3's LocalExecutor forks its worker processes from the scheduler when it starts, and each
worker forks one supervised process per task. A segment task that imports Great Expectations,
pandas, SQLAlchemy/Alembic, the Weaviate client and the Kubernetes provider itself spends seconds on
imports and GX set-up before doing a second of work, and with a dozen such tasks at once on two cores
the imports alone load the machine. `PreloadingLocalExecutor` imports those libraries (and builds the
GX context and suites) in the scheduler process *before* the workers are forked; every task process
then inherits them copy-on-write (the executor freezes the GC before forking, so the inherited
objects are not touched and stay shared).

    AIRFLOW__CORE__EXECUTOR=vidsearch_airflow.executor.PreloadingLocalExecutor

Nothing that holds a connection, a thread or a file is created before the fork: only imports, the GX
ephemeral context (in-memory stores, no threads, analytics off) and the Alembic head revision. What
is preloaded is `PRELOAD`; `VIDSEARCH_PRELOAD=0` turns preloading off (the plain LocalExecutor's
behaviour) and `VIDSEARCH_PRELOAD_EXTRA` adds comma-separated module names. A module that fails to
import is logged and skipped: the task then imports it itself, as without preloading.

The same `preload()` serves any executor whose workers fork their tasks (a Celery worker's
`worker_process_init`, see docs/deployment.md); the KubernetesExecutor starts a fresh pod per task
and gains nothing from it.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

PRELOAD_ENV = "VIDSEARCH_PRELOAD"
PRELOAD_EXTRA_ENV = "VIDSEARCH_PRELOAD_EXTRA"
# Set in the preloading process: tasks forked from it report `preloaded` in their timings.
PRELOADED_ENV = "VIDSEARCH_PRELOADED"

# What a video_ingest / channel_ingest / reprocess_segments task imports, heaviest first. Not torch:
# detect+embed runs in the warm worker, a worker process or a pod, never in the task process.
PRELOAD: tuple[str, ...] = (
    "great_expectations",
    "airflow.providers.cncf.kubernetes.operators.pod",
    "weaviate",
    "pandas",
    "alembic.command",
    "alembic.config",
    "alembic.script",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.weaviate.hooks.weaviate",
    "vidsearch.pipeline",
    "vidsearch.quality",
    "vidsearch.channels",
    "vidsearch_airflow.segment_tasks",
    "vidsearch_airflow.services",
    "vidsearch_airflow.gpu",
)


def preload_enabled() -> bool:
    return os.environ.get(PRELOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def preload() -> dict[str, float]:
    """Import `PRELOAD` (plus `VIDSEARCH_PRELOAD_EXTRA`), build the GX context and suites and the
    catalog's Alembic head; returns seconds per step. Safe to call twice (the second is free)."""
    extra = [m.strip() for m in os.environ.get(PRELOAD_EXTRA_ENV, "").split(",") if m.strip()]
    timings: dict[str, float] = {}
    for name in (*PRELOAD, *extra):
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a task imports it again and reports the real error
            log.warning(
                "preload: cannot import %s (%s: %s); tasks will import it themselves", name, type(exc).__name__, exc
            )
            continue
        timings[name] = time.perf_counter() - started
    started = time.perf_counter()
    try:
        from vidsearch import quality
        from vidsearch.stores import catalog

        quality.warm_up()
        catalog.head_revision()
    except Exception as exc:  # noqa: BLE001
        log.warning("preload: GX/catalog warm-up failed (%s: %s); tasks will do it themselves", type(exc).__name__, exc)
    else:
        timings["warm_up"] = time.perf_counter() - started
    os.environ[PRELOADED_ENV] = "1"
    return timings


class PreloadingLocalExecutor(LocalExecutor):
    """LocalExecutor that runs `preload()` in the scheduler before forking its worker processes."""

    def start(self) -> None:
        if preload_enabled() and self.is_mp_using_fork:
            started = time.perf_counter()
            timings = preload()
            slowest = sorted(timings.items(), key=lambda kv: -kv[1])[:5]
            self.log.info(
                "preloaded %d modules for task processes in %.1f s (slowest: %s)",
                len(timings),
                time.perf_counter() - started,
                ", ".join(f"{k} {v:.1f}s" for k, v in slowest),
            )
        elif preload_enabled():
            self.log.warning("multiprocessing does not fork here: task processes cannot inherit preloaded modules")
        super().start()
