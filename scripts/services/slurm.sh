#!/usr/bin/env bash
# A real one-node Slurm 22.05 cluster with accounting, for tests. Everything on loopback.
#
# Usage: scripts/services/slurm.sh start|stop|status      (run as root)
#
# Daemons (started in this order, stopped in reverse, each tracked by PID):
#   munged (private socket and key) -> MariaDB (scripts/services/mariadb.sh) -> slurmdbd -> slurmctld -> slurmd
# start then registers the cluster, Slurm accounts `physics` and `chemistry`, OS users `alice` (physics)
# and `bob` (chemistry) with their associations, and writes $XU_STATE_DIR/slurm/env.sh:
#   source .services/slurm/env.sh && TZ=UTC sacct --allusers --clusters "$XU_SLURM_CLUSTER" ...
# start is a no-op for daemons already running. stop first cancels jobs still queued or running
# (so no slurmstepd outlives slurmd), then stops the daemons; it stops MariaDB only if this script's
# start was the one that started it (unless XU_SLURM_KEEP_MARIADB=1). status exits 0 if all run, else 3.
#
# Environment (defaults in brackets):
#   XU_STATE_DIR          [<repo>/.services]   state root (slurm/, munge/, mariadb/ below it)
#   XU_SLURM_CLUSTER      [democluster]
#   XU_SLURMCTLD_PORT     [16817]   XU_SLURMD_PORT [16818]   XU_SLURMDBD_PORT [16819]
#   XU_SLURM_DIR          [$XU_STATE_DIR/slurm]   etc/ (slurm.conf, slurmdbd.conf, cgroup.conf), log/, run/,
#                                                 state/, spool/, jobs/ (world-writable job output), env.sh
#   XU_MUNGE_DIR          [$XU_STATE_DIR/munge]   etc/munge.key, run/munge.socket.2, log/, lib/
#   XU_MUNGE_SOCKET       [$XU_MUNGE_DIR/run/munge.socket.2]
#   XU_SLURMDB_PASSWORD   [slurmdbd-test-pw]      MariaDB password of the `slurm` DB user (no spaces or '#')
#   XU_SLURM_TIMEOUT      [60]                    seconds to wait for each daemon
#   XU_MARIADB_*          passed on to mariadb.sh (port 13306, socket, ...)
#   XU_SLURM_FAKE_NOW     [unset]  e.g. 2026-11-20T23:58:30Z: run munged, slurmdbd, slurmctld and slurmd
#                         under libfaketime with a constant relative offset (FAKETIME="+N"/"-N" seconds,
#                         computed once when the first daemon starts and reused by every daemon, so the
#                         fake clock keeps running). Monotonic clocks stay real (FAKETIME_DONT_FAKE_MONOTONIC=1).
#                         Clients (sbatch, squeue, sacct, sacctmgr) are NOT faked: they only talk to the
#                         daemons. Times a client parses itself (sbatch --begin=now+1hour, sacct without
#                         --starttime) are therefore in real time: pass absolute fake-clock times instead.
#                         The offset is written to env.sh as XU_SLURM_FAKE_OFFSET_SECONDS (0 without it).
#                         Ignored (the running offset is kept) when a daemon of this instance still runs.
#   XU_SLURM_FAKETIME_LIB [libfaketimeMT.so.1 from the `libfaketime` package]
set -Eeuo pipefail
# shellcheck source-path=SCRIPTDIR

XU_SERVICE_NAME=slurm
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
trap 'xu_on_err $LINENO' ERR

