"""docker-compose.yaml is a complete local deployment: checked without a Docker engine.

No Docker engine runs here, so nothing is started from the file. What is checked: the file as
PyYAML reads it (anchors and merge keys resolved, ${VAR:-default} put in as Compose does, with an
empty environment), Debian's docker-compose v1 accepts it and resolves it the same way, its site
config loads with the package's own loader and parses into DAGs, every connection that config
names is defined and points at the services here, and the scripts the services run at start-up
(the xdmod-db init script, the bucket creation, the admin password step) do what they claim, run
here with stand-ins for the image's commands, the MariaDB script on a real MariaDB.

Each rule is a function returning problems, so that a broken copy of the file can be shown to
fail (the mutation tests) and the real file shown to pass.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from conftest import ROOT, STATE, free_port, run_script
from xdmod_usage.config import ConfigError, SiteConfig, load_site_config

COMPOSE = ROOT / "docker-compose.yaml"
DOCKER_COMPOSE = "/usr/bin/docker-compose"
IMAGE = "apache/airflow:3.3.2-python3.11"
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
LONG_RUNNING = AIRFLOW_SERVICES[1:]
DB, S3, S3_INIT = "xdmod-db", "s3", "s3-init"
REQUIRED_SERVICES = ("postgres", *AIRFLOW_SERVICES, DB, S3, S3_INIT)
HEALTHCHECKED = ("postgres", DB, S3)
# Decision (docs/deploy-compose.md): every published port is bound to 127.0.0.1; only the
# api-server's bind address may be a variable (AIRFLOW_API_BIND, default 127.0.0.1).
LOOPBACK = "127.0.0.1"
VARIABLE_BIND_ALLOWED = {"airflow-apiserver"}
# Environment variables naming a path the Airflow components read or write.
PATH_VARIABLES = (
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW_CONFIG",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    "XDMOD_USAGE_CONFIG",
    "XDMOD_USAGE_SQL_DIR",
)
# ... and where those that come from the repo must land on the host.
REPO_PATHS = {
    "AIRFLOW__CORE__DAGS_FOLDER": ROOT / "dags",
    "AIRFLOW__CORE__PLUGINS_FOLDER": ROOT / "plugins",
    "XDMOD_USAGE_CONFIG": ROOT / "config" / "site-config.yaml",
    "XDMOD_USAGE_SQL_DIR": ROOT / "include" / "sql",
}

# --- reading the file as Compose does -------------------------------------------------------------

# Compose's interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[_A-Za-z][_A-Za-z0-9]*)(?:(?P<sep>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[_A-Za-z][_A-Za-z0-9]*))"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def put_in(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, sep, arg = match["braced"] or match["named"], match["sep"], match["arg"]
        if sep == ":-":
            return env.get(name) or arg
        if sep == "-":
            return env.get(name, arg)
        if sep in (":?", "?") and not (env.get(name) if sep == ":?" else name in env):
            raise ValueError(f"required variable {name} is not set: {arg}")
        return env.get(name, "")

    return _VARIABLE.sub(put_in, value)


def load_raw(path: Path = COMPOSE) -> dict:
    """The file with anchors and merge keys resolved (PyYAML does both), variables not yet put in.

    The JSON round trip gives each service its own copies: a merge key shares the anchor's objects.
    """
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8"))))


def services(raw: dict, env: dict[str, str] | None = None) -> dict[str, dict]:
    return interpolate(raw.get("services") or {}, env or {})


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_text(service: dict) -> str:
    command = service.get("command") or ""
    return command if isinstance(command, str) else "\n".join(str(part) for part in command)


def mounts(service: dict) -> list[dict]:
    """Volumes as {source, target, bind, read_only}; short syntax src:dst[:mode] or long syntax."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
            read_only = bool(volume.get("read_only"))
            bind = volume.get("type") == "bind"
        else:
            parts = volume.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            bind = source.startswith((".", "/", "~"))
        out.append({"source": source, "target": target.rstrip("/") or "/", "bind": bind, "read_only": read_only})
    return out


def host_path(source: str) -> Path:
    path = Path(os.path.expanduser(source))
    return path if path.is_absolute() else (ROOT / path).resolve()


def mount_for(service: dict, container_path: str) -> tuple[dict, str] | None:
    """The mount holding container_path (the deepest one) and the path's part below it."""
    path = PurePosixPath(container_path)
    best = None
    for mount in mounts(service):
        target = PurePosixPath(mount["target"])
        if (path == target or target in path.parents) and (best is None or len(target.parts) > len(best[0].parts)):
            best = (target, mount)
    if best is None:
        return None
    return best[1], str(path.relative_to(best[0]))


