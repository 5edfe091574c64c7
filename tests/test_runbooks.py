"""The operator runbooks (docs/runbooks/) stay true to the code and to the installed Airflow.

No services: every `airflow ...` command in the runbooks is parsed by Airflow's own CLI parser and its
subcommand's `--help` is run (once per subcommand, in a scratch AIRFLOW_HOME), every flag must be in that
help, DAG ids and Params must exist in the DAGs the factory builds from the example config (plus the
resources add-a-resource.md adds), REST calls must name real /api/v2 routes with bodies their models
accept, and every error class and alert kind the package raises to operators has its entry in alerts.md.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import datetime as dt
import importlib
import inspect
import io
import json
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "docs" / "runbooks"
PAGES = [
    "README.md",
    "add-a-resource.md",
    "rerun-a-day.md",
    "backfill-a-range.md",
    "replay-from-archive.md",
    "restore-a-backup.md",
    "rotate-credentials.md",
    "alerts.md",
]
PLUGIN_SOURCE = "\n".join(path.read_text() for path in sorted((ROOT / "plugins" / "xdmod_usage").glob("*.py")))

# Messages the package raises (or logs) for operators without a class of their own: each has a heading in
# alerts.md, and the quoted fragment must be both in the code (so a changed message shows here) and in alerts.md.
MESSAGES = [
    ("task_failed", "[xdmod-usage] "),
    ("deadline_missed", "is late: not done"),
    ("stale-staging", "stale staging: "),
    ("preflight-failed", "check(s) failed: "),
    ("windowerror", "this run has no data interval"),
    ("sourceshrankerror", "the source has probably expired data"),
    ("quarantinelimiterror", "were quarantined, above the"),
    ("staged-version-changed", "the day was restaged since"),
    ("staged-version-changed", "is no longer staged"),
    ("unknownclustererror", "slurmdbd does not know cluster"),
    ("openstack-cell-down", "is listed with status UNKNOWN"),
    ("xdmodcommanderror", "lock contention, will retry"),
    ("xdmod-db-timestamp", "returned nothing"),
    ("reconciliation-mismatch-missing", "reconciliation failed: "),
    ("reconciliation-mismatch-missing", "from the staged file"),
    ("reconciliation-mismatch-missing", "XDMoD rejects the whole file"),
    ("reconciliation-mismatch-extra-double-counting", "extra (double counting)"),
    ("reconciliation-mismatch-extra-double-counting", "our writer's count differs from XDMoD's rules"),
    ("hierarchy-conflicts-and-quarantined-projects", "quarantined project "),
    ("hierarchyerror", "the sources give a hierarchy XDMoD cannot import"),
    ("reloadrefusederror", "cannot be rebuilt, so nothing was deleted"),
    ("reload-not-confirmed", "to delete and reload; got"),
    ("reload-would-lose-jobs-before-start_date", "XDMoD holds jobs that ended before these resources' start_date"),
    ("reload-cannot-rebuild-a-day", "cannot rebuild the day from its raw"),
    ("reload-reconciliation", "reload reconciliation: "),
    ("restorerefusederror", "set replace to overwrite"),
    ("restore-params-refused", "params.confirm must repeat the backup id"),
    ("restore-params-refused", "params.target_conn_id is required"),
    ("backup-config-over-ssh", "needs xdmod.ssh (the SSH runner's connection)"),
    ("decryptionerror", "does not authenticate: wrong key"),
]
# Param tables (first column `Param`) and the DAG whose Params they must list exactly.
PARAM_TABLES = {"rerun-a-day.md": "usage_slurm_hpc1", "restore-a-backup.md": "xdmod_restore"}
DAG_ID_PATTERN = re.compile(r"\busage_(?:slurm|openshift|openstack)_[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]")


def text(name: str) -> str:
    return (RUNBOOKS / name).read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found, seen = set(), {}
    for line in fenced_out(markdown).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    found |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', markdown))
    return found


FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)


def fenced_out(markdown: str) -> str:
    return FENCE.sub("", markdown)


def blocks(markdown: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(markdown)]


def inline_spans(markdown: str) -> list[str]:
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", fenced_out(markdown))


def shell_lines(body: str) -> list[str]:
    return [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def command_words(line: str) -> list[str]:
    """A shell line's words from the command on (leading VAR=value assignments dropped)."""
    words = shlex.split(line, comments=True)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    return words


