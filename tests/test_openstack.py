"""OpenStack usage against a real control plane (scripts/services/openstack.sh: Keystone, Nova with the
fake virt driver, Placement, Glance, neutron-server, RabbitMQ, MariaDB) after the workload of
scripts/openstack_workload.py ran on its fake clock. The schedule there is the truth.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from scripts.openstack_workload import SCHEDULE, SERVERS, step_time

from fault_proxy import FaultProxy
from xdmod_usage.openstack_api import OpenStackApi, OpenStackAuthError, connect
from xdmod_usage.openstack_events import EXISTS, parse_time
from xdmod_usage.openstack_pipeline import RAW_NAME, STATE_NAME, events_name, hypervisors_name, stage_openstack_day
from xdmod_usage.slurm_pipeline import QUARANTINE_NAME
from xdmod_usage.staging import DayStage, SourceShrankError, Store
from xdmod_usage.window import UsageWindow

SHARED = Path(__file__).resolve().parents[2] / "shared" / "xdmod-schemas"
# XDMoD's own directory-scanner patterns (configuration/etl/etl.d/jobs_cloud_openstack.json and
# cloud_ingest_resource_specs.json), 11.0 accepting only colons.
XDMOD_EVENTS_FILE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}_"
                               r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.json")  # fmt: skip
XDMOD_SPECS_FILE = re.compile(r"hypervisor_facts_[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.json")
EVENT_OF = {
    "create": ["compute.instance.create.end"], "stop": ["compute.instance.power_off.end"],
    "start": ["compute.instance.power_on.end"], "suspend": ["compute.instance.suspend.end"],
    "resume": ["compute.instance.resume.end"], "pause": ["compute.instance.pause.end"],
    "unpause": ["compute.instance.unpause.end"], "shelve": ["compute.instance.shelve_offload.end"],
    "unshelve": ["compute.instance.unshelve.end"],
    "resize": ["compute.instance.resize.start", "compute.instance.finish_resize.end"],
    "confirmResize": ["compute.instance.resize.confirm.end"], "revertResize": [],
    "delete": ["compute.instance.delete.end"],
}  # fmt: skip
RUNS_AFTER = {"create": True, "start": True, "resume": True, "unpause": True, "unshelve": True, "stop": False,
              "suspend": False, "pause": False, "shelve": False, "delete": False}  # fmt: skip
SETTLE = dt.timedelta(seconds=90)  # an action finishes within this of the step's time


def expected(workload_day: dt.date, day: dt.date) -> dict[str, dict]:
    """Per server, from the schedule played on ``workload_day``: ``day``'s action events (type, flavor,
    nominal time), the hours it ran and the flavor of each hour's heartbeat."""
    start, end = step_time(day, 0, "00:00"), step_time(day, 1, "00:00")
    out = {}
    for server, (_project, first_flavor) in SERVERS.items():
        flavor, previous, running, since = first_flavor, [], False, None
        runs, actions = [], []
        for offset, hhmm, steps in SCHEDULE:
            moment = step_time(workload_day, offset, hhmm)
            for step in steps:
                if step[0] != server:
                    continue
                action = step[1]
                before = flavor
                if action == "resize":
                    previous.append(flavor)
                    flavor = step[2]
                elif action == "revertResize":
                    flavor = previous.pop()
                ends = [st[1] for _o, _h, sts in SCHEDULE for st in sts if st[0] == server and st[1].endswith("Resize")]
                reverted = action == "resize" and ends[:1] == ["revertResize"]  # one resize per server here
                if start <= moment < end:
                    # A resize reverted later: its target flavor is not in the API, so no finish event.
                    for event_type in EVENT_OF[action][:1] if reverted else EVENT_OF[action]:
                        shown = before if event_type.endswith("resize.start") else flavor
                        actions.append((event_type, shown, moment))
                if running and (action in ("resize", "revertResize") or not RUNS_AFTER.get(action, True)):
                    runs.append((since, moment, before))
                    since = None
                running = RUNS_AFTER.get(action, running)
                if running and since is None:
                    since = moment
        if running:
            runs.append((since, end + dt.timedelta(days=5), flavor))
        hours = {}
        for run_start, run_end, run_flavor in runs:
            for hour in range(24):
                slot = start + dt.timedelta(hours=hour)
                if run_start < slot + dt.timedelta(hours=1) and run_end > slot:
                    hours[hour] = run_flavor
        out[server] = {"actions": actions, "hours": hours}
    return out


