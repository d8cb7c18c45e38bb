#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what shmchan needs from Debian's packages, and nothing that is already there.
# Idempotent: when every package is installed it changes nothing and needs no network.
# Works as root on a fresh Debian 12; as another user it uses sudo when available.
set -euo pipefail

#   scripts/setup.sh               the project's packages (below)
#   scripts/setup.sh PACKAGE...    those packages instead (scripts/bench_deps.sh uses this, and
#                                  scripts/fuzz.sh for clang and libclang-rt-14-dev)
# cmake, g++, make: the build. libboost-dev: Boost headers (Interprocess, Lockfree).
# doctest-dev: the test framework. libcli11-dev: command-line parsing of the tools.
# help2man: the tools' man pages. pkg-config: the consumer test (scripts/consumer_test.sh) builds
# a program with `pkg-config --cflags --libs shmchan`.
# python3-dev, pybind11-dev: the Python package (python/); python3-numpy, python3-pytest: its
# tests (the package's numpy calls, pytest). gcc, the C compiler of the C API's test, comes with g++.
# libzmq3-dev: shm-bridge (ZeroMQ). iproute2: `ip netns`, the bridge's tests across network namespaces.
packages=(cmake g++ make libboost-dev doctest-dev libcli11-dev help2man pkg-config
          python3-dev pybind11-dev python3-numpy python3-pytest libzmq3-dev iproute2)
if [[ $# -gt 0 ]]; then packages=("$@"); fi

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup: all packages present (${packages[*]})"
    exit 0
fi

echo "setup: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
    run_as_root=()
elif command -v sudo >/dev/null 2>&1; then
    # Without a terminal (CI) sudo must not wait for a password: -n fails at once instead.
    if [[ -t 0 ]]; then run_as_root=(sudo); else run_as_root=(sudo -n); fi
else
    echo "setup: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${run_as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
