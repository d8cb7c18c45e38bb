// SPDX-License-Identifier: Apache-2.0
#include "shm/process.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace shmchan::shm {

std::uint64_t process_start_time(std::int32_t pid, bool* zombie) {
    if (zombie) *zombie = false;
    if (pid <= 0) return 0;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buffer[1024];
    ssize_t n = ::read(fd, buffer, sizeof buffer - 1);
    ::close(fd);
    if (n <= 0) return 0;
    buffer[n] = '\0';
    // The command name (field 2) is in parentheses and may contain spaces and ')': fields after
    // it start after the last ')'.
    char* close_paren = std::strrchr(buffer, ')');
    if (!close_paren || close_paren[1] == '\0') return 0;
    char* cursor = close_paren + 2;  // field 3: state
    if (zombie) *zombie = (*cursor == 'Z' || *cursor == 'X');
    // Advance to field 22 (starttime): we are at field 3.
    for (int field = 3; field < 22; ++field) {
        cursor = std::strchr(cursor, ' ');
        if (!cursor) return 0;
        ++cursor;
    }
    return std::strtoull(cursor, nullptr, 10);
}

ProcessIdentity self_identity() {
    ProcessIdentity identity;
    identity.pid = static_cast<std::int32_t>(::getpid());
    identity.start_time = process_start_time(identity.pid);
    return identity;
}

PidState pid_state(std::int32_t pid, std::uint64_t start_time) {
    bool zombie = false;
    std::uint64_t now_start = process_start_time(pid, &zombie);
    if (now_start == 0 || zombie) return PidState::dead;
    return now_start == start_time ? PidState::alive : PidState::reused;
}

std::uint64_t monotonic_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t monotonic_coarse_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t realtime_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::uint64_t realtime_coarse_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace shmchan::shm
