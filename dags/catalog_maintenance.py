"""
# catalog_maintenance

Keeps the catalog's run and video states true to what Airflow did. Every 10 minutes, unpaused from
the start.

* **close_abandoned_runs**: a catalog run still `running` whose Airflow run has ended (`success` or
  `failed`) lost its `finalize`: the run was marked failed by hand (Airflow then runs no further task
  and fires no callback), or finalize itself was killed. The run and its video are closed with the
  state their segments add up to (`done`, `partial` or `failed`) and the reason in the run's error,
  so no video stays `ingesting`. Runs Airflow still works on are left alone. Clearing such a run's
  tasks later runs finalize again, which closes it anew.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task
from vidsearch_airflow.policy import DEFAULT_ARGS, STAGES
from vidsearch_airflow.task_context import timed


@dag(
    dag_id="catalog_maintenance",
    schedule=timedelta(minutes=10),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    default_args=DEFAULT_ARGS,
    tags=["vidsearch", "maintenance"],
    doc_md=__doc__,
)
def catalog_maintenance() -> None:
    @task(**STAGES["plan"].task_kwargs())
    def close_abandoned_runs() -> dict[str, str]:
        """Close the catalog runs whose Airflow run ended without finalize."""
        from airflow.sdk.exceptions import AirflowRuntimeError
        from vidsearch import pipeline
        from vidsearch_airflow.services import services

        with timed("close_abandoned_runs"):
            ti = get_current_context()["ti"]

            def airflow_state(dag_id: str, run_id: str) -> str | None:
                try:
                    state = ti.get_dagrun_state(dag_id, run_id)
                except AirflowRuntimeError:  # the API server knows no such run
                    return None
                return str(getattr(state, "value", state))  # an enum member: its value, "failed"

            return pipeline.close_abandoned_runs(services(), airflow_state)

    close_abandoned_runs()


catalog_maintenance()
