"""Preflight: check a site's setup before go-live and say exactly what is wrong.

Each check returns a line an operator can act on. Runs as a command (which can also inspect the
Airflow pool, since it runs beside the metadata database) and as the manual DAG
``xdmod_usage_preflight`` (task code has no metadata-database access in Airflow 3, so the pool is
checked by the command only):

    python -m xdmod_usage.preflight [--config site.yaml]   # exit 1: a check failed; 2: config invalid
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import Resource, SiteConfig, load_for_command
from .xdmod_commands import XdmodCommand, XdmodInput

MIN_MAX_ALLOWED_PACKET = 16 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not be checked from here (says why)
    detail: str


def _guard(name: str, run: Callable[[], Check | list[Check]]) -> list[Check]:
    """A check that raises is reported as failed with its error, never as a crash of the preflight."""
    try:
        result = run()
    except Exception as exc:  # the message is the finding
        return [Check(name, False, f"{type(exc).__name__}: {exc}".strip().splitlines()[0])]
    return result if isinstance(result, list) else [result]


def judge_db_settings(sql_mode: str, max_allowed_packet: int) -> list[Check]:
    """XDMoD needs sql_mode='' (its ETL relies on non-strict inserts) and max_allowed_packet >= 16M."""
    modes = [mode for mode in sql_mode.split(",") if mode]
    return [
        Check("xdmod db sql_mode", not modes, "''" if not modes else f"is {sql_mode!r}; XDMoD requires ''"),
        Check(
            "xdmod db max_allowed_packet",
            max_allowed_packet >= MIN_MAX_ALLOWED_PACKET,
            f"{max_allowed_packet} bytes"
            + ("" if max_allowed_packet >= MIN_MAX_ALLOWED_PACKET else "; XDMoD needs >= 16M"),
        ),
    ]


def check_xdmod_db(conn_id: str) -> list[Check]:
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    row = MySqlHook(mysql_conn_id=conn_id).get_first("SELECT @@GLOBAL.sql_mode, @@GLOBAL.max_allowed_packet")
    return [Check(f"connection {conn_id}", True, "reachable and authorised"), *judge_db_settings(row[0], int(row[1]))]


def check_staging(store: Any, label: str) -> Check:
    """Write, read back and delete a probe object: the worker can stage there."""
    rel = f".preflight-{uuid.uuid4().hex}"
    payload = b"xdmod-usage preflight\n"
    store.put_bytes(rel, payload)
    try:
        if store.read_bytes(rel) != payload:
            return Check(f"staging {label}", False, "read back different bytes")
    finally:
        store.remove_tree(rel)
    return Check(f"staging {label}", True, "writable and readable")


def check_slurm_source(resource: Resource, run: Callable[[list[str], io.BytesIO], int]) -> Check:
    """The cluster answers sacctmgr through the configured transport and knows the cluster name."""
    from .sacct import verify_cluster_known

    source = resource.slurm_source()
    verify_cluster_known(run, source.cluster, source.sacctmgr_path)
    where = f"over SSH ({source.ssh_conn_id})" if source.ssh_conn_id else "locally"
    return Check(f"{resource.name} source", True, f"slurmdbd knows cluster {source.cluster!r} ({where})")


def check_openstack_source(resource: Resource, api: Any) -> Check:
    """Keystone takes the account, Nova speaks the microversions we read, and the account sees every
    project's servers and the hypervisors (the admin role)."""
    from .openstack_api import COMPUTE_MICROVERSION

    newest = api.get("compute", "/")["version"]["version"]
    if tuple(map(int, newest.split("."))) < tuple(map(int, COMPUTE_MICROVERSION.split("."))):
        needed = f"reading usage needs {COMPUTE_MICROVERSION} (Train)"
        return Check(f"{resource.name} source", False, f"Nova speaks up to microversion {newest}; {needed}")
    hypervisors = api.hypervisors()
    api.get("compute", "/servers/detail", {"all_tenants": "True", "limit": 1}, COMPUTE_MICROVERSION)
    return Check(f"{resource.name} source", True,
                 f"Keystone took the account; Nova speaks up to {newest}; admin: {len(hypervisors)} hypervisor(s) "
                 "and every project's servers readable")  # fmt: skip


def judge_resources_json(text: str, codes: dict[str, str]) -> list[Check]:
    """Each resource's XDMoD code must be in XDMoD's resources.json ("No config found" otherwise)."""
    known = {entry.get("resource") for entry in json.loads(text)}
    return [
        Check(
            f"{name} xdmod resource",
            code in known,
            f"{code!r} is in resources.json"
            if code in known
            else f"{code!r} is not in resources.json "
            f"(XDMoD would fail with \"No config found for '{code}'\"); known: {', '.join(sorted(map(str, known)))}",
        )
        for name, code in codes.items()
    ]


