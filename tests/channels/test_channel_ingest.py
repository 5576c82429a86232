"""`channel_ingest` end to end on the real metadata DB and catalog: discovery by data interval, one
`video_ingest` run per new video under a deterministic run id, nothing twice; and a real Airflow
backfill (created by the `airflow backfill create` CLI, its runs executed without a scheduler)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
import subprocess
import sys

import pytest
from channel_helpers import (
    delete_runs,
    fresh_dag,
    make_file,
    run_existing_dagrun,
    sync_dags_to_db,
    task_states,
    triggered_runs,
    write_channels,
)
from vidsearch import channels as ch

pytestmark = pytest.mark.integration
UTC = dt.UTC


def _at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 10, hour, minute, tzinfo=UTC)


def _video_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@pytest.fixture(scope="module", autouse=True)
def _cleanup(airflow_db):
    yield
    # Triggered runs no scheduler will run, and the backfill no scheduler will complete.
    import sqlalchemy as sa
    from airflow.models.backfill import Backfill
    from airflow.settings import Session

    delete_runs("video_ingest", "channel__")
    with Session() as session:
        session.execute(
            sa.update(Backfill)
            .where(Backfill.dag_id == "channel_ingest", Backfill.completed_at.is_(None))
            .values(completed_at=dt.datetime.now(UTC))
        )
        session.commit()


@pytest.fixture()
def dag(airflow_db):
    return fresh_dag("channel_ingest")


def _ingested(catalog, collection: str, data: bytes) -> None:
    import sqlalchemy as sa
    from vidsearch.stores.catalog import videos

    sha = hashlib.sha256(data).hexdigest()
    with catalog.engine.begin() as conn:
        conn.execute(
            sa.insert(videos).values(
                collection=collection,
                video_id=sha[:32],
                source="/somewhere/else.mp4",
                content_sha256=sha,
                source_uri="file:///objects/x",
                manifest={},
                state="done",
            )
        )


def test_discovery_triggers_every_unseen_video_once_and_a_rerun_triggers_nothing(
    dag, dagbag, catalog, tmp_path, monkeypatch
):
    folder = tmp_path / "drop"
    new_a, new_b, seen = b"new video A" * 50, b"new video B" * 50, b"ingested video" * 50
    path_a = make_file(folder / "a.mp4", new_a, _at(1, 5))
    path_b = make_file(folder / "sub" / "b.mov", new_b, _at(1, 40))
    make_file(folder / "seen.mp4", seen, _at(1, 20))
    make_file(folder / "a-copy.mp4", new_a, _at(1, 50))
    # Outside the run's interval (moved in later with its old time kept, say): found all the same.
    path_late = make_file(folder / "next-hour.mp4", b"later" * 50, _at(2, 10))
    _ingested(catalog, "chan_dag", seen)
    monkeypatch.setenv(
        ch.CHANNELS_FILE_ENV,
        str(
            write_channels(
                tmp_path / "channels.yaml",
                [
                    {
                        "name": "dagdrop",
                        "kind": "folder",
                        "location": str(folder),
                        "ingest": {"collection": "chan_dag", "segment_seconds": 5, "score_threshold": 0.5},
                    },
                    {"name": "off", "kind": "folder", "location": str(tmp_path / "nope"), "enabled": False},
                ],
            )
        ),
    )

    # Manual test run at 02:00: data interval [01:00, 02:00).
    dagrun = dag.test(logical_date=_at(2))
    states = task_states(dagrun)
    assert dagrun.state == "success", states
    assert (dagrun.data_interval_start, dagrun.data_interval_end) == (_at(1), _at(2))

    expected = {
        f"channel__dagdrop__{_video_id(new_a)}": str(path_a.resolve()),
        f"channel__dagdrop__{_video_id(new_b)}": str(path_b.resolve()),
        f"channel__dagdrop__{_video_id(b'later' * 50)}": str(path_late.resolve()),
    }
    runs = triggered_runs("channel__dagdrop__")
    assert {run_id: r["conf"]["source"] for run_id, r in runs.items()} == expected
    for run in runs.values():
        assert {k: v for k, v in run["conf"].items() if k != "source"} == {
            "collection": "chan_dag",
            "segment_seconds": 5.0,
            "score_threshold": 0.5,
        }
        assert run["note"].startswith("dagdrop: ")
        # The conf passes video_ingest's trigger form.
        params = copy.deepcopy(dagbag.dags["video_ingest"].params)
        for key, value in run["conf"].items():
            params[key] = value
        params.validate()
    triggers = sorted((ti for ti in dagrun.get_task_instances() if ti.task_id == "trigger"), key=lambda t: t.map_index)
    assert [ti.state for ti in triggers] == ["success", "success", "success"]
    assert [ti.rendered_map_index for ti in triggers] == [
        f"dagdrop: a.mp4, {_at(1, 5).isoformat()}",
        f"dagdrop: b.mov, {_at(1, 40).isoformat()}",
        f"dagdrop: next-hour.mp4, {_at(2, 10).isoformat()}",
    ]

    # Discovery over the same interval again (another run): everything is known, nothing to trigger.
    again = dag.test(logical_date=_at(2))
    assert again.state == "success", task_states(again)
    assert task_states(again)[("trigger", -1)][0] == "skipped"  # mapped over nothing
    assert triggered_runs("channel__dagdrop__").keys() == expected.keys()

    # The next interval: a file that arrives keeping an old modification time (mv, cp -p, rsync -a).
    old = make_file(folder / "moved-in.mp4", b"moved in" * 50, _at(0, 30))
    later = dag.test(logical_date=_at(3))
    assert later.state == "success", task_states(later)
    assert len(triggered_runs("channel__dagdrop__")) == 4
    assert triggered_runs("channel__dagdrop__")[f"channel__dagdrop__{_video_id(b'moved in' * 50)}"]["conf"][
        "source"
    ] == str(old.resolve())

    # A manual full scan of the channel: everything is known already.
    full = fresh_dag("channel_ingest").test(logical_date=_at(4), run_conf={"channels": ["dagdrop"], "full_scan": True})
    assert full.state == "success", task_states(full)
    assert len(triggered_runs("channel__dagdrop__")) == 4


def test_an_unreadable_channel_fails_the_run_after_the_others_are_triggered(dag, tmp_path, monkeypatch):
    folder = tmp_path / "ok"
    data = b"good channel video" * 50
    make_file(folder / "v.mp4", data, _at(5, 30))
    monkeypatch.setenv(
        ch.CHANNELS_FILE_ENV,
        str(
            write_channels(
                tmp_path / "channels.yaml",
                [
                    {"name": "fine", "kind": "folder", "location": str(folder), "ingest": {"collection": "chan_err"}},
                    {"name": "gone", "kind": "folder", "location": str(tmp_path / "unmounted")},
                ],
            )
        ),
    )
    for task in dag.tasks:  # no waiting between tries in the test
        task.retries, task.retry_delay, task.max_retry_delay = 1, dt.timedelta(seconds=0), dt.timedelta(seconds=1)
    dagrun = dag.test(logical_date=_at(6))
    states = task_states(dagrun)
    assert dagrun.state == "failed"
    assert states[("discover", -1)] == ("success", 2)  # retried once, then handed over what it found
    assert states[("trigger", 0)][0] == "success"
    assert states[("report", -1)] == ("failed", 1)  # names the channel, no pointless retry
    assert list(triggered_runs("channel__fine__")) == [f"channel__fine__{_video_id(data)}"]


def test_a_backfill_over_two_intervals_triggers_each_unseen_video_once(dag, tmp_path, monkeypatch):
    """Folders are listed whatever the files' times (a moved-in file keeps an old one): the first
    interval's run finds everything not seen yet, the second finds nothing new; re-running both
    re-triggers nothing."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.settings import Session

    folder = tmp_path / "bf"
    first, second, third = b"backfill one" * 50, b"backfill two" * 50, b"backfill three" * 50
    make_file(folder / "before.mp4", b"too early" * 50, _at(9, 59))
    make_file(folder / "one.mp4", first, _at(10, 0))  # the first instant of the first interval
    make_file(folder / "two.mp4", second, _at(10, 59))
    make_file(folder / "three.mp4", third, _at(11, 30))
    make_file(folder / "one-again.mp4", first, _at(11, 45))  # duplicate content in the second interval
    make_file(folder / "after.mp4", b"too late" * 50, _at(12, 0))
    monkeypatch.setenv(
        ch.CHANNELS_FILE_ENV,
        str(
            write_channels(
                tmp_path / "channels.yaml",
                [{"name": "bf", "kind": "folder", "location": str(folder), "ingest": {"collection": "chan_bf"}}],
            )
        ),
    )
    sync_dags_to_db()

    # The real thing: Airflow's backfill CLI creates one run per data interval (10:00-11:00, 11:00-12:00).
    subprocess.run(
        [
            sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", "channel_ingest",
            "--from-date", _at(10).isoformat(), "--to-date", _at(11).isoformat(),
        ],
        check=True,
        env=os.environ.copy(),
        capture_output=True,
    )  # fmt: skip
    with Session() as session:
        runs = session.scalars(
            sa.select(DagRun)
            .where(DagRun.dag_id == "channel_ingest", DagRun.run_type == "backfill")
            .order_by(DagRun.logical_date)
        ).all()
        intervals = [(r.run_id, r.data_interval_start, r.data_interval_end) for r in runs]
    assert [(s, e) for _, s, e in intervals] == [(_at(10), _at(11)), (_at(11), _at(12))]

    # No scheduler in the test: run the backfill's runs here, in order.
    for run_id, _, _ in intervals:
        assert run_existing_dagrun(dag, run_id).state == "success"
    early, late = b"too early" * 50, b"too late" * 50
    expected = {f"channel__bf__{_video_id(d)}" for d in (early, first, second, third, late)}
    runs = triggered_runs("channel__bf__")
    assert set(runs) == expected  # one-again.mp4 is a duplicate of one.mp4
    assert sorted(os.path.basename(r["conf"]["source"]) for r in runs.values()) == [
        "after.mp4",
        "before.mp4",
        "one.mp4",
        "three.mp4",
        "two.mp4",
    ]

    # The backfill again (its runs cleared and re-run): nothing new.
    from airflow.models.taskinstance import clear_task_instances

    with Session() as session:
        for run_id, _, _ in intervals:
            dr = session.scalar(sa.select(DagRun).where(DagRun.dag_id == "channel_ingest", DagRun.run_id == run_id))
            clear_task_instances(dr.get_task_instances(session=session), session)
        session.commit()
    rerun_triggers = []
    for run_id, _, _ in intervals:
        dr = run_existing_dagrun(dag, run_id)
        assert dr.state == "success"
        rerun_triggers += [ti.state for ti in dr.get_task_instances() if ti.task_id == "trigger"]
    # The first run found its own items again and re-triggered them under the same run ids (skipped, as
    # they exist); the second found nothing (its trigger is skipped, mapped over nothing).
    assert rerun_triggers == ["skipped"] * 6
    assert set(triggered_runs("channel__bf__")) == expected
