#!/usr/bin/env bash
# A private OpenStack Zed control plane on loopback, for tests: Keystone, Placement, Glance, Nova (api, conductor,
# scheduler, compute with the fake virt driver: servers never run anything) and neutron-server alone (ML2, flat, no
# agents, no service plugins), on Debian 12's packaged libraries (python3-keystone, python3-nova, ...) run by Debian's
# /usr/bin/python3 through scripts/services/openstack_run.py, with a private RabbitMQ (+ its own epmd) and a private
# MariaDB (scripts/services/mariadb.sh with XU_MARIADB_DIR=$XU_OS_DIR/mariadb).
#
# Usage: scripts/services/openstack.sh start|stop|status|reset      (run as root)
#        scripts/services/openstack.sh clock UTC_TIME                e.g. clock 2026-11-20T22:00:00Z
#
# Environment (defaults in brackets):
#   XU_STATE_DIR          [<repo>/.services]          state root
#   XU_OS_DIR             [$XU_STATE_DIR/openstack]   everything of this instance: etc/, logs/, run/, lib/,
#                                                     rabbitmq/, mariadb/, faketime.rc, env.sh, clouds.yaml
#   XU_OS_PORT_BASE       [15000]   all ports, bound to 127.0.0.1 only:
#                                   +0 keystone  +1 placement  +2 glance  +3 nova-api  +4 neutron
#                                   +5 rabbitmq AMQP  +6 epmd  +7 erlang distribution  +8 MariaDB
#                                   Fixed at the first start of an XU_OS_DIR (Nova stores URLs): `reset` to change.
#                                   Instances with other XU_OS_DIR and XU_OS_PORT_BASE (>= 9 apart) run side by side.
#   XU_OS_TIMEOUT         [180]     seconds to wait for each step of start (and for `clock`)
#   XU_OS_ADMIN_PASSWORD  [xu-admin-test-pw]   password of Keystone user `admin` (no whitespace)
#   XU_OS_DB_PASSWORD     [xu-openstack-db-pw] MariaDB password of user `openstack` ([A-Za-z0-9._-] only)
#   XU_OS_FAKE_CLOCK      [0]       1: run every OpenStack Python process (services and *-manage commands) under
#                                   libfaketime (LD_PRELOAD=libfaketimeMT.so.1) reading a RELATIVE offset in seconds
#                                   from $XU_OS_DIR/faketime.rc (fake now = real now + offset; re-read every second;
#                                   monotonic clocks stay real). MariaDB, RabbitMQ and clients are NOT faked.
#                                   Read at start when no OpenStack service of this instance runs (else kept).
#   XU_OS_CLOCK_OFFSET    [unset]   initial offset in seconds (e.g. -432000: five days ago) written at start; unset:
#                                   keep the offset of an earlier run of this XU_OS_DIR, else 0. Ignored while any
#                                   OpenStack service of this instance still runs. `clock` only moves forward, so
#                                   start behind the first day a test needs.
#   XU_OS_COMPUTE_HOST    [xu-os-compute]      Nova host name of the single (fake) compute node / hypervisor
#
# start:  installs missing packages, starts epmd, RabbitMQ and MariaDB, creates and migrates the databases (once per
#         XU_OS_DIR), bootstraps Keystone (user admin with role admin on project admin, region RegionOne), starts the
#         services (one worker each), creates public+internal endpoints for identity, placement, image, compute
#         (/v2.1) and network, a public active image `xu-cirros` (a few bytes, raw/bare), lists networks once (Zed's
#         neutron-server answers GET /v2.0/ports with 500 before), maps the compute host into cell1 and waits until
#         nova-compute/-conductor/-scheduler are up. No flavors, networks, projects or users besides admin are created
#         (services authenticate as admin). A no-op if everything already runs (missing pieces are started).
#         About 40 s the first time, 20-30 s on a later start; ~1.9 GB RSS in all. Writes:
#           $XU_OS_DIR/clouds.yaml (0600): openstacksdk cloud `xu-admin` (admin/admin, Default domains, RegionOne,
#                                          interface public, identity_api_version 3; holds the password)
#           $XU_OS_DIR/env.sh: OS_CLIENT_CONFIG_FILE, XU_OS_CLOUD=xu-admin, XU_OS_AUTH_URL, XU_OS_REGION,
#                              XU_OS_{KEYSTONE,PLACEMENT,GLANCE,NOVA,NEUTRON}_URL, XU_OS_IMAGE(_ID),
#                              XU_OS_COMPUTE_HOST, XU_OS_FAKE_CLOCK, XU_OS_FAKETIME_FILE, XU_OS_DIR,
#                              XU_OS_PORT_BASE, XU_OS_RABBIT_PORT, XU_OS_MARIADB_PORT (no password)
#         Nova: compute_driver=fake.FakeDriver, allow_resize_to_same_host, report_interval=2 s,
#         service_down_time=30 s; Keystone tokens last 365 days (clients check expiry with the REAL clock).
# stop:   SIGTERM to each service's process group (all started with setsid), SIGKILL after 30 s; then RabbitMQ (its
#         wrapper, beam and beam's helpers), epmd and MariaDB. A no-op for what is not running.
# status: prints the state (pids, fake clock, total RSS); exit 0 if all run, Keystone issues a token and Nova lists
#         a hypervisor, 3 otherwise.
# reset:  stop, then delete $XU_OS_DIR.
# clock UTC_TIME: (instance running with XU_OS_FAKE_CLOCK=1) sets the offset so that the services' now == UTC_TIME;
#         refuses to go backwards (exit 2), writes faketime.rc atomically, sleeps 1.5 s (libfaketime caches it 1 s),
#         waits until the API shows nova-compute up again (after a forward jump its last report looks old until the
#         next one, <= 2 s later), then prints the new offset (seconds) on stdout. Servers created afterwards show
#         `created` and instance-action start_time at the fake time.
#
#   source .services/openstack/env.sh && openstack --os-cloud "$XU_OS_CLOUD" server list --all-projects
#   python -c 'import openstack; c = openstack.connect(cloud="xu-admin"); print(list(c.compute.hypervisors()))'
# Logs: $XU_OS_DIR/logs/<service>.log (also *-manage.log, admin-setup.log, rabbitmq/log/). Printed on failure.
# shellcheck source-path=SCRIPTDIR
set -Eeuo pipefail

XU_SERVICE_NAME=openstack
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
trap 'xu_on_err $LINENO' ERR

