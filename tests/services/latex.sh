#!/usr/bin/env bash
# pdflatex (with booktabs) for the LaTeX report test.
#
#   tests/services/latex.sh     install Debian `texlive-latex-base texlive-latex-recommended`
#                               (booktabs is in the latter) when pdflatex is absent (root,
#                               apt-get); the last stdout line is pdflatex's path. Already
#                               installed: just prints it.
#
# Environment:
#   ABLATE_PDFLATEX   use this pdflatex binary instead (must be executable)
#
# Exit status: 0 with the path on the last line; 1 when pdflatex is missing and cannot be
# installed (not root, no apt-get, or apt-get failed; the reason on stderr).
set -euo pipefail

log() { echo "[latex.sh] $*" >&2; }
die() {
    echo "latex.sh: ERROR: $1" >&2
    if [[ -n ${2:-} && -f $2 ]]; then
        echo "---- last 30 lines of $2 ----" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}

if [[ -n ${ABLATE_PDFLATEX:-} ]]; then
    [[ -x $ABLATE_PDFLATEX ]] || die "ABLATE_PDFLATEX=$ABLATE_PDFLATEX is not executable"
    echo "$ABLATE_PDFLATEX"
    exit 0
fi

found() { command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null 2>&1; }
if found; then
    command -v pdflatex
    exit 0
fi

[[ $EUID -eq 0 ]] || die "pdflatex (with booktabs.sty) is missing and installing it needs root"
command -v apt-get >/dev/null || die "pdflatex is missing and there is no apt-get"

# one installer at a time (two test processes may ask at once)
exec 9>>/tmp/ablate-latex-install.lock
flock -w 1800 9 || die "another latex.sh holds /tmp/ablate-latex-install.lock"
if found; then
    command -v pdflatex
    exit 0
fi

log "installing Debian packages texlive-latex-base texlive-latex-recommended (apt-get)"
export DEBIAN_FRONTEND=noninteractive
aptlog=$(mktemp /tmp/ablate-latex-apt.XXXXXX.log)
apt-get -o DPkg::Lock::Timeout=300 update -q >"$aptlog" 2>&1 || die "apt-get update failed" "$aptlog"
apt-cache policy texlive-latex-recommended >>"$aptlog" 2>&1
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
    texlive-latex-base texlive-latex-recommended >>"$aptlog" 2>&1 \
    || die "apt-get install texlive-latex-base texlive-latex-recommended failed" "$aptlog"
rm -f "$aptlog"
found || die "apt-get installed texlive but pdflatex or booktabs.sty is missing"
command -v pdflatex
