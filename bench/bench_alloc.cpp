// SPDX-License-Identifier: Apache-2.0
// shm-bench: counts every operator new of the program (shmchan's hot path must make none; the
// bench reports the calls made inside each timed loop). Its own translation unit, so that no
// caller inlines the replacement.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "bench/bench_common.hpp"

namespace {
std::atomic<std::uint64_t> g_allocations{0};

void* counted(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
}  // namespace

std::uint64_t bench::allocation_count() { return g_allocations.load(std::memory_order_relaxed); }

void* operator new(std::size_t n) { return counted(n); }
void* operator new[](std::size_t n) { return counted(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
