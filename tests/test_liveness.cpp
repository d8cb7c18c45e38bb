// SPDX-License-Identifier: Apache-2.0
// Peer liveness: a side waiting on a peer that dies (SIGKILL, zombie, a pid that was reused)
// gets peer_died within a generous deadline, after everything published before the death; a
// side that never had a peer just waits; a replacement peer may attach.
//
// Every handle lives in a child that attached after the fork (a forked child would otherwise
// inherit the parent's descriptor, and with it the liveness lock). The deadlines are generous so
// that sanitizer builds pass; the delays themselves are measured and reported, not asserted.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "shm/process.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using shmchan::ChannelOptions;
using shmchan::Consumer;
using shmchan::Producer;
using shmchan::ReadableSegment;
using shmchan::Status;
using shmchan::WritableSegment;
namespace test = shmchan::test;

namespace {

constexpr auto kDeadline = 10s;  // the assertion bound for peer_died (the target is 1 s)

struct Shared {
    std::atomic<int> producer_ready{0};   // attached (and published what it had to)
    std::atomic<int> consumer_ready{0};
    std::atomic<int> waiting{0};          // the waiting side is about to block
    std::atomic<int> status{-1};          // what the blocked call returned
    std::atomic<std::int64_t> returned_ns{0};
    std::atomic<int> stage{0};
    std::atomic<int> read_ok{0};
};

int publish_pattern(Producer& producer, std::uint64_t first, std::uint64_t count) {
    for (std::uint64_t i = first; i < first + count; ++i) {
        WritableSegment out;
        CHILD_EXPECT(producer.acquire(out) == Status::ok);
        CHILD_EXPECT(out.sequence == i);
        test::fill_segment(out.payload, i);
        CHILD_EXPECT(producer.publish(producer.payload_capacity()) == Status::ok);
    }
    return 0;
}

int read_pattern(Consumer& consumer, std::uint64_t first, std::uint64_t count, std::atomic<int>* read_ok = nullptr) {
    for (std::uint64_t i = first; i < first + count; ++i) {
        ReadableSegment in;
        Status status = consumer.read_for(in, 30s);
        if (status != Status::ok) std::fprintf(stderr, "read %llu: %s\n", (unsigned long long)i, shmchan::to_string(status));
        CHILD_EXPECT(status == Status::ok);
        CHILD_EXPECT(in.sequence == i);
        CHILD_EXPECT(test::check_segment(in.payload, i, consumer.payload_capacity()).empty());
        CHILD_EXPECT(consumer.release() == Status::ok);
        if (read_ok) read_ok->fetch_add(1);
    }
    return 0;
}

std::int64_t ms(std::int64_t ns) { return ns / 1000000; }

// CPU time (user + system) of process `pid` so far, in clock ticks, from /proc/PID/stat.
std::uint64_t cpu_ticks(pid_t pid) {
    const std::string stat = test::read_whole_file("/proc/" + std::to_string(pid) + "/stat");
    const std::size_t end_of_name = stat.rfind(')');
    if (end_of_name == std::string::npos) return 0;
    std::istringstream fields(stat.substr(end_of_name + 2));
    std::string field;
    std::uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return utime + stime;
}

}  // namespace

