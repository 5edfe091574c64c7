"""Read what one day of OpenStack usage needs from the APIs, with pinned microversions and retries.

Why raw GETs through openstacksdk's session instead of its resource layer: every call names the
microversion it relies on (a cloud upgrade must not change what we read), pagination and the
``changes-since`` filters are explicit, and every call is counted for the manifest and the
benchmark. openstacksdk still does what it is good at: Keystone auth, the service catalog,
clouds.yaml, TLS.

What is read for a window [S, E):
- ``/servers/detail?all_tenants&changes-since=S``: servers changed since S, deleted ones
  included (Nova lists deleted servers when changes-since is given);
- ``/servers/detail?all_tenants``: every live server, so instances that ran all day without a
  change still get their hourly heartbeats (one call per 1,000 servers);
- ``/servers/{id}/os-instance-actions?changes-since=S`` for each changed server only: actions
  whose last event finished since S, with ``updated_at`` (2.58+) = that event's finish time and
  ``message`` "Error" when an event failed, so no per-action call is needed;
- Keystone projects, users and domains (names), and ``/os-hypervisors/detail`` at 2.52 (the last
  microversion with integer ids, which XDMoD's schema requires; sizes are gone from 2.88 on).
Calls grow with the servers changed in the window, not with all servers times their history.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .progress import EVERY, Progress, heartbeat
from .retries import Retry, with_retries

log = logging.getLogger(__name__)

# 2.79 is the newest Train (the oldest release still widely run) supports. It gives: the flavor
# embedded in the server (2.47: sizes survive a deleted flavor), action updated_at and
# changes-since (2.58), servers of a down cell listed with status UNKNOWN instead of silently
# left out (2.69).
COMPUTE_MICROVERSION = "2.79"
HYPERVISOR_MICROVERSION = "2.52"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

# What the archive keeps of a server: enough to rebuild its day, nothing more. user_data (admins
# see it from 2.3 on) can hold secrets; addresses and metadata are not usage.
SERVER_FIELDS = (
    "id", "name", "status", "tenant_id", "user_id", "flavor", "created", "updated", "image",
    "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state", "OS-EXT-STS:task_state",
    "OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at", "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:hypervisor_hostname", "OS-EXT-AZ:availability_zone",
)  # fmt: skip
ACTION_FIELDS = ("action", "request_id", "start_time", "updated_at", "message", "user_id", "project_id")
HYPERVISOR_FIELDS = ("id", "hypervisor_hostname", "vcpus", "memory_mb", "state", "status", "hypervisor_type")


class OpenStackAuthError(RuntimeError):
    """Keystone refused the credentials, or the account lacks a needed role: retrying cannot help."""


class OpenStackRequestError(RuntimeError):
    """An API refused a request (4xx other than auth): retrying cannot help."""


class OpenStackUnavailableError(RuntimeError):
    """An API did not answer usefully after the retries (5xx, timeouts, connection errors)."""


@dataclass
class CallStats:
    """API calls made for one day, by service and path shape (ids replaced)."""

    calls: Counter = field(default_factory=Counter)
    retries: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"calls": sum(self.calls.values()), "by_path": dict(sorted(self.calls.items())),
                "retries": self.retries, "seconds": round(self.seconds, 3)}  # fmt: skip


def _path_shape(service: str, path: str) -> str:
    parts = [("{id}" if len(part) >= 32 or part.isdigit() else part) for part in path.split("?")[0].split("/")]
    return f"{service} {'/'.join(parts)}"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OpenStackApi:
    """GETs against one cloud through an openstacksdk Connection; counts calls, retries what may pass."""

    def __init__(self, conn: Any, *, page_size: int = 1000, retries: int = 4, backoff: float = 2.0) -> None:
        self.conn = conn
        self.page_size = page_size
        self.retries = retries
        self.backoff = backoff
        self.stats = CallStats()

    def _proxy(self, service: str) -> Any:
        return {"compute": self.conn.compute, "identity": self.conn.identity}[service]

    def get(self, service: str, path: str, params: dict[str, Any] | None = None,
            microversion: str | None = None) -> dict[str, Any]:  # fmt: skip
        """One GET, decoded; 5xx/429/timeouts/connection errors retried with backoff."""
        from keystoneauth1 import exceptions as ks

        shape = _path_shape(service, path)

        def attempt() -> dict[str, Any] | Retry:
            started = time.monotonic()
            try:
                # The proxy itself authenticates (catalog lookup): inside the try.
                proxy = self._proxy(service)
                response = proxy.get(path, params=params or {}, microversion=microversion, raise_exc=False)
            except ks.Unauthorized as exc:
                raise OpenStackAuthError(self._auth_message(exc)) from None
            except (ks.RetriableConnectionFailure, ks.ConnectionError) as exc:
                return Retry(f"{type(exc).__name__}: {exc}")
            except ks.EndpointNotFound as exc:
                raise OpenStackRequestError(f"no {service} endpoint in the service catalog: {exc}") from None
            self.stats.seconds += time.monotonic() - started
            self.stats.calls[shape] += 1
            if response.status_code in RETRY_STATUS:
                return Retry(f"HTTP {response.status_code}: {response.text[:300]}")
            return self._decode(service, path, response)

        def count_retry() -> None:
            self.stats.retries += 1

        return with_retries(attempt, retries=self.retries, backoff=self.backoff, label=f"{service} GET {path}",
                            give_up=OpenStackUnavailableError, on_retry=count_retry)  # fmt: skip

    def _auth_message(self, exc: Exception) -> str:
        auth = getattr(self.conn.config, "auth", None) or {}
        who = ", ".join(f"{key} {auth[key]}" for key in ("username", "application_credential_id", "project_name")
                        if auth.get(key))  # fmt: skip
        return (f"OpenStack refused the credentials at {auth.get('auth_url', '?')} ({who or 'no user'}): {exc}. "
                "Check the connection's login, password, project and domains; nothing was retried.")  # fmt: skip

    def _decode(self, service: str, path: str, response: Any) -> dict[str, Any]:
        if response.status_code == 401:
            raise OpenStackAuthError(self._auth_message(RuntimeError(f"HTTP 401 on {service} {path}")))
        if response.status_code == 403:
            raise OpenStackAuthError(
                f"{service} GET {path}: HTTP 403 {response.text[:300]}. The account needs the admin role "
                "(all projects' servers, instance actions, hypervisors, Keystone users)."
            )
        if response.status_code >= 400:
            raise OpenStackRequestError(f"{service} GET {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json()

    def paged(self, service: str, path: str, key: str, params: dict[str, Any],
              microversion: str | None) -> list[dict[str, Any]]:  # fmt: skip
        """Every item of a Nova list, following its ``*_links`` next marker."""
        items: list[dict[str, Any]] = []
        query = {**params, "limit": self.page_size}
        while True:
            body = self.get(service, path, query, microversion)
            page = body.get(key, [])
            items.extend(page)
            nxt = [link["href"] for link in body.get(f"{key}_links", []) if link.get("rel") == "next"]
            if not nxt or not page:
                return items
            marker = parse_qs(urlsplit(nxt[0]).query).get("marker")
            if not marker:
                return items
            query = {**query, "marker": marker[0]}

    # --- what a day needs -------------------------------------------------------------------

    def servers(self, changes_since: dt.datetime | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all_tenants": "True"}
        if changes_since is not None:
            params["changes-since"] = _iso(changes_since)
        servers = self.paged("compute", "/servers/detail", "servers", params, COMPUTE_MICROVERSION)
        return [{name: server.get(name) for name in SERVER_FIELDS} for server in servers]

    def actions(self, server_id: str, changes_since: dt.datetime) -> list[dict[str, Any]]:
        params = {"changes-since": _iso(changes_since)}
        actions = self.paged("compute", f"/servers/{server_id}/os-instance-actions", "instanceActions", params,
                             COMPUTE_MICROVERSION)  # fmt: skip
        return [{name: action.get(name) for name in ACTION_FIELDS} for action in actions]

    def hypervisors(self) -> list[dict[str, Any]]:
        body = self.get("compute", "/os-hypervisors/detail", None, HYPERVISOR_MICROVERSION)
        return [{name: hyp.get(name) for name in HYPERVISOR_FIELDS} for hyp in body.get("hypervisors", [])]

    def _identity_list(self, path: str, key: str) -> dict[str, dict[str, Any]]:
        body = self.get("identity", path)
        if body.get("truncated"):
            log.warning("Keystone truncated %s (list_limit): missing names are fetched one by one", path)
        return {item["id"]: item for item in body.get(key, [])}

    def projects(self) -> dict[str, Any]:
        """Every Keystone project as Keystone returns it (extra properties such as a PI sit at the top
        level of each), and the domains' names: the hierarchy's OpenStack source."""
        body = self.get("identity", "/projects")
        domains = self._identity_list("/domains", "domains")
        return {
            "projects": sorted(body.get("projects", []), key=lambda item: item.get("id", "")),
            "truncated": bool(body.get("truncated")),
            "domains": {key: value.get("name") for key, value in sorted(domains.items())},
        }

    def identity(self, project_ids: set[str], user_ids: set[str]) -> dict[str, Any]:
        """Names of the given projects and users and of all domains. Lists first (one call each);
        anything a list did not return (truncated list, deleted project/user) is asked for by id."""
        domains = self._identity_list("/domains", "domains")
        projects = self._identity_list("/projects", "projects")
        users = self._identity_list("/users", "users")
        missing = {"projects": sorted(project_ids - projects.keys()), "users": sorted(user_ids - users.keys())}
        for kind, table in (("projects", projects), ("users", users)):
            for item_id in missing[kind]:
                try:
                    table[item_id] = self.get("identity", f"/{kind}/{item_id}")[kind[:-1]]
                except OpenStackRequestError:  # 404: deleted since
                    continue
        return {
            "domains": {key: {"name": value.get("name")} for key, value in sorted(domains.items())},
            "projects": {key: {"name": projects[key].get("name"), "domain_id": projects[key].get("domain_id")}
                         for key in sorted(project_ids) if key in projects},
            "users": {key: {"name": users[key].get("name"), "domain_id": users[key].get("domain_id")}
                      for key in sorted(user_ids) if key in users},
        }  # fmt: skip


def connect(
    *,
    cloud: str | None = None,
    auth: dict[str, Any] | None = None,
    region_name: str | None = None,
    interface: str = "public",
    verify: bool | str = True,
    timeout: float = 60.0,
) -> Any:
    """An openstacksdk Connection from a clouds.yaml cloud name or explicit auth settings."""
    import openstack

    options: dict[str, Any] = {"app_name": "xdmod-usage", "api_timeout": timeout}
    if region_name:
        options["region_name"] = region_name
    if cloud is not None:
        return openstack.connect(cloud=cloud, interface=interface, **options)
    auth = dict(auth or {})
    auth_type = auth.pop("auth_type", "password")
    return openstack.connection.Connection(
        auth_type=auth_type, auth=auth, interface=interface, verify=verify, **options
    )


def fetch_day(api: OpenStackApi, start: dt.datetime, end: dt.datetime, *, hypervisors: bool = True,
              what: str = "read OpenStack", progress_every: float = EVERY) -> dict[str, Any]:  # fmt: skip
    """Everything the day's events are built from, as one JSON-able archive.

    Sorted and free of pull times, so a rerun of a closed window archives the same bytes unless
    the cloud itself changed (the hypervisor list is a snapshot of the present). Logs a heartbeat
    while listing and progress over the changed servers' action lists (one call each).
    """
    with heartbeat(
        f"{what} (listing servers)", log, progress_every, lambda: f"{sum(list(api.stats.calls.values()))} calls"
    ):
        changed = api.servers(changes_since=start)
        live = api.servers()
    changed_ids = {server["id"] for server in changed}
    actions: dict[str, list[dict[str, Any]]] = {}
    with Progress(f"{what}: action lists", len(changed), log, progress_every, unit="servers") as progress:
        for server in sorted(changed, key=lambda s: s["id"]):
            actions[server["id"]] = api.actions(server["id"], start)
            progress.add()
    # Live servers unchanged since the window start: their state held all window long.
    steady = [server for server in live if server["id"] not in changed_ids]
    everyone = changed + steady
    with heartbeat(f"{what} (projects, users, hypervisors)", log, progress_every,
                   lambda: f"{sum(list(api.stats.calls.values()))} calls"):  # fmt: skip
        identity = api.identity({s["tenant_id"] for s in everyone if s.get("tenant_id")},
                                {s["user_id"] for s in everyone if s.get("user_id")})  # fmt: skip
        hypervisor_list = sorted(api.hypervisors(), key=lambda h: h["id"]) if hypervisors else None
    return {
        "format": "xdmod-usage-openstack-raw/1",
        "window": {"start": _iso(start), "end": _iso(end)},
        "compute_microversion": COMPUTE_MICROVERSION,
        "compute": {
            "servers_changed": sorted(changed, key=lambda s: s["id"]),
            "servers_steady": sorted(steady, key=lambda s: s["id"]),
            "actions": actions,
        },
        "identity": identity,
        "hypervisors": hypervisor_list,
    }
