"""OpenLineage for every DAG: how each kind of thing is named as a dataset, and what each task reports.

How a task reports: the OpenLineage provider (2.20) takes a task's inputs and outputs from its
operator's ``get_openlineage_facets_on_complete`` when it has one (the backup operators define it).
The ``@task`` bodies set that method on their running operator through ``report``. The provider's
other routes do not fit, as tried with the console and file transports: the hook lineage collector
keeps only assets whose URI scheme a provider can convert (file, s3, mysql here), so Slurm, Prometheus,
OpenStack and ColdFront inputs were lost; it is also one collector per process, so under
``airflow dags test`` (every task in one process) each task reported all earlier tasks' assets; and
inlets/outlets set at run time are ignored as soon as any hook recorded something.

Nothing is computed while OpenLineage is off (no transport configured: the provider disables itself),
and a dataset that cannot be named is logged, never fails the task.

Naming (https://openlineage.io/docs/spec/naming):

| thing | namespace | name |
|---|---|---|
| a staged or stored file | ``file`` / ``s3://<bucket>`` | its path / its key |
| a MySQL table (XDMoD, history, backups) | ``mysql://<host>:<port>`` of the connection | ``<db>.<table>`` |
| a Slurm cluster's accounting (sacct) | ``slurm://<cluster>`` | ``accounting`` |
| a Prometheus metric | ``prometheus://<host>:<port>[/path]`` of the connection | the metric name |
| an OpenStack API | ``openstack://<Keystone host:port>`` | ``identity/users``, ``[<region>/]compute/servers`` |
| a ColdFront API list | ``coldfront://<host>:<port>[/path]`` | ``api/projects``, ``api/allocations``, ``api/users`` |

XDMoD's tables per command follow XDMoD's own ETL definitions (``configuration/etl``, ``bin/xdmod-import-csv``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

AGGREGATION_UNITS = ("day", "month", "quarter", "year")
# xdmod-shredder -f <format>: the tables the shredder loads (etl.d/shredder.json, jobs_cloud_openstack.json,
# cloud_ingest_resource_specs.json).
SHRED_TABLES = {
    "slurm": ("mod_shredder.shredded_job_slurm",),
    "openstack": ("modw_cloud.openstack_raw_event", "modw_cloud.openstack_raw_instance_type"),
    "cloudresourcespecs": ("modw_cloud.raw_resource_specs", "modw_cloud.staging_resource_specifications"),
}
# xdmod-ingestor --ingest (jobs: shredder -> HPcDB -> warehouse) and --datatype=openstack (cloud).
INGEST_TABLES = {
    "job": (SHRED_TABLES["slurm"], ("mod_hpcdb.hpcdb_jobs", "modw.job_records", "modw.job_tasks")),
    "cloud": (
        (*SHRED_TABLES["openstack"], SHRED_TABLES["cloudresourcespecs"][1]),
        ("modw_cloud.event", "modw_cloud.instance", "modw_cloud.resource_specifications"),
    ),
}
# xdmod-ingestor --aggregate=<realm>: jobs-xdw-aggregate; cloud-state-pipeline + aggregate-cloud-resource-specs.
AGGREGATE_TABLES = {
    "job": (("modw.job_tasks",), tuple(f"modw_aggregates.jobfact_by_{unit}" for unit in AGGREGATION_UNITS)),
    "cloud": (
        ("modw_cloud.event", "modw_cloud.resource_specifications"),
        ("modw_cloud.session_records", *(f"modw_cloud.cloudfact_by_{unit}" for unit in AGGREGATION_UNITS),
         *(f"modw_aggregates.resourcespecsfact_by_{unit}" for unit in AGGREGATION_UNITS)),
    ),
}  # fmt: skip
# xdmod-import-csv -t <type> (bin/xdmod-import-csv: what each type inserts or updates).
IMPORT_TABLES = {
    "hierarchy": ("mod_hpcdb.hpcdb_fields_of_science",),
    "group-to-hierarchy": ("mod_hpcdb.hpcdb_requests", "mod_hpcdb.hpcdb_accounts", "mod_shredder.staging_pi"),
    "names": ("mod_hpcdb.hpcdb_people", "mod_shredder.staging_union_user_pi"),
    "cloud-project-to-pi": ("modw_cloud.staging_pi_to_project",),
}
# xdmod-admin --jobs --delete=R / --truncate: the resource's (every) jobs from shredder, HPcDB, warehouse, aggregates.
DELETE_TABLES = (*SHRED_TABLES["slurm"], *INGEST_TABLES["job"][1], *AGGREGATE_TABLES["job"][1])
# What the reconciliation counts (include/sql/reconcile_*.sql).
RECONCILE_TABLES = {"job": ("modw.job_tasks", "modw.resourcefact"), "cloud": ("modw_cloud.event", "modw.resourcefact")}
OPENSTACK_COMPUTE = ("servers", "os-instance-actions")
OPENSTACK_IDENTITY = ("domains", "projects", "users")
COLDFRONT_LISTS = ("api/projects", "api/allocations", "api/users")
HISTORY_TABLE, IMPORT_RECORD_TABLE = "hierarchy_history", "hierarchy_import"
_METRIC = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(?=[{\[])")


# --- one naming function per kind of thing ------------------------------------------------------


def _dataset(namespace: str, name: str) -> Any:
    from openlineage.client.event_v2 import Dataset

    return Dataset(namespace=namespace, name=name)


def stored(url: str) -> Any:
    """A stored object (staging, backups): ``file`` + path, or ``s3://bucket`` + key."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _dataset("file", parts.path)
    return _dataset(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/"))


def table(server: str, name: str) -> Any:
    """A MySQL table ``db.table`` on ``server`` (host:port)."""
    return _dataset(f"mysql://{server}", name)


def tables(server: str, databases: dict[str, Any]) -> list[Any]:
    """Every table of a backup's databases (``{db: {"tables": {...}}}``), sorted."""
    return [
        table(server, f"{db}.{name}") for db, facts in sorted(databases.items()) for name in sorted(facts["tables"])
    ]


def mysql_server(conn_id: str) -> str:
    """host:port of a MySQL connection, named as the backup's endpoint names it (the same defaults)."""
    from .backup_tasks import endpoint

    return endpoint(conn_id).label


def mysql_schema(conn_id: str) -> str:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id).schema or ""


