// SPDX-License-Identifier: Apache-2.0
// The doctest runner. Every test process works in its own channel directory (SHMCHAN_DIR), so
// parallel runs never collide; support.hpp makes and removes it.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "support.hpp"

int main(int argc, char** argv) {
    shmchan::test::TestDirectory directory;  // sets SHMCHAN_DIR for this process and its children
    doctest::Context context;
    context.applyCommandLine(argc, argv);
    return context.run();
}
