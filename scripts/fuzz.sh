#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets of tests/fuzz (CMake option SHMCHAN_FUZZ, clang) and runs each for
# SECONDS; fails on the first crash, sanitizer report, hang or abort of a target.
#   scripts/fuzz.sh [SECONDS]        (default 30)
# Build directory: build-fuzz at the repo root. Each target keeps its corpus in
# build-fuzz/corpus/TARGET between runs and leaves what failed in build-fuzz/artifacts/TARGET/
# (replay one with: build-fuzz/TARGET FILE).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS]" >&2
    exit 2
fi
build="$root/build-fuzz"

bash "$root/scripts/setup.sh" clang libclang-rt-14-dev
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMCHAN_FUZZ=ON \
    -DSHMCHAN_BENCH=OFF
targets=(fuzz_frames fuzz_records fuzz_open)
cmake --build "$build" -j2 --target "${targets[@]}"

# -max_len: the input layouts at the top of each target (a preamble and one segment of 4 KiB;
# fuzz_records: 15 bytes and four segments; fuzz_open: 2 bytes, the header and four segments).
# -len_control=0: long inputs from the start.
# -timeout: an input that takes 10 s is a hang (one normally takes well under 1 ms).
declare -A max_len=([fuzz_frames]=4200 [fuzz_records]=16400 [fuzz_open]=24600)
for target in "${targets[@]}"; do
    corpus="$build/corpus/$target"
    artifacts="$build/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz: $target for ${seconds}s (corpus $corpus)"
    if ! "$build/$target" -max_total_time="$seconds" -max_len="${max_len[$target]}" -len_control=0 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus"; then
        echo "fuzz: $target failed; the input is in $artifacts/" >&2
        exit 1
    fi
done
echo "fuzz: every target ran ${seconds}s without a failure"
