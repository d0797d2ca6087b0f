#!/usr/bin/env bash
# Start the services the test suite needs and write tests/services/.env for the fixtures.
#
#   bash tests/services/start-all.sh     (make test runs it before pytest)
#
# Services: the single-node Slurm cluster (slurm/start-cluster.sh), PostgreSQL
# (tests/services/postgres.sh) and pdflatex (tests/services/latex.sh, texlive). Each is
# started only when running as root or when it is already installed. tests/services/.env (git-ignored) gets, per service, either its
# settings or the reason it is missing:
#   SLURM_CONF=...            or  ABLATE_SLURM_ERROR=...
#   ABLATE_TEST_PG_URL=...    or  ABLATE_PG_ERROR=...
#   ABLATE_PDFLATEX=...       or  ABLATE_LATEX_ERROR=...
# This script never fails: the tests that need a missing service fail with the reason
# when CI or ABLATE_REQUIRE_SERVICES=1 is set, and are skipped otherwise.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ENV_FILE=$ROOT/tests/services/.env
LOG_DIR=${TMPDIR:-/tmp}/ablate-services
mkdir -p "$LOG_DIR"
lines=()

say() { echo "[start-all] $*" >&2; }
# one_line FILE: the most telling line of a failed start (its ERROR line, else the last line)
one_line() {
    local line
    line=$(grep -m 1 'ERROR' "$1" 2>/dev/null || tail -n 1 "$1" 2>/dev/null)
    echo "${line:-no output}" | tr -d '\r' | cut -c 1-300
}
# failed SCRIPT LOG VAR: say why SCRIPT failed (its telling line, the log's tail) and
# record VAR=reason for the fixtures
failed() {
    local reason
    reason="$1 failed: $(one_line "$2") (see $2)"
    say "$reason"
    tail -n 20 "$2" >&2
    lines+=("$3=$reason")
}

# ---------------------------------------------------------------- Slurm
if [[ $EUID -eq 0 ]]; then
    say "starting the Slurm test cluster (log $LOG_DIR/slurm.log)"
    if env_lines=$("$ROOT/slurm/start-cluster.sh" --env 2>"$LOG_DIR/slurm.log"); then
        eval "$env_lines"
        lines+=("SLURM_CONF=$SLURM_CONF")
    else
        failed "slurm/start-cluster.sh" "$LOG_DIR/slurm.log" ABLATE_SLURM_ERROR
    fi
else
    lines+=("ABLATE_SLURM_ERROR=the Slurm test cluster needs root (slurm/start-cluster.sh)")
fi

# ---------------------------------------------------------------- PostgreSQL
if [[ $EUID -eq 0 ]] || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    say "starting PostgreSQL (log $LOG_DIR/postgres.log)"
    if out=$("$ROOT/tests/services/postgres.sh" start 2>"$LOG_DIR/postgres.log"); then
        lines+=("ABLATE_TEST_PG_URL=$(tail -n 1 <<<"$out")")
    else
        failed "tests/services/postgres.sh start" "$LOG_DIR/postgres.log" ABLATE_PG_ERROR
    fi
else
    lines+=("ABLATE_PG_ERROR=PostgreSQL is not installed and installing it needs root")
fi

# ---------------------------------------------------------------- LaTeX (pdflatex + booktabs)
if [[ $EUID -eq 0 ]] || command -v pdflatex >/dev/null; then
    say "checking pdflatex, installing texlive if missing (log $LOG_DIR/latex.log)"
    if out=$("$ROOT/tests/services/latex.sh" 2>"$LOG_DIR/latex.log"); then
        lines+=("ABLATE_PDFLATEX=$(tail -n 1 <<<"$out")")
    else
        failed "tests/services/latex.sh" "$LOG_DIR/latex.log" ABLATE_LATEX_ERROR
    fi
else
    lines+=("ABLATE_LATEX_ERROR=pdflatex is not installed and installing it needs root")
fi

{
    echo "# written by tests/services/start-all.sh on $(date -Is); read by the test fixtures"
    printf '%s\n' "${lines[@]}"
} >"$ENV_FILE.tmp" && mv -f "$ENV_FILE.tmp" "$ENV_FILE"
say "wrote $ENV_FILE"
exit 0
