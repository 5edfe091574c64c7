"""Task bodies for the usage DAGs: turn the Airflow context into calls to the core library.

Why separate from the factory: the factory is wiring evaluated at every parse; these bodies run
only on a worker, so their heavier imports (providers, hooks) stay out of parse time. Errors that
a retry cannot fix (bad config, bad window, bad input, a shrunken source) become
AirflowFailException so the task fails at once instead of burning retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from airflow.sdk.exceptions import AirflowFailException

from .config import SQL_DIR, Resource, SiteConfig, StagingConfig, XdmodConfig
from .window import UsageWindow, WindowError

log = logging.getLogger(__name__)


def window_from_context(context: dict[str, Any]) -> UsageWindow:
    """The run's one-day window from data_interval_start/end (never ds or logical_date)."""
    try:
        return UsageWindow.from_interval(context.get("data_interval_start"), context.get("data_interval_end"))
    except WindowError as exc:
        raise AirflowFailException(str(exc)) from None


def _task_timeout_seconds(context: dict[str, Any]) -> float | None:
    """The running task's execution_timeout, handed to remote commands so they stop with it."""
    task = context.get("task")
    return task.execution_timeout.total_seconds() if task is not None and task.execution_timeout else None


def check_window(context: dict[str, Any]) -> dict[str, str]:
    window = window_from_context(context)
    log.info("usage window %s .. %s (UTC day %s)", window.start.isoformat(), window.end.isoformat(), window.day)
    return window.as_dict()


def staging_store(site: SiteConfig, resource: Resource) -> Any:
    """The Store of a resource's staging area (the site default or its own)."""
    return store_at(site.staging_for(resource))


def store_at(config: Any) -> Any:
    """The Store of a StagingConfig-shaped location (root URL + connection): staging or backups."""
    from airflow.sdk import ObjectStoragePath

    from .staging import Store

    return Store.from_path(ObjectStoragePath(config.root, conn_id=config.conn_id))


@contextmanager
def slurm_runner(resource: Resource, timeout: float | None = None) -> Iterator[Callable[[list[str], IO[bytes]], int]]:
    """A function running a Slurm client (argv, stdout stream) where the source says: here or over SSH."""
    from .sacct import run_local, run_ssh, sacct_env

    source = resource.slurm_source()
    env = sacct_env(source.env)
    if source.ssh_conn_id is None:
        yield lambda words, stream: run_local(words, env, stream, timeout)
        return

    from airflow.providers.ssh.hooks.ssh import SSHHook

    with SSHHook(ssh_conn_id=source.ssh_conn_id).get_conn() as client:
        yield lambda words, stream: run_ssh(client, words, env, stream, timeout)


def _sacct_puller(
    resource: Resource, window: UsageWindow, timeout: float | None
) -> tuple[Callable[[IO[bytes]], Any], dict[str, Any]]:
    """A function that pulls the window from sacct into a stream, and its description for the manifest."""
    from .sacct import sacct_argv, verify_cluster_known

    source = resource.slurm_source()
    argv = sacct_argv(source.cluster, window, source.sacct_path)
    info = {"type": "sacct", "cluster": source.cluster, "argv": argv, "ssh_conn_id": source.ssh_conn_id}

    def pull(out: IO[bytes]) -> int:
        with slurm_runner(resource, timeout) as run:
            written = run(argv, out)
            if written == 0:  # an empty day, or a cluster name slurmdbd does not know
                verify_cluster_known(run, source.cluster, source.sacctmgr_path)
        return written

    return pull, info


