// SPDX-License-Identifier: Apache-2.0
// channels/detail/waiter.hpp: layout rule 5 under a controlled scheduler, then the real futex.
//
// The deterministic cases run the waiter's own code (detail::spin_then_park, detail::park,
// detail::wake_if_sleeping) with FakeFutex, under which every operation on a shared word, every
// fence and every futex call is one step. Two threads, the waker and the sleeper, stop before each
// step until the scheduler lets one of them take it; a depth-first search over these choices runs
// every interleaving. Memory is x86-TSO (the one target): a store waits in its thread's store
// buffer until the scheduler flushes it (a choice like any step), a load sees its own thread's
// buffer first, and a seq_cst store, an exchange, a fence and the futex calls wait until their
// thread's buffer is empty. Only what the other thread can see is a choice (a flush, a load, a
// read-modify-write, a futex call); a store into the buffer and a fence are not, which leaves the
// same interleavings of what each side sees, fewer times over. A sleep ends by a wake or, where a
// case allows, by a time-out the scheduler may choose at any moment. A run in which the waker is
// done, its stores are in memory and the sleeper still sleeps is a lost wake.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "channels/detail/waiter.hpp"

using shmchan::Status;
using shmchan::WaitStrategy;
using shmchan::shm::FutexResult;
namespace detail = shmchan::detail;
namespace L = shmchan::layout;

namespace {

constexpr std::uint64_t kHourNs = 3'600'000'000'000ull;

// ---- the controlled world --------------------------------------------------------------------

class World {
public:
    static constexpr int kThreads = 2;  // 0: the waker, 1: the sleeper

    World(std::vector<std::size_t> schedule, int max_timeouts)
        : schedule_(std::move(schedule)), max_timeouts_(max_timeouts) {}

    // Runs both bodies to the end, one step at a time as the schedule says (then the first choice).
    void run(const std::function<void()>& waker, const std::function<void()>& sleeper) {
        current() = this;
        std::thread threads[kThreads] = {std::thread([&] { body(0, waker); }), std::thread([&] { body(1, sleeper); })};
        {
            std::unique_lock lock(mutex_);
            while (true) {
                driver_.wait(lock, [&] { return settled(0) && settled(1); });
                if (phase_[0] == Phase::done && phase_[1] == Phase::done) break;
                std::vector<Choice> choices = enabled();
                if (phase_[1] == Phase::asleep && phase_[0] == Phase::done && buffers_[0].empty()) {
                    // The waker is done, its stores are in memory, and the sleeper sleeps: its
                    // wake was lost. End the sleep (a time-out, not a choice) to finish the run.
                    lost_wake_ = true;
                    end_sleep(1, Wake::timed_out);
                    continue;
                }
                if (choices.empty()) {  // cannot happen: only the sleeper sleeps
                    stuck_ = true;
                    end_sleep(1, Wake::timed_out);
                    continue;
                }
                const std::size_t depth = trail_.size();
                const std::size_t pick = depth < schedule_.size() ? schedule_[depth] : 0;
                trail_.emplace_back(pick, choices.size());
                apply(choices[std::min(pick, choices.size() - 1)]);
            }
        }
        for (auto& thread : threads) thread.join();
        current() = nullptr;
    }

    // What the threads call (FakeFutex): one step each, taken when the scheduler says.
    template <class Op>
    std::uint32_t step(Op&& op) {
        std::unique_lock lock(mutex_);
        wait_for_turn(lock);
        return op();
    }
    // Waits, without a choice, until the scheduler has flushed our buffer (x86: mfence).
    void fence() {
        std::unique_lock lock(mutex_);
        drained(lock);
    }
    // A store enters our buffer at once: the other thread sees it only at its flush.
    void store(std::uint32_t& word, std::uint32_t value, std::memory_order order) {
        {
            std::lock_guard lock(mutex_);
            buffers_[self()].emplace_back(&word, value);
        }
        if (order == std::memory_order_seq_cst) fence();  // x86: xchg
    }
    // Inside a step.
    std::uint32_t load(std::uint32_t& word) const {
        const auto& buffer = buffers_[self()];
        for (auto it = buffer.rbegin(); it != buffer.rend(); ++it) {
            if (it->first == &word) return it->second;
        }
        return word;
    }
    // A locked instruction: a step once our buffer is empty.
    template <class Modify>
    std::uint32_t read_modify_write(std::uint32_t& word, Modify&& modify) {
        std::unique_lock lock(mutex_);
        drained(lock);
        wait_for_turn(lock);
        std::uint32_t old = word;
        word = modify(old);
        return old;
    }

