// SPDX-License-Identifier: Apache-2.0
// Futex wait and wake on a 32-bit word in shared memory.
//
// We use the shared (not FUTEX_PRIVATE_FLAG) variant: the kernel keys the wait queue on the
// backing page of the mapping, so two processes that map the same file at different addresses
// wait on the same queue. The word is a plain aligned uint32_t that the callers otherwise touch
// only through std::atomic_ref (lock-free, asserted), which the kernel reads with a plain load.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace shmchan::shm {

static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

enum class FutexResult {
    woken,          // a wake (or a spurious return); the caller re-checks its condition
    value_changed,  // *word != expected when the kernel looked: no sleep happened
    timed_out,
    interrupted,    // EINTR: the caller re-checks its condition
};

// Sleeps while *word == expected, for at most `timeout` (a relative duration, >= 0).
FutexResult futex_wait(std::uint32_t& word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) noexcept;

// Wakes up to `count` waiters; returns how many were woken (or -1 on an error from the kernel).
int futex_wake(std::uint32_t& word, int count) noexcept;

}  // namespace shmchan::shm
