// SPDX-License-Identifier: Apache-2.0
#include "shm/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace shmchan::shm {

FutexResult futex_wait(std::uint32_t& word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) noexcept {
    if (timeout.count() < 0) timeout = std::chrono::nanoseconds(0);
    timespec relative{};
    relative.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    relative.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    // FUTEX_WAIT takes a relative timeout (CLOCK_MONOTONIC).
    long rc = ::syscall(SYS_futex, &word, FUTEX_WAIT, expected,
                        &relative, nullptr, 0);
    if (rc == 0) return FutexResult::woken;
    switch (errno) {
        case EAGAIN: return FutexResult::value_changed;
        case ETIMEDOUT: return FutexResult::timed_out;
        case EINTR: return FutexResult::interrupted;
        default: return FutexResult::woken;  // EFAULT/EINVAL cannot happen on a mapped word
    }
}

int futex_wake(std::uint32_t& word, int count) noexcept {
    long rc = ::syscall(SYS_futex, &word, FUTEX_WAKE, count,
                        nullptr, nullptr, 0);
    return static_cast<int>(rc);
}

}  // namespace shmchan::shm
