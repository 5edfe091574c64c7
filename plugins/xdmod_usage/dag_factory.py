"""One factory for every per-resource usage DAG, so none forgets retries, timeouts or the window.

Parse-time cost matters (the DAG processor re-parses often): this module imports only the SDK
and the small config/window modules; task bodies import providers when they run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import (
    DAG,
    AsyncCallback,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    DeadlineAlert,
    DeadlineReference,
    Param,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

from . import aggregation_tasks, airflow_tasks, reconciliation_tasks
from .aggregation import REALM_DAG_NAME, REALM_OF_KIND, Realm, aggregated_asset_name, ingest_asset_name
from .alerts import UsageFailureNotifier, deadline_missed
from .config import Resource, SiteConfig, TaskPolicy, load_site_config
from .xdmod_commands import XdmodInput, ingest, ingest_datatype, shred_cloud, shred_slurm

DAILY_UTC = "0 0 * * *"


def _routes(site: SiteConfig, resource: Resource | None = None) -> list[dict[str, Any]]:
    routes = site.alerts if resource is None else site.alerts_for(resource)
    return [route.model_dump(exclude_none=True) for route in routes]


def _task_defaults(policy: TaskPolicy, routes: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """Every task of every DAG: alerts, retries with exponential backoff up to a cap, a timeout."""
    return {
        "owner": "xdmod-usage",
        "on_failure_callback": UsageFailureNotifier(routes),
        "retries": policy.retries,
        "retry_delay": policy.retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": policy.max_retry_delay,
        "execution_timeout": policy.execution_timeout,
        **overrides,
    }


def _doc_md(site: SiteConfig, resource: Resource) -> str:
    staging = site.staging_for(resource)
    return f"""
### Usage ETL: {resource.kind} resource `{resource.name}` → XDMoD resource `{resource.xdmod_resource}`

Each run stages **one UTC day**, `data_interval_start` to `data_interval_end` (midnight to midnight),
then runs XDMoD's shred → ingest → aggregate. The run waits {resource.settle_delay} after the day ends
for late records (`wait_for_settle`, deferrable) rather than shifting the schedule.

* **Staging**: `{staging.root}/{resource.name}/<YYYY-MM-DD>/manifest.json` (counts, sha256, files).
* **Rerun a day**: clear the run (all tasks) in the UI. The day is replaced atomically; identical
  input gives identical files. If the source now returns fewer records than the archive holds, the
  run refuses: trigger with `source=archive` to replay the archived raw data.
* **Backfill**: `airflow backfill create --dag-id {resource.dag_id} --from-date D1 --to-date D2
  --reprocess-behavior failed` (a backfill run of logical date D stages day D; `failed` also reruns
  failed days). Catchup is on from {resource.start_date}.
* **Manual trigger**: give a logical date; a trigger without one has no window and fails at once.
* **Params**: `dry_run` (log XDMoD commands without running them), `source` (live | archive),
  `allow_fewer_records`, `max_quarantine_share`.
* **Quarantine**: lines XDMoD would choke on are written to `quarantine.jsonl` with the reason and
  counted; above {resource.max_quarantine_share:.2%} of the day the staging task fails after writing them.
