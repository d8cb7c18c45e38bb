// SPDX-License-Identifier: Apache-2.0
// Process identity for display and diagnostics.
//
// Liveness is decided by byte-range locks (region.hpp), never by a pid: a pid can be reused and
// means nothing in another pid namespace. The pid and start time kept beside a lock let a tool
// show who held it and say "pid reused" when the pid now names another process.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmchan::shm {

struct ProcessIdentity {
    std::int32_t pid = 0;
    std::uint64_t start_time = 0;  // field 22 of /proc/PID/stat: clock ticks since boot
};

ProcessIdentity self_identity();

enum class PidState { alive, dead, reused };

// What the pid names now in our pid namespace: dead (no such process, or a zombie), alive with
// the same start time, or reused (alive with another start time). Display only.
PidState pid_state(std::int32_t pid, std::uint64_t start_time);

// Start time of a pid, or 0 if there is no such process; `zombie` tells whether it is a zombie.
std::uint64_t process_start_time(std::int32_t pid, bool* zombie = nullptr);

// CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE (a tick's resolution, cheaper) and CLOCK_REALTIME in
// nanoseconds (vDSO: no syscall).
std::uint64_t monotonic_ns() noexcept;
std::uint64_t monotonic_coarse_ns() noexcept;
std::uint64_t realtime_ns() noexcept;
std::uint64_t realtime_coarse_ns() noexcept;  // a tick's resolution: for display timestamps

}  // namespace shmchan::shm
