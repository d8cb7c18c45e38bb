// SPDX-License-Identifier: Apache-2.0
// shm-bench's barrier rows (pattern "barrier", `--filter barrier`): what debloating buys and costs.
// A source -> transform -> sink pipeline of three processes over two records channels, the sink
// slower than the source; checkpoint barriers every 100 ms, timed from write_barrier at the source
// to their arrival at the sink; for rings of 16, 64 and 256 segments, debloating off and at 10 ms
// and 100 ms; and the same with a bursty source and a jittery sink. See bench/README.md.
#pragma once

#include <string>

namespace bench {

struct BarrierOptions {
    bool quick = false;  // 16 and 256 segments, off and 10 ms, shorter rows
    std::string json_path, markdown_path;
    int core_a = 0, core_b = 1;  // the source and the sink (the transform is not pinned)
};

// Runs the grid, prints a table, writes the JSON (and markdown). The exit code of shm-bench.
int run_barrier_rows(const BarrierOptions& options);

}  // namespace bench