XU_STATE_DIR=$(xu_abspath "${XU_STATE_DIR:-$REPO/.services}")
export XU_STATE_DIR
XU_SLURM_CLUSTER=${XU_SLURM_CLUSTER:-democluster}
XU_SLURMCTLD_PORT=${XU_SLURMCTLD_PORT:-16817}
XU_SLURMD_PORT=${XU_SLURMD_PORT:-16818}
XU_SLURMDBD_PORT=${XU_SLURMDBD_PORT:-16819}
XU_SLURM_DIR=$(xu_abspath "${XU_SLURM_DIR:-$XU_STATE_DIR/slurm}")
XU_MUNGE_DIR=$(xu_abspath "${XU_MUNGE_DIR:-$XU_STATE_DIR/munge}")
XU_MUNGE_SOCKET=$(xu_abspath "${XU_MUNGE_SOCKET:-$XU_MUNGE_DIR/run/munge.socket.2}")
XU_SLURMDB_PASSWORD=${XU_SLURMDB_PASSWORD:-slurmdbd-test-pw}
XU_SLURM_TIMEOUT=${XU_SLURM_TIMEOUT:-60}
XU_MARIADB_DIR=$(xu_abspath "${XU_MARIADB_DIR:-$XU_STATE_DIR/mariadb}")
XU_MARIADB_PORT=${XU_MARIADB_PORT:-13306}
export XU_MARIADB_DIR XU_MARIADB_PORT

ETC=$XU_SLURM_DIR/etc
LOG=$XU_SLURM_DIR/log
RUN=$XU_SLURM_DIR/run
STATE=$XU_SLURM_DIR/state
SPOOL=$XU_SLURM_DIR/spool
JOBS=$XU_SLURM_DIR/jobs
ENV_FILE=$XU_SLURM_DIR/env.sh
OFFSET_FILE=$RUN/fake_offset_seconds
MARIADB_MARKER=$RUN/started-mariadb
MUNGE_KEY=$XU_MUNGE_DIR/etc/munge.key
MUNGE_PID=$XU_MUNGE_DIR/run/munged.pid
MUNGE_LOG=$XU_MUNGE_DIR/log/munged.log
MUNGE_OUT=$XU_MUNGE_DIR/log/munged.out
export SLURM_CONF=$ETC/slurm.conf
MARIADB_SH=$SCRIPT_DIR/mariadb.sh

# Slurm accounts and the users (user:account) put into them.
ACCOUNTS=(physics chemistry)
USERS=(alice:physics bob:chemistry)

FAKE_ENV=()   # `env LD_PRELOAD=... FAKETIME=...` prefix when the fake clock is on
FAKE_OFFSET=0
CTLD_STARTED=0   # slurmctld started by this invocation (then its BOOT_TIME proves the fake clock)

pidfile() { printf '%s/%s.pid\n' "$RUN" "$1"; }   # written by this script ($!)

daemon_pid() {   # print the PID of a running daemon of this instance
    case "$1" in
        munged) xu_running_pid "$MUNGE_PID" "$XU_MUNGE_SOCKET" ;;
        *) xu_running_pid "$(pidfile "$1")" "$SLURM_CONF" ;;
    esac
}

any_daemon_running() {
    local d
    for d in munged slurmdbd slurmctld slurmd; do
        daemon_pid "$d" >/dev/null && return 0
    done
    return 1
}

logs_for() {   # set the logs printed on failure
    local d
    XU_FAIL_LOGS=()
    for d in "$@"; do
        case "$d" in
            munged) XU_FAIL_LOGS+=("$MUNGE_LOG" "$MUNGE_OUT") ;;
            *) XU_FAIL_LOGS+=("$LOG/$d.log" "$LOG/$d.out") ;;
        esac
    done
}

