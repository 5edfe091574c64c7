"""The ColdFront API client against a real ColdFront 1.1.10 (scripts/services/coldfront.sh: gunicorn, SQLite,
the REST API plugin) holding the seed of conftest's ``coldfront_site``. The seed is the truth.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
import requests

from conftest import ROOT, STATE, free_port, port, run_script
from fault_proxy import FaultProxy
from xdmod_usage.coldfront_api import (
    ColdFrontApi,
    ColdFrontAuthError,
    ColdFrontRequestError,
    ColdFrontUnavailableError,
)

RECORDING = Path(__file__).parent / "data" / "coldfront-1.1.10-api.json"
ACCOUNTS = {"xu-admin", "xu-member"}  # created by coldfront.sh, not by the seed
# What the recording leaves out or renumbers, because it differs between two loads of the same seed:
#  - every "id" (projects, allocations, users) is renumbered 1..N per kind in the order of the real ids. SQLite
#    AUTOINCREMENT never reuses ids, so a second `load` (or a load after other content) shifts them all; the order,
#    and so the references from a project's "allocations" to the allocations list, survive the renumbering.
#  - users' "date_joined" (the moment `load` ran) is dropped.
# Everything else is kept as ColdFront answered it, list order included (ColdFront orders projects by PI, and
# allocations by project title; one seed loaded into a fresh database always gives the same order).
NORMALISATION = ("ids renumbered 1..N per kind (projects, allocations, users) in the order of the real ids; "
                 "users' date_joined dropped; all else as answered")  # fmt: skip


def normalised(answer: dict) -> dict:
    """fetch_all()'s answer without what varies between runs (see NORMALISATION)."""
    allocation_ids = {a["id"] for a in answer["allocations"]} | {
        a["id"] for p in answer["projects"] for a in p["allocations"]
    }
    renumber = {
        "project": {old: new for new, old in enumerate(sorted(p["id"] for p in answer["projects"]), 1)},
        "allocation": {old: new for new, old in enumerate(sorted(allocation_ids), 1)},
        "user": {old: new for new, old in enumerate(sorted(u["id"] for u in answer["users"]), 1)},
    }
    projects = [
        {**p, "id": renumber["project"][p["id"]],
         "allocations": [{**a, "id": renumber["allocation"][a["id"]]} for a in p["allocations"]]}
        for p in answer["projects"]
    ]  # fmt: skip
    allocations = [{**a, "id": renumber["allocation"][a["id"]]} for a in answer["allocations"]]
    users = [{**{k: v for k, v in u.items() if k != "date_joined"}, "id": renumber["user"][u["id"]]}
             for u in answer["users"]]  # fmt: skip
    return {"projects": projects, "allocations": allocations, "users": users, "calls": answer["calls"]}


def entries(items: list, **defaults: str) -> list[dict]:
    """Seed members: "username" or {"username": ..., ...}, with the seed's defaults filled in."""
    return [{**defaults, **({"username": i} if isinstance(i, str) else i)} for i in items]


def seeded_projects(seed: dict) -> dict[str, dict]:
    out = {}
    for project in seed["projects"]:
        users = {(project["pi"], "Manager", "Active")}  # the PI is always an active Manager
        users |= {(e["username"], e["role"], e["status"])
                  for e in entries(project.get("users", []), role="User", status="Active")}  # fmt: skip
        allocations = sorted((a["resource"], a["status"]) for a in seed["allocations"]
                             if a["project"] == project["title"])  # fmt: skip
        out[project["title"]] = {"pi": project["pi"], "status": project["status"], "users": users,
                                 "attributes": project.get("attributes", {}), "allocations": allocations}  # fmt: skip
    return out


def seeded_allocations(seed: dict) -> dict[tuple[str, str], dict]:
    out = {}
    for allocation in seed["allocations"]:
        key = (allocation["project"], allocation["resource"])
        assert key not in out, f"the seed must not repeat {key}"
        out[key] = {"status": allocation["status"], "attributes": allocation.get("attributes", {}),
                    "users": {(e["username"], e["status"]) for e in entries(allocation.get("users", []),
                                                                            status="Active")}}  # fmt: skip
    return out


@pytest.fixture(scope="module")
def answer(coldfront_site) -> dict:
    """One fetch_all() with the staff token."""
    return coldfront_site.api().fetch_all()


def test_projects_pis_statuses_and_attributes_are_the_seeded_ones(coldfront_site, answer):
    projects = answer["projects"]
    got = {
        p["title"]: {"pi": p["pi"], "status": p["status"],
                     "users": {(u["user"], u["role"], u["status"]) for u in p["project_users"]},
                     "attributes": {a["proj_attr_type"]: a["value"] for a in p["project_attributes"]},
                     "allocations": sorted((a["resource"], a["status"]) for a in p["allocations"])}
        for p in projects
    }  # fmt: skip
    assert len(got) == len(projects)  # titles are unique in the seed, so no project came twice
    assert got == seeded_projects(coldfront_site.seed)


