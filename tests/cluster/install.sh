#!/bin/sh
# Install the Debian packages the virtual Slurm test bed needs (tests/cluster/testbed.py).
# Idempotent: installs only what is missing, runs `apt-get update` once and only if needed.
# Must run as root on Debian 12. Quiet on success; on failure prints apt's log and exits non-zero.
set -eu

# libpmix-dev: Slurm's PMIx plugin (srun --mpi=pmix, for Open MPI) loads libpmix.so, which
# only the -dev package provides; slurmd must start after it is installed.
PACKAGES="slurm-wlm munge slurmdbd mariadb-server openssh-server openssh-client libpmix-dev"

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root (apt-get install)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing="$missing $pkg"
    fi
done

# testbed.py needs a python3; the project's own may come from elsewhere (pyenv, uv).
if ! command -v python3 >/dev/null 2>&1; then
    missing="$missing python3"
fi

if [ -z "$missing" ]; then
    exit 0
fi

log=$(mktemp /tmp/hpckernel-install.XXXXXX.log)
policy=/usr/sbin/policy-rc.d
made_policy=""

cleanup() {
    if [ -n "$made_policy" ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

# Package scripts would otherwise start system-wide munged, mariadbd, sshd and slurm daemons;
# the test bed runs its own copies on private ports, so keep the system ones from starting.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi

fail() {
    echo "install.sh: $1 failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

echo "install.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >"$log" 2>&1 || fail "apt-get update"
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $missing >>"$log" 2>&1 \
    || fail "apt-get install$missing"
rm -f "$log"
