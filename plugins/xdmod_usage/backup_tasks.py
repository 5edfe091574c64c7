"""Airflow side of the backup and restore DAGs: connections, task bodies, operators with lineage.

Why operators for the dump and the restore: they carry OpenLineage facets (the tables read, the
objects written, and back), which the OpenLineage provider takes from an operator's
get_openlineage_facets_on_complete. The core library (backup_*) knows nothing of Airflow.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from .config import BackupConfig, SiteConfig
from .lineage import stored, tables

log = logging.getLogger(__name__)
ASSET_ALIAS = "xdmod-backup"


def endpoint(conn_id: str) -> Any:
    """A DbEndpoint from a MySQL Airflow connection (host, port, login, password; extra unix_socket)."""
    from airflow.sdk import BaseHook

    from .mysql_client import DbEndpoint

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    return DbEndpoint(conn.host or "127.0.0.1", int(conn.port or 3306), conn.login or "", conn.password or "",
                      extra.get("unix_socket"))  # fmt: skip


def backup_store(backup: BackupConfig) -> Any:
    from .airflow_tasks import store_at

    return store_at(backup.store)


def encryption_key(backup: BackupConfig) -> bytes | None:
    if backup.encryption_key_conn_id is None:
        return None
    from airflow.sdk import BaseHook

    from .backup_crypto import parse_key

    conn = BaseHook.get_connection(backup.encryption_key_conn_id)
    try:
        return parse_key(conn.password or "")
    except ValueError as exc:
        raise AirflowFailException(f"connection {backup.encryption_key_conn_id}: {exc}") from None


def source_conn_id(site: SiteConfig) -> str:
    return site.backup.db_conn_id or site.xdmod.db_conn_id  # type: ignore[union-attr]


def dump_options(site: SiteConfig) -> Any:
    from .backup_dump import DumpOptions

    backup = site.backup
    assert backup is not None
    return DumpOptions(
        databases=list(backup.databases), patterns=list(backup.discover), optional=list(backup.optional),
        users=list(backup.users), mysqldump=backup.mysqldump_path, lock_timeout=backup.lock_timeout.total_seconds(),
    )  # fmt: skip


class _BackupOperator(BaseOperator):
    """What the dump and restore operators share: the site config, and the OpenLineage facets that
    execute() records (inputs, outputs) for the provider to send on completion."""

    def __init__(self, *, site: SiteConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site = site
        self._lineage: tuple[list[Any], list[Any]] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs, outputs = self._lineage or ([], [])
        return OperatorLineage(inputs=inputs, outputs=outputs)


class XdmodBackupOperator(_BackupOperator):
    """Dumps XDMoD's databases and accounts into a new backup (run it in the XDMoD pool).

    Returns the backup id and the stored files; lineage: every table in, every object out.
    """

    ui_color = "#d9ead3"

    def execute(self, context: Any) -> dict[str, Any]:
        from .backup_dump import BackupError
        from .backup_make import make_backup

        backup = self.site.backup
        assert backup is not None
        store = backup_store(backup)
        conn_id = source_conn_id(self.site)
        try:
            facts = make_backup(store, endpoint(conn_id), dump_options(self.site), backup.compression_level,
                                encryption_key(backup), progress_every=_progress_every(self.site))  # fmt: skip
        except BackupError as exc:
            if "not found" in str(exc):  # configuration, not a passing failure: do not retry
                raise AirflowFailException(str(exc)) from None
            raise
        objects = [store.url(db["file"]["path"]) for db in facts["databases"].values()]
        if facts.get("users"):
            objects.append(store.url(facts["users"]["file"]["path"]))
        self._lineage = (tables(facts["server"]["endpoint"], facts["databases"]), [stored(url) for url in objects])
        for db, info in facts["databases"].items():
            log.info("%s: %d tables, %d rows, %d bytes stored", db, len(info["tables"]),
                     sum(t["rows"] for t in info["tables"].values()), info["file"]["bytes"])  # fmt: skip
        if facts["absent_optional"]:
            log.info("optional databases absent (noted in the manifest): %s", ", ".join(facts["absent_optional"]))
        return {"id": facts["id"], "store": store.url(""), "databases": sorted(facts["databases"]),
                "bytes": sum(db["file"]["bytes"] for db in facts["databases"].values())}  # fmt: skip


def _progress_every(site: SiteConfig) -> float:
    """The backup DAG's progress interval (its own tasks section, or the site's)."""
    assert site.backup is not None
    return site.tasks_for(site.backup).progress_interval.total_seconds()


def backup_config(site: SiteConfig, ident: str) -> dict[str, Any] | None:
    """XDMoD's configuration into the backup: a directory here, or a tar made on the XDMoD host over SSH."""
    from .backup_make import backup_config_stream, backup_config_tree

    backup = site.backup
    assert backup is not None
    source, key, store = backup.config.source, encryption_key(backup), backup_store(backup)
    if source == "none":
        log.info("backup.config.source is none: configuration not backed up")
        return None
    if source == "path":
        return backup_config_tree(store, ident, backup.config.path, backup.compression_level, key)
    if site.xdmod.ssh is None:
        raise AirflowFailException("backup.config.source 'ssh' needs xdmod.ssh (the SSH runner's connection)")
    from airflow.providers.ssh.hooks.ssh import SSHHook

    from .ssh_runner import stream_remote

    parent, name = backup.config.path.rsplit("/", 1)
    argv = ["tar", "-C", parent or "/", "-cf", "-", "--", name]
    with SSHHook(ssh_conn_id=site.xdmod.ssh.conn_id).get_conn() as client:
        produce = lambda out: stream_remote(client, argv, out)  # noqa: E731 - closes over the client
        return backup_config_stream(store, ident, f"ssh:{backup.config.path}", produce, backup.compression_level, key)


