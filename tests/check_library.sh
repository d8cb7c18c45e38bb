#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks the shared library LIB (libshmchan.so.X.Y.Z): its SONAME is libshmchan.so.<major>, it
# exports the API (namespace shmchan) and hides the rest (shmchan::shm, the standard library).
#   tests/check_library.sh LIB
set -euo pipefail
lib=$1
fail() { echo "check_library: $lib: $*" >&2; exit 1; }

soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
[[ "$soname" =~ ^libshmchan\.so\.[0-9]+$ ]] || fail "SONAME is '$soname', not libshmchan.so.<major>"

# Demangled names, without the address and type columns.
symbols=$(nm -DC --defined-only "$lib" | cut -d' ' -f3-)
for api in 'shmchan::version()' 'shmchan::Producer::attach(' 'shmchan::Consumer::attach(' \
           'shmchan::RecordWriter::attach(' 'shmchan::RecordReader::attach(' 'shmchan::InputGate::' \
           'typeinfo for shmchan::Error' 'shmchan_writer_attach' 'shmchan_read'; do
    grep -qF "$api" <<<"$symbols" || fail "does not export $api"
done
if grep -E '^((typeinfo( name)? for |vtable for )?shmchan::shm::)' <<<"$symbols"; then fail "exports internals of shmchan::shm (above)"; fi
if grep -E '^((typeinfo( name)? for |vtable for )?(std|__gnu_cxx)::)' <<<"$symbols"; then
    fail "exports the standard library's symbols (above)"
fi
echo "check_library: $lib: SONAME $soname, $(wc -l <<<"$symbols") symbols exported, none of shmchan::shm or std"
