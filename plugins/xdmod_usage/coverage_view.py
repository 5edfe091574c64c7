"""The coverage view: a page in the Airflow UI with resources x UTC days and how far each day got.

Why a plugin FastAPI app: operators live in the Airflow UI, and the question "which days of which
resource are not in XDMoD?" is answered by the staging manifests, not by task states (a day can
succeed in Airflow and still fail reconciliation). The data comes from the coverage index
(coverage.py: one object per resource), never from the metadata database and never one read per
cell. Reruns and backfills go through Airflow's own REST API from the browser, with the user's
own session, so Airflow decides who may start runs.

Airflow mounts a plugin's app without its authentication: every route here depends on the auth
manager's checks (a valid session or bearer token; DAG read access per resource). No
``from __future__ import annotations`` here: FastAPI reads the route signatures at definition time.
"""

import datetime as dt
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from . import coverage
from .config import SiteConfig, load_site_config

PAGE = Path(__file__).with_name("coverage_page.html")
URL_PREFIX = "/xdmod-coverage"
MAX_DAYS = 1000
_READERS = 8  # parallel index reads: object stores answer each in one round trip


def grid(
    site: SiteConfig,
    store_of: Callable[[Any], Any],
    today: dt.date,
    days: int,
    allowed: Callable[[str], bool] = lambda dag_id: True,
) -> dict[str, Any]:
    """The page's data: the last ``days`` UTC days before ``today`` for every resource the user may read.

    A cell is null where the day is not due (before start_date, after end_date); a due day with no
    index entry is "missing".
    """
    first = today - dt.timedelta(days=days)
    columns = [first + dt.timedelta(days=n) for n in range(days)]
    resources = [r for r in site.resources if allowed(r.dag_id)]
    with ThreadPoolExecutor(max_workers=min(_READERS, max(1, len(resources)))) as pool:
        indexes = list(pool.map(lambda r: coverage.read(store_of(r), r.name), resources))
    rows = []
    for resource, index in zip(resources, indexes, strict=True):
        due = {d.isoformat() for d in coverage.due_days(max(resource.start_date, first), resource.end_date, today)}
        cells: list[dict[str, Any] | None] = []
        for column in columns:
            key = column.isoformat()
            entry = index.get(key)
            if entry is not None:
                cells.append(_cell(entry))
            elif key in due:
                cells.append({"state": "missing"})
            else:
                cells.append(None)
        rows.append({
            "name": resource.name,
            "kind": resource.kind,
            "dag_id": resource.dag_id,
            "xdmod_resource": resource.xdmod_resource,
            "cells": cells,
            "totals": {state: sum(1 for c in cells if c and c["state"] == state) for state in coverage.STATES},
            "quarantined_days": sum(1 for c in cells if c and c.get("quarantined")),
        })  # fmt: skip
    return {"days": [c.isoformat() for c in columns], "today": today.isoformat(), "resources": rows,
            "task_of_state": coverage.TASK_OF_STATE}  # fmt: skip


def _cell(entry: dict[str, Any]) -> dict[str, Any]:
    """What the page needs of an index entry (the rest stays on the server)."""
    cell = {key: entry.get(key) for key in ("state", "read", "staged", "quarantined", "dry_run")}
    if entry.get("quarantine_reasons"):
        cell["reasons"] = entry["quarantine_reasons"]
    check = entry.get("reconciliation") or {}
    if "held" in check:
        cell["held"], cell["expected"] = check["held"], check.get("expected")
    if check.get("status") == "mismatch":
        cell["message"] = check.get("message")
    run = entry.get("run") or {}
    if run:
        cell["run"] = run
    return cell


class _SiteCache:
    """The site config, reread when its file changes (the DAG processor rereads it too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, float] | None = None
        self._site: SiteConfig | None = None

    def get(self) -> SiteConfig:
        path = os.environ.get("XDMOD_USAGE_CONFIG", "")
        key = (path, os.stat(path).st_mtime if path and os.path.exists(path) else 0.0)
        with self._lock:
            if key != self._key or self._site is None:
                self._site, self._key = load_site_config(path or None), key
            return self._site


def _staging_store(site: SiteConfig) -> Callable[[Any], Any]:
    from .airflow_tasks import staging_store

    return lambda resource: staging_store(site, resource)


def create_app(
    site_loader: Callable[[], SiteConfig] | None = None,
    store_factory: Callable[[SiteConfig], Callable[[Any], Any]] = _staging_store,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Any:
    """The FastAPI app Airflow mounts at URL_PREFIX (see plugins/xdmod_coverage_plugin.py)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

    load = site_loader or _SiteCache().get
    app = FastAPI(title="XDMoD coverage", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> Any:
        # A browser without a valid session (none: 401; expired or forged: 403) is sent to Airflow's
        # login, and back here after it.
        try:
            await get_user(request, None, _bearer(request))
        except HTTPException as exc:
            if exc.status_code not in (401, 403):
                raise
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.get("/api/grid")
    def grid_route(user: Annotated[Any, Depends(get_user)], days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 90) -> Any:
        permitted = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        site = load()
        data = grid(site, store_factory(site), clock().date(), days, permitted.__contains__)
        data["user"] = user.get_name()
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    def _bearer(request: Request) -> Any:
        from fastapi.security import HTTPAuthorizationCredentials

        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None

    return app
