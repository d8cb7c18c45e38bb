// SPDX-License-Identifier: Apache-2.0
// The waiter: how a side of a channel or a gate waits for its peer. Written once here, used by the
// channel waits (channel.cpp), the gate's read and the gate's event-fd watcher (topology.cpp).
//
//  - Sleep and wake (layout.hpp, rule 5). The sleeper stores 1 to its `sleeping` word (seq_cst),
//    fences, re-checks its condition, and futex-waits while the word is 1; it takes the word back
//    (exchange to 0) however the sleep ended. The waker, after the release store of its position,
//    fences and loads the word: only if it reads 1 does it exchange the word to 0 and, if that
//    exchange took the 1, make the one futex_wake syscall. The two fences forbid both sides
//    missing each other (no lost wake); the exchanges make sure that each 1, one park, is woken
//    at most once (wake syscalls never exceed parks).
//  - Spin, then park (WaitStrategy): spin with the pause instruction, reading the clock every
//    64th spin; then park until woken, the deadline or the next backstop check (the periodic
//    liveness check that also finds whatever a lost notification would have hidden).
//  - Accounting (layout.hpp, rule 6): parks, the start of the current wait (waiting_since_ns) and
//    the time waited (idle_ns on a consumer, backpressured_ns on a producer).
//
// The atomic word and the futex are a seam, `Ops`: SystemFutex is the real one (shm/futex.hpp);
// tests/test_waiter.cpp passes one that interleaves the waker's and the sleeper's steps one by
// one. An Ops provides word(w) (an accessor with load, store and exchange taking a memory order,
// as std::atomic_ref), fence() (a seq_cst fence), wait(w, expected, timeout) and wake(w, count).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "shm/futex.hpp"
#include "shm/process.hpp"