def on_host(service: dict, container_path: str) -> Path | None:
    found = mount_for(service, container_path)
    if found is None or not found[0]["bind"]:
        return None
    return host_path(found[0]["source"]) / found[1]


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port; host ip '' when none is given."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"])))
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))  # container port only: a random host port on every address
    return out


def site_config(raw: dict) -> SiteConfig:
    """The site config the compose file gives the scheduler, loaded with the package's loader."""
    scheduler = services(raw)["airflow-scheduler"]
    path = on_host(scheduler, environment(scheduler)["XDMOD_USAGE_CONFIG"])
    if path is None:
        raise ConfigError("XDMOD_USAGE_CONFIG is not on a bind mount of the repo")
    return load_site_config(path)


# --- the rules ---------------------------------------------------------------------------------------


def service_problems(raw: dict) -> list[str]:
    svcs = services(raw)
    problems = [f"service {name} is missing" for name in REQUIRED_SERVICES if name not in svcs]
    for name in AIRFLOW_SERVICES:
        if name in svcs and svcs[name].get("image") != IMAGE:
            problems.append(f"{name}: image {svcs[name].get('image')!r}, expected {IMAGE}")
    return problems


def mount_problems(raw: dict) -> list[str]:
    svcs = services(raw)
    problems = []
    for name, service in svcs.items():
        for mount in mounts(service):
            if mount["bind"] and not host_path(mount["source"]).exists():
                problems.append(f"{name}: host path {mount['source']} (for {mount['target']}) does not exist")
    for name in AIRFLOW_SERVICES:
        service = svcs.get(name)
        if service is None:
            continue
        env = environment(service)
        for variable in PATH_VARIABLES:
            if variable not in env:
                problems.append(f"{name}: {variable} is not set")
                continue
            if mount_for(service, env[variable]) is None:
                problems.append(f"{name}: {variable}={env[variable]} is not on any mount")
            elif variable in REPO_PATHS:
                found = on_host(service, env[variable])
                if found is None or found.resolve() != REPO_PATHS[variable].resolve():
                    problems.append(f"{name}: {variable}={env[variable]} is {found} on the host, "
                                    f"expected {REPO_PATHS[variable]}")  # fmt: skip
                elif not found.exists():
                    problems.append(f"{name}: {variable}: {found} does not exist")
        for needed in ("/opt/airflow/include",):
            if mount_for(service, needed) is None:
                problems.append(f"{name}: {needed} is not mounted")
        for variable in ("AIRFLOW__LOGGING__BASE_LOG_FOLDER", "AIRFLOW_CONFIG"):
            # Written by the services and shared between them: a named volume, not the repo.
            found = mount_for(service, env.get(variable, "/nonexistent"))
            if found is not None and (found[0]["bind"] or found[0]["read_only"]):
                problems.append(f"{name}: {variable} must be on a writable named volume")
    return problems


def unique(models: list) -> list:
    """Pydantic models without repeats (by value; some hold dicts, so they are not hashable)."""
    seen: dict[str, Any] = {}
    for model in models:
        seen.setdefault(model.model_dump_json(), model)
    return list(seen.values())


def staging_problems(raw: dict, site: SiteConfig) -> list[str]:
    svcs = services(raw)
    problems = []
    for staging in unique([site.staging, *(site.staging_for(resource) for resource in site.resources)]):
        parts = urlsplit(staging.root)
        for name in LONG_RUNNING:
            service = svcs.get(name, {})
            if staging.spool_dir and mount_for(service, staging.spool_dir) is None:
                problems.append(f"{name}: staging.spool_dir {staging.spool_dir} is not on a mount")
            if parts.scheme == "file":
                found = mount_for(service, parts.path)
                if found is None or found[0]["read_only"]:
                    problems.append(f"{name}: staging root {staging.root} is not on a writable mount")
        if parts.scheme == "s3":
            bucket = environment(svcs.get(S3_INIT, {})).get("XDMOD_S3_BUCKET")
            if parts.netloc != bucket:
                problems.append(f"staging root {staging.root}: bucket {parts.netloc!r} is not the one "
                                f"{S3_INIT} creates ({bucket!r})")  # fmt: skip
            if not any(not m["bind"] and m["target"] == "/data" for m in mounts(svcs.get(S3, {}))):
                problems.append(f"{S3}: its data (/data) is not on a named volume")
    return problems


def config_path_problems(raw: dict, site: SiteConfig) -> list[str]:
    """Files the site config names inside the containers exist on the host behind the mounts."""
    scheduler = services(raw)["airflow-scheduler"]
    problems = []
    for source in site.hierarchy.sources if site.hierarchy else []:
        if source.type == "file":
            found = on_host(scheduler, source.path)
            if found is None or not found.is_file():
                problems.append(f"hierarchy file source {source.path} is not a repo file mounted in the scheduler")
    return problems