    FutexResult futex_wait(std::uint32_t& word, std::uint32_t expected) {
        std::unique_lock lock(mutex_);
        drained(lock);
        wait_for_turn(lock);
        if (word != expected) return FutexResult::value_changed;
        const int me = self();
        phase_[me] = Phase::asleep;
        sleeping_on_[me] = &word;
        driver_.notify_one();
        thread_[me].wait(lock, [&] { return wake_[me] != Wake::none; });
        Wake why = std::exchange(wake_[me], Wake::none);
        return why == Wake::woken ? FutexResult::woken : FutexResult::timed_out;
    }
    void futex_wake(std::uint32_t& word) {
        std::unique_lock lock(mutex_);
        drained(lock);
        wait_for_turn(lock);
        ++wake_calls_;
        for (int t = 0; t < kThreads; ++t) {
            if (phase_[t] == Phase::asleep && sleeping_on_[t] == &word) {
                end_sleep(t, Wake::woken);
                break;  // FakeFutex::wake is asked for one
            }
        }
    }

    const std::vector<std::pair<std::size_t, std::size_t>>& trail() const { return trail_; }
    bool lost_wake() const { return lost_wake_ || stuck_; }
    int wake_calls() const { return wake_calls_; }

    static World*& current() {
        static World* world = nullptr;
        return world;
    }

private:
    enum class Phase { running, at_step, at_fence, asleep, done };
    enum class Wake { none, woken, timed_out };
    struct Choice {
        enum Kind { step, flush, time_out } kind;
        int thread;
    };

    static int& self() {
        thread_local int index = -1;
        return index;
    }

    void body(int index, const std::function<void()>& run) {
        self() = index;
        run();
        std::lock_guard lock(mutex_);
        phase_[index] = Phase::done;
        driver_.notify_one();
    }
    // Not running: at a choice, waiting for its flushes, asleep or done.
    bool settled(int thread) const { return phase_[thread] != Phase::running; }
    void drained(std::unique_lock<std::mutex>& lock) {
        const int me = self();
        if (buffers_[me].empty()) return;
        phase_[me] = Phase::at_fence;
        driver_.notify_one();
        thread_[me].wait(lock, [&] { return buffers_[me].empty(); });
    }
    void wait_for_turn(std::unique_lock<std::mutex>& lock) {
        const int me = self();
        phase_[me] = Phase::at_step;
        driver_.notify_one();
        thread_[me].wait(lock, [&] { return granted_ == me; });
        granted_ = -1;
    }
    std::vector<Choice> enabled() const {
        std::vector<Choice> choices;
        for (int t = 0; t < kThreads; ++t) {
            if (phase_[t] == Phase::at_step) choices.push_back({Choice::step, t});
        }
        for (int t = 0; t < kThreads; ++t) {
            if (!buffers_[t].empty()) choices.push_back({Choice::flush, t});
        }
        for (int t = 0; t < kThreads; ++t) {
            if (phase_[t] == Phase::asleep && timeouts_ < max_timeouts_) choices.push_back({Choice::time_out, t});
        }
        return choices;
    }
    void apply(const Choice& choice) {
        switch (choice.kind) {
            case Choice::step:
                phase_[choice.thread] = Phase::running;
                granted_ = choice.thread;
                thread_[choice.thread].notify_one();
                break;
            case Choice::flush: {  // the oldest store of the buffer reaches memory
                auto& buffer = buffers_[choice.thread];
                *buffer.front().first = buffer.front().second;
                buffer.erase(buffer.begin());
                if (buffer.empty() && phase_[choice.thread] == Phase::at_fence) {
                    phase_[choice.thread] = Phase::running;  // its fence is done
                    thread_[choice.thread].notify_one();
                }
                break;
            }
            case Choice::time_out:
                ++timeouts_;
                end_sleep(choice.thread, Wake::timed_out);
                break;
        }
    }
    void end_sleep(int thread, Wake why) {
        wake_[thread] = why;
        phase_[thread] = Phase::running;
        thread_[thread].notify_one();
    }