def _stage_with_params(
    site: SiteConfig,
    resource: Resource,
    context: dict[str, Any],
    stage: Callable[[UsageWindow, bool, dict[str, Any]], Any],
    refusals: tuple[type[Exception], ...],
) -> Any:
    """What every kind's stage task shares: the run's params, errors a retry cannot fix, metrics.

    ``stage(window, replay, options)`` stages the day; ``refusals`` are the kind's own errors that
    fail the task at once (on top of a shrunken source and the quarantine limit).
    """
    from .metrics import emit, stage_metrics
    from .slurm_pipeline import QuarantineLimitError
    from .staging import SourceShrankError, StagingError

    window = window_from_context(context)
    params = context.get("params") or {}
    replay = params.get("source", "live") == "archive"
    share = params.get("max_quarantine_share")
    options = {
        "allow_fewer_records": bool(params.get("allow_fewer_records", False)),
        "max_quarantine_share": resource.max_quarantine_share if share is None else float(share),
        "spool_dir": site.staging_for(resource).spool_dir,
        "progress_every": site.tasks_for(resource).progress_interval.total_seconds(),
    }
    from . import lineage

    replayed = (
        lineage.archive_before(staging_store(site, resource), resource, window.day.isoformat()) if replay else None
    )
    started = time.monotonic()
    try:
        result = stage(window, replay, options)
    except (SourceShrankError, QuarantineLimitError, *refusals) as exc:
        raise AirflowFailException(str(exc)) from None
    except StagingError as exc:
        if replay:  # no archive to replay: retrying will not make one
            raise AirflowFailException(str(exc)) from None
        raise
    lineage.staged(context, site, resource, window, result, replayed)
    summary = result.summary()
    log.info("staged %s: counts %s", summary["manifest_url"], summary["counts"])
    emit(resource.name, stage_metrics(resource.name, summary["counts"], window.end, time.monotonic() - started))
    return result


def stage_slurm(site: SiteConfig, resource: Resource, context: dict[str, Any]) -> dict[str, Any]:
    """Pull one window from sacct (or replay the archive), check it, and commit the day."""
    from .sacct import UnknownClusterError
    from .slurm_pipeline import SlurmDay, stage_slurm_day

    source = resource.slurm_source()

    def stage(window: UsageWindow, replay: bool, options: dict[str, Any]) -> Any:
        day = SlurmDay(resource.name, resource.xdmod_resource, source.cluster, window)
        pull, info = _sacct_puller(resource, window, _task_timeout_seconds(context))
        return stage_slurm_day(staging_store(site, resource), day, None if replay else pull, info, **options)

    return _stage_with_params(site, resource, context, stage, (UnknownClusterError,)).summary()


def prometheus_api(conn_id: str) -> Any:
    """A PrometheusApi from an Airflow connection: host = base URL, password = bearer token,
    extra ``verify`` (true/false or a CA bundle path) and ``timeout`` (seconds)."""
    from airflow.sdk import BaseHook

    from .prometheus_api import PrometheusApi

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    verify, timeout = tls_verify(extra.get("verify", True)), float(extra.get("timeout", 120))
    return PrometheusApi(http_base_url(conn), token=conn.password or None, verify=verify, timeout=timeout)


def http_base_url(conn: Any) -> str:
    """An HTTP connection's base URL: host as a full URL, or host + schema (https by default) + port."""
    host = conn.host or ""
    if "://" not in host:
        scheme = conn.schema or "https"
        return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    if conn.port and host.count(":") < 2:
        return f"{host}:{conn.port}"
    return host