def xdmod_tables(xdmod: Any, names: Iterable[str]) -> list[Any]:
    """XDMoD's tables on its database server (``xdmod.db_conn_id``)."""
    server = mysql_server(xdmod.db_conn_id)
    return [table(server, name) for name in names]


def slurm_accounting(cluster: str) -> Any:
    """A Slurm cluster's job accounting, as sacct reads it from slurmdbd."""
    return _dataset(f"slurm://{cluster}", "accounting")


def _endpoint(scheme: str, base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def promql_metrics(queries: Iterable[str]) -> list[str]:
    """The metric names PromQL queries select (a name followed by its label matchers or a range)."""
    return sorted({match.group(1) for query in queries for match in _METRIC.finditer(query)})


def prometheus_metrics(base_url: str, queries: Iterable[str]) -> list[Any]:
    """One dataset per metric the queries read from the Prometheus (or Thanos querier) at ``base_url``."""
    return [_dataset(_endpoint("prometheus", base_url), metric) for metric in promql_metrics(queries)]


def http_url(conn_id: str) -> str:
    """The base URL of an HTTP connection (Prometheus, ColdFront), as the task bodies build it."""
    from airflow.sdk import BaseHook

    from .airflow_tasks import http_base_url

    return http_base_url(BaseHook.get_connection(conn_id))


def openstack_cloud(source: Any) -> tuple[str, str | None]:
    """The namespace of an OpenStack source (its Keystone) and its region, from the connection or clouds.yaml."""
    region = source.region_name
    if source.conn_id is not None:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(source.conn_id)
        host = conn.host or ""
        netloc = urlsplit(host).netloc if "://" in host else host + (f":{conn.port}" if conn.port else "")
        return f"openstack://{netloc}", region or conn.extra_dejson.get("region_name")
    try:
        import openstack.config

        cloud = openstack.config.OpenStackConfig().get_one(cloud=source.cloud, region_name=region)
        return f"openstack://{urlsplit(cloud.auth['auth_url']).netloc}", region or cloud.region_name or None
    except Exception:  # an unreadable clouds.yaml: the staging already failed or will say why
        return f"openstack://{source.cloud}", region


def openstack_apis(namespace: str, region: str | None, compute: Iterable[str], identity: Iterable[str]) -> list[Any]:
    """OpenStack API collections read: compute ones per region (``<region>/compute/servers``), identity ones not."""
    where = f"{region}/compute" if region else "compute"
    return [_dataset(namespace, f"{where}/{name}") for name in compute] + [
        _dataset(namespace, f"identity/{name}") for name in identity
    ]


def coldfront_lists(base_url: str) -> list[Any]:
    """The ColdFront API lists the hierarchy reads."""
    return [_dataset(_endpoint("coldfront", base_url), name) for name in COLDFRONT_LISTS]


def staged_files(summary: dict[str, Any]) -> list[Any]:
    """A committed day (or hierarchy run): every file of its version, and its manifest."""
    return [
        *(stored(entry["url"]) for _name, entry in sorted(summary["files"].items())),
        stored(summary["manifest_url"]),
    ]


def day_files(store: Any, resource: str, day: str) -> dict[str, str]:
    """URL of each file of a committed day by name (``manifest.json`` too); empty when none is committed."""
    from .staging import DayStage

    stage = DayStage(store, resource, day)
    manifest = stage.read_manifest()
    if manifest is None:
        return {}
    return {**{name: stage.url_of(entry) for name, entry in manifest["files"].items()}, "manifest.json":
            stage.manifest_url}  # fmt: skip


def _raw(files: dict[str, str]) -> list[Any]:
    return [stored(url) for name, url in sorted(files.items()) if name.startswith("raw.")]


# --- what a task reports ------------------------------------------------------------------------


def enabled() -> bool:
    """Whether the OpenLineage provider will send events (a transport or config is set)."""
    try:
        from airflow.providers.openlineage import conf
    except ImportError:
        return False
    return not conf.is_disabled()


def _facets(task: Any, _task_instance: Any = None) -> Any:
    from airflow.providers.openlineage.extractors import OperatorLineage

    _try, inputs, outputs = task._xdmod_lineage
    return OperatorLineage(inputs=list(inputs.values()), outputs=list(outputs.values()))


def report(context: dict[str, Any], inputs: Iterable[Any] = (), outputs: Iterable[Any] = ()) -> None:
    """Add datasets to what the running task read and wrote; the provider sends them when the task ends.

    Calls add up within a try (a task running several commands); a new try starts empty.
    """
    inputs, outputs = list(inputs), list(outputs)
    task = context.get("task")
    if task is None or not (inputs or outputs):
        return
    attempt = getattr(context.get("ti"), "try_number", None)
    state = getattr(task, "_xdmod_lineage", None)
    if state is None or state[0] != attempt:
        state = (attempt, {}, {})
        task._xdmod_lineage = state
        task.get_openlineage_facets_on_complete = functools.partial(_facets, task)
    for found, datasets in ((state[1], inputs), (state[2], outputs)):
        for dataset in datasets:
            found.setdefault((dataset.namespace, dataset.name), dataset)


def _never_fails(func: Any) -> Any:
    """Lineage is a report: a failure to name something is logged, never fails the task."""

    @functools.wraps(func)
    def safe(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            log.warning("OpenLineage: %s failed; the task goes on without these datasets", func.__name__, exc_info=True)
            return None

    return safe


def _stage_sources(site: Any, resource: Any, window: Any) -> list[Any]:
    if resource.kind == "slurm":
        return [slurm_accounting(resource.slurm_source().cluster)]
    if resource.kind == "openshift":
        from .openshift_queries import DayQueries

        source = resource.openshift_source()
        queries = DayQueries(source, source.policy_for(window.day), window, None)
        texts = [spec["query"] for spec in queries.plan().values()] + [queries.request]
        return prometheus_metrics(http_url(source.prometheus_conn_id), texts)
    source = resource.openstack_source()
    namespace, region = openstack_cloud(source)
    compute = (*OPENSTACK_COMPUTE, *(("os-hypervisors",) if source.hypervisors else ()))
    return openstack_apis(namespace, region, compute, OPENSTACK_IDENTITY)


@_never_fails
def archive_before(store: Any, resource: Any, day: str) -> list[Any] | None:
    """Before a replay: the committed day's raw archive, which the replay reads (None when lineage is off)."""
    return _raw(day_files(store, resource.name, day)) if enabled() else None


@_never_fails
def staged(context: dict[str, Any], site: Any, resource: Any, window: Any, result: Any,
           replayed: list[Any] | None) -> None:  # fmt: skip
    """stage: the source (or, replayed, the raw archive) in; the day's files and manifest out.
    An OpenStack day also reads the day before's state.json."""
    if not enabled():
        return
    inputs = replayed if replayed is not None else _stage_sources(site, resource, window)
    previous = (result.manifest.get("source_counts") or {}).get("previous_state")
    if previous:
        inputs = [*inputs, stored(previous.rsplit(" sha256 ", 1)[0])]
    report(context, inputs, staged_files(result.summary()))


def command_tables(command: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """XDMoD's tables one command reads and writes (by its step and arguments)."""
    argv = list(command.argv)
    if command.step == "shred":
        return (), SHRED_TABLES.get(argv[argv.index("-f") + 1], ())
    if command.step == "ingest":
        return INGEST_TABLES["cloud" if any(a.startswith("--datatype=") for a in argv) else "job"]
    if command.step == "aggregate":
        realm = next(a.split("=", 1)[1] for a in argv if a.startswith("--aggregate="))
        return AGGREGATE_TABLES.get(realm, ((), ()))
    if command.step == "import-csv":
        return (), IMPORT_TABLES.get(argv[argv.index("-t") + 1], ())
    if command.step in ("delete-jobs", "truncate-jobs"):
        return (), DELETE_TABLES
    return (), ()  # reingest: every realm's data is re-read and rewritten; not itemised


@_never_fails
def xdmod_command(context: dict[str, Any], xdmod: Any, command: Any, result: dict[str, Any]) -> None:
    """An XDMoD command that ran for real: the staged files it was given and the tables it read, in; the
    tables it wrote, out. A dry run touched nothing and reports nothing."""
    if result.get("dry_run") or not enabled():
        return
    read, written = command_tables(command)
    report(context, [*(stored(item.url) for item in command.inputs), *xdmod_tables(xdmod, read)],
           xdmod_tables(xdmod, written))  # fmt: skip


@_never_fails
def manifest_note(context: dict[str, Any], manifest_urls: Iterable[str]) -> None:
    """A task that wrote its note into days' manifests (xdmod_ingest)."""
    if enabled():
        report(context, outputs=[stored(url) for url in manifest_urls])


@_never_fails
def reconciled(context: dict[str, Any], xdmod: Any, realm: str, checked: bool, manifest_urls: Iterable[str],
               file_urls: Iterable[str]) -> None:  # fmt: skip
    """reconcile: the staged files and manifests, and (when XDMoD was asked) the tables it counts, in; the
    manifests (its verdict) out."""
    if not enabled():
        return
    manifests = [stored(url) for url in manifest_urls]
    tables_read = xdmod_tables(xdmod, RECONCILE_TABLES[realm]) if checked else []
    report(context, [*manifests, *(stored(url) for url in file_urls), *tables_read], manifests)


def history_tables(conn_id: str, names: Iterable[str]) -> list[Any]:
    """The hierarchy history's tables (the connection's database)."""
    server, schema = mysql_server(conn_id), mysql_schema(conn_id)
    return [table(server, f"{schema}.{name}") for name in names]


def hierarchy_source(site: Any, source: Any, now: Any) -> list[Any]:
    """What one hierarchy source reads."""
    from .config import ColdFrontHierarchySource, FileHierarchySource, OpenShiftHierarchySource

    if isinstance(source, FileHierarchySource):
        return [stored(f"file://{source.path}")]
    if isinstance(source, ColdFrontHierarchySource):
        return coldfront_lists(http_url(source.conn_id))
    resource = site.resource(source.resource)
    if isinstance(source, OpenShiftHierarchySource):
        from .hierarchy_sources import openshift_queries

        queries = openshift_queries(source, resource, now.date())
        return prometheus_metrics(http_url(resource.openshift_source().prometheus_conn_id), queries.values())
    namespace, _region = openstack_cloud(resource.openstack_source())
    return openstack_apis(namespace, None, (), ("projects", "domains"))


@_never_fails
def hierarchy_snapshot(context: dict[str, Any], site: Any, staged_run: dict[str, Any], now: Any) -> None:
    """snapshot: every source (or, regenerated, the history) in; the history and the staged files out."""
    if not enabled():
        return
    history = history_tables(site.hierarchy.db_conn_id, [HISTORY_TABLE])
    if staged_run["mode"] == "regenerated":
        report(context, history, staged_files(staged_run))
        return
    sources = [dataset for source in site.hierarchy.sources for dataset in hierarchy_source(site, source, now)]
    report(context, sources, [*history, *staged_files(staged_run)])


@_never_fails
def hierarchy_imported(context: dict[str, Any], site: Any) -> None:
    """import_files recorded what XDMoD imported (the history's import record)."""
    if enabled():
        report(context, outputs=history_tables(site.hierarchy.db_conn_id, [IMPORT_RECORD_TABLE]))


@_never_fails
def restaged(context: dict[str, Any], archives: list[Any] | None, store: Any, resource: Any, day: str) -> None:
    """A reload's rebuilt day: its raw archive in (``archive_before``); the day's files and manifest out."""
    if archives is None or not enabled():
        return
    outputs = [stored(url) for _name, url in sorted(day_files(store, resource.name, day).items())]
    report(context, archives, outputs)
