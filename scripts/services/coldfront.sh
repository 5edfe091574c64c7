#!/usr/bin/env bash
# A private ColdFront 1.1.10 (the allocation portal, Django) on loopback, for tests and the demo: the source of PIs,
# projects, allocations and user names for the hierarchy DAG, read through its REST API plugin (coldfront.plugins.api:
# token auth; /api/projects/, /api/allocations/, /api/users/, /api/resources/). SQLite database, gunicorn, its own
# venv (ColdFront's Django pins clash with Airflow's: nothing goes into the project's .venv).
#
# Usage: scripts/services/coldfront.sh start|stop|status|reset|load FILE      (root only if packages are missing)
#
# Environment (defaults in brackets):
#   XU_STATE_DIR            [<repo>/.services]            state root
#   XU_COLDFRONT_DIR        [$XU_STATE_DIR/coldfront]     database, settings, secret key, logs, pid, env.sh
#   XU_COLDFRONT_PORT       [18000]                       gunicorn, bound to 127.0.0.1 only
#   XU_COLDFRONT_TIMEOUT    [90]                          seconds to wait for start / stop
#   XU_COLDFRONT_VENV       [$XU_COLDFRONT_DIR/venv]      ColdFront's venv (instances may share one)
#   XU_COLDFRONT_PYTHON     [python3.11]                  interpreter the venv is created with
#   XU_COLDFRONT_PAGE_SIZE  [unset]                       unset: lists unpaginated, as ColdFront ships the API;
#                                                         N: Django REST framework's PageNumberPagination, N per page
#                                                         (local_settings.py named by COLDFRONT_CONFIG). Read at start.
#
# start:  (re)creates the venv from scripts/services/coldfront-requirements.txt when it is missing or the lock's
#         sha256 differs from $VENV/.requirements.sha256; generates a random SECRET_KEY once ($XU_COLDFRONT_DIR/
#         secret_key, 0600); writes the settings ColdFront reads through django-environ ($XU_COLDFRONT_DIR/
#         coldfront.env, 0600, named by COLDFRONT_ENV: DB_URL=sqlite:///$XU_COLDFRONT_DIR/coldfront.db, PLUGIN_API=True,
#         SECRET_KEY, DEBUG=False, ALLOWED_HOSTS=127.0.0.1,localhost, TIME_ZONE=UTC, STATIC_ROOT, EMAIL_ENABLED=False);
#         every ColdFront process runs with `env -i` (only these settings count, not the caller's environment).
#         A new database gets `coldfront initial_setup -f` once (migrate, fields of science, the default status/
#         role/attribute-type choices, resource types Cloud/Cluster/..., scheduled tasks: re-running it would delete
#         every project, as it re-imports the fields of science), later starts only `coldfront migrate`; then
#         `collectstatic` into $XU_COLDFRONT_DIR/static once per lock (only the web UI would need it). Ensures two
#         token-only accounts (no usable password) and their API tokens:
#           xu-admin   staff superuser: reads everything, user names included (GET /api/users/ is staff-only)
#           xu-member  ordinary user, PI or member of nothing: sees no project, and 403 on /api/users/
#         Runs gunicorn (2 workers) on 127.0.0.1:PORT, waits until an authenticated GET /api/projects/ answers 200,
#         and writes $XU_COLDFRONT_DIR/env.sh (0600: it holds tokens) with XU_COLDFRONT_URL (http://127.0.0.1:PORT),
#         XU_COLDFRONT_TOKEN (xu-admin's), XU_COLDFRONT_MEMBER_TOKEN (xu-member's), XU_COLDFRONT_DIR.
#         A no-op if already running (env.sh is rewritten; a changed lock or XU_COLDFRONT_PAGE_SIZE counts at the
#         next start after a stop). First start ~16 s (venv ~10 s, initial_setup ~5 s), later ones ~2 s.
# stop:   SIGTERM to the gunicorn master by PID (SIGKILL after the timeout, then to what is left of its process
#         group); a no-op if not running.
# status: prints the state; exit 0 if running and an authenticated GET /api/projects/ answers 200, 3 otherwise.
# reset:  stop, then delete the database and env.sh (tokens die with the database); the venv and secret key stay.
# load FILE: replace the content (resources, users, projects, allocations, their users and attributes; the two API
#         accounts and their tokens stay) with the JSON seed FILE, in one transaction, through Django's ORM
#         (scripts/services/coldfront_seed.py run by the venv's python; every row passes ColdFront's full_clean()).
#         Sets the instance up first if needed; works whether gunicorn runs or not (no restart needed).
#
# Seed FILE (UTF-8 JSON; keys in [brackets] are optional):
#   {"resources":   [{"name": "HPC Cluster", "resource_type": "Cluster", [description], [is_allocatable: true]}],
#                   resource_type: one of ColdFront's (Cloud, Cluster, Cluster Partition, Compute Node, Server,
#                   Software License, Storage)
#    "users":       [{"username": "zmuller", "first_name": "Zoë", "last_name": "Müller", "email": "z@example.edu"}],
#    "projects":    [{"title": "...", "pi": "zmuller", "status": "Active",          (New | Active | Archived)
#                     [description], [institution], [field_of_science: a description from ColdFront's list,
#                     e.g. "Biological Sciences"; default "Other"],
#                     [users: ["jdoe" | {"username": "jdoe", "role": "User"|"Manager", "status": "Active"}]],
#                     [attributes: {"Institution": "Universitetet i Tromsø", ...}]}],
#                   the PI is always an active Manager of the project, as ColdFront's UI makes it;
#                   titles must be unique in a seed (allocations refer to projects by title)
#    "allocations": [{"project": "<title>", "resource": "HPC Cluster", "status": "Active",
#                     (Active | Expired | Pending | New | Renewal Requested | Revoked | Denied | ...)
#                     [users: ["zmuller" | {"username": "zmuller", "status": "Active"}]],
#                     [attributes: {"slurm_account_name": "arctic_mb", "Allocated Project ID": "...", ...}],
#                     [start_date, end_date: "YYYY-MM-DD"; default: Active today-180..today+185,
#                      Expired today-730..today-365, others none], [quantity], [justification], [description]}],
#    "attribute_types": {"project": {"<name>": "Int"}, "allocation": {"<name>": "Float"}}}   (optional)
#   Attribute types missing in ColdFront (e.g. "Institution", "Allocated Project ID") are created, public, with the
#   data type named in attribute_types (Text by default); existing ones (slurm_account_name, Core Usage (Hours), ...)
#   keep theirs, and values must fit them. Values are stored as strings.
#
#   source .services/coldfront/env.sh && curl -s -H "Authorization: Token $XU_COLDFRONT_TOKEN" \
#       "$XU_COLDFRONT_URL/api/projects/?project_attributes=true&allocations=true"
# Logs: $XU_COLDFRONT_DIR/gunicorn.log (+ gunicorn-access.log), setup.log (pip, migrate, setup, seed). Printed on
# failure.
# shellcheck source-path=SCRIPTDIR
set -Eeuo pipefail