namespace shmchan::detail {

inline constexpr std::uint64_t kWaitForever = std::numeric_limits<std::uint64_t>::max();

// The real seam: the word through std::atomic_ref, the shared futex of shm/futex.hpp.
struct SystemFutex {
    static std::atomic_ref<std::uint32_t> word(std::uint32_t& w) noexcept { return std::atomic_ref<std::uint32_t>(w); }
    static void fence() noexcept { std::atomic_thread_fence(std::memory_order_seq_cst); }
    static shm::FutexResult wait(std::uint32_t& w, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
        return shm::futex_wait(w, expected, timeout);
    }
    static void wake(std::uint32_t& w, int count) noexcept { shm::futex_wake(w, count); }
};

// ---- sleep and wake (rule 5) -------------------------------------------------------------------

// The waker's half: call it after the release store that the sleeper waits for. Returns whether
// it made the wake syscall (the caller counts it). With the peer awake it costs the fence and one
// relaxed load: the load needs no more, the fence orders it after our position store.
template <class Ops = SystemFutex>
inline bool wake_if_sleeping(layout::SharedU32& sleeping) noexcept {
    Ops::fence();
    if (Ops::word(sleeping).load(std::memory_order_relaxed) == 0) return false;
    // seq_cst exchange: of a sleeper's 1, only one waker (or the sleeper itself) takes it.
    if (Ops::word(sleeping).exchange(0u, std::memory_order_seq_cst) == 0) return false;
    Ops::wake(sleeping, 1);
    return true;
}

// Wakes every thread parked on `sleeping` whatever they wait for (a process stopping its own
// sleeper); they take their word back and re-check as after any wake.
template <class Ops = SystemFutex>
inline void wake_all(layout::SharedU32& sleeping) noexcept {
    Ops::word(sleeping).store(0u, std::memory_order_seq_cst);
    Ops::wake(sleeping, std::numeric_limits<int>::max());
}

// The sleeper's half, one park: arms the word, re-checks `ready`, and sleeps unless it holds,
// until woken or `until_ns` (monotonic), at most `max_sleep_ns` (0: no limit). Returns whether
// the re-check found `ready`; after a sleep the caller re-checks itself. The word is 0 on return.
// `interrupted`, if given, is set when the sleep ended because a signal handler ran (EINTR).
template <class Ops = SystemFutex, class Ready>
inline bool park(layout::SharedU32& sleeping, layout::SharedU64& parks, Ready&& ready, std::uint64_t until_ns,
                 std::uint64_t max_sleep_ns = 0, bool* interrupted = nullptr) {
    // seq_cst store, then the fence: the re-check below cannot be ordered before the 1 is
    // visible to a waker (the store-load pair that a release store would not order).
    Ops::word(sleeping).store(1u, std::memory_order_seq_cst);
    Ops::fence();
    layout::counter_add(parks, std::uint64_t{1});
    if (ready()) {
        Ops::word(sleeping).exchange(0u, std::memory_order_seq_cst);
        return true;
    }
    const std::uint64_t now = shm::monotonic_ns();
    if (max_sleep_ns != 0) until_ns = std::min(until_ns, now + max_sleep_ns);
    if (until_ns > now) {
        const std::uint64_t sleep_ns = std::min<std::uint64_t>(until_ns - now, std::numeric_limits<std::int64_t>::max());
        const shm::FutexResult slept =
            Ops::wait(sleeping, 1u, std::chrono::nanoseconds(static_cast<std::int64_t>(sleep_ns)));
        if (interrupted && slept == shm::FutexResult::interrupted) *interrupted = true;
    }
    // Woken, timed out or interrupted: take our word back (a waker may have done it). seq_cst:
    // a waker's exchange and ours take the 1 once between them.
    Ops::word(sleeping).exchange(0u, std::memory_order_seq_cst);
    return false;
}

// ---- spinning ------------------------------------------------------------------------------------

// Spins with the pause instruction until `ready()` holds (returns the spins made, >= 1), or until
// `stop(now, spins)`, asked at a clock reading every 64th spin, or `max_spins` (0: no limit) says
// to stop (returns 0).
template <class Ready, class Stop>
inline std::uint32_t spin(Ready&& ready, Stop&& stop, std::uint32_t max_spins = 0) {
    for (std::uint32_t spins = 1;; ++spins) {
        __builtin_ia32_pause();
        if (ready()) return spins;
        if ((spins & 63) == 0 && stop(shm::monotonic_ns(), spins)) return 0;
        if (spins == max_spins && max_spins != 0) return 0;
    }
}

// When the spin phase of a wait that began at `start` ends.
inline std::uint64_t spin_until(WaitStrategy strategy, std::uint64_t start, std::uint64_t spin_budget_ns) noexcept {
    if (strategy == WaitStrategy::spin) return kWaitForever;
    return strategy == WaitStrategy::hybrid ? start + spin_budget_ns : start;
}

// ---- a whole wait ----------------------------------------------------------------------------------

// One side's words of a wait (layout.hpp): its `sleeping` word and its counters.
struct WaitWords {
    layout::SharedU32& sleeping;
    layout::SharedU64& parks;
    layout::SharedU64& waiting_since_ns;
    layout::SharedU64& waited_ns;  // idle_ns of a consumer, backpressured_ns of a producer
};

struct WaitPlan {
    WaitStrategy strategy = WaitStrategy::hybrid;
    std::uint64_t spin_budget_ns = 0;
    std::uint64_t backstop_ns = 0;    // how often `backstop` runs (the liveness interval)
    std::uint64_t park_limit_ns = 0;  // longest single sleep; 0: until the deadline or backstop
    std::uint64_t first_check_ns = 0;  // when the first backstop is due (CLOCK_MONOTONIC); 0:
                                       // backstop_ns after the start. A caller that checked not
                                       // long ago passes its last check + backstop_ns, so that
                                       // back-to-back waits do not each start the interval anew.
};

// The hybrid strategy's spin budget as a handle learns it from its own waits. Spinning pays only
// while the peer runs and answers within the spin; when cores are scarce (the peer shares a core
// with us or with other work) a spin only holds a core the peer may need. glibc's adaptive
// mutexes and WebKit's ParkingLot learn their spin limits from history the same way:
//  - a wait whose spin ran out (it then parked) halves the budget;
//  - a wait that ended while spinning after t ns lets it grow to 2t, within the configured budget;
//  - a budget under kMinSpinNs is no spin at all (park at once), except that every kProbeEvery-th
//    such wait spins the configured budget once (a probe: if it runs out, nothing changes), so
//    that a machine that became free is noticed;
//  - a spin that lost the core for a scheduler slice (two clock readings of the spin loop at
//    least kPreemptedNs apart) shows that our own core is contended: another task wants it, and
//    every spin from now on spends the share of the core the scheduler gives us, after which it
//    runs the other task while our peer waits for us. Parking instead keeps that share for work,
//    and a woken sleeper is run promptly (the scheduler favours a task that slept over one that
//    ran). So no wait spins for kQuietNs after such a spin; then the budget is learnt anew.
// Its state is the handle's own memory: nothing shared, no cost outside a wait.
class SpinBudget {
public:
    static constexpr std::uint64_t kMinSpinNs = 1000;
    static constexpr std::uint32_t kProbeEvery = 16;
    static constexpr std::uint64_t kPreemptedNs = 500'000;   // under a slice of a CPU-bound task
    static constexpr std::uint64_t kQuietNs = 100'000'000;   // no spinning after a preempted spin

