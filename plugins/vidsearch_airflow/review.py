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