XU_SERVICE_NAME=coldfront
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
trap 'xu_on_err $LINENO' ERR

XU_STATE_DIR=$(xu_abspath "${XU_STATE_DIR:-$REPO/.services}")
XU_COLDFRONT_DIR=$(xu_abspath "${XU_COLDFRONT_DIR:-$XU_STATE_DIR/coldfront}")
XU_COLDFRONT_DIR=${XU_COLDFRONT_DIR%/}
XU_COLDFRONT_PORT=${XU_COLDFRONT_PORT:-18000}
XU_COLDFRONT_TIMEOUT=${XU_COLDFRONT_TIMEOUT:-90}
XU_COLDFRONT_VENV=$(xu_abspath "${XU_COLDFRONT_VENV:-$XU_COLDFRONT_DIR/venv}")
XU_COLDFRONT_PYTHON=${XU_COLDFRONT_PYTHON:-python3.11}
XU_COLDFRONT_PAGE_SIZE=${XU_COLDFRONT_PAGE_SIZE:-}

if ! [[ $XU_COLDFRONT_PORT =~ ^[0-9]+$ ]] || ((XU_COLDFRONT_PORT < 1024 || XU_COLDFRONT_PORT > 65535)); then
    xu_fail "XU_COLDFRONT_PORT must be a number in 1024..65535, got '$XU_COLDFRONT_PORT'"