def airflow_commands() -> list[tuple[str, list[str], bool]]:
    """(page, words after `airflow`, complete?) for every airflow command line: fenced ones must be
    complete commands; inline ones are complete commands or a bare subcommand path (`airflow backfill create`)."""
    found = []
    for page in PAGES:
        for lang, body in blocks(text(page)):
            if lang in ("bash", "sh", "shell", "console", ""):
                for line in shell_lines(body):
                    words = command_words(line)
                    if words[:1] == ["airflow"]:
                        found.append((page, words[1:], True))
        for span in inline_spans(text(page)):
            if span.startswith("airflow "):
                found.append((page, command_words(span)[1:], False))
    return found


def python_commands() -> list[tuple[str, list[str]]]:
    """(page, words) of `python -m xdmod_usage.X ...` and `python scripts/*.py ...` lines."""
    found = []
    for page in PAGES:
        spans = [line for lang, body in blocks(text(page)) if lang in ("bash", "") for line in shell_lines(body)]
        inline = [span for span in inline_spans(text(page)) if re.match(r"^([A-Za-z_]\w*=\S+\s+)*python3? ", span)]
        for line in spans + inline:
            words = command_words(line)
            if words[:1] in (["python"], ["python3"]) and len(words) > 1:
                module = words[1] == "-m" and words[2].startswith("xdmod_usage.")
                if module or words[1].startswith("scripts/"):
                    found.append((page, words))
    return found


def flags(words: list[str]) -> set[str]:
    out = set()
    for word in words:
        if word == "--":
            break
        if re.match(r"^--?[A-Za-z]", word):
            out.add(word.split("=", 1)[0])
    return out


@pytest.fixture(scope="module")
def added_resources() -> list[dict]:
    """The resource entries add-a-resource.md shows (each YAML block that is a list of resources)."""
    entries = []
    for lang, body in blocks(text("add-a-resource.md")):
        if lang == "yaml":
            data = yaml.safe_load(body)
            if isinstance(data, list) and all(isinstance(item, dict) and "kind" in item for item in data):
                entries += data
    assert {entry["kind"] for entry in entries} == {"slurm", "openshift", "openstack"}
    return entries


@pytest.fixture(scope="module")
def dags(added_resources) -> dict:
    """Every DAG the factory builds from the example config plus add-a-resource.md's entries (which must be valid)."""
    from xdmod_usage import dag_factory
    from xdmod_usage.config import parse_site_config

    data = yaml.safe_load((ROOT / "include" / "site-config.example.yaml").read_text())
    data["resources"] += copy.deepcopy(added_resources)
    site = parse_site_config(yaml.safe_dump(data), "example config + add-a-resource.md")
    built = {}
    for build in (dag_factory.build_usage_dags, dag_factory.build_aggregation_dags, dag_factory.build_hierarchy_dags,
                  dag_factory.build_reload_dags, dag_factory.build_backup_dags):  # fmt: skip
        built.update(build(site))
    return built


def conf_problems(dag, conf: dict) -> list[str]:
    """Every key a Param of the DAG, and the merged Params valid (as Airflow checks a trigger's conf)."""
    unknown = set(conf) - set(dag.params.keys())
    if unknown:
        return [f"{dag.dag_id} has no Params {sorted(unknown)}"]
    params = copy.deepcopy(dag.params)
    try:
        params.update(conf)
        params.validate()
    except Exception as exc:  # ParamValidationError: the message says which Param and why
        return [f"Params of {dag.dag_id} refuse {conf}: {str(exc).strip().splitlines()[0]}"]
    return []