@pytest.fixture(scope="module")
def staged(openstack_site):
    """DAY - 1, DAY and DAY + 1, each staged from the live APIs just after it closed (by the fixture)."""
    return openstack_site.store, openstack_site.staged


def day_files(store: Store, day: dt.date) -> tuple[dict, dict[str, bytes]]:
    stage = DayStage(store, "cloud", day.isoformat())
    manifest = stage.read_manifest()
    files = {}
    for name, entry in manifest["files"].items():
        with stage.open_entry(entry) as handle:
            files[name] = handle.read()
    return manifest, files


def events_by_server(openstack_site, events: list[dict]) -> dict[str, list[dict]]:
    names = {sid: name for name, sid in openstack_site.truth["servers"].items()}
    out: dict[str, list[dict]] = {name: [] for name in SERVERS}
    for event in events:
        out[names[event["instance_id"]]].append(event)
    return out


@pytest.mark.parametrize("offset", [0, 1])
def test_every_action_is_the_right_event_at_the_right_time_with_hourly_heartbeats(openstack_site, staged, offset):
    store, _results = staged
    day = openstack_site.day + dt.timedelta(days=offset)
    manifest, files = day_files(store, day)
    events = json.loads(files[events_name(UsageWindow.for_day(day))])
    got = events_by_server(openstack_site, events)
    want = expected(openstack_site.day, day)
    for server in SERVERS:
        if server == "zero":
            continue  # quarantined: see its own test
        actions = [e for e in got[server] if e["event_type"] != EXISTS]
        assert [(e["event_type"], e["instance_type"]) for e in actions] == [
            (t, f) for t, f, _m in want[server]["actions"]], server  # fmt: skip
        for event, (_t, _f, nominal) in zip(actions, want[server]["actions"], strict=True):
            assert nominal <= parse_time(event["generated"]) < nominal + SETTLE, (server, event)
        beats = [e for e in got[server] if e["event_type"] == EXISTS]
        hours = {parse_time(e["generated"]).hour: e["instance_type"] for e in beats}
        assert len(beats) == len(hours), f"{server}: more than one heartbeat in an hour"
        assert hours == want[server]["hours"], server
        for beat in beats:
            assert beat["state"] == "active"
            assert beat["audit_period_beginning"] == parse_time(beat["generated"]).strftime("%Y-%m-%dT%H:00:00")
    # The server that ran all day unchanged (until a resize after the day) has its 24 heartbeats,
    # with the flavor it had then (from the previous day's state), not its present one.
    if offset == 0:
        steady = got["steady"]
        assert len(steady) == 24 and {e["instance_type"] for e in steady} == {"small"}
        assert got["deleter"][-1]["event_type"] == "compute.instance.delete.end"
        assert got["gone-before"] == [] and got["idle"] == []
        assert manifest["source_counts"]["flavor_assumed"] == [openstack_site.truth["servers"]["reverter"]]
        assert manifest["counts"]["skipped"]["resize_target_flavor_unknown"] == 1
    assert manifest["counts"]["staged"] == len(events)


