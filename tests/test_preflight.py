"""Preflight against real components: MariaDB (settings XDMoD needs), the real Slurm, an sshd
carrying XDMoD's resources.json, the staging store and the Airflow pool of a real metadata DB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