# ---------------------------------------------------------------- fake clock
setup_fake_clock() {
    local fake real lib
    if any_daemon_running && [[ -f $OFFSET_FILE ]]; then
        FAKE_OFFSET=$(cat "$OFFSET_FILE")
        if [[ -n ${XU_SLURM_FAKE_NOW:-} ]]; then
            xu_log "daemons already running: keeping their clock offset ${FAKE_OFFSET}s, XU_SLURM_FAKE_NOW ignored"
        fi
    elif [[ -n ${XU_SLURM_FAKE_NOW:-} ]]; then
        fake=$(date -u -d "$XU_SLURM_FAKE_NOW" +%s 2>/dev/null) ||
            xu_fail "XU_SLURM_FAKE_NOW='$XU_SLURM_FAKE_NOW' is not a date (use e.g. 2026-11-20T23:58:30Z)"
        real=$(date -u +%s)
        FAKE_OFFSET=$((fake - real))
    else
        FAKE_OFFSET=0
    fi
    install -d -m 0755 -o slurm -g slurm -- "$RUN"
    echo "$FAKE_OFFSET" >"$OFFSET_FILE"
    FAKE_ENV=()
    if [[ $FAKE_OFFSET != 0 ]]; then
        xu_apt_install faketime libfaketime
        lib=${XU_SLURM_FAKETIME_LIB:-}
        if [[ -z $lib ]]; then
            lib=$(dpkg -L libfaketime | grep -m1 '/libfaketimeMT\.so\.1$') ||
                xu_fail "libfaketimeMT.so.1 not found in package libfaketime"
        fi
        [[ -f $lib ]] || xu_fail "faketime library $lib not found"
        FAKE_ENV=(env "LD_PRELOAD=$lib" "FAKETIME=$(printf '%+d' "$FAKE_OFFSET")"
            FAKETIME_DONT_FAKE_MONOTONIC=1)
        xu_log "fake clock: offset ${FAKE_OFFSET}s (daemons' now = $(date -u -d "@$(($(date +%s) + FAKE_OFFSET))" +%FT%TZ))"
    fi
}

# ---------------------------------------------------------------- config
write_configs() {
    local cpus mem
    cpus=$(nproc)
    mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
    [[ $mem =~ ^[0-9]+$ ]] || xu_fail "could not read RealMemory from 'slurmd -C'"

    install -d -m 0755 -- "$XU_SLURM_DIR" "$ETC" "$SPOOL"
    install -d -m 0755 -o slurm -g slurm -- "$LOG" "$RUN"
    install -d -m 0700 -o slurm -g slurm -- "$STATE"
    install -d -m 1777 -- "$JOBS"

    cat >"$ETC/slurm.conf.tmp" <<EOF
# Generated by scripts/services/slurm.sh -- test cluster, loopback only.
ClusterName=$XU_SLURM_CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$XU_SLURMCTLD_PORT
SlurmdPort=$XU_SLURMD_PORT
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$XU_MUNGE_SOCKET
CredType=cred/munge
CommunicationParameters=NoInAddrAny
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.daemon.pid
SlurmdPidFile=$RUN/slurmd.daemon.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$ETC/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$XU_SLURMDBD_PORT
AccountingStoragePass=$XU_MUNGE_SOCKET
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MailProg=/bin/true
MpiDefault=none
MinJobAge=30
ReturnToService=2
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=7-00:00:00 State=UP
EOF
    mv -f -- "$ETC/slurm.conf.tmp" "$ETC/slurm.conf"
    chmod 0644 "$ETC/slurm.conf"
    : >"$ETC/plugstack.conf"

    # Written with a restrictive umask, then handed to slurm: it holds the DB password.
    (
        umask 077
        cat >"$ETC/slurmdbd.conf.tmp" <<EOF
# Generated by scripts/services/slurm.sh -- test cluster, loopback only.
AuthType=auth/munge
AuthInfo=socket=$XU_MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$XU_SLURMDBD_PORT
SlurmUser=slurm
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.daemon.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$XU_MARIADB_PORT
StorageUser=slurm
StoragePass=$XU_SLURMDB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    )
    chown slurm:slurm "$ETC/slurmdbd.conf.tmp"
    chmod 0600 "$ETC/slurmdbd.conf.tmp"
    mv -f -- "$ETC/slurmdbd.conf.tmp" "$ETC/slurmdbd.conf"
}

