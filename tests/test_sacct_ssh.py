"""sacct on a "login node" over SSH (source.ssh_conn_id), end to end with `airflow dags test`.

The login node is a private sshd on 127.0.0.1 (scripts/services/sshd.sh) that lets the tests' client
key in as root on this host, where the real test Slurm runs: the remote sacct sees the same slurmdbd
as a local one, so an SSH pull must stage exactly the bytes a local pull stages. The Airflow
connection comes from an AIRFLOW_CONN_* environment variable, as a deployment's secrets backend
would provide it, and pins the server's host key.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import shutil
from pathlib import Path

import pytest
from scripts.local_run import CLUSTER, DAY, LocalSite

from xdmod_usage.staging import staged_part

pytestmark = pytest.mark.slurm

CONN_ID = "slurm_login"


@pytest.fixture(scope="module")
def sshd(sshd_login):
    return sshd_login


def ssh_site(site: LocalSite, output_dir: Path, sacct_path: str | None = None, **source_env: str) -> LocalSite:
    """The tests' usual site config, with the resource's sacct run over the SSH connection."""
    ssh = LocalSite(site.state_dir, output_dir, site.ports)
    ssh.write_config(**source_env)
    config = json.loads(ssh.config_path.read_text())
    config["resources"][0]["source"]["ssh_conn_id"] = CONN_ID
    if sacct_path is not None:
        config["resources"][0]["source"]["sacct_path"] = sacct_path
    ssh.config_path.write_text(json.dumps(config, indent=2) + "\n")
    return ssh


def day_files(site: LocalSite, day: dt.date) -> dict[str, bytes]:
    """Every file of the staged day except the manifest (whose source block names the transport)."""
    root = site.staging_root / CLUSTER / day.isoformat()
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_sacct_over_ssh_stages_the_same_bytes_as_local_sacct(slurm_site, sshd, tmp_path):
    site, _ = slurm_site
    local = LocalSite(site.state_dir, tmp_path / "local", site.ports)
    local.write_config()
    status, log = local.run_day(DAY)
    assert status == 0, log.read_text()[-4000:]

    remote = ssh_site(site, tmp_path / "ssh")
    logins_before = sshd.logins()
    status, log = remote.run_day(DAY, extra_env=sshd.airflow_env(CONN_ID))
    assert status == 0, log.read_text()[-4000:]
    assert sshd.logins() == logins_before + 1  # one SSH session: the pull really went through sshd

    manifest, local_manifest = staged_part(remote.manifest(DAY)), staged_part(local.manifest(DAY))
    assert manifest["source"].pop("ssh_conn_id") == CONN_ID
    assert local_manifest["source"].pop("ssh_conn_id") is None
    assert manifest["counts"]["staged"] > 0
    assert manifest == local_manifest  # same files (sha256), counts, version, argv
    assert day_files(remote, DAY) == day_files(local, DAY)
    assert remote.staged_path(DAY).read_bytes() == local.staged_path(DAY).read_bytes()


def test_failing_sacct_over_ssh_fails_the_run_with_remote_sacct_message(slurm_site, sshd, tmp_path):
    site, _ = slurm_site
    bad_conf = tmp_path / "slurm.conf"
    shutil.copy(site.slurm_conf, bad_conf)
    bad_conf.write_text(bad_conf.read_text().replace(f"AccountingStoragePort={site.ports['XU_SLURMDBD_PORT']}",
                                                     "AccountingStoragePort=9"))  # fmt: skip
    broken = ssh_site(site, tmp_path / "out", SLURM_CONF=str(bad_conf))
    status, log = broken.run_day(DAY, extra_env=sshd.airflow_env(CONN_ID))
    text = log.read_text()
    assert status != 0
    assert "sacct failed (exit status 1)" in text and "Problem talking to the database" in text
    assert "[command: sacct --allusers" in text
    assert text.count("new_state=up_for_retry") == 1  # slurmdbd may come back: retried (retries=1)
    assert not (tmp_path / "out" / "staging" / CLUSTER / DAY.isoformat() / "manifest.json").exists()


def test_shell_metacharacters_in_source_env_reach_the_remote_side_literally(slurm_site, sshd, tmp_path):
    site, _ = slurm_site
    marker = tmp_path / "pwned"
    m = str(marker)
    probe = (
        f"$(touch {m}); `touch {m}`; touch {m} && echo 'single' \"double\" \\ | tee {m} > {m}2 # ${{HOME}}\n"
        f"touch {m}3; *"
    )
    # A sacct wrapper that records what the remote side received, then runs the real sacct.
    seen = tmp_path / "seen-probe"
    wrapper = tmp_path / "sacct-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintenv XU_PROBE > {shlex.quote(str(seen))}\nexec sacct "$@"\n')
    wrapper.chmod(0o755)

    probed = ssh_site(site, tmp_path / "out", sacct_path=str(wrapper), XU_PROBE=probe)
    status, log = probed.run_day(DAY, extra_env=sshd.airflow_env(CONN_ID))
    assert status == 0, log.read_text()[-4000:]
    assert seen.read_text() == probe + "\n"  # the exact value, delivered through `env` on the remote side
    assert not list(tmp_path.glob("pwned*")), "the remote shell executed part of an env value"
    assert probed.manifest(DAY)["source"]["argv"][0] == str(wrapper)
