#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
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

exec bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh" libzmq3-dev iceoryx libiceoryx-posh-dev libiceoryx-hoofs-dev gnuplot-nox