def test_names_types_and_projects_are_what_xdmod_validates(openstack_site, staged):
    from jsonschema import Draft7Validator

    store, _results = staged
    window = UsageWindow.for_day(openstack_site.day)
    manifest, files = day_files(store, openstack_site.day)
    assert XDMOD_EVENTS_FILE.fullmatch(events_name(window)) and XDMOD_SPECS_FILE.fullmatch(hypervisors_name(window))
    assert events_name(window) == f"{window.day}T00:00:00_{window.day}T23:59:59.json"
    assert manifest["input_subdir"] == f"openstack-cloud_openstack-{window.day}"
    xdmod_event = Draft7Validator(json.loads((SHARED / "cloud_openstack_event.schema.json").read_text()))
    xdmod_specs = Draft7Validator(json.loads((SHARED / "cloud_resource_specs.schema.json").read_text()))
    events = json.loads(files[events_name(window)])
    assert events, "no events staged"
    for event in events:  # strict: no coercion (an int where XDMoD wants a string is dropped there)
        assert not list(xdmod_event.iter_errors(event)), event
        assert isinstance(event["disk_gb"], str) and isinstance(event["vcpus"], int)
    facts = json.loads(files[hypervisors_name(window)])
    assert facts["ts"] == f"{window.day}T23:59:59Z" and facts["hypervisors"]
    for row in facts["hypervisors"]:
        assert not list(xdmod_specs.iter_errors(row)) and row["vcpus"] > 0 and isinstance(row["id"], int)
    projects, users = openstack_site.truth["projects"], openstack_site.truth["users"]
    for event in events:
        project = SERVERS[next(n for n, s in openstack_site.truth["servers"].items() if s == event["instance_id"])][0]
        assert (event["project_id"], event["project_name"]) == (projects[project], project)
        owner = {"alpha": "alice", "beta": "bob"}[project]
        assert (event["user_id"], event["user_name"], event["domain"]) == (users[owner], owner, "Default")
    # Deterministic order: by time, then instance.
    assert [(e["generated"], e["instance_id"]) for e in events] == sorted((e["generated"], e["instance_id"])
                                                                          for e in events)  # fmt: skip


def test_zero_vcpu_flavor_is_quarantined_with_its_reason_and_counted(openstack_site, staged, tmp_path):
    store, _results = staged
    manifest, files = day_files(store, openstack_site.day)
    (entry,) = [json.loads(line) for line in files[QUARANTINE_NAME].decode().splitlines()]
    assert entry["instance_id"] == openstack_site.truth["servers"]["zero"]
    assert "0 vCPUs" in entry["reason"] and entry["events"][0]["event_type"] == "compute.instance.create.end"
    assert manifest["counts"]["quarantined"] == {"zero_vcpus": len(entry["events"])}
    # Mapped per config instead: the same instance is staged with 1 vCPU and listed.
    window = UsageWindow.for_day(openstack_site.day)
    result = stage_openstack_day(Store.from_path(tmp_path), "cloud", "cloud_openstack", window, openstack_site.api(),
                                 zero_vcpus="as_one")  # fmt: skip
    assert result.manifest["source_counts"]["zero_vcpus_mapped"] == [openstack_site.truth["servers"]["zero"]]
    assert result.manifest["counts"]["quarantined"] == {}


def test_calls_grow_with_changed_servers_not_with_history(openstack_site, staged):
    store, results = staged
    result, api = results[0]
    calls = result.manifest["source"]["api"]["by_path"]
    raw = day_archive(store, openstack_site.day)
    assert calls["compute /servers/{id}/os-instance-actions"] == len(raw["compute"]["servers_changed"])
    assert calls["compute /servers/detail"] == 2  # changed since the day start, and all live servers
    assert not any("os-instance-actions/" in path for path in calls)  # no call per action
    assert api.stats.retries == 0


def day_archive(store: Store, day: dt.date) -> dict:
    import gzip

    _manifest, files = day_files(store, day)
    return json.loads(gzip.decompress(files[RAW_NAME]))


