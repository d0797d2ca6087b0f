#!/usr/bin/env bash
# Headless Chromium for the HTML report test.
#
#   tests/services/chromium.sh          install Debian `chromium` when /usr/bin/chromium is
#                                       absent (root, apt-get); the last stdout line is the
#                                       browser's path. Already installed: just prints it.
#
# Environment:
#   ABLATE_CHROMIUM   use this browser binary instead (must be executable)
#
# Exit status: 0 with the path on the last line; 1 when the browser is missing and
# cannot be installed (not root, no apt-get, or apt-get failed; the reason on stderr).
set -euo pipefail

log() { echo "[chromium.sh] $*" >&2; }
die() {
    echo "chromium.sh: ERROR: $1" >&2
    if [[ -n ${2:-} && -f $2 ]]; then
        echo "---- last 30 lines of $2 ----" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}

if [[ -n ${ABLATE_CHROMIUM:-} ]]; then
    [[ -x $ABLATE_CHROMIUM ]] || die "ABLATE_CHROMIUM=$ABLATE_CHROMIUM is not executable"
    echo "$ABLATE_CHROMIUM"
    exit 0
fi

BIN=/usr/bin/chromium
if [[ -x $BIN ]]; then
    echo "$BIN"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "$BIN is missing and installing it needs root"
command -v apt-get >/dev/null || die "$BIN is missing and there is no apt-get"

# one installer at a time (two test processes may ask at once)
exec 9>>/tmp/ablate-chromium-install.lock
flock -w 900 9 || die "another chromium.sh holds /tmp/ablate-chromium-install.lock"
if [[ -x $BIN ]]; then
    echo "$BIN"
    exit 0
fi

log "installing Debian package chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
aptlog=$(mktemp /tmp/ablate-chromium-apt.XXXXXX.log)
apt-get -o DPkg::Lock::Timeout=300 update -q >"$aptlog" 2>&1 || die "apt-get update failed" "$aptlog"
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends chromium \
    >>"$aptlog" 2>&1 || die "apt-get install chromium failed" "$aptlog"
rm -f "$aptlog"
[[ -x $BIN ]] || die "apt-get installed chromium but $BIN is missing"
echo "$BIN"
