#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shm-pipe against `cat | cat` moving one file into /dev/null, with both cores free and with one
# core busy (a busy loop, not pinned: the scheduler places it), runs interleaved. The scarce-core
# figure of the default wait: the default (hybrid, adaptive spin) against --wait park and
# against a pipe of the same minutes.
#   bench/pipe_contended.sh [--bytes N] [--runs R] [BUILD_DIR]
# Prints one line per run and the medians with their ratios; the file lives in /dev/shm (tmpfs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bytes=$((1024 * 1024 * 1024))
runs=3
build=$root/build
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bytes) bytes=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        -h|--help) sed -n '3,9p' "$0"; exit 0 ;;
        -*) echo "pipe_contended: unknown option $1" >&2; exit 2 ;;
        *) build=$1; shift ;;
    esac
done
pipe_tool=$build/shm-pipe
[[ -x $pipe_tool ]] || { echo "pipe_contended: no $pipe_tool (build first)" >&2; exit 2; }

work=$(mktemp -d /dev/shm/shmchan-contended.XXXXXX)
busy_pid=
cleanup() {
    [[ -n $busy_pid ]] && kill "$busy_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
head -c "$bytes" /dev/urandom > "$work/input"
export SHMCHAN_DIR=$work

seconds() {  # the wall time of the command line in $1, in seconds
    local start end
    start=$(date +%s%N)
    bash -c "$1"
    end=$(date +%s%N)
    awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }'
}

declare -A times
cases=(cat default park)
run_case() {
    local name=$1 channel=c$RANDOM$RANDOM
    case "$name" in
        cat) seconds "cat '$work/input' | cat > /dev/null" ;;
        default) seconds "'$pipe_tool' recv $channel > /dev/null & '$pipe_tool' send $channel < '$work/input'; wait" ;;
        park) seconds "'$pipe_tool' recv --wait park $channel > /dev/null & '$pipe_tool' send --wait park $channel < '$work/input'; wait" ;;
    esac
}

for state in free busy; do
    if [[ $state == busy ]]; then
        bash -c 'while :; do :; done' &
        busy_pid=$!
    fi
    for ((r = 1; r <= runs; ++r)); do
        for name in "${cases[@]}"; do
            t=$(run_case "$name")
            times[$state/$name]+="$t "
            printf '%s run %d %-8s %.3f s\n' "$state" "$r" "$name" "$t"
        done
    done
    if [[ -n $busy_pid ]]; then
        kill "$busy_pid"
        wait "$busy_pid" 2>/dev/null || true
        busy_pid=
    fi
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo
echo "medians of $runs runs, $((bytes / 1024 / 1024)) MiB:"
for state in free busy; do
    c=$(median <<<"${times[$state/cat]}")
    d=$(median <<<"${times[$state/default]}")
    p=$(median <<<"${times[$state/park]}")
    awk -v s="$state" -v c="$c" -v d="$d" -v p="$p" 'BEGIN {
        printf "%-5s cat|cat %.3f s   shm-pipe default %.3f s (%.2f x cat)   --wait park %.3f s (%.2f x cat)   default/park speed %.2f x\n",
               s, c, d, c / d, p, c / p, p / d }'
done