    std::mutex mutex_;
    std::condition_variable driver_;              // the scheduler waits here
    std::condition_variable thread_[kThreads];     // each thread waits here
    Phase phase_[kThreads] = {Phase::running, Phase::running};
    int granted_ = -1;
    Wake wake_[kThreads] = {Wake::none, Wake::none};
    const std::uint32_t* sleeping_on_[kThreads] = {};
    std::vector<std::pair<std::uint32_t*, std::uint32_t>> buffers_[kThreads];
    std::vector<std::size_t> schedule_;
    std::vector<std::pair<std::size_t, std::size_t>> trail_;  // (taken, choices) per decision
    int max_timeouts_ = 0;
    int timeouts_ = 0;
    int wake_calls_ = 0;
    bool lost_wake_ = false;
    bool stuck_ = false;
};

// The waiter's seam over the world: each operation is a step.
struct FakeFutex {
    struct Word {
        std::uint32_t& word;
        std::uint32_t load(std::memory_order) const {
            return World::current()->step([&] { return World::current()->load(word); });
        }
        void store(std::uint32_t value, std::memory_order order) const { World::current()->store(word, value, order); }
        std::uint32_t exchange(std::uint32_t value, std::memory_order) const {
            return World::current()->read_modify_write(word, [&](std::uint32_t) { return value; });
        }
        std::uint32_t fetch_or(std::uint32_t bits, std::memory_order) const {
            return World::current()->read_modify_write(word, [&](std::uint32_t old) { return old | bits; });
        }
    };
    static Word word(std::uint32_t& w) { return Word{w}; }
    static void fence() { World::current()->fence(); }
    static FutexResult wait(std::uint32_t& w, std::uint32_t expected, std::chrono::nanoseconds) {
        return World::current()->futex_wait(w, expected);
    }
    static void wake(std::uint32_t& w, int) { World::current()->futex_wake(w); }
};

// Wakers under test: the waiter's, and two broken ones that show the search can fail.
using Waker = bool (*)(std::uint32_t&);
bool waiter_waker(std::uint32_t& sleeping) { return detail::wake_if_sleeping<FakeFutex>(sleeping); }
bool waker_without_fence(std::uint32_t& sleeping) {
    if (FakeFutex::word(sleeping).load(std::memory_order_relaxed) == 0) return false;
    if (FakeFutex::word(sleeping).exchange(0u, std::memory_order_seq_cst) == 0) return false;
    FakeFutex::wake(sleeping, 1);
    return true;
}
bool waker_without_exchange(std::uint32_t& sleeping) {
    FakeFutex::fence();
    if (FakeFutex::word(sleeping).load(std::memory_order_relaxed) == 0) return false;
    FakeFutex::wake(sleeping, 1);
    return true;
}

// What every interleaving of one scenario did.
struct Verdict {
    int runs = 0;
    int lost_wakes = 0;
    int excess_wakes = 0;   // runs with more wake syscalls than parks
    int other_faults = 0;   // a wrong status, a word left at 1, accounting left open, a miscount
    std::string first_fault;
};

std::string describe(const std::vector<std::pair<std::size_t, std::size_t>>& trail) {
    std::string text;
    for (auto& [taken, count] : trail) text += std::to_string(taken) + "/" + std::to_string(count) + " ";
    return text;
}

// Scenario state shared by the two threads of one run. Each field has one writer thread, or is
// touched only inside steps (under the world's lock); the driver reads them after the join.
struct Run {
    std::uint32_t position = 0;  // the waker's (channel) or the gate's ready bits
    std::uint32_t sleeping = 0;
    std::uint64_t parks = 0, waiting_since = 0, waited = 0;
    int wakes_reported = 0;
    Status result = Status::would_block;
};

// Explores every interleaving of `waker_body` and `sleeper_body` over a fresh Run each time.
Verdict explore(int max_timeouts, const std::function<void(Run&)>& waker_body,
                const std::function<void(Run&)>& sleeper_body) {
    Verdict verdict;
    std::vector<std::size_t> schedule;
    while (true) {
        Run run;
        World world(schedule, max_timeouts);
        world.run([&] { waker_body(run); }, [&] { sleeper_body(run); });
        ++verdict.runs;
        std::string fault;
        if (world.lost_wake()) {
            ++verdict.lost_wakes;
            fault = "lost wake";
        } else if (static_cast<std::uint64_t>(world.wake_calls()) > run.parks) {
            ++verdict.excess_wakes;
            fault = "wake syscalls exceed parks";
        } else if (run.result != Status::ok || run.sleeping != 0 || run.waiting_since != 0 ||
                   run.wakes_reported != world.wake_calls()) {
            ++verdict.other_faults;
            fault = "status, word, accounting or wake count wrong";
        }
        if (!fault.empty() && verdict.first_fault.empty()) verdict.first_fault = fault + " at " + describe(world.trail());
        // The next schedule: the deepest decision with a choice left, taken one further.
        auto trail = world.trail();
        while (!trail.empty() && trail.back().first + 1 >= trail.back().second) trail.pop_back();
        if (trail.empty()) return verdict;
        schedule.clear();
        for (auto& decision : trail) schedule.push_back(decision.first);
        ++schedule.back();
    }
}

// A channel: the waker publishes positions 1..target, waking after each; the sleeper waits in
// spin_then_park (park strategy: one look, then parks) for `target`.
Verdict explore_channel(Waker waker, std::uint32_t target, int max_timeouts) {
    return explore(
        max_timeouts,
        [=](Run& run) {
            for (std::uint32_t p = 1; p <= target; ++p) {
                FakeFutex::word(run.position).store(p, std::memory_order_release);
                if (waker(run.sleeping)) ++run.wakes_reported;
            }
        },
        [=](Run& run) {
            const detail::WaitWords words{run.sleeping, run.parks, run.waiting_since, run.waited};
            const detail::WaitPlan plan{WaitStrategy::park, 0, kHourNs, 0};
            detail::SpinRate rate;
            run.result = detail::spin_then_park<FakeFutex>(
                words, plan, rate, shmchan::shm::monotonic_ns(), detail::kWaitForever,
                [&](bool) {
                    return FakeFutex::word(run.position).load(std::memory_order_acquire) >= target ? Status::ok
                                                                                                 : Status::would_block;
                },
                [] { return Status::would_block; });
        });
}

// A gate: the waker sets bits 1, 2, .. (seq_cst fetch_or), waking after each; the sleeper takes
// the bits by exchange and parks (detail::park, as the gate's read and watcher) until it has all.
Verdict explore_gate(Waker waker, std::uint32_t channels, int max_timeouts) {
    const std::uint32_t all = (1u << channels) - 1;
    return explore(
        max_timeouts,
        [=](Run& run) {
            for (std::uint32_t bit = 1; bit <= all; bit <<= 1) {
                FakeFutex::word(run.position).fetch_or(bit, std::memory_order_seq_cst);
                if (waker(run.sleeping)) ++run.wakes_reported;
            }
        },
        [=](Run& run) {
            std::uint32_t taken = 0;
            auto pending = [&] { return FakeFutex::word(run.position).load(std::memory_order_seq_cst) != 0; };
            while (true) {
                if (pending()) taken |= FakeFutex::word(run.position).exchange(0u, std::memory_order_seq_cst);
                if (taken == all) break;
                detail::park<FakeFutex>(run.sleeping, run.parks, pending, shmchan::shm::monotonic_ns() + kHourNs);
            }
            run.result = Status::ok;
        });
}

void check_sound(const Verdict& verdict) {
    INFO(verdict.first_fault);
    CHECK(verdict.runs > 10);  // the search ran
    CHECK(verdict.lost_wakes == 0);
    CHECK(verdict.excess_wakes == 0);
    CHECK(verdict.other_faults == 0);
}

// ---- the real futex across two threads --------------------------------------------------------

std::uint32_t load_u32(std::uint32_t& word) { return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_acquire); }