def tls_verify(value: Any) -> bool | str:
    """A connection extra's TLS setting: true/false (also as text, as the UI stores it) or a CA bundle path."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def stage_openshift(site: SiteConfig, resource: Resource, context: dict[str, Any]) -> dict[str, Any]:
    """Query one window from Prometheus (or replay the archive), build rows, check, commit."""
    from .openshift_pipeline import PrometheusHolesError, stage_openshift_day
    from .prometheus_api import PromQueryError

    source = resource.openshift_source()

    def stage(window: UsageWindow, replay: bool, options: dict[str, Any]) -> Any:
        api = None if replay else prometheus_api(source.prometheus_conn_id)
        return stage_openshift_day(staging_store(site, resource), resource.name, resource.xdmod_resource, source,
                                   window, api, source_info={"prometheus_conn_id": source.prometheus_conn_id},
                                   **options)  # fmt: skip

    result = _stage_with_params(site, resource, context, stage, (PrometheusHolesError, PromQueryError, ValueError))
    source_counts = result.manifest["source_counts"]
    for hole in source_counts["holes"]:
        log.warning("Prometheus has no request samples %s .. %s (%s min)", hole["start"], hole["end"], hole["minutes"])
    if source_counts["unattributed_namespaces"]:
        log.warning("unattributed namespaces (charged to the default PI/project): %s",
                    ", ".join(source_counts["unattributed_namespaces"]))  # fmt: skip
    log.info("source counts %s", {k: v for k, v in source_counts.items() if k != "unattributed_namespaces"})
    return result.summary()


def openstack_api(source: Any) -> Any:
    """An OpenStackApi from the source's Airflow connection or clouds.yaml cloud.

    Connection: host = auth URL (https assumed without a scheme), login = user name (or the
    application credential id), password = password (or its secret); extra: project_name or
    project_id, user_domain_name, project_domain_name (both default "Default"), region_name,
    interface, verify (true/false) or cacert (a CA bundle path), auth_type (password or
    v3applicationcredential). The password goes to keystoneauth only, never to a log.
    """
    from .openstack_api import OpenStackApi, connect

    timeout = source.timeout.total_seconds()
    if source.cloud is not None:
        conn = connect(cloud=source.cloud, region_name=source.region_name, interface=source.interface,
                       timeout=timeout)  # fmt: skip
    else:
        from airflow.sdk import BaseHook

        airflow_conn = BaseHook.get_connection(source.conn_id)
        extra = airflow_conn.extra_dejson
        auth_url = airflow_conn.host or ""
        if "://" not in auth_url:
            auth_url = f"https://{auth_url}" + (f":{airflow_conn.port}" if airflow_conn.port else "")
        auth_type = extra.get("auth_type", "password")
        auth: dict[str, Any] = {"auth_url": auth_url, "auth_type": auth_type}
        if auth_type == "v3applicationcredential":
            auth.update(application_credential_id=airflow_conn.login,
                        application_credential_secret=airflow_conn.password)  # fmt: skip
        else:
            auth.update(username=airflow_conn.login, password=airflow_conn.password,
                        user_domain_name=extra.get("user_domain_name", "Default"),
                        project_domain_name=extra.get("project_domain_name", "Default"))  # fmt: skip
            for key in ("project_name", "project_id"):
                if extra.get(key):
                    auth[key] = extra[key]
        verify = tls_verify(extra.get("cacert") or extra.get("verify", True))
        conn = connect(auth=auth, region_name=source.region_name or extra.get("region_name"),
                       interface=extra.get("interface", source.interface), verify=verify, timeout=timeout)  # fmt: skip
    return OpenStackApi(conn, page_size=source.page_size, retries=source.retries)


def stage_openstack(site: SiteConfig, resource: Resource, context: dict[str, Any]) -> dict[str, Any]:
    """Read one window from the OpenStack APIs (or replay the archive), build events, check, commit."""
    from .openstack_api import OpenStackAuthError, OpenStackRequestError
    from .openstack_pipeline import stage_openstack_day

    source = resource.openstack_source()

    def stage(window: UsageWindow, replay: bool, options: dict[str, Any]) -> Any:
        api = None if replay else openstack_api(source)
        info = {"conn_id": source.conn_id, "cloud": source.cloud, "region_name": source.region_name}
        return stage_openstack_day(staging_store(site, resource), resource.name, resource.xdmod_resource, window,
                                   api, zero_vcpus=source.zero_vcpus, hypervisors=source.hypervisors,
                                   source_info=info, **options)  # fmt: skip

    refusals = (OpenStackAuthError, OpenStackRequestError, ValueError)
    result = _stage_with_params(site, resource, context, stage, refusals)
    source_counts = result.manifest["source_counts"]
    for key in ("flavor_assumed", "state_assumed", "state_disagrees_with_previous_day", "zero_vcpus_mapped",
                "unknown_projects", "unknown_users"):  # fmt: skip
        if source_counts[key]:
            log.warning("%s: %s", key, ", ".join(source_counts[key]))
    if source_counts["previous_state"] is None:
        log.warning("the day before is not staged: states and pre-resize flavors at midnight were inferred")
    log.info("events by type %s; API %s", source_counts["events_by_type"], result.manifest["source"].get("api"))
    return result.summary()


def stage_day(site: SiteConfig, resource: Resource, context: dict[str, Any]) -> dict[str, Any]:
    """The stage task of any kind of resource."""
    stage = {"slurm": stage_slurm, "openshift": stage_openshift, "openstack": stage_openstack}[resource.kind]
    return stage(site, resource, context)


def sql_text(name: str) -> str:
    """A query from include/sql/ (kept as files so DBAs can read and test them)."""
    return (SQL_DIR / name).read_text(encoding="utf-8")


@contextmanager
def mysql_connection(conn_id: str) -> Iterator[Any]:
    """A MySQLdb connection from an Airflow MySQL connection (its schema selected), closed after the block."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    conn = MySqlHook(mysql_conn_id=conn_id).get_conn()
    try:
        yield conn
    finally:
        conn.close()