def test_rerun_and_replay_of_a_closed_day_are_byte_identical(openstack_site, staged):
    """Two days later (the servers changed since: resizes, a stop) the day's files are the same bytes."""
    store, results = staged
    window = UsageWindow.for_day(openstack_site.day)
    first = results[0][0].manifest
    first_state = json.loads(day_files(store, openstack_site.day)[1][STATE_NAME])
    again = stage_openstack_day(store, "cloud", "cloud_openstack", window, openstack_site.api(),
                                max_quarantine_share=1.0)  # fmt: skip
    replay = stage_openstack_day(store, "cloud", "cloud_openstack", window, None, max_quarantine_share=1.0)
    again_state = json.loads(day_files(store, openstack_site.day)[1][STATE_NAME])
    differing = {key: (value, again_state["instances"].get(key)) for key, value in first_state["instances"].items()
                 if again_state["instances"].get(key) != value}  # fmt: skip
    assert first_state == again_state, differing
    for name in (events_name(window), hypervisors_name(window), STATE_NAME, QUARANTINE_NAME):
        assert again.manifest["files"][name]["sha256"] == first["files"][name]["sha256"], name
        assert replay.manifest["files"][name]["sha256"] == first["files"][name]["sha256"], name
    assert replay.manifest["source"]["replayed_from_archive"] is True
    assert again.manifest["counts"] == first["counts"]


def test_first_day_without_the_day_before_says_what_it_assumed(openstack_site, tmp_path):
    """No previous state: the flavor 'steady' had before its later resize is unknown to the API."""
    store = Store.from_path(tmp_path)
    result = stage_openstack_day(store, "cloud", "cloud_openstack", UsageWindow.for_day(openstack_site.day),
                                 openstack_site.api(), max_quarantine_share=1.0)  # fmt: skip
    counts = result.manifest["source_counts"]
    assert counts["previous_state"] is None
    assert openstack_site.truth["servers"]["steady"] in counts["flavor_assumed"]


def test_a_source_that_forgot_servers_cannot_erase_a_staged_day(openstack_site, staged):
    store, _results = staged
    window = UsageWindow.for_day(openstack_site.day)
    manifest, _files = day_files(store, openstack_site.day)
    held = manifest["counts"]["staged"]

    class Forgetful(OpenStackApi):  # the real API, minus the deleted servers Nova archived
        def servers(self, changes_since=None):
            return [s for s in super().servers(changes_since) if s["status"] != "DELETED"]

    with pytest.raises(SourceShrankError, match=f"holds {held}"):
        stage_openstack_day(store, "cloud", "cloud_openstack", window, Forgetful(openstack_site.connect()),
                            max_quarantine_share=1.0)  # fmt: skip
    assert DayStage(store, "cloud", window.day.isoformat()).read_manifest() == manifest


def test_api_5xx_and_timeouts_are_retried(openstack_site):
    nova = openstack_site.env["XU_OS_NOVA_URL"]
    base = urlsplit(nova)
    proxy = FaultProxy(f"{base.scheme}://{base.netloc}", fail=2, slow=1, delay=6, rewrite_links=True)
    conn = connect(cloud=openstack_site.env["XU_OS_CLOUD"], timeout=3)
    conn.compute.endpoint_override = proxy.url + base.path
    api = OpenStackApi(conn, backoff=0.2)
    servers = api.servers()
    assert servers and api.stats.retries == 3  # two 503s and one timeout, then the real answer
    proxy.server.shutdown()


def test_bad_credentials_fail_fast_with_a_clear_message(openstack_site):
    auth = {"auth_url": openstack_site.env["XU_OS_AUTH_URL"], "username": "admin", "password": "wrong-pw-123",
            "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"}  # fmt: skip
    api = OpenStackApi(connect(auth=auth), backoff=5)
    started = time.monotonic()
    with pytest.raises(OpenStackAuthError) as info:
        api.servers()
    assert time.monotonic() - started < 5  # no retry with backoff
    message = str(info.value)
    assert openstack_site.env["XU_OS_AUTH_URL"] in message and "username admin" in message
    assert "wrong-pw-123" not in message and openstack_site.admin_password() not in message