# ---------------------------------------------------------------- daemons
# launch NAME CMD...: run CMD detached (own session), stdout/stderr to log/NAME.out, PID to run/NAME.pid
launch() {
    local name=$1 out
    shift
    out=$LOG/$name.out
    : >"$out"
    setsid "${FAKE_ENV[@]}" "$@" </dev/null >>"$out" 2>&1 &
    echo "$!" >"$(pidfile "$name")"
}

munge_ok() {
    local cred
    cred=$(munge -n -S "$XU_MUNGE_SOCKET") && unmunge -S "$XU_MUNGE_SOCKET" <<<"$cred" >/dev/null
}

start_munged() {
    local pid
    logs_for munged
    if pid=$(daemon_pid munged); then
        xu_log "munged already running (pid $pid)"
        return 0
    fi
    install -d -m 0755 -- "$XU_MUNGE_DIR"
    install -d -m 0700 -o munge -g munge -- "$XU_MUNGE_DIR/etc" "$XU_MUNGE_DIR/log" "$XU_MUNGE_DIR/lib"
    install -d -m 0755 -o munge -g munge -- "$XU_MUNGE_DIR/run" "$(dirname -- "$XU_MUNGE_SOCKET")"
    if [[ ! -s $MUNGE_KEY ]]; then
        (umask 077 && head -c 1024 /dev/urandom >"$MUNGE_KEY")
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    rm -f -- "$XU_MUNGE_SOCKET" "$XU_MUNGE_SOCKET.lock" "$MUNGE_PID"
    : >"$MUNGE_OUT"
    # setsid, setpriv and env all exec (no fork), so $! is munged itself. The faketime library
    # must be preloaded only into munged: a root setpriv would create libfaketime's per-PID
    # semaphore as root and munged (same PID, other user) could not open it.
    setsid setpriv --reuid=munge --regid=munge --init-groups "${FAKE_ENV[@]}" \
        /usr/sbin/munged --foreground --socket="$XU_MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGE_PID.daemon" --log-file="$MUNGE_LOG" --seed-file="$XU_MUNGE_DIR/lib/munged.seed" \
        </dev/null >>"$MUNGE_OUT" 2>&1 &
    echo "$!" >"$MUNGE_PID"
    xu_wait_until "$XU_SLURM_TIMEOUT" munged "$MUNGE_PID" "$XU_MUNGE_SOCKET" -- munge_ok
    xu_log "munged started (pid $(cat "$MUNGE_PID"), socket $XU_MUNGE_SOCKET)"
}

start_mariadb() {
    local pw host sql=""
    logs_for
    if ! "$MARIADB_SH" status >/dev/null 2>&1; then
        "$MARIADB_SH" start
        install -d -m 0755 -o slurm -g slurm -- "$RUN"
        touch "$MARIADB_MARKER"
    else
        "$MARIADB_SH" start   # no-op apart from re-checking users and env.sh
    fi
    # shellcheck source=/dev/null
    . "$XU_MARIADB_DIR/env.sh"
    pw=$(xu_sql_quote "$XU_SLURMDB_PASSWORD")
    for host in 127.0.0.1 localhost; do
        sql+="CREATE USER IF NOT EXISTS 'slurm'@'$host' IDENTIFIED BY '$pw';"
        sql+="ALTER USER 'slurm'@'$host' IDENTIFIED BY '$pw';"
        sql+="GRANT ALL PRIVILEGES ON slurm_acct_db.* TO 'slurm'@'$host';"
    done
    printf '%s\n' "$sql" | mariadb --no-defaults --socket="$XU_MARIADB_SOCKET" -uroot --batch ||
        xu_fail "could not create the slurm DB user"
}

check_ports() {
    local name port
    for name in "$@"; do
        case "$name" in
            slurmdbd) port=$XU_SLURMDBD_PORT ;;
            slurmctld) port=$XU_SLURMCTLD_PORT ;;
            slurmd) port=$XU_SLURMD_PORT ;;
        esac
        if xu_port_in_use "$port"; then
            xu_fail "port $port (for $name) is already in use by another process (set XU_${name^^}_PORT)"
        fi
    done
}

