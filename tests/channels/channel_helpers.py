"""Helpers for the channel and reprocessing tests: files with chosen modification times, a
scheduler-less runner for DAG runs that already exist (backfill runs, cleared runs), and the
video_ingest runs that channels triggered."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[2] / "dags"
UTC = dt.UTC


def make_file(path: Path, data: bytes, when: dt.datetime) -> Path:
    """Write `data` at `path` with modification time `when`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def write_channels(path: Path, channels: Iterable[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"channels": list(channels)}))
    return path


def fresh_dag(dag_id: str) -> Any:
    """A newly parsed DAG. `dag.test()` runs tasks in this process, and a run's conf lingers in the
    task objects' params afterwards: tests that run several confs use one DAG object each."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


def sync_dags_to_db() -> None:
    """Write the DAGs folder to the metadata DB (as the dag-processor does), so the backfill CLI and the
    trigger operator find the DAGs."""
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    with settings.Session() as session:
        manager.sync_bundles_to_db(session=session)
        session.commit()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def run_existing_dagrun(dag: Any, run_id: str, timeout_s: float = 600) -> Any:
    """Run a DAG run that already exists (created by a backfill, or cleared), in this process, the way
    `dag.test()` runs the one it creates: no scheduler, no executor."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.settings import Session
    from airflow.utils.state import DagRunState, TaskInstanceState

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    session = Session()
    dr = session.scalar(sa.select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    assert dr is not None, run_id
    dr.dag = scheduler_dag
    dr.state = DagRunState.RUNNING
    session.commit()
    deadline = time.monotonic() + timeout_s
    while dr.state == DagRunState.RUNNING:
        assert time.monotonic() < deadline, f"{run_id} did not finish in {timeout_s}s"
        session.expire_all()
        schedulable, _ = dr.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        scheduled = [ti for ti in dr.get_task_instances(session=session) if ti.state == TaskInstanceState.SCHEDULED]
        if not scheduled:
            time.sleep(0.5)  # waiting for a retry delay
        for ti in scheduled:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    session.expire_all()
    dr = session.scalar(sa.select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    dr.dag = scheduler_dag
    session.close()
    return dr


def triggered_runs(prefix: str = "channel__") -> dict[str, dict]:
    """video_ingest runs whose run id starts with `prefix`: run id -> {conf, note, run_type}."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.settings import Session

    with Session() as session:
        runs = session.scalars(
            sa.select(DagRun).where(DagRun.dag_id == "video_ingest", DagRun.run_id.startswith(prefix))
        ).all()
        return {r.run_id: {"conf": dict(r.conf or {}), "note": r.note, "run_type": r.run_type} for r in runs}


def delete_runs(dag_id: str, prefix: str) -> None:
    """Remove runs a test created and that no scheduler will ever run."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.settings import Session

    with Session() as session:
        for run in session.scalars(
            sa.select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.startswith(prefix))
        ).all():
            session.delete(run)
        session.commit()


def task_states(dagrun) -> dict[tuple[str, int], tuple[str, int]]:
    return {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in dagrun.get_task_instances()}