TEST_SUITE("liveness") {

TEST_CASE("producer SIGKILLed while the consumer waits in read(): peer_died, after every published segment") {
    const std::string name = test::unique_name("pkill");
    ChannelOptions options = test::geometry(4096, 8);
    test::SharedBlock<Shared> shared;
    test::Child producer_process([&] {
        auto producer = Producer::attach(name, options);
        CHILD_EXPECT(publish_pattern(producer, 0, 5) == 0);
        shared->producer_ready.store(1);
        ::pause();
        return 0;
    });
    test::Child consumer_process([&] {
        CHILD_EXPECT(test::wait_for_flag(shared->producer_ready, 1));
        auto consumer = Consumer::attach(name, options);
        CHILD_EXPECT(read_pattern(consumer, 0, 5, &shared->read_ok) == 0);
        CHILD_EXPECT(consumer.producer_alive());
        shared->waiting.store(1);
        ReadableSegment in;
        Status status = consumer.read(in);  // the plain, unbounded call
        shared->returned_ns.store(test::now_ns());
        shared->status.store(static_cast<int>(status));
        CHILD_EXPECT(status == Status::peer_died);
        CHILD_EXPECT(!consumer.producer_alive());
        // Reported again at once by waits while no new producer attached (a try_read that does
        // not wait may say would_block).
        Status again = consumer.try_read(in);
        if (again != Status::peer_died && again != Status::would_block) {
            std::fprintf(stderr, "try_read after peer_died: %s\n", shmchan::to_string(again));
        }
        CHILD_EXPECT(again == Status::peer_died || again == Status::would_block);
        again = consumer.read_for(in, 5s);
        if (again != Status::peer_died) std::fprintf(stderr, "read_for after peer_died: %s\n", shmchan::to_string(again));
        CHILD_EXPECT(again == Status::peer_died);
        again = consumer.read(in);
        if (again != Status::peer_died) std::fprintf(stderr, "read after peer_died: %s\n", shmchan::to_string(again));
        CHILD_EXPECT(again == Status::peer_died);
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->waiting, 1));
    // Kill it while the consumer is really blocked (asleep, with the default hybrid strategy).
    CHECK(test::eventually([&] { return shmchan::inspect(name).consumer.sleeping; }, 10s));
    std::int64_t killed_ns = test::now_ns();
    producer_process.kill();
    int exit_code = consumer_process.exit_code(kDeadline);
    CHECK_MESSAGE(exit_code == 0, "consumer exit " << exit_code << " (-1: still blocked after 10 s)");
    CHECK(shared->read_ok.load() == 5);
    CHECK(shared->status.load() == static_cast<int>(Status::peer_died));
    if (shared->returned_ns.load() != 0) {
        std::int64_t delay = shared->returned_ns.load() - killed_ns;
        CHECK(delay < std::chrono::duration_cast<std::chrono::nanoseconds>(kDeadline).count());
        MESSAGE("peer_died reached the blocked consumer " << ms(delay) << " ms after SIGKILL");
    }
    auto info = shmchan::inspect(name);
    CHECK_FALSE(info.producer.alive);
    CHECK_FALSE(info.end_of_stream);
}

TEST_CASE("segments published before the producer's death are read before peer_died") {
    const std::string name = test::unique_name("pkill-backlog");
    ChannelOptions options = test::geometry(4096, 8);
    test::SharedBlock<Shared> shared;
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name, options);
        shared->consumer_ready.store(1);
        CHILD_EXPECT(test::wait_for_flag(shared->stage, 1));  // the producer is dead by now
        CHILD_EXPECT(read_pattern(consumer, 0, 6, &shared->read_ok) == 0);
        ReadableSegment in;
        Status status = consumer.read_for(in, 30s);
        shared->status.store(static_cast<int>(status));
        CHILD_EXPECT(status == Status::peer_died);
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->consumer_ready, 1));
    test::Child producer_process([&] {
        auto producer = Producer::attach(name, options);
        CHILD_EXPECT(publish_pattern(producer, 0, 6) == 0);
        // A seventh segment is filled and committed but never published.
        WritableSegment out;
        CHILD_EXPECT(producer.acquire(out) == Status::ok);
        test::fill_segment(out.payload, 6);
        shared->producer_ready.store(1);
        ::pause();
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->producer_ready, 1));
    producer_process.kill();
    REQUIRE(producer_process.wait(30s).has_value());
    shared->stage.store(1);
    CHECK(consumer_process.exit_code(60s) == 0);
    CHECK(shared->read_ok.load() == 6);
    CHECK(shared->status.load() == static_cast<int>(Status::peer_died));
}