dbd_ok() { sacctmgr -n -P show cluster format=cluster; }
ctld_ok() { scontrol ping | grep -q 'is UP'; }
node_registered() { [[ -n $(sinfo -h -N -n localhost -o %T 2>/dev/null) ]]; }
node_ok() { [[ $(sinfo -h -N -n localhost -o %T 2>/dev/null) =~ ^(idle|mixed|allocated|completing)$ ]]; }

start_slurmdbd() {
    local pid
    logs_for slurmdbd
    if pid=$(daemon_pid slurmdbd); then
        xu_log "slurmdbd already running (pid $pid)"
    else
        check_ports slurmdbd
        launch slurmdbd /usr/sbin/slurmdbd -D
        xu_wait_until "$XU_SLURM_TIMEOUT" slurmdbd "$(pidfile slurmdbd)" "$SLURM_CONF" -- dbd_ok
        xu_log "slurmdbd started (pid $(cat "$(pidfile slurmdbd)"), port $XU_SLURMDBD_PORT)"
    fi
    if ! sacctmgr -n -P show cluster format=cluster | grep -qxF "$XU_SLURM_CLUSTER"; then
        sacctmgr -i add cluster "$XU_SLURM_CLUSTER" >/dev/null || xu_fail "sacctmgr add cluster failed"
    fi
}

start_slurmctld() {
    local pid
    logs_for slurmctld
    if pid=$(daemon_pid slurmctld); then
        xu_log "slurmctld already running (pid $pid)"
        return 0
    fi
    check_ports slurmctld
    launch slurmctld /usr/sbin/slurmctld -D -i -f "$SLURM_CONF"
    CTLD_STARTED=1
    xu_wait_until "$XU_SLURM_TIMEOUT" slurmctld "$(pidfile slurmctld)" "$SLURM_CONF" -- ctld_ok
    xu_log "slurmctld started (pid $(cat "$(pidfile slurmctld)"), port $XU_SLURMCTLD_PORT)"
}

start_slurmd() {
    local pid state
    logs_for slurmd slurmctld
    if pid=$(daemon_pid slurmd); then
        xu_log "slurmd already running (pid $pid)"
    else
        check_ports slurmd
        launch slurmd /usr/sbin/slurmd -D -N localhost -f "$SLURM_CONF"
        xu_log "slurmd started (pid $(cat "$(pidfile slurmd)"), port $XU_SLURMD_PORT)"
    fi
    xu_wait_until 10 "slurmd registration" "$(pidfile slurmd)" "$SLURM_CONF" -- \
        node_registered
    state=$(sinfo -h -N -n localhost -o %T 2>/dev/null || true)
    if [[ $state =~ (down|drain|fail) ]]; then
        xu_log "node state '$state': resuming it"
        scontrol update nodename=localhost state=resume || true
    fi
    xu_wait_until "$XU_SLURM_TIMEOUT" "node localhost idle" "$(pidfile slurmd)" "$SLURM_CONF" -- node_ok
}

verify_fake_clock() {
    local boot expect
    [[ $FAKE_OFFSET != 0 && $CTLD_STARTED == 1 ]] || return 0
    logs_for slurmctld
    boot=$(scontrol show config | sed -n 's/^BOOT_TIME *= *//p')
    boot=$(date -u -d "$boot" +%s) || xu_fail "cannot read slurmctld BOOT_TIME"
    expect=$(($(date -u +%s) + FAKE_OFFSET))
    if ((boot > expect + 5 || boot < expect - XU_SLURM_TIMEOUT - 300)); then
        xu_fail "fake clock not effective: slurmctld BOOT_TIME $(date -u -d "@$boot" +%FT%TZ), expected about $(date -u -d "@$expect" +%FT%TZ)"
    fi
}

