#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's code is the examples' code: every ```cpp block of README must follow a line
#   <!-- quote: examples/FILE -->
# and hold that file verbatim. Fails on a block that drifted from its file, a missing file, or a
# C++ block that quotes nothing.
#   tests/check_readme_snippets.sh README.md
set -euo pipefail
readme=$1
root=$(dirname "$readme")
awk -v root="$root" '
    function fail(message) { printf "check_readme_snippets: %s:%d: %s\n", FILENAME, NR, message > "/dev/stderr"; bad = 1 }
    /^<!-- quote: [^ ]+ -->$/ { quoted = $3; next }
    /^```cpp$/ {
        if (quoted == "") fail("a C++ block that quotes no file (precede it with <!-- quote: examples/FILE -->)")
        in_block = 1; block = ""; start = NR; next
    }
    in_block && /^```$/ {
        in_block = 0
        if (quoted != "") {
            path = root "/" quoted; file = ""
            while ((getline line < path) > 0) file = file line "\n"
            close(path)
            if (file == "") fail("quotes " quoted ", which is missing or empty")
            else if (file != block) fail("the block at line " start " is not " quoted " verbatim (copy the file into it)")
            else checked++
        }
        quoted = ""; next
    }
    in_block { block = block $0 "\n"; next }
    { if ($0 != "") quoted = "" }
    END {
        if (bad) exit 1
        printf "check_readme_snippets: %d quoted files match\n", checked
    }
' "$readme"
