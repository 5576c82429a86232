"""Where detect+embed runs: a local process or warm worker (laptop, CI), a warm-worker service on GPU
nodes, or a GPU pod per segment (Kubernetes).

All three run the same worker command with the same argv (`vidsearch.pipeline.worker_argv`), under the
same task id, reading and writing only object storage. The choice is made when the task runs, not when
the DAG is parsed: environment `VIDSEARCH_EXECUTION_MODE` (`local` | `service` | `kubernetes`) or the
`mode` key of the Airflow Variable `vidsearch_gpu` (a JSON object holding the settings below), default
`local`.

* `local`: the warm worker at VIDSEARCH_WORKER_URL, else a worker process on the Airflow worker.
* `service`: a job of the warm-worker Deployment at `service_url` (images/worker/kubernetes.yaml):
  models stay loaded on the GPU between segments and videos, no pod starts per segment. The caller
  sends the bearer token from the environment variable `service_token_env`.
* `kubernetes`: a pod per segment (isolation, bursting onto nodes that scale to zero). Each pod pays
  its start-up and model load, so `segment_seconds: auto` plans segments of at least
  `pod_min_segment_seconds` in this mode (docs/deployment.md has the cost model).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from typing import Any, Literal

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from pydantic import BaseModel, ConfigDict, Field
from vidsearch.models.worker import EXIT_PERMANENT, STORAGE_ROOT_ENV

from vidsearch_airflow.task_context import begin_segment_task, ingest_params, name_segment, timed


class GpuSettings(BaseModel):
    """Pod settings for the detect+embed step (Airflow Variable `vidsearch_gpu`, JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["local", "service", "kubernetes"] = "local"
    service_url: str | None = Field(
        None, description="service mode: URL of the warm-worker Service, e.g. http://vidsearch-worker:8795"
    )
    service_token_env: str = Field(
        "VIDSEARCH_WORKER_TOKEN", description="service mode: the env var holding the workers' bearer token"
    )
    service_timeout_seconds: float = Field(3600, gt=0, description="service mode: longest wait for one job")
    pod_min_segment_seconds: float = Field(
        600,
        gt=0,
        le=3600,
        description="kubernetes mode: the shortest segment `segment_seconds: auto` plans (one pod each)",
    )
    image: str = "ghcr.io/vidsearch/worker:latest"
    image_pull_policy: str = "IfNotPresent"
    namespace: str = "vidsearch"
    kubernetes_conn_id: str | None = "kubernetes_default"
    service_account: str | None = None
    gpus: int = Field(1, ge=0)
    cpu_request: str = "2"
    memory_request: str = "8Gi"
    memory_limit: str = "16Gi"
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    storage_secret: str | None = Field(
        "vidsearch-object-storage",
        description="Kubernetes secret whose keys become env vars (AWS_ACCESS_KEY_ID, ...).",
    )
    model_cache_pvc: str | None = Field(None, description="PVC mounted at /models (the HF cache).")
    startup_timeout_seconds: int = 600
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod"] = "delete_succeeded_pod"
    dtype: str = "float16"


def gpu_settings() -> GpuSettings:
    """Read at task run time (never at parse time)."""
    from airflow.sdk import Variable

    raw = Variable.get("vidsearch_gpu", default="{}")
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    if os.environ.get("VIDSEARCH_EXECUTION_MODE"):
        data["mode"] = os.environ["VIDSEARCH_EXECUTION_MODE"]
    settings = GpuSettings.model_validate(data)
    if settings.mode == "service" and not settings.service_url:
        from vidsearch.errors import PermanentError

        raise PermanentError("vidsearch_gpu: mode 'service' needs service_url (the warm-worker Service's URL)")
    return settings


def min_segment_seconds() -> float | None:
    """The shortest segment `segment_seconds: auto` may plan where detect+embed runs: a pod per
    segment must amortise its start-up and model load; the warm worker and the service need no floor."""
    settings = gpu_settings()
    return settings.pod_min_segment_seconds if settings.mode == "kubernetes" else None


def model_check(svc: Any, params: Any) -> Callable[[], None] | None:
    """What the probe stage runs to load the run's models where detect+embed will run (a model that
    cannot be loaded then fails the run before any segment is cut), or None where that would cost a
    pod of its own (kubernetes mode: the first segment's pod loads them)."""
    from vidsearch import pipeline
    from vidsearch.models import launcher

    settings = gpu_settings()
    if settings.mode == "local":
        return functools.partial(pipeline.check_models_locally, svc, params)
    if settings.mode == "service":
        argv = pipeline.model_check_argv(svc, params, dtype=settings.dtype, model_cache=None)
        return functools.partial(
            launcher.check_models_on_service,
            argv,
            settings.service_url or "",
            os.environ.get(settings.service_token_env),
            settings.service_timeout_seconds,
        )
    return None


_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def k8s_label(value: str) -> str:
    """A valid Kubernetes label value: <= 63 chars of [A-Za-z0-9_.-], alphanumeric at both ends."""
    return _LABEL_UNSAFE.sub("_", value)[:63].strip("_.-") or "none"


class WorkerOperator(KubernetesPodOperator):
    """One segment's step that runs a worker command: a local process or the warm worker, a job of
    the warm-worker service, or the same argv in a GPU pod (module docstring). Subclasses say which
    command (`remote_argv`), how it runs here (`run_local`, `run_service`), where its output lies
    (`output_uri`) and how a failure is recorded (`record_failure`)."""

    stage = "worker"
    template_fields = (*KubernetesPodOperator.template_fields, "segment", "ingest")

    def __init__(self, *, segment: Any, ingest: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", f"vidsearch-{self.stage.replace('_', '-')}")
        # The task's return value (the output URI) goes to XCom; the pod itself gets no XCom sidecar
        # (configure_pod turns it off): its results travel through object storage.
        kwargs.setdefault("do_xcom_push", True)
        kwargs.setdefault("durable", True)  # reattach to a running pod after a scheduler restart
        kwargs.setdefault("get_logs", True)
        super().__init__(**kwargs)
        self.segment = segment
        self.ingest = ingest  # IngestParams JSON (reprocess_segments); None: the run's params

    # -- what a subclass provides ------------------------------------------------------------------
    def argv(self, svc: Any, params: Any, segment: Any, *, dtype: str = "float32", remote: bool = False) -> list[str]:
        """The worker command; `remote` (service, pod): without this machine's model cache folder."""
        raise NotImplementedError

    def run_argv_locally(self, argv: list[str]) -> object:
        """Run the command as a local process or on the warm worker (a `launcher.run_*local` function)."""
        raise NotImplementedError

    def run_argv_on_service(self, argv: list[str], url: str, token: str | None, timeout_s: float) -> object:
        """Run the command as a job of the warm-worker service (a `launcher.run_*on_service` function)."""
        raise NotImplementedError

    def output_uri(self, svc: Any, segment: Any) -> str:
        raise NotImplementedError

    def record_failure(self, svc: Any, params: Any, segment: Any, error: BaseException) -> None:
        raise NotImplementedError

    def describe(self, segment: Any) -> str:
        return segment.label

    # -- the shared part ---------------------------------------------------------------------------
    def configure_pod(
        self, argv: list[str], settings: GpuSettings, video_id: str, segment_name: str, storage_root: str | None = None
    ) -> None:
        """Turn this operator into the pod that runs `argv` with `settings`; `storage_root`: the one
        object-storage root the worker may read and write under (VIDSEARCH_STORAGE_ROOT in the pod)."""
        from kubernetes.client import models as k8s

        self.do_xcom_push = False  # no sidecar in the pod
        self.image = settings.image
        self.image_pull_policy = settings.image_pull_policy
        self.namespace = settings.namespace
        self.kubernetes_conn_id = settings.kubernetes_conn_id
        self.service_account_name = settings.service_account
        self.cmds = argv[:1]
        self.arguments = argv[1:]
        limits = {"memory": settings.memory_limit}
        requests = {"cpu": settings.cpu_request, "memory": settings.memory_request}
        if settings.gpus:
            limits["nvidia.com/gpu"] = str(settings.gpus)
            requests["nvidia.com/gpu"] = str(settings.gpus)
        self.container_resources = k8s.V1ResourceRequirements(limits=limits, requests=requests)
        self.node_selector = dict(settings.node_selector)
        self.tolerations = [k8s.V1Toleration(**t) for t in settings.tolerations]
        self.startup_timeout_seconds = settings.startup_timeout_seconds
        self.on_finish_action = type(self.on_finish_action)(settings.on_finish_action)
        self.labels = {
            **self.labels,
            "app.kubernetes.io/name": "vidsearch-worker",
            "vidsearch/stage": k8s_label(self.stage),
            "vidsearch/video": k8s_label(video_id),
            "vidsearch/segment": k8s_label(segment_name),
        }
        self.env_from = (
            [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=settings.storage_secret))]
            if settings.storage_secret
            else []
        )
        self.env_vars = [k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1")]
        if storage_root:
            self.env_vars.append(k8s.V1EnvVar(name=STORAGE_ROOT_ENV, value=storage_root))
        if settings.model_cache_pvc:
            self.volumes = [
                k8s.V1Volume(
                    name="models",
                    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                        claim_name=settings.model_cache_pvc
                    ),
                )
            ]
            self.volume_mounts = [k8s.V1VolumeMount(name="models", mount_path="/models")]
            self.env_vars.append(k8s.V1EnvVar(name="HF_HOME", value="/models"))

    def execute(self, context: Any) -> str:
        from vidsearch.records import Segment

        segment = Segment.model_validate(self.segment)
        name_segment(segment)
        with timed(self.stage):
            return self._run(context, segment)

    def _run(self, context: Any, segment: Any) -> str:
        from vidsearch_airflow.services import services

        params, svc = ingest_params(self.ingest), services()
        begin_segment_task(self.stage, segment, svc, params)
        settings = gpu_settings()
        self.log.info("%s (%s mode)", self.describe(segment), settings.mode)
        try:
            if settings.mode == "local":
                # The worker process reads and writes only under its VIDSEARCH_STORAGE_ROOT: this run's
                # root (already that variable, unless it came from the Airflow Variable).
                os.environ.setdefault(STORAGE_ROOT_ENV, svc.storage_root)
                self.run_argv_locally(self.argv(svc, params, segment))
            elif settings.mode == "service":
                argv = self.argv(svc, params, segment, dtype=settings.dtype, remote=True)
                token = os.environ.get(settings.service_token_env)
                self.run_argv_on_service(argv, settings.service_url or "", token, settings.service_timeout_seconds)
            else:
                self._run_pod(context, segment, svc, settings, params)
        except Exception as exc:
            self.record_failure(svc, params, segment, exc)
            raise
        return self.output_uri(svc, segment)

    def _run_pod(self, context: Any, segment: Any, svc: Any, settings: GpuSettings, params: Any) -> None:
        from vidsearch.errors import PermanentError

        argv = self.argv(svc, params, segment, dtype=settings.dtype, remote=True)
        # The pod runs in the cluster: object-storage URIs must be reachable from there (s3://).
        self.configure_pod(argv, settings, segment.video_id, segment.name, storage_root=svc.storage_root)
        try:
            super().execute(context)
        except Exception as exc:
            code = _worker_exit_code(getattr(self, "remote_pod", None) or getattr(self, "pod", None))
            if code == EXIT_PERMANENT:
                raise PermanentError(f"{segment.label}: worker pod failed permanently: {exc}") from exc
            raise
        self.do_xcom_push = True  # push this method's return value, as in local mode


