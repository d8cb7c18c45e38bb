#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configures and builds shmchan (every target, or only the --target ones).
#   scripts/build.sh [--asan|--tsan] [--target TARGET]... [BUILD_DIR]
# Default build directories: build, build-asan (ASan+UBSan), build-tsan (TSan), at the repo root.
# With CI=true warnings are errors (-DSHMCHAN_WERROR=ON).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
variant=plain
build_dir=
targets=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --asan) variant=asan ;;
        --tsan) variant=tsan ;;
        --target)
            [[ $# -ge 2 ]] || { echo "build: --target needs a target name" >&2; exit 2; }
            targets+=(--target "$2"); shift ;;
        -h|--help)
            echo "usage: $0 [--asan|--tsan] [--target TARGET]... [BUILD_DIR]"
            exit 0 ;;
        -*) echo "build: unknown option $1" >&2; exit 2 ;;
        *) build_dir=$1 ;;
    esac
    shift
done

options=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
case "$variant" in
    plain) : "${build_dir:=$root/build}"; options+=(-DSHMCHAN_ASAN=OFF -DSHMCHAN_TSAN=OFF -DSHMCHAN_BENCH=ON) ;;
    # The sanitizer builds run the tests only: no benchmarks to build.
    asan) : "${build_dir:=$root/build-asan}"; options+=(-DSHMCHAN_ASAN=ON -DSHMCHAN_TSAN=OFF -DSHMCHAN_BENCH=OFF) ;;
    tsan) : "${build_dir:=$root/build-tsan}"; options+=(-DSHMCHAN_TSAN=ON -DSHMCHAN_ASAN=OFF -DSHMCHAN_BENCH=OFF) ;;
esac
# Every option is passed explicitly, ON or OFF: the CMake cache of a reused build directory must
# not keep a value from an earlier run.
if [[ "${CI:-}" == "true" ]]; then
    options+=(-DSHMCHAN_WERROR=ON)
else
    options+=(-DSHMCHAN_WERROR=OFF)
fi

echo "build: $variant in $build_dir"
cmake -S "$root" -B "$build_dir" "${options[@]}"
cmake --build "$build_dir" -j2 "${targets[@]}"
