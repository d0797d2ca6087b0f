#!/usr/bin/env bash
# Stop what tests/services/start-all.sh started and remove tests/services/.env.
# Data is kept (slurm/stop-cluster.sh --purge and postgres.sh purge delete it). Never fails.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rm -f "$ROOT/tests/services/.env"
if [[ -d ${ABLATE_SLURM_STATE:-/tmp/ablate-slurm} ]]; then
    "$ROOT/slurm/stop-cluster.sh" || echo "[stop-all] slurm/stop-cluster.sh failed" >&2
fi
"$ROOT/tests/services/postgres.sh" stop || echo "[stop-all] postgres.sh stop failed" >&2
exit 0