class DetectEmbedOperator(WorkerOperator):
    """The detect+embed step of one segment (DETR-family detector, CLIP-family crop embeddings)."""

    stage = "detect_embed"
    template_fields = (*WorkerOperator.template_fields, "bundle")

    def __init__(self, *, segment: Any, bundle: Any, ingest: Any = None, **kwargs: Any) -> None:
        super().__init__(segment=segment, ingest=ingest, **kwargs)
        self.bundle = bundle

    def _bundle(self) -> Any:
        from vidsearch.records import FrameBundle

        return FrameBundle.model_validate(self.bundle)

    def describe(self, segment: Any) -> str:
        return f"{segment.label}: detect+embed {len(self._bundle().frames)} frames"

    def argv(self, svc: Any, params: Any, segment: Any, *, dtype: str = "float32", remote: bool = False) -> list[str]:
        from vidsearch import pipeline

        cache = {"model_cache": None} if remote else {}
        return pipeline.worker_argv(svc, params, self._bundle(), dtype=dtype, **cache)

    def run_argv_locally(self, argv: list[str]) -> object:
        from vidsearch.models import launcher

        return launcher.run_local(argv)

    def run_argv_on_service(self, argv: list[str], url: str, token: str | None, timeout_s: float) -> object:
        from vidsearch.models import launcher

        return launcher.run_on_service(argv, url, token, timeout_s)

    def output_uri(self, svc: Any, segment: Any) -> str:
        from vidsearch import pipeline

        return pipeline.detections_uri(svc, self._bundle())

    def record_failure(self, svc: Any, params: Any, segment: Any, error: BaseException) -> None:
        from vidsearch import pipeline

        pipeline.mark_segment_failed(svc, params, segment, error)