def test_allocations_are_the_seeded_ones_and_match_their_projects(coldfront_site, answer):
    allocations = answer["allocations"]
    got = {
        (a["project"], a["resource"]): {"status": a["status"],
                                        "users": {(u["user"], u["status"]) for u in a["allocation_users"]},
                                        "attributes": {t["allocation_attribute_type"]: t["value"]
                                                       for t in a["allocation_attributes"]}}
        for a in allocations
    }  # fmt: skip
    assert len(got) == len(allocations)
    assert got == seeded_allocations(coldfront_site.seed)
    # A project's allocation ids are the allocations list's ids, with the same project and resource.
    by_id = {a["id"]: a for a in allocations}
    listed = [(p["title"], a) for p in answer["projects"] for a in p["allocations"]]
    assert sorted(a["id"] for _t, a in listed) == sorted(by_id)
    for title, short in listed:
        full = by_id[short["id"]]
        assert (full["project"], full["resource"], full["status"]) == (title, short["resource"], short["status"])
    # Usage is ColdFront's own: 0.0 for an attribute type with usage ("Core Usage (Hours)"), else null.
    usages = {t["allocation_attribute_type"]: t["usage"] for a in allocations for t in a["allocation_attributes"]}
    assert usages.pop("Core Usage (Hours)") == 0.0 and set(usages.values()) == {None}


def test_user_names_are_the_seeded_ones(coldfront_site, answer):
    users = {u["username"]: u for u in answer["users"]}
    assert len(users) == len(answer["users"])
    names = {name: (u["first_name"], u["last_name"]) for name, u in users.items() if name not in ACCOUNTS}
    assert names == {u["username"]: (u["first_name"], u["last_name"]) for u in coldfront_site.seed["users"]}
    assert users["xu-admin"]["is_staff"] and users["xu-admin"]["is_superuser"]
    assert not users["xu-member"]["is_staff"] and not users["xu-member"]["is_superuser"]
    # The awkward names came through intact.
    assert {names["zmuller"][0], names["liwei"][1], names["jsmith"][1], names["rbrien"][0]} == {
        "Zoë", "李", "Smith, Jr.", 'Robert "Bob"'}  # fmt: skip


def test_fetch_all_takes_one_call_per_list(answer):
    assert answer["calls"] == 3  # ColdFront 1.1.10 answers plain lists: no pages


def test_a_wrong_token_fails_at_once_naming_the_url_not_the_token(coldfront_site):
    wrong = "0badc0ffee" * 4
    api = coldfront_site.api(token=wrong, backoff=5)
    started = time.monotonic()
    with pytest.raises(ColdFrontAuthError) as info:
        api.projects()
    assert time.monotonic() - started < 5  # no retry with backoff
    message = str(info.value)
    assert f"{coldfront_site.url}/api/projects/" in message and "401" in message
    assert wrong not in message and coldfront_site.token not in message
    assert api.calls == 1


def test_an_ordinary_account_sees_nothing_and_may_not_read_user_names(coldfront_site):
    api = coldfront_site.api(token=coldfront_site.member_token, backoff=5)
    assert api.projects() == [] and api.allocations() == []  # PI or member of nothing
    started = time.monotonic()
    with pytest.raises(ColdFrontAuthError, match="must be staff or superuser to read user names") as info:
        api.users()
    assert time.monotonic() - started < 5
    assert f"{coldfront_site.url}/api/users/" in str(info.value)
    assert coldfront_site.member_token not in str(info.value)


def test_5xx_answers_are_retried_and_counted(coldfront_site, answer):
    with FaultProxy(coldfront_site.url, fail=2) as proxy:
        api = coldfront_site.api(base_url=proxy.url, backoff=0.1)
        assert api.projects() == answer["projects"]
    assert (api.calls, api.retried, proxy.seen) == (3, 2, 3)  # two 503s, then the real answer


def test_timeouts_are_retried(coldfront_site, answer):
    with FaultProxy(coldfront_site.url, fail=0, slow=1, delay=3) as proxy:
        api = coldfront_site.api(base_url=proxy.url, timeout=1, backoff=0.1)
        assert api.allocations() == answer["allocations"]
    assert (api.calls, api.retried) == (2, 1)  # one read timeout, then the real answer


def test_retries_give_up_with_the_last_problem(coldfront_site):
    with FaultProxy(coldfront_site.url, fail=100) as proxy:
        api = coldfront_site.api(base_url=proxy.url, retries=2, backoff=0.05)
        with pytest.raises(ColdFrontUnavailableError, match=r"failed after 3 attempts: HTTP 503: injected"):
            api.allocations()
    assert api.calls == proxy.seen == 3


def test_connection_errors_are_retried(coldfront_site):
    api = coldfront_site.api(base_url=f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.05)
    with pytest.raises(ColdFrontUnavailableError, match="ConnectionError"):
        api.users()
    assert (api.calls, api.retried) == (2, 1)


