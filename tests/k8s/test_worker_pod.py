"""The GPU pod of one mapped segment, rendered by the KubernetesPodOperator's own pod-building code,
and the worker run locally with exactly the argv that pod would get."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from vidsearch.media import frames, probe, split, synth
from vidsearch.models import launcher
from vidsearch.pipeline import IngestParams, Services, worker_argv
from vidsearch.records import FrameBundle, FrameRef, Segment
from vidsearch.stores import storage
from vidsearch_airflow.gpu import DetectEmbedOperator, GpuSettings, k8s_label

RUN_ID = "manual__2026-11-23T10:00:00.123456+00:00"


def _context(map_index: int = 3) -> dict:
    ti = SimpleNamespace(dag_id="video_ingest", task_id="segment.detect_embed", map_index=map_index, try_number=2)
    return {"ti": ti, "run_id": RUN_ID, "dag": SimpleNamespace(dag_id="video_ingest")}


def _render(svc: Services, bundle: FrameBundle, segment: Segment, settings: GpuSettings):
    params = IngestParams(source="s3://videos/in/a.mp4", score_threshold=0.6)
    argv = worker_argv(svc, params, bundle, dtype=settings.dtype, model_cache=None)
    op = DetectEmbedOperator(task_id="detect_embed", segment=segment.model_dump(), bundle=bundle.model_dump())
    op.configure_pod(argv, settings, bundle.video_id, segment.name)
    return argv, op.build_pod_request_obj(_context(), dry_run=True)


@pytest.fixture()
def s3_segment():
    segment = Segment(
        video_id="ab" * 16, index=3, start_s=30.0, end_s=40.0, uri="s3://vs/videos/x/segments/seg0003.mkv"
    )
    bundle = FrameBundle(
        video_id=segment.video_id,
        segment_index=3,
        uri="s3://vs/videos/x/frames/seg0003.zip",
        width=1280,
        height=720,
        sample_fps=1.0,
        frames=[FrameRef(index=i, pts_s=30.0 + i, member=f"{i:06d}.jpg") for i in range(10)],
    )
    return segment, bundle


def test_pod_for_one_mapped_segment(s3_segment):
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import models as k8s

    segment, bundle = s3_segment
    svc = Services(catalog=None, index=lambda: None, storage_root="s3://vs", tiny_models=False)
    settings = GpuSettings(
        mode="kubernetes",
        image="registry.example/vidsearch-worker:1.2.3",
        gpus=1,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        storage_secret="vidsearch-s3",
        model_cache_pvc="hf-models",
    )
    argv, pod = _render(svc, bundle, segment, settings)

    assert isinstance(pod, k8s.V1Pod)
    (container,) = pod.spec.containers
    assert container.image == "registry.example/vidsearch-worker:1.2.3"
    assert container.command + container.args == argv
    assert argv[:3] == ["python", "-m", "vidsearch.models.worker"]
    assert argv[argv.index("--frames-uri") + 1] == bundle.uri
    assert argv[argv.index("--output-uri") + 1] == "s3://vs/videos/" + bundle.video_id + "/objects/seg0003"
    assert "--no-tiny-models" in argv and "--model-cache" not in argv
    assert argv[argv.index("--dtype") + 1] == "float16"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert pod.spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert [e.secret_ref.name for e in container.env_from] == ["vidsearch-s3"]
    assert {e.name: e.value for e in container.env}["HF_HOME"] == "/models"
    assert [v.persistent_volume_claim.claim_name for v in pod.spec.volumes] == ["hf-models"]
    assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("models", "/models")]
    assert pod.spec.restart_policy == "Never"
    assert pod.metadata.namespace == "vidsearch"
    labels = pod.metadata.labels
    assert labels["vidsearch/video"] == bundle.video_id
    assert labels["vidsearch/segment"] == "seg0003"
    assert labels["dag_id"] == "video_ingest" and labels["map_index"] == "3"
    assert labels["run_id"] == k8s_label(RUN_ID) or labels["run_id"].startswith("manual__2026-11-23T10")
    # No XCom sidecar: results travel through object storage.
    assert [c.name for c in pod.spec.containers] == ["base"]

    # The Kubernetes client's models accept it: serialise and read it back unchanged.
    from kubernetes.client import ApiClient

    client = ApiClient()
    data = client.sanitize_for_serialization(pod)
    again = PodGenerator.deserialize_model_dict(data)
    assert isinstance(again, k8s.V1Pod)
    assert client.sanitize_for_serialization(again) == data
    for value in labels.values():
        assert len(value) <= 63


def test_pod_without_gpu_or_secret(s3_segment):
    segment, bundle = s3_segment
    svc = Services(catalog=None, index=lambda: None, storage_root="s3://vs", tiny_models=False)
    _, pod = _render(svc, bundle, segment, GpuSettings(mode="kubernetes", gpus=0, storage_secret=None))
    (container,) = pod.spec.containers
    assert "nvidia.com/gpu" not in container.resources.limits
    assert not container.env_from
    assert not pod.spec.volumes


def test_settings_reject_unknown_keys():
    with pytest.raises(ValueError):
        GpuSettings.model_validate({"mode": "kubernetes", "gpu": 2})
    with pytest.raises(ValueError):
        GpuSettings.model_validate({"mode": "cloud"})


@pytest.fixture()
def local_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(video, manifest, storage root, its one segment, that segment's frame bundle) on local storage;
    the root is also the worker's VIDSEARCH_STORAGE_ROOT (it reads and writes only under it)."""
    video = synth.make_video(tmp_path / "v.mp4", duration_s=3.0, width=192, height=108, gop_frames=15)
    manifest = probe.probe_video(video, str(video))
    root = f"file://{tmp_path / 'objects'}"
    monkeypatch.setenv("VIDSEARCH_STORAGE_ROOT", root)
    (segment,) = split.run_split(video, manifest, 10.0, None, storage.join(root, "segments"))
    bundle = frames.run_frames(segment, 2.0, storage.join(root, "frames", "seg0000.zip"))
    return video, manifest, root, segment, bundle