class TranscribeOperator(WorkerOperator):
    """The transcribe step of one segment (Whisper), through the same worker machinery: the audio
    clip `extract_audio` cut, the transcript and its chunks' text vectors out."""

    stage = "transcribe"
    template_fields = (*WorkerOperator.template_fields, "clip", "probed")

    def __init__(self, *, segment: Any, clip: Any, probed: Any, ingest: Any = None, **kwargs: Any) -> None:
        super().__init__(segment=segment, ingest=ingest, **kwargs)
        self.clip = clip  # extract_audio's AudioClip (the task order; the argv names its record's URI)
        self.probed = probed

    def describe(self, segment: Any) -> str:
        return f"{segment.label}: transcribe {self.clip.get('start_s', 0):.3f}-{self.clip.get('end_s', 0):.3f} s"

    def argv(self, svc: Any, params: Any, segment: Any, *, dtype: str = "float32", remote: bool = False) -> list[str]:
        from vidsearch import pipeline

        manifest = pipeline.ProbeOutput.model_validate(self.probed).manifest
        cache = {"model_cache": None} if remote else {}
        return pipeline.transcribe_argv(svc, params, segment, manifest, dtype=dtype, **cache)

    def run_argv_locally(self, argv: list[str]) -> object:
        from vidsearch.models import launcher

        return launcher.run_transcribe_local(argv)

    def run_argv_on_service(self, argv: list[str], url: str, token: str | None, timeout_s: float) -> object:
        from vidsearch.models import launcher

        return launcher.run_transcribe_on_service(argv, url, token, timeout_s)

    def output_uri(self, svc: Any, segment: Any) -> str:
        from vidsearch import pipeline

        return pipeline.transcript_output_uri(svc, segment)

    def record_failure(self, svc: Any, params: Any, segment: Any, error: BaseException) -> None:
        from vidsearch import pipeline

        pipeline.mark_audio_failed(svc, params, segment, error)


def _worker_exit_code(pod: Any) -> int | None:
    """The base container's exit code of a finished pod, when known."""
    try:
        for status in pod.status.container_statuses or []:
            if status.name == "base" and status.state and status.state.terminated:
                return int(status.state.terminated.exit_code)
    except AttributeError:
        return None
    return None