fi
[[ $XU_COLDFRONT_TIMEOUT =~ ^[0-9]+$ ]] || xu_fail "XU_COLDFRONT_TIMEOUT must be a number of seconds"
[[ -z $XU_COLDFRONT_PAGE_SIZE || $XU_COLDFRONT_PAGE_SIZE =~ ^[1-9][0-9]*$ ]] ||
    xu_fail "XU_COLDFRONT_PAGE_SIZE must be unset or a positive number, got '$XU_COLDFRONT_PAGE_SIZE'"
# The paths end up in a django-environ file and a database URL: keep them plain.
for _path in "$XU_COLDFRONT_DIR" "$XU_COLDFRONT_VENV"; do
    [[ $_path =~ ^[A-Za-z0-9._/+-]+$ ]] || xu_fail "path '$_path' may only contain [A-Za-z0-9._/+-]"
done
[[ -n $XU_COLDFRONT_DIR && $XU_COLDFRONT_DIR != "$REPO" && $XU_COLDFRONT_DIR != "$XU_STATE_DIR" ]] ||
    xu_fail "XU_COLDFRONT_DIR must be a dedicated directory, got '$XU_COLDFRONT_DIR'"

LOCK=$SCRIPT_DIR/coldfront-requirements.txt
SEED_PY=$SCRIPT_DIR/coldfront_seed.py
VENV=$XU_COLDFRONT_VENV
VENV_STAMP=$VENV/.requirements.sha256
DB_FILE=$XU_COLDFRONT_DIR/coldfront.db
SETUP_DONE=$XU_COLDFRONT_DIR/coldfront.db.initialised   # initial_setup ran to the end on this database
SECRET_FILE=$XU_COLDFRONT_DIR/secret_key                 # 0600, generated once
SETTINGS_FILE=$XU_COLDFRONT_DIR/coldfront.env            # 0600 (holds SECRET_KEY), rewritten at every start
LOCAL_SETTINGS=$XU_COLDFRONT_DIR/local_settings.py       # only with XU_COLDFRONT_PAGE_SIZE
STATIC_DIR=$XU_COLDFRONT_DIR/static
STATIC_STAMP=$STATIC_DIR/.requirements.sha256
PID_FILE=$XU_COLDFRONT_DIR/gunicorn.pid                  # written by this script ($!): the gunicorn master
LOG_FILE=$XU_COLDFRONT_DIR/gunicorn.log                  # stdout/stderr: gunicorn's error log, Django's log
ACCESS_LOG=$XU_COLDFRONT_DIR/gunicorn-access.log         # request lines only (the token travels in a header)
SETUP_LOG=$XU_COLDFRONT_DIR/setup.log
ENV_FILE=$XU_COLDFRONT_DIR/env.sh
URL=http://127.0.0.1:$XU_COLDFRONT_PORT
STAFF_USER=xu-admin
MEMBER_USER=xu-member
# Every ColdFront process of this instance carries this in its environment (exact: <...> ends the path).
INSTANCE="<$XU_COLDFRONT_DIR>"
NEEDLE="XU_COLDFRONT_INSTANCE=$INSTANCE"
XU_FAIL_LOGS=("$LOG_FILE" "$SETUP_LOG")