def pool_problems(raw: dict, site: SiteConfig) -> list[str]:
    init = command_text(services(raw).get("airflow-init", {}))
    pools = {site.xdmod_for(resource).pool for resource in site.resources} | {site.xdmod.pool}
    problems = []
    for pool in pools:
        match = re.search(rf"airflow pools set {re.escape(pool)} (\d+) .*", init)
        if match is None:
            problems.append(f"airflow-init does not create the pool {pool}")
        elif match[1] != "1" or "--include-deferred" not in shlex.split(match[0]):
            problems.append(f"airflow-init: pool {pool} must have 1 slot and --include-deferred: {match[0]}")
    return problems


def expected_connections(site: SiteConfig) -> dict[str, str]:
    """conn id -> Airflow connection type, for every connection id the site config names."""
    want: dict[str, str] = {}
    for staging in unique([site.staging, *(site.staging_for(r) for r in site.resources)]):
        if staging.conn_id:
            want[staging.conn_id] = "aws"
    for xdmod in unique([site.xdmod, *(site.xdmod_for(r) for r in site.resources)]):
        want[xdmod.db_conn_id] = "mysql"
        if xdmod.ssh:
            want[xdmod.ssh.conn_id] = "ssh"
        if xdmod.kubernetes and xdmod.kubernetes.kubernetes_conn_id:
            want[xdmod.kubernetes.kubernetes_conn_id] = "kubernetes"
    for resource in site.resources:
        if resource.kind == "slurm" and resource.slurm_source().ssh_conn_id:
            want[resource.slurm_source().ssh_conn_id] = "ssh"
        if resource.kind == "openshift":
            want[resource.openshift_source().prometheus_conn_id] = "http"
        if resource.kind == "openstack" and resource.openstack_source().conn_id:
            want[resource.openstack_source().conn_id] = "generic"
    routes = [*site.alerts, *(route for r in site.resources for route in site.alerts_for(r))]
    for route in routes:
        if route.conn_id:
            want[route.conn_id] = {"email": "smtp", "slack": "slackwebhook", "webhook": "http"}[route.type]
    if site.hierarchy:
        want[site.hierarchy.db_conn_id] = "mysql"
        for source in site.hierarchy.sources:
            if source.type == "coldfront":
                want[source.conn_id] = "http"
    if site.backup:
        want[site.backup.db_conn_id or site.xdmod.db_conn_id] = "mysql"
        want[site.backup.verify_conn_id] = "mysql"
        if site.backup.encryption_key_conn_id:
            want[site.backup.encryption_key_conn_id] = "generic"
        if site.backup.store.conn_id:
            want[site.backup.store.conn_id] = "aws"
    return want


def named_connection_ids(value: Any) -> set[str]:
    """Every *conn_id value anywhere in the config: catches a kind expected_connections does not know."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("conn_id") and isinstance(item, str):
                found.add(item)
            found |= named_connection_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= named_connection_ids(item)
    return found


def connection_problems(raw: dict, site: SiteConfig) -> list[str]:
    svcs = services(raw)
    want = expected_connections(site)
    problems = [f"connection {conn_id} named in the config has no expected type in this test"
                for conn_id in sorted(named_connection_ids(site.model_dump(mode="json")) - set(want))]  # fmt: skip
    db_env, s3_env, init_env = (environment(svcs.get(name, {})) for name in (DB, S3, S3_INIT))
    for conn_id, conn_type in sorted(want.items()):
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        for name in AIRFLOW_SERVICES:
            if name in svcs and variable not in environment(svcs[name]):
                problems.append(f"{name}: connection {conn_id} is not defined ({variable})")
        value = environment(svcs.get("airflow-scheduler", {})).get(variable)
        if value is None:
            continue
        try:
            conn = json.loads(value)
        except json.JSONDecodeError as exc:
            problems.append(f"{variable} is not JSON: {exc}")
            continue
        if conn.get("conn_type") != conn_type:
            problems.append(f"{conn_id}: conn_type {conn.get('conn_type')!r}, expected {conn_type!r}")
        if conn_type == "mysql" and conn.get("host") == DB:
            if (conn.get("login"), conn.get("password")) != (
                db_env.get("MARIADB_USER"),
                db_env.get("MARIADB_PASSWORD"),
            ):
                problems.append(f"{conn_id}: login/password are not {DB}'s MARIADB_USER/MARIADB_PASSWORD")
            if conn.get("port", 3306) != 3306:
                problems.append(f"{conn_id}: port {conn.get('port')} is not MariaDB's 3306 inside the network")
            if conn_id == (site.hierarchy.db_conn_id if site.hierarchy else None) and conn.get("schema") != db_env.get(
                "MARIADB_DATABASE"
            ):
                problems.append(f"{conn_id}: schema {conn.get('schema')!r} is not {DB}'s MARIADB_DATABASE")
        elif conn_type == "mysql":
            problems.append(f"{conn_id}: host {conn.get('host')!r} is not the {DB} service")
        if conn_type == "aws":
            endpoint = (conn.get("extra") or {}).get("endpoint_url", "")
            parts = urlsplit(endpoint)
            s3_command = command_text(svcs.get(S3, {}))
            if parts.hostname != S3 or f":{parts.port}" not in s3_command:
                problems.append(f"{conn_id}: endpoint_url {endpoint!r} is not the {S3} service's API port")
            if (conn.get("login"), conn.get("password")) != (
                s3_env.get("MINIO_ROOT_USER"),
                s3_env.get("MINIO_ROOT_PASSWORD"),
            ):
                problems.append(f"{conn_id}: keys are not {S3}'s MINIO_ROOT_USER/MINIO_ROOT_PASSWORD")
            if init_env.get("AWS_ENDPOINT_URL") != endpoint or (
                init_env.get("AWS_ACCESS_KEY_ID"),
                init_env.get("AWS_SECRET_ACCESS_KEY"),
            ) != (conn.get("login"), conn.get("password")):
                problems.append(f"{S3_INIT}: endpoint or keys differ from connection {conn_id}")
    return problems


def xdmod_db_problems(raw: dict) -> list[str]:
    """The stand-in runs as XDMoD's server must (the preflight refuses another sql_mode)."""
    service = services(raw).get(DB, {})
    command = service.get("command") or []
    args = command if isinstance(command, list) else shlex.split(command)
    problems = []
    if "--sql-mode=" not in args:
        problems.append(f"{DB}: mariadbd does not run with an empty sql_mode (--sql-mode=)")
    if not any(m["target"] == "/var/lib/mysql" and not m["bind"] for m in mounts(service)):
        problems.append(f"{DB}: its data (/var/lib/mysql) is not on a named volume")
    return problems


