"""The site config fails at parse time naming the file, the key and the reason."""

import datetime as dt
from pathlib import Path

import pytest
import yaml

from xdmod_usage.config import ConfigError, load_site_config, parse_site_config

EXAMPLE = Path(__file__).resolve().parent.parent / "include" / "site-config.example.yaml"


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _error_for(data: dict, tmp_path: Path) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    return str(info.value)


def test_example_config_is_valid():
    site = load_site_config(EXAMPLE)
    resource = site.resources[0]
    assert resource.dag_id == "usage_slurm_hpc1"
    assert resource.settle_delay == dt.timedelta(minutes=30)
    assert site.tasks_for(resource).max_retry_delay == dt.timedelta(minutes=30)
    assert resource.slurm_source().cluster == "hpc1"


@pytest.mark.parametrize(
    ("mutate", "key", "reason"),
    [
        (lambda d: d["resources"][0].update(kind="lsf"), "resources[0].kind", "Input should be"),
        (lambda d: d["resources"][0].update(start_date="2026-13-01"), "resources[0].start_date", "month"),
        (lambda d: d["resources"][0].update(colour="blue"), "resources[0].colour", "unknown key"),
        (lambda d: d["resources"][0]["source"].pop("cluster"), "resources[0].source.cluster", "Field required"),
        (lambda d: d["resources"][0]["source"].update(env={"TZ": "EST"}), "resources[0].source.env", "UTC"),
        (lambda d: d["resources"][0]["source"].update(sacct_path="-x"), "resources[0].source.sacct_path", "'-'"),
        (lambda d: d["resources"][0]["source"].update(sacctmgr_path="A=b"), "resources[0].source.sacctmgr_path", "="),
        (lambda d: d["resources"][0].update(settle_delay="soon"), "resources[0].settle_delay", "duration"),
        (lambda d: d["staging"].update(root="s3://key:secret@bucket/x"), "staging.root", "credentials"),
        (lambda d: d["staging"].update(root="ftp://host/x"), "staging.root", "file:// or s3://"),
        (lambda d: d["xdmod"].update(password="x"), "xdmod.password", "unknown key"),
        (lambda d: d["alerts"].append({"type": "slack"}), "alerts[1]", "conn_id"),
        (lambda d: d["resources"].append(dict(d["resources"][0])), "resources[3].name", "duplicate"),
        (lambda d: d["resources"][1].update(name="hpc1"), "resources[1].name", "duplicate resource name 'hpc1'"),
        (lambda d: d["hierarchy"].update(group_field="pi"), "hierarchy", "a pi group cannot map to the bottom level"),
        (lambda d: d["hierarchy"].update(levels=["pi", "organization"]), "hierarchy.levels", "top to bottom"),
        (
            lambda d: d["hierarchy"]["sources"][2].update(resource="hpc1"),
            "hierarchy.sources[2].resource",
            "no openshift resource named 'hpc1'",
        ),
        (lambda d: d["hierarchy"]["sources"][1].update(type="coldfrnt"), "hierarchy.sources[1]", "type"),
        (
            lambda d: d["hierarchy"]["sources"][0].update(path="hierarchy.yaml"),
            "hierarchy.sources[0].file.path",
            "absolute",
        ),
        (lambda d: d["hierarchy"].update(schedule="daily"), "hierarchy.schedule", "not a valid cron"),
        (lambda d: d["xdmod"].update(version="10.5"), "xdmod.version", "'11.0' or '11.5'"),
        (lambda d: d["aggregation"].update(settle_delay="soon"), "aggregation.settle_delay", "duration"),
        (
            lambda d: d["resources"][1]["source"]["policies"].append({"effective": "2026-10-01"}),
            "policies",
            "ascending order",
        ),
        (
            lambda d: d["resources"][1]["source"]["policies"][0].update(resolution="7m"),
            "resources[1].source.policies[0].resolution",
            "must divide one day",
        ),
        (
            lambda d: d["resources"][1]["source"]["policies"][0].update(mig_fractions={"1g.5gb": 2}),
            "mig_fractions",
            "share of a GPU",
        ),
        (
            lambda d: d["resources"][1]["source"].update(prometheus_url="http://x"),
            "resources[1].source.prometheus_url",
            "unknown key",
        ),
        (lambda d: d["resources"][0].update(kind="openstack"), "resources[0].source.cluster", "unknown key"),
        (lambda d: d["resources"][0].update(kind="azure"), "resources[0].kind", "'slurm', 'openshift' or 'openstack'"),
        (
            lambda d: d["resources"][2]["source"].update(cloud="mycloud"),
            "resources[2].source",
            "exactly one of conn_id",
        ),
        (
            lambda d: d["resources"][2]["source"].update(zero_vcpus="drop"),
            "resources[2].source.zero_vcpus",
            "'quarantine' or 'as_one'",
        ),
        (lambda d: d["resources"][0].update(max_quarantine_share=2), "resources[0].max_quarantine_share", "1"),
        (lambda d: d.update(resources=[]), "resources", "at least 1"),
        (lambda d: d["backup"].update(schedule="weekly"), "backup.schedule", "cron"),
        (lambda d: d["backup"].update(password="x"), "backup.password", "unknown key"),
        (lambda d: d["backup"]["retention"].update(weekly=0), "backup.retention.weekly", "greater than or equal"),
        (lambda d: d["backup"]["config"].update(path="etc/xdmod"), "backup.config.path", "absolute"),
        (lambda d: d["backup"]["config"].update(source="scp"), "backup.config.source", "'path', 'ssh' or 'none'"),
        (lambda d: d["backup"]["store"].update(root="/backups"), "backup.store.root", "file:// or s3://"),
        (lambda d: d["backup"].update(databases=["modw; DROP"]), "backup.databases[0]", "pattern"),
        (lambda d: d["backup"].update(users=["x' OR 1"]), "backup.users[0]", "pattern"),
        (lambda d: d["backup"].update(compression_level=11), "backup.compression_level", "9"),
    ],
)
def test_invalid_config_names_file_key_and_reason(tmp_path, mutate, key, reason):
    data = _example()
    mutate(data)
    message = _error_for(data, tmp_path)
    assert str(tmp_path / "site.yaml") in message
    assert key in message
    assert reason in message


def test_not_yaml_and_missing_file(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_site_config("resources: [", "x.yaml")
    with pytest.raises(ConfigError, match="cannot read site config"):
        load_site_config(tmp_path / "absent.yaml")
    monkeypatch.delenv("XDMOD_USAGE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="XDMOD_USAGE_CONFIG is not set"):
        load_site_config()
