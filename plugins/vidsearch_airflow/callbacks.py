"""DAG-level callbacks of the ingest DAGs.

`close_abandoned_run` is meant as the ingest DAGs' `on_failure_callback` (not registered yet: under
`dag.test()` on Airflow 3.3 the callback's context is built without the run conf and fails on
video_ingest's required `source` param, which breaks every dag.test of a failing run): a run that ends failed without its
finalize having closed it in the catalog (killed, marked failed in the UI, past its timeout) still
leaves the run and the video in a terminal state (done, partial or failed by its segments), never
`running` / `ingesting`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def close_abandoned_run(context: Any) -> None:
    """Close the catalog run of a failed DAG run if nothing else did (see module docstring)."""
    from vidsearch import pipeline

    from vidsearch_airflow.services import services

    run_id = context["run_id"]
    reason = f"the Airflow run ended {context.get('reason') or 'failed'} before finalize closed it"
    try:
        pipeline.close_abandoned_run(services(), run_id, reason)
    except Exception:
        log.exception("could not close catalog run %s", run_id)
