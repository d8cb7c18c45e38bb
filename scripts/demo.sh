#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds the two programs it runs (nothing else), and runs the main job:
#  1. shm-pipeline: three processes, source -> transform -> sink, over two records channels,
#     with live per-channel figures (records/s, MB/s, fill, back-pressured and idle ms/s) and a
#     checked total at the end;
#  2. shm-demo: GiB streamed between two processes through a channel, then the same work
#     through a pipe, side by side.
#   bash scripts/demo.sh [shm-pipeline options, e.g. --records 20000000 --transform-cost-ns 100]
# SHMCHAN_BUILD_DIR=DIR moves the build (default: build). SHMCHAN_DEMO_GIB sets shm-demo's GiB (2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SHMCHAN_BUILD_DIR:-$root/build}
case "$build_dir" in /*) ;; *) build_dir=$root/$build_dir ;; esac

bash "$root/scripts/setup.sh"
# Only the two programs it runs (and the library): not the tests, the tools or the benchmarks.
bash "$root/scripts/build.sh" --target shm-pipeline --target shm-demo "$build_dir"
echo
echo "==== shm-pipeline: source -> transform -> sink ===="
"$build_dir/examples/shm-pipeline" "$@"
echo
echo "==== shm-demo: one channel against one pipe, same work ===="
"$build_dir/examples/shm-demo" --gib "${SHMCHAN_DEMO_GIB:-2}"