def healthcheck_problems(raw: dict) -> list[str]:
    svcs = services(raw)
    problems = []
    for name in HEALTHCHECKED:
        check = (svcs.get(name) or {}).get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or test in (["NONE"], "NONE"):
            problems.append(f"{name} has no healthcheck")
    return problems


def depends_problems(raw: dict) -> list[str]:
    svcs = services(raw)
    problems = []

    def require(name: str, dependency: str, condition: str) -> None:
        depends = (svcs.get(name) or {}).get("depends_on") or {}
        got = depends.get(dependency, {}).get("condition") if isinstance(depends, dict) else None
        if got != condition:
            problems.append(f"{name} must depend on {dependency} with {condition} (has {got})")

    for name in AIRFLOW_SERVICES:
        require(name, "postgres", "service_healthy")
        require(name, DB, "service_healthy")
        require(name, S3_INIT, "service_completed_successfully")
    for name in LONG_RUNNING:
        require(name, "airflow-init", "service_completed_successfully")
    require(S3_INIT, S3, "service_healthy")
    for name, service in svcs.items():
        depends = service.get("depends_on") or {}
        for dependency, spec in depends.items() if isinstance(depends, dict) else []:
            if spec.get("condition") == "service_healthy" and not (svcs.get(dependency) or {}).get("healthcheck"):
                problems.append(f"{name} waits for {dependency} to be healthy, which has no healthcheck")
    return problems


def port_problems(raw: dict) -> list[str]:
    problems = []
    raw_services = raw.get("services") or {}
    for name, service in services(raw).items():
        raw_ports = raw_services[name].get("ports") or []
        for (host_ip, _host_port, target), raw_port in zip(published_ports(service), raw_ports, strict=True):
            if host_ip != LOOPBACK:
                problems.append(f"{name}: port {target} is published on {host_ip or 'every address'}, not {LOOPBACK}")
            elif name not in VARIABLE_BIND_ALLOWED and not str(raw_port).startswith(f"{LOOPBACK}:"):
                problems.append(f"{name}: port {raw_port!r}: only the api-server's bind address may be a variable")
    return problems


