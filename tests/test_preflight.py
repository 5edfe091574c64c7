"""Preflight against real components: MariaDB (settings XDMoD needs), the real Slurm, an sshd
carrying XDMoD's resources.json, the staging store and the Airflow pool of a real metadata DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from xdmod_usage.preflight import check_staging, check_xdmod_db, judge_db_settings, judge_pool, judge_resources_json
from xdmod_usage.staging import Store

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slurm


@pytest.mark.parametrize(
    ("sql_mode", "packet", "failed"),
    [("", 64 << 20, []), ("STRICT_TRANS_TABLES,NO_ZERO_DATE", 64 << 20, ["xdmod db sql_mode"]),
     ("", 4 << 20, ["xdmod db max_allowed_packet"])],
)  # fmt: skip
def test_db_settings_are_judged_as_xdmod_requires(sql_mode, packet, failed):
    assert [c.name for c in judge_db_settings(sql_mode, packet) if not c.ok] == failed


def test_the_real_xdmod_db_passes(slurm_site, monkeypatch):
    site, _ = slurm_site
    monkeypatch.setenv("AIRFLOW_CONN_XDMOD_DB", site.airflow_env()["AIRFLOW_CONN_XDMOD_DB"])
    checks = check_xdmod_db("xdmod_db")
    assert [(c.name, c.ok) for c in checks] == [
        ("connection xdmod_db", True), ("xdmod db sql_mode", True), ("xdmod db max_allowed_packet", True),
    ]  # fmt: skip
    assert checks[2].detail == f"{64 << 20} bytes"


def test_staging_probe_writes_reads_and_cleans_up(tmp_path):
    assert check_staging(Store.from_path(tmp_path), "file").ok
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        check_staging(Store.from_path(Path("/proc/xdmod-usage")), "proc")


def test_resources_json_and_pool_judgements():
    text = json.dumps([{"resource": "hpc1", "resource_type": "HPC"}, {"resource": "nerc_openstack"}])
    checks = judge_resources_json(text, {"hpc1": "hpc1", "cloud": "nerc-openstack"})
    assert [c.ok for c in checks] == [True, False]
    assert "No config found for 'nerc-openstack'" in checks[1].detail and "nerc_openstack" in checks[1].detail
    assert judge_pool({"slots": 1, "include_deferred": True}, "xdmod").ok
    assert "needs 1" in judge_pool({"slots": 2, "include_deferred": True}, "xdmod").detail
    assert "--include-deferred" in judge_pool({"slots": 1, "include_deferred": False}, "xdmod").detail
    assert not judge_pool(None, "xdmod").ok


def preflight(site, config: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**site.airflow_env(), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "xdmod_usage.preflight", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_preflight_command_on_the_real_site(slurm_site, sshd_login, tmp_path):
    site, _ = slurm_site
    config = json.loads(site.config_path.read_text())
    resources_json = tmp_path / "resources.json"
    resources_json.write_text(json.dumps([{"resource": "democluster", "resource_type": "HPC"}]))
    config["xdmod"] = {"runner": "ssh", "db_conn_id": "xdmod_db",
                       "ssh": {"conn_id": "xdmod_host", "resources_json": str(resources_json)}}  # fmt: skip
    good = tmp_path / "site.json"
    good.write_text(json.dumps(config))
    ssh_env = sshd_login.airflow_env("xdmod_host")

    result = preflight(site, good, ssh_env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "ok    democluster source" in "\n".join(lines) and "slurmdbd knows cluster 'democluster'" in result.stdout
    for name in ("connection xdmod_db", "xdmod db sql_mode", "staging file://", "democluster xdmod resource",
                 "pool xdmod"):  # fmt: skip
        assert any(line.startswith("ok") and name in line for line in lines), name
    assert lines[-1].endswith("0 failed, 0 not checked")

    config["resources"][0]["source"]["cluster"] = "democlustr"
    config["resources"][0]["xdmod_resource"] = "democluster2"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    failed = preflight(site, bad, ssh_env)
    assert failed.returncode == 1
    assert "FAIL  democluster source" in failed.stdout and "does not know cluster 'democlustr'" in failed.stdout
    assert (
        "FAIL  democluster xdmod resource" in failed.stdout
        and "'democluster2' is not in resources.json" in failed.stdout
    )

    subprocess.run([sys.executable, "-m", "airflow", "pools", "set", "xdmod", "2", "two"], env=site.airflow_env(),
                   check=True, capture_output=True)  # fmt: skip
    try:
        two_slots = preflight(site, good, ssh_env)
        assert two_slots.returncode == 1 and "has 2 slots, needs 1" in two_slots.stdout
    finally:
        site.prepare_airflow()  # back to 1 slot, include_deferred
    assert os.environ.get("AIRFLOW_CONN_XDMOD_HOST") is None  # the connection lived only in the child


def test_kubernetes_check_pod_is_the_xdmod_pod_reading_resources_json_and_a_staging_probe(tmp_path):
    """Built offline: the check pod carries what every XDMoD step needs, plus the staging probe."""
    from xdmod_usage.config import parse_site_config
    from xdmod_usage.kubernetes_runner import COPY_SCRIPT, pod_spec
    from xdmod_usage.preflight import preflight_pod
    from xdmod_usage.xdmod_commands import XdmodInput

    site = parse_site_config(json.dumps({
        "staging": {"root": "s3://acct/staging"},
        "xdmod": {"runner": "kubernetes", "kubernetes": {"namespace": "xdmod", "image": "xdmod:11.0.2",
                                                         "staging_secret": "xdmod-s3"}},
        "resources": [{"name": "hpc1", "kind": "slurm", "xdmod_resource": "hpc1", "start_date": "2026-01-01",
                       "source": {"cluster": "hpc1"}}],
    }))  # fmt: skip
    probe = XdmodInput("preflight-probe", "s3://acct/staging/.preflight-1/probe", "ab" * 32)
    spec = pod_spec(preflight_pod(site, site.resources[0], probe))["spec"]
    (base,) = spec["containers"]
    assert [base["command"], base["args"]] == [["cat"], ["--", "/etc/xdmod/resources.json"]]
    assert {m["mountPath"] for m in base["volumeMounts"]} >= {"/etc/xdmod", "/etc/xdmod/portal_settings.ini"}
    (init,) = spec["initContainers"]
    assert init["command"][2] == COPY_SCRIPT and init["command"][5:] == [probe.url, probe.sha256, probe.name]
    assert init["envFrom"] == [{"secretRef": {"name": "xdmod-s3"}}]
    assert spec["serviceAccountName"] == "xdmod-etl" and spec["activeDeadlineSeconds"] == 300
    assert base["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_preflight_says_which_kubernetes_api_is_unreachable_and_leaves_no_probe(slurm_site, tmp_path):
    """A kubernetes runner whose API does not answer (a real refused connection on loopback): the
    preflight fails that check with the reason, the other checks still run, and staging keeps nothing."""
    site, _ = slurm_site
    config = json.loads(site.config_path.read_text())
    config["xdmod"] = {"runner": "kubernetes", "db_conn_id": "xdmod_db",
                       "kubernetes": {"namespace": "xdmod", "image": "xdmod:11.0.2", "kubernetes_conn_id": "k8s",
                                      "staging_claim": "xdmod-staging", "startup_timeout": "10s"}}  # fmt: skip
    path = tmp_path / "site.json"
    path.write_text(json.dumps(config))
    port = free_port()
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
                  "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                  "contexts": [{"name": "t", "context": {"cluster": "t", "user": "u"}}],
                  "users": [{"name": "u", "user": {"token": "not-a-real-token"}}]}  # fmt: skip
    conn = json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}})
    staging_dir = Path(config["staging"]["root"].removeprefix("file://"))
    before = sorted(staging_dir.rglob("*")) if staging_dir.exists() else []

    result = preflight(site, path, {"AIRFLOW_CONN_K8S": conn})
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "pod in namespace xdmod" in line]
    assert line.startswith("FAIL") and f"127.0.0.1', port={port}" in line and "refused" in line.lower(), line
    assert "ok    democluster source" in result.stdout and "ok    xdmod db sql_mode" in result.stdout
    assert "not-a-real-token" not in result.stdout + result.stderr

    config["xdmod"]["kubernetes"]["startup_timeout"] = "PT10S"  # ISO 8601 is not a duration we accept
    path.write_text(json.dumps(config))
    invalid = preflight(site, path)
    assert invalid.returncode == 2 and "Traceback" not in invalid.stderr
    assert "config invalid:" in invalid.stderr
    assert "xdmod.kubernetes.startup_timeout: expected a duration" in invalid.stderr
    assert sorted(staging_dir.rglob("*")) == before  # the probe written for the pod is gone


def test_hierarchy_history_and_coldfront_checks_on_real_services(mariadb_pair, coldfront_site):
    from xdmod_usage.preflight import _guard, check_coldfront, check_history_db

    conn = mariadb_pair["scratch"].connect()
    conn.cursor().execute("CREATE DATABASE IF NOT EXISTS xu_preflight_history")
    conn.select_db("xu_preflight_history")
    (ok,) = _guard("history", lambda: check_history_db(conn, "h"))
    assert ok.ok is True and "database xu_preflight_history: tables ready and writable, 0 current rows" in ok.detail
    conn.select_db("mysql")
    conn.cursor().execute("DROP DATABASE xu_preflight_history")
    unnamed = mariadb_pair["scratch"].connect()  # no database in the connection
    (bad,) = _guard("history", lambda: check_history_db(unnamed, "h"))
    assert bad.ok is False and "names no database" in bad.detail
    (staff,) = _guard("cf", lambda: check_coldfront(coldfront_site.api(), "cf"))
    assert staff.ok is True and f"{len(coldfront_site.seed['projects'])} projects" in staff.detail
    (member,) = _guard("cf", lambda: check_coldfront(coldfront_site.api(token=coldfront_site.member_token), "cf"))
    assert member.ok is False and "must be staff or superuser" in member.detail
