#!/usr/bin/env bash
# Start a single-node Slurm test cluster on this machine, without systemd.
#
#   slurm/start-cluster.sh          start (or reuse) the cluster; progress on stderr,
#                                   `export ...` lines on stdout at the end
#   slurm/start-cluster.sh --env    same, but silent on stderr unless something fails:
#                                   env_lines=$(slurm/start-cluster.sh --env) && eval "$env_lines"
#   slurm/start-cluster.sh --help
#
# Daemons, all as root, each writing its pid file into the state folder:
#   munged -> mariadbd (127.0.0.1 + unix socket) -> slurmdbd -> slurmctld -> slurmd
# Configuration (slurm.conf, slurmdbd.conf, gres.conf), state, sockets and logs live under
#   STATE=${ABLATE_SLURM_STATE:-/tmp/ablate-slurm}
# and $STATE/env.sh can be sourced instead of using --env.
# Installs the Debian packages it needs when they are missing (needs root).
# Idempotent: a running cluster with unchanged configuration is left alone (~0.1 s);
# dead daemons are restarted; a changed configuration restarts the daemons it concerns.
# Stop with slurm/stop-cluster.sh.
#
# Tunables (environment):
#   ABLATE_SLURM_STATE      state folder                              [/tmp/ablate-slurm]
#   ABLATE_SLURM_CLUSTER    ClusterName                               [ablate]
#   ABLATE_SLURM_PORT_BASE  slurmctld port; slurmd +1, slurmdbd +2    [6817]
#   ABLATE_SLURM_DB_PORT    MariaDB TCP port on 127.0.0.1             [33069]
#   ABLATE_SLURM_GPUS       fake "gpu" GRES on the node (no real devices; 0 = none)  [2]
#   ABLATE_SLURM_TIMEOUT    seconds to wait for each readiness check  [60]
set -euo pipefail

STATE=${ABLATE_SLURM_STATE:-/tmp/ablate-slurm}
CLUSTER=${ABLATE_SLURM_CLUSTER:-ablate}
PORT_BASE=${ABLATE_SLURM_PORT_BASE:-6817}
DB_PORT=${ABLATE_SLURM_DB_PORT:-33069}
GPUS=${ABLATE_SLURM_GPUS:-2}
TIMEOUT=${ABLATE_SLURM_TIMEOUT:-60}
ACCOUNT=ablate
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

QUIET=0
for arg in "$@"; do
    case "$arg" in
        --env) QUIET=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "start-cluster.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

T0=${EPOCHREALTIME/./}
log() {
    [[ $QUIET == 1 ]] && return 0
    local ms=$(((${EPOCHREALTIME/./} - T0) / 1000))
    printf '[start-cluster %3d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2
}
# die MESSAGE [LOGFILE...]: print the error and the tail of each log file, exit 1
die() {
    echo "start-cluster.sh: ERROR: $1" >&2
    local f
    for f in "${@:2}"; do
        if [[ -f $f ]]; then
            echo "---- last 30 lines of $f ----" >&2
            tail -n 30 "$f" >&2
        fi
    done
    exit 1
}