def test_other_4xx_fail_at_once_with_the_status(coldfront_site):
    api = coldfront_site.api(base_url=f"{coldfront_site.url}/no-such-prefix", backoff=5)
    started = time.monotonic()
    with pytest.raises(ColdFrontRequestError, match="HTTP 404") as info:
        api.projects()
    assert time.monotonic() - started < 5 and api.calls == 1
    assert coldfront_site.token not in str(info.value)


def test_the_token_stays_out_of_repr_urls_and_coldfronts_access_log(coldfront_site, answer):
    api = coldfront_site.api()
    assert coldfront_site.token not in repr(api) and coldfront_site.url in repr(api)
    assert coldfront_site.token not in repr(coldfront_site)
    api.fetch_all()
    log = (coldfront_site.directory / "gunicorn-access.log").read_text()
    assert "GET /api/users/ HTTP/1.1" in log and "GET /api/projects/?project_attributes=true" in log
    assert coldfront_site.token not in log and coldfront_site.member_token not in log


def recording_of(answer: dict) -> dict:
    return {"recorded_from": "ColdFront 1.1.10 (scripts/services/coldfront.sh) with tests/conftest.py's "
                             "COLDFRONT_SEED, ColdFrontApi.fetch_all() with the staff token",
            "normalisation": NORMALISATION, "answer": normalised(answer)}  # fmt: skip


def dumped(recording: dict) -> str:
    """The recording as JSON with one project, allocation or user per line: small, and diffs read well."""

    def line(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    out = ["{"] + [f" {line(key)}: {line(recording[key])}," for key in ("recorded_from", "normalisation")]
    out.append(' "answer": {')
    for kind in ("projects", "allocations", "users"):
        out.append(f"  {line(kind)}: [")
        out += [f"   {line(item)}," for item in recording["answer"][kind]]
        out[-1] = out[-1].rstrip(",")
        out.append("  ],")
    out += [f'  "calls": {recording["answer"]["calls"]}', " }", "}", ""]
    return "\n".join(out)


def test_the_recording_is_what_the_real_coldfront_answers(answer):
    """tests/data/coldfront-1.1.10-api.json is re-recorded here from the running instance and must not have
    changed: it is provably real. XU_RECORD_COLDFRONT=1 rewrites it (after a seed or ColdFront change)."""
    fresh = recording_of(answer)
    if os.environ.get("XU_RECORD_COLDFRONT") == "1":
        RECORDING.write_text(dumped(fresh), encoding="utf-8")
    assert json.loads(RECORDING.read_text(encoding="utf-8")) == fresh


PAGE_SIZE = 2


@pytest.fixture(scope="module")
def coldfront_paged(coldfront_site):
    """A second real ColdFront with Django REST framework pagination on (PAGE_SIZE per page), sharing the first
    one's venv, holding the same seed. Stopped by PID at the end of the module."""
    from scripts.local_run import read_env_sh

    directory = STATE / "coldfront-test" / "coldfront-paged"
    env = {
        **coldfront_site.env,
        "XU_COLDFRONT_DIR": str(directory),
        "XU_COLDFRONT_PORT": port(28001),
        "XU_COLDFRONT_VENV": str(coldfront_site.directory / "venv"),
        "XU_COLDFRONT_PAGE_SIZE": str(PAGE_SIZE),
    }
    script = str(ROOT / "scripts" / "services" / "coldfront.sh")
    try:
        run_script(script, "reset", env=env, timeout=120)
        run_script(script, "start", env=env, timeout=300)
        run_script(script, "load", str(coldfront_site.seed_file), env=env, timeout=300)
        yield read_env_sh(directory / "env.sh")
    finally:
        run_script(script, "stop", env=env, timeout=120)


def test_paginated_lists_are_followed_to_the_end(coldfront_site, coldfront_paged, answer):
    url, token = coldfront_paged["XU_COLDFRONT_URL"], coldfront_paged["XU_COLDFRONT_TOKEN"]
    page = requests.get(f"{url}/api/projects/", headers={"Authorization": f"Token {token}"}, timeout=30).json()
    assert set(page) == {"count", "next", "previous", "results"} and len(page["results"]) == PAGE_SIZE
    assert page["count"] == len(coldfront_site.seed["projects"]) and page["next"].startswith(url)

    paged = ColdFrontApi(url, token).fetch_all()
    pages = sum(math.ceil(len(answer[kind]) / PAGE_SIZE) for kind in ("projects", "allocations", "users"))
    assert paged["calls"] == pages > 3
    assert {**normalised(paged), "calls": 3} == normalised(answer)  # the same content as the unpaginated instance


def test_next_links_are_followed_on_the_base_url_only(coldfront_paged):
    """Behind a proxy ColdFront builds `next` links to its own address: the client keeps to the base URL, so
    the token goes nowhere else."""
    url, token = coldfront_paged["XU_COLDFRONT_URL"], coldfront_paged["XU_COLDFRONT_TOKEN"]
    with FaultProxy(url, fail=0) as proxy:
        api = ColdFrontApi(proxy.url, token)
        projects = api.projects()
    assert len(projects) > PAGE_SIZE and api.calls == proxy.seen == math.ceil(len(projects) / PAGE_SIZE)