XU_STATE_DIR=$(xu_abspath "${XU_STATE_DIR:-$REPO/.services}")
XU_OS_DIR=$(xu_abspath "${XU_OS_DIR:-$XU_STATE_DIR/openstack}")
XU_OS_DIR=${XU_OS_DIR%/}
XU_OS_PORT_BASE=${XU_OS_PORT_BASE:-15000}
XU_OS_TIMEOUT=${XU_OS_TIMEOUT:-180}
XU_OS_ADMIN_PASSWORD=${XU_OS_ADMIN_PASSWORD:-xu-admin-test-pw}
XU_OS_DB_PASSWORD=${XU_OS_DB_PASSWORD:-xu-openstack-db-pw}
XU_OS_FAKE_CLOCK=${XU_OS_FAKE_CLOCK:-0}
XU_OS_COMPUTE_HOST=${XU_OS_COMPUTE_HOST:-xu-os-compute}

if ! [[ $XU_OS_PORT_BASE =~ ^[0-9]+$ ]] || ((XU_OS_PORT_BASE < 1024 || XU_OS_PORT_BASE > 65526)); then
    xu_fail "XU_OS_PORT_BASE must be a number in 1024..65526, got '$XU_OS_PORT_BASE'"
fi
[[ $XU_OS_TIMEOUT =~ ^[0-9]+$ ]] || xu_fail "XU_OS_TIMEOUT must be a number of seconds"
[[ $XU_OS_ADMIN_PASSWORD =~ ^[^[:space:]]+$ ]] || xu_fail "XU_OS_ADMIN_PASSWORD must be non-empty without whitespace"
[[ $XU_OS_DB_PASSWORD =~ ^[A-Za-z0-9._-]+$ ]] || xu_fail "XU_OS_DB_PASSWORD may only contain [A-Za-z0-9._-]"
[[ $XU_OS_FAKE_CLOCK =~ ^[01]$ ]] || xu_fail "XU_OS_FAKE_CLOCK must be 0 or 1"
[[ $XU_OS_COMPUTE_HOST =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || xu_fail "XU_OS_COMPUTE_HOST is not a host name"
[[ -n $XU_OS_DIR && $XU_OS_DIR != "$REPO" && $XU_OS_DIR != "$XU_STATE_DIR" ]] ||
    xu_fail "XU_OS_DIR must be a dedicated directory, got '$XU_OS_DIR'"

P_KEYSTONE=$((XU_OS_PORT_BASE + 0))
P_PLACEMENT=$((XU_OS_PORT_BASE + 1))
P_GLANCE=$((XU_OS_PORT_BASE + 2))
P_NOVA=$((XU_OS_PORT_BASE + 3))
P_NEUTRON=$((XU_OS_PORT_BASE + 4))
P_AMQP=$((XU_OS_PORT_BASE + 5))
P_EPMD=$((XU_OS_PORT_BASE + 6))
P_DIST=$((XU_OS_PORT_BASE + 7))
P_MARIADB=$((XU_OS_PORT_BASE + 8))

ETC=$XU_OS_DIR/etc
LOGS=$XU_OS_DIR/logs
RUN=$XU_OS_DIR/run
LIB=$XU_OS_DIR/lib
RMQ=$XU_OS_DIR/rabbitmq
ENV_FILE=$XU_OS_DIR/env.sh
CLOUDS_FILE=$XU_OS_DIR/clouds.yaml
FAKETIME_FILE=$XU_OS_DIR/faketime.rc
FAKE_MODE_FILE=$RUN/fake-clock        # 0/1: the mode the running services were started with
PORT_BASE_FILE=$XU_OS_DIR/port-base   # the port base the databases were initialised with
CLOUD=xu-admin
REGION=RegionOne
IMAGE_NAME=xu-cirros
KEYSTONE_URL=http://127.0.0.1:$P_KEYSTONE
AUTH_URL=$KEYSTONE_URL/v3
PLACEMENT_URL=http://127.0.0.1:$P_PLACEMENT
GLANCE_URL=http://127.0.0.1:$P_GLANCE
NOVA_URL=http://127.0.0.1:$P_NOVA/v2.1
NEUTRON_URL=http://127.0.0.1:$P_NEUTRON
TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:$P_AMQP/
DB_BASE=mysql+pymysql://openstack:$XU_OS_DB_PASSWORD@127.0.0.1:$P_MARIADB
DATABASES=(keystone placement glance neutron nova_api nova nova_cell0)
STOP_TIMEOUT=30

# A PID is trusted to be ours only if its command line (config file paths) or environment mentions this instance's
# directory. Every process started here also carries XU_OS_INSTANCE in its environment (services that rewrite
# their process title clobber the environment block, but keep the config path in the title).
NEEDLE="$XU_OS_DIR/"
# Debian's interpreter: the one that sees python3-nova & co. (PATH's python3 may be a pyenv or a venv).
PY=/usr/bin/python3
RUNNER=$SCRIPT_DIR/openstack_run.py   # entry points and WSGI servers (and a time.sleep fix under libfaketime)
PY_ENV=(env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV -u PYTHONSTARTUP -u LD_PRELOAD PYTHONNOUSERSITE=1
    "XU_OS_INSTANCE=$XU_OS_DIR/")
FAKE_ENV=()   # LD_PRELOAD=... assignments when the fake clock is on

# The OpenStack services (start order: see do_start).
SERVICES=(keystone placement glance-api neutron-server nova-conductor nova-scheduler nova-api nova-compute)

export XU_STATE_DIR
export XU_MARIADB_DIR=$XU_OS_DIR/mariadb
export XU_MARIADB_PORT=$P_MARIADB
export XU_MARIADB_TIMEOUT=$XU_OS_TIMEOUT
MARIADB_SH=$SCRIPT_DIR/mariadb.sh

# ---------------------------------------------------------------- helpers
pidfile() { printf '%s/%s.pid\n' "$RUN" "$1"; }
logfile() { printf '%s/%s.log\n' "$LOGS" "$1"; }
running_pid() { xu_running_pid "$(pidfile "$1")" "$NEEDLE"; }

any_service_running() {
    local s
    for s in "${SERVICES[@]}"; do
        running_pid "$s" >/dev/null && return 0
    done
    return 1
}

logs_for() {   # set the logs printed on failure
    local n
    XU_FAIL_LOGS=()
    for n in "$@"; do
        case "$n" in
            rabbitmq) XU_FAIL_LOGS+=("$(logfile rabbitmq)" "$RMQ/log/xuos$P_AMQP@localhost.log") ;;
            mariadb) XU_FAIL_LOGS+=("$XU_MARIADB_DIR/mariadbd.log" "$XU_MARIADB_DIR/mariadbd.out") ;;
            *) XU_FAIL_LOGS+=("$(logfile "$n")") ;;
        esac
    done
}

sql() { mariadb --no-defaults --socket="$XU_MARIADB_SOCKET" -uroot --batch -N "$@"; }

