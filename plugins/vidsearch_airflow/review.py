"""The review task of a quarantined segment: Airflow's human-in-the-loop operator, mapped one per
segment, acting on the answer (`vidsearch.review.apply`).

The task waits in `awaiting_input` (no worker slot, no trigger) until someone answers in the UI
(Required Actions) or through the REST API (`PATCH .../taskInstances/review/<map index>/hitlDetails`),
or until the run's `review_timeout_hours` pass: then the scheduler applies `review_default` (HITL
`defaults`) and the task resumes with it, recorded as timed out, by nobody.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from vidsearch.params import REVIEW_CHOICES


class SegmentReviewOperator(HITLOperator):
    """Ask a human what to do with one quarantined segment; record the answer and act on it.

    `request` is a `vidsearch.review.ReviewRequest` as JSON, `ingest` the run's IngestParams as JSON
    (its `review_timeout_hours` and `review_default` size the wait and the default).
    """

    # The body is built from catalog data (JSON of failed expectations), not a template.
    template_fields = ()

    def __init__(self, *, request: dict, ingest: dict, **kwargs: Any) -> None:
        from vidsearch import review
        from vidsearch.params import IngestParams

        req = review.ReviewRequest.model_validate(request)
        params = IngestParams.model_validate(ingest)
        super().__init__(
            subject=review.subject(req),
            body=review.body(req, params.review_default, params.review_timeout_hours),
            options=list(REVIEW_CHOICES),
            defaults=params.review_default,
            response_timeout=timedelta(hours=params.review_timeout_hours),
            **kwargs,
        )
        self.request = request
        self.ingest = ingest
        self.segment_label = req.segment.label

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Validate the answer (the operator's own checks), then record and act on it."""
        from vidsearch import review
        from vidsearch.params import IngestParams

        from vidsearch_airflow.services import services

        payload = super().execute_complete(context, event)
        ti = context["ti"]
        return review.apply(
            services(),
            IngestParams.model_validate(self.ingest),
            review.ReviewRequest.model_validate(self.request),
            payload["chosen_options"][0],
            run_id=context["run_id"],
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            map_index=ti.map_index,
            decided_by=dict(payload["responded_by_user"]) if payload.get("responded_by_user") else None,
            decided_at=payload["responded_at"],
            timed_out=bool(event.get("timedout")),
        )


def review_quarantined(upstream: Any, *, probed: Any = None, planned: Any = None) -> Any:
    """The review tail shared by `video_ingest` and `reprocess_segments`, after the segment groups
    (`upstream`): `plan_reviews` → `review` (one per quarantined segment) → `plan_reprocess` →
    `reprocess` (the segment group again, for the segments a reviewer sent back). Returns the
    `reprocess` group; finalize waits for it.

    `video_ingest` passes `probed` (probe's output) and uses the run's params; `reprocess_segments`
    passes its plan (`planned`: segment, probed and ingest of each segment reprocessed), and only
    those segments are reviewed. (plan_reviews pulls the plan itself: it runs after failures too,
    when the plan may not exist.)
    """
    from airflow.sdk import TriggerRule, get_current_context, task

    from vidsearch_airflow.policy import STAGES
    from vidsearch_airflow.segment_tasks import segment_group
    from vidsearch_airflow.task_context import ingest_params, timed

    plan_task_id = planned.operator.task_id if planned is not None else None

    # Runs once every segment is done, failed or quarantined; skipped when probe or split failed.
    @task(trigger_rule=TriggerRule.ALL_DONE, **STAGES["plan"].task_kwargs())
    def plan_reviews() -> list[dict]:
        """List the quarantined segments, one review task each."""
        from airflow.sdk.exceptions import AirflowSkipException
        from vidsearch import pipeline, review
        from vidsearch.errors import PermanentError

        from vidsearch_airflow.services import services

        with timed("plan_reviews"):
            ctx = get_current_context()
            planned = ctx["ti"].xcom_pull(task_ids=plan_task_id) if plan_task_id else None
            if plan_task_id and not planned:
                raise AirflowSkipException("nothing was reprocessed (or the plan failed): nothing to review")
            params = ingest_params(planned[0]["ingest"] if planned else None)
            svc, run_id = services(), ctx["run_id"]
            run = svc.catalog.get_run(run_id)
            if run is None or run["state"] == "failed":
                raise AirflowSkipException("the run failed before its segments: nothing to review")
            try:
                pipeline.run_video_id(svc, run_id)
            except PermanentError as exc:
                raise AirflowSkipException(str(exc)) from exc
            if not params.review:
                return []
            requests = review.plan(svc, run_id, params)
            if planned:
                chosen = {p["segment"]["index"] for p in planned}
                requests = [r for r in requests if r.segment.index in chosen]
            ingest = params.model_dump(mode="json")
            return [{"request": r.model_dump(mode="json"), "ingest": ingest} for r in requests]

    @task(**STAGES["plan"].task_kwargs())
    def plan_reprocess(outcomes: list[dict], probed: dict | None = None, planned: list[dict] | None = None) -> list:
        """Pick the segments a reviewer sent back for reprocessing."""
        chosen = [o for o in outcomes if o["decision"] == "reprocess"]
        if not chosen:
            return []
        # Every key of the group's signature (expand_kwargs renders them all); ingest None: the run's params.
        probed_out, ingest = (probed, None) if planned is None else (planned[0]["probed"], planned[0]["ingest"])
        return [{"segment": o["segment"], "probed": probed_out, "ingest": ingest} for o in chosen]

    reviews = plan_reviews()
    upstream >> reviews
    decisions = SegmentReviewOperator.partial(
        task_id="review", map_index_template="{{ task.segment_label }}", **STAGES["review"].task_kwargs()
    ).expand_kwargs(reviews)
    return segment_group("reprocess").expand_kwargs(plan_reprocess(decisions.output, probed, planned))