    // How long the wait starting at `now` (monotonic ns) spins, given the configured budget.
    std::uint64_t next(std::uint64_t configured, std::uint64_t now) noexcept {
        probing_ = false;
        if (now < quiet_until_) {
            last_ = 0;
            return 0;
        }
        std::uint64_t budget = learnt_ < configured ? learnt_ : configured;
        if (budget < kMinSpinNs) {
            budget = 0;
            if (++skipped_ >= kProbeEvery) {
                skipped_ = 0;
                budget = configured;
                probing_ = true;
            }
        }
        last_ = budget;
        return budget;
    }
    // The wait of the last next() spun its whole budget and parked. A probe that ran out leaves
    // the budget spent down (the next probe is kProbeEvery waits away).
    void spun_out() noexcept {
        if (last_ != 0 && !probing_) learnt_ = last_ / 2;
    }
    // The wait of the last next() ended while spinning, after `waited_ns`.
    void answered_after(std::uint64_t waited_ns, std::uint64_t configured) noexcept {
        const std::uint64_t wanted = 2 * waited_ns < configured ? 2 * waited_ns : configured;
        if (learnt_ < wanted) learnt_ = wanted;
        skipped_ = 0;
    }
    // The wait of the last next() lost its core while spinning, found at `now`: no spinning for
    // kQuietNs, then the budget is learnt anew.
    void preempted(std::uint64_t now) noexcept {
        quiet_until_ = now + kQuietNs;
        learnt_ = kWaitForever;
        skipped_ = 0;
    }
    std::uint64_t learnt() const noexcept { return learnt_; }

private:
    std::uint64_t learnt_ = kWaitForever;  // not learnt yet: the configured budget
    std::uint64_t quiet_until_ = 0;        // no spinning before this (monotonic ns)
    std::uint64_t last_ = 0;
    std::uint32_t skipped_ = 0;  // waits that did not spin since the last probe
    bool probing_ = false;       // the last next() was a probe
};

// What a handle keeps between its waits: the time of one spin, as last measured (a wait that ends
// while spinning is timed without reading the clock: 21 ns here, and the caller's data waits for
// it), and the hybrid strategy's learnt budget.
struct SpinRate {
    static constexpr std::uint64_t kMaxPlausibleNs = 1000;
    std::uint64_t ns_per_spin = 30;
    SpinBudget budget;
};

// Runs `attempt(eager)` until it returns something other than would_block: spinning, then parked
// (WaitPlan). `eager` is false while spinning, true after a sleep (an attempt may look lazily
// only while spinning, layout.hpp rule 2b). Every backstop_ns, and before the deadline, ends the
// wait with timed_out; `backstop()` runs and any status other than would_block ends the wait.
// A sleep that a signal handler interrupted (EINTR) ends the wait with interrupted, after one
// more attempt, so that a program can act on its signal (a handler that runs while the wait
// spins, at most the spin budget, is not seen: the wait goes on).
template <class Ops = SystemFutex, class Attempt, class Backstop>
Status spin_then_park(const WaitWords& words, const WaitPlan& plan, SpinRate& rate, std::uint64_t start,
                      std::uint64_t deadline, Attempt&& attempt, Backstop&& backstop) {
    std::uint64_t next_check = plan.first_check_ns != 0 ? plan.first_check_ns : start + plan.backstop_ns;
    const bool adaptive = plan.strategy == WaitStrategy::hybrid;
    const std::uint64_t spin_budget = adaptive ? rate.budget.next(plan.spin_budget_ns, start) : plan.spin_budget_ns;
    const std::uint64_t spin_end = spin_until(plan.strategy, start, spin_budget);
    layout::store_relaxed(words.waiting_since_ns, start);
    auto account = [&](Status result, std::uint64_t waited_ns) {
        layout::counter_add(words.waited_ns, waited_ns);
        layout::store_relaxed(words.waiting_since_ns, std::uint64_t{0});
        return result;
    };
    auto finish = [&](Status result) { return account(result, shm::monotonic_ns() - start); };
    // Deadline first, then the backstop.
    auto periodic = [&](std::uint64_t now) -> Status {
        if (now >= deadline) return Status::timed_out;
        if (now < next_check) return Status::would_block;
        next_check = now + plan.backstop_ns;
        return backstop();
    };

    // Spin phase. A wait that ends here is timed as the time at the last clock reading plus the
    // spins since at the last rate measured over 64 spins (windows with a preemption skipped); a
    // preemption after the last reading is not counted: at most 63 spins are estimated.
    Status status = Status::would_block;
    std::uint64_t last_clock = start;
    std::uint32_t spins_at_last_clock = 0;
    bool lost_core = false;
    const std::uint32_t spins = spin(
        [&] { return (status = attempt(false)) != Status::would_block; },
        [&](std::uint64_t now, std::uint32_t spun) {
            // A window in which we were preempted (a spin is tens of ns) says nothing about the
            // next spins: keep the last plausible figure.
            const std::uint64_t gap = now - last_clock;
            const std::uint64_t per_spin = gap / (spun - spins_at_last_clock);
            if (per_spin <= SpinRate::kMaxPlausibleNs) rate.ns_per_spin = std::max<std::uint64_t>(1, per_spin);
            // 64 spins take a few us: a gap of a scheduler slice is another task on our core.
            if (adaptive && gap >= SpinBudget::kPreemptedNs) {
                rate.budget.preempted(now);
                lost_core = true;
            }
            last_clock = now;
            spins_at_last_clock = spun;
            status = periodic(now);
            return status != Status::would_block || now >= spin_end || lost_core;
        },
        spin_end == start ? 1 : 0);  // park strategy: one look, no spinning
    if (spins != 0) {
        const std::uint64_t waited = last_clock - start + (spins - spins_at_last_clock) * rate.ns_per_spin;
        if (adaptive) rate.budget.answered_after(waited, plan.spin_budget_ns);
        return account(status, waited);
    }
    if (status != Status::would_block) return finish(status);
    if (adaptive && !lost_core) rate.budget.spun_out();

    // Park phase.
    auto ready = [&] { return (status = attempt(true)) != Status::would_block; };
    while (true) {
        bool interrupted = false;
        if (park<Ops>(words.sleeping, words.parks, ready, std::min(deadline, next_check), plan.park_limit_ns,
                      &interrupted)) {
            return finish(status);
        }
        if (ready()) return finish(status);
        if (interrupted) return finish(Status::interrupted);
        status = periodic(shm::monotonic_ns());
        if (status != Status::would_block) return finish(status);
    }
}

}  // namespace shmchan::detail