# Print the PIDs of LEADER's process group and of all its descendants (RabbitMQ's beam starts helpers in their
# own sessions) that belong to this instance. The kernel does not reuse a PID while it names a live process group.
family_pids() {
    local leader=$1 pid
    [[ $leader =~ ^[0-9]+$ ]] || return 0
    for pid in $(ps -e -o pid=,ppid=,pgid= | awk -v l="$leader" '
        { pid[NR] = $1; ppid[NR] = $2; pgid[NR] = $3 }
        END {
            in_[l] = 1
            for (i = 1; i <= NR; i++) if (pgid[i] == l) in_[pid[i]] = 1
            do {
                changed = 0
                for (i = 1; i <= NR; i++) if (!(pid[i] in in_) && (ppid[i] in in_)) { in_[pid[i]] = 1; changed = 1 }
            } while (changed)
            for (p in in_) print p
        }'); do
        xu_pid_matches "$pid" "$NEEDLE" && printf '%s\n' "$pid"
    done
    return 0
}

# SIGTERM to the process groups of NAMEs (all at once), wait up to STOP_TIMEOUT for every process of their families
# (snapshot taken first: helpers outside the group are reparented when their parent exits), then SIGKILL.
stop_groups() {
    local n pid fam=() all=() left=() i f
    for n in "$@"; do
        pid=$(head -n 1 -- "$(pidfile "$n")" 2>/dev/null || true)
        mapfile -t fam < <(family_pids "$pid")
        if ((${#fam[@]} == 0)); then
            rm -f -- "$(pidfile "$n")"
            continue
        fi
        xu_log "stopping $n (pid $pid, ${#fam[@]} process(es))"
        all+=("${fam[@]}")
        if xu_pid_matches "$pid" "$NEEDLE"; then
            kill -TERM -- "-$pid" 2>/dev/null || true
        else   # leader gone, the rest left: signal them one by one
            kill -TERM "${fam[@]}" 2>/dev/null || true
        fi
    done
    if ((${#all[@]})); then
        for ((i = 0; i <= STOP_TIMEOUT * 5; i++)); do
            left=()
            for pid in "${all[@]}"; do
                xu_pid_matches "$pid" "$NEEDLE" && left+=("$pid")
            done
            ((${#left[@]})) || break
            sleep 0.2
        done
        if ((${#left[@]})); then
            xu_log "WARNING: still alive after ${STOP_TIMEOUT}s, sending SIGKILL to ${left[*]}"
            kill -KILL "${left[@]}" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    for n in "$@"; do rm -f -- "$(pidfile "$n")"; done
    # libfaketime may leave per-PID shared-memory objects behind.
    for f in /dev/shm/faketime_shm_* /dev/shm/sem.faketime_sem_*; do
        [[ -e $f ]] || continue
        pid=${f##*_}
        [[ -d /proc/$pid ]] || rm -f -- "$f"
    done
    return 0
}

# launch NAME CMD...: detached in its own session (setsid and env exec: $! is the process itself), output to the
# log, under the fake clock if it is on. launch_real: never faked (epmd, RabbitMQ).
launch() {
    local name=$1
    shift
    printf '\n===== %s start %s =====\n' "$name" "$(date -u +%FT%TZ)" >>"$(logfile "$name")"
    setsid "${PY_ENV[@]}" "${FAKE_ENV[@]}" "$@" </dev/null >>"$(logfile "$name")" 2>&1 &
    echo "$!" >"$(pidfile "$name")"
}
launch_real() {
    local FAKE_ENV=()
    launch "$@"
}

# os_py NAME MODULE:FUNC ARGS...: run an OpenStack entry point on Debian's python (foreground, faked clock if on).
os_py() {
    "${PY_ENV[@]}" "${FAKE_ENV[@]}" "$PY" "$RUNNER" main "$@"
}

# Background tasks: task NAME FUNC ARGS... runs FUNC in a subshell logging to logs/NAME.log; wait_tasks waits for all.
TASK_PIDS=()
TASK_NAMES=()
task() {
    local name=$1
    shift
    printf '\n===== %s %s =====\n' "$name" "$(date -u +%FT%TZ)" >>"$(logfile "$name")"
    ( trap - ERR; set -e; "$@" ) </dev/null >>"$(logfile "$name")" 2>&1 &
    TASK_PIDS+=("$!")
    TASK_NAMES+=("$name")
}
wait_tasks() {
    local i failed=()
    for i in "${!TASK_PIDS[@]}"; do
        wait "${TASK_PIDS[$i]}" || failed+=("${TASK_NAMES[$i]}")
    done
    TASK_PIDS=()
    TASK_NAMES=()
    if ((${#failed[@]})); then
        logs_for "${failed[@]}"
        xu_fail "failed: ${failed[*]}"
    fi
}

http_ok() { curl -fsS -o /dev/null --max-time 3 "$1"; }

check_port_free() {   # check_port_free PORT WHAT
    if xu_port_in_use "$1"; then
        xu_fail "port 127.0.0.1:$1 (for $2) is already in use by another process (set XU_OS_PORT_BASE)"
    fi
}

ini_escape() { printf '%s' "${1//\$/\$\$}"; }   # oslo.config interpolates $name

# ---------------------------------------------------------------- admin client (openstacksdk, real clock)
# admin_py setup|wait-compute|smoke ARGS...: small admin tasks through the public APIs with the clouds.yaml cloud.
admin_py() {
    env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV -u LD_PRELOAD PYTHONNOUSERSITE=1 \
        OS_CLIENT_CONFIG_FILE="$CLOUDS_FILE" XU_OS_CLOUD="$CLOUD" "$PY" - "$@" <<'PYEOF'
import os
import sys
import time

for key in list(os.environ):  # the caller's OS_* variables must not leak into the connection
    if key.startswith("OS_") and key != "OS_CLIENT_CONFIG_FILE":
        del os.environ[key]

import openstack  # noqa: E402


def connect():
    return openstack.connect(cloud=os.environ["XU_OS_CLOUD"])


def ensure_endpoints(conn, region, wanted):
    services = {s.type: s for s in conn.identity.services()}
    for stype, name, url in wanted:
        svc = services.get(stype)
        if svc is None:
            svc = conn.identity.create_service(type=stype, name=name, is_enabled=True)
        eps = list(conn.identity.endpoints(service_id=svc.id))
        for iface in ("public", "internal"):
            ep = next((e for e in eps if e.interface == iface and e.region_id == region), None)
            if ep is None:
                conn.identity.create_endpoint(service_id=svc.id, interface=iface, url=url, region_id=region)
            elif ep.url != url:
                conn.identity.update_endpoint(ep, url=url)


def ensure_image(conn, name):
    images = [i for i in conn.image.images(name=name)]
    for img in images:
        if img.status == "active":
            return img.id
    for img in images:
        conn.image.delete_image(img, ignore_missing=True)
    body = {"name": name, "disk_format": "raw", "container_format": "bare", "visibility": "public"}
    image_id = conn.image.post("/images", json=body).json()["id"]
    conn.image.put(
        f"/images/{image_id}/file",
        data=b"xu-cirros: a few bytes, not a bootable disk (Nova's fake driver never reads it)\n",
        headers={"Content-Type": "application/octet-stream"},
    )
    status = conn.image.get(f"/images/{image_id}").json()["status"]
    if status != "active":
        raise SystemExit(f"image {name} ({image_id}) is {status}, not active")
    return image_id


def service_states(conn):
    return {(s.binary, s.host): s.state for s in conn.compute.services()}


def wait_services(conn, host, binaries, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            states = service_states(conn)
        except openstack.exceptions.SDKException as exc:
            states = {}
            err = exc
        else:
            err = None
        down = [b for b in binaries if states.get((b, host)) != "up"]
        if not down:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"nova services not up after {timeout}s: {down} (states {states}, {err})")
        time.sleep(0.5)


def main():
    cmd = sys.argv[1]
    if cmd == "setup":
        (region, host, image, timeout, placement, glance, nova, neutron) = sys.argv[2:10]
        ensure_endpoints(
            connect(),
            region,
            [
                ("placement", "placement", placement),
                ("image", "glance", glance),
                ("compute", "nova", nova),
                ("network", "neutron", neutron),
            ],
        )
        conn = connect()  # a new token: its catalog has the new endpoints
        print(ensure_image(conn, image))
        # neutron-server (Zed) answers GET /v2.0/ports with 500 until networks were listed once.
        deadline = time.monotonic() + float(timeout)
        while True:
            try:
                list(conn.network.networks())
                list(conn.network.ports())
                break
            except openstack.exceptions.SDKException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        wait_services(conn, host, ["nova-conductor", "nova-scheduler", "nova-compute"], float(timeout))
    elif cmd == "wait-compute":
        host, timeout = sys.argv[2], float(sys.argv[3])
        wait_services(connect(), host, ["nova-compute"], timeout)
    elif cmd == "smoke":
        conn = connect()
        token = conn.session.get_token()
        hyps = [h.name for h in conn.compute.hypervisors()]
        if not token or not hyps:
            raise SystemExit(f"smoke check failed: token={bool(token)} hypervisors={hyps}")
        print(f"token issued; hypervisors: {', '.join(hyps)}")
    else:
        raise SystemExit(f"unknown command {cmd}")


main()
PYEOF
}

# ---------------------------------------------------------------- fake clock
fake_offset() { head -n 1 -- "$FAKETIME_FILE" 2>/dev/null | tr -d '+ ' ; }

write_offset() {   # atomically: libfaketime re-reads the file every FAKETIME_CACHE_DURATION seconds
    local tmp
    tmp=$(mktemp "$FAKETIME_FILE.XXXXXX")
    printf '%+d\n' "$1" >"$tmp"
    chmod 0644 -- "$tmp"
    mv -f -- "$tmp" "$FAKETIME_FILE"
}

setup_fake_clock() {
    local mode=$XU_OS_FAKE_CLOCK lib off
    if any_service_running && [[ -f $FAKE_MODE_FILE ]]; then
        mode=$(cat "$FAKE_MODE_FILE")
        if [[ $mode != "$XU_OS_FAKE_CLOCK" ]]; then
            xu_log "services already running with XU_OS_FAKE_CLOCK=$mode: keeping it (stop first to change)"
        fi
    else
        if [[ -n ${XU_OS_CLOCK_OFFSET:-} ]]; then
            [[ $XU_OS_CLOCK_OFFSET =~ ^[+-]?[0-9]+$ ]] || xu_fail "XU_OS_CLOCK_OFFSET must be whole seconds"
            write_offset "$XU_OS_CLOCK_OFFSET"
        elif [[ ! -f $FAKETIME_FILE ]]; then
            write_offset 0
        fi
        echo "$mode" >"$FAKE_MODE_FILE"
    fi
    FAKE_ENV=()
    if [[ $mode == 1 ]]; then
        xu_apt_install faketime libfaketime
        lib=$(dpkg -L libfaketime | grep -m1 '/libfaketimeMT\.so\.1$') ||
            xu_fail "libfaketimeMT.so.1 not found in package libfaketime"
        FAKE_ENV=("LD_PRELOAD=$lib" "FAKETIME_TIMESTAMP_FILE=$FAKETIME_FILE" FAKETIME_CACHE_DURATION=1
            FAKETIME_DONT_FAKE_MONOTONIC=1)
        off=$(fake_offset)
        xu_log "fake clock: offset ${off}s (services' now = $(date -u -d "@$(($(date +%s) + off))" +%FT%TZ))"
    fi
}

# The Date header of Keystone (wsgiref, faked process) must show real now + offset.
verify_fake_clock() {
    local date_hdr shown expect off s
    [[ $(cat "$FAKE_MODE_FILE" 2>/dev/null) == 1 ]] || return 0
    logs_for keystone
    for s in "${SERVICES[@]}"; do
        grep -q libfaketime "/proc/$(running_pid "$s")/maps" || xu_fail "$s does not run under libfaketime"
    done
    off=$(fake_offset)
    date_hdr=$(curl -fsS -D - -o /dev/null --max-time 3 "$AUTH_URL" | tr -d '\r' | sed -n 's/^[Dd]ate: //p')
    shown=$(date -u -d "$date_hdr" +%s) || xu_fail "cannot read Keystone's Date header"
    expect=$(($(date -u +%s) + off))
    ((shown >= expect - 5 && shown <= expect + 5)) ||
        xu_fail "fake clock not effective: Keystone says $date_hdr, expected $(date -u -d "@$expect")"
}

# ---------------------------------------------------------------- config
write_file() {   # write_file PATH MODE < content (atomically)
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" -- "$tmp"
    mv -f -- "$tmp" "$1"
}

authtoken_section() {   # services validate tokens and call each other as `admin` (no service users are created)
    cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = admin
password = $(ini_escape "$XU_OS_ADMIN_PASSWORD")
project_name = admin
user_domain_name = Default
project_domain_name = Default
region_name = $REGION
EOF
}

ksa_section() {   # ksa_section NAME ENDPOINT: keystoneauth session for Nova's clients of other services
    cat <<EOF
[$1]
auth_type = password
auth_url = $KEYSTONE_URL
username = admin
password = $(ini_escape "$XU_OS_ADMIN_PASSWORD")
project_name = admin
user_domain_name = Default
project_domain_name = Default
region_name = $REGION
endpoint_override = $2
EOF
}

db_section() {   # db_section SECTION DATABASE
    printf '[%s]\nconnection = %s/%s?charset=utf8\nmax_pool_size = 5\nmax_overflow = 10\n' "$1" "$DB_BASE" "$2"
}

write_configs() {
    install -d -m 0700 -- "$ETC" "$ETC/placement"
    install -d -m 0755 -- "$LIB/keystone" "$LIB/glance/images" "$LIB/glance/staging" "$LIB/glance/cache" \
        "$LIB/nova/instances" "$LIB/nova/lock" "$LIB/neutron/lock"

    write_file "$ETC/keystone.conf" 0600 <<EOF
# Generated by scripts/services/openstack.sh (rewritten at every start).
[DEFAULT]
debug = false
$(db_section database keystone)
[token]
provider = fernet
# Clients check expiry with the real clock while Keystone may run on a fake one.
expiration = 31536000
[fernet_tokens]
key_repository = $LIB/keystone/fernet-keys
[fernet_receipts]
key_repository = $LIB/keystone/fernet-keys
[credential]
key_repository = $LIB/keystone/credential-keys
[cache]
enabled = true
backend = dogpile.cache.memory
EOF

    write_file "$ETC/placement/placement.conf" 0600 <<EOF
# Generated by scripts/services/openstack.sh (rewritten at every start).
[DEFAULT]
debug = false
[api]
auth_strategy = keystone
$(db_section placement_database placement)
$(authtoken_section)
EOF

    write_file "$ETC/glance-api.conf" 0600 <<EOF
# Generated by scripts/services/openstack.sh (rewritten at every start).
[DEFAULT]
debug = false
bind_host = 127.0.0.1
bind_port = $P_GLANCE
workers = 0
image_cache_dir = $LIB/glance/cache
node_staging_uri = file://$LIB/glance/staging
graceful_shutdown_timeout = 5
$(db_section database glance)
$(authtoken_section)
[paste_deploy]
flavor = keystone
config_file = $ETC/glance-api-paste.ini
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = $LIB/glance/images
[oslo_concurrency]
lock_path = $LIB/glance
EOF

    write_file "$ETC/glance-api-paste.ini" 0644 <<'EOF'
# Minimal pipeline (from Debian's glance-common glance-api-paste.ini, keystone flavor).
[pipeline:glance-api-keystone]
pipeline = versionnegotiation authtoken context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true
EOF

    write_file "$ETC/neutron.conf" 0600 <<EOF
# Generated by scripts/services/openstack.sh (rewritten at every start). neutron-server alone: no agents.
[DEFAULT]
debug = false
bind_host = 127.0.0.1
bind_port = $P_NEUTRON
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $TRANSPORT_URL
api_workers = 0
rpc_workers = 1
rpc_state_report_workers = 0
api_paste_config = $ETC/neutron-api-paste.ini
state_path = $LIB/neutron
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
graceful_shutdown_timeout = 5
$(db_section database neutron)
$(authtoken_section)
[oslo_concurrency]
lock_path = $LIB/neutron/lock
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers =
[ml2_type_flat]
flat_networks = *
EOF

    write_file "$ETC/neutron-api-paste.ini" 0644 <<'EOF'
# Minimal pipeline (from Debian's neutron-common api-paste.ini, keystone strategy).
[composite:neutron]
use = call:paste.urlmap:urlmap_factory
/: neutronversions_composite
/v2.0: neutronapi_v2_0

[composite:neutronapi_v2_0]
use = call:neutron.auth:pipeline_factory
keystone = request_id catch_errors authtoken keystonecontext extensions neutronapiapp_v2_0

[composite:neutronversions_composite]
use = call:neutron.auth:pipeline_factory
keystone = neutronversions

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:catch_errors]
paste.filter_factory = oslo_middleware:CatchErrors.factory

[filter:keystonecontext]
paste.filter_factory = neutron.auth:NeutronKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:extensions]
paste.filter_factory = neutron.api.extensions:plugin_aware_extension_middleware_factory

[app:neutronversions]
paste.app_factory = neutron.pecan_wsgi.app:versions_factory

[app:neutronapiapp_v2_0]
paste.app_factory = neutron.api.v2.router:APIRouter.factory
EOF

    # nova.conf is shared by all Nova services; nova-db.conf (database access) is NOT given to nova-compute.
    write_file "$ETC/nova.conf" 0600 <<EOF
# Generated by scripts/services/openstack.sh (rewritten at every start).
[DEFAULT]
debug = false
host = $XU_OS_COMPUTE_HOST
my_ip = 127.0.0.1
state_path = $LIB/nova
instances_path = $LIB/nova/instances
transport_url = $TRANSPORT_URL
compute_driver = fake.FakeDriver
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = $P_NOVA
osapi_compute_workers = 1
allow_resize_to_same_host = true
# Short reports: after a forward jump of the fake clock nova-compute looks down until its next report.
report_interval = 2
service_down_time = 30
heal_instance_info_cache_interval = -1
# Periodic tasks (e.g. the scheduler's host discovery below) start at once, not after a random 0-60 s.
periodic_fuzzy_delay = 0
graceful_shutdown_timeout = 5
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = $ETC/nova-api-paste.ini
[conductor]
workers = 1
[scheduler]
workers = 1
# Maps the compute host into cell1 soon after it registers (start also runs nova-manage cell_v2 discover_hosts
# if that takes long).
discover_hosts_in_cells_interval = 2
[oslo_concurrency]
lock_path = $LIB/nova/lock
[vnc]
enabled = false
[spice]
enabled = false
[cinder]
os_region_name = $REGION
$(authtoken_section)
$(ksa_section placement "$PLACEMENT_URL")
$(ksa_section neutron "$NEUTRON_URL")
service_metadata_proxy = false
[glance]
region_name = $REGION
endpoint_override = $GLANCE_URL
EOF

    write_file "$ETC/nova-db.conf" 0600 <<EOF
# Generated by scripts/services/openstack.sh: database access for nova-api/-conductor/-scheduler/-manage only.
$(db_section api_database nova_api)
$(db_section database nova)
EOF

    write_file "$ETC/nova-api-paste.ini" 0644 <<'EOF'
# Minimal pipeline (from Debian's nova-common api-paste.ini, keystone strategy, /v2.1 only).
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2.1: oscomputeversion_v2
/v2.1/+: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = compute_req_id faultwrap request_log sizelimit authtoken keystonecontext osapi_compute_app_v21

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory

[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory

[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory

[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory

[pipeline:oscomputeversions]
pipeline = faultwrap request_log oscomputeversionapp

[pipeline:oscomputeversion_v2]
pipeline = compute_req_id faultwrap request_log oscomputeversionapp_v2

[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory

[app:oscomputeversionapp_v2]
paste.app_factory = nova.api.openstack.compute.versions:VersionsV2.factory
EOF
}

write_clouds() {
    local pw=$XU_OS_ADMIN_PASSWORD
    pw=${pw//\\/\\\\}
    pw=${pw//\"/\\\"}
    (umask 077 && write_file "$CLOUDS_FILE" 0600) <<EOF
# Generated by scripts/services/openstack.sh: the admin of the private OpenStack at $KEYSTONE_URL.
clouds:
  $CLOUD:
    auth:
      auth_url: $AUTH_URL
      username: admin
      password: "$pw"
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
}

write_env() {
    xu_write_env "$ENV_FILE" \
        "OS_CLIENT_CONFIG_FILE=$CLOUDS_FILE" \
        "XU_OS_CLOUD=$CLOUD" \
        "XU_OS_AUTH_URL=$AUTH_URL" \
        "XU_OS_REGION=$REGION" \
        "XU_OS_KEYSTONE_URL=$AUTH_URL" \
        "XU_OS_PLACEMENT_URL=$PLACEMENT_URL" \
        "XU_OS_GLANCE_URL=$GLANCE_URL" \
        "XU_OS_NOVA_URL=$NOVA_URL" \
        "XU_OS_NEUTRON_URL=$NEUTRON_URL" \
        "XU_OS_IMAGE=$IMAGE_NAME" \
        "XU_OS_IMAGE_ID=$1" \
        "XU_OS_COMPUTE_HOST=$XU_OS_COMPUTE_HOST" \
        "XU_OS_FAKE_CLOCK=$(cat "$FAKE_MODE_FILE")" \
        "XU_OS_FAKETIME_FILE=$FAKETIME_FILE" \
        "XU_OS_DIR=$XU_OS_DIR" \
        "XU_OS_PORT_BASE=$XU_OS_PORT_BASE" \
        "XU_OS_RABBIT_PORT=$P_AMQP" \
        "XU_OS_MARIADB_PORT=$P_MARIADB"
}

# ---------------------------------------------------------------- MariaDB, epmd, RabbitMQ
start_mariadb() {
    local pw stmts="" db host
    logs_for mariadb
    "$MARIADB_SH" start
    # shellcheck source=/dev/null
    . "$XU_MARIADB_DIR/env.sh"
    pw=$(xu_sql_quote "$XU_OS_DB_PASSWORD")
    for db in "${DATABASES[@]}"; do
        stmts+="CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8 COLLATE utf8_general_ci;"
    done
    for host in 127.0.0.1 localhost; do
        stmts+="CREATE USER IF NOT EXISTS 'openstack'@'$host' IDENTIFIED BY '$pw';"
        stmts+="ALTER USER 'openstack'@'$host' IDENTIFIED BY '$pw';"
        for db in "${DATABASES[@]}"; do
            stmts+="GRANT ALL PRIVILEGES ON \`$db\`.* TO 'openstack'@'$host';"
        done
    done
    printf '%s\n' "$stmts" | sql || xu_fail "could not create the OpenStack databases and user"
}

start_rabbitmq() {
    local pid epmd
    logs_for rabbitmq epmd
    install -d -m 0700 -- "$RMQ" "$RMQ/home" "$RMQ/mnesia" "$RMQ/log"
    if ! pid=$(running_pid epmd); then
        check_port_free "$P_EPMD" epmd
        epmd=$(command -v epmd || true)
        [[ -n $epmd ]] || xu_fail "epmd not found (package erlang-base)"
        # Foreground epmd (no -daemon): it stays in our process group and is stopped by PID.
        launch_real epmd env ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$P_EPMD" "$epmd" -port "$P_EPMD" -address 127.0.0.1
        xu_wait_until "$XU_OS_TIMEOUT" epmd "$(pidfile epmd)" "$NEEDLE" -- xu_port_in_use "$P_EPMD"
    fi
    if pid=$(running_pid rabbitmq); then
        xu_log "rabbitmq already running (pid $pid)"
    else
        check_port_free "$P_AMQP" "rabbitmq AMQP"
        check_port_free "$P_DIST" "rabbitmq erlang distribution"
        write_file "$RMQ/rabbitmq.conf" 0644 <<EOF
# Generated by scripts/services/openstack.sh
listeners.tcp.default = 127.0.0.1:$P_AMQP
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
EOF
        echo '[].' | write_file "$RMQ/enabled_plugins" 0644
        : | write_file "$RMQ/rabbitmq-env.conf" 0644
        launch_real rabbitmq env HOME="$RMQ/home" \
            RABBITMQ_NODENAME="xuos$P_AMQP@localhost" RABBITMQ_USE_LONGNAME=false \
            RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$P_AMQP" RABBITMQ_DIST_PORT="$P_DIST" \
            ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$P_EPMD" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
            RABBITMQ_CONF_ENV_FILE="$RMQ/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ/advanced.config" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins" \
            RABBITMQ_MNESIA_BASE="$RMQ/mnesia" RABBITMQ_LOG_BASE="$RMQ/log" \
            /usr/lib/rabbitmq/bin/rabbitmq-server
        xu_log "rabbitmq started (pid $(cat "$(pidfile rabbitmq)"), AMQP 127.0.0.1:$P_AMQP)"
    fi
}

wait_rabbitmq() {
    logs_for rabbitmq epmd
    xu_wait_until "$XU_OS_TIMEOUT" rabbitmq "$(pidfile rabbitmq)" "$NEEDLE" -- xu_port_in_use "$P_AMQP"
}

# ---------------------------------------------------------------- databases (once per XU_OS_DIR)
done_marker() { printf '%s/%s.done\n' "$LIB" "$1"; }

init_keystone() {
    local cfg=(--config-file "$ETC/keystone.conf")
    os_py keystone-manage keystone.cmd.manage:main "${cfg[@]}" db_sync
    os_py keystone-manage keystone.cmd.manage:main "${cfg[@]}" fernet_setup --keystone-user root --keystone-group root
    os_py keystone-manage keystone.cmd.manage:main "${cfg[@]}" credential_setup --keystone-user root --keystone-group root
    touch "$(done_marker keystone)"
}

# Admin user, project, role and identity endpoints; again only if XU_OS_ADMIN_PASSWORD changed (it resets it).
bootstrap_keystone() {
    local stamp=$LIB/keystone/bootstrap.sha256 sum
    sum=$(printf '%s\n%s\n' "$XU_OS_ADMIN_PASSWORD" "$AUTH_URL" | sha256sum | cut -d' ' -f1)
    [[ $(cat "$stamp" 2>/dev/null) == "$sum" ]] && return 0
    logs_for keystone-manage
    OS_BOOTSTRAP_PASSWORD=$XU_OS_ADMIN_PASSWORD os_py keystone-manage keystone.cmd.manage:main \
        --config-file "$ETC/keystone.conf" bootstrap \
        --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
        --bootstrap-service-name keystone --bootstrap-region-id "$REGION" \
        --bootstrap-admin-url "$AUTH_URL" --bootstrap-public-url "$AUTH_URL" --bootstrap-internal-url "$AUTH_URL" \
        >>"$(logfile keystone-manage)" 2>&1 || xu_fail "keystone-manage bootstrap failed"
    echo "$sum" >"$stamp"
}

init_placement() {
    os_py placement-manage placement.cmd.manage:main --config-file "$ETC/placement/placement.conf" db sync
    touch "$(done_marker placement)"
}

init_glance() {
    os_py glance-manage glance.cmd.manage:main --config-file "$ETC/glance-api.conf" db_sync
    touch "$(done_marker glance)"
}

init_neutron() {
    os_py neutron-db-manage neutron.db.migration.cli:main --config-file "$ETC/neutron.conf" upgrade heads
    touch "$(done_marker neutron)"
}

nova_manage() { os_py nova-manage nova.cmd.manage:main --config-file "$ETC/nova.conf" --config-file "$ETC/nova-db.conf" "$@"; }

init_nova() {
    nova_manage api_db sync
    nova_manage cell_v2 map_cell0
    if [[ $(sql -e "SELECT COUNT(*) FROM nova_api.cell_mappings WHERE name='cell1'") == 0 ]]; then
        nova_manage cell_v2 create_cell --name cell1
    fi
    nova_manage db sync
    touch "$(done_marker nova)"
}

init_databases() {
    local recorded
    recorded=$(cat "$PORT_BASE_FILE" 2>/dev/null || true)
    if [[ -n $recorded && $recorded != "$XU_OS_PORT_BASE" ]]; then
        xu_fail "$XU_OS_DIR was initialised with XU_OS_PORT_BASE=$recorded (Nova's cell mapping holds its URLs): use it or run reset"
    fi
    echo "$XU_OS_PORT_BASE" >"$PORT_BASE_FILE"
    [[ -f $(done_marker keystone) ]] || task keystone-manage init_keystone
    [[ -f $(done_marker placement) ]] || task placement-manage init_placement
    [[ -f $(done_marker glance) ]] || task glance-manage init_glance
    [[ -f $(done_marker neutron) ]] || task neutron-db-manage init_neutron
    [[ -f $(done_marker nova) ]] || task nova-manage init_nova
    if ((${#TASK_PIDS[@]})); then
        xu_log "initialising databases: ${TASK_NAMES[*]}"
        wait_tasks
    fi
}

# ---------------------------------------------------------------- services
service_port() {
    case "$1" in
        keystone) echo "$P_KEYSTONE" ;;
        placement) echo "$P_PLACEMENT" ;;
        glance-api) echo "$P_GLANCE" ;;
        neutron-server) echo "$P_NEUTRON" ;;
        nova-api) echo "$P_NOVA" ;;
        *) echo "" ;;
    esac
}

service_url() {   # an unauthenticated URL that answers < 400 once the API serves
    case "$1" in
        keystone) echo "$AUTH_URL" ;;
        placement) echo "$PLACEMENT_URL/" ;;
        glance-api) echo "$GLANCE_URL/" ;;
        neutron-server) echo "$NEUTRON_URL/" ;;
        nova-api) echo "http://127.0.0.1:$P_NOVA/" ;;
        *) echo "" ;;
    esac
}

start_service() {   # start_service NAME: a no-op if it runs
    local name=$1 pid port nova=(--config-file "$ETC/nova.conf") novadb=(--config-file "$ETC/nova-db.conf")
    if pid=$(running_pid "$name"); then
        xu_log "$name already running (pid $pid)"
        return 0
    fi
    port=$(service_port "$name")
    [[ -z $port ]] || check_port_free "$port" "$name"
    case "$name" in
        keystone) launch "$name" "$PY" "$RUNNER" wsgi keystone --config "$ETC/keystone.conf" --port "$port" ;;
        placement) launch "$name" "$PY" "$RUNNER" wsgi placement --config "$ETC/placement/placement.conf" --port "$port" ;;
        glance-api) launch "$name" "$PY" "$RUNNER" main glance-api glance.cmd.api:main --config-file "$ETC/glance-api.conf" ;;
        neutron-server) launch "$name" "$PY" "$RUNNER" main neutron-server neutron.cmd.eventlet.server:main \
            --config-file "$ETC/neutron.conf" ;;
        nova-api | nova-conductor | nova-scheduler) launch "$name" "$PY" "$RUNNER" main "$name" \
            "nova.cmd.${name#nova-}:main" "${nova[@]}" "${novadb[@]}" ;;
        nova-compute) launch "$name" "$PY" "$RUNNER" main nova-compute nova.cmd.compute:main "${nova[@]}" ;;
    esac
}

wait_service() {
    local name=$1 url
    url=$(service_url "$name")
    logs_for "$name"
    if [[ -n $url ]]; then
        xu_wait_until "$XU_OS_TIMEOUT" "$name" "$(pidfile "$name")" "$NEEDLE" -- http_ok "$url"
    else
        xu_running_pid "$(pidfile "$name")" "$NEEDLE" >/dev/null || xu_fail "$name exited during start-up"
    fi
}

host_mapped() {
    [[ $(sql -e "SELECT COUNT(*) FROM nova_api.host_mappings WHERE host='$XU_OS_COMPUTE_HOST'") != 0 ]]
}
compute_node_exists() {
    [[ $(sql -e "SELECT COUNT(*) FROM nova.compute_nodes WHERE host='$XU_OS_COMPUTE_HOST' AND deleted=0") != 0 ]]
}

discover_hosts() {
    local deadline=$((SECONDS + XU_OS_TIMEOUT)) i
    logs_for nova-compute nova-conductor nova-manage
    host_mapped && return 0
    xu_wait_until "$XU_OS_TIMEOUT" "nova-compute registration" "$(pidfile nova-compute)" "$NEEDLE" -- \
        compute_node_exists
    for ((i = 0; i < 40; i++)); do   # nova-scheduler's periodic discovery, every 2 s
        host_mapped && break
        sleep 0.25
    done
    until host_mapped; do
        nova_manage cell_v2 discover_hosts --strict >>"$(logfile nova-manage)" 2>&1 || true
        host_mapped && break
        ((SECONDS < deadline)) || xu_fail "compute host $XU_OS_COMPUTE_HOST not mapped to a cell after ${XU_OS_TIMEOUT}s"
        sleep 1
    done
    xu_log "compute host $XU_OS_COMPUTE_HOST mapped to cell1"
}

# ---------------------------------------------------------------- subcommands

do_start() {
    local s t0=$SECONDS image_id all_up=1
    xu_require_root
    xu_apt_install python3-keystone python3-nova python3-placement python3-glance python3-neutron \
        python3-openstacksdk rabbitmq-server mariadb-server mariadb-client curl procps
    [[ -x $PY ]] || xu_fail "$PY not found"
    install -d -m 0755 -- "$XU_STATE_DIR"
    install -d -m 0755 -- "$XU_OS_DIR" "$LOGS" "$RUN" "$LIB"

    for s in "${SERVICES[@]}" rabbitmq epmd; do
        running_pid "$s" >/dev/null || all_up=0
    done
    if ((all_up)) && "$MARIADB_SH" status >/dev/null 2>&1 && http_ok "$AUTH_URL" && [[ -f $ENV_FILE ]]; then
        xu_log "already running (keystone $AUTH_URL); client env: source $ENV_FILE"
        return 0
    fi

    setup_fake_clock
    any_service_running || write_configs
    start_rabbitmq          # boots while the databases are migrated
    start_mariadb
    init_databases
    wait_rabbitmq

    write_clouds
    # nova-scheduler exits and nova-compute skips its first resource report (retried only a minute later) if
    # Keystone or Placement do not answer yet: they start in a second wave. nova-conductor starts in the first
    # one (it only warns, "Unable to initialize placement client", and retries when needed) so that it serves
    # when nova-compute first calls it (else nova-compute waits 10 s for an answer).
    for s in placement glance-api neutron-server nova-conductor nova-api; do
        start_service "$s"
    done
    if ! running_pid keystone >/dev/null; then
        bootstrap_keystone
    fi
    start_service keystone
    wait_service keystone
    wait_service placement
    for s in nova-scheduler nova-compute; do
        start_service "$s"
    done
    for s in "${SERVICES[@]}"; do
        wait_service "$s"
    done
    xu_log "APIs answer after $((SECONDS - t0)) s; creating endpoints and the image, waiting for Nova services"

    logs_for nova-api glance-api neutron-server keystone nova-compute nova-conductor nova-scheduler
    image_id=$(admin_py setup "$REGION" "$XU_OS_COMPUTE_HOST" "$IMAGE_NAME" "$XU_OS_TIMEOUT" \
        "$PLACEMENT_URL" "$GLANCE_URL" "$NOVA_URL" "$NEUTRON_URL" 2>>"$(logfile admin-setup)") ||
        { logs_for admin-setup nova-api glance-api neutron-server keystone nova-compute; xu_fail "setup through the APIs failed"; }
    discover_hosts
    verify_fake_clock
    write_env "$image_id"
    xu_log "ready in $((SECONDS - t0)) s (keystone $AUTH_URL); client env: source $ENV_FILE"
}

do_stop() {
    stop_groups nova-compute nova-api nova-scheduler nova-conductor neutron-server glance-api placement keystone
    stop_groups rabbitmq
    stop_groups epmd
    "$MARIADB_SH" stop
}

total_rss_mb() {
    local n pid kb=0 p
    for n in "${SERVICES[@]}" rabbitmq epmd; do
        pid=$(head -n 1 -- "$(pidfile "$n")" 2>/dev/null || true)
        for p in $(family_pids "$pid"); do
            kb=$((kb + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
        done
    done
    pid=$(head -n 1 -- "$XU_MARIADB_DIR/mariadbd.pid" 2>/dev/null || true)
    if xu_pid_alive "$pid"; then
        kb=$((kb + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
    fi
    echo $((kb / 1024))
}

do_status() {
    local s pid rc=0 off out
    for s in "${SERVICES[@]}" rabbitmq epmd; do
        if pid=$(running_pid "$s"); then
            echo "$s: running (pid $pid)"
        else
            echo "$s: stopped"
            rc=3
        fi
    done
    "$MARIADB_SH" status || rc=3
    if ((rc == 0)); then
        if [[ $(cat "$FAKE_MODE_FILE" 2>/dev/null) == 1 ]]; then
            off=$(fake_offset)
            echo "fake clock: offset ${off}s, services' now $(date -u -d "@$(($(date +%s) + off))" +%FT%TZ)"
        fi
        echo "total RSS: $(total_rss_mb) MB"
        if out=$(admin_py smoke 2>&1); then
            echo "api: $out"
        else
            echo "api: smoke check failed: $(tail -n 3 <<<"$out")"
            rc=3
        fi
    fi
    return "$rc"
}

do_reset() {
    do_stop
    if [[ -d $XU_OS_DIR ]]; then
        xu_log "deleting $XU_OS_DIR"
        rm -rf -- "$XU_OS_DIR"
    fi
}

do_clock() {
    local want target real cur new
    want=${1:-}
    [[ -n $want ]] || { echo "usage: $0 clock UTC_TIME   (e.g. 2026-11-20T22:00:00Z)" >&2; exit 2; }
    target=$(date -u -d "$want" +%s 2>/dev/null) || { echo "clock: '$want' is not a date" >&2; exit 2; }
    if [[ $(cat "$FAKE_MODE_FILE" 2>/dev/null) != 1 ]] || ! running_pid nova-compute >/dev/null; then
        echo "clock: OpenStack in $XU_OS_DIR is not running with XU_OS_FAKE_CLOCK=1" >&2
        exit 2
    fi
    cur=$(fake_offset)
    [[ $cur =~ ^-?[0-9]+$ ]] || xu_fail "cannot read the offset in $FAKETIME_FILE"
    real=$(date -u +%s)
    if ((target < real + cur)); then
        echo "clock: refusing to move the clock backwards: services' now is $(date -u -d "@$((real + cur))" +%FT%TZ), asked $(date -u -d "@$target" +%FT%TZ)" >&2
        exit 2
    fi
    new=$((target - real))
    write_offset "$new"
    sleep 1.5
    logs_for nova-compute nova-conductor nova-api
    admin_py wait-compute "$XU_OS_COMPUTE_HOST" "$XU_OS_TIMEOUT" ||
        xu_fail "nova-compute not up after moving the clock to $want"
    xu_log "services' now: $(date -u -d "@$(($(date +%s) + new))" +%FT%TZ) (offset ${new}s)"
    printf '%d\n' "$new"
}

case "${1:-}" in
    start | stop | status) xu_main "$1" ;;
    reset) do_reset ;;
    clock)
        shift
        do_clock "$@"
        ;;
    *)
        echo "usage: $0 start|stop|status|reset|clock UTC_TIME" >&2
        exit 2
        ;;
esac