# The clean environment every ColdFront process of this instance runs in (only our settings count).
CF_ENV=(env -i "XU_COLDFRONT_INSTANCE=$INSTANCE" "PATH=$VENV/bin:/usr/local/bin:/usr/bin:/bin"
    "HOME=$XU_COLDFRONT_DIR" LANG=C.UTF-8 TZ=UTC PYTHONNOUSERSITE=1 "COLDFRONT_ENV=$SETTINGS_FILE"
    DJANGO_SETTINGS_MODULE=coldfront.config.settings)
if [[ -n $XU_COLDFRONT_PAGE_SIZE ]]; then
    CF_ENV+=("COLDFRONT_CONFIG=$LOCAL_SETTINGS")
fi

# Run a command of ColdFront's venv in the clean environment, from the instance directory.
cf_run() {
    (cd -- "$XU_COLDFRONT_DIR" && exec "${CF_ENV[@]}" "$@")
}

# 200 from an authenticated GET /api/projects/ (the token goes through stdin, never argv).
ready_ok() {
    local token=$1
    [[ -n $token ]] || return 1
    curl -fsS -o /dev/null --max-time 5 -H @- "$URL/api/projects/" <<<"Authorization: Token $token"
}

# The staff token recorded in env.sh (for status).
recorded_token() {
    [[ -f $ENV_FILE ]] || return 0
    # shellcheck disable=SC1090
    (. "$ENV_FILE" && printf '%s' "${XU_COLDFRONT_TOKEN:-}")
}

ensure_tools() {
    if ! command -v curl >/dev/null; then
        xu_require_root
        xu_apt_install curl
    fi
    if ! command -v "$XU_COLDFRONT_PYTHON" >/dev/null; then
        xu_require_root
        xu_apt_install python3.11 python3.11-venv
        XU_COLDFRONT_PYTHON=/usr/bin/python3.11
    fi
}

ensure_venv() {
    local want have
    want=$(sha256sum -- "$LOCK" | cut -d' ' -f1)
    have=$(cat -- "$VENV_STAMP" 2>/dev/null || true)
    if [[ -x $VENV/bin/gunicorn && -x $VENV/bin/coldfront && $have == "$want" ]]; then
        return 0
    fi
    if xu_running_pid "$PID_FILE" "$NEEDLE" >/dev/null; then
        xu_fail "$VENV does not match $(basename -- "$LOCK") but ColdFront runs from it: stop it first, then start"
    fi
    xu_log "creating $VENV ($("$XU_COLDFRONT_PYTHON" --version 2>&1)) from $(basename -- "$LOCK")"
    rm -rf -- "$VENV"
    "$XU_COLDFRONT_PYTHON" -m venv "$VENV" >>"$SETUP_LOG" 2>&1 || xu_fail "could not create the venv $VENV"
    env -u PYTHONPATH -u PIP_REQUIRE_VIRTUALENV "$VENV/bin/python" -m pip install -q --no-input \
        --disable-pip-version-check -r "$LOCK" >>"$SETUP_LOG" 2>&1 || xu_fail "pip install -r $LOCK failed"
    echo "$want" >"$VENV_STAMP"
}

ensure_secret() {
    if [[ ! -s $SECRET_FILE ]]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRET_FILE")
    fi
    chmod 0600 -- "$SECRET_FILE"
}