[[ $EUID -eq 0 ]] || die "must run as root (the daemons run as root; packages may need installing)"
case "$STATE" in /*) ;; *) die "ABLATE_SLURM_STATE must be an absolute path: $STATE" ;; esac
[[ $CLUSTER =~ ^[a-z][a-z0-9_]*$ ]] || die "ABLATE_SLURM_CLUSTER must match [a-z][a-z0-9_]*: $CLUSTER"
[[ $PORT_BASE =~ ^[0-9]+$ && $DB_PORT =~ ^[0-9]+$ && $GPUS =~ ^[0-9]+$ && $TIMEOUT =~ ^[0-9]+$ ]] ||
    die "ABLATE_SLURM_PORT_BASE, _DB_PORT, _GPUS and _TIMEOUT must be integers"

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
ETC=$STATE/etc
RUN=$STATE/run
LOGS=$STATE/log
MUNGE_DIR=$STATE/munge
MUNGE_SOCK=$MUNGE_DIR/munge.socket
DB_DIR=$STATE/mysql
DB_DATA=$DB_DIR/data
DB_SOCK=$DB_DIR/mysqld.sock
export SLURM_CONF=$ETC/slurm.conf   # slurmdbd finds slurmdbd.conf beside it

# pid file of each daemon; /proc/PID/comm must show the key for the pid to count as ours
declare -A PIDFILE=(
    [munged]=$RUN/munged.pid
    [mariadbd]=$DB_DIR/mariadbd.pid
    [slurmdbd]=$RUN/slurmdbd.pid
    [slurmctld]=$RUN/slurmctld.pid
    [slurmd]=$RUN/slurmd.pid
)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

# pid_of NAME: print the recorded pid if it is a live (non-zombie) process called NAME
pid_of() {
    local f=${PIDFILE[$1]} pid stat
    [[ -s $f ]] || return 1
    pid=$({ tr -dc '0-9' <"$f"; } 2>/dev/null) || return 1
    [[ -n $pid ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat == "$pid ($1) "* && $stat != "$pid ($1) Z"* ]] || return 1
    echo "$pid"
}
alive() { pid_of "$1" >/dev/null; }
all_alive() { local d; for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done; }

print_env() {
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
    printf 'export ABLATE_SLURM_STATE=%q\n' "$STATE"
}

q() { timeout 10 "$@" 2>/dev/null; }  # a client command that must not hang

# ---------------------------------------------------------------- configuration text
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
MARGIN=$((MEM_MB / 20 > 512 ? MEM_MB / 20 : 512))   # 5 %, at least 512 MB
REAL_MEM=$((MEM_MB - MARGIN))
((REAL_MEM > 256)) || die "too little memory for a Slurm node: ${MEM_MB} MB"
DEF_MEM=$((REAL_MEM / CPUS))
DB_PASS=$(cat "$ETC/db.pass" 2>/dev/null || true)
if ((GPUS > 0)); then
    GRES_TYPES=$'GresTypes=gpu\nAccountingStorageTRES=gres/gpu'   # sacct AllocTRES shows gpus
    NODE_GRES=" Gres=gpu:$GPUS"
else
    GRES_TYPES="#GresTypes="
    NODE_GRES=""
fi

gen_slurm_conf() {
    cat <<EOF
# Generated by slurm/start-cluster.sh -- single-node test cluster. Do not edit.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again
# (Slurm's default is 120 s); short here so requeue tests finish quickly
AuthInfo=socket=$MUNGE_SOCK,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=${PIDFILE[slurmctld]}
SlurmdPidFile=${PIDFILE[slurmd]}
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: plain process tracking, no task containment
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# each CPU is a schedulable core; memory is consumable, so jobs get DefMemPerCPU
# unless they ask (otherwise one job would take the whole node's memory)
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=100000
MessageTimeout=5
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
Waittime=0
MinJobAge=300
ReturnToService=2
JobRequeue=1
MaxArraySize=1001
MaxJobCount=20000
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for connections to slurmdbd this names the munge socket (AuthInfo is not used there)
AccountingStoragePass=$MUNGE_SOCK
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
$GRES_TYPES
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM$NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

# Fake GPUs: Slurm drops a gpu GRES without File=, so each one is a character device
# $STATE/dev/gpuN (a copy of /dev/null, made below); jobs get CUDA_VISIBLE_DEVICES but
# no real device. They let `--gpus-per-node` / `--gres=gpu:N` requests schedule here.
gen_gres_conf() {
    echo "# Generated by slurm/start-cluster.sh. Fake GPUs (/dev/null copies), for scheduling tests."
    if ((GPUS == 1)); then
        echo "NodeName=$HOST Name=gpu File=$STATE/dev/gpu0"
    elif ((GPUS > 1)); then
        echo "NodeName=$HOST Name=gpu File=$STATE/dev/gpu[0-$((GPUS - 1))]"
    fi
}

gen_slurmdbd_conf() {
    cat <<EOF
# Generated by slurm/start-cluster.sh. Do not edit.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$LOGS/slurmdbd.log
PidFile=${PIDFILE[slurmdbd]}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

same_as() { [[ -f $1 ]] && cmp -s "$1" -; }   # stdin equals file $1
configs_unchanged() {
    [[ -n $DB_PASS ]] &&
        gen_slurm_conf | same_as "$ETC/slurm.conf" &&
        gen_gres_conf | same_as "$ETC/gres.conf" &&
        gen_slurmdbd_conf | same_as "$ETC/slurmdbd.conf"
}

# ---------------------------------------------------------------- fast path
if all_alive && configs_unchanged && q sinfo -h -o %T >/dev/null; then
    log "already running (state $STATE)"
    print_env
    exit 0
fi

# ---------------------------------------------------------------- packages
mkdir -p "$LOGS"
chmod 755 "$STATE" "$LOGS"
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]} (apt-get, log $LOGS/apt.log)"
    export DEBIAN_FRONTEND=noninteractive
    # keep the packages' maintainer scripts from starting system-wide services
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get -o DPkg::Lock::Timeout=300 update -q >"$LOGS/apt.log" 2>&1 || die "apt-get update failed" "$LOGS/apt.log"
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
        die "apt-get install ${missing[*]} failed" "$LOGS/apt.log"
    log "packages installed"
fi

# ---------------------------------------------------------------- one caller at a time
exec 9>"$STATE/.lock"
flock -w 180 9 || die "another start-cluster.sh has held $STATE/.lock for 180 s"
if all_alive && configs_unchanged && q sinfo -h -o %T >/dev/null; then
    log "already running (started by a concurrent caller)"
    print_env
    exit 0
fi

# ---------------------------------------------------------------- helpers
# wait_for WHAT LOGFILE CMD...: retry CMD every 0.2 s until it succeeds or TIMEOUT passes
wait_for() {
    local what=$1 logf=$2 deadline
    shift 2
    deadline=$(($(date +%s) + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || die "timed out after ${TIMEOUT}s waiting for $what" "$logf"
        sleep 0.2
    done
}
# start_daemon NAME LOGFILE CMD...: run CMD (which daemonizes itself) unless NAME runs already
start_daemon() {
    local name=$1 logf=$2
    shift 2
    if alive "$name"; then
        log "$name already running (pid $(pid_of "$name"))"
        return 0
    fi
    rm -f "${PIDFILE[$name]}"
    log "starting $name"
    # 9>&-: the daemon must not inherit (and so keep holding) the start lock
    "$@" </dev/null >>"$logf" 2>&1 9>&- || die "$name failed to start" "$logf"
    wait_for "$name to write ${PIDFILE[$name]}" "$logf" alive "$name"
}
# stop_daemon NAME: TERM the recorded pid (if running) and wait for it to exit
stop_daemon() {
    local pid
    pid=$(pid_of "$1") || return 0
    log "restarting $1 (configuration changed): stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do alive "$1" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
}

# ---------------------------------------------------------------- folders and config files
mkdir -p "$ETC" "$RUN" "$MUNGE_DIR" "$DB_DIR" "$STATE/spool/ctld" "$STATE/spool/d"
chmod 755 "$ETC" "$RUN" "$MUNGE_DIR"   # munged insists on o+x for its socket folder
chown mysql:mysql "$DB_DIR"
chmod 750 "$DB_DIR"
mkdir -p "$STATE/dev"
for ((i = 0; i < GPUS; i++)); do
    [[ -c $STATE/dev/gpu$i ]] && continue
    rm -f "$STATE/dev/gpu$i"
    # a plain file also works where mknod is refused; slurmd then logs an error per GPU
    mknod -m 666 "$STATE/dev/gpu$i" c 1 3 2>/dev/null || touch "$STATE/dev/gpu$i"
done
if [[ -z $DB_PASS ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$ETC/db.pass")
    DB_PASS=$(cat "$ETC/db.pass")
fi

# install_conf FILE MODE: stdin -> FILE when the content differs; returns 0 if it changed
install_conf() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then
        rm -f "$tmp"
        return 1
    fi
    mv -f "$tmp" "$1"
}
slurm_changed=0
gen_slurm_conf | install_conf "$ETC/slurm.conf" 644 && slurm_changed=1
gen_gres_conf | install_conf "$ETC/gres.conf" 644 && slurm_changed=1
if gen_slurmdbd_conf | install_conf "$ETC/slurmdbd.conf" 600; then   # holds the DB password
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon slurmdbd
elif ((slurm_changed)); then
    stop_daemon slurmd
    stop_daemon slurmctld
fi

# ---------------------------------------------------------------- munged
if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    (umask 077; mungekey --create --keyfile="$MUNGE_DIR/munge.key" --bits=1024 >/dev/null 2>&1 ||
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=128 count=1 status=none)
fi
# munged refuses a key that others can read or that another user owns
chown root:root "$MUNGE_DIR/munge.key"
chmod 600 "$MUNGE_DIR/munge.key"
alive munged || rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
start_daemon munged "$LOGS/munged.log" \
    munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCK" \
    --pid-file="${PIDFILE[munged]}" --log-file="$LOGS/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
wait_for "munge credentials" "$LOGS/munged.log" \
    bash -c "munge -S '$MUNGE_SOCK' -n | unmunge -S '$MUNGE_SOCK'"

# ---------------------------------------------------------------- MariaDB (for slurmdbd)
MYSQL=(mariadb --no-defaults --socket="$DB_SOCK" -u root)   # root via unix_socket auth
if [[ ! -d $DB_DATA/mysql ]]; then
    log "initialising MariaDB data folder $DB_DATA"
    rm -rf "$DB_DATA"
    mariadb-install-db --no-defaults --datadir="$DB_DATA" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOGS/mariadb-install.log" 2>&1 || die "mariadb-install-db failed" "$LOGS/mariadb-install.log"
fi
if alive mariadbd; then
    log "mariadbd already running (pid $(pid_of mariadbd))"
else
    rm -f "${PIDFILE[mariadbd]}" "$DB_SOCK"
    log "starting mariadbd (127.0.0.1:$DB_PORT, socket $DB_SOCK)"
    # innodb sizes: slurmdbd warns below half of its recommendations
    setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DATA" \
        --socket="$DB_SOCK" --pid-file="${PIDFILE[mariadbd]}" --log-error="$LOGS/mariadb.log" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
        --innodb-buffer-pool-size=512M --innodb-log-file-size=64M \
        --innodb-flush-log-at-trx-commit=2 --innodb-lock-wait-timeout=900 \
        </dev/null >>"$LOGS/mariadb.log" 2>&1 9>&- &
    wait_for "mariadbd to write ${PIDFILE[mariadbd]}" "$LOGS/mariadb.log" alive mariadbd
fi
wait_for "MariaDB to accept connections" "$LOGS/mariadb.log" "${MYSQL[@]}" -e 'SELECT 1'
"${MYSQL[@]}" >/dev/null <<EOF || die "could not create the slurm database user" "$LOGS/mariadb.log"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

# ---------------------------------------------------------------- slurmdbd, cluster
start_daemon slurmdbd "$LOGS/slurmdbd.log" slurmdbd
wait_for "slurmdbd to answer sacctmgr" "$LOGS/slurmdbd.log" q sacctmgr -n -P show cluster

if [[ -z $(q sacctmgr -n -P show cluster "$CLUSTER" format=cluster) ]]; then
    log "registering cluster $CLUSTER"
    q sacctmgr -i add cluster "$CLUSTER" >/dev/null || true
fi
[[ -n $(q sacctmgr -n -P show cluster "$CLUSTER" format=cluster) ]] ||
    die "could not register cluster $CLUSTER in slurmdbd" "$LOGS/slurmdbd.log"

# ---------------------------------------------------------------- slurmctld, slurmd
start_daemon slurmctld "$LOGS/slurmctld.log" slurmctld -f "$SLURM_CONF"
wait_for "slurmctld to answer scontrol ping" "$LOGS/slurmctld.log" q scontrol ping
start_daemon slurmd "$LOGS/slurmd.log" slurmd -f "$SLURM_CONF"

# ---------------------------------------------------------------- account and users
if [[ -z $(q sacctmgr -n -P show account "$ACCOUNT" format=account) ]]; then
    log "adding account $ACCOUNT"
    q sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" \
        Description="ablate test account" Organization=ablate >/dev/null || true
fi
users=(root)
[[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]] && users+=("$SUDO_USER")
for u in "${users[@]}"; do
    if [[ -z $(q sacctmgr -n -P show assoc cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user) ]]; then
        log "adding user $u to account $ACCOUNT"
        q sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" \
            >/dev/null || true
    fi
done
[[ -n $(q sacctmgr -n -P show assoc cluster="$CLUSTER" account="$ACCOUNT" user=root format=user) ]] ||
    die "could not add user root to account $ACCOUNT" "$LOGS/slurmdbd.log"

# ---------------------------------------------------------------- ready?
node_state() { q sinfo -h -n "$HOST" -o '%T' || true; }
deadline=$(($(date +%s) + TIMEOUT))
# idle, or busy with jobs kept from an earlier run; "idle*" (not responding) does not count
until [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; do
    state=$(node_state)
    # a node left down/drained by an earlier run (e.g. killed mid-job): back into service
    if [[ $state =~ ^(down|drain) ]]; then
        q scontrol update NodeName="$HOST" State=RESUME >/dev/null || true
    fi
    (($(date +%s) < deadline)) ||
        die "timed out after ${TIMEOUT}s waiting for node $HOST to be idle (sinfo: ${state:-no answer}; $(q sinfo -h -n "$HOST" -o %E))" \
            "$LOGS/slurmd.log" "$LOGS/slurmctld.log"
    sleep 0.2
done
wait_for "sacct to answer" "$LOGS/slurmdbd.log" q sacct -n -X -S now-1minutes

print_env >"$STATE/env.sh.tmp" && mv -f "$STATE/env.sh.tmp" "$STATE/env.sh"
log "cluster $CLUSTER ready: node $HOST ($CPUS CPUs, ${REAL_MEM} MB, $GPUS fake GPUs), partition debug; logs in $LOGS"
print_env
