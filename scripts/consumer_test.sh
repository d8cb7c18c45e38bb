#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Uses shmchan from outside its tree, the four ways a user does, and fails if one does not build
# and run (tests/consumer is the outside project):
#   1. cmake --install BUILD_DIR --prefix TMP; find_package(shmchan) with CMAKE_PREFIX_PATH=TMP
#      (libshmchan.so and libshmchan.a);
#   2. the same prefix with pkg-config --cflags --libs shmchan, and the installed tools;
#   3. add_subdirectory and FetchContent of this source tree;
#   4. cpack -G DEB in a build configured for /usr; lists the package, then builds against its
#      files (dpkg-deb -x), or with --install-deb installs it (apt-get install ./shmchan_*.deb,
#      as root: for a throwaway machine or container) and builds against the system.
#   scripts/consumer_test.sh [--install-deb] [BUILD_DIR]     (default BUILD_DIR: build, built already)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
install_deb=0
build_dir=$root/build
for arg in "$@"; do
    case "$arg" in
        --install-deb) install_deb=1 ;;
        -h|--help) sed -n '3,13p' "$0"; exit 0 ;;
        -*) echo "consumer_test: unknown option $arg" >&2; exit 2 ;;
        *) build_dir=$arg ;;
    esac
done
case "$build_dir" in /*) ;; *) build_dir=$root/$build_dir ;; esac
[[ -f "$build_dir/CMakeCache.txt" ]] || { echo "consumer_test: $build_dir is not a build directory (run scripts/build.sh)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/shmchan-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
export SHMCHAN_DIR=$work/channels   # the consumer's channels: a directory of its own
mkdir -p "$SHMCHAN_DIR"
phase() { printf '\n==== consumer test: %s ====\n' "$*"; }
consumer=$root/tests/consumer
werror=()
if [[ "${CI:-}" == "true" ]]; then werror=(-DCMAKE_CXX_FLAGS=-Werror); fi

# Configures, builds and runs tests/consumer in $work/$1 with the rest as cmake arguments.
build_and_run() {
    local dir=$work/$1; shift
    cmake -S "$consumer" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${werror[@]}" "$@" >"$dir.log" 2>&1 \
        || { cat "$dir.log"; echo "consumer_test: configure failed" >&2; return 1; }
    cmake --build "$dir" -j2 >>"$dir.log" 2>&1 || { cat "$dir.log"; echo "consumer_test: build failed" >&2; return 1; }
    "$dir/consumer"
    "$dir/consumer_static"
}

phase "cmake --install $build_dir --prefix $work/prefix"
cmake --build "$build_dir" -j2 --target shmchan shmchan_static shm-pipe shm-inspect
cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log"
(cd "$work/prefix" && find . -type f -o -type l | sort)

phase "find_package(shmchan CONFIG REQUIRED), shmchan::shmchan and shmchan::shmchan_static"
build_and_run find -DSHMCHAN_CONSUME=find -DCMAKE_PREFIX_PATH="$work/prefix"
libraries=$(ldd "$work/find/consumer")  # (not piped into grep -q: pipefail and SIGPIPE)
if grep -q "$work/prefix/.*libshmchan.so.0" <<<"$libraries"; then
    echo "consumer runs with: $(grep libshmchan <<<"$libraries")"
else
    echo "$libraries"; echo "consumer_test: the consumer does not run with the installed libshmchan.so.0" >&2; exit 1
fi

phase "pkg-config --cflags --libs shmchan"
pc_dir=$(dirname "$(find "$work/prefix" -name shmchan.pc)")
flags=$(PKG_CONFIG_PATH=$pc_dir pkg-config --cflags --libs shmchan)
echo "pkg-config: $flags (version $(PKG_CONFIG_PATH=$pc_dir pkg-config --modversion shmchan))"
# shellcheck disable=SC2086  # the flags are words
g++ -std=c++20 -Wall -o "$work/pc-consumer" "$consumer/main.cpp" $flags
LD_LIBRARY_PATH=$(PKG_CONFIG_PATH=$pc_dir pkg-config --variable=libdir shmchan) "$work/pc-consumer"
"$work/prefix/bin/shm-pipe" --version
"$work/prefix/bin/shm-inspect" --version
echo "hello through an installed shm-pipe" | "$work/prefix/bin/shm-pipe" send installed-tools
"$work/prefix/bin/shm-pipe" recv installed-tools

phase "add_subdirectory($root) and FetchContent"
build_and_run subdir -DSHMCHAN_CONSUME=subdir -DSHMCHAN_SOURCE_DIR="$root"
build_and_run fetch -DSHMCHAN_CONSUME=fetch -DSHMCHAN_SOURCE_DIR="$root"

phase "cpack -G DEB"
deb_build=$work/deb-build
cmake -S "$root" -B "$deb_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DSHMCHAN_BUILD_TESTS=OFF -DSHMCHAN_BUILD_EXAMPLES=OFF -DSHMCHAN_BENCH=OFF -DSHMCHAN_BUILD_TOOLS=ON >"$work/deb.log"
cmake --build "$deb_build" -j2 >>"$work/deb.log" 2>&1 || { cat "$work/deb.log"; exit 1; }
(cd "$deb_build" && cpack -G DEB >>"$work/deb.log" 2>&1) || { cat "$work/deb.log"; exit 1; }
deb=$(ls "$deb_build"/shmchan_*.deb)
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
contents=$(dpkg-deb --contents "$deb")
for path in usr/lib/x86_64-linux-gnu/libshmchan.so.0 usr/lib/x86_64-linux-gnu/libshmchan.a \
            usr/include/shmchan/shmchan.hpp usr/include/shmchan/version.hpp \
            usr/lib/x86_64-linux-gnu/cmake/shmchan/shmchanConfig.cmake \
            usr/lib/x86_64-linux-gnu/pkgconfig/shmchan.pc usr/bin/shm-pipe usr/bin/shm-inspect \
            usr/share/man/man1/shm-pipe.1 usr/share/man/man1/shm-inspect.1 usr/share/doc/shmchan/copyright; do
    grep -q "\./$path" <<<"$contents" || { echo "consumer_test: $path is not in $deb" >&2; exit 1; }
done

if [[ $install_deb -eq 1 ]]; then
    phase "apt-get install $deb, then find_package and pkg-config from /usr"
    apt-get install -y -q "$deb"
    build_and_run deb-find -DSHMCHAN_CONSUME=find
    # shellcheck disable=SC2046
    g++ -std=c++20 -o "$work/deb-pc-consumer" "$consumer/main.cpp" $(pkg-config --cflags --libs shmchan)
    "$work/deb-pc-consumer"
    shm-pipe --version
    man -w shm-pipe shm-inspect
else
    phase "the package's files (dpkg-deb -x), with find_package and pkg-config"
    dpkg-deb -x "$deb" "$work/deb-root"
    export LD_LIBRARY_PATH=$work/deb-root/usr/lib/x86_64-linux-gnu
    build_and_run deb-find -DSHMCHAN_CONSUME=find -DCMAKE_PREFIX_PATH="$work/deb-root/usr"
    flags=$(PKG_CONFIG_PATH=$work/deb-root/usr/lib/x86_64-linux-gnu/pkgconfig pkg-config --cflags --libs shmchan)
    # shellcheck disable=SC2086
    g++ -std=c++20 -o "$work/deb-pc-consumer" "$consumer/main.cpp" $flags
    "$work/deb-pc-consumer"
    "$work/deb-root/usr/bin/shm-pipe" --version
fi
phase "passed: find_package, pkg-config, add_subdirectory, FetchContent and the .deb"