def test_each_runbook_exists_and_says_something():
    for page in PAGES:
        path = RUNBOOKS / page
        assert path.is_file(), page
        body = path.read_text(encoding="utf-8")
        assert body.startswith("# "), f"{page}: no title"
        assert len(body) > 1500 and body.count("\n") > 25, f"{page} is too short to be a runbook"
    listed = set(re.findall(r"\]\(([\w-]+\.md)\)", text("README.md")))
    assert set(PAGES) - {"README.md"} <= listed, "the index does not list every runbook"


def operator_errors() -> dict[str, type]:
    """Every exception class the package defines (its modules imported), private ones left out."""
    import xdmod_usage

    found = {}
    for module_info in pkgutil.iter_modules(xdmod_usage.__path__):
        module = importlib.import_module(f"xdmod_usage.{module_info.name}")
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
                    and not name.startswith("_")):  # fmt: skip
                found[name] = value
    return found


def test_every_error_class_has_an_entry_in_alerts():
    errors = operator_errors()
    assert {"SourceShrankError", "QuarantineLimitError", "ReloadRefusedError", "VerificationError"} <= set(errors)
    have = anchors(text("alerts.md"))
    missing = sorted(name for name in errors if slug(name) not in have)
    assert not missing, f"alerts.md has no heading for {missing}"


def test_every_alert_kind_has_an_entry_in_alerts():
    tree = ast.parse((ROOT / "plugins" / "xdmod_usage" / "alerts.py").read_text())
    kinds = {
        value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value == "event" and isinstance(value, ast.Constant)
    }
    assert kinds >= {"task_failed", "deadline_missed"}
    have = anchors(text("alerts.md"))
    assert not kinds - have, f"alerts.md has no heading for alert kinds {sorted(kinds - have)}"


@pytest.mark.parametrize(("anchor", "fragment"), MESSAGES, ids=[f"{a}:{f[:20]}" for a, f in MESSAGES])
def test_each_operator_message_is_in_the_code_and_explained(anchor, fragment):
    alerts = text("alerts.md")
    assert fragment in PLUGIN_SOURCE, f"the code no longer says {fragment!r}: update alerts.md#{anchor}"
    assert anchor in anchors(alerts), f"alerts.md has no heading #{anchor}"
    assert fragment in alerts, f"alerts.md does not quote {fragment!r}"


def cli_parser():
    from airflow.cli.cli_parser import get_parser

    return get_parser()


def subcommand_path(parser, words: list[str]) -> list[str]:
    """The leading words that name (nested) subcommands of Airflow's CLI."""
    import argparse

    path = []
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        path.append(word)
        parser = actions[0].choices[word]
    return path


