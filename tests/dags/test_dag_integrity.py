"""The test trio every DAG must pass (one test id per DAG), plus trigger-form validation of `video_ingest`."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
# The DAGs of dags/, each in the file of its name: the checks every DAG must pass run once per id.
DAG_IDS = ("video_ingest", "reprocess_segments", "channel_ingest", "catalog_maintenance")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_the_dag_folder_holds_exactly_the_known_dags(dagbag):
    """A new DAG must join DAG_IDS, so that the checks below run for it too."""
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == sorted(DAG_IDS)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_parses_without_import_errors(dagbag, dag_id):
    errors = {path: error for path, error in dagbag.import_errors.items() if Path(path).stem == dag_id}
    assert errors == {}
    assert dag_id in dagbag.dags, dagbag.import_errors


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_has_tags(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_retries_with_backoff(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tasks, f"{dag_id} has no tasks"
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"
        assert task.retry_exponential_backoff, f"{dag_id}.{task.task_id} has no backoff"
        assert task.retry_policy is not None, f"{dag_id}.{task.task_id} retries permanent errors"


def test_segment_tasks_are_named_after_their_segment(dagbag):
    dag = dagbag.dags["video_ingest"]
    for task_id in ("segment.extract_frames", "segment.detect_embed", "segment.index"):
        assert dag.get_task(task_id).map_index_template == "{{ segment_label }}"


def test_params_have_titles_and_descriptions(dagbag):
    params = dagbag.dags["video_ingest"].params
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("title") and param.description, name


def _validate(dagbag, **values):
    import copy

    params = copy.deepcopy(dagbag.dags["video_ingest"].params)
    for key, value in values.items():
        params[key] = value
    return params.validate()


def test_params_accept_good_values(dagbag):
    resolved = _validate(
        dagbag,
        source="/videos/a.mp4",
        collection="retail_cams",
        segment_seconds=2.5,
        sample_fps=0.5,
        time_limit_seconds=30,
        score_threshold=0.9,
    )
    assert resolved["segment_seconds"] == 2.5
    assert _validate(dagbag, source="a.mp4")["segment_seconds"] == "auto"
    assert _validate(dagbag, source="a.mp4", segment_seconds="12")["segment_seconds"] == "12"
    assert _validate(dagbag, source="a.mp4")["sampling"] == "fps"
    assert _validate(dagbag, source="a.mp4", sampling="keyframes")["sampling"] == "keyframes"
    assert _validate(dagbag, source="a.mp4", sampling="scenes")["sampling"] == "scenes"
    assert resolved["detector_model"] == "facebook/detr-resnet-50"
    assert resolved["embedder_model"] == "openai/clip-vit-base-patch32"
    assert resolved["time_limit_seconds"] == 30
    assert _validate(dagbag, source="s3://bucket/v.mp4")["time_limit_seconds"] is None


@pytest.mark.parametrize(
    "bad",
    [
        {},  # source is required
        {"source": ""},
        {"source": "a.mp4", "collection": "Has Spaces"},
        {"source": "a.mp4", "collection": "cams\n"},  # `$` alone lets a final newline through
        {"source": "a.mp4", "segment_seconds": 0},
        {"source": "a.mp4", "segment_seconds": "ten"},
        {"source": "a.mp4", "segment_seconds": 3601},
        {"source": "a.mp4", "sampling": "bogus"},
        {"source": "a.mp4", "sample_fps": -1},
        {"source": "a.mp4", "time_limit_seconds": 0},
        {"source": "a.mp4", "score_threshold": 1.5},
        {"source": "a.mp4", "detector_model": ""},
    ],
)
def test_params_reject_bad_values(dagbag, bad):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validate(dagbag, **bad)


def test_cpu_heavy_stages_run_in_the_cpu_pool(dagbag):
    """split and extract_frames are held to the machine's cores; the waiting stages are not."""
    dag = dagbag.dags["video_ingest"]
    pools = {t.task_id: t.pool for t in dag.tasks}
    assert pools["split"] == pools["segment.extract_frames"] == "cpu"
    assert pools["segment.detect_embed"] == "gpu" and pools["segment.index"] == "weaviate_writers"
    assert pools["probe"] == pools["finalize"] == "default_pool"


@pytest.mark.parametrize("dag_id", ["video_ingest", "reprocess_segments"])
def test_quarantined_segments_are_reviewed_before_finalize(dagbag, dag_id):
    """Both ingest DAGs end: segments → plan_reviews → review (HITL, one per quarantined segment) →
    plan_reprocess → the segment group again → finalize, which also waits for the segments."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    dag = dagbag.dags[dag_id]
    review = dag.get_task("review")  # mapped: one per quarantined segment
    assert issubclass(review.operator_class, HITLOperator)
    assert review.map_index_template == "{{ task.segment_label }}"
    assert "segment.index" in dag.get_task("plan_reviews").upstream_task_ids
    assert dag.get_task("plan_reviews").trigger_rule == "all_done"
    assert "review" in dag.get_task("plan_reprocess").upstream_task_ids
    assert "plan_reprocess" in dag.get_task("reprocess.extract_frames").upstream_task_ids
    assert {"segment.index", "reprocess.index"} <= dag.get_task("finalize").upstream_task_ids