def auth_and_lineage_problems(raw: dict) -> list[str]:
    svcs = services(raw)
    problems = []
    init = command_text(svcs.get("airflow-init", {}))
    for name in AIRFLOW_SERVICES:
        service = svcs.get(name, {})
        env = environment(service)
        if not env.get("AIRFLOW__CORE__AUTH_MANAGER", "").endswith(".SimpleAuthManager"):
            problems.append(f"{name}: auth manager is not SimpleAuthManager")
        users = [user.split(":") for user in env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "").split(",")]
        if not any(len(user) == 2 and user[1] == "admin" for user in users):
            problems.append(f"{name}: SIMPLE_AUTH_MANAGER_USERS names no admin user")
        try:
            transport = json.loads(env.get("AIRFLOW__OPENLINEAGE__TRANSPORT", ""))
        except json.JSONDecodeError:
            problems.append(f"{name}: AIRFLOW__OPENLINEAGE__TRANSPORT is not JSON")
            continue
        if not isinstance(transport, dict) or transport.get("type") not in ("console", "file", "http"):
            problems.append(f"{name}: OpenLineage transport {transport!r} is not console, file or http")
        elif transport["type"] == "file":
            path = PurePosixPath(transport.get("log_file_path", ""))
            logs = env.get("AIRFLOW__LOGGING__BASE_LOG_FOLDER", "/opt/airflow/logs")
            if PurePosixPath(logs) not in path.parents:
                problems.append(f"{name}: OpenLineage file {path} is not in the logs volume {logs}")
            if not re.search(rf"mkdir -p [^\n]*{re.escape(str(path.parent))}(\s|$)", init):
                problems.append(f"airflow-init does not create {path.parent} (the file transport does not)")
    return problems


