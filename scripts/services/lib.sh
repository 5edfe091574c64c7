# shellcheck shell=bash
# Shared helpers for scripts/services/*.sh. Sourced, never executed.
# Callers set `set -Eeuo pipefail` (errtrace: the ERR trap also fires inside functions) and XU_SERVICE_NAME before sourcing.

# Logs printed (tail -50) to stderr when the calling script fails.
XU_FAIL_LOGS=()
XU_APT_UPDATED=0

xu_log() {
    printf '[%s] %s\n' "${XU_SERVICE_NAME:-services}" "$*" >&2
}

xu_print_logs() {
    local f
    for f in "${XU_FAIL_LOGS[@]}"; do
        if [[ -s "$f" ]]; then
            printf '\n----- tail -50 %s -----\n' "$f" >&2
            tail -n 50 -- "$f" >&2 || true
        fi
    done
}

# Print a message plus the relevant logs, then exit non-zero.
xu_fail() {
    trap - ERR
    xu_log "ERROR: $*"
    xu_print_logs
    exit 1
}

# Unexpected command failure under `set -e`: show where and the logs.
xu_on_err() {
    local rc=$? line=$1
    trap - ERR
    xu_log "ERROR: command failed (exit $rc) at line $line"
    xu_print_logs
    exit "$rc"
}

xu_require_root() {
    [[ $(id -u) -eq 0 ]] || xu_fail "must run as root (needs apt-get, runuser and daemon users)"
}

# Make a possibly relative path absolute (without requiring it to exist).
xu_abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
    esac
}

# Install Debian packages that are missing; `apt-get update` once, only if needed.
xu_apt_install() {
    local missing=() p
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    xu_log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ((XU_APT_UPDATED == 0)); then
        apt-get -o DPkg::Lock::Timeout=900 update -q >&2
        XU_APT_UPDATED=1
    fi
    apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}" >&2
}

# True if PID exists and is not a zombie (PID 1 may not reap orphans here).
xu_pid_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# True if PID is alive and its command line or environment mentions NEEDLE
# (guards against a recycled PID belonging to an unrelated process).
xu_pid_matches() {
    local pid=$1 needle=$2 blob
    xu_pid_alive "$pid" || return 1
    blob=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" || true)
    blob+=$'\n'$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" || true)
    [[ $blob == *"$needle"* ]]
}

# Print the PID recorded in PIDFILE if that process is alive and matches NEEDLE.
xu_running_pid() {
    local pidfile=$1 needle=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(head -n 1 -- "$pidfile" 2>/dev/null || true)
    xu_pid_matches "$pid" "$needle" || return 1
    printf '%s\n' "$pid"
}

# xu_stop_pid NAME PIDFILE NEEDLE TIMEOUT: SIGTERM, wait, then SIGKILL.
xu_stop_pid() {
    local name=$1 pidfile=$2 needle=$3 timeout=$4 pid i
    if ! pid=$(xu_running_pid "$pidfile" "$needle"); then
        rm -f -- "$pidfile"
        return 0
    fi
    xu_log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do
        xu_pid_alive "$pid" || break
        sleep 0.2
    done
    if xu_pid_alive "$pid"; then
        xu_log "WARNING: $name (pid $pid) still alive after ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    # libfaketime (fake clock) keeps a per-PID semaphore/shm segment; drop it if left behind.
    rm -f -- "$pidfile" "/dev/shm/faketime_shm_$pid" "/dev/shm/sem.faketime_sem_$pid"
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
xu_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# xu_wait_until TIMEOUT DESCRIPTION PIDFILE NEEDLE -- CMD...:
# poll CMD every 0.25 s; fail early if the daemon in PIDFILE died. Right after `cmd &` the child may
# not have exec'd yet (its command line is still this script's), so a live PID that does not match
# NEEDLE yet is waited for; only a PID that is gone, or still unmatched after 10 s, is a failure.
xu_wait_until() {
    local timeout=$1 what=$2 pidfile=$3 needle=$4 deadline pid started=$SECONDS
    shift 5
    deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pidfile ]] && ! xu_running_pid "$pidfile" "$needle" >/dev/null; then
            pid=$(head -n 1 -- "$pidfile" 2>/dev/null || true)
            if ! xu_pid_alive "$pid" || ((SECONDS - started > 10)); then
                xu_fail "$what: process exited during start-up"
            fi
        fi
        ((SECONDS < deadline)) || xu_fail "$what: not ready after ${timeout}s"
        sleep 0.25
    done
}

# Write NAME=VALUE pairs as `export NAME=VALUE` lines (bash-quoted), atomically.
xu_write_env() {
    local file=$1 tmp kv
    shift
    tmp=$(mktemp "$file.XXXXXX")
    {
        printf '# Generated by %s; source it from a client shell.\n' "${XU_SERVICE_NAME:-services}"
        for kv in "$@"; do
            printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
        done
    } >"$tmp"
    chmod 0644 "$tmp"
    mv -f -- "$tmp" "$file"
}

# Escape a string for use inside a single-quoted SQL literal.
xu_sql_quote() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\'/\\\'}
    printf '%s' "$s"
}

# Dispatch "start|stop|status" to the calling script's do_start/do_stop/do_status.
xu_main() {
    case "${1:-}" in
        start) do_start ;;
        stop) do_stop ;;
        status)
            local rc=0
            do_status || rc=$?
            exit "$rc"
            ;;
        *)
            echo "usage: $0 start|stop|status" >&2
            exit 2
            ;;
    esac
}