def xdmod_db_timestamp(site: SiteConfig, resource: Resource) -> str:
    """NOW() on XDMoD's database server, taken before the shred (see xdmod-inputs)."""
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    conn_id = site.xdmod_for(resource).db_conn_id
    row = MySqlHook(mysql_conn_id=conn_id).get_first(sql_text("xdmod_db_now.sql"))
    if not row or not row[0]:
        raise RuntimeError(f"SELECT NOW() on connection {conn_id!r} returned nothing")
    log.info("XDMoD database server time before shred: %s", row[0])
    return str(row[0])


@dataclass(frozen=True)
class XdmodTarget:
    """Where and as what an XDMoD command runs: the runner config, the staging its inputs come from, and
    the name its pod and metrics carry (a resource code, or e.g. "hierarchy" for site-wide commands)."""

    xdmod: XdmodConfig
    staging: StagingConfig
    label: str
    metrics_name: str


def target_of(site: SiteConfig, resource: Resource) -> XdmodTarget:
    """A resource's XDMoD commands: its own runner and staging settings (or the site's)."""
    return XdmodTarget(site.xdmod_for(resource), site.staging_for(resource), resource.xdmod_resource, resource.name)


def site_target(site: SiteConfig, label: str) -> XdmodTarget:
    """Site-wide XDMoD commands (aggregation, hierarchy import, re-ingest): the site's settings."""
    return XdmodTarget(site.xdmod, site.staging, label, label)


def _run_over_ssh(target: XdmodTarget, command: Any, context: dict[str, Any]) -> Any:
    """SSH runner: inputs over SFTP (sha256 checked there), then the command; lock failures retry."""
    from airflow.providers.ssh.hooks.ssh import SSHHook
    from airflow.sdk import ObjectStoragePath

    from .runners import XdmodCommandError
    from .ssh_runner import SshRunner, SshRunnerSettings

    xdmod = target.xdmod
    timeout = _task_timeout_seconds(context)
    settings = SshRunnerSettings(xdmod.input_dir, xdmod.ssh.command_dir)

    def open_input(url: str) -> Any:
        return ObjectStoragePath(url, conn_id=target.staging.conn_id).open("rb")

    try:
        with SSHHook(ssh_conn_id=xdmod.ssh.conn_id).get_conn() as client:
            return SshRunner(client, settings, open_input, timeout).run(command)
    except XdmodCommandError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(str(exc)) from None


