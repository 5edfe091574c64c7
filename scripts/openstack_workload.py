"""A day of VM life on the real OpenStack of scripts/services/openstack.sh, on its fake clock.

Two projects (alpha: user alice, beta: user bob), flavors small/medium/zero, and servers that are
created, stopped, started, resized and confirmed or reverted, suspended/resumed, paused/unpaused,
shelved/unshelved and deleted at chosen UTC times on DAY (and the evenings around it). Before each
step the control plane's fake clock is moved forward to the step's time (``openstack.sh clock``),
so Nova records the actions at those times; every step waits until the servers settled.

``SCHEDULE`` is the truth the tests compare the staged events with. ``zero`` uses a flavor whose
vCPUs are set to 0 in Nova's database (the API refuses to create one; clouds get them from
migrations and bare-metal flavors) to prove such instances are quarantined, not lost.

    .venv/bin/python scripts/openstack_workload.py --day 2026-11-18 [--json truth.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "workload-user-pw"  # noqa: S105 - throwaway users of a throwaway cloud
FLAVORS = {"small": (1, 512, 1, 0), "medium": (2, 1024, 2, 1), "zero": (1, 256, 1, 0)}  # vcpus, ram, disk, eph
PROJECTS = {"alpha": "alice", "beta": "bob"}
# (server, project, flavor) created by the schedule's "create" steps.
SERVERS = {
    "steady": ("alpha", "small"), "resizer": ("alpha", "small"), "stopper": ("beta", "small"),
    "idle": ("beta", "small"), "gone-before": ("alpha", "small"), "reverter": ("alpha", "small"),
    "suspender": ("beta", "medium"), "shelver": ("alpha", "small"), "deleter": ("beta", "small"),
    "zero": ("alpha", "zero"), "midnight": ("beta", "small"),
}  # fmt: skip
# (day offset, "HH:MM", [(server, action[, argument])]) -- times are UTC on DAY + offset.
SCHEDULE: list[tuple[int, str, list[tuple[str, ...]]]] = [
    (-1, "22:00", [(name, "create") for name in ("steady", "resizer", "stopper", "idle", "gone-before",
                                                 "reverter")]),
    (-1, "22:30", [("idle", "stop"), ("gone-before", "delete")]),
    (0, "00:05", []),  # a checkpoint: the day before is closed (the tests stage it here, as a daily run would)
    (0, "01:30", [("stopper", "stop")]),
    (0, "02:10", [("suspender", "create")]),
    (0, "03:10", [("stopper", "start"), ("suspender", "suspend")]),
    (0, "05:10", [("suspender", "resume")]),
    (0, "06:20", [("suspender", "pause")]),
    (0, "08:10", [("suspender", "unpause"), ("shelver", "create")]),
    (0, "09:20", [("shelver", "shelve")]),
    (0, "10:10", [("resizer", "resize", "medium")]),
    (0, "10:20", [("resizer", "confirmResize")]),
    (0, "11:10", [("shelver", "unshelve")]),
    (0, "12:10", [("deleter", "create")]),
    (0, "14:20", [("deleter", "delete")]),
    (0, "15:00", [("zero", "create")]),
    (0, "16:10", [("reverter", "resize", "medium")]),
    (0, "16:20", [("reverter", "revertResize")]),
    (0, "23:50", [("midnight", "create")]),
    (1, "00:05", []),  # checkpoint: DAY is closed
    (1, "00:20", [("steady", "resize", "medium")]),
    (1, "00:25", [("steady", "confirmResize")]),
    (1, "00:30", [("midnight", "stop")]),
    (2, "00:05", []),  # checkpoint: DAY + 1 is closed
]  # fmt: skip
SETTLED = {  # action -> (status when done, vm_state when done)
    "create": "ACTIVE", "stop": "SHUTOFF", "start": "ACTIVE", "suspend": "SUSPENDED", "resume": "ACTIVE",
    "pause": "PAUSED", "unpause": "ACTIVE", "shelve": "SHELVED_OFFLOADED", "unshelve": "ACTIVE",
    "resize": "VERIFY_RESIZE", "confirmResize": "ACTIVE", "revertResize": "ACTIVE", "delete": "DELETED",
}  # fmt: skip


def step_time(day: dt.date, offset: int, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.combine(day + dt.timedelta(days=offset), dt.time(hour, minute), tzinfo=dt.UTC)


class Workload:
    """Drives the cloud: admin for setup, each project's user for its servers."""

    def __init__(self, cloud: str, service_env: dict[str, str]) -> None:
        import openstack

        self.service_env = service_env
        self.admin = openstack.connect(cloud=cloud)
        self.auth = dict(self.admin.config.auth)
        self.users: dict[str, Any] = {}
        self.ids: dict[str, str] = {}
        self.flavor_ids: dict[str, str] = {}

    def clock(self, moment: dt.datetime) -> None:
        """Move the control plane's fake clock forward (the script waits until nova-compute is up)."""
        subprocess.run([str(REPO / "scripts/services/openstack.sh"), "clock", moment.strftime("%Y-%m-%dT%H:%M:%SZ")],
                       check=True, env={**os.environ, **self.service_env}, stdout=subprocess.DEVNULL)  # fmt: skip

    def setup(self) -> None:
        import openstack

        identity = self.admin.identity
        member = identity.find_role("member")
        for project_name, user_name in PROJECTS.items():
            project = identity.find_project(project_name) or identity.create_project(name=project_name,
                                                                                      domain_id="default")  # fmt: skip
            user = identity.find_user(user_name) or identity.create_user(name=user_name, password=PASSWORD,
                                                                         domain_id="default")  # fmt: skip
            identity.assign_project_role_to_user(project, user, member)
            # Connection(), not connect(): connect() would merge in clouds.yaml's admin credentials.
            self.users[project_name] = openstack.connection.Connection(
                auth={"auth_url": self.auth["auth_url"], "username": user_name, "password": PASSWORD,
                      "project_name": project_name, "user_domain_name": "Default", "project_domain_name": "Default"},
                region_name=self.admin.config.region_name,
            )  # fmt: skip
        for name, (vcpus, ram, disk, ephemeral) in FLAVORS.items():
            flavor = self.admin.compute.find_flavor(name) or self.admin.compute.create_flavor(
                name=name, vcpus=vcpus, ram=ram, disk=disk, ephemeral=ephemeral)  # fmt: skip
            self.flavor_ids[name] = flavor.id
        self.image_id = self.admin.image.find_image("xu-cirros").id
        self._zero_vcpus(self.flavor_ids["zero"])

    def _zero_vcpus(self, flavor_id: str) -> None:
        """Nova's API refuses vcpus=0; set it in nova_api.flavors, as some clouds' data has it."""
        socket = Path(self.service_env["XU_OS_DIR"]) / "mariadb" / "mysqld.sock"
        subprocess.run(["mariadb", "--no-defaults", f"--socket={socket}", "-uroot", "nova_api", "-e",
                        f"UPDATE flavors SET vcpus=0 WHERE flavorid='{flavor_id}'"],  # noqa: S608 - Nova's own id
                       check=True)  # fmt: skip

    def act(self, server: str, action: str, *args: str) -> None:
        project, flavor = SERVERS[server]
        compute = self.users[project].compute
        if action == "create":
            created = compute.create_server(name=server, flavor_id=self.flavor_ids[flavor], image_id=self.image_id,
                                            networks="none")  # fmt: skip
            self.ids[server] = created.id
        else:
            sid = self.ids[server]
            calls: dict[str, Callable[[], Any]] = {
                "stop": lambda: compute.stop_server(sid), "start": lambda: compute.start_server(sid),
                "suspend": lambda: compute.suspend_server(sid), "resume": lambda: compute.resume_server(sid),
                "pause": lambda: compute.pause_server(sid), "unpause": lambda: compute.unpause_server(sid),
                "shelve": lambda: compute.shelve_server(sid), "unshelve": lambda: compute.unshelve_server(sid),
                "resize": lambda: compute.resize_server(sid, self.flavor_ids[args[0]]),
                "confirmResize": lambda: compute.confirm_server_resize(sid),
                "revertResize": lambda: compute.revert_server_resize(sid),
                "delete": lambda: compute.delete_server(sid),
            }  # fmt: skip
            calls[action]()
        self.wait(server, SETTLED[action])

    def wait(self, server: str, status: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        sid = self.ids[server]
        while True:
            found = self.admin.compute.get(f"/servers/{sid}", microversion="2.79", raise_exc=False)
            body = found.json().get("server", {}) if found.status_code == 200 else {}
            now = "DELETED" if found.status_code == 404 else body.get("status")
            if now == status and not body.get("OS-EXT-STS:task_state"):
                return
            if now == "ERROR" or time.monotonic() > deadline:
                raise RuntimeError(f"{server} ({sid}) is {now} (fault {body.get('fault')}), waiting for {status}")
            time.sleep(0.3)

    def run(self, day: dt.date, checkpoint: Callable[[dt.datetime], None] | None = None) -> dict[str, Any]:
        """Play the schedule; at each checkpoint (a step without actions) call ``checkpoint(now)``."""
        steps = []
        for offset, hhmm, actions in SCHEDULE:
            moment = step_time(day, offset, hhmm)
            self.clock(moment)
            if not actions and checkpoint is not None:
                checkpoint(moment)
            for item in actions:  # one at a time: parallel first casts from nova-api were seen lost
                self.act(*item)
            steps.append({"at": moment.isoformat(), "actions": [list(item) for item in actions]})
        projects = {name: self.admin.identity.find_project(name).id for name in PROJECTS}
        users = {name: self.admin.identity.find_user(name).id for name in PROJECTS.values()}
        return {"day": day.isoformat(), "servers": self.ids, "flavors": self.flavor_ids, "projects": projects,
                "users": users, "steps": steps}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--cloud", default="xu-admin")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workload = Workload(args.cloud, {"XU_OS_DIR": os.environ.get("XU_OS_DIR", str(REPO / ".services/openstack"))})
    workload.setup()
    truth = workload.run(args.day)
    text = json.dumps(truth, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
