"""
# channel_ingest

Discovers the new videos of every **channel** (a folder, an S3 prefix or a feed, defined in
`include/channels.yaml` or the file named by `VIDSEARCH_CHANNELS_FILE`) and triggers one
`video_ingest` run per new video with the channel's ingest settings.

`discover` → `trigger` (mapped: one instance per new video, named after it) → `report`.

* **Schedule.** Hourly, on data intervals [start, end). A channel with its own `schedule` (cron) is
  discovered in the run whose interval contains one of its fire times, over the window since its
  previous fire time; a channel without one is discovered in every run over the run's interval. So
  consecutive runs give each channel consecutive windows, and a **backfill** of a date range (Airflow
  UI: *channel_ingest → Trigger → Backfill*; CLI: `airflow backfill create --dag-id channel_ingest
  --from-date … --to-date …`) gives a feed's entries published in that range. `catchup` is off: when
  the DAG is unpaused it starts with the latest interval. The DAG is paused when first created.
* **Discovery.** Folder and S3 channels list every file, whatever its time: a file moved into a drop
  folder with `mv`, or copied with `cp -p` / `rsync -a`, keeps an old modification time and would
  never fall in a window. What was seen is skipped cheaply: a file with the path, size and
  modification time of a recorded item is not even hashed again. Feed entries are keyed on the
  window by published (else updated) time. Files are hashed (SHA-256, as video_ingest's probe does) and skipped
  when the content is already a video of the channel's collection or was already handed over, or is a
  duplicate of another new file; feed entries are skipped by canonical URL. New items are recorded in
  the catalog (`channel_items`) before they are triggered.
* **Triggering.** Each new video gets the run id `channel__<channel>__<video id>` (feeds:
  `channel__<channel>__u<url hash>`): triggering an existing run id is skipped, so re-running
  discovery (clearing a run, a retry, an overlapping backfill) never triggers a video twice. The run
  does not wait for the ingest runs; follow them in `video_ingest`'s grid (the triggered run's note
  names the channel and file).
* **Params** (manual runs): `channels` discovers exactly these channels over the run's interval,
  whatever their schedule or `enabled`; `full_scan` ignores the time window (everything not yet
  ingested; useful when a channel is first set up).
* **Failures.** A channel that cannot be read (a mount gone, S3 throttling, a feed's 503) is retried
  with the discovery; when retries run out the other channels' videos are still triggered and
  `report` fails naming it. Clear the run to discover that interval again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, Param, TriggerRule, dag, get_current_context, task
from vidsearch_airflow.policy import DEFAULT_ARGS, STAGES

PARAMS = {
    "channels": Param(
        [],
        type="array",
        items={"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,62}$(?!\n)"},
        uniqueItems=True,
        title="Channels",
        description="Discover only these channels (by name), whatever their schedule. Empty: every "
        "enabled channel whose schedule fires in this run's data interval.",
    ),
    "full_scan": Param(
        False,
        type="boolean",
        title="Full scan",
        description="Ignore the data interval: discover everything the channels hold that is not "
        "ingested yet (dedupe still applies).",
    ),
}


@dag(
    dag_id="channel_ingest",
    # Data intervals (not trigger times): discovery is keyed on [data_interval_start, data_interval_end).
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["vidsearch", "ingest", "channels"],
    doc_md=__doc__,
)
def channel_ingest() -> None:
    @task(**STAGES["discover"].task_kwargs())
    def discover() -> list[dict]:
        """Find each due channel's new videos in the data interval; record them in the catalog."""
        from vidsearch import channels as ch
        from vidsearch.errors import TransientError
        from vidsearch_airflow.services import catalog

        ctx = get_current_context()
        found = ch.discover_due(
            catalog(),
            ctx.get("data_interval_start"),
            ctx.get("data_interval_end"),
            run_id=ctx["run_id"],
            only=list(ctx["params"].get("channels") or []),
            full_scan=bool(ctx["params"].get("full_scan")),
        )
        ti = ctx["ti"]
        if found.errors and found.transient and ti.try_number <= (ti.max_tries or 0):
            # Retry the whole discovery; what this run already recorded is found again and re-triggered
            # under the same run ids (skipped, as they exist).
            raise TransientError("; ".join(found.errors))
        ti.xcom_push(key="summary", value=found.summary)
        ti.xcom_push(key="errors", value=found.errors)
        return found.items

    discovered = discover()

    trigger = TriggerDagRunOperator.partial(
        task_id="trigger",
        trigger_dag_id="video_ingest",
        logical_date=None,  # runs are identified by their deterministic run ids, not by dates
        skip_when_already_exists=True,
        wait_for_completion=False,
        map_index_template="{{ task.note }}",
        **STAGES["trigger"].task_kwargs(),
    ).expand_kwargs(discovered)

    @task(trigger_rule=TriggerRule.NONE_FAILED, **STAGES["finalize"].task_kwargs())
    def report() -> dict:
        """Sum up the discovery; fail naming the channels that could not be read."""
        from vidsearch import channels as ch

        ti = get_current_context()["ti"]
        summary = ti.xcom_pull(task_ids="discover", key="summary") or []
        errors = ti.xcom_pull(task_ids="discover", key="errors") or []
        return ch.report_discovery(summary, errors)

    discovered >> trigger >> report()


channel_ingest()