def xdmod_dry_run(xdmod: XdmodConfig, context: dict[str, Any]) -> bool:
    """Whether XDMoD commands of this run are only shown: the run's ``dry_run`` Param or ``runner: dry_run``.
    The steps after them (reconcile, aggregate) ask the same, since XDMoD then changed nothing."""
    return bool((context.get("params") or {}).get("dry_run")) or xdmod.runner == "dry_run"


def run_xdmod(target: XdmodTarget, context: dict[str, Any], build: Callable[[str], Any]) -> dict[str, Any]:
    """Build one XDMoD command (given the XDMoD side's input directory) and run it."""
    return run_xdmod_command(target, context, build(target.xdmod.input_dir))


def run_xdmod_command(
    target: XdmodTarget, context: dict[str, Any], command: Any, dry_run: bool = False
) -> dict[str, Any]:
    """Hand one XDMoD command to the configured runner.

    ``dry_run`` (or the run's ``dry_run`` Param) forces the dry-run runner, which still shows the exact
    pod when the kubernetes runner is configured.
    """
    from .runners import DryRunRunner, KubernetesRunner

    xdmod = target.xdmod
    build_pod = None
    if xdmod.kubernetes is not None:
        from .kubernetes_runner import xdmod_pod_operator

        task = context.get("task")

        def build_pod(cmd: Any) -> Any:
            return xdmod_pod_operator(
                task_id=f"{task.task_id if task else cmd.step}_pod",
                resource=target.label,
                command=cmd,
                kube=xdmod.kubernetes,
                input_dir=xdmod.input_dir,
                staging_root=target.staging.root,
                execution_timeout=task.execution_timeout if task else None,
            )

    started = time.monotonic()
    if dry_run or xdmod_dry_run(xdmod, context):
        why = "config xdmod.runner=dry_run" if xdmod.runner == "dry_run" else "dry_run param"
        log.info("runner: dry run (%s)", why)
        result = DryRunRunner(xdmod.input_dir, build_pod).run(command)
    elif xdmod.runner == "kubernetes":
        from .runners import XdmodCommandError

        try:
            result = KubernetesRunner(build_pod, context).run(command)
        except XdmodCommandError as exc:
            if not exc.retryable:
                raise AirflowFailException(str(exc)) from exc
            raise
    else:
        result = _run_over_ssh(target, command, context)
    if not result.dry_run:
        from .metrics import emit

        emit(target.metrics_name, {f"xdmod_{command.step.replace('-', '_')}_seconds": time.monotonic() - started})
    done = {"step": result.step, "argv": result.argv, "dry_run": result.dry_run, "exit_status": result.exit_status}
    from .lineage import xdmod_command

    xdmod_command(context, xdmod, command, done)
    return done


def check_freshness(site: SiteConfig, context: dict[str, Any]) -> dict[str, Any]:
    """Fail (and so alert) when any resource's recent days are missing or incomplete in staging."""
    import datetime as dt

    from .freshness import find_gaps, report, summary_line

    now = dt.datetime.now(dt.UTC)
    gaps = find_gaps(site, lambda resource: staging_store(site, resource), now, site.freshness.days,
                     site.freshness.grace)  # fmt: skip
    text = report(gaps, site.freshness.days)
    log.info("%s", text)
    if gaps:
        raise AirflowFailException(f"{text}\n{summary_line(gaps)}")
    return {"checked_days": site.freshness.days, "resources": len(site.resources), "gaps": 0}


def preflight(site: SiteConfig) -> list[dict[str, Any]]:
    """The preflight checks from a worker (the pool is checked by the command, beside the metadata DB)."""
    from dataclasses import asdict

    from .preflight import render, run_checks, summary_line

    checks = run_checks(site, with_pool=False)
    log.info("preflight:\n%s", render(checks))
    if any(check.ok is False for check in checks):
        raise AirflowFailException(f"{render(checks)}\n{summary_line(checks)}")
    return [asdict(check) for check in checks]