def backup_archive(site: SiteConfig) -> dict[str, Any] | None:
    """Every resource's raw source archives into the backup store (only the ones not there yet)."""
    from .airflow_tasks import staging_store
    from .backup_make import archive_raw_sources

    backup = site.backup
    assert backup is not None
    if backup.archive == "none":
        return None
    stores = {resource.name: staging_store(site, resource) for resource in site.resources}
    summary = archive_raw_sources(backup_store(backup), stores, backup.archive, _progress_every(site))
    log.info("raw archives: %d copied (%d bytes), %d already in the store", summary["copied"],
             summary["bytes_copied"], summary["present"])  # fmt: skip
    return summary


def verify(site: SiteConfig, ident: str, extra: dict[str, Any], context: Any) -> dict[str, Any]:
    """Restore into the scratch server and compare; only then is the backup marked complete.

    Emits one asset event per database backup (size, sha256, rows) through the alias.
    """
    from airflow.sdk import Asset, AssetAlias

    from .backup_restore import VerificationError, verify_backup

    backup = site.backup
    assert backup is not None
    store = backup_store(backup)
    try:
        manifest = verify_backup(store, ident, endpoint(backup.verify_conn_id), encryption_key(backup), extra,
                                 backup.mysql_path)  # fmt: skip
    except VerificationError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(str(exc)) from None
    events = context["outlet_events"][AssetAlias(ASSET_ALIAS)]
    for db, facts in sorted(manifest["databases"].items()):
        asset = Asset(name=f"xdmod_backup.{db}", uri=f"xdmod-backup://{manifest['server']['endpoint']}/{db}",
                      group="xdmod-backup")  # fmt: skip
        events.add(asset, extra={"backup_id": ident, "url": store.url(facts["file"]["path"]),
                                 "sha256": facts["file"]["sha256"], "bytes": facts["file"]["bytes"],
                                 "rows": sum(t["rows"] for t in facts["tables"].values())})  # fmt: skip
    checked = manifest["verification"]["databases"]
    log.info("backup %s verified on %s: %s", ident, manifest["verification"]["scratch"],
             {db: (c["tables"], c["rows"]) for db, c in checked.items()})  # fmt: skip
    return {"id": ident, "status": "verified", "databases": {db: c["rows"] for db, c in checked.items()}}