_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN")
_NOT_SECRET = {"MARIADB_RANDOM_ROOT_PASSWORD", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"}


def is_secret(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and key not in _NOT_SECRET


def secret_problems(raw: dict) -> list[str]:
    """Passwords come from ${VARIABLES} (local-dev defaults) and never appear in a command line."""
    problems = []
    raw_services = raw.get("services") or {}
    for name, service in raw_services.items():
        for key, value in environment(service).items():
            if is_secret(key) and value and "${" not in value:
                problems.append(f"{name}: {key} is a literal; use ${{VARIABLE:-local-dev default}}")
            if key.startswith("AIRFLOW_CONN_"):
                password = re.search(r'"password":\s*"([^"]*)"', value)
                if password and "${" not in password[1]:
                    problems.append(f"{name}: {key} has a literal password")
            if key.endswith("SQL_ALCHEMY_CONN") and re.search(r"://[^:/]+:(?!\$\{)[^@]+@", value):
                problems.append(f"{name}: {key} has a literal password")
    resolved = services(raw)
    secrets = {
        value
        for service in resolved.values()
        for key, value in environment(service).items()
        if is_secret(key) and len(value) >= 6
    }
    for name, service in resolved.items():
        shown = command_text(service) + str(service.get("entrypoint", "")) + json.dumps(service.get("healthcheck"))
        problems += [f"{name}: a password is on its command line" for secret in secrets if secret in shown]
    return problems


def all_problems(raw: dict) -> list[str]:
    problems = service_problems(raw)
    if problems:
        return problems
    problems += mount_problems(raw) + healthcheck_problems(raw) + depends_problems(raw) + port_problems(raw)
    problems += auth_and_lineage_problems(raw) + secret_problems(raw) + xdmod_db_problems(raw)
    try:
        site = site_config(raw)
    except ConfigError as exc:
        return [*problems, f"site config: {exc}"]
    problems += staging_problems(raw, site) + config_path_problems(raw, site)
    problems += pool_problems(raw, site) + connection_problems(raw, site)
    return problems


# --- the real file passes -----------------------------------------------------------------------------


def test_compose_file_passes_every_rule():
    assert all_problems(load_raw()) == []


def test_site_config_is_the_mounted_one_and_loads_with_the_package_loader():
    raw = load_raw()
    site = site_config(raw)
    assert [r.dag_id for r in site.resources] == [
        "usage_slurm_hpc1",
        "usage_openshift_ocp-prod",
        "usage_openstack_cloud",
    ]
    assert site.staging.root.startswith("s3://") and site.staging.conn_id
    assert site.xdmod.runner == "dry_run"  # nothing is sent to an XDMoD until a runner is configured
    # Every connection id it names, by type, all defined in the file.
    assert expected_connections(site) == {
        "xdmod_staging_s3": "aws",
        "xdmod_db": "mysql",
        "xdmod_usage_history": "mysql",
        "slurm_login": "ssh",
        "prometheus_ocp": "http",
        "openstack_cloud": "generic",
    }
    assert connection_problems(raw, site) == []


def test_docker_compose_v1_accepts_the_file_and_resolves_it_as_this_test_does(tmp_path):
    env_file = tmp_path / "empty.env"  # no .env an operator left beside the file is read
    env_file.write_text("")
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    base = [DOCKER_COMPOSE, "-f", str(COMPOSE), "--env-file", str(env_file), "config"]
    quiet = subprocess.run([*base, "-q"], env=clean, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout == ""  # no warning about unset variables either
    full = subprocess.run(base, env=clean, capture_output=True, text=True, timeout=120, check=True)
    # Its output is a compose file again ($ written as $$): read it the same way.
    theirs = interpolate(yaml.safe_load(full.stdout)["services"], {})
    ours = services(load_raw())
    assert set(theirs) == set(ours)
    for name, service in ours.items():
        assert environment(theirs[name]) == environment(service), name
        assert command_text(theirs[name]) == command_text(service), name
        assert sorted(m["target"] for m in mounts(theirs[name])) == sorted(m["target"] for m in mounts(service))
        assert sorted(published_ports(theirs[name])) == sorted(published_ports(service)), name
        assert theirs[name].get("depends_on") == service.get("depends_on"), name
    # The same with variables set: both read them alike (a password with a space survives too).
    env = {
        "XDMOD_DB_PASSWORD": "another pw",
        "AIRFLOW_API_BIND": "0.0.0.0",  # noqa: S104 - a value Compose reads, nothing binds here
        "AIRFLOW_UID": "1234",
    }
    set_vars = subprocess.run(base, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=True)
    theirs = interpolate(yaml.safe_load(set_vars.stdout)["services"], {})
    ours = services(load_raw(), env)
    for name, service in ours.items():
        assert environment(theirs[name]) == environment(service), name
        assert sorted(published_ports(theirs[name])) == sorted(published_ports(service)), name
    assert json.loads(environment(ours["airflow-scheduler"])["AIRFLOW_CONN_XDMOD_DB"])["password"] == "another pw"


def test_dags_parse_with_the_compose_site_config():
    child = (
        "import json, sys\nfrom airflow.dag_processing.dagbag import DagBag\nbag = DagBag(dag_folder=sys.argv[1])\n"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'errors': bag.import_errors}))"
    )
    env = {**os.environ, "XDMOD_USAGE_CONFIG": str(ROOT / "config" / "site-config.yaml")}
    out = subprocess.run([sys.executable, "-c", child, str(ROOT / "dags")], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == {}
    for dag_id in ("usage_slurm_hpc1", "usage_openshift_ocp-prod", "usage_openstack_cloud", "xdmod_hierarchy"):
        assert dag_id in result["dags"]


# --- broken copies fail --------------------------------------------------------------------------------


def _drop_service(raw: dict) -> None:
    del raw["services"][DB]


def _drop_plugins_mount(raw: dict) -> None:
    svc = raw["services"]["airflow-scheduler"]
    svc["volumes"] = [v for v in svc["volumes"] if ":/opt/airflow/plugins" not in v]


def _config_elsewhere(raw: dict) -> None:
    raw["services"]["airflow-triggerer"]["environment"]["XDMOD_USAGE_CONFIG"] = "/etc/xdmod-usage/site.yaml"


def _missing_host_dir(raw: dict) -> None:
    svc = raw["services"]["airflow-dag-processor"]
    svc["volumes"] = [v.replace("./include:", "./includes:") for v in svc["volumes"]]


def _open_port(raw: dict) -> None:
    raw["services"]["airflow-apiserver"]["ports"] = ["8080:8080"]


def _variable_bind_elsewhere(raw: dict) -> None:
    raw["services"][S3]["ports"][0] = "${S3_BIND:-127.0.0.1}:9000:9000"


def _pool_not_deferred(raw: dict) -> None:
    init = raw["services"]["airflow-init"]
    init["command"] = [part.replace(" --include-deferred", "") for part in init["command"]]


def _pool_two_slots(raw: dict) -> None:
    init = raw["services"]["airflow-init"]
    init["command"] = [part.replace("pools set xdmod 1 ", "pools set xdmod 2 ") for part in init["command"]]


def _connection_missing(raw: dict) -> None:
    del raw["services"]["airflow-scheduler"]["environment"]["AIRFLOW_CONN_XDMOD_STAGING_S3"]


def _endpoint_wrong(raw: dict) -> None:
    env = raw["services"]["airflow-scheduler"]["environment"]
    env["AIRFLOW_CONN_XDMOD_STAGING_S3"] = env["AIRFLOW_CONN_XDMOD_STAGING_S3"].replace(
        "http://s3:9000", "http://minio:9000"
    )


def _db_password_differs(raw: dict) -> None:
    raw["services"][DB]["environment"]["MARIADB_PASSWORD"] = "${OTHER_PASSWORD:-other}"


def _no_healthcheck(raw: dict) -> None:
    del raw["services"][S3]["healthcheck"]


def _started_not_completed(raw: dict) -> None:
    raw["services"]["airflow-scheduler"]["depends_on"]["airflow-init"]["condition"] = "service_started"


def _literal_password(raw: dict) -> None:
    raw["services"][DB]["environment"]["MARIADB_PASSWORD"] = "hunter22"


def _password_on_command_line(raw: dict) -> None:
    raw["services"][S3_INIT]["command"][1] += "\naws configure set aws_secret_access_key xdmod-local-dev-secret\n"


def _lineage_outside_logs(raw: dict) -> None:
    raw["services"]["airflow-scheduler"]["environment"]["AIRFLOW__OPENLINEAGE__TRANSPORT"] = (
        '{"type": "file", "log_file_path": "/tmp/events.jsonl", "append": true}'
    )


def _bad_site_config(raw: dict) -> None:
    env = raw["services"]["airflow-scheduler"]["environment"]
    env["XDMOD_USAGE_CONFIG"] = "/opt/airflow/include/hierarchy-mapping.example.yaml"  # a file, but not a site config


def _strict_sql_mode(raw: dict) -> None:
    raw["services"][DB]["command"] = [arg for arg in raw["services"][DB]["command"] if arg != "--sql-mode="]


MUTATIONS = {
    "no MariaDB": (_drop_service, f"service {DB} is missing"),
    "no plugins mount": (_drop_plugins_mount, "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/plugins is not on any mount"),
    "config path not the repo file": (_config_elsewhere, "XDMOD_USAGE_CONFIG=/etc/xdmod-usage/site.yaml is"),
    "missing host dir": (_missing_host_dir, "host path ./includes"),
    "api-server on every address": (_open_port, "published on every address"),
    "variable bind on s3": (_variable_bind_elsewhere, "only the api-server's bind address may be a variable"),
    "pool without deferred": (_pool_not_deferred, "must have 1 slot and --include-deferred"),
    "pool with two slots": (_pool_two_slots, "must have 1 slot and --include-deferred"),
    "connection missing": (_connection_missing, "connection xdmod_staging_s3 is not defined"),
    "endpoint not the s3 service": (_endpoint_wrong, "is not the s3 service's API port"),
    "db password differs": (_db_password_differs, "login/password are not xdmod-db's"),
    "no s3 healthcheck": (_no_healthcheck, "s3 has no healthcheck"),
    "MariaDB's default sql_mode": (_strict_sql_mode, "does not run with an empty sql_mode"),
    "init only started": (_started_not_completed, "airflow-scheduler must depend on airflow-init"),
    "literal password": (_literal_password, "MARIADB_PASSWORD is a literal"),
    "password on a command line": (_password_on_command_line, "s3-init: a password is on its command line"),
    "lineage outside logs": (_lineage_outside_logs, "is not in the logs volume"),
    "not a site config": (_bad_site_config, "site config: "),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_a_broken_copy_is_caught(mutation):
    mutate, expected = MUTATIONS[mutation]
    raw = load_raw()
    assert not any(expected in problem for problem in all_problems(copy.deepcopy(raw)))
    mutate(raw)
    problems = all_problems(raw)
    assert any(expected in problem for problem in problems), problems


def test_docker_compose_v1_rejects_a_broken_file(tmp_path):
    """The v1 check can fail too: a depends_on condition Compose does not know."""
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("condition: service_completed_successfully", "condition: done", 1))
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    proc = subprocess.run([DOCKER_COMPOSE, "-f", str(broken), "--env-file", str(env_file), "config", "-q"],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode != 0 and "condition" in proc.stderr


# --- the start-up scripts do what they claim --------------------------------------------------------


def _init_script(raw: dict, name: str) -> str:
    command = services(raw)[name]["command"]
    assert command[0] == "-c"
    return command[1]


def test_bucket_creation_creates_the_bucket_once(tmp_path):
    """s3-init's script with a stand-in `aws` that records its argv (the first head-bucket fails)."""
    raw = load_raw()
    script = _init_script(raw, S3_INIT)
    env = environment(services(raw)[S3_INIT])
    bin_dir, calls, made = tmp_path / "bin", tmp_path / "calls", tmp_path / "made"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        f'case "$2" in head-bucket) test -e {made} ;; create-bucket) touch {made} ;; esac\n'
    )
    (bin_dir / "aws").chmod(0o755)
    for _ in range(2):
        subprocess.run(["/bin/sh", "-c", script], env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"}, check=True,
                       capture_output=True, text=True)  # fmt: skip
    assert calls.read_text().splitlines() == [
        "s3api head-bucket --bucket xdmod-usage",
        "s3api create-bucket --bucket xdmod-usage",
        "s3api head-bucket --bucket xdmod-usage",
    ]
    assert env["AWS_SECRET_ACCESS_KEY"] not in script


def _admin_password_step(raw: dict) -> str:
    script = _init_script(raw, "airflow-init")
    match = re.search(r"python3 - <<'PY'\n(.*?)\nPY\n", script, re.S)
    assert match, "airflow-init has no admin password step"
    return match[1]


def test_admin_password_step_sets_only_the_admin_and_keeps_other_users(tmp_path):
    raw = load_raw()
    step = _admin_password_step(raw)
    file = tmp_path / "passwords.json"
    file.write_text('{"viewer": "generated-before"}\n')
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(file)}
    out = subprocess.run([sys.executable, "-"], input=step, env={**env, "AIRFLOW_ADMIN_PASSWORD": "pw from env",
                         "AIRFLOW_ADMIN_USER": "admin"}, capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(file.read_text()) == {"viewer": "generated-before", "admin": "pw from env"}
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "pw from env" not in out.stdout + out.stderr
    # Without AIRFLOW_ADMIN_PASSWORD nothing is written: Airflow generates and prints the password.
    file.unlink()
    subprocess.run([sys.executable, "-"], input=step, env=env, check=True, capture_output=True, text=True)
    assert not file.exists()


def _xdmod_db_script(raw: dict) -> tuple[Path, dict[str, str]]:
    db = services(raw)[DB]
    init = on_host(db, "/docker-entrypoint-initdb.d")
    sql_dir = on_host(db, "/xdmod-usage-sql")
    assert init is not None and sql_dir is not None
    scripts = sorted(init.glob("*.sh"))
    assert [s.name for s in scripts] == ["10-xdmod-stand-in.sh"]
    # Sourced by the image's entrypoint (not executable), which gives it docker_process_sql.
    assert not os.access(scripts[0], os.X_OK)
    env = {**environment(db), "XDMOD_SCHEMA_SUBSET": str(sql_dir / "xdmod_schema_subset.sql")}
    return scripts[0], env


def test_xdmod_db_init_script_sends_the_packages_schema_subset_and_grants():
    from xdmod_usage.reconciliation import _sql

    script, env = _xdmod_db_script(load_raw())
    runner = 'docker_process_sql() { echo "-- call"; cat; }; . "$0"'
    sql = subprocess.run(["bash", "-c", runner, str(script)], env={**env, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    calls = sql.split("-- call\n")[1:]
    assert len(calls) == 2
    schema = "\n".join(line for line in calls[0].splitlines() if not line.lstrip().startswith("--")).strip()
    assert schema == "SET SESSION sql_mode = '';\n\n" + _sql("xdmod_schema_subset.sql", "modw", "modw_cloud")
    assert calls[1].split("\n")[:2] == [
        "GRANT SELECT ON `modw`.* TO 'xdmod'@'%';",
        "GRANT SELECT ON `modw_cloud`.* TO 'xdmod'@'%';",
    ]


def test_xdmod_db_init_script_on_a_real_mariadb():
    """What the image does on first start, on a scratch MariaDB: the account, then the init script."""
    import pymysql

    script, env = _xdmod_db_script(load_raw())
    # Under the state dir, not pytest's tmp (the server's user cannot enter that); a new one each time.
    directory = STATE / "compose-xdmod-db"
    shutil.rmtree(directory, ignore_errors=True)
    server = {"XU_MARIADB_DIR": str(directory), "XU_MARIADB_PORT": str(free_port())}
    run_script("scripts/services/mariadb.sh", "start", env=server, timeout=300)
    try:
        socket = directory / "mysqld.sock"
        user, password, database = "xdmod_compose", "compose-test-pw", env["MARIADB_DATABASE"]
        root = ["mariadb", "--no-defaults", f"--socket={socket}", "-uroot"]
        # The entrypoint's own setup (MARIADB_DATABASE, MARIADB_USER), before the init scripts.
        setup = (
            f"CREATE DATABASE `{database}`; CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON `{database}`.* TO '{user}'@'%';"
        )
        subprocess.run(root, input=setup, text=True, check=True)
        runner = f'docker_process_sql() {{ {shlex.join(root)} --database="$MARIADB_DATABASE" "$@"; }}; . "$0"'
        subprocess.run(["bash", "-c", runner, str(script)], check=True, capture_output=True, text=True,
                       env={**env, "MARIADB_USER": user, "PATH": os.environ["PATH"]})  # fmt: skip
        conn = pymysql.connect(host="127.0.0.1", port=int(server["XU_MARIADB_PORT"]), user=user, password=password)
        try:
            with conn.cursor() as cursor:
                for table in ("modw.job_tasks", "modw.resourcefact", "modw_cloud.event"):
                    cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - fixed names
                    assert cursor.fetchone() == (0,)
                with pytest.raises(pymysql.err.OperationalError, match="denied"):
                    cursor.execute("INSERT INTO modw.resourcefact (code) VALUES ('x')")
                cursor.execute(f"CREATE TABLE `{database}`.probe (id int)")  # the history DB is its own
        finally:
            conn.close()
    finally:
        run_script("scripts/services/mariadb.sh", "stop", env=server)
