"""Turn one day's OpenStack archive into the events XDMoD's cloud realm reads.

XDMoD rebuilds each VM's sessions from events: a session starts at a state-change event and ends
at the next one; ``compute.instance.exists`` (kept only when ``state`` is active) extends a
running session, and is how XDMoD learns of VMs whose start it never saw. So the day's file has:

- one event per successful instance action in the window, at the moment its last step finished
  (the action's ``updated_at``), named as Nova's notifications name them (``ACTIONS``);
- one ``compute.instance.exists`` for every hour each instance ran in the window, placed one
  second before the end of its running part of that hour, so it never follows a stop;
- the flavor each event had: resizes carry the flavor before (``resize.start``) and after
  (``finish_resize.end``, ``resize.confirm.end``; XDMoD switches the session's flavor at the
  confirm).

The API gives only the current flavor. The flavor (and running state) at the window start come
from the previous day's end state, staged beside that day's files; without it (the first day)
they are inferred from the current server and its first action, and the manifest lists every
instance whose pre-resize flavor or start state was assumed.

Pure functions of the archive: reruns and replays give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

HOUR = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)
EXISTS = "compute.instance.exists"
RUNNING_STATES = frozenset({"active", "resized", "rescued"})
# Namespace for message ids: uuid5 of (instance, event type, time) is the same on every rerun.
MESSAGE_NAMESPACE = uuid.UUID("4f7c1c52-3a43-4d59-9c4a-8f1f1b8e3a61")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?(Z|[+-]00:?00)?$")


@dataclass(frozen=True)
class Action:
    """How one Nova instance action changes what XDMoD must know.

    ``events``: notification names emitted when it succeeds; ``state``: the vm_state after it
    (None: unchanged); ``running_before``: what it implies about the VM before it (None: could be
    either), used only when no previous day's state exists.
    """

    events: tuple[str, ...]
    state: str | None
    running_before: bool | None


ACTIONS: dict[str, Action] = {
    "create": Action(("compute.instance.create.end",), "active", None),
    "start": Action(("compute.instance.power_on.end",), "active", False),
    "stop": Action(("compute.instance.power_off.end",), "stopped", True),
    "suspend": Action(("compute.instance.suspend.end",), "suspended", True),
    "resume": Action(("compute.instance.resume.end",), "active", False),
    "pause": Action(("compute.instance.pause.end",), "paused", True),
    "unpause": Action(("compute.instance.unpause.end",), "active", False),
    # Shelving powers the VM off; XDMoD knows only the offload event, so it marks the shelve.
    "shelve": Action(("compute.instance.shelve_offload.end",), "shelved_offloaded", None),
    "shelveOffload": Action((), "shelved_offloaded", False),
    "unshelve": Action(("compute.instance.unshelve.end",), "active", False),
    "delete": Action(("compute.instance.delete.end",), "deleted", None),
    "forceDelete": Action(("compute.instance.delete.end",), "deleted", None),
    "resize": Action(("compute.instance.resize.start", "compute.instance.finish_resize.end"), None, None),
    "confirmResize": Action(("compute.instance.resize.confirm.end",), None, None),
    "revertResize": Action((), None, None),
    "reboot": Action((), None, True),
}
FLAVOR_CHANGES = frozenset({"resize", "revertResize", "confirmResize"})
# Actions after which the VM may run on another host.
HOST_CHANGES = frozenset({"migrate", "live-migration", "evacuate", "resize", "confirmResize", "revertResize",
                          "unshelve"})  # fmt: skip


def parse_time(text: str | None) -> dt.datetime | None:
    """Nova's and Keystone's time forms (with or without fraction and zone) as aware UTC."""
    if not text:
        return None
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"unrecognised time {text!r}")
    base = dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    fraction = match.group(2)
    return base + dt.timedelta(microseconds=int((fraction[1:] + "000000")[:6])) if fraction else base


def format_generated(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int

    @classmethod
    def from_server(cls, flavor: dict[str, Any] | None) -> Flavor | None:
        """The flavor embedded in a server (microversion 2.47+)."""
        if not flavor or "vcpus" not in flavor:
            return None
        name = str(flavor.get("original_name") or flavor.get("name") or "unknown")
        sizes = (int(flavor.get(key) or 0) for key in ("vcpus", "ram", "disk", "ephemeral"))
        return cls(name, *sizes)

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Flavor:
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vcpus": self.vcpus, "memory_mb": self.memory_mb, "root_gb": self.root_gb,
                "ephemeral_gb": self.ephemeral_gb}  # fmt: skip


@dataclass
class EventCounts:
    """What the day's build saw; goes to the manifest (``counts`` and ``source_counts``)."""

    servers: int = 0
    events: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)
    actions_outside_window: int = 0
    flavor_assumed: list[str] = field(default_factory=list)
    state_assumed: list[str] = field(default_factory=list)
    state_disagrees_with_previous_day: list[str] = field(default_factory=list)
    zero_vcpus_mapped: list[str] = field(default_factory=list)
    unknown_projects: set[str] = field(default_factory=set)
    unknown_users: set[str] = field(default_factory=set)
    hypervisors: int = 0
    previous_state: str | None = None

    def as_counts(self) -> dict[str, Any]:
        """The keys every kind's manifest and metrics share."""
        return {
            "read": self.servers,
            "staged": sum(self.events.values()),
            "outside_window": self.actions_outside_window,
            "skipped": dict(sorted(self.skipped.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
        }

    def as_source_counts(self) -> dict[str, Any]:
        return {
            "servers": self.servers,
            "events_by_type": dict(sorted(self.events.items())),
            "heartbeats": self.events[EXISTS],
            "hypervisors": self.hypervisors,
            "previous_state": self.previous_state,
            "flavor_assumed": sorted(self.flavor_assumed),
            "state_assumed": sorted(self.state_assumed),
            "state_disagrees_with_previous_day": sorted(self.state_disagrees_with_previous_day),
            "zero_vcpus_mapped": sorted(self.zero_vcpus_mapped),
            "unknown_projects": sorted(self.unknown_projects),
            "unknown_users": sorted(self.unknown_users),
        }


@dataclass
class DayEvents:
    events: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    end_state: dict[str, dict[str, Any]]
    hypervisor_facts: dict[str, Any] | None
    counts: EventCounts


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft7Validator

    schema = json.loads((Path(__file__).parent / "schemas" / name).read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_errors(record: dict[str, Any], schema: str = "openstack_event.schema.json") -> list[str]:
    """Every way ``record`` breaks the project's strict schema (empty: XDMoD will take it)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}"
            for e in sorted(_validator(schema).iter_errors(record), key=lambda e: list(e.absolute_path))]  # fmt: skip


@dataclass
class _Timeline:
    """One instance's window: transitions (time, action, events) and the state at the start."""

    server: dict[str, Any]
    exists_at_start: bool
    running_at_start: bool
    state_at_start: str
    steps: list[tuple[dt.datetime, dict[str, Any], Action]]
    flavors: list[Flavor]  # flavors[0] at the start, then one after every flavor change in steps
    assumed: frozenset[int]  # indexes into flavors the API could not give
    host: str | None  # where it ran in the window (the previous day's host when known: reruns match)
    end_host: str | None


class _InstanceBuilder:
    def __init__(self, archive: dict[str, Any], previous: dict[str, Any] | None, zero_vcpus: str,
                 counts: EventCounts) -> None:  # fmt: skip
        self.start = parse_time(archive["window"]["start"])
        self.end = parse_time(archive["window"]["end"])
        self.identity = archive["identity"]
        self.previous = (previous or {}).get("instances", {})
        self.zero_vcpus = zero_vcpus
        self.counts = counts

    # --- the instance's state before and through the window ---------------------------------

    def timeline(self, server: dict[str, Any], actions: list[dict[str, Any]]) -> _Timeline:
        dated = []
        for action in actions:
            moment = parse_time(action.get("updated_at")) or parse_time(action.get("start_time"))
            if moment is None or moment < self.start:  # finished before the window (changes-since)
                self.counts.actions_outside_window += 1
                continue
            dated.append((moment, action))
        dated.sort(key=lambda pair: (pair[0], pair[1].get("start_time") or "", pair[1].get("request_id") or ""))
        known = []
        for moment, action in dated:
            if action["action"] in ACTIONS:
                known.append((moment, action, ACTIONS[action["action"]]))
            else:
                self.counts.skipped[f"action_not_usage:{action['action']}"] += 1
        ok = [(m, a, t) for m, a, t in known if (a.get("message") or "").lower() != "error"]
        self.counts.skipped["failed_action"] += len(known) - len(ok)
        exists, running, state = self._state_at_start(server, ok)
        flavors, assumed = self._flavors(server, ok)
        current = server.get("OS-EXT-SRV-ATTR:host")
        host = self.previous.get(server["id"], {}).get("host") or current
        moved = any(action["action"] in HOST_CHANGES and moment < self.end for moment, action in dated)
        return _Timeline(server, exists, running, state, ok, flavors, assumed, host, current if moved else host)

    def _state_at_start(self, server: dict[str, Any], ok: list[tuple[dt.datetime, dict[str, Any], Action]]
                        ) -> tuple[bool, bool, str]:  # fmt: skip
        """(existed, ran, vm_state) at the window start: the previous day's end state when there
        is one, checked against what the first action implies; else inferred."""
        sid = server["id"]
        created = parse_time(server.get("created"))
        if any(action["action"] == "create" for _m, action, _t in ok) or (created and created >= self.start):
            return False, False, "absent"
        implied = self._implied_running(server, ok)
        before = self.previous.get(sid)
        if before is not None:
            if implied is None or implied == bool(before["running"]):
                return True, bool(before["running"]), before["vm_state"]
            self.counts.state_disagrees_with_previous_day.append(sid)
        elif implied is None:
            # The first action that changes whether it runs could follow either state (a delete or
            # a shelve) and no previous day says: charge it as running, and say so.
            self.counts.state_assumed.append(sid)
            implied = True
        return True, implied, "active" if implied else "stopped"

    def _implied_running(self, server: dict[str, Any], ok: list[tuple[dt.datetime, dict[str, Any], Action]]
                         ) -> bool | None:  # fmt: skip
        """Whether the VM ran at the window start, as its actions since then imply."""
        for _moment, _action, transition in ok:
            if transition.running_before is not None:
                return transition.running_before
            if transition.state is not None:  # changes running-ness, but from either side
                return None
        vm_state = server.get("OS-EXT-STS:vm_state") or ""
        return vm_state in RUNNING_STATES

    def _flavors(self, server: dict[str, Any], ok: list[tuple[dt.datetime, dict[str, Any], Action]]
                 ) -> tuple[list[Flavor], frozenset[int]]:  # fmt: skip
        """The flavor at the start and after each flavor change (resize, revert, confirm), and
        which of them are assumed.

        Known: the previous day's end flavor and the current one. A flavor the API cannot give (the
        target of a reverted resize, the flavor before a resize on a first day) is taken to be the
        next known one, and the instance is listed.
        """
        now = Flavor.from_server(server.get("flavor"))
        before = self.previous.get(server["id"], {}).get("flavor")
        # Each slot is a one-item list: a confirm shares its resize's slot, so learning the current
        # flavor resolves both.
        first: list[Flavor | None] = [Flavor.from_state(before) if before else None]
        slots, stack = [first], []
        for _moment, action, _transition in ok:
            name = action["action"]
            if name == "resize":
                stack.append(slots[-1])
                slots.append([None])
            elif name == "revertResize":
                slots.append(stack.pop() if stack else [None])
            elif name == "confirmResize":
                stack.clear()
                slots.append(slots[-1])
        if slots[-1][0] is None:
            slots[-1][0] = now
        assumed = set()
        for index in range(len(slots) - 2, -1, -1):
            if slots[index][0] is None:
                assumed.add(index)
                slots[index] = [slots[index + 1][0]]
        if assumed:
            self.counts.flavor_assumed.append(server["id"])
        flavors = [slot[0] for slot in slots]
        if any(flavor is None for flavor in flavors):
            return [], frozenset()
        return flavors, frozenset(assumed)  # type: ignore[return-value]

    # --- events -----------------------------------------------------------------------------

    def build(self, line: _Timeline) -> tuple[list[dict[str, Any]], tuple[str, str] | None, dict[str, Any] | None]:
        """The instance's events in the window, a quarantine (code, reason) or None, its end state."""
        server = line.server
        if not line.flavors:
            return [], ("no_flavor", "the server carries no embedded flavor (microversion < 2.47?)"), None
        flavor_index = 0
        running, state, exists = line.running_at_start, line.state_at_start, line.exists_at_start
        intervals: list[tuple[dt.datetime, dt.datetime, Flavor]] = []
        run_since = self.start if running else None
        events: list[dict[str, Any]] = []

        def close_run(at: dt.datetime) -> None:
            nonlocal run_since
            if run_since is not None and at > run_since:
                intervals.append((run_since, at, line.flavors[flavor_index]))
            run_since = None

        for moment, action, transition in line.steps:
            if moment >= self.end:  # after the window (read only to know the state before it)
                break
            name = action["action"]
            before_flavor = line.flavors[flavor_index]
            if name in FLAVOR_CHANGES:
                close_run(moment)
                flavor_index += 1
            new_state = transition.state or state
            if name == "resize":
                new_state = "resized" if running else state
            elif name in ("confirmResize", "revertResize"):
                new_state = "active" if running else state
            now_running = new_state in RUNNING_STATES
            for event_type in transition.events:
                at, flavor = moment, line.flavors[flavor_index]
                if event_type == "compute.instance.resize.start":
                    at, flavor = max(parse_time(action.get("start_time")) or moment, self.start), before_flavor
                elif event_type == "compute.instance.finish_resize.end" and flavor_index in line.assumed:
                    # The target of a resize reverted later is not in the API: no event beats a wrong
                    # one (XDMoD changes a session's flavor only at the confirm).
                    self.counts.skipped["resize_target_flavor_unknown"] += 1
                    continue
                events.append(self._event(line, event_type, at, flavor, new_state, action.get("request_id")))
            if not now_running:
                close_run(moment)
            elif run_since is None:
                run_since = moment
            running, state = now_running, new_state
            exists = new_state != "deleted"
        close_run(self.end)
        # Heartbeats after the actions at the same instant; the (stable) sort keeps the actions' order.
        events.extend(self._heartbeats(line, intervals))
        events.sort(key=lambda e: (e["generated"], e["event_type"] == EXISTS))

        reason = None
        zero = [f.name for f in line.flavors[: flavor_index + 1] if f.vcpus < 1] if events else []
        if zero and self.zero_vcpus == "quarantine":
            reason = ("zero_vcpus", f"flavor {zero[0]!r} has 0 vCPUs (set zero_vcpus: as_one to count it as 1)")
        elif zero:
            self.counts.zero_vcpus_mapped.append(server["id"])
            for event in events:
                event["vcpus"] = max(1, event["vcpus"])
        for event in events if reason is None else ():
            problems = schema_errors(event)
            if problems:
                reason = ("schema", f"{event['event_type']} at {event['generated']}: " + "; ".join(problems))
                break
        end_state = None
        if exists:
            end_state = {"vm_state": state, "running": running, "flavor": line.flavors[flavor_index].as_dict(),
                         "host": line.end_host, "project_id": server.get("tenant_id"),
                         "user_id": server.get("user_id")}  # fmt: skip
        return events, reason, end_state

    def _heartbeats(self, line: _Timeline, intervals: list[tuple[dt.datetime, dt.datetime, Flavor]]
                    ) -> list[dict[str, Any]]:  # fmt: skip
        """One exists event per hour the VM ran: one second before its running part of that hour ends."""
        beats: dict[dt.datetime, tuple[dt.datetime, Flavor]] = {}
        for run_start, run_end, flavor in intervals:
            hour = run_start.replace(minute=0, second=0, microsecond=0)
            while hour < run_end:
                part_start, part_end = max(run_start, hour), min(run_end, hour + HOUR)
                beats[hour] = (max(part_start, part_end - SECOND), flavor)  # the latest run of the hour wins
                hour += HOUR
        out = []
        for hour, (moment, flavor) in sorted(beats.items()):
            event = self._event(line, EXISTS, moment, flavor, "active", None)
            event["audit_period_beginning"] = hour.strftime("%Y-%m-%dT%H:%M:%S")
            event["audit_period_ending"] = (hour + HOUR).strftime("%Y-%m-%dT%H:%M:%S")
            out.append(event)
        return out

    def _event(self, line: _Timeline, event_type: str, moment: dt.datetime, flavor: Flavor, state: str,
               request_id: str | None) -> dict[str, Any]:  # fmt: skip
        server = line.server
        sid, project_id, user_id = server["id"], server.get("tenant_id") or "", server.get("user_id") or ""
        project = self.identity["projects"].get(project_id)
        user = self.identity["users"].get(user_id)
        if project is None:
            self.counts.unknown_projects.add(project_id)
        if user is None:
            self.counts.unknown_users.add(user_id)
        generated = format_generated(moment)
        event: dict[str, Any] = {
            "event_type": event_type,
            "generated": generated,
            "instance_id": sid,
            "resource_id": sid,
            "project_id": project_id,
            "tenant_id": project_id,
            "project_name": (project or {}).get("name") or project_id,
            "user_id": user_id,
            "user_name": (user or {}).get("name"),
            "instance_type": flavor.name,
            "vcpus": flavor.vcpus,
            "memory_mb": flavor.memory_mb,
            "root_gb": flavor.root_gb,
            "disk_gb": str(flavor.root_gb + flavor.ephemeral_gb),
            "ephemeral_gb": str(flavor.ephemeral_gb),
            "state": state,
            "service": "compute",
            "message_id": str(uuid.uuid5(MESSAGE_NAMESPACE, f"{sid}|{event_type}|{generated}")),
        }
        domain = self.identity["domains"].get((project or {}).get("domain_id") or "", {}).get("name")
        if domain:
            event["domain"] = domain
        if line.host:
            event["host"] = line.host
        # No launched_at: XDMoD does not read it, and Nova moves it at every resize or unshelve, so a
        # rerun after one would differ.
        if request_id:
            event["request_id"] = request_id
        return event


def hypervisor_facts(hypervisors: list[dict[str, Any]] | None, ts: dt.datetime,
                     quarantine: list[dict[str, Any]], counts: EventCounts) -> dict[str, Any] | None:  # fmt: skip
    """XDMoD's cloudresourcespecs document; hypervisors without sizes are quarantined."""
    if hypervisors is None:
        return None
    rows = []
    for hyp in hypervisors:
        row = {key: hyp.get(key) for key in ("hypervisor_hostname", "id", "memory_mb", "vcpus")}
        problems = schema_errors(row, "hypervisor_facts.schema.json")
        if problems:
            counts.quarantined["hypervisor_invalid"] += 1
            quarantine.append({"hypervisor": row, "reason": "; ".join(problems)})
            continue
        rows.append(row)
    counts.hypervisors = len(rows)
    return {"hypervisors": sorted(rows, key=lambda r: r["id"]), "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ")}


Records = list[dict[str, Any]]


def compute_events(archive: dict[str, Any], previous: dict[str, Any] | None, zero_vcpus: str,
                   counts: EventCounts) -> tuple[Records, Records, dict[str, Any]]:  # fmt: skip
    """Nova's part of the day: instance events and heartbeats, quarantine, instance end states."""
    compute = archive["compute"]
    builder = _InstanceBuilder(archive, previous, zero_vcpus, counts)
    start = parse_time(archive["window"]["start"])
    # Nova lists a server as changed when its record is touched, and its periodic cleanup touches deleted
    # servers long after the delete: one terminated before the window took no part in it (and a rerun after
    # the cleanup must stage, and count, what the first run did).
    servers = [server for server in compute["servers_changed"] + compute["servers_steady"]
               if (parse_time(server.get("OS-SRV-USG:terminated_at")) or start) >= start]  # fmt: skip
    counts.servers = len(servers)
    events: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    end_state: dict[str, dict[str, Any]] = {}
    for server in sorted(servers, key=lambda s: s["id"]):
        if (server.get("status") or "").upper() == "UNKNOWN":
            raise ValueError(
                f"server {server['id']} is listed with status UNKNOWN: its cell is down, so the day would be "
                "incomplete. Nothing was staged; rerun when all cells answer."
            )
        line = builder.timeline(server, compute["actions"].get(server["id"], []))
        instance_events, problem, state = builder.build(line)
        if problem is not None:
            code, reason = problem
            counts.quarantined[code] += len(instance_events)
            quarantine.append({"instance_id": server["id"], "reason": reason, "events": instance_events})
        else:
            events.extend(instance_events)
            counts.events.update(event["event_type"] for event in instance_events)
        if state is not None:
            end_state[server["id"]] = state
    return events, quarantine, end_state


# One builder per service the archive holds, each with its own key in the end state. Block storage
# (Cinder's volume.create.end, attach/detach, volume.delete.end) will add "block_storage" here and
# a reader in openstack_api.fetch_day; the events file, quarantine and manifest take it as it is.
SERVICES = {"compute": ("instances", compute_events)}


def build_day(archive: dict[str, Any], previous: dict[str, Any] | None, *,
              zero_vcpus: Literal["quarantine", "as_one"] = "quarantine",
              previous_name: str | None = None) -> DayEvents:  # fmt: skip
    """The day's events, quarantine, end state and hypervisor facts from the raw archive.

    ``previous``: the previous day's end state (``{"instances": {...}}``) or None.
    """
    counts = EventCounts(previous_state=previous_name if previous is not None else None)
    events: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    end_state: dict[str, Any] = {}
    for service, (state_key, build) in SERVICES.items():
        if service not in archive:
            continue
        before = None if previous is None else {state_key: previous.get(state_key, {})}
        service_events, service_quarantine, end_state[state_key] = build(archive, before, zero_vcpus, counts)
        events += service_events
        quarantine += service_quarantine
    events.sort(key=lambda e: (e["generated"], e["instance_id"]))
    facts = hypervisor_facts(archive.get("hypervisors"), parse_time(archive["window"]["end"]) - SECOND,
                             quarantine, counts)  # fmt: skip
    return DayEvents(events, quarantine, end_state, facts, counts)
