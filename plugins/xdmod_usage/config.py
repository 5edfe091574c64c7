"""Site configuration: one YAML file describing every resource, validated once at DAG parse time.

Why a strict schema: a typo in a hand-edited file must not make a DAG silently disappear or run
with a default the operator did not mean. Every error names the file, the key and the reason.
Credentials never live here: only Airflow connection ids do.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_ENV = "XDMOD_USAGE_CONFIG"
# SQL the library runs, beside plugins/ (repo, docker-compose) or where $XDMOD_USAGE_SQL_DIR says.
SQL_DIR = Path(os.environ.get("XDMOD_USAGE_SQL_DIR", Path(__file__).resolve().parents[2] / "include" / "sql"))
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """The site configuration is invalid; the message names file, key and reason."""


def _parse_duration(value: Any) -> dt.timedelta:
    """Accept 90, "90s", "30m", "2h", "1d" so operators write durations the way they think them."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 30m, 2h or 1d")
    if isinstance(value, int):
        return dt.timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 90s, 30m, 2h or 1d, got {value!r}")
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


Duration = Annotated[dt.timedelta, BeforeValidator(_parse_duration)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StagingConfig(_Strict):
    """Where a day's files are staged: a file:// or s3:// URL, plus an optional connection id."""

    root: str = "file:///var/lib/xdmod-usage/staging"
    conn_id: ConnId | None = None
    spool_dir: str | None = Field(
        default=None, description="Local scratch for streaming writes; default: the system temp dir."
    )

    @field_validator("root")
    @classmethod
    def _check_root(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("file", "s3"):
            raise ValueError(f"must be a file:// or s3:// URL, got {value!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; put them in the Airflow connection (conn_id)")
        if parts.scheme == "file" and not parts.path.startswith("/"):
            raise ValueError("a file:// root must be absolute, e.g. file:///var/lib/xdmod-usage/staging")
        if parts.scheme == "s3" and not parts.netloc:
            raise ValueError("an s3:// root needs a bucket, e.g. s3://bucket/prefix")
        return value.rstrip("/")


class AlertRoute(_Strict):
    """Where failure alerts go. Delivery is wired by the alerting module; routes are validated here."""

    type: Literal["email", "slack", "webhook"]
    to: list[str] = Field(default_factory=list)
    conn_id: ConnId | None = Field(
        default=None, description="email: SMTP connection (smtp_default); slack/webhook: required"
    )
    sender: str | None = Field(default=None, description="email From: (default xdmod-usage@localhost)")

    @model_validator(mode="after")
    def _check_target(self) -> AlertRoute:
        if self.type == "email" and not self.to:
            raise ValueError("an email route needs 'to' (a list of addresses)")
        if self.type in ("slack", "webhook") and not self.conn_id:
            raise ValueError(f"a {self.type} route needs 'conn_id' (the webhook URL lives in the connection)")
        return self


K8sName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")]


class PodResources(_Strict):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "500m", "memory": "1Gi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "4Gi"})


class KubernetesRunnerConfig(_Strict):
    """XDMoD commands as pods (KubernetesPodOperator) in XDMoD's namespace."""

    namespace: K8sName
    image: str = Field(min_length=1, description="XDMoD image (pin a tag or digest).")
    init_image: str = Field(
        default="amazon/aws-cli:2.22.35", description="Image with sh, sha256sum and the aws CLI for the copy step."
    )
    service_account: K8sName = "xdmod-etl"
    kubernetes_conn_id: ConnId | None = Field(default=None, description="Unset: in-cluster configuration.")
    config_map: K8sName = Field(default="xdmod-etc", description="ConfigMap with /etc/xdmod.")
    db_secret: K8sName = Field(default="xdmod-db", description="Secret holding portal_settings.ini (DB access).")
    staging_secret: K8sName | None = Field(
        default=None, description="Secret with AWS_* variables (and AWS_ENDPOINT_URL) for s3:// staging."
    )
    staging_claim: K8sName | None = Field(
        default=None, description="PVC that carries file:// staging; required with file:// staging."
    )
    input_size_limit: str = "2Gi"
    resources: PodResources = PodResources()
    startup_timeout: Duration = dt.timedelta(minutes=5)
    on_finish_action: Literal["delete_pod", "delete_succeeded_pod", "keep_pod"] = "delete_succeeded_pod"
    labels: dict[str, str] = Field(default_factory=dict)


class SshRunnerConfig(_Strict):
    """XDMoD commands on the XDMoD host over SSH (XDMoD installed on a VM)."""

    conn_id: ConnId
    command_dir: str | None = Field(default=None, description="Directory of XDMoD's commands; unset: remote PATH.")
    resources_json: str = Field(default="/etc/xdmod/resources.json", description="Read by the preflight check.")

    @field_validator("command_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class XdmodConfig(_Strict):
    """How XDMoD's own commands are run."""

    runner: Literal["dry_run", "kubernetes", "ssh"] = "dry_run"
    kubernetes: KubernetesRunnerConfig | None = None
    ssh: SshRunnerConfig | None = None
    pool: Name = "xdmod"
    db_conn_id: ConnId = Field(
        default="xdmod_db",
        description="MySQL connection to XDMoD's database server; its NOW() stamps --last-modified-start-date.",
    )
    input_dir: str = Field(
        default="/srv/xdmod-usage/input",
        description="Directory on the XDMoD side where the runner places a day's staged files.",
    )
    version: Literal["11.0", "11.5"] = Field(
        default="11.5",
        description="XDMoD's release line: 11.5 deletes one resource's jobs (xdmod-admin --jobs --delete); "
        "11.0 can only truncate every resource's jobs, so a reload there reloads every job resource.",
    )

    @field_validator("input_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value.rstrip("/") or "/"

    @model_validator(mode="after")
    def _runner_settings(self) -> XdmodConfig:
        if self.runner == "kubernetes" and self.kubernetes is None:
            raise ValueError("runner 'kubernetes' needs a 'kubernetes' section (namespace, image, ...)")
        if self.runner == "ssh" and self.ssh is None:
            raise ValueError("runner 'ssh' needs an 'ssh' section (conn_id, command_dir)")
        return self


class TaskPolicy(_Strict):
    """Retry and timeout policy applied to every task of a DAG, and how often long steps log progress."""

    retries: int = Field(default=3, ge=0, le=20)
    retry_delay: Duration = dt.timedelta(minutes=2)
    max_retry_delay: Duration = dt.timedelta(minutes=30)
    execution_timeout: Duration = dt.timedelta(hours=2)
    progress_interval: Duration = Field(
        default=dt.timedelta(seconds=30),
        description="Seconds between progress lines (rows, rate, ETA) and heartbeats of long steps.",
    )

    @field_validator("progress_interval")
    @classmethod
    def _progress_interval(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(seconds=1) <= value <= dt.timedelta(hours=1):
            raise ValueError(f"must be between 1s and 1h, got {value.total_seconds():g} s")
        return value


class SlurmSource(_Strict):
    """sacct, run locally or on a login node over SSH."""

    cluster: Name
    ssh_conn_id: ConnId | None = Field(default=None, description="SSH connection; unset = run sacct locally.")
    sacct_path: str = "sacct"
    sacctmgr_path: str = "sacctmgr"
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for sacct, e.g. SLURM_CONF. TZ is always UTC."
    )

    @field_validator("sacct_path", "sacctmgr_path")
    @classmethod
    def _plain_command(cls, value: str) -> str:
        # Run as `env K=V <path> ...`: a leading '-' or an '=' would be read by env, not run.
        if not value or value.startswith("-") or "=" in value:
            raise ValueError("must be a command name or path, not starting with '-' and without '='")
        return value

    @field_validator("env")
    @classmethod
    def _no_tz(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if key == "TZ":
                raise ValueError("TZ is fixed to UTC: XDMoD reads sacct times as UTC")
        return value


class OpenShiftPolicy(_Strict):
    """How OpenShift usage becomes XDMoD rows, for days from ``effective`` on.

    XDMoD never deletes rows: a day already ingested must keep its ids and times, so a policy
    change never applies retroactively; it takes a new entry with a later effective date.
    """

    effective: dt.date
    resolution: Duration = Field(
        default=dt.timedelta(minutes=15),
        description="Window size: rows split where a whole window has no samples (a stopped pod).",
    )
    cpu: Literal["millicores", "cores_ceil", "cores_round"] = Field(
        default="millicores",
        description="ncpus from the CPU request: millicores (x1000: XDMoD CPU hours are then milli-core hours), "
        "cores_ceil (whole cores, rounded up) or cores_round (whole cores, nearest, at least 1 if requested).",
    )
    gpu_scale: int = Field(default=1, ge=1, le=1000, description="gres/gpu count = GPU-equivalents x this.")
    mig: Literal["fraction", "whole"] = Field(
        default="fraction",
        description="fraction: a MIG slice counts as its share of a GPU (profile 'Ng.*' = N/7 unless set in "
        "mig_fractions); whole: each slice counts as one GPU.",
    )
    mig_fractions: dict[str, float] = Field(default_factory=dict, description="MIG profile -> share of a GPU.")
    gpu_fallback_type: str | None = Field(
        default=None, description="GPU type for nodes without the product label; unset: untyped gres/gpu."
    )
    pi_keys: list[str] = Field(default_factory=lambda: ["cf_pi", "openshift.io/requester"])
    project_keys: list[str] = Field(default_factory=lambda: ["cf_project_id"])
    user_keys: list[str] = Field(default_factory=lambda: ["openshift.io/requester", "cf_pi"])
    mapping_file: str | None = Field(
        default=None, description="CSV namespace,pi,project[,user] that overrides namespace metadata."
    )
    default_pi: str = "unattributed"
    default_project: str = "unattributed"

    @field_validator("resolution")
    @classmethod
    def _divides_day(cls, value: dt.timedelta) -> dt.timedelta:
        seconds = value.total_seconds()
        if seconds < 10 or 86400 % seconds:
            raise ValueError("must divide one day and be at least 10s (Prometheus' 11,000 points per series)")
        return value

    @field_validator("mig_fractions")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        for profile, share in value.items():
            if not 0 < share <= 1:
                raise ValueError(f"{profile}: a share of a GPU must be in (0, 1], got {share}")
        return value


class OpenShiftSource(_Strict):
    """OpenShift's Prometheus (Thanos querier) through an Airflow HTTP connection."""

    prometheus_conn_id: ConnId = Field(
        description="HTTP connection: host = base URL, password = bearer token, extra verify/timeout."
    )
    metric: Literal["scheduler", "kube_state_metrics"] = Field(
        default="scheduler",
        description="scheduler: kube_pod_resource_request (pod-level, incl. init containers and overhead); "
        "kube_state_metrics: kube_pod_container_resource_requests summed over containers, counted while the "
        "pod is Running (for clusters without the scheduler metric; init containers and overhead not included).",
    )
    scrape_interval: Duration = Field(
        default=dt.timedelta(seconds=30), description="Scrape interval of the request metric: one sample = this."
    )
    gpu_product_label: str = "label_nvidia_com_gpu_product"
    max_hole: Duration = Field(
        default=dt.timedelta(minutes=10), description="A stretch with no request samples at all longer than this "
        "is a hole in Prometheus' data, recorded in the manifest."
    )  # fmt: skip
    on_hole: Literal["warn", "fail"] = "warn"
    parallel_queries: int = Field(
        default=2, ge=1, le=16, description="Queries sent side by side (each is a scan of the day on the server)."
    )
    policies: list[OpenShiftPolicy] = Field(
        default_factory=lambda: [OpenShiftPolicy(effective=dt.date(1970, 1, 1))], min_length=1
    )

    @model_validator(mode="after")
    def _check(self) -> OpenShiftSource:
        dates = [policy.effective for policy in self.policies]
        if dates != sorted(set(dates)):
            raise ValueError("policies: effective dates must be unique and in ascending order")
        step = self.scrape_interval.total_seconds()
        if step <= 0 or step != int(step):
            raise ValueError("scrape_interval: must be a whole number of seconds")
        for index, policy in enumerate(self.policies):
            if policy.resolution.total_seconds() % step:
                raise ValueError(f"policies[{index}].resolution: must be a multiple of scrape_interval")
        return self

    def policy_for(self, day: dt.date) -> OpenShiftPolicy:
        """The policy in force on ``day`` (the latest one effective on or before it)."""
        chosen = [policy for policy in self.policies if policy.effective <= day]
        if not chosen:
            raise ValueError(f"no policy is effective on {day}: the first starts {self.policies[0].effective}")
        return chosen[-1]


class OpenStackSource(_Strict):
    """An OpenStack cloud through openstacksdk: an Airflow connection or a clouds.yaml cloud name.

    The account needs the admin role: every project's servers (deleted ones included), their
    instance actions, hypervisors, and Keystone's projects and users.
    """

    conn_id: ConnId | None = Field(
        default=None, description="Airflow connection: host = auth URL, login/password, extra = project, "
        "domains, region, interface, verify/cacert, auth_type (password or v3applicationcredential).",
    )  # fmt: skip
    cloud: str | None = Field(default=None, min_length=1, description="A clouds.yaml cloud on the worker instead.")
    region_name: str | None = None
    interface: Literal["public", "internal", "admin"] = "public"
    zero_vcpus: Literal["quarantine", "as_one"] = Field(
        default="quarantine",
        description="An instance whose flavor has 0 vCPUs (XDMoD cannot count it): quarantine its events, "
        "or count it as 1 vCPU. Either way it is listed in the manifest.",
    )
    hypervisors: bool = Field(default=True, description="Stage hypervisor sizes for XDMoD's utilization.")
    page_size: int = Field(default=1000, ge=1, le=1000, description="Servers per list call (Nova's max_limit).")
    timeout: Duration = dt.timedelta(seconds=60)
    retries: int = Field(default=4, ge=0, le=10, description="Retries of a call that got a 5xx or timed out.")

    @model_validator(mode="after")
    def _one_credential_source(self) -> OpenStackSource:
        if (self.conn_id is None) == (self.cloud is None):
            raise ValueError("give exactly one of conn_id (an Airflow connection) or cloud (a clouds.yaml name)")
        return self


class Resource(_Strict):
    """One XDMoD resource fed by one source: becomes one daily DAG."""

    name: Name
    kind: Literal["slurm", "openshift", "openstack"]
    xdmod_resource: Name = Field(description="The resource code in XDMoD's resources.json.")
    start_date: dt.date
    end_date: dt.date | None = Field(
        default=None, description="Last UTC day to account (a retired resource keeps its DAG for reruns)."
    )
    source: dict[str, Any]
    settle_delay: Duration = Field(
        default=dt.timedelta(minutes=30),
        description="Wait this long after the window ends before pulling, for late records.",
    )
    max_active_runs: int = Field(default=2, ge=1, le=32)
    lateness_deadline: Duration | None = Field(
        default=dt.timedelta(hours=12),
        description="Alert when a day's run is not done this long after it was queued; null: no deadline.",
    )
    max_quarantine_share: float = Field(default=0.01, ge=0.0, le=1.0)
    staging: StagingConfig | None = None
    xdmod: XdmodConfig | None = None
    tasks: TaskPolicy | None = None
    alerts: list[AlertRoute] | None = None
    tags: list[str] = Field(default_factory=list)

    @property
    def dag_id(self) -> str:
        return f"usage_{self.kind}_{self.name}"

    def slurm_source(self) -> SlurmSource:
        return SlurmSource.model_validate(self.source)

    def openshift_source(self) -> OpenShiftSource:
        return OpenShiftSource.model_validate(self.source)

    def openstack_source(self) -> OpenStackSource:
        return OpenStackSource.model_validate(self.source)


class FreshnessConfig(_Strict):
    """The freshness watch: every resource must have its recent days staged."""

    days: int = Field(default=7, ge=1, le=400)
    grace: Duration = Field(
        default=dt.timedelta(hours=6), description="Time after window end + settle delay before a day is due."
    )
    schedule: str = Field(default="0 */6 * * *", description="Cron (UTC) of the xdmod_usage_freshness DAG.")


class BackupRetention(_Strict):
    """How many verified backups stay: the newest of each of the last N weeks and M months."""

    weekly: int = Field(default=4, ge=1, le=520)
    monthly: int = Field(default=6, ge=0, le=240)


class BackupConfigSource(_Strict):
    """Where XDMoD's configuration comes from: a directory on the worker, or the XDMoD host over SSH."""

    source: Literal["path", "ssh", "none"] = Field(
        default="path", description="path: a directory on the worker (e.g. the xdmod-etc ConfigMap mounted); "
        "ssh: tar of `path` on the XDMoD host through the SSH runner's connection; none: not backed up.",
    )  # fmt: skip
    path: str = "/etc/xdmod"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "":
            raise ValueError("must be an absolute directory path other than /")
        return value.rstrip("/")


_DB_NAME = r"^[A-Za-z0-9_$-]{1,64}$"


def _valid_cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"not a valid cron expression: {value!r}")
    return value


class BackupConfig(_Strict):
    """The weekly backup of XDMoD's databases, accounts and configuration (DAGs xdmod_backup, xdmod_restore)."""

    schedule: str = Field(default="0 3 * * 0", description="Cron (UTC) of xdmod_backup: Sundays 03:00.")
    start_date: dt.date = dt.date(2026, 1, 1)
    db_conn_id: ConnId | None = Field(
        default=None, description="MySQL connection to back up from; unset: xdmod.db_conn_id. Needs SELECT, "
        "SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, PROCESS, and SELECT on mysql.user for the accounts.",
    )  # fmt: skip
    databases: list[Annotated[str, Field(pattern=_DB_NAME)]] = Field(
        default_factory=lambda: [
            *("mod_shredder", "mod_hpcdb", "moddb", "modw", "modw_aggregates", "modw_filters", "mod_logger")
        ],
        description="Databases that must exist: a missing one fails the backup.",
    )
    discover: list[str] = Field(
        default_factory=lambda: ["mod%"], description="LIKE patterns: matching databases are backed up too."
    )
    optional: list[Annotated[str, Field(pattern=_DB_NAME)]] = Field(
        default_factory=lambda: [
            *("modw_etl", "modw_cloud", "modw_supremm", "modw_jobefficiency", "modw_ondemand", "mod_appkernel"),
            "modw_gateways",
        ],
        description="Module databases backed up when present; absent ones are noted in the manifest.",
    )
    users: list[Annotated[str, Field(pattern=r"^[^'\\\s]{1,80}$")]] = Field(
        default_factory=lambda: ["xdmod"], description="Accounts (every host) whose CREATE USER and grants are kept."
    )
    config: BackupConfigSource = BackupConfigSource()
    store: StagingConfig = StagingConfig(root="file:///var/lib/xdmod-usage/backups")
    archive: Literal["copy", "verify", "none"] = Field(
        default="copy", description="Raw source archives of every resource: copy into the backup store "
        "(content-addressed, only new ones), verify in place (re-hash), or none.",
    )  # fmt: skip
    verify_conn_id: ConnId = Field(
        default="xdmod_backup_scratch", description="MySQL connection to a scratch server (same major version, "
        "event_scheduler OFF) where each backup is restored as xuv_<db> and compared.",
    )  # fmt: skip
    encryption_key_conn_id: ConnId | None = Field(
        default=None, description="Connection whose password is a base64 32-byte key: encrypts every object."
    )
    compression_level: int = Field(default=6, ge=1, le=9)
    retention: BackupRetention = BackupRetention()
    mysqldump_path: str = "mysqldump"
    mysql_path: str = "mysql"
    lock_timeout: Duration = Field(
        default=dt.timedelta(seconds=30), description="Wait at most this for the brief table locks that align "
        "the dump's snapshot with the verification's (a long-running statement on a table delays them).",
    )  # fmt: skip
    lateness_deadline: Duration | None = dt.timedelta(hours=12)
    tasks: TaskPolicy | None = None
    alerts: list[AlertRoute] | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _valid_cron(value)

    @field_validator("mysqldump_path", "mysql_path")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value or value.startswith("-"):
            raise ValueError("must be a command name or path")
        return value


HierarchyLevel = Literal["organization", "pi", "project"]
LEVEL_ORDER: tuple[HierarchyLevel, ...] = ("organization", "pi", "project")


class FileHierarchySource(_Strict):
    """The site's own mapping file (YAML: organizations, people, projects; see README)."""

    type: Literal["file"]
    path: str

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class ColdFrontResourceMap(_Strict):
    """How a ColdFront resource's allocations name the group XDMoD sees on one XDMoD resource."""

    xdmod_resource: Name = Field(description="The resource code in XDMoD's resources.json.")
    group_attribute: str | None = Field(
        default=None, description="Allocation attribute holding the group name the usage rows carry (e.g. "
        "slurm_account_name, Allocated Project ID); unset: the ColdFront project title.",
    )  # fmt: skip
    cloud: bool = Field(default=False, description="A cloud resource: also write cloud-project-to-pi rows.")


class ColdFrontHierarchySource(_Strict):
    """ColdFront's REST API plugin (1.1.10+): projects, PIs, allocations, user names."""

    type: Literal["coldfront"]
    conn_id: ConnId = Field(description="HTTP connection: host = ColdFront's base URL, password = API token "
                            "of a staff account (user names need staff).")  # fmt: skip
    resources: dict[str, ColdFrontResourceMap] = Field(
        min_length=1, description="ColdFront resource name -> how its allocations map to an XDMoD resource."
    )
    organization_attribute: str | None = Field(
        default="Institution", description="Project attribute holding the organization; unset: none."
    )
    allocation_statuses: list[str] | None = Field(
        default=None, description="Only allocations in these statuses; unset: all (an expired allocation's "
        "past usage still belongs to its project).",
    )  # fmt: skip
    timeout: Duration = dt.timedelta(seconds=60)
    retries: int = Field(default=4, ge=0, le=10)


class OpenShiftHierarchySource(_Strict):
    """OpenShift namespaces' annotations/labels through the resource's Prometheus, attributed exactly as
    that resource's usage rows are (its policy's keys and mapping file), so the group names match."""

    type: Literal["openshift"]
    resource: Name = Field(description="An OpenShift resource of this config (its connection and policy).")
    organization_keys: list[str] = Field(default_factory=lambda: ["cf_institution"])
    title_keys: list[str] = Field(default_factory=lambda: ["openshift.io/display-name"])
    lookback: Duration = Field(
        default=dt.timedelta(days=1), description="Namespaces seen in Prometheus within this time before the run."
    )


class OpenStackHierarchySource(_Strict):
    """OpenStack projects' properties through Keystone (the resource's connection)."""

    type: Literal["openstack"]
    resource: Name = Field(description="An OpenStack resource of this config (its connection).")
    pi_keys: list[str] = Field(default_factory=lambda: ["pi"], min_length=1)
    organization_keys: list[str] = Field(default_factory=lambda: ["organization"])
    title: Literal["description", "name"] = "description"


HierarchySource = Annotated[
    FileHierarchySource | ColdFrontHierarchySource | OpenShiftHierarchySource | OpenStackHierarchySource,
    Field(discriminator="type"),
]


class HierarchyConfig(_Strict):
    """XDMoD's organization -> PI -> project hierarchy, names and cloud project PIs (DAG xdmod_hierarchy)."""

    db_conn_id: ConnId = Field(
        default="xdmod_usage_history", description="MySQL connection (with a database) for the history tables."
    )
    schedule: str = Field(default="30 1 * * *", description="Cron (UTC) of xdmod_hierarchy.")
    start_date: dt.date = dt.date(2026, 1, 1)
    levels: list[HierarchyLevel] = Field(
        default_factory=lambda: ["organization", "pi", "project"],
        description="XDMoD's hierarchy levels, top to bottom (1 to 3 of organization, pi, project).",
    )
    group_field: Literal["project", "pi"] = Field(
        default="project", description="Which field is the group name XDMoD reads from the usage (resources.json "
        "pi_column): project (Slurm account_name; our OpenShift rows' account) or pi (group_name).",
    )  # fmt: skip
    default_organization: Annotated[str, Field(min_length=1, max_length=100)] = "unassigned"
    default_organization_name: Annotated[str, Field(min_length=1, max_length=255)] = "Unassigned"
    sources: list[HierarchySource] = Field(
        min_length=1, description="In priority order: for a project named by several, the first wins."
    )
    reingest_days: int | None = Field(
        default=None, ge=1, le=36500, description="After an import, re-ingest this many days back; unset: all "
        "history from the earliest resource start_date (what XDMoD's docs require for a full relabel).",
    )  # fmt: skip
    reingest_chunk_days: int = Field(
        default=31, ge=1, le=366, description="Days per xdmod-ingestor --start-date/--end-date run (XDMoD's docs: "
        "smaller ranges avoid database time-outs with tens of millions of records).",
    )  # fmt: skip
    lateness_deadline: Duration | None = dt.timedelta(hours=12)
    tasks: TaskPolicy | None = None
    alerts: list[AlertRoute] | None = None

    @field_validator("levels")
    @classmethod
    def _ordered(cls, value: list[HierarchyLevel]) -> list[HierarchyLevel]:
        if not value or value != [level for level in LEVEL_ORDER if level in value]:
            raise ValueError(f"must be 1 to 3 of {', '.join(LEVEL_ORDER)}, top to bottom, each once")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _valid_cron(value)

    @model_validator(mode="after")
    def _group_maps_to_one_unit(self) -> HierarchyConfig:
        # The group must determine its bottom unit: a PI group cannot map to one of its several projects.
        if LEVEL_ORDER.index(self.group_field) < LEVEL_ORDER.index(self.levels[-1]):
            raise ValueError(f"group_field: a {self.group_field} group cannot map to the bottom level "
                             f"{self.levels[-1]!r} (below it); use group_field project or drop that level")  # fmt: skip
        return self


class AggregationConfig(_Strict):
    """The asset-driven aggregation DAGs (xdmod_aggregate_jobs, xdmod_aggregate_cloud)."""

    settle_delay: Duration = Field(
        default=dt.timedelta(minutes=10), description="Wait after the first ingest so that ingests finishing "
        "meanwhile are aggregated by the same XDMoD run.",
    )  # fmt: skip
    lateness_deadline: Duration | None = dt.timedelta(hours=6)


class SiteConfig(_Strict):
    """The whole file: site-wide defaults plus the list of resources."""

    staging: StagingConfig = StagingConfig()
    freshness: FreshnessConfig = FreshnessConfig()
    xdmod: XdmodConfig = XdmodConfig()
    tasks: TaskPolicy = TaskPolicy()
    alerts: list[AlertRoute] = Field(default_factory=list)
    backup: BackupConfig | None = None
    hierarchy: HierarchyConfig | None = None
    aggregation: AggregationConfig = AggregationConfig()
    resources: list[Resource] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_resources(self) -> SiteConfig:
        seen: set[str] = set()
        for index, resource in enumerate(self.resources):
            # Names are unique across kinds: staging, alerts and the hierarchy sources key on the name.
            if resource.name in seen:
                raise ValueError(f"resources[{index}].name: duplicate resource name {resource.name!r}")
            seen.add(resource.name)
            if resource.end_date is not None and resource.end_date < resource.start_date:
                raise ValueError(f"resources[{index}].end_date: before start_date {resource.start_date}")
            xdmod, staging = self.xdmod_for(resource), self.staging_for(resource)
            if (
                xdmod.kubernetes is not None
                and staging.root.startswith("file://")
                and xdmod.kubernetes.staging_claim is None
            ):
                # Pods run on other nodes: a worker's local disk is not theirs (no RWX volumes).
                raise ValueError(
                    f"resources[{index}]: file:// staging ({staging.root}) with the kubernetes runner needs "
                    "xdmod.kubernetes.staging_claim (a volume carrying the staging root), or use s3:// staging"
                )
            source_model = {"slurm": SlurmSource, "openshift": OpenShiftSource, "openstack": OpenStackSource}[
                resource.kind
            ]
            try:
                source_model.model_validate(resource.source)
            except ValidationError as exc:
                raise ValueError(format_errors(exc, prefix=f"resources[{index}].source")) from None
        if self.hierarchy is not None:
            kinds = {resource.name: resource.kind for resource in self.resources}
            for index, source in enumerate(self.hierarchy.sources):
                wanted = {"openshift": "openshift", "openstack": "openstack"}.get(source.type)
                if wanted and kinds.get(source.resource) != wanted:
                    raise ValueError(f"hierarchy.sources[{index}].resource: no {wanted} resource named "
                                     f"{source.resource!r} in resources")  # fmt: skip
        return self

    def resource(self, name: str) -> Resource:
        """The resource named ``name`` (KeyError naming the known ones otherwise)."""
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise KeyError(f"no resource {name!r}; configured: {', '.join(r.name for r in self.resources)}")

    def staging_for(self, resource: Resource) -> StagingConfig:
        return resource.staging or self.staging

    def xdmod_for(self, resource: Resource) -> XdmodConfig:
        return resource.xdmod or self.xdmod

    def tasks_for(self, section: Resource | BackupConfig | HierarchyConfig) -> TaskPolicy:
        """The task policy of a resource or a site-wide DAG's section: its own, else the site's."""
        return section.tasks or self.tasks

    def alerts_for(self, section: Resource | BackupConfig | HierarchyConfig) -> list[AlertRoute]:
        """The alert routes of a resource or a site-wide DAG's section: its own, else the site's."""
        return self.alerts if section.alerts is None else section.alerts


def _loc(parts: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_errors(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (misspelt? credentials belong in Airflow connections, not here)"
        loc = tuple(err["loc"])
        lines.append(f"{_loc(loc, prefix)}: {message}" if loc or prefix else message)
    return "; ".join(lines)


class _StringDatesLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so a bad date is reported with its key by the schema."""


_StringDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_site_config(text: str, source: str = "<string>") -> SiteConfig:
    """Parse and validate config text; raise ConfigError naming source, key and reason."""
    try:
        data = yaml.load(text, Loader=_StringDatesLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping with a 'resources' list")
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_errors(exc)}") from None


def load_site_config(path: str | os.PathLike[str] | None = None) -> SiteConfig:
    """Load the file named by ``path`` or by $XDMOD_USAGE_CONFIG."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            f"{CONFIG_ENV} is not set: point it at the site config YAML (see include/site-config.example.yaml)"
        )
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read site config: {exc.strerror}") from None
    return parse_site_config(text, str(file))


def load_for_command(path: str | os.PathLike[str] | None) -> SiteConfig:
    """The site config for a command-line entry point: an invalid config prints the reason, exits 2."""
    try:
        return load_site_config(path)
    except ConfigError as exc:
        print(f"config invalid: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