"""


def _params(resource: Resource) -> dict[str, Param]:
    return {
        "dry_run": Param(False, type="boolean", description="Log XDMoD commands (and pods) without running them."),
        "source": Param(
            "live",
            enum=["live", "archive"],
            description="live: query the source; archive: replay the day's raw archive.",
        ),
        "allow_fewer_records": Param(
            False, type="boolean", description="Allow replacing a day with a pull smaller than its archive."
        ),
        "max_quarantine_share": Param(
            None,
            type=["null", "number"],
            minimum=0,
            maximum=1,
            description=f"Override the quarantine limit (config: {resource.max_quarantine_share}).",
        ),
    }


def _lateness_deadline(
    routes: list[dict[str, Any]], dag_id: str, deadline: dt.timedelta | None
) -> DeadlineAlert | None:
    if deadline is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=deadline,
        callback=AsyncCallback(deadline_missed, kwargs={"routes": routes, "dag_id": dag_id, "deadline": str(deadline)}),
    )


KIND_TITLES = {"slurm": "Slurm", "openshift": "OpenShift", "openstack": "OpenStack"}


def _daily_dag(site: SiteConfig, resource: Resource) -> DAG:
    """The DAG every kind shares: one UTC day per run, catchup, alerts, params, deadline."""
    return DAG(
        dag_id=resource.dag_id,
        description=f"Daily {KIND_TITLES[resource.kind]} usage of {resource.name} into XDMoD resource "
        f"{resource.xdmod_resource}",
        schedule=CronDataIntervalTimetable(DAILY_UTC, timezone="UTC"),
        start_date=dt.datetime.combine(resource.start_date, dt.time(0), tzinfo=dt.UTC),
        # The scheduler compares end_date with the interval start: midnight of the last day.
        end_date=dt.datetime.combine(resource.end_date, dt.time(0), tzinfo=dt.UTC) if resource.end_date else None,
        catchup=True,
        max_active_runs=resource.max_active_runs,
        default_args=_task_defaults(site.tasks_for(resource), _routes(site, resource)),
        tags=["xdmod", "usage", resource.kind, f"resource:{resource.name}", *resource.tags],
        doc_md=_doc_md(site, resource),
        params=_params(resource),
        deadline=_lateness_deadline(_routes(site, resource), resource.dag_id, resource.lateness_deadline),
        render_template_as_native_obj=False,
    )


def _stage_tasks(site: SiteConfig, resource: Resource, **stage_args: Any) -> tuple[Any, Any]:
    """check_window >> wait_for_settle >> stage >> xdmod_timestamp, inside the DAG being built.

    Returns the stage and timestamp results for the kind's XDMoD steps.
    """
    pool = site.xdmod_for(resource).pool
    settle_seconds = int(resource.settle_delay.total_seconds())

    @task(task_id="check_window")
    def check_window() -> dict[str, str]:
        return airflow_tasks.check_window(get_current_context())

    wait = DateTimeSensorAsync(
        task_id="wait_for_settle",
        target_time=f"{{{{ (data_interval_end + macros.timedelta(seconds={settle_seconds})).isoformat() }}}}",
    )

    @task(task_id="stage", **stage_args)
    def stage() -> dict[str, Any]:
        return airflow_tasks.stage_day(site, resource, get_current_context())

    @task(task_id="xdmod_timestamp", pool=pool)
    def xdmod_timestamp() -> str:
        return airflow_tasks.xdmod_db_timestamp(site, resource)

    staged, timestamp = stage(), xdmod_timestamp()
    check_window() >> wait >> staged >> timestamp
    return staged, timestamp


def _run(site: SiteConfig, resource: Resource, build: Any) -> dict[str, Any]:
    return airflow_tasks.run_xdmod(airflow_tasks.target_of(site, resource), get_current_context(), build)


def _staged_input(staged: dict[str, Any], name: str) -> XdmodInput:
    return XdmodInput(name, staged["files"][name]["url"], staged["files"][name]["sha256"])


def _ingest_asset(resource: Resource) -> Any:
    from airflow.sdk import Asset

    return Asset(name=ingest_asset_name(REALM_OF_KIND[resource.kind], resource.name))


def _ingest_and_reconcile(site: SiteConfig, resource: Resource, build: Any, **ingest_args: Any) -> tuple[Any, Any]:
    """xdmod_ingest (its asset event carries the pre-shred timestamp for the realm's aggregation DAG) and
    reconcile (XDMoD's rows for the day against XDMoD's rules applied to the staged file).

    reconcile runs when the XDMoD steps were skipped for an empty day too: XDMoD must then hold nothing.
    """
    asset = _ingest_asset(resource)

    @task(task_id="xdmod_ingest", pool=site.xdmod_for(resource).pool, outlets=[asset], **ingest_args)
    def xdmod_ingest(staged: dict[str, Any], timestamp: str) -> dict[str, Any]:
        result = _run(site, resource, build)
        aggregation_tasks.record_ingest(site, resource, get_current_context(), asset, staged, timestamp, result)
        return result

    @task(task_id="reconcile", trigger_rule="none_failed")
    def reconcile(staged: dict[str, Any]) -> dict[str, Any]:
        return reconciliation_tasks.reconcile_day(site, resource, get_current_context(), staged)

    return xdmod_ingest, reconcile


def build_job_dag(site: SiteConfig, resource: Resource) -> DAG:
    """Slurm and OpenShift resources: both are staged in XDMoD's Slurm format, then shredded and ingested;
    the jobs realm is aggregated by xdmod_aggregate_jobs, on this DAG's ingest event."""
    pool = site.xdmod_for(resource).pool
    with _daily_dag(site, resource) as dag:
        staged, timestamp = _stage_tasks(site, resource)

        @task(task_id="xdmod_shred", pool=pool)
        def xdmod_shred(staged: dict[str, Any]) -> dict[str, Any]:
            item = _staged_input(staged, staged["staged_name"])
            if staged["counts"]["staged"] == 0:
                raise AirflowSkipException("no staged rows for this day: nothing to shred or ingest")
            return _run(site, resource, lambda d: shred_slurm(resource.xdmod_resource, d, item))

        xdmod_ingest, reconcile = _ingest_and_reconcile(site, resource, lambda _d: ingest())
        timestamp >> xdmod_shred(staged) >> xdmod_ingest(staged, timestamp) >> reconcile(staged)
    return dag


def build_cloud_dag(site: SiteConfig, resource: Resource) -> DAG:
    """OpenStack resources: events and hypervisor facts shredded by directory, then ingested into the cloud
    realm (aggregated by xdmod_aggregate_cloud, on this DAG's ingest event).

    The stage task depends on the previous day's (depends_on_past): it reads that day's end state
    for flavors before a resize, so days are staged in order and a rerun is deterministic.
    """
    pool = site.xdmod_for(resource).pool
    with _daily_dag(site, resource) as dag:
        staged, timestamp = _stage_tasks(site, resource, depends_on_past=True)

        @task(task_id="xdmod_shred_events", pool=pool)
        def xdmod_shred_events(staged: dict[str, Any]) -> dict[str, Any]:
            if staged["counts"]["staged"] == 0:
                raise AirflowSkipException("no instance events for this day")
            item = _staged_input(staged, staged["xdmod_inputs"]["events"])
            return _run(site, resource, lambda d: shred_cloud(resource.xdmod_resource, "openstack", d,
                                                              staged["input_subdir"], item))  # fmt: skip

        @task(task_id="xdmod_shred_hypervisors", pool=pool, trigger_rule="none_failed")
        def xdmod_shred_hypervisors(staged: dict[str, Any]) -> dict[str, Any]:
            name = staged["xdmod_inputs"]["hypervisors"]
            if name is None:
                raise AirflowSkipException("no hypervisor facts staged (source.hypervisors: false)")
            item = _staged_input(staged, name)
            return _run(site, resource, lambda d: shred_cloud(resource.xdmod_resource, "cloudresourcespecs", d,
                                                              staged["input_subdir"], item))  # fmt: skip

        xdmod_ingest, reconcile = _ingest_and_reconcile(
            site, resource, lambda _d: ingest_datatype("openstack"), trigger_rule="none_failed_min_one_success"
        )
        events = xdmod_shred_events(staged)
        ingested = xdmod_ingest(staged, timestamp)
        timestamp >> events >> xdmod_shred_hypervisors(staged) >> ingested >> reconcile(staged)
    return dag


AGGREGATION_DAG_IDS = {realm: f"xdmod_aggregate_{name}" for realm, name in REALM_DAG_NAME.items()}


def build_aggregation_dag(site: SiteConfig, realm: Realm, resources: list[Resource]) -> DAG:
    """One realm's aggregation, scheduled on ANY of its resources' ingest events (a paused resource never
    stalls the others); one run at a time, so ingests finishing meanwhile wait for the next run, which
    finds them covered when this run's aggregation already saw them."""
    from airflow.sdk import Asset, AssetAny

    ingest_assets = [_ingest_asset(resource) for resource in resources]
    aggregated = Asset(name=aggregated_asset_name(realm))
    dag_id = AGGREGATION_DAG_IDS[realm]
    settle_seconds = int(site.aggregation.settle_delay.total_seconds())
    routes = _routes(site)
    with DAG(
        dag_id=dag_id,
        description=f"Aggregate XDMoD's {REALM_DAG_NAME[realm]} realm once for the ingests of "
        f"{', '.join(r.name for r in resources)}",
        schedule=AssetAny(*ingest_assets),
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args=_task_defaults(site.tasks, routes),
        tags=["xdmod", "aggregation", realm],
        params={"dry_run": Param(False, type="boolean", description="Log the command (and pod) without running it.")},
        deadline=_lateness_deadline(routes, dag_id, site.aggregation.lateness_deadline),
        doc_md=f"""
### XDMoD aggregation, {REALM_DAG_NAME[realm]} realm
Runs on any ingest of {", ".join(f"`{r.dag_id}`" for r in resources)} (asset events `xdmod-ingest.{realm}.*`).
`settle` waits {site.aggregation.settle_delay} so that ingests finishing meanwhile are aggregated by the
same XDMoD run; `aggregate` (in the `{site.xdmod.pool}` pool) runs
`xdmod-ingestor --aggregate={realm} --last-modified-start-date TS` with the earliest pre-shred timestamp among
the ingests not yet covered, and records them as covered (asset `{aggregated_asset_name(realm)}`).
A run that finds every ingest covered skips. Trigger by hand to aggregate what is pending.
""",
    ) as dag:
        settle = DateTimeSensorAsync(
            task_id="settle",
            target_time=f"{{{{ (dag_run.run_after + macros.timedelta(seconds={settle_seconds})).isoformat() }}}}",
        )

        @task(task_id="aggregate", pool=site.xdmod.pool, inlets=[*ingest_assets, aggregated], outlets=[aggregated])
        def aggregate_realm() -> dict[str, Any]:
            return aggregation_tasks.aggregate_realm(site, realm, get_current_context(), ingest_assets, aggregated)

        settle >> aggregate_realm()
    return dag


def build_aggregation_dags(site: SiteConfig | None = None) -> dict[str, DAG]:
    """One aggregation DAG per realm that has resources."""
    site = site or load_site_config()
    dags = {}
    for realm, dag_id in AGGREGATION_DAG_IDS.items():
        members = [resource for resource in site.resources if REALM_OF_KIND[resource.kind] == realm]
        if members:
            dags[dag_id] = build_aggregation_dag(site, realm, members)
    return dags


FRESHNESS_DAG_ID = "xdmod_usage_freshness"


def build_freshness_dag(site: SiteConfig) -> DAG:
    """Checks the staging store for missing days: runs that never happened fire no callback."""
    with DAG(
        dag_id=FRESHNESS_DAG_ID,
        description="Alert when any resource's recent UTC days are missing or incomplete in staging",
        schedule=CronTriggerTimetable(site.freshness.schedule, timezone="UTC"),
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,  # only the present state matters
        max_active_runs=1,
        tags=["xdmod", "usage", "monitoring"],
        doc_md=f"Checks the last {site.freshness.days} days of every resource's staging (manifest present, "
        "files present with their sizes). A failure lists each gap; rerun or backfill those days. "
        "The same check runs outside Airflow: `python -m xdmod_usage.freshness --config FILE`.",
        default_args=_task_defaults(site.tasks, _routes(site), retries=1, execution_timeout=dt.timedelta(minutes=30)),
    ) as dag:

        @task(task_id="check_staged_days")
        def check_staged_days() -> dict[str, Any]:
            return airflow_tasks.check_freshness(site, get_current_context())

        check_staged_days()
    return dag


PREFLIGHT_DAG_ID = "xdmod_usage_preflight"


def build_preflight_dag(site: SiteConfig) -> DAG:
    """Manual checks before go-live: connections, staging, sources, XDMoD's DB settings and resources."""
    with DAG(
        dag_id=PREFLIGHT_DAG_ID,
        description="Check the site's setup before go-live (trigger by hand)",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        tags=["xdmod", "usage", "setup"],
        doc_md="Trigger by hand after any change of connections or config. Each failed check says what is "
        "wrong. The pool is checked by `python -m xdmod_usage.preflight` (it needs the metadata database).",
        # One retry, for a passing network blip: a preflight reports rather than waits.
        default_args=_task_defaults(
            site.tasks,
            _routes(site),
            retries=1,
            retry_delay=dt.timedelta(seconds=30),
            execution_timeout=dt.timedelta(minutes=15),
        ),
    ) as dag:

        @task(task_id="check_setup")
        def check_setup() -> list[dict[str, Any]]:
            return airflow_tasks.preflight(site)

        check_setup()
    return dag


def build_usage_dags(site: SiteConfig | None = None) -> dict[str, DAG]:
    """Every per-resource DAG of the site config, keyed by dag_id (for a DAG file's globals)."""
    site = site or load_site_config()
    builders = {"slurm": build_job_dag, "openshift": build_job_dag, "openstack": build_cloud_dag}
    dags = {resource.dag_id: builders[resource.kind](site, resource) for resource in site.resources}
    dags[FRESHNESS_DAG_ID] = build_freshness_dag(site)
    dags[PREFLIGHT_DAG_ID] = build_preflight_dag(site)
    return dags


HIERARCHY_DAG_ID = "xdmod_hierarchy"
HIERARCHY_PARAMS = {
    "as_of": Param(
        "",
        type="string",
        description="Regenerate the files in force at this date (its end) or ISO time, from the history; "
        "empty: take today's snapshot.",
    ),
    "import_files": Param(
        False, type="boolean", description="With as_of: import the regenerated files into XDMoD (a rollback)."
    ),
    "dry_run": Param(False, type="boolean", description="Log XDMoD commands (and pods) without running them."),
}


def _section_defaults(site: SiteConfig, section: Any, **overrides: Any) -> dict[str, Any]:
    """Task defaults of a site-wide DAG whose config section may override the site's tasks and alerts."""
    routes = [route.model_dump(exclude_none=True) for route in site.alerts_for(section)]
    return _task_defaults(site.tasks_for(section), routes, **overrides)


def build_hierarchy_dag(site: SiteConfig) -> DAG:
    """Daily: the hierarchy's sources -> history (only changes) -> staged files -> import (only changed files,
    in the XDMoD pool) -> re-ingest of the history the hierarchy applies to."""
    from . import hierarchy_tasks

    config = site.hierarchy
    assert config is not None
    defaults = _section_defaults(site, config)
    pool = site.xdmod.pool
    with DAG(
        dag_id=HIERARCHY_DAG_ID,
        description="XDMoD's organization / PI / project hierarchy, names and cloud project PIs, with history",
        schedule=CronTriggerTimetable(config.schedule, timezone="UTC"),
        start_date=dt.datetime.combine(config.start_date, dt.time(0), tzinfo=dt.UTC),
        catchup=False,  # the hierarchy is of the present; past states come from the history (as_of)
        max_active_runs=1,
        default_args=defaults,
        tags=["xdmod", "hierarchy"],
        deadline=_lateness_deadline(defaults["on_failure_callback"].routes, HIERARCHY_DAG_ID, config.lateness_deadline),
        params=HIERARCHY_PARAMS,
        doc_md=f"""
### XDMoD hierarchy
Levels (top to bottom): {" / ".join(config.levels)}; groups are the usage rows' **{config.group_field}**.
Sources, in priority order: {", ".join(source.type for source in config.sources)}.
`snapshot` merges them, records only the changes in the history (connection `{config.db_conn_id}`) and stages
`hierarchy.csv`, `group-to-hierarchy.csv`, `names.csv`, `cloud-project-to-pi.csv` under
`{site.staging.root}/_hierarchy/<day>/`; `import_files` runs `xdmod-import-csv` for the files XDMoD has not
imported with these bytes; `reingest` then re-ingests the history ({config.reingest_chunk_days}-day chunks), since
XDMoD applies a hierarchy only to data ingested after it. Trigger with `as_of` to regenerate a past day's files.
""",
    ) as dag:

        @task(task_id="snapshot")
        def snapshot() -> dict[str, Any]:
            return hierarchy_tasks.snapshot(site, get_current_context())

        @task(task_id="import_files", pool=pool)
        def import_files(staged: dict[str, Any]) -> dict[str, Any]:
            return hierarchy_tasks.import_files(site, get_current_context(), staged)

        @task(task_id="reingest", pool=pool)
        def reingest(imported: dict[str, Any]) -> dict[str, Any]:
            return hierarchy_tasks.reingest(site, get_current_context(), imported)

        reingest(import_files(snapshot()))
    return dag


def build_hierarchy_dags(site: SiteConfig | None = None) -> dict[str, DAG]:
    """The hierarchy DAG, when the site config has a `hierarchy` section."""
    site = site or load_site_config()
    return {} if site.hierarchy is None else {HIERARCHY_DAG_ID: build_hierarchy_dag(site)}


RELOAD_DAG_ID = "xdmod_reload"


def _reload_params(names: list[str]) -> dict[str, Param]:
    def flag(default: bool, description: str) -> Param:
        return Param(default, type="boolean", description=description)

    return {
        "resource": Param(names[0], enum=names, description="The job resource to reload."),
        "list_only": flag(True, "Only check and list what would be done."),
        "confirm": Param(
            "",
            type="string",
            description="The resource name again (XDMoD 11.0: 'all job resources'): nothing is deleted without it.",
        ),
        "restage": flag(
            True,
            "Rebuild each day from its raw archive with today's code and policies before shredding "
            "(false: shred the staged files as they are).",
        ),
        "allow_loss_before_start": flag(
            False, "Delete even when XDMoD holds jobs from before the resource's start_date (no archive has them)."
        ),
        "dry_run": flag(False, "Log XDMoD commands (and pods) without running them."),
    }


def build_reload_dag(site: SiteConfig, resources: list[Resource]) -> DAG:
    """Manual: check the archive, rebuild every day from it, delete the resource's jobs in XDMoD, shred every
    day again in order, ingest (the aggregation DAG aggregates), reconcile every day."""
    from airflow.sdk import AssetAlias

    from . import reload_tasks

    pool = site.xdmod.pool
    names = [resource.name for resource in resources]
    with DAG(
        dag_id=RELOAD_DAG_ID,
        description="Reload one job resource's history from the staging archive (manual, explicit confirmation)",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args=_task_defaults(site.tasks, _routes(site)),
        tags=["xdmod", "reload", "corrections"],
        params=_reload_params(names),
        doc_md="""
### Corrections by reload
Use after a policy change or a fixed bug that changes already-ingested days (XDMoD never deletes rows, so
re-shredding changed rows would double count). `plan` checks that every day from the resource's start_date has
a complete manifest and its raw archive (else nothing is deleted) and lists what happens; `restage` rebuilds every
day from its raw archive; then, in the XDMoD pool: `xdmod-admin --jobs --delete=R --force` (XDMoD 11.5; on 11.0
`--truncate`, every job resource is reloaded), one `xdmod-shredder -d` per month in day order, `xdmod-ingestor
--ingest`; the jobs aggregation DAG aggregates on the ingest event; `reconcile` checks every day. Pause the
resource's daily DAG meanwhile. README: "Corrections by reload".
""",
    ) as dag:

        @task(task_id="plan")
        def plan() -> dict[str, Any]:
            return reload_tasks.plan(site, get_current_context())

        @task(task_id="restage")
        def restage(planned: dict[str, Any]) -> dict[str, Any]:
            return reload_tasks.restage(site, get_current_context(), planned)

        @task(task_id="xdmod_timestamp", pool=pool)
        def xdmod_timestamp() -> str:
            context = get_current_context()
            return airflow_tasks.xdmod_db_timestamp(site, site.resource(str(context["params"]["resource"])))

        @task(task_id="delete_jobs", pool=pool)
        def delete_jobs() -> dict[str, Any]:
            return reload_tasks.delete_jobs(site, get_current_context())

        @task(task_id="shred", pool=pool)
        def shred(restaged: dict[str, Any]) -> dict[str, Any]:
            return reload_tasks.shred(site, get_current_context(), restaged)

        @task(task_id="xdmod_ingest", pool=pool, outlets=[AssetAlias(reload_tasks.ALIAS)])
        def xdmod_ingest(restaged: dict[str, Any], timestamp: str) -> dict[str, Any]:
            return reload_tasks.ingest(site, get_current_context(), restaged, timestamp)

        @task(task_id="reconcile")
        def reconcile(restaged: dict[str, Any]) -> dict[str, Any]:
            return reload_tasks.reconcile(site, get_current_context(), restaged)

        restaged = restage(plan())
        timestamp = xdmod_timestamp()
        ingested = xdmod_ingest(restaged, timestamp)
        restaged >> timestamp >> delete_jobs() >> shred(restaged) >> ingested >> reconcile(restaged)
    return dag


def build_reload_dags(site: SiteConfig | None = None) -> dict[str, DAG]:
    """The reload DAG, when the site has job resources (Slurm, OpenShift)."""
    site = site or load_site_config()
    resources = [resource for resource in site.resources if REALM_OF_KIND[resource.kind] == "job"]
    return {RELOAD_DAG_ID: build_reload_dag(site, resources)} if resources else {}


BACKUP_DAG_ID = "xdmod_backup"
RESTORE_DAG_ID = "xdmod_restore"


def _backup_defaults(site: SiteConfig, **overrides: Any) -> dict[str, Any]:
    assert site.backup is not None
    return _section_defaults(site, site.backup, **overrides)


def build_backup_dag(site: SiteConfig) -> DAG:
    """Weekly: dump (in the XDMoD pool) -> configuration, raw archives -> verify by restore -> retention."""
    from airflow.sdk import AssetAlias

    from . import backup_tasks
    from .backup_tasks import ASSET_ALIAS, XdmodBackupOperator

    backup = site.backup
    assert backup is not None
    defaults = _backup_defaults(site)
    with DAG(
        dag_id=BACKUP_DAG_ID,
        description="Weekly backup of XDMoD's databases, accounts and configuration, verified by a restore",
        schedule=CronTriggerTimetable(backup.schedule, timezone="UTC"),
        start_date=dt.datetime.combine(backup.start_date, dt.time(0), tzinfo=dt.UTC),
        catchup=False,  # a backup is of the present: a missed week is not made up later
        max_active_runs=1,
        default_args=defaults,
        tags=["xdmod", "backup"],
        deadline=_lateness_deadline(defaults["on_failure_callback"].routes, BACKUP_DAG_ID, backup.lateness_deadline),
        doc_md=f"""
### XDMoD backup
`dump_databases` runs mysqldump (one consistent snapshot) in the `{site.xdmod.pool}` pool, so no XDMoD
command runs meanwhile; `verify` restores everything into scratch databases on connection
`{backup.verify_conn_id}` and compares row counts and CHECKSUM TABLE with the snapshot. Only then is
`manifest.json` written: a backup without it is not complete. Store: `{backup.store.root}/backups/<id>/`.
Retention: newest of the last {backup.retention.weekly} weeks and {backup.retention.monthly} months.
Restore: trigger `{RESTORE_DAG_ID}` (README, "Restore runbook").
""",
    ) as dag:
        dump = XdmodBackupOperator(task_id="dump_databases", site=site, pool=site.xdmod.pool)

        @task(task_id="backup_config")
        def config(dumped: dict[str, Any]) -> dict[str, Any] | None:
            return backup_tasks.backup_config(site, dumped["id"])

        @task(task_id="backup_archive")
        def archive() -> dict[str, Any] | None:
            return backup_tasks.backup_archive(site)

        @task(task_id="verify", outlets=[AssetAlias(ASSET_ALIAS)])
        def verify(dumped: dict[str, Any], config: dict[str, Any] | None, archive: dict[str, Any] | None) -> Any:
            extra = {key: value for key, value in (("config", config), ("archive", archive)) if value is not None}
            return backup_tasks.verify(site, dumped["id"], extra, get_current_context())

        @task(task_id="retention")
        def retention() -> dict[str, Any]:
            return backup_tasks.retention(site)

        dumped = dump.output
        archived = archive()
        dump >> archived
        verify(dumped, config(dumped), archived) >> retention()
    return dag


def build_restore_dag(site: SiteConfig) -> DAG:
    """Manual: check the chosen backup, then restore it (in the XDMoD pool, never retried by itself)."""
    from . import backup_tasks
    from .backup_tasks import XdmodRestoreOperator

    with DAG(
        dag_id=RESTORE_DAG_ID,
        description="Restore a verified XDMoD backup (manual trigger, explicit confirmation)",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        default_args=_backup_defaults(site, retries=0),
        tags=["xdmod", "backup", "restore"],
        params={
            "backup_id": Param("", type="string", description="The backup to restore, e.g. 20261122T030000Z."),
            "target_conn_id": Param("", type="string", description="MySQL connection of the server to restore to."),
            "confirm": Param("", type="string", description="Type the backup id again to confirm."),
            "replace": Param(False, type="boolean", description="Drop and replace databases that have tables."),
            "databases": Param([], type="array", description="Only these databases (empty: all in the backup)."),
            "users": Param(True, type="boolean", description="Restore the accounts and grants."),
            "config_dir": Param("", type="string", description="Unpack the configuration here (empty: skip)."),
        },
        doc_md='Restores a verified backup. See README, "Restore runbook". The restore holds the XDMoD pool, '
        "so the ETL DAGs' XDMoD steps wait until it is done.",
    ) as dag:

        @task(task_id="check_backup")
        def check() -> dict[str, Any]:
            return backup_tasks.check_restore(site, get_current_context())

        check() >> XdmodRestoreOperator(task_id="restore", site=site, pool=site.xdmod.pool)
    return dag


def build_backup_dags(site: SiteConfig | None = None) -> dict[str, DAG]:
    """The backup and restore DAGs, when the site config has a `backup` section."""
    site = site or load_site_config()
    if site.backup is None:
        return {}
    return {BACKUP_DAG_ID: build_backup_dag(site), RESTORE_DAG_ID: build_restore_dag(site)}