def retention(site: SiteConfig) -> dict[str, Any]:
    from .backup_catalog import apply_retention

    backup = site.backup
    assert backup is not None
    plan = apply_retention(backup_store(backup), backup.retention.weekly, backup.retention.monthly)
    for ident, why in plan.delete.items():
        log.info("deleted backup %s: %s", ident, why)
    for ident, why in plan.keep.items():
        log.info("keeping backup %s: %s", ident, why)
    return {"kept": sorted(plan.keep), "deleted": sorted(plan.delete)}


def restore_params(context: Any) -> dict[str, Any]:
    """The restore's Params, checked: an explicit confirmation equal to the backup id."""
    params = dict(context.get("params") or {})
    ident = (params.get("backup_id") or "").strip()
    if not ident:
        raise AirflowFailException("params.backup_id is required (see the list in the check task's log)")
    if (params.get("confirm") or "").strip() != ident:
        raise AirflowFailException(f"params.confirm must repeat the backup id ({ident}) to allow the restore")
    if not params.get("target_conn_id"):
        raise AirflowFailException("params.target_conn_id is required: the MySQL connection to restore into")
    return {**params, "backup_id": ident}


def check_restore(site: SiteConfig, context: Any) -> dict[str, Any]:
    """Before anything changes: the backup exists, is verified, and every object still has its hash."""
    from .backup_catalog import BackupNotFoundError, list_backups
    from .backup_restore import check_backup
    from .backup_streams import HashMismatchError

    backup = site.backup
    assert backup is not None
    store = backup_store(backup)
    log.info("backups in %s:\n%s", store.url("backups"),
             "\n".join(f"  {b.id}  {b.status}" for b in list_backups(store)) or "  (none)")  # fmt: skip
    params = restore_params(context)
    try:
        manifest = check_backup(store, params["backup_id"])
    except (BackupNotFoundError, HashMismatchError) as exc:
        raise AirflowFailException(str(exc)) from None
    chosen = params.get("databases") or sorted(manifest["databases"])
    log.info("would restore %s from backup %s into connection %s (replace=%s, users=%s, config_dir=%s)",
             ", ".join(chosen), params["backup_id"], params["target_conn_id"], params.get("replace"),
             params.get("users"), params.get("config_dir") or "-")  # fmt: skip
    return {"backup_id": params["backup_id"], "databases": chosen}


class XdmodRestoreOperator(_BackupOperator):
    """Restores a verified backup into the target connection. Never retried on its own: it is destructive."""

    ui_color = "#f4cccc"

    def __init__(self, *, site: SiteConfig, **kwargs: Any) -> None:
        super().__init__(site=site, **{**kwargs, "retries": 0})

    def execute(self, context: Any) -> dict[str, Any]:
        from .backup_catalog import read_manifest
        from .backup_restore import RestoreRefusedError, VerificationError, restore_backup

        backup = self.site.backup
        assert backup is not None
        params = restore_params(context)
        store = backup_store(backup)
        manifest = read_manifest(store, params["backup_id"])
        target = endpoint(params["target_conn_id"])
        try:
            report = restore_backup(store, manifest, target, encryption_key(backup), params.get("databases") or None,
                                    bool(params.get("replace")), bool(params.get("users", True)),
                                    params.get("config_dir") or None, backup.mysql_path)  # fmt: skip
        except (RestoreRefusedError, VerificationError) as exc:
            raise AirflowFailException(str(exc)) from None
        restored = {db: manifest["databases"][db] for db in report["databases"]}
        self._lineage = ([stored(store.url(facts["file"]["path"])) for facts in restored.values()],
                         tables(target.label, restored))  # fmt: skip
        for db, counts in report["databases"].items():
            log.info("restored %s: %d tables, %d rows, matching the backup's snapshot", db, counts["tables"],
                     counts["rows"])  # fmt: skip
        return report
