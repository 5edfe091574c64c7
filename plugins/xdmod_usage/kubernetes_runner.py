"""One factory for every XDMoD command pod (KubernetesPodOperator), and the runner that uses it.

Why one factory: every XDMoD step must get the same image, secrets, OpenShift-safe security
context, timeouts and cleanup policy; a step that forgets one is a production incident.

How the day's files reach XDMoD without a ReadWriteMany volume: an init container copies each
staged file from object storage (or from a volume that carries file:// staging) into an emptyDir
and checks its sha256 against the manifest; the XDMoD container reads them there. The init
container runs a constant script and receives the data as positional arguments: no shell string
is ever built from a URL or a file name.

The cncf-kubernetes provider is imported only when a pod is built (it costs ~0.6 s at import).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .xdmod_commands import XdmodCommand

if TYPE_CHECKING:
    from .config import KubernetesRunnerConfig

INPUT_VOLUME = "xdmod-input"
ETC_VOLUME = "xdmod-etc"
DB_VOLUME = "xdmod-db"
STAGING_VOLUME = "xdmod-staging"
ETC_DIR = "/etc/xdmod"
DB_SETTINGS = "portal_settings.ini"

# "$1" is the destination directory, then (source, sha256, name) triples.
COPY_SCRIPT = """set -eu
dest="$1"; shift
while [ "$#" -ge 3 ]; do
  src="$1"; sum="$2"; name="$3"; shift 3
  mkdir -p "$(dirname "$dest/$name")"
  case "$src" in
    s3://*) aws s3 cp --only-show-errors "$src" "$dest/$name" ;;
    *) cp "$src" "$dest/$name" ;;
  esac
  printf '%s  %s\\n' "$sum" "$dest/$name" | sha256sum -c -
done
"""


def _k8s_name(text: str) -> str:
    """A DNS-1123 label fragment: lower case, digits and '-'."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40] or "xdmod"