# Write FILE atomically with mode 0600 from stdin.
write_private() {
    local file=$1 tmp
    tmp=$(umask 077 && mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod 0600 -- "$tmp"
    mv -f -- "$tmp" "$file"
}

write_settings() {
    write_private "$SETTINGS_FILE" <<EOF
# Generated by scripts/services/coldfront.sh; rewritten at every start. Read by ColdFront (django-environ) via
# COLDFRONT_ENV.
DB_URL=sqlite:///$DB_FILE
PLUGIN_API=True
SECRET_KEY=$(cat -- "$SECRET_FILE")
DEBUG=False
ALLOWED_HOSTS=127.0.0.1,localhost
TIME_ZONE=UTC
STATIC_ROOT=$STATIC_DIR
EMAIL_ENABLED=False
CENTER_NAME=xdmod-usage test center
EOF
    if [[ -n $XU_COLDFRONT_PAGE_SIZE ]]; then
        write_private "$LOCAL_SETTINGS" <<EOF
# Generated by scripts/services/coldfront.sh (XU_COLDFRONT_PAGE_SIZE); read by ColdFront via COLDFRONT_CONFIG.
REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "rest_framework.pagination.PageNumberPagination"
REST_FRAMEWORK["PAGE_SIZE"] = $XU_COLDFRONT_PAGE_SIZE
EOF
    else
        rm -f -- "$LOCAL_SETTINGS"
    fi
}

ensure_database() {
    if [[ -f $DB_FILE && -f $SETUP_DONE ]]; then
        cf_run coldfront migrate --noinput >>"$SETUP_LOG" 2>&1 || xu_fail "coldfront migrate failed"
    else
        xu_log "initialising database $DB_FILE (coldfront initial_setup)"
        rm -f -- "$DB_FILE" "$DB_FILE-journal" "$DB_FILE-wal" "$DB_FILE-shm" "$SETUP_DONE"
        cf_run coldfront initial_setup --force_overwrite >>"$SETUP_LOG" 2>&1 || xu_fail "coldfront initial_setup failed"
        : >"$SETUP_DONE"
    fi
    chmod 0600 -- "$DB_FILE"
    local want
    want=$(cat -- "$VENV_STAMP")
    if [[ ! -f $STATIC_DIR/manifest.json || $(cat -- "$STATIC_STAMP" 2>/dev/null || true) != "$want" ]]; then
        cf_run coldfront collectstatic --noinput --clear >>"$SETUP_LOG" 2>&1 || xu_fail "coldfront collectstatic failed"
        echo "$want" >"$STATIC_STAMP"
    fi
}

# Everything but the server: venv, settings, database (the venv is left alone while the server runs).
prepare() {
    ensure_tools
    install -d -m 0700 -- "$XU_COLDFRONT_DIR"
    : >"$SETUP_LOG"
    ensure_venv
    ensure_secret
    write_settings
    ensure_database
}

# The two API accounts (created if missing). Sets TOKEN and MEMBER_TOKEN.
ensure_accounts() {
    local tokens
    tokens=$(cf_run python "$SEED_PY" accounts "$STAFF_USER" "$MEMBER_USER" 2>>"$SETUP_LOG") ||
        xu_fail "could not create the API accounts"
    read -r TOKEN MEMBER_TOKEN <<<"$tokens"
    [[ -n ${TOKEN:-} && -n ${MEMBER_TOKEN:-} ]] || xu_fail "no API tokens from $SEED_PY"
}

write_env() {
    write_private "$ENV_FILE" <<EOF
# Generated by $XU_SERVICE_NAME; source it from a client shell. Holds API tokens: keep it 0600.
$(printf 'export %s=%q\n' XU_COLDFRONT_URL "$URL" XU_COLDFRONT_TOKEN "$TOKEN" \
        XU_COLDFRONT_MEMBER_TOKEN "$MEMBER_TOKEN" XU_COLDFRONT_DIR "$XU_COLDFRONT_DIR")
EOF
}

do_start() {
    local pid
    if pid=$(xu_running_pid "$PID_FILE" "$NEEDLE"); then
        ensure_accounts
        xu_wait_until "$XU_COLDFRONT_TIMEOUT" "coldfront" "$PID_FILE" "$NEEDLE" -- ready_ok "$TOKEN"
        write_env
        xu_log "already running (pid $pid, $URL)"
        return 0
    fi
    rm -f -- "$PID_FILE"
    if xu_port_in_use "$XU_COLDFRONT_PORT"; then
        XU_FAIL_LOGS=()  # the logs are an earlier run's
        xu_fail "port 127.0.0.1:$XU_COLDFRONT_PORT is already in use by another process (set XU_COLDFRONT_PORT)"
    fi
    prepare
    ensure_accounts

    : >"$LOG_FILE"
    # setsid and env exec (no fork), so $! is the gunicorn master itself and stop can signal it by PID.
    setsid "${CF_ENV[@]}" "$VENV/bin/gunicorn" --bind "127.0.0.1:$XU_COLDFRONT_PORT" --workers 2 --timeout 60 \
        --graceful-timeout 10 --chdir "$XU_COLDFRONT_DIR" --access-logfile "$ACCESS_LOG" \
        coldfront.config.wsgi:application \
        </dev/null >>"$LOG_FILE" 2>&1 &
    echo "$!" >"$PID_FILE"
    xu_wait_until "$XU_COLDFRONT_TIMEOUT" "coldfront" "$PID_FILE" "$NEEDLE" -- ready_ok "$TOKEN"
    write_env
    xu_log "started (pid $(cat -- "$PID_FILE"), $URL, database $DB_FILE)"
}

# True if a live (not zombie) process other than the group leader is in process group PGID.
group_alive() {
    local pgid=$1 f stat
    local -a fields
    for f in /proc/[0-9]*/stat; do
        stat=$(cat -- "$f" 2>/dev/null) || continue
        read -r -a fields <<<"${stat##*) }"
        [[ ${fields[0]} != Z && ${fields[2]} == "$pgid" && ${f//[^0-9]/} != "$pgid" ]] && return 0
    done
    return 1
}

do_stop() {
    local pid
    pid=$(xu_running_pid "$PID_FILE" "$NEEDLE" || true)
    xu_stop_pid coldfront "$PID_FILE" "$NEEDLE" "$XU_COLDFRONT_TIMEOUT"
    # After a SIGKILL of the master its workers may linger: they are in its process group (setsid).
    if [[ -n $pid ]] && group_alive "$pid"; then
        xu_log "killing what is left of process group $pid"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
}

do_status() {
    local pid
    if pid=$(xu_running_pid "$PID_FILE" "$NEEDLE"); then
        if ready_ok "$(recorded_token)" >/dev/null 2>&1; then
            echo "coldfront: running (pid $pid, $URL, database $DB_FILE)"
            return 0
        fi
        echo "coldfront: process $pid alive but not ready"
        return 3
    fi
    echo "coldfront: stopped"
    return 3
}

do_reset() {
    do_stop
    xu_log "deleting database $DB_FILE and $ENV_FILE"
    rm -f -- "$DB_FILE" "$DB_FILE-journal" "$DB_FILE-wal" "$DB_FILE-shm" "$SETUP_DONE" "$ENV_FILE"
}

do_load() {
    local file t0
    (($# == 1)) || xu_fail "load: give exactly one seed file (usage: $0 load FILE)"
    file=$(xu_abspath "$1")
    [[ -f $file && -r $file ]] || xu_fail "load: not a readable file: $file"
    t0=$EPOCHREALTIME
    prepare
    ensure_accounts
    xu_log "loading $file"
    cf_run python "$SEED_PY" load "$file" "$STAFF_USER" "$MEMBER_USER" 2>>"$SETUP_LOG" ||
        xu_fail "could not load $file (see the last lines of $SETUP_LOG)"
    tail -n 1 -- "$SETUP_LOG" >&2
    printf 'load: %s in %s s\n' "$file" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
}

case "${1:-}" in
    load)
        shift
        do_load "$@"
        ;;
    reset) do_reset ;;
    start | stop | status) xu_main "$@" ;;
    *)
        echo "usage: $0 start|stop|status|reset|load FILE" >&2
        exit 2
        ;;
esac
