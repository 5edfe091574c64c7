"""XDMoD pods built offline by the one pod factory (build_pod_request_obj(dry_run=True)).

No Kubernetes cluster runs here: these tests check the pod spec itself, field by field.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xdmod_usage.config import ConfigError, KubernetesRunnerConfig, parse_site_config
from xdmod_usage.kubernetes_runner import COPY_SCRIPT, pod_spec, xdmod_pod_operator
from xdmod_usage.xdmod_commands import XdmodInput, aggregate, ingest, shred_slurm

ROOT = Path(__file__).resolve().parent.parent
KUBE = KubernetesRunnerConfig(
    namespace="xdmod", image="registry.example.edu/xdmod:11.0.2", staging_secret="xdmod-staging-s3",
    resources={"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "6Gi"}},
)  # fmt: skip
STAGED = XdmodInput("slurm-hpc1-2026-11-20.log", "s3://acct/staging/hpc1/2026-11-20/v-ab/slurm-hpc1-2026-11-20.log",
                    "0f" * 32)  # fmt: skip


def build(command, kube=KUBE, staging_root="s3://acct/staging"):
    op = xdmod_pod_operator(task_id="xdmod_shred_pod", resource="hpc1", command=command, kube=kube,
                            input_dir="/srv/xdmod-usage/input", staging_root=staging_root,
                            execution_timeout=dt.timedelta(hours=2))  # fmt: skip
    return op, pod_spec(op)


def test_shred_pod_fetches_verifies_and_runs_the_exact_argv():
    op, pod = build(shred_slurm("hpc1", "/srv/xdmod-usage/input", STAGED))
    spec = pod["spec"]
    assert pod["metadata"]["namespace"] == "xdmod"
    assert pod["metadata"]["labels"]["xdmod-usage/step"] == "shred"
    (base,) = spec["containers"]
    assert base["name"] == "base" and base["image"] == "registry.example.edu/xdmod:11.0.2"
    assert base["command"] == ["xdmod-shredder"]
    assert base["args"] == ["-r", "hpc1", "-f", "slurm", "-i", "/srv/xdmod-usage/input/slurm-hpc1-2026-11-20.log"]
    assert base["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "6Gi"}}
    mounts = {m["name"]: m for m in base["volumeMounts"]}
    assert mounts["xdmod-input"] == {"name": "xdmod-input", "mountPath": "/srv/xdmod-usage/input", "readOnly": True}
    assert mounts["xdmod-etc"]["mountPath"] == "/etc/xdmod" and mounts["xdmod-etc"]["readOnly"]
    assert mounts["xdmod-db"]["mountPath"] == "/etc/xdmod/portal_settings.ini"
    assert mounts["xdmod-db"]["subPath"] == "portal_settings.ini"

    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["xdmod-input"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert volumes["xdmod-etc"]["configMap"]["name"] == "xdmod-etc"
    assert volumes["xdmod-db"]["secret"]["secretName"] == "xdmod-db"
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]  # no shared volume needed

    (init,) = spec["initContainers"]
    assert init["command"][:3] == ["/bin/sh", "-c", COPY_SCRIPT]
    assert init["command"][3:] == ["fetch-staged-files", "/srv/xdmod-usage/input", STAGED.url, STAGED.sha256,
                                   STAGED.name]  # fmt: skip
    assert init["envFrom"] == [{"secretRef": {"name": "xdmod-staging-s3"}}]
    assert init["volumeMounts"] == [{"name": "xdmod-input", "mountPath": "/srv/xdmod-usage/input"}]

    assert spec["serviceAccountName"] == "xdmod-etl"
    assert spec["automountServiceAccountToken"] is False
    assert spec["activeDeadlineSeconds"] == 7200
    assert op.on_finish_action.value == "delete_succeeded_pod" and op.on_kill_action.value == "delete_pod"
    assert op.get_logs and not op.do_xcom_push and not op.deferrable
    assert op.startup_timeout_seconds == 300


@pytest.mark.parametrize("container", ["base", "init"])
def test_security_context_is_openshift_restricted_safe(container):
    _, pod = build(shred_slurm("hpc1", "/in", STAGED))
    spec = pod["spec"]
    ctx = (
        spec["containers"][0]["securityContext"]
        if container == "base"
        else spec["initContainers"][0]["securityContext"]
    )
    assert ctx == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                   "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert "runAsUser" not in json.dumps(pod)  # OpenShift assigns the UID


def test_steps_without_inputs_have_no_init_container():
    for command in (ingest(), aggregate("job", "2026-11-21 00:31:07")):
        _, pod = build(command)
        assert pod["spec"].get("initContainers") in (None, [])
        assert [pod["spec"]["containers"][0]["command"][0], *pod["spec"]["containers"][0]["args"]] == list(command.argv)


def test_file_staging_reaches_the_pod_through_the_configured_volume():
    kube = KUBE.model_copy(update={"staging_claim": "xdmod-staging", "staging_secret": None})
    item = XdmodInput(STAGED.name, "file:///var/lib/xdmod-usage/staging/hpc1/2026-11-20/v-ab/x.log", STAGED.sha256)
    _, pod = build(shred_slurm("hpc1", "/in", item), kube, "file:///var/lib/xdmod-usage/staging")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["xdmod-staging"]["persistentVolumeClaim"] == {"claimName": "xdmod-staging", "readOnly": True}
    init = pod["spec"]["initContainers"][0]
    assert init["command"][5] == "/var/lib/xdmod-usage/staging/hpc1/2026-11-20/v-ab/x.log"
    assert {"name": "xdmod-staging", "mountPath": "/var/lib/xdmod-usage/staging", "readOnly": True} in init[
        "volumeMounts"
    ]


def test_copy_script_verifies_sha256_and_refuses_a_tampered_file(tmp_path):
    """Run the init container's script for real with sh and coreutils (the cp branch)."""
    good, bad = tmp_path / "good.log", tmp_path / "bad.log"
    good.write_bytes(b"1|2|3\n")
    bad.write_bytes(b"tampered\n")
    import hashlib

    digest = hashlib.sha256(b"1|2|3\n").hexdigest()
    dest = tmp_path / "in"
    dest.mkdir()
    ok = subprocess.run(["/bin/sh", "-c", COPY_SCRIPT, "x", str(dest), str(good), digest, "a; rm -rf $HOME.log"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert (dest / "a; rm -rf $HOME.log").read_bytes() == b"1|2|3\n"
    failed = subprocess.run(["/bin/sh", "-c", COPY_SCRIPT, "x", str(dest), str(bad), digest, "b.log"],
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode != 0 and "FAILED" in failed.stdout
    # A cloud day's file goes into the day's own directory (the shredder reads it with -d).
    nested = subprocess.run(["/bin/sh", "-c", COPY_SCRIPT, "x", str(dest), str(good), digest, "day-1/e.json"],
                            capture_output=True, text=True)  # fmt: skip
    assert nested.returncode == 0, nested.stderr
    assert (dest / "day-1" / "e.json").read_bytes() == b"1|2|3\n"


def _site(**xdmod) -> str:
    data = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    data["xdmod"].update(xdmod)
    return yaml.safe_dump(data)


def test_kubernetes_runner_with_file_staging_and_no_volume_is_rejected_at_parse_time():
    text = _site(runner="kubernetes", kubernetes={"namespace": "xdmod", "image": "xdmod:11"})
    with pytest.raises(ConfigError, match=r"resources\[0\]: file:// staging .* needs xdmod.kubernetes.staging_claim"):
        parse_site_config(text, "site.yaml")
    with_volume = {"namespace": "xdmod", "image": "xdmod:11", "staging_claim": "xdmod-staging"}
    parse_site_config(_site(runner="kubernetes", kubernetes=with_volume), "site.yaml")
    with pytest.raises(ConfigError, match="needs a 'kubernetes' section"):
        parse_site_config(_site(runner="kubernetes"), "site.yaml")


def test_parsing_the_dags_never_imports_the_kubernetes_provider(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text(_site(runner="kubernetes", kubernetes={"namespace": "xdmod", "image": "xdmod:11",
                                                             "staging_claim": "xdmod-staging"}))  # fmt: skip
    code = ("import sys; from airflow.dag_processing.dagbag import DagBag; b = DagBag(dag_folder=sys.argv[1]); "
            "assert not b.import_errors, b.import_errors; "
            "assert 'airflow.providers.cncf.kubernetes.operators.pod' not in sys.modules, 'KPO at parse'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code, str(ROOT / "dags")], check=True,
                   env={**__import__("os").environ, "XDMOD_USAGE_CONFIG": str(config)})  # fmt: skip