TEST_CASE("consumer SIGKILLed while the producer waits in acquire() on a full ring: peer_died") {
    const std::string name = test::unique_name("ckill");
    const std::uint32_t kCount = 4;
    ChannelOptions options = test::geometry(4096, kCount);
    test::SharedBlock<Shared> shared;
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name, options);
        // Reads one segment and keeps it unreleased, then stops reading.
        shared->consumer_ready.store(1);
        ReadableSegment in;
        CHILD_EXPECT(consumer.read_for(in, 30s) == Status::ok);
        shared->read_ok.store(1);
        ::pause();
        return 0;
    });
    test::Child producer_process([&] {
        CHILD_EXPECT(test::wait_for_flag(shared->consumer_ready, 1));
        auto producer = Producer::attach(name, options);
        CHILD_EXPECT(publish_pattern(producer, 0, kCount) == 0);
        CHILD_EXPECT(producer.consumer_alive());
        shared->waiting.store(1);
        WritableSegment out;
        Status status = producer.acquire(out);  // the ring is full
        shared->returned_ns.store(test::now_ns());
        shared->status.store(static_cast<int>(status));
        CHILD_EXPECT(status == Status::peer_died);
        CHILD_EXPECT(!producer.consumer_alive());
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->waiting, 1));
    REQUIRE(test::wait_for_flag(shared->read_ok, 1));
    CHECK(test::eventually([&] { return shmchan::inspect(name).producer.sleeping; }, 10s));
    auto before = shmchan::inspect(name);
    CHECK(before.published - before.released == kCount);
    std::int64_t killed_ns = test::now_ns();
    consumer_process.kill();
    int exit_code = producer_process.exit_code(kDeadline);
    CHECK_MESSAGE(exit_code == 0, "producer exit " << exit_code << " (-1: still blocked after 10 s)");
    CHECK(shared->status.load() == static_cast<int>(Status::peer_died));
    if (shared->returned_ns.load() != 0) {
        std::int64_t delay = shared->returned_ns.load() - killed_ns;
        CHECK(delay < std::chrono::duration_cast<std::chrono::nanoseconds>(kDeadline).count());
        MESSAGE("peer_died reached the blocked producer " << ms(delay) << " ms after SIGKILL");
    }
}

TEST_CASE("a side that never had a peer waits: timed_out, not peer_died") {
    {
        const std::string name = test::unique_name("lonely-c");
        auto consumer = Consumer::attach(name, test::geometry(4096, 2));
        ReadableSegment in;
        CHECK(consumer.try_read(in) == Status::would_block);
        // Longer than the liveness interval (100 ms): the backstop fires and must not invent a death.
        CHECK(consumer.read_for(in, 350ms) == Status::timed_out);
        CHECK_FALSE(consumer.producer_alive());
    }
    {
        const std::string name = test::unique_name("lonely-p");
        auto producer = Producer::attach(name, test::geometry(4096, 2));
        WritableSegment out;
        for (int i = 0; i < 2; ++i) {
            REQUIRE(producer.try_acquire(out) == Status::ok);
            REQUIRE(producer.publish(0) == Status::ok);
        }
        CHECK(producer.try_acquire(out) == Status::would_block);
        CHECK(producer.acquire_for(out, 350ms) == Status::timed_out);
        CHECK_FALSE(producer.consumer_alive());
    }
}

TEST_CASE("a replacement producer attaches after peer_died and the consumer continues") {
    const std::string name = test::unique_name("replace");
    ChannelOptions options = test::geometry(4096, 4);
    test::SharedBlock<Shared> shared;
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name, options);
        shared->consumer_ready.store(1);
        CHILD_EXPECT(read_pattern(consumer, 0, 10) == 0);
        ReadableSegment in;
        Status status = consumer.read_for(in, 30s);
        CHILD_EXPECT(status == Status::peer_died);
        shared->stage.store(1);  // the parent may now start the replacement
        CHILD_EXPECT(test::wait_for_flag(shared->producer_ready, 2));
        CHILD_EXPECT(read_pattern(consumer, 10, 10) == 0);  // the stream continues where it was
        CHILD_EXPECT(consumer.read_for(in, 30s) == Status::end_of_stream);
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->consumer_ready, 1));
    {
        test::Child first([&] {
            auto producer = Producer::attach(name, options);
            CHILD_EXPECT(publish_pattern(producer, 0, 10) == 0);
            shared->producer_ready.store(1);
            ::pause();
            return 0;
        });
        REQUIRE(test::wait_for_flag(shared->producer_ready, 1));
        // Let the consumer drain what it can before the death (it blocks when the ring is full).
        first.kill();
        REQUIRE(first.wait(30s).has_value());
    }
    // Note: segments 0..9 were published only if the consumer kept up; publish_pattern blocks on
    // a full ring until it does, and producer_ready is set after all 10.
    REQUIRE(test::wait_for_flag(shared->stage, 1, 60s));
    test::Child second([&] {
        auto producer = Producer::attach(name, options);
        auto info = producer.info();
        CHILD_EXPECT(info.published == 10);
        CHILD_EXPECT(info.producer.attach_count == 2);
        shared->producer_ready.store(2);
        CHILD_EXPECT(publish_pattern(producer, 10, 10) == 0);
        CHILD_EXPECT(producer.end_stream() == Status::ok);
        return 0;
    });
    CHECK(second.exit_code(60s) == 0);
    CHECK(consumer_process.exit_code(60s) == 0);
}