@pytest.fixture(scope="module")
def cloud_site(openstack_site, airflow_db, tmp_path_factory):
    """The OpenStack DAG's local site: Airflow on SQLite, a connection to the test cloud (admin role, as
    an operator would enter it), XDMoD's clock from the cloud's own MariaDB."""
    from scripts.local_run import LocalSite

    site = LocalSite(tmp_path_factory.mktemp("os-airflow-state"), tmp_path_factory.mktemp("os-dag"),
                     {"XU_MARIADB_PORT": str(int(openstack_site.env["XU_OS_PORT_BASE"]) + 8)},
                     openstack_env=openstack_site.env, openstack_start=openstack_site.day)  # fmt: skip
    site.write_config()
    site.prepare_airflow()
    return site


def test_the_dag_stages_the_day_and_runs_the_cloud_xdmod_steps(openstack_site, cloud_site):
    from scripts.local_run import CLOUD, CLOUD_DAG_ID

    day = openstack_site.day
    status, log = cloud_site.run_day(day, dag_id=CLOUD_DAG_ID)
    text = log.read_text()
    assert status == 0, text[-4000:]
    manifest = cloud_site.manifest(day, CLOUD)
    assert manifest["kind"] == "openstack" and manifest["xdmod_format"] == "openstack"
    assert manifest["source"]["conn_id"] == "openstack_demo" and manifest["source"]["api"]["calls"] > 0
    fixture_day = openstack_site.staged[0][0].manifest
    assert manifest["counts"]["staged"] == fixture_day["counts"]["staged"] > 0
    subdir = f"openstack-cloud_demo-{day}"
    events, specs = manifest["xdmod_inputs"]["events"], manifest["xdmod_inputs"]["hypervisors"]
    assert (f"DRY RUN would run argv=['xdmod-shredder', '-r', 'cloud_demo', '-f', 'openstack', '-d', "
            f"'/srv/xdmod-usage/input/{subdir}']") in text  # fmt: skip
    assert (f"DRY RUN would run argv=['xdmod-shredder', '-r', 'cloud_demo', '-f', 'cloudresourcespecs', '-d', "
            f"'/srv/xdmod-usage/input/{subdir}']") in text  # fmt: skip
    assert f"at /srv/xdmod-usage/input/{subdir}/{events}" in text and f"{subdir}/{specs}" in text
    assert "'xdmod-ingestor', '--datatype=openstack'" in text and "'--aggregate=cloud'" not in text
    assert "ingest event for xdmod-ingest.cloud.cloud-demo" in text  # xdmod_aggregate_cloud runs on it
    note = cloud_site.manifest(day, CLOUD)["reconciliation"]
    assert note["status"] == "not_checked" and note["writer_claim"] == manifest["counts"]["staged"]
    assert note["expected"] == note["writer_claim"] > 0  # XDMoD's rules keep every event our writer staged
    password = openstack_site.admin_password()
    assert password not in text  # the connection's password never reaches a log


def test_archive_replay_needs_no_cloud(openstack_site, cloud_site):
    from scripts.local_run import CLOUD, CLOUD_CONN_ID, CLOUD_DAG_ID

    from conftest import free_port

    day = openstack_site.day
    status, log = cloud_site.run_day(day, dag_id=CLOUD_DAG_ID)
    assert status == 0, log.read_text()[-4000:]
    before = cloud_site.manifest(day, CLOUD)
    nowhere = {"conn_type": "generic", "host": f"http://127.0.0.1:{free_port()}/v3", "login": "x", "password": "y"}
    dead = {f"AIRFLOW_CONN_{CLOUD_CONN_ID.upper()}": json.dumps(nowhere)}
    status, log = cloud_site.run_day(day, conf={"source": "archive"}, extra_env=dead, dag_id=CLOUD_DAG_ID)
    assert status == 0, log.read_text()[-4000:]
    after = cloud_site.manifest(day, CLOUD)
    name = after["xdmod_inputs"]["events"]
    assert after["files"][name]["sha256"] == before["files"][name]["sha256"]
    assert after["source"]["replayed_from_archive"] is True


