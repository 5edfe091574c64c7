"""The coverage page in a real Airflow API server, driven by a real headless Chromium.

A real `airflow api-server` (SQLite, SimpleAuthManager with an admin and a viewer) mounts the
plugin; staging days are made by the real Slurm pipeline and the real note builders; runs are
created and backfilled through Airflow's own REST API. The page's screenshot is kept in
test-artifacts/coverage-view.png.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port, run_script, stop_group
from test_coverage import ingest_and_check, stage
from xdmod_usage.staging import Store

TODAY = dt.datetime.now(dt.UTC).date()
START = TODAY - dt.timedelta(days=15)
SEEDED = [START + dt.timedelta(days=n) for n in (2, 3, 4, 5)]  # reconciled, quarantined, mismatch, staged
DAG_ID = "usage_slurm_hpc1"
PASSWORDS = {"admin": "admin-pass-1", "viewer": "viewer-pass-1"}


def site_yaml(staging: Path) -> str:
    return f"""
staging: {{root: "file://{staging}"}}
xdmod: {{runner: dry_run}}
resources:
  - {{name: hpc1, kind: slurm, xdmod_resource: hpc1, start_date: "{START}", source: {{cluster: hpc1}}}}
  - {{name: hpc2, kind: slurm, xdmod_resource: hpc2, start_date: "{TODAY - dt.timedelta(days=3)}",
     source: {{cluster: hpc2}}}}
"""


class Airflow:
    """The running API server: its URL, and authenticated calls to its REST API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.tokens = {user: self.login(user) for user in PASSWORDS}

    def login(self, user: str) -> str:
        body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", body, {"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return json.load(response)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = "admin") -> tuple[int, dict]:  # noqa: S107
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
                text = response.read()
                return response.status, json.loads(text) if text.strip().startswith(b"{") else {}
        except urllib.error.HTTPError as error:
            return error.code, {"detail": error.read().decode(errors="replace")}