@pytest.fixture(scope="module")
def help_texts(tmp_path_factory) -> dict[tuple[str, ...], tuple[int, str]]:
    """`airflow <path> --help` for each distinct subcommand path of the runbooks (run once each, in parallel)."""
    parser = cli_parser()
    paths = {tuple(subcommand_path(parser, words)) for _, words, _ in airflow_commands()}
    home = tmp_path_factory.mktemp("airflow-home")
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    airflow = Path(sys.executable).with_name("airflow")

    def run(path: tuple[str, ...]) -> tuple[int, str]:
        proc = subprocess.run([str(airflow), *path, "--help"], env=env, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(zip(paths, pool.map(run, paths), strict=True))


def test_every_airflow_command_parses_with_the_real_cli(help_texts, dags):
    commands = airflow_commands()
    assert len(commands) > 30
    parser = cli_parser()
    problems = []
    for page, words, complete in commands:
        line = "airflow " + shlex.join(words)
        path = tuple(subcommand_path(parser, words))
        status, help_text = help_texts[path]
        if not path or status != 0:
            problems.append(f"{page}: `{line}`: `airflow {' '.join(path)} --help` exited {status}")
            continue
        for flag in sorted(flags(words)):
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text):
                problems.append(f"{page}: `{line}`: {flag} is not an option of `airflow {' '.join(path)}`")
        if not complete and list(path) == words:
            continue  # a bare subcommand named in prose
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
                args = parser.parse_args(words)
        except SystemExit:
            problems.append(f"{page}: `{line}` does not parse: {errors.getvalue().strip().splitlines()[-1:]}")
            continue
        dag_id = getattr(args, "dag_id", None)
        if dag_id is not None and dag_id not in dags:
            problems.append(f"{page}: `{line}`: no DAG {dag_id!r}")
            continue
        regex = getattr(args, "task_regex", None)
        if regex and not any(re.search(regex, task.task_id) for task in dags[dag_id].tasks):
            problems.append(f"{page}: `{line}`: no task of {dag_id} matches {regex!r}")
        for attr in ("conf", "dag_run_conf"):
            if getattr(args, attr, None):
                conf = json.loads(getattr(args, attr))
                problems += [f"{page}: `{line}`: {problem}" for problem in conf_problems(dags[dag_id], conf)]
    assert not problems, "\n".join(problems)


def test_every_dag_id_in_the_runbooks_exists(dags):
    for page in PAGES:
        body = text(page)
        code = "\n".join(b for _, b in blocks(body)) + "\n" + "\n".join(inline_spans(body))
        unknown = sorted(set(DAG_ID_PATTERN.findall(code)) - set(dags))
        assert not unknown, f"{page} names DAGs that do not exist: {unknown}"


def test_param_tables_list_exactly_the_dags_params(dags):
    for page, dag_id in PARAM_TABLES.items():
        rows, in_table = [], False
        for line in text(page).splitlines():
            if re.match(r"^\|\s*Param\s*\|", line):
                in_table = True
            elif in_table and line.startswith("|"):
                rows.append(line)
            elif in_table:
                break
        names = {m.group(1) for row in rows if (m := re.match(r"^\|\s*`([\w]+)`\s*\|", row))}
        assert names == set(dags[dag_id].params.keys()), f"{page}: Param table {sorted(names)}"


def rest_calls() -> list[tuple[str, str, str, dict | None]]:
    """(page, method, /api/v2 path, JSON body) of every curl call to Airflow's REST API in the runbooks."""
    calls = []
    for page in PAGES:
        for lang, body in blocks(text(page)):
            for line in shell_lines(body) if lang == "bash" else []:
                words = command_words(line)
                urls = [w for w in words if "/api/v2/" in w]
                if words[:1] != ["curl"] or not urls:
                    continue
                method = words[words.index("-X") + 1] if "-X" in words else "GET"
                data = words[words.index("-d") + 1] if "-d" in words else None
                path = re.sub(r"^https?://[^/]+", "", urls[0]).split("?")[0]
                calls.append((page, method, path, json.loads(data) if data else None))
    return calls


def test_rest_calls_name_real_routes_with_valid_bodies(dags):
    from airflow.api_fastapi.core_api.routes.public import public_router

    calls = rest_calls()
    assert calls
    for page, method, path, body in calls:
        routes = [r for r in public_router.routes if method in getattr(r, "methods", set())
                  and re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(r.path)), path)]  # fmt: skip
        assert routes, f"{page}: no route {method} {path}"
        field = routes[0].body_field
        if body is not None:
            assert field is not None, f"{page}: {method} {path} takes no body"
            field.field_info.annotation.model_validate(body)
            dag_id = body.get("dag_id") or (path.split("/")[4] if path.startswith("/api/v2/dags/") else None)
            assert dag_id in dags, f"{page}: no DAG {dag_id!r}"
            for key in ("conf", "dag_run_conf"):
                if body.get(key):
                    assert not conf_problems(dags[dag_id], body[key]), f"{page}: {method} {path}"