// One side of a ping-pong: waits for the peer's count to reach `round`, publishes its own.
struct Side {
    std::uint32_t count = 0;
    std::uint32_t sleeping = 0;
    std::uint64_t parks = 0, waiting_since = 0, waited = 0, wakes = 0;
    detail::SpinRate rate;

    Status wait_for(std::uint32_t& peer_count, std::uint32_t round, const detail::WaitPlan& plan) {
        const detail::WaitWords words{sleeping, parks, waiting_since, waited};
        return detail::spin_then_park(
            words, plan, rate, shmchan::shm::monotonic_ns(), detail::kWaitForever,
            [&](bool) { return load_u32(peer_count) >= round ? Status::ok : Status::would_block; },
            [] { return Status::would_block; });
    }
    void publish(std::uint32_t round, std::uint32_t& peer_sleeping) {
        std::atomic_ref<std::uint32_t>(count).store(round, std::memory_order_release);
        if (detail::wake_if_sleeping(peer_sleeping)) ++wakes;
    }
};

}  // namespace

TEST_SUITE("waiter") {

TEST_CASE("every interleaving of a channel wait and one publish: no lost wake, one wake per park") {
    check_sound(explore_channel(waiter_waker, 1, 0));
}

// (Two publishes with a sleep that may time out are 31,450 interleavings, 10 s: left out.)
TEST_CASE("every interleaving of a channel wait and two publishes, or one with sleeps that time out") {
    check_sound(explore_channel(waiter_waker, 2, 0));
    check_sound(explore_channel(waiter_waker, 1, 2));
}

TEST_CASE("every interleaving of a gate's park and its notifications, with sleeps that time out") {
    check_sound(explore_gate(waiter_waker, 1, 0));
    check_sound(explore_gate(waiter_waker, 1, 1));
    check_sound(explore_gate(waiter_waker, 2, 0));
}

TEST_CASE("the search finds the lost wake of a waker without the fence") {
    Verdict verdict = explore_channel(waker_without_fence, 1, 0);
    CHECK(verdict.lost_wakes > 0);
}

TEST_CASE("the search finds the second wake of a waker without the exchange") {
    Verdict verdict = explore_channel(waker_without_exchange, 2, 0);
    CHECK(verdict.excess_wakes > 0);
}

TEST_CASE("a waker makes no syscall and writes nothing while the peer is awake") {
    std::uint32_t sleeping = 0;
    CHECK_FALSE(detail::wake_if_sleeping(sleeping));
    CHECK(sleeping == 0);
}

TEST_CASE("a park whose re-check succeeds does not sleep and leaves the word at 0") {
    std::uint32_t sleeping = 0;
    std::uint64_t parks = 0;
    CHECK(detail::park(sleeping, parks, [] { return true; }, detail::kWaitForever));
    CHECK(sleeping == 0);
    CHECK(parks == 1);
}

TEST_CASE("a park that nobody wakes times out and takes its word back") {
    std::uint32_t sleeping = 0;
    std::uint64_t parks = 0;
    CHECK_FALSE(detail::park(sleeping, parks, [] { return false; }, detail::kWaitForever, 1'000'000));
    CHECK(sleeping == 0);
    CHECK(parks == 1);
}

TEST_CASE("two threads ping-pong through the real futex: every round arrives, wakes never exceed parks") {
    for (WaitStrategy strategy : {WaitStrategy::park, WaitStrategy::hybrid, WaitStrategy::spin}) {
        CAPTURE(shmchan::to_string(strategy));
        const detail::WaitPlan plan{strategy, 20'000, kHourNs, 0};
        constexpr std::uint32_t kRounds = 300;
        Side ping, pong;
        std::vector<Status> pong_results;
        std::thread other([&] {
            for (std::uint32_t round = 1; round <= kRounds; ++round) {
                pong_results.push_back(pong.wait_for(ping.count, round, plan));
                pong.publish(round, ping.sleeping);
            }
        });
        std::vector<Status> ping_results;
        for (std::uint32_t round = 1; round <= kRounds; ++round) {
            ping.publish(round, pong.sleeping);
            ping_results.push_back(ping.wait_for(pong.count, round, plan));
        }
        other.join();
        CHECK(std::count(ping_results.begin(), ping_results.end(), Status::ok) == kRounds);
        CHECK(std::count(pong_results.begin(), pong_results.end(), Status::ok) == kRounds);
        CHECK(ping.wakes <= pong.parks);
        CHECK(pong.wakes <= ping.parks);
        CHECK(ping.sleeping == 0);
        CHECK(pong.sleeping == 0);
        CHECK(ping.waiting_since == 0);
        CHECK(pong.waiting_since == 0);
        if (strategy == WaitStrategy::spin) CHECK(ping.parks + pong.parks == 0);
    }
}

TEST_CASE("the backstop runs while parked and its status ends the wait; a deadline ends it with timed_out") {
    std::uint32_t sleeping = 0;
    std::uint64_t parks = 0, waiting_since = 0, waited = 0;
    const detail::WaitWords words{sleeping, parks, waiting_since, waited};
    detail::SpinRate rate;
    int backstops = 0;
    auto never = [](bool) { return Status::would_block; };
    const detail::WaitPlan plan{WaitStrategy::park, 0, 1'000'000, 0};
    Status status = detail::spin_then_park(words, plan, rate, shmchan::shm::monotonic_ns(), detail::kWaitForever, never,
                                           [&] { return ++backstops == 3 ? Status::peer_died : Status::would_block; });
    CHECK(status == Status::peer_died);
    CHECK(backstops == 3);
    CHECK(parks >= 3);
    CHECK(sleeping == 0);
    CHECK(waiting_since == 0);
    CHECK(waited > 0);

    const std::uint64_t start = shmchan::shm::monotonic_ns();
    status = detail::spin_then_park(words, plan, rate, start, start + 2'000'000, never, [] { return Status::would_block; });
    CHECK(status == Status::timed_out);
    CHECK(shmchan::shm::monotonic_ns() >= start + 2'000'000);
    CHECK(sleeping == 0);
}

TEST_CASE("the hybrid budget halves when spins run out, parks at once below 1 us, probes, grows back") {
    detail::SpinBudget budget;
    constexpr std::uint64_t kConfigured = 50'000;
    CHECK(budget.next(kConfigured, 0) == kConfigured);  // nothing learnt: the configured budget
    budget.spun_out();
    CHECK(budget.next(kConfigured, 0) == kConfigured / 2);
    budget.spun_out();
    CHECK(budget.next(kConfigured, 0) == kConfigured / 4);
    // Six spins out: 50 us / 64 = 781 ns, under the minimum: no spin at all from then on.
    for (int i = 0; i < 4; ++i) {
        budget.spun_out();
        budget.next(kConfigured, 0);
    }
    budget.spun_out();
    int parked_at_once = 0;
    std::uint64_t probe = 0;
    for (std::uint32_t i = 0; i < detail::SpinBudget::kProbeEvery; ++i) {
        const std::uint64_t next = budget.next(kConfigured, 0);
        if (next == 0) ++parked_at_once;
        else probe = next;
        budget.spun_out();  // a wait that does not spin leaves the budget as it is
    }
    CHECK(parked_at_once == detail::SpinBudget::kProbeEvery - 1);
    CHECK(probe == kConfigured);  // every kProbeEvery-th wait spins the whole budget once
    // A probe that is answered after 3 us: the budget grows to 6 us, and spins again.
    budget.next(kConfigured, 0);
    budget.answered_after(3'000, kConfigured);
    CHECK(budget.learnt() == 6'000);
    CHECK(budget.next(kConfigured, 0) == 6'000);
    // Never past the configured budget, however long the answer took.
    budget.answered_after(40'000, kConfigured);
    CHECK(budget.next(kConfigured, 0) == kConfigured);
    // A smaller configured budget (a handle re-configured) bounds the learnt one.
    CHECK(budget.next(10'000, 0) == 10'000);
}

TEST_CASE("a spin that lost its core stops spinning for the quiet time, probes included, then learns anew") {
    detail::SpinBudget budget;
    constexpr std::uint64_t kConfigured = 50'000;
    constexpr std::uint64_t kNow = 5'000'000'000;
    budget.next(kConfigured, kNow);
    budget.answered_after(3'000, kConfigured);
    budget.preempted(kNow);
    int spun = 0;
    for (std::uint32_t i = 0; i < 4 * detail::SpinBudget::kProbeEvery; ++i) {
        if (budget.next(kConfigured, kNow + i * 1'000'000ull) != 0) ++spun;  // one wait per ms
        budget.spun_out();
    }
    CHECK(spun == 0);
    CHECK(budget.next(kConfigured, kNow + detail::SpinBudget::kQuietNs - 1) == 0);
    CHECK(budget.next(kConfigured, kNow + detail::SpinBudget::kQuietNs) == kConfigured);
}

TEST_CASE("hybrid waits that never end while spinning stop spinning; spin and park do not adapt") {
    std::uint32_t sleeping = 0;
    std::uint64_t parks = 0, waiting_since = 0, waited = 0;
    const detail::WaitWords words{sleeping, parks, waiting_since, waited};
    auto never = [](bool) { return Status::would_block; };
    // Each wait: a 20 us budget, a 2 ms deadline; the attempt never succeeds, so each spin runs out.
    auto timed_wait = [&](detail::SpinRate& rate, WaitStrategy strategy) {
        const detail::WaitPlan plan{strategy, 20'000, 1'000'000'000, 0};
        const std::uint64_t start = shmchan::shm::monotonic_ns();
        return detail::spin_then_park(words, plan, rate, start, start + 2'000'000, never, [] { return Status::would_block; });
    };
    detail::SpinRate hybrid;
    for (int i = 0; i < 8; ++i) CHECK(timed_wait(hybrid, WaitStrategy::hybrid) == Status::timed_out);
    CHECK(hybrid.budget.learnt() < detail::SpinBudget::kMinSpinNs);
    CHECK(hybrid.budget.next(20'000, shmchan::shm::monotonic_ns()) == 0);

    detail::SpinRate park;
    CHECK(timed_wait(park, WaitStrategy::park) == Status::timed_out);
    CHECK(park.budget.learnt() == detail::kWaitForever);
}

}  // TEST_SUITE