@contextlib.contextmanager
def api_server(tmp: Path, site: str, extra_env: dict[str, str] | None = None) -> Iterator[Airflow]:
    """A real API server (SQLite) with the package's DAGs serialized and the plugin mounted; stopped by PID.

    Also used by bench/coverage.py.
    """
    (tmp / "site.yaml").write_text(site)
    (tmp / "passwords.json").write_text(json.dumps(PASSWORDS))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "coverage-view-test-secret-0123456789",
        "AIRFLOW__API__SECRET_KEY": "coverage-view-test-key",
        "XDMOD_USAGE_CONFIG": str(tmp / "site.yaml"),
        **(extra_env or {}),
    }
    run_script(sys.executable, "-m", "airflow", "db", "migrate", env=env, timeout=300)
    run_script(sys.executable, "-m", "airflow", "dags", "reserialize", env=env, timeout=300)
    port = free_port()
    log = tmp / "api-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2)  # noqa: S310 - loopback only
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_group(proc, timeout=5)
                pytest.fail(f"airflow api-server did not start on {url}:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
    try:
        yield Airflow(url)
    finally:
        stop_group(proc)


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coverage-view")
    with api_server(tmp, site_yaml(tmp / "staging")) as api:
        yield api, Store.from_path(tmp / "staging")


def chromium() -> Any:
    """Debian's headless Chromium through its chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,700"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.fixture(scope="module")
def seeded(airflow_api):
    """Successful runs for the staged days (as the scheduler would leave them), then the staged days."""
    api, store = airflow_api
    runs = {}
    for day in SEEDED:
        logical = f"{day}T00:00:00Z"
        interval_end = f"{day + dt.timedelta(days=1)}T00:00:00Z"
        status, run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"dag_run_id": f"manual__{day}",
                               "logical_date": logical, "data_interval_start": logical,
                               "data_interval_end": interval_end, "conf": {}})  # fmt: skip
        assert status == 200, run
        status, _ = api.call("PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", {"state": "success"})
        assert status == 200
        runs[day] = run["dag_run_id"]
    manifests = {}
    for n, day in enumerate(SEEDED):
        os.environ["AIRFLOW_CTX_DAG_ID"], os.environ["AIRFLOW_CTX_DAG_RUN_ID"] = DAG_ID, runs[day]
        try:
            manifests[day] = stage(store, day, 40 + n, bad=3 if n == 1 else 0)
            if n in (0, 2):
                ingest_and_check(store, day, manifests[day], held=40 if n == 0 else 41)
        finally:
            del os.environ["AIRFLOW_CTX_DAG_ID"], os.environ["AIRFLOW_CTX_DAG_RUN_ID"]
    return runs, manifests


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def sign_in(browser, api: Airflow, user: str) -> None:
    """Airflow's session cookie, as its login page leaves it."""
    browser.get(f"{api.url}/api/v2/version")
    browser.delete_all_cookies()
    browser.add_cookie({"name": "_token", "value": api.tokens[user], "path": "/"})


def open_page(browser, api: Airflow, days: int = 30) -> float:
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    browser.get(f"{api.url}/xdmod-coverage/?days={days}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    return time.monotonic() - started


def cell(browser, resource: str, day: dt.date):
    return browser.find_element("css selector", f'tr[data-resource="{resource}"] td[data-day="{day}"]')


def test_unauthenticated_requests_are_refused(airflow_api, browser):
    api, _ = airflow_api
    assert api.call("GET", "/xdmod-coverage/api/grid", token=None)[0] == 401
    assert api.call("GET", "/xdmod-coverage/api/grid", token="not-a-jwt")[0] == 403  # Airflow: invalid token
    status, _ = api.call("GET", "/xdmod-coverage/api/grid", token="viewer")
    assert status == 200
    # The page sends a browser without a session to Airflow's login page.
    browser.get(f"{api.url}/api/v2/version")
    browser.delete_all_cookies()
    browser.get(f"{api.url}/xdmod-coverage/")
    assert "/auth/login" in browser.current_url
    assert "xdmod-coverage" in browser.current_url  # and back here after it (next=)
    browser.add_cookie({"name": "_token", "value": "forged", "path": "/"})
    browser.get(f"{api.url}/xdmod-coverage/")
    assert "/auth/login" in browser.current_url


def test_plugin_is_linked_from_the_ui(airflow_api):
    api, _ = airflow_api
    status, plugins = api.call("GET", "/api/v2/plugins")
    assert status == 200
    ours = next(p for p in plugins["plugins"] if p["name"] == "xdmod_coverage")
    assert ours["fastapi_apps"][0]["url_prefix"] == "/xdmod-coverage"
    assert ours["external_views"][0]["href"] == "/xdmod-coverage/"


def test_page_shows_the_seeded_states_and_links(airflow_api, seeded, browser, artifacts):
    api, _ = airflow_api
    runs, manifests = seeded
    sign_in(browser, api, "admin")
    open_page(browser, api)
    expected = dict(zip(SEEDED, ("reconciled", "staged", "mismatch", "staged"), strict=True))
    due = [START + dt.timedelta(days=n) for n in range((TODAY - START).days)]
    for day in due:
        assert cell(browser, "hpc1", day).get_attribute("data-state") == expected.get(day, "missing"), day
    assert cell(browser, "hpc1", START - dt.timedelta(days=1)).get_attribute("data-state") is None  # not due
    quarantined = cell(browser, "hpc1", SEEDED[1])
    assert "q" in quarantined.get_attribute("class").split()
    title = quarantined.get_attribute("title")
    assert f"staged {manifests[SEEDED[1]]['counts']['staged']}, quarantined 3 (field_count: 3)" in title
    assert "XDMoD holds 41 of 42 expected" in cell(browser, "hpc1", SEEDED[2]).get_attribute("title")
    missing = len(due) - len(SEEDED)
    button = browser.find_element("css selector", 'button.backfill[data-resource="hpc1"]')
    assert button.text == f"Backfill {missing} missing"
    # A day's details link its run and the log of the task that explains its state.
    cell(browser, "hpc1", SEEDED[0]).click()
    run_link = browser.find_element("css selector", "#detail a.run-link").get_attribute("href")
    assert run_link == f"{api.url}/dags/{DAG_ID}/runs/{runs[SEEDED[0]]}"
    log_link = browser.find_element("css selector", "#detail a.log-link").get_attribute("href")
    assert log_link == f"{run_link}/tasks/reconcile"
    browser.save_screenshot(str(artifacts / "coverage-view.png"))
    assert (artifacts / "coverage-view.png").stat().st_size > 10_000


def test_viewer_sees_the_grid_but_airflow_refuses_its_backfill(airflow_api, seeded, browser):
    api, _ = airflow_api
    sign_in(browser, api, "viewer")
    open_page(browser, api)
    button = browser.find_element("css selector", 'button.backfill[data-resource="hpc2"]')
    button.click()
    button.click()
    status = wait_for_status(browser)
    assert "Airflow refused the backfill of usage_slurm_hpc2: 403" in status
    assert api.call("GET", "/api/v2/backfills?dag_id=usage_slurm_hpc2")[1]["total_entries"] == 0


def test_backfill_button_creates_runs_for_the_missing_days(airflow_api, seeded, browser):
    api, _ = airflow_api
    runs, _ = seeded
    sign_in(browser, api, "admin")
    open_page(browser, api)
    button = browser.find_element("css selector", 'button.backfill[data-resource="hpc1"]')
    button.click()
    assert button.text == "Confirm"  # one click only arms it
    assert api.call("GET", f"/api/v2/backfills?dag_id={DAG_ID}")[1]["total_entries"] == 0
    button.click()
    assert "created" in wait_for_status(browser)
    status, listed = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?run_type=backfill&limit=100")
    assert status == 200
    created = {dt.datetime.fromisoformat(r["logical_date"]).date() for r in listed["dag_runs"]}
    due = {START + dt.timedelta(days=n) for n in range((TODAY - START).days)}
    assert created == due - set(SEEDED)
    # The staged days keep their one successful run.
    status, all_runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")
    by_day = {}
    for run in all_runs["dag_runs"]:
        by_day.setdefault(dt.datetime.fromisoformat(run["logical_date"]).date(), []).append(run["dag_run_id"])
    assert all(by_day[day] == [runs[day]] for day in SEEDED)


def wait_for_status(browser) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(driver):
        text = driver.find_element("id", "status").text
        return text if ("created" in text or "refused" in text) else False

    return WebDriverWait(browser, 30).until(settled)