ensure_accounts() {
    local a u user acct assocs accounts
    logs_for slurmdbd slurmctld
    accounts=$(sacctmgr -n -P show account format=account)
    for a in "${ACCOUNTS[@]}"; do
        if ! grep -qxF "$a" <<<"$accounts"; then
            sacctmgr -i add account "$a" cluster="$XU_SLURM_CLUSTER" description="$a" organization=test \
                >/dev/null || xu_fail "sacctmgr add account $a failed"
        fi
    done
    assocs=$(sacctmgr -n -P show assoc cluster="$XU_SLURM_CLUSTER" format=user,account)
    for u in "${USERS[@]}"; do
        user=${u%%:*}
        acct=${u#*:}
        if ! id -u "$user" >/dev/null 2>&1; then
            useradd -M -U -s /bin/bash "$user" || xu_fail "useradd $user failed"
        fi
        if ! grep -qxF "$user|$acct" <<<"$assocs"; then
            sacctmgr -i add user "$user" account="$acct" defaultaccount="$acct" \
                cluster="$XU_SLURM_CLUSTER" >/dev/null || xu_fail "sacctmgr add user $user failed"
        fi
    done
}

write_env() {
    local fake_on=0
    [[ $FAKE_OFFSET != 0 ]] && fake_on=1
    xu_write_env "$ENV_FILE" \
        "SLURM_CONF=$SLURM_CONF" \
        "XU_SLURM_CLUSTER=$XU_SLURM_CLUSTER" \
        "XU_SLURM_FAKE_CLOCK=$fake_on" \
        "XU_SLURM_FAKE_OFFSET_SECONDS=$FAKE_OFFSET" \
        "XU_SLURM_JOBS_DIR=$JOBS" \
        "XU_MUNGE_SOCKET=$XU_MUNGE_SOCKET" \
        "XU_STATE_DIR=$XU_STATE_DIR"
}

do_start() {
    xu_require_root
    xu_apt_install munge slurmctld slurmd slurmdbd slurm-client
    setup_fake_clock
    if ! daemon_pid slurmdbd >/dev/null && ! daemon_pid slurmctld >/dev/null && ! daemon_pid slurmd >/dev/null; then
        write_configs
    fi
    start_munged
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    verify_fake_clock
    ensure_accounts
    write_env
    xu_log "ready: cluster $XU_SLURM_CLUSTER; client env: source $ENV_FILE"
}

cancel_jobs() {
    local ids i
    daemon_pid slurmctld >/dev/null || return 0
    ids=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ') || return 0
    [[ -n ${ids// /} ]] || return 0
    xu_log "cancelling jobs still queued or running: $ids"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
        sleep 0.2
    done
}

do_stop() {
    local d pidf needle
    cancel_jobs
    for d in slurmd slurmctld slurmdbd munged; do
        if [[ $d == munged ]]; then
            pidf=$MUNGE_PID needle=$XU_MUNGE_SOCKET
        else
            pidf=$(pidfile "$d") needle=$SLURM_CONF
        fi
        xu_stop_pid "$d" "$pidf" "$needle" "$XU_SLURM_TIMEOUT"
    done
    if [[ -f $MARIADB_MARKER ]]; then
        if [[ ${XU_SLURM_KEEP_MARIADB:-0} != 1 ]]; then
            "$MARIADB_SH" stop
        fi
        rm -f -- "$MARIADB_MARKER"
    fi
}

do_status() {
    local d pid rc=0
    for d in munged slurmdbd slurmctld slurmd; do
        if pid=$(daemon_pid "$d"); then
            echo "$d: running (pid $pid)"
        else
            echo "$d: stopped"
            rc=3
        fi
    done
    "$MARIADB_SH" status || rc=3
    if [[ -f $OFFSET_FILE ]] && ((rc == 0)); then
        echo "fake clock offset: $(cat "$OFFSET_FILE")s"
    fi
    return "$rc"
}

xu_main "$@"
