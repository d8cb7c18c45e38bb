#!/usr/bin/env bash
# Installs the optional dependencies of shm-bench (bench/) from Debian's packages, and nothing
# that is already there. Idempotent: when every package is installed it changes nothing and needs
# no network. The core (channels/, shm/, tools/, tests/) builds without any of them; shm-bench
# compiles a peer's transport only when its headers and library are found.
#   libzmq3-dev                      ZeroMQ (transport zeromq-ipc)
#   iceoryx                          the RouDi daemon binary iox-roudi (transport iceoryx)
#   libiceoryx-posh-dev, libiceoryx-hoofs-dev   iceoryx 2.x C++ API headers and CMake packages
#   gnuplot-nox                      shm-bench --plot
# Boost (message_queue, lockfree spsc_queue) comes with scripts/setup.sh (libboost-dev).
# Works as root; as another user it uses sudo when available.
set -euo pipefail

packages=(libzmq3-dev iceoryx libiceoryx-posh-dev libiceoryx-hoofs-dev gnuplot-nox)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "bench_deps: all packages present (${packages[*]})"
    exit 0
fi

echo "bench_deps: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
    run_as_root=()
elif command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then run_as_root=(sudo); else run_as_root=(sudo -n); fi
else
    echo "bench_deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
fi

# Update the lists only when a package is unknown to apt (a fresh machine), not on every run.
need_update=0
for package in "${missing[@]}"; do
    if ! apt-cache show "$package" >/dev/null 2>&1; then need_update=1; fi
done
if [[ $need_update -eq 1 ]]; then
    "${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
fi
"${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "bench_deps: done"
