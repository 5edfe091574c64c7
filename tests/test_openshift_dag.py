"""The daily OpenShift DAG end to end under `airflow dags test`: a real Prometheus holding a generated
day, real MariaDB for XDMoD's clock, the dry-run runner showing the exact XDMoD commands."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from scripts.local_run import OCP, OCP_CONN_ID, OCP_DAG_ID, LocalSite

from conftest import free_port

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def ocp_site(slurm_site, prometheus_site, tmp_path_factory):
    site, _ = slurm_site
    ocp = LocalSite(site.state_dir, tmp_path_factory.mktemp("ocp-dag"), site.ports, prometheus_site[0])
    ocp.write_config()
    return ocp, dt.date.fromisoformat(prometheus_site[2]), prometheus_site[1]


def test_the_dag_stages_the_day_and_runs_the_xdmod_steps(ocp_site):
    site, day, truth = ocp_site
    status, log = site.run_day(day, dag_id=OCP_DAG_ID)
    text = log.read_text()
    assert status == 0, text[-4000:]
    manifest = site.manifest(day, OCP)
    assert manifest["kind"] == "openshift" and manifest["xdmod_format"] == "slurm"
    source = manifest["source_counts"]
    assert manifest["counts"]["staged"] == source["rows"] > 0 and manifest["counts"]["quarantined"] == {}
    pods = {
        (f[3], f[25]) for f in (line.split("|", 25) for line in site.staged_path(day, OCP).read_text().splitlines())
    }
    assert {tuple(key.split("/", 1)) for key in truth["pods"]} == pods
    assert manifest["source"]["queries"]["queries"] >= 7 and manifest["source"]["prometheus_conn_id"] == OCP_CONN_ID
    staged = site.staged_path(day, OCP)
    assert "DRY RUN would run argv=['xdmod-shredder', '-r', 'ocp_demo', '-f', 'slurm', '-i', " in text
    assert staged.name in text
    assert "'xdmod-ingestor', '--ingest'" in text and "'--aggregate=job'" not in text  # the aggregation DAG's
    assert site.manifest(day, OCP)["reconciliation"]["expected"] == manifest["counts"]["xdmod_rows"]
    assert "Prometheus has no request samples" in text  # the outage hour is reported (policy warn)


def test_archive_replay_needs_no_prometheus_and_gives_the_same_rows(ocp_site):
    site, day, _ = ocp_site
    status, log = site.run_day(day, dag_id=OCP_DAG_ID)
    assert status == 0, log.read_text()[-4000:]
    before = site.staged_path(day, OCP).read_bytes()
    dead = {f"AIRFLOW_CONN_{OCP_CONN_ID.upper()}": json.dumps({"conn_type": "http",
                                                              "host": f"http://127.0.0.1:{free_port()}"})}  # fmt: skip
    status, log = site.run_day(day, conf={"source": "archive"}, extra_env=dead, dag_id=OCP_DAG_ID)
    assert status == 0, log.read_text()[-4000:]
    assert site.staged_path(day, OCP).read_bytes() == before
    assert site.manifest(day, OCP)["source"]["replayed_from_archive"] is True