def judge_pool(pool: dict[str, Any] | None, name: str) -> Check:
    if pool is None:
        return Check(f"pool {name}", False, f"missing: airflow pools set {name} 1 'XDMoD commands' --include-deferred")
    slots, deferred = int(pool.get("slots", 0)), str(pool.get("include_deferred")).lower() == "true"
    problems = ([] if slots == 1 else [f"has {slots} slots, needs 1"]) + (
        [] if deferred else ["does not count deferred tasks (--include-deferred)"]
    )
    return Check(f"pool {name}", not problems, "; ".join(problems) or "1 slot, counts deferred tasks")


def read_pool(name: str) -> dict[str, Any] | None:
    """The pool as the airflow CLI reports it (the command runs beside the metadata database)."""
    argv = [sys.executable, "-m", "airflow", "pools", "get", name, "--output", "json"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    rows = json.loads(proc.stdout or "[]")
    rows = rows if isinstance(rows, list) else [rows]
    return {key.lower().replace(" ", "_"): value for key, value in rows[0].items()} if rows else None


def run_checks(site: SiteConfig, *, with_pool: bool) -> list[Check]:
    """Every check of the site, Airflow side (connections through hooks, staging through ObjectStoragePath)."""
    from .airflow_tasks import openstack_api, slurm_runner, staging_store

    checks: list[Check] = []
    for conn_id in sorted({site.xdmod_for(r).db_conn_id for r in site.resources}):
        checks += _guard(f"connection {conn_id}", lambda c=conn_id: check_xdmod_db(c))
    for root in sorted({site.staging_for(r).root for r in site.resources}):
        resource = next(r for r in site.resources if site.staging_for(r).root == root)
        checks += _guard(f"staging {root}", lambda r=resource, u=root: check_staging(staging_store(site, r), u))
    for resource in site.resources:
        if resource.kind == "slurm":
            checks += _guard(f"{resource.name} source", lambda r=resource: _with_runner(r, slurm_runner))
        elif resource.kind == "openstack":
            source = resource.openstack_source()
            checks += _guard(f"{resource.name} source",
                             lambda r=resource, s=source: check_openstack_source(r, openstack_api(s)))  # fmt: skip
    checks += _guard("xdmod resources.json", lambda: check_resources_json(site))
    if site.backup is not None:
        checks += check_backup(site)
    if site.hierarchy is not None:
        checks += check_hierarchy(site)
    if with_pool:
        for pool in sorted({site.xdmod_for(r).pool for r in site.resources}):
            checks += _guard(f"pool {pool}", lambda p=pool: judge_pool(read_pool(p), p))
    return checks


def check_history_db(conn: Any, conn_id: str) -> Check:
    """The hierarchy history's database: the tables can be created and written (a row written and rolled back)."""
    from .hierarchy_history import apply_schema

    cursor = conn.cursor()
    cursor.execute("SELECT DATABASE()")
    (database,) = cursor.fetchone()
    if not database:
        return Check(f"hierarchy history {conn_id}", False, "the connection names no database (set its schema)")
    apply_schema(conn)
    cursor.execute("START TRANSACTION")
    cursor.execute("INSERT INTO hierarchy_history (csv_file, entry_key, fields, source, valid_from) "
                   "VALUES ('preflight', 'probe', '[]', 'preflight', UTC_TIMESTAMP(6))")  # fmt: skip
    cursor.execute("ROLLBACK")
    cursor.execute("SELECT COUNT(*) FROM hierarchy_history WHERE valid_to IS NULL")
    return Check(f"hierarchy history {conn_id}", True, f"database {database}: tables ready and writable, "
                 f"{cursor.fetchone()[0]} current rows")  # fmt: skip


def check_coldfront(api: Any, label: str) -> Check:
    """The token is accepted and its account may read user names (staff): an ordinary account is answered
    an empty project list, so a missing staff flag would look like an empty ColdFront."""
    answer = api.fetch_all()
    return Check(label, True, f"{len(answer['projects'])} projects, {len(answer['allocations'])} allocations, "
                 f"{len(answer['users'])} users readable")  # fmt: skip


def check_mapping_file(path: str, label: str) -> Check:
    from .hierarchy_sources import read_mapping_file

    result = read_mapping_file(path)
    return Check(label, True, f"{len(result.attributions)} attributions, {len(result.skipped)} skipped")


def check_hierarchy(site: SiteConfig) -> list[Check]:
    from .config import ColdFrontHierarchySource, FileHierarchySource
    from .hierarchy_tasks import coldfront_api, history_connection

    assert site.hierarchy is not None
    conn_id = site.hierarchy.db_conn_id

    def history() -> Check:
        with history_connection(site) as conn:
            return check_history_db(conn, conn_id)

    checks = _guard(f"hierarchy history {conn_id}", history)
    for source in site.hierarchy.sources:
        if isinstance(source, ColdFrontHierarchySource):
            label = f"hierarchy coldfront {source.conn_id}"
            checks += _guard(label, lambda s=source, n=label: check_coldfront(coldfront_api(s), n))
        elif isinstance(source, FileHierarchySource):
            label = f"hierarchy file {source.path}"
            checks += _guard(label, lambda s=source, n=label: check_mapping_file(s.path, n))
    return checks


BACKUP_PRIVILEGES = ("SELECT", "LOCK TABLES", "SHOW VIEW", "TRIGGER", "EVENT", "PROCESS")


def judge_backup_grants(grants: list[str]) -> Check:
    """The dump needs these global privileges (PROCESS: to see mysqldump in the process list)."""
    text = " ".join(grants).upper()
    if "GRANT ALL PRIVILEGES ON *.*" in text:
        return Check("backup source privileges", True, "ALL PRIVILEGES on *.*")
    global_grants = " ".join(grant.upper() for grant in grants if " ON *.* " in grant.upper())
    missing = [name for name in BACKUP_PRIVILEGES if name not in global_grants]
    detail = f"missing on *.*: {', '.join(missing)}" if missing else "global " + ", ".join(BACKUP_PRIVILEGES)
    return Check("backup source privileges", not missing, detail)


def judge_backup_scratch(source_version: str, scratch_version: str, event_scheduler: str) -> list[Check]:
    """CHECKSUM TABLE is comparable only between the same major versions; events restored for the check
    must not run there."""
    same = source_version.split(".")[:2] == scratch_version.split(".")[:2]
    version = f"{scratch_version} (source {source_version})"
    if not same:
        version += ": CHECKSUM TABLE values differ between major versions"
    off = event_scheduler.upper() in ("OFF", "DISABLED")
    scheduler = event_scheduler if off else f"{event_scheduler}: restored events would run in xuv_*; set it OFF"
    return [Check("backup scratch version", same, version), Check("backup scratch event_scheduler", off, scheduler)]


def check_backup(site: SiteConfig) -> list[Check]:
    """Clients on the worker, the backup store, the source's privileges and databases, the scratch server, the key."""
    import shutil

    from .backup_dump import BackupError, select_databases
    from .backup_tasks import backup_store, dump_options, encryption_key, endpoint, source_conn_id

    backup = site.backup
    assert backup is not None
    checks = [Check(f"backup client {name}", shutil.which(name) is not None, shutil.which(name) or "not found on PATH")
              for name in (backup.mysqldump_path, backup.mysql_path)]  # fmt: skip
    checks += _guard(
        f"backup store {backup.store.root}", lambda: check_staging(backup_store(backup), backup.store.root)
    )
    versions: dict[str, str] = {}

    def source() -> list[Check]:
        conn = endpoint(source_conn_id(site)).connect()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT VERSION()")
            versions["source"] = cursor.fetchone()[0]
            cursor.execute("SHOW GRANTS FOR CURRENT_USER()")
            grants = judge_backup_grants([row[0] for row in cursor.fetchall()])
            try:
                chosen, absent = select_databases(cursor, dump_options(site))
                found = Check("backup databases", True, f"{len(chosen)} to dump; optional absent: {absent or 'none'}")
            except BackupError as exc:
                found = Check("backup databases", False, str(exc))
        finally:
            conn.close()
        return [grants, found]

    def scratch() -> list[Check]:
        conn = endpoint(backup.verify_conn_id).connect()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT VERSION(), @@GLOBAL.event_scheduler")
            version, scheduler = cursor.fetchone()
        finally:
            conn.close()
        return judge_backup_scratch(versions.get("source", version), version, str(scheduler))

    checks += _guard(f"backup source {source_conn_id(site)}", source)
    checks += _guard(f"backup scratch {backup.verify_conn_id}", scratch)
    if backup.encryption_key_conn_id:
        checks += _guard("backup key", lambda: Check("backup key", True, f"key id {_key_id(encryption_key(backup))}"))
    return checks


def _key_id(key: bytes | None) -> str:
    from .backup_crypto import key_id

    return key_id(key) if key else "-"


def check_resources_json(site: SiteConfig) -> list[Check]:
    """Read XDMoD's resources.json through each resource's runner and look for its resources' codes.

    SSH runner: ``cat`` on the XDMoD host. Kubernetes runner: a check pod from the same factory
    as the XDMoD steps (see ``check_from_pod``). Dry-run runner: nothing to read.
    """
    by_host: dict[tuple[str, str], dict[str, str]] = {}
    by_pod: dict[str, list[Resource]] = {}
    checks: list[Check] = []
    for resource in site.resources:
        xdmod = site.xdmod_for(resource)
        if xdmod.runner == "ssh" and xdmod.ssh is not None:
            by_host.setdefault((xdmod.ssh.conn_id, xdmod.ssh.resources_json), {})[resource.name] = (
                resource.xdmod_resource
            )
        elif xdmod.runner == "kubernetes" and xdmod.kubernetes is not None:
            key = json.dumps([xdmod.kubernetes.model_dump(mode="json"), site.staging_for(resource).root])
            by_pod.setdefault(key, []).append(resource)
        else:
            checks.append(Check(f"{resource.name} xdmod resource", None,
                                f"not checked with runner {xdmod.runner!r}: needs the XDMoD host"))  # fmt: skip
    if by_host:
        from airflow.providers.ssh.hooks.ssh import SSHHook

        from .sacct import run_ssh

        for (conn_id, path), codes in sorted(by_host.items()):
            out = io.BytesIO()
            with SSHHook(ssh_conn_id=conn_id).get_conn() as client:
                run_ssh(client, ["cat", "--", path], {}, out, 60)
            checks += judge_resources_json(out.getvalue().decode("utf-8"), codes)
    for group in by_pod.values():
        checks += _guard(f"pod in namespace {site.xdmod_for(group[0]).kubernetes.namespace}",
                         lambda g=group: check_from_pod(site, g))  # fmt: skip
    return checks


PROBE_PAYLOAD = b"xdmod-usage preflight probe\n"


def preflight_pod(site: SiteConfig, resource: Resource, probe: XdmodInput) -> Any:
    """The check pod: the XDMoD steps' own pod (image, ConfigMap, Secrets, service account, security
    context) whose init container fetches a probe from staging with the pod's credentials and checks
    its sha256, and whose XDMoD container prints /etc/xdmod/resources.json."""
    from .kubernetes_runner import ETC_DIR, xdmod_pod_operator

    xdmod = site.xdmod_for(resource)
    command = XdmodCommand("preflight", ("cat", "--", f"{ETC_DIR}/resources.json"), (probe,))
    return xdmod_pod_operator(
        task_id="xdmod_preflight_pod", resource="preflight", command=command, kube=xdmod.kubernetes,
        input_dir=xdmod.input_dir, staging_root=site.staging_for(resource).root,
        execution_timeout=dt.timedelta(minutes=5),
    )  # fmt: skip


def check_from_pod(site: SiteConfig, resources: list[Resource]) -> list[Check]:
    """Staging readable from a pod, the pod's ConfigMap/Secrets/image usable, the codes in resources.json."""
    from .airflow_tasks import staging_store
    from .kubernetes_runner import run_pod_to_completion

    first = resources[0]
    store = staging_store(site, first)
    rel = f".preflight-{uuid.uuid4().hex}/probe"
    store.put_bytes(rel, PROBE_PAYLOAD)
    try:
        probe = XdmodInput("preflight-probe", store.url(rel), hashlib.sha256(PROBE_PAYLOAD).hexdigest())
        operator = preflight_pod(site, first, probe)
        kube = site.xdmod_for(first).kubernetes
        text = run_pod_to_completion(operator, kube.startup_timeout.total_seconds() + 300)
    finally:
        store.remove_tree(rel.split("/")[0])
    used = f"image {kube.image} ran with ConfigMap {kube.config_map} and Secret {kube.db_secret}"
    return [
        Check(f"pod in namespace {kube.namespace}", True, used),
        Check(f"staging {site.staging_for(first).root} from pod", True, "probe fetched and its sha256 verified"),
        *judge_resources_json(text, {r.name: r.xdmod_resource for r in resources}),
    ]


def _with_runner(resource: Resource, slurm_runner: Any) -> Check:
    with slurm_runner(resource) as run:
        return check_slurm_source(resource, run)


def render(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=10)
    label = {True: "ok  ", False: "FAIL", None: "skip"}
    lines = [f"{label[c.ok]}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = sum(c.ok is False for c in checks)
    skipped = sum(c.ok is None for c in checks)
    lines.append(f"{len(checks) - failed - skipped} ok, {failed} failed, {skipped} not checked")
    return "\n".join(lines)


def summary_line(checks: list[Check]) -> str:
    failed = [c for c in checks if c.ok is False]
    return f"preflight: {len(failed)} check(s) failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a site's setup before go-live.")
    parser.add_argument("--config", help="site config (default: $XDMOD_USAGE_CONFIG)")
    args = parser.parse_args(argv)
    checks = run_checks(load_for_command(args.config), with_pool=True)
    print(render(checks))
    return 1 if any(c.ok is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
