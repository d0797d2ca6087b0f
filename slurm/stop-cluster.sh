#!/usr/bin/env bash
# Stop the single-node Slurm test cluster started by slurm/start-cluster.sh.
#
#   slurm/stop-cluster.sh            cancel queued/running jobs, then stop slurmd, slurmctld,
#                                    slurmdbd, mariadbd and munged by their recorded pids
#   slurm/stop-cluster.sh --keep-jobs  do not scancel first (jobs stay in the saved state)
#   slurm/stop-cluster.sh --purge    also delete the state folder (config, DB, logs)
#
# Only the pids recorded in the state folder (${ABLATE_SLURM_STATE:-/tmp/ablate-slurm}) are
# signalled, and only if the process still is the daemon it was. Packages stay installed.
# Exits 0 when nothing is running.
set -euo pipefail

STATE=${ABLATE_SLURM_STATE:-/tmp/ablate-slurm}
KEEP_JOBS=0
PURGE=0
for arg in "$@"; do
    case "$arg" in
        --keep-jobs) KEEP_JOBS=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "stop-cluster.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done
log() { echo "[stop-cluster] $*" >&2; }

export SLURM_CONF=$STATE/etc/slurm.conf
# stop order: compute side first, munged last (the others need it to shut down cleanly)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)
declare -A PIDFILE=(
    [munged]=$STATE/run/munged.pid
    [mariadbd]=$STATE/mysql/mariadbd.pid
    [slurmdbd]=$STATE/run/slurmdbd.pid
    [slurmctld]=$STATE/run/slurmctld.pid
    [slurmd]=$STATE/run/slurmd.pid
)

# recorded_pid NAME: print the recorded pid if it is a live (non-zombie) process called NAME
recorded_pid() {
    local f=${PIDFILE[$1]} pid stat
    [[ -s $f ]] || return 1
    pid=$({ tr -dc '0-9' <"$f"; } 2>/dev/null) || return 1
    [[ -n $pid ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat == "$pid ($1) "* && $stat != "$pid ($1) Z"* ]] || return 1
    echo "$pid"
}

if [[ ! -d $STATE ]]; then
    log "no state folder $STATE: nothing to stop"
    exit 0
fi

# cancel the jobs while slurmctld can still do it, so no slurmstepd/job processes outlive it
if ((!KEEP_JOBS)) && recorded_pid slurmctld >/dev/null && recorded_pid slurmd >/dev/null; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        log "cancelling $(wc -w <<<"$jobs") job(s)"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 1 50); do
            [[ -z $(timeout 10 squeue -h -o %A 2>/dev/null || true) ]] && break
            sleep 0.2
        done
    fi
fi

for name in "${DAEMONS[@]}"; do
    if ! pid=$(recorded_pid "$name"); then
        rm -f "${PIDFILE[$name]}"
        continue
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    # mariadbd may take a few seconds to flush; the slurm daemons save state
    for _ in $(seq 1 150); do
        recorded_pid "$name" >/dev/null || break   # gone (or a zombie waiting to be reaped)
        sleep 0.1
    done
    if recorded_pid "$name" >/dev/null; then
        log "$name (pid $pid) still running after 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do recorded_pid "$name" >/dev/null || break; sleep 0.1; done
    fi
    rm -f "${PIDFILE[$name]}"
done
rm -f "$STATE/env.sh"

if ((PURGE)); then
    log "removing $STATE"
    rm -rf "$STATE"
fi
log "stopped"
