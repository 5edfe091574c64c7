#!/usr/bin/env bash
# A private MariaDB instance for tests (stand-in for XDMoD's database server).
#
# Usage: scripts/services/mariadb.sh start|stop|status      (run as root)
#
# Environment (defaults in brackets):
#   XU_STATE_DIR          [<repo>/.services]      state root
#   XU_MARIADB_DIR        [$XU_STATE_DIR/mariadb] socket, pid, logs, env.sh
#   XU_MARIADB_DATADIR    [$XU_MARIADB_DIR/data]
#   XU_MARIADB_SOCKET     [$XU_MARIADB_DIR/mysqld.sock]
#   XU_MARIADB_PORT       [13306]                 bound to 127.0.0.1 only
#   XU_MARIADB_PASSWORD   [xdmod-test-pw]         password of 'xdmod'@'127.0.0.1' and @'localhost'
#   XU_MARIADB_TIMEOUT    [60]                    seconds to wait for start / stop
#   XU_MARIADB_BINLOG     [0]                     1: binary log on (log-bin in $XU_MARIADB_DIR, server-id 1)
#
# start:  installs mariadb-server/mariadb-client if missing, initialises the data dir once,
#         runs mariadbd (--no-defaults, sql_mode='', max_allowed_packet=64M, --skip-name-resolve,
#         utf8mb4 server charset as in Debian's stock config: with --no-defaults it would be latin1,
#         and slurmdbd would then store e.g. a job name's '✓' as '?'),
#         ensures the `xdmod` user (ALL on *.*) and writes $XU_MARIADB_DIR/env.sh
#         (XU_MARIADB_SOCKET, XU_MARIADB_PORT, XU_MARIADB_HOST). A no-op if already running.
# stop:   SIGTERM by PID (SIGKILL after the timeout); a no-op if not running.
# status: prints the state; exit 0 if running and answering, 3 otherwise.
# Root connects over the socket with unix_socket auth: mariadb --no-defaults --socket=... -uroot
# shellcheck source-path=SCRIPTDIR
set -Eeuo pipefail

XU_SERVICE_NAME=mariadb
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"
trap 'xu_on_err $LINENO' ERR

XU_STATE_DIR=$(xu_abspath "${XU_STATE_DIR:-$REPO/.services}")
XU_MARIADB_DIR=$(xu_abspath "${XU_MARIADB_DIR:-$XU_STATE_DIR/mariadb}")
XU_MARIADB_DATADIR=$(xu_abspath "${XU_MARIADB_DATADIR:-$XU_MARIADB_DIR/data}")
XU_MARIADB_SOCKET=$(xu_abspath "${XU_MARIADB_SOCKET:-$XU_MARIADB_DIR/mysqld.sock}")
XU_MARIADB_PORT=${XU_MARIADB_PORT:-13306}
XU_MARIADB_PASSWORD=${XU_MARIADB_PASSWORD:-xdmod-test-pw}
XU_MARIADB_TIMEOUT=${XU_MARIADB_TIMEOUT:-60}

PID_FILE=$XU_MARIADB_DIR/mariadbd.pid           # written by this script ($!)
SERVER_PID_FILE=$XU_MARIADB_DIR/mariadbd.server.pid  # written by mariadbd itself
LOG_FILE=$XU_MARIADB_DIR/mariadbd.log           # --log-error
OUT_FILE=$XU_MARIADB_DIR/mariadbd.out           # stdout/stderr of the process
INSTALL_LOG=$XU_MARIADB_DIR/install-db.log
ENV_FILE=$XU_MARIADB_DIR/env.sh
NEEDLE="--datadir=$XU_MARIADB_DATADIR"
XU_FAIL_LOGS=("$LOG_FILE" "$OUT_FILE" "$INSTALL_LOG")

client() {
    mariadb --no-defaults --socket="$XU_MARIADB_SOCKET" -uroot "$@"
}

ping_ok() {
    mariadb-admin --no-defaults --socket="$XU_MARIADB_SOCKET" -uroot --connect-timeout=2 ping
}