def _source_of(url: str, staging_mount: str | None) -> str:
    """Where the init container reads a staged file: the S3 URL itself, or its path on the volume."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return url
    if parts.scheme == "file" and staging_mount is not None:
        return parts.path
    raise ValueError(f"the kubernetes runner cannot fetch {url!r}: use s3:// staging or set staging_claim")


def _security_context(k8s: Any) -> Any:
    """OpenShift restricted-compatible: no fixed UID, nothing added, nothing escalated."""
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def xdmod_pod_operator(
    *,
    task_id: str,
    resource: str,
    command: XdmodCommand,
    kube: KubernetesRunnerConfig,
    input_dir: str,
    staging_root: str,
    execution_timeout: dt.timedelta | None,
) -> Any:
    """Build the KubernetesPodOperator that runs one XDMoD command."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    staging_mount = urlsplit(staging_root).path if kube.staging_claim else None
    volumes = [
        k8s.V1Volume(name=INPUT_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=kube.input_size_limit)),
        k8s.V1Volume(name=ETC_VOLUME, config_map=k8s.V1ConfigMapVolumeSource(name=kube.config_map)),
        k8s.V1Volume(
            name=DB_VOLUME,
            secret=k8s.V1SecretVolumeSource(
                secret_name=kube.db_secret, items=[k8s.V1KeyToPath(key=DB_SETTINGS, path=DB_SETTINGS)]
            ),
        ),
    ]
    init_containers = []
    if command.inputs:
        init_mounts = [k8s.V1VolumeMount(name=INPUT_VOLUME, mount_path=input_dir)]
        if staging_mount is not None:
            volumes.append(
                k8s.V1Volume(
                    name=STAGING_VOLUME,
                    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                        claim_name=kube.staging_claim, read_only=True
                    ),
                )
            )
            init_mounts.append(k8s.V1VolumeMount(name=STAGING_VOLUME, mount_path=staging_mount, read_only=True))
        triples = [
            word for item in command.inputs for word in (_source_of(item.url, staging_mount), item.sha256, item.name)
        ]
        init_containers.append(
            k8s.V1Container(
                name="fetch-staged-files",
                image=kube.init_image,
                command=["/bin/sh", "-c", COPY_SCRIPT, "fetch-staged-files", input_dir, *triples],
                env=[k8s.V1EnvVar(name="HOME", value="/tmp")],  # arbitrary UIDs have no home
                env_from=(
                    [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=kube.staging_secret))]
                    if kube.staging_secret
                    else None
                ),
                volume_mounts=init_mounts,
                resources=k8s.V1ResourceRequirements(
                    requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"}
                ),
                security_context=_security_context(k8s),
            )
        )

    mounts = [
        k8s.V1VolumeMount(name=INPUT_VOLUME, mount_path=input_dir, read_only=True),
        k8s.V1VolumeMount(name=ETC_VOLUME, mount_path=ETC_DIR, read_only=True),
        k8s.V1VolumeMount(name=DB_VOLUME, mount_path=f"{ETC_DIR}/{DB_SETTINGS}", sub_path=DB_SETTINGS, read_only=True),
    ]
    return KubernetesPodOperator(
        task_id=task_id,
        kubernetes_conn_id=kube.kubernetes_conn_id,
        namespace=kube.namespace,
        name=f"xdmod-{_k8s_name(command.step)}-{_k8s_name(resource)}",
        labels={
            "app.kubernetes.io/name": "xdmod-usage",
            "xdmod-usage/step": _k8s_name(command.step),
            "xdmod-usage/resource": _k8s_name(resource),
            **kube.labels,
        },
        image=kube.image,
        cmds=[command.argv[0]],
        arguments=list(command.argv[1:]),
        service_account_name=kube.service_account,
        volumes=volumes,
        volume_mounts=mounts,
        init_containers=init_containers,
        container_resources=k8s.V1ResourceRequirements(
            requests=dict(kube.resources.requests), limits=dict(kube.resources.limits)
        ),
        security_context=k8s.V1PodSecurityContext(seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
        container_security_context=_security_context(k8s),
        startup_timeout_seconds=int(kube.startup_timeout.total_seconds()),
        execution_timeout=execution_timeout,
        # Keep a failed pod for its logs and state; a succeeded one is noise. A killed task
        # (marked failed in the UI, timeout) deletes its pod so it cannot run on unobserved.
        on_finish_action=kube.on_finish_action,
        on_kill_action="delete_pod",
        get_logs=True,
        init_container_logs=True,
        log_events_on_failure=True,
        termination_message_policy="FallbackToLogsOnError",
        automount_service_account_token=False,  # XDMoD needs no Kubernetes API access
        active_deadline_seconds=int(execution_timeout.total_seconds()) if execution_timeout else None,
        deferrable=False,  # a deferred task would give back its XDMoD pool slot
        do_xcom_push=False,  # no sidecar: it breaks under arbitrary UIDs and XDMoD has no result to push
        retries=0,  # the Airflow task around the pod owns retries
    )


def pod_spec(operator: Any) -> dict[str, Any]:
    """The pod the operator would create, as plain data (built offline, no API calls)."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(operator.build_pod_request_obj(dry_run=True))


# A pod that cannot start says why in its containers' waiting state; these never clear alone.
STUCK_REASONS = frozenset(
    {"CreateContainerConfigError", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError"}
)


def _container_statuses(status: Any) -> list[Any]:
    return [*(status.init_container_statuses or []), *(status.container_statuses or [])]


def run_pod_to_completion(operator: Any, timeout_s: float, poll_s: float = 2.0) -> str:
    """Run the operator's pod outside a task (the preflight command) and return the base container's log.

    KubernetesPodOperator.execute needs a task-instance context; the preflight has none, so it
    creates the same pod through the provider's hook, waits, reads the log and always deletes the pod.
    """
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    pod = operator.build_pod_request_obj(dry_run=True)
    name, namespace = pod.metadata.name, pod.metadata.namespace
    core = KubernetesHook(conn_id=operator.kubernetes_conn_id).core_v1_client
    core.create_namespaced_pod(namespace, pod)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            status = core.read_namespaced_pod(name, namespace).status
            if status.phase in ("Succeeded", "Failed"):
                break
            for state in _container_statuses(status):
                waiting = state.state.waiting if state.state else None
                if waiting is not None and waiting.reason in STUCK_REASONS:
                    raise RuntimeError(f"pod {name} container {state.name}: {waiting.reason}: {waiting.message}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {name} still {status.phase} after {timeout_s:.0f} s")
            time.sleep(poll_s)
        if status.phase == "Failed":
            failed = [
                s
                for s in _container_statuses(status)
                if s.state and s.state.terminated and s.state.terminated.exit_code
            ]
            which = failed[0].name if failed else "base"
            tail = core.read_namespaced_pod_log(name, namespace, container=which, tail_lines=5)
            raise RuntimeError(f"pod {name} failed in container {which}: {tail.strip()}")
        return core.read_namespaced_pod_log(name, namespace, container=operator.base_container_name)
    finally:
        core.delete_namespaced_pod(name, namespace)