def test_xdmod_rules_keep_every_event_our_writer_staged(openstack_site):
    """The independent expectation (XDMoD's event map, exists-only-when-active, the event primary key)
    agrees with our event builder on every day staged from the real cloud."""
    import json as json_module

    from xdmod_usage.window import UsageWindow
    from xdmod_usage.xdmod_expected import expected_cloud_events

    for offset in sorted(openstack_site.staged):
        day = UsageWindow.for_day(openstack_site.day + dt.timedelta(days=offset))
        manifest, files = day_files(openstack_site.store, day.day)  # as staged now (other tests restage days)
        expected = expected_cloud_events(json_module.loads(files[manifest["xdmod_inputs"]["events"]]), day.start,
                                         day.end)  # fmt: skip
        assert expected.rows == manifest["counts"]["staged"], (offset, expected.not_held)


def test_preflight_checks_the_account_microversion_and_admin_role(openstack_site):
    from xdmod_usage.config import Resource
    from xdmod_usage.preflight import _guard, check_openstack_source

    resource = Resource.model_validate({"name": "cloud", "kind": "openstack", "xdmod_resource": "cloud_openstack",
                                        "start_date": "2026-11-01", "source": {"cloud": "xu-admin"}})  # fmt: skip
    (good,) = _guard("cloud source", lambda: check_openstack_source(resource, openstack_site.api()))
    assert good.ok is True and "Nova speaks up to 2.93" in good.detail and "1 hypervisor(s)" in good.detail
    auth = {"auth_url": openstack_site.env["XU_OS_AUTH_URL"], "username": "alice", "password": "workload-user-pw",
            "project_name": "alpha", "user_domain_name": "Default", "project_domain_name": "Default"}  # fmt: skip
    (member,) = _guard("cloud source", lambda: check_openstack_source(resource, OpenStackApi(connect(auth=auth))))
    assert member.ok is False and "admin role" in member.detail  # a project member cannot read usage


def test_a_server_deleted_before_the_day_is_no_part_of_it_when_nova_touches_its_record(openstack_site, staged):
    """Nova's periodic cleanup updates long-deleted servers (seen on this stack ~10 min after the workload), so a
    live rerun lists them as changed in the window: the day's archive (recorded from the real cloud) plus the
    record of 'gone-before' (deleted the evening before, as Nova listed it then) with `updated` moved past the
    window, as the cleanup moves it."""
    import gzip

    from xdmod_usage.openstack_events import build_day

    store, _results = staged
    day_before, day = openstack_site.day - dt.timedelta(days=1), openstack_site.day
    manifest, files = day_files(store, day)
    archive = json.loads(gzip.decompress(files[RAW_NAME]))
    previous = json.loads(day_files(store, day_before)[1][STATE_NAME])
    gone = openstack_site.truth["servers"]["gone-before"]
    earlier = json.loads(gzip.decompress(day_files(store, day_before)[1][RAW_NAME]))
    (record,) = [s for s in earlier["compute"]["servers_changed"] if s["id"] == gone]
    assert record["OS-SRV-USG:terminated_at"] and gone not in previous["instances"]
    touched = {**record, "updated": f"{day + dt.timedelta(days=2)}T00:08:26Z"}
    archive["compute"]["servers_changed"].append(touched)
    built = build_day(archive, previous)
    assert gone not in built.end_state["instances"]
    assert not [event for event in built.events if event["instance_id"] == gone]
    assert len(built.events) == manifest["counts"]["staged"]  # the rest of the day is as staged
    assert built.counts.as_counts()["read"] == manifest["counts"]["read"]  # and counted as the first run did