TEST_CASE("a zombie producer is dead") {
    const std::string name = test::unique_name("zombie");
    ChannelOptions options = test::geometry(4096, 4);
    test::SharedBlock<Shared> shared;
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name, options);
        shared->consumer_ready.store(1);
        CHILD_EXPECT(read_pattern(consumer, 0, 2) == 0);
        ReadableSegment in;
        Status status = consumer.read_for(in, 30s);
        shared->status.store(static_cast<int>(status));
        CHILD_EXPECT(status == Status::peer_died);
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->consumer_ready, 1));
    test::Child producer_process([&] {
        auto producer = Producer::attach(name, options);
        CHILD_EXPECT(publish_pattern(producer, 0, 2) == 0);
        std::fflush(nullptr);
        ::_exit(0);  // no detach: the handle is never destroyed
        return 0;
    });
    // Wait for the exit without reaping: the producer stays a zombie while the consumer decides.
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, producer_process.pid(), &info, WEXITED | WNOWAIT) == 0);
    CHECK(consumer_process.exit_code(kDeadline + 30s) == 0);
    CHECK(shared->status.load() == static_cast<int>(Status::peer_died));
    CHECK_FALSE(shmchan::inspect(name).producer.alive);
    CHECK(producer_process.exit_code(10s) == 0);
}

TEST_CASE("a producer record naming a live process with another start time is not alive (pid reuse)") {
    const std::string name = test::unique_name("pidreuse");
    ChannelOptions options = test::geometry(4096, 4);
    test::SharedBlock<Shared> shared;
    test::Child producer_process([&] {
        auto producer = Producer::attach(name, options);
        CHILD_EXPECT(publish_pattern(producer, 0, 2) == 0);
        shared->producer_ready.store(1);
        ::pause();
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->producer_ready, 1));
    producer_process.kill();
    REQUIRE(producer_process.wait(30s).has_value());
    // Make the record name a live process (this test process) with another start time, as if the
    // dead producer's pid had been reused; no lock is held for it.
    const auto self = shmchan::shm::self_identity();
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke32(test::offsets::producer_pid, static_cast<std::uint32_t>(self.pid));
        file.poke64(test::offsets::producer_start_time, self.start_time + 12345);
        CHECK(file.peek32(test::offsets::producer_attached) == 1);  // it never detached
    }
    auto info = shmchan::inspect(name);
    CHECK(info.producer.pid == self.pid);
    CHECK_FALSE(info.producer.alive);
    // The same with this process's true start time (the pid is alive and is ours): still no lock,
    // so still not alive: liveness is the lock, not the pid.
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke64(test::offsets::producer_start_time, self.start_time);
    }
    CHECK_FALSE(shmchan::inspect(name).producer.alive);
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke64(test::offsets::producer_start_time, self.start_time + 12345);
    }
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name, options);
        CHILD_EXPECT(!consumer.producer_alive());
        CHILD_EXPECT(read_pattern(consumer, 0, 2) == 0);
        ReadableSegment in;
        Status status = consumer.read_for(in, 30s);
        shared->status.store(static_cast<int>(status));
        CHILD_EXPECT(status == Status::peer_died);
        return 0;
    });
    CHECK(consumer_process.exit_code(kDeadline + 30s) == 0);
    CHECK(shared->status.load() == static_cast<int>(Status::peer_died));
}

