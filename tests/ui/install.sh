#!/bin/sh
# Install the browser the real-browser UI tests (tests/ui) drive: Debian's chromium, used by
# Playwright through executable_path="/usr/bin/chromium" (Playwright's own browser download
# is not reachable from the test machines). The Python side comes with the project: jupyterlab
# and playwright with its `test` extra, ipywidgets and anywidget with every install.
# Idempotent: does nothing if /usr/bin/chromium is there; runs `apt-get update` only if the
# package lists do not offer chromium or offer a version the mirror no longer has.
# Must run as root on Debian 12. Quiet on success; on failure prints apt's log and exits
# non-zero.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/ui/install.sh: must run as root (apt-get install chromium)" >&2
    exit 1
fi

log=$(mktemp /tmp/hpckernel-ui-install.XXXXXX.log)

fail() {
    echo "tests/ui/install.sh: $1 failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

echo "tests/ui/install.sh: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
install_chromium() {
    apt-get install -y -q --no-install-recommends chromium >>"$log" 2>&1
}
# No candidate means no package lists yet: update them first. Lists that are there but stale
# (their version is gone from the mirror) make the install fail: update, then try once more.
candidate=$(apt-cache policy chromium 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    apt-get update -q >"$log" 2>&1 || fail "apt-get update"
    install_chromium || fail "apt-get install chromium"
elif ! install_chromium; then
    apt-get update -q >>"$log" 2>&1 || fail "apt-get update"
    install_chromium || fail "apt-get install chromium"
fi
[ -x /usr/bin/chromium ] || fail "apt-get install chromium (no /usr/bin/chromium)"
rm -f "$log"