def test_worker_runs_locally_with_the_pods_argv(local_segment):
    """What a pod would run, run here: the outputs land where the index step reads them."""
    _, manifest, root, segment, bundle = local_segment
    svc = Services(catalog=None, index=lambda: None, storage_root=root, tiny_models=True)
    settings = GpuSettings(mode="kubernetes", dtype="float32")
    argv, pod = _render(svc, bundle, segment, settings)
    (container,) = pod.spec.containers
    pod_argv = container.command + container.args
    assert pod_argv == argv

    result = launcher.run_local(pod_argv)
    stored, vectors = launcher.read_result(argv[argv.index("--output-uri") + 1])
    assert stored == result
    assert result.frame_count == len(bundle.frames) > 0
    assert vectors.shape == (len(result.objects), result.embedding_dim)
    assert all(o.video_id == manifest.video_id and o.segment_index == 0 for o in result.objects)


def test_service_mode_runs_the_pods_argv_on_the_warm_worker_service(local_segment, monkeypatch):
    """`service` mode: the pod's argv as a job of the warm-worker service, authenticated, with the
    same outputs as the command run here."""
    from vidsearch import pipeline
    from vidsearch.models import worker_server
    from vidsearch_airflow import gpu

    video, _, root, segment, bundle = local_segment
    svc = Services(catalog=None, index=lambda: None, storage_root=root, tiny_models=True)
    params = IngestParams(source=str(video), score_threshold=0.0)
    settings = GpuSettings(mode="service", service_url="http://unused", dtype="float32")
    argv = worker_argv(svc, params, bundle, dtype=settings.dtype, model_cache=None)

    with worker_server.serving(token="cluster-secret") as (url, state):
        out = pipeline.detect_and_embed_on_service(svc, params, segment, bundle, argv, url, "cluster-secret", 300)
        assert state.jobs == 1
    served, served_vectors = launcher.read_result(out)
    assert served.frame_count == len(bundle.frames) > 0

    # The same argv run here as a process gives the same objects.
    local_argv = list(argv)
    local_argv[local_argv.index("--output-uri") + 1] = storage.join(root, "local-out")
    local = launcher.run_local(local_argv)
    assert [o.object_id for o in local.objects] == [o.object_id for o in served.objects]

    # A pod per segment plans long segments; the warm worker and the service need no floor.
    for mode, expected in (("kubernetes", 600.0), ("service", None), ("local", None)):
        monkeypatch.setattr(gpu, "gpu_settings", lambda mode=mode: GpuSettings(mode=mode, service_url="http://x"))
        assert gpu.min_segment_seconds() == expected


def test_service_settings_are_checked():
    with pytest.raises(ValueError):
        GpuSettings.model_validate({"mode": "service", "service_timeout_seconds": 0})
    settings = GpuSettings.model_validate({"mode": "service", "service_url": "http://vidsearch-worker:8795"})
    assert settings.service_token_env == "VIDSEARCH_WORKER_TOKEN"


def test_worker_service_manifest_matches_the_server():
    import yaml
    from vidsearch.models import worker_server

    docs = list(yaml.safe_load_all((Path(__file__).resolve().parents[2] / "images/worker/kubernetes.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service", "NetworkPolicy"}
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["python", "-m", "vidsearch.models.worker_server"]
    assert container["command"][container["command"].index("--port") + 1] == str(worker_server.DEFAULT_PORT)
    assert container["ports"][0]["containerPort"] == worker_server.DEFAULT_PORT
    token = next(e for e in container["env"] if e["name"] == worker_server.TOKEN_ENV)
    assert "secretKeyRef" in token["valueFrom"], "the token comes from a secret, never the manifest"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert kinds["Service"]["spec"]["type"] == "ClusterIP"