TEST_CASE("a hybrid consumer whose producer is stopped (SIGSTOP) parks: it costs no CPU, then reads on") {
    const std::string name = test::unique_name("stopped");
    const ChannelOptions options = test::geometry(4096, 4);  // the default wait: hybrid
    test::SharedBlock<Shared> shared;
    // The producer publishes until the test says stop (stage 1), then ends the stream; the
    // consumer checks every segment until the end.
    test::Child producer([&] {
        auto p = Producer::attach(name, options);
        std::uint64_t i = 0;
        while (shared->stage.load() == 0) CHILD_EXPECT(publish_pattern(p, i++, 1) == 0);
        CHILD_EXPECT(p.end_stream() == Status::ok);
        return 0;
    });
    test::Child consumer([&] {
        auto c = Consumer::attach(name, options);
        for (std::uint64_t i = 0;; ++i) {
            ReadableSegment in;
            const Status status = c.read_for(in, 30s);
            if (status == Status::end_of_stream) return 0;
            CHILD_EXPECT(status == Status::ok);
            CHILD_EXPECT(in.sequence == i);
            CHILD_EXPECT(test::check_segment(in.payload, i, c.payload_capacity()).empty());
            CHILD_EXPECT(c.release() == Status::ok);
            shared->read_ok.fetch_add(1);
        }
    });
    REQUIRE(test::eventually([&] { return shared->read_ok.load() >= 100; }, kDeadline));
    REQUIRE(::kill(producer.pid(), SIGSTOP) == 0);
    // The consumer drains what was published, then waits for a producer that cannot run.
    std::this_thread::sleep_for(100ms);
    const std::uint64_t before = cpu_ticks(consumer.pid());
    std::this_thread::sleep_for(1s);  // the window over which its CPU time is measured
    const std::uint64_t used = cpu_ticks(consumer.pid()) - before;
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    MESSAGE("consumer CPU while its producer was stopped: " << used << " of " << ticks_per_second << " ticks");
    // A waiter that spun through the stop would use the whole window; a parked one wakes only
    // for its liveness backstop (every 100 ms).
    CHECK(used * 4 < static_cast<std::uint64_t>(ticks_per_second));
    REQUIRE(::kill(producer.pid(), SIGCONT) == 0);
    shared->stage.store(1);
    CHECK(producer.exit_code() == 0);
    CHECK(consumer.exit_code() == 0);
}

TEST_CASE("a hybrid waiter that loses its core while it spins parks rather than spinning on") {
    const std::string name = test::unique_name("lost-core");
    ChannelOptions options = test::geometry(4096, 4);
    options.spin_budget = 30s;  // a spin that nothing but a lost core would cut short
    test::Child consumer([&] {
        auto c = Consumer::attach(name, options);
        ReadableSegment in;
        CHILD_EXPECT(c.read_for(in, 60s) == Status::ok);
        return 0;
    });
    // It waits, spinning. Stopped for longer than a slice, it must park once it runs again. (On a
    // loaded machine its spin may lose the core by itself first: a park as well. Spinning through,
    // as the configured budget allows, would not park for 30 s.)
    REQUIRE(test::eventually([&] {
        try {
            return shmchan::inspect(name).consumer_counters.waiting_since_ns != 0;
        } catch (const shmchan::Error&) {
            return false;  // not created yet
        }
    }, 10s));
    if (shmchan::inspect(name).consumer_counters.parks == 0) {
        REQUIRE(::kill(consumer.pid(), SIGSTOP) == 0);
        REQUIRE(test::eventually([&] {
            const std::string stat = test::read_whole_file("/proc/" + std::to_string(consumer.pid()) + "/stat");
            const std::size_t end_of_name = stat.rfind(')');
            return end_of_name != std::string::npos && stat.compare(end_of_name + 2, 1, "T") == 0;
        }, 10s));
        // Stopped for at least 2 ms: it cannot run meanwhile, so its clock sees a gap that long.
        const auto stopped_at = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - stopped_at < 2ms) std::this_thread::sleep_for(1ms);
        REQUIRE(::kill(consumer.pid(), SIGCONT) == 0);
    }
    CHECK(test::eventually([&] { return shmchan::inspect(name).consumer_counters.parks >= 1; }, 10s));
    auto p = Producer::attach(name, options);
    WritableSegment out;
    REQUIRE(p.acquire_for(out, 10s) == Status::ok);
    REQUIRE(p.publish(8) == Status::ok);
    CHECK(consumer.exit_code() == 0);
}

}  // TEST_SUITE
