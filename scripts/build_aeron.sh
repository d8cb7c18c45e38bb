#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds Aeron's C media driver (aeronmd) and C client (libaeron_static.a) from a source tarball,
# offline, outside this tree, for shm-bench's optional transport aeron-ipc. Nothing of Aeron goes
# into shmchan's tree or library.
#   scripts/build_aeron.sh TARBALL DEST
# TARBALL: a snapshot of real-logic/aeron (a .tar.gz of the repository's files, with or without
# a top folder). DEST: where it is unpacked and built (DEST/build holds the binaries). Then
# configure shmchan with -DSHMCHAN_AERON_DIR=DEST (see bench/README.md).
# Needs uuid-dev, libbsd-dev, zlib1g-dev (installed here through scripts/setup.sh) and Make or
# Ninja. HdrHistogram comes from the zip in Aeron's cppbuild/, so no download happens.
# Idempotent: running it again re-uses DEST's build folder.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 TARBALL DEST" >&2
    exit 2
fi
tarball=$(realpath -m "$1")
dest=$2
if [[ ! -f "$tarball" ]]; then
    echo "build_aeron: no such file: $tarball" >&2
    exit 2
fi

here=$(dirname "${BASH_SOURCE[0]}")
bash "$here/setup.sh" uuid-dev libbsd-dev zlib1g-dev

mkdir -p "$dest"
dest=$(realpath "$dest")
if [[ ! -f "$dest/CMakeLists.txt" ]]; then
    echo "build_aeron: unpacking $tarball into $dest"
    tar xzf "$tarball" -C "$dest"
    # A tarball with one top folder: move its contents up so DEST is the source root.
    if [[ ! -f "$dest/CMakeLists.txt" ]]; then
        mapfile -t tops < <(find "$dest" -mindepth 1 -maxdepth 1)
        if [[ ${#tops[@]} -eq 1 && -f "${tops[0]}/CMakeLists.txt" ]]; then
            shopt -s dotglob
            mv "${tops[0]}"/* "$dest"/
            rmdir "${tops[0]}"
        fi
    fi
fi
if [[ ! -f "$dest/aeron-client/src/main/c/aeronc.h" ]]; then
    echo "build_aeron: $dest does not look like Aeron's source (no aeron-client/src/main/c/aeronc.h)" >&2
    exit 1
fi

# Aeron asks for CMake 3.26; Debian 12 has 3.25, which builds it as well.
sed -i -E 's/cmake_minimum_required\(VERSION 3\.26/cmake_minimum_required(VERSION 3.25/;
           s/cmake_policy\(VERSION 3\.26\)/cmake_policy(VERSION 3.25)/' "$dest/CMakeLists.txt"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
jobs=${AERON_BUILD_JOBS:-2}
cmake -S "$dest" -B "$dest/build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_AERON_DRIVER=ON -DBUILD_AERON_ARCHIVE_API=OFF \
    -DAERON_TESTS=OFF -DAERON_UNIT_TESTS=OFF -DAERON_SYSTEM_TESTS=OFF \
    -DAERON_BUILD_SAMPLES=OFF -DAERON_BUILD_DOCUMENTATION=OFF -DAERON_INSTALL_TARGETS=OFF
nice cmake --build "$dest/build" -j "$jobs" --target aeronmd aeron_static

driver=$(find "$dest/build" -type f -name aeronmd -perm -u+x | head -n 1)
client=$(find "$dest/build" -type f -name libaeron_static.a | head -n 1)
if [[ -z "$driver" || -z "$client" ]]; then
    echo "build_aeron: build finished but aeronmd or libaeron_static.a is missing" >&2
    exit 1
fi
echo "build_aeron: driver $driver"
echo "build_aeron: client $client"
echo "build_aeron: configure shmchan with -DSHMCHAN_AERON_DIR=$dest"
