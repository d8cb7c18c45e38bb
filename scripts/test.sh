#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs what is missing, builds, and runs every test:
#   bash scripts/test.sh               # the suite (build dir: build)
#   bash scripts/test.sh --sanitizers  # then again under ASan+UBSan (build-asan) and TSan (build-tsan)
#   bash scripts/test.sh --sanitizers-only  # only the two sanitizer runs
# SHMCHAN_BUILD_DIR=DIR moves the plain build (the sanitizer builds go to DIR-asan, DIR-tsan).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plain=1
sanitizers=0
for arg in "$@"; do
    case "$arg" in
        --sanitizers) sanitizers=1 ;;
        --sanitizers-only) sanitizers=1; plain=0 ;;
        -h|--help) sed -n '3,7p' "$0"; exit 0 ;;
        *) echo "test: unknown argument $arg" >&2; exit 2 ;;
    esac
done

build_dir=${SHMCHAN_BUILD_DIR:-$root/build}
case "$build_dir" in /*) ;; *) build_dir=$root/$build_dir ;; esac

phase() { printf '\n==== %s ====\n' "$*"; }

phase "setup"
bash "$root/scripts/setup.sh"

# Runs ctest in $1 with the rest of the environment as given. Sanitizer runtimes can refuse to
# start when the kernel randomizes mappings more than they expect ("unexpected memory mapping",
# seen with TSan on kernels with a large vm.mmap_rnd_bits): probe the test binary once, and if it
# fails that way, run the suite with address-space randomization off (setarch -R), which every
# process ctest starts inherits.
run_suite() {
    local dir=$1 prefix=() probe
    if ! probe=$("$dir/shmchan_tests" --list-test-cases 2>&1 >/dev/null); then
        if grep -qi "unexpected memory mapping\|shadow memory\|ASLR" <<<"$probe" \
                && command -v setarch >/dev/null 2>&1; then
            echo "test: the sanitizer runtime needs ASLR off here; using setarch $(uname -m) -R"
            prefix=(setarch "$(uname -m)" -R)
        else
            printf '%s\n' "$probe" >&2
            echo "test: $dir/shmchan_tests does not start" >&2
            return 1
        fi
    fi
    "${prefix[@]}" ctest --test-dir "$dir" --output-on-failure -j2
}

if [[ $plain -eq 1 ]]; then
    phase "build ($build_dir)"
    bash "$root/scripts/build.sh" "$build_dir"
    phase "tests"
    run_suite "$build_dir"
fi

if [[ $sanitizers -eq 1 ]]; then
    phase "build with ASan+UBSan (${build_dir}-asan)"
    bash "$root/scripts/build.sh" --asan "${build_dir}-asan"
    phase "tests under ASan+UBSan"
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        run_suite "${build_dir}-asan"

    phase "build with TSan (${build_dir}-tsan)"
    bash "$root/scripts/build.sh" --tsan "${build_dir}-tsan"
    phase "tests under TSan"
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
        run_suite "${build_dir}-tsan"
fi

phase "all tests passed"