def test_python_commands_exist_and_take_their_options():
    commands = python_commands()
    assert {words[2] for _, words in commands if words[1] == "-m"} >= {"xdmod_usage.preflight", "xdmod_usage.freshness"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])}
    helps: dict[tuple[str, ...], str] = {}
    for page, words in commands:
        target = tuple(words[1:3]) if words[1] == "-m" else (words[1],)
        if target not in helps:
            proc = subprocess.run([sys.executable, *target, "--help"], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)  # fmt: skip
            assert proc.returncode == 0, f"{page}: `{shlex.join(words)}`: --help exited {proc.returncode}"
            helps[target] = proc.stdout
        for flag in flags(words[len(target) + 1 :]):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[target]), f"{page}: {flag} in {words}"


def test_links_between_runbooks_resolve():
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)?(?:#([^)\s]+))?\)", fenced_out(text(page))):
            if target.startswith("http"):
                continue
            path = (RUNBOOKS / target).resolve() if target else RUNBOOKS / page
            assert path.is_file(), f"{page}: link to missing {target}"
            if anchor:
                assert anchor in anchors(path.read_text(encoding="utf-8")), f"{page}: no #{anchor} in {target or page}"


def test_json_and_yaml_examples_are_well_formed():
    for page in PAGES:
        for lang, body in blocks(text(page)):
            if lang == "json":
                json.loads(body)
            elif lang == "yaml":
                list(yaml.safe_load_all(body))


def test_put_back_raw_archives_restores_a_lost_day_that_then_replays_byte_identically(tmp_path):
    """replay-from-archive.md's procedure for a lost staged day, end to end on file stores."""
    from xdmod_usage.backup_catalog import write_json
    from xdmod_usage.backup_make import archive_raw_sources
    from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
    from xdmod_usage.staging import Store
    from xdmod_usage.synthetic import synthetic_sacct_lines
    from xdmod_usage.window import UsageWindow

    staging_root, backup_root = tmp_path / "staging", tmp_path / "backups"
    staging_root.mkdir()
    backup_root.mkdir()
    staging, backups = Store.from_path(staging_root), Store.from_path(backup_root)
    day = SlurmDay("hpc1", "hpc1", "hpc1", UsageWindow.for_day(dt.date(2026, 11, 20)))
    lines = list(synthetic_sacct_lines(day.window, 300))
    first = stage_slurm_day(staging, day, lambda out: [out.write(line) for line in lines], {"type": "test"},
                            max_quarantine_share=1.0)  # fmt: skip
    archive = archive_raw_sources(backups, {"hpc1": staging}, "copy")  # what the weekly backup copies
    write_json(backups, "backups/20261122T030012Z/manifest.json", {"id": "20261122T030012Z", "archive": archive})
    staged_file = first.manifest["files"][day.staged_name]["path"]
    original = (staging_root / "hpc1" / "2026-11-20" / staged_file).read_bytes()
    shutil.rmtree(staging_root / "hpc1" / "2026-11-20")

    script = RUNBOOKS.parent.parent / "scripts" / "put_back_raw_archives.py"
    argv = [sys.executable, str(script), "--backup-root", f"file://{backup_root}", "--staging-root",
            f"file://{staging_root}", "--resource", "hpc1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2026-11-20: put back raw.sacct.gz from backup 20261122T030012Z" in done.stdout

    replayed = stage_slurm_day(staging, day, None, {"type": "test"}, max_quarantine_share=1.0)
    assert replayed.manifest["version"] == first.manifest["version"]
    assert replayed.manifest["source"]["replayed_from_archive"] is True
    assert (staging_root / "hpc1" / "2026-11-20" / staged_file).read_bytes() == original
    left = sorted(path.name for path in (staging_root / "hpc1" / "2026-11-20").iterdir())
    assert left == ["manifest.json", first.manifest["version"]]  # v-restored/ is gone

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "staged, left alone" in again.stdout  # a staged day is never touched