ensure_xdmod_user() {
    local pw host sql=""
    pw=$(xu_sql_quote "$XU_MARIADB_PASSWORD")
    for host in 127.0.0.1 localhost; do
        sql+="CREATE USER IF NOT EXISTS 'xdmod'@'$host' IDENTIFIED BY '$pw';"
        sql+="ALTER USER 'xdmod'@'$host' IDENTIFIED BY '$pw';"
        sql+="GRANT ALL PRIVILEGES ON *.* TO 'xdmod'@'$host' WITH GRANT OPTION;"
    done
    # Secrets go through stdin, never argv.
    printf '%s\n' "$sql" | client --batch || xu_fail "could not create the xdmod user"
}

write_env() {
    xu_write_env "$ENV_FILE" \
        "XU_MARIADB_SOCKET=$XU_MARIADB_SOCKET" \
        "XU_MARIADB_PORT=$XU_MARIADB_PORT" \
        "XU_MARIADB_HOST=127.0.0.1"
}

do_start() {
    local pid
    xu_require_root
    xu_apt_install mariadb-server mariadb-client

    if pid=$(xu_running_pid "$PID_FILE" "$NEEDLE"); then
        xu_wait_until "$XU_MARIADB_TIMEOUT" "mariadbd" "$PID_FILE" "$NEEDLE" -- ping_ok
        ensure_xdmod_user
        write_env
        xu_log "already running (pid $pid, port $XU_MARIADB_PORT)"
        return 0
    fi
    rm -f -- "$PID_FILE" "$SERVER_PID_FILE"
    if xu_port_in_use "$XU_MARIADB_PORT"; then
        xu_fail "port 127.0.0.1:$XU_MARIADB_PORT is already in use by another process (set XU_MARIADB_PORT)"
    fi
    if [[ -S $XU_MARIADB_SOCKET ]]; then
        rm -f -- "$XU_MARIADB_SOCKET"
    fi

    install -d -m 0755 -- "$XU_STATE_DIR"
    install -d -m 0755 -o mysql -g mysql -- "$XU_MARIADB_DIR" "$(dirname -- "$XU_MARIADB_SOCKET")"
    install -d -m 0750 -o mysql -g mysql -- "$XU_MARIADB_DATADIR"

    if [[ ! -d $XU_MARIADB_DATADIR/mysql ]]; then
        xu_log "initialising data dir $XU_MARIADB_DATADIR"
        mariadb-install-db --no-defaults --user=mysql --datadir="$XU_MARIADB_DATADIR" \
            --auth-root-authentication-method=socket --skip-test-db >"$INSTALL_LOG" 2>&1 ||
            xu_fail "mariadb-install-db failed"
    fi

    local binlog=()
    if [[ ${XU_MARIADB_BINLOG:-0} == 1 ]]; then
        binlog=(--log-bin="$XU_MARIADB_DIR/binlog" --server-id=1)
    fi
    : >"$OUT_FILE"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql \
        --datadir="$XU_MARIADB_DATADIR" --socket="$XU_MARIADB_SOCKET" \
        --port="$XU_MARIADB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --pid-file="$SERVER_PID_FILE" --log-error="$LOG_FILE" \
        --sql-mode='' --max-allowed-packet=64M \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci "${binlog[@]}" \
        </dev/null >>"$OUT_FILE" 2>&1 &
    echo "$!" >"$PID_FILE"
    xu_wait_until "$XU_MARIADB_TIMEOUT" "mariadbd" "$PID_FILE" "$NEEDLE" -- ping_ok
    ensure_xdmod_user
    write_env
    xu_log "started (pid $(cat "$PID_FILE"), socket $XU_MARIADB_SOCKET, 127.0.0.1:$XU_MARIADB_PORT)"
}

do_stop() {
    xu_stop_pid mariadbd "$PID_FILE" "$NEEDLE" "$XU_MARIADB_TIMEOUT"
    rm -f -- "$SERVER_PID_FILE"
}

do_status() {
    local pid
    if pid=$(xu_running_pid "$PID_FILE" "$NEEDLE"); then
        if ping_ok >/dev/null 2>&1; then
            echo "mariadb: running (pid $pid, socket $XU_MARIADB_SOCKET, 127.0.0.1:$XU_MARIADB_PORT)"
            return 0
        fi
        echo "mariadb: process $pid alive but not answering"
        return 3
    fi
    echo "mariadb: stopped"
    return 3
}

xu_main "$@"
