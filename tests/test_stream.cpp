// SPDX-License-Identifier: Apache-2.0
// Streams of self-checking segments: between processes, between threads (what TSan checks), with a
// slow consumer, and with each wait strategy and its wake counters.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using shmchan::ChannelOptions;
using shmchan::Consumer;
using shmchan::Producer;
using shmchan::ReadableSegment;
using shmchan::Status;
using shmchan::WaitStrategy;
using shmchan::WritableSegment;
namespace test = shmchan::test;

namespace {

constexpr std::uint64_t kGiB = 1ull << 30;

// Publishes `segments` full segments of the pattern, then ends the stream. Returns an empty
// string or what went wrong.
std::string run_producer(Producer& producer, std::uint64_t segments) {
    for (std::uint64_t i = 0; i < segments; ++i) {
        WritableSegment out;
        Status status = producer.acquire(out);
        if (status != Status::ok) {
            return "acquire " + std::to_string(i) + ": " + shmchan::to_string(status) + " " + producer.last_error();
        }
        if (out.sequence != i) return "acquire " + std::to_string(i) + ": sequence " + std::to_string(out.sequence);
        if (out.payload.size() != producer.payload_capacity()) return "payload size";
        test::fill_segment(out.payload, i);
        status = producer.publish(static_cast<std::uint32_t>(out.payload.size()));
        if (status != Status::ok) return "publish " + std::to_string(i) + ": " + shmchan::to_string(status);
    }
    Status status = producer.end_stream();
    if (status != Status::ok) return std::string("end_stream: ") + shmchan::to_string(status);
    return {};
}

// Reads and checks `segments` segments in order, then expects the end of the stream.
std::string run_consumer(Consumer& consumer, std::uint64_t segments) {
    const std::size_t capacity = consumer.payload_capacity();
    for (std::uint64_t i = 0; i < segments; ++i) {
        ReadableSegment in;
        Status status = consumer.read(in);
        if (status != Status::ok) {
            return "read " + std::to_string(i) + ": " + shmchan::to_string(status) + " " + consumer.last_error();
        }
        if (in.sequence != i) return "read " + std::to_string(i) + ": segment sequence " + std::to_string(in.sequence);
        std::string problem = test::check_segment(in.payload, i, capacity);
        if (!problem.empty()) return problem;
        status = consumer.release();
        if (status != Status::ok) return std::string("release: ") + shmchan::to_string(status);
    }
    ReadableSegment in;
    Status status = consumer.read(in);
    if (status != Status::end_of_stream) return std::string("after the last segment: ") + shmchan::to_string(status);
    return {};
}

double gib_per_s(std::uint64_t bytes, std::chrono::steady_clock::duration elapsed) {
    return static_cast<double>(bytes) / kGiB / std::chrono::duration<double>(elapsed).count();
}

}  // namespace

TEST_SUITE("stream") {

TEST_CASE("1 GiB of checked segments from a producer process to a consumer process") {
    const std::uint64_t bytes = kGiB / test::kScale;
    const std::uint64_t segments = bytes / shmchan::layout::kDefaultSegmentSize;
    const std::string name = test::unique_name("gib");
    struct Shared {
        test::Barrier start;
        std::atomic<std::int64_t> consumer_done_ns{0};
    };
    test::SharedBlock<Shared> shared;
    auto started = std::chrono::steady_clock::now();
    test::Child producer_process([&] {
        auto producer = Producer::attach(name);  // defaults: 16 x 32 KiB
        shared->start.arrive_and_wait(2);
        std::string problem = run_producer(producer, segments);
        if (!problem.empty()) std::fprintf(stderr, "producer: %s\n", problem.c_str());
        return problem.empty() ? 0 : 3;
    });
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name);
        shared->start.arrive_and_wait(2);
        std::string problem = run_consumer(consumer, segments);
        if (!problem.empty()) std::fprintf(stderr, "consumer: %s\n", problem.c_str());
        shared->consumer_done_ns.store(test::now_ns());
        return problem.empty() ? 0 : 3;
    });
    CHECK(producer_process.exit_code(300s) == 0);
    CHECK(consumer_process.exit_code(300s) == 0);
    auto elapsed = std::chrono::steady_clock::now() - started;
    MESSAGE(segments << " segments (" << (bytes >> 20) << " MiB) in "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                     << " ms, including fork and checksums: " << gib_per_s(bytes, elapsed) << " GiB/s");
    auto info = shmchan::inspect(name);
    CHECK(info.published == segments);
    CHECK(info.released == segments);
    CHECK(info.end_of_stream);
    CHECK(info.producer_counters.segments == segments);
    CHECK(info.producer_counters.bytes == segments * (shmchan::layout::kDefaultSegmentSize - 64));
    CHECK(info.consumer_counters.segments == segments);
}

TEST_CASE("the same stream between two threads of one process (two handles)") {
    const std::uint64_t bytes = test::kSanitized ? kGiB / 4 : kGiB;
    const std::uint64_t segments = bytes / shmchan::layout::kDefaultSegmentSize;
    const std::string name = test::unique_name("threads");
    std::string producer_problem = "not run", consumer_problem = "not run";
    std::atomic<int> ready{0};
    auto started = std::chrono::steady_clock::now();
    std::thread producer_thread([&] {
        try {
            auto producer = Producer::attach(name);
            ready.fetch_add(1);
            producer_problem = run_producer(producer, segments);
        } catch (const std::exception& error) {
            producer_problem = error.what();
        }
    });
    std::thread consumer_thread([&] {
        try {
            auto consumer = Consumer::attach(name);
            ready.fetch_add(1);
            consumer_problem = run_consumer(consumer, segments);
        } catch (const std::exception& error) {
            consumer_problem = error.what();
        }
    });
    producer_thread.join();
    consumer_thread.join();
    auto elapsed = std::chrono::steady_clock::now() - started;
    CHECK_MESSAGE(producer_problem.empty(), producer_problem);
    CHECK_MESSAGE(consumer_problem.empty(), consumer_problem);
    MESSAGE(segments << " segments (" << (bytes >> 20) << " MiB) between threads in "
                     << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms: "
                     << gib_per_s(bytes, elapsed) << " GiB/s");
}

TEST_CASE("a slow consumer: the producer blocks, memory stays bounded, nothing is lost") {
    const std::uint32_t kCount = 4;
    const std::uint64_t segments = test::kSanitized ? 400 : 2000;
    const std::string name = test::unique_name("slow");
    ChannelOptions options = test::geometry(4096, kCount);
    struct Shared {
        test::Barrier start;
    };
    test::SharedBlock<Shared> shared;
    test::Child producer_process([&] {
        auto producer = Producer::attach(name, options);
        shared->start.arrive_and_wait(2);
        std::string problem = run_producer(producer, segments);
        if (!problem.empty()) std::fprintf(stderr, "producer: %s\n", problem.c_str());
        return problem.empty() ? 0 : 3;
    });
    // The consumer (this process; it forks nothing while attached) holds each segment while it
    // watches the header: the producer can never be more than kCount segments ahead.
    {
        auto consumer = Consumer::attach(name, options);
        shared->start.arrive_and_wait(2);
        std::uint64_t max_outstanding = 0;
        std::uint64_t full_seen = 0, producer_sleep_seen = 0;
        bool broke = false;
        for (std::uint64_t i = 0; i < segments && !broke; ++i) {
            ReadableSegment in;
            Status status = consumer.read(in);
            if (status != Status::ok) {
                FAIL_CHECK("read " << i << ": " << shmchan::to_string(status) << " " << consumer.last_error());
                broke = true;
                break;
            }
            if (in.sequence != i) {
                FAIL_CHECK("segment " << i << " has sequence " << in.sequence);
                broke = true;
            }
            std::string problem = test::check_segment(in.payload, i, consumer.payload_capacity());
            if (!problem.empty()) {
                FAIL_CHECK(problem);
                broke = true;
            }
            auto info = consumer.info();
            std::uint64_t outstanding = info.published - info.released;
            max_outstanding = std::max(max_outstanding, outstanding);
            // Every 100 segments, be slow on purpose: wait until the producer has filled the ring
            // and is back-pressured (it can only wait for us).
            if (i % 100 == 0) {
                bool full = test::eventually([&] {
                    auto now = consumer.info();
                    max_outstanding = std::max(max_outstanding, now.published - now.released);
                    return now.published - now.released == kCount || now.end_of_stream;
                }, 30s);
                if (full) ++full_seen;
                if (test::eventually([&] { return consumer.info().producer.sleeping; }, 5s)) ++producer_sleep_seen;
                auto now = consumer.info();
                max_outstanding = std::max(max_outstanding, now.published - now.released);
            }
            if (consumer.release() != Status::ok) {
                FAIL_CHECK("release " << i);
                broke = true;
            }
        }
        ReadableSegment in;
        if (!broke) CHECK(consumer.read(in) == Status::end_of_stream);
        auto info = consumer.info();
        CHECK(max_outstanding <= kCount);
        CHECK(max_outstanding == kCount);
        CHECK(full_seen == (segments + 99) / 100);
        CHECK(info.released == segments);
        CHECK(info.producer_counters.waited_ns > 0);  // time back-pressured
        CHECK(info.producer_counters.parks > 0);      // hybrid: it slept while we dawdled
        MESSAGE("max outstanding " << max_outstanding << " of " << kCount << "; producer seen asleep "
                                   << producer_sleep_seen << " times; producer back-pressured "
                                   << info.producer_counters.waited_ns / 1000000 << " ms, parks "
                                   << info.producer_counters.parks);
    }
    CHECK(producer_process.exit_code(120s) == 0);
    struct stat st {};
    REQUIRE(::stat(test::path_of(name).c_str(), &st) == 0);
    CHECK(static_cast<std::uint64_t>(st.st_size) == shmchan::layout::region_bytes(4096, kCount));
}

TEST_CASE("each wait strategy streams correctly; wake syscalls never exceed the peer's parks") {
    const std::uint64_t segments = test::kSanitized ? 4000 : 40000;
    struct Combination {
        WaitStrategy producer, consumer;
    };
    const Combination combinations[] = {
        {WaitStrategy::spin, WaitStrategy::spin},
        {WaitStrategy::hybrid, WaitStrategy::hybrid},
        {WaitStrategy::park, WaitStrategy::park},
        {WaitStrategy::park, WaitStrategy::spin},
        {WaitStrategy::spin, WaitStrategy::park},
    };
    for (const auto& combination : combinations) {
        const std::string label = std::string(shmchan::to_string(combination.producer)) + "/" +
                                  shmchan::to_string(combination.consumer);
        CAPTURE(label);
        const std::string name = test::unique_name("wait");
        struct Shared {
            std::atomic<int> consumer_attached{0};
            std::atomic<int> go{0};
        };
        test::SharedBlock<Shared> shared;
        ChannelOptions producer_options = test::geometry(4096, 8);
        producer_options.wait = combination.producer;
        ChannelOptions consumer_options = test::geometry(4096, 8);
        consumer_options.wait = combination.consumer;
        // The consumer starts first and waits for data; the producer starts once the consumer
        // is seen waiting (asleep, for a parking consumer), so a park mode surely parks.
        test::Child consumer_process([&] {
            auto consumer = Consumer::attach(name, consumer_options);
            shared->consumer_attached.store(1);
            std::string problem = run_consumer(consumer, segments);
            if (!problem.empty()) std::fprintf(stderr, "consumer: %s\n", problem.c_str());
            return problem.empty() ? 0 : 3;
        });
        test::Child producer_process([&] {
            CHILD_EXPECT(test::wait_for_flag(shared->go, 1, 60s));
            auto producer = Producer::attach(name, producer_options);
            std::string problem = run_producer(producer, segments);
            if (!problem.empty()) std::fprintf(stderr, "producer: %s\n", problem.c_str());
            return problem.empty() ? 0 : 3;
        });
        REQUIRE(test::wait_for_flag(shared->consumer_attached, 1));
        if (combination.consumer != WaitStrategy::spin) {
            CHECK(test::eventually([&] { return shmchan::inspect(name).consumer.sleeping; }, 10s));
        }
        auto started = std::chrono::steady_clock::now();
        shared->go.store(1);
        CHECK(consumer_process.exit_code(300s) == 0);
        CHECK(producer_process.exit_code(300s) == 0);
        auto elapsed = std::chrono::steady_clock::now() - started;
        auto info = shmchan::inspect(name);
        const auto& p = info.producer_counters;
        const auto& c = info.consumer_counters;
        CHECK(info.released == segments);
        CHECK(p.wake_syscalls <= c.parks);
        CHECK(c.wake_syscalls <= p.parks);
        if (combination.producer == WaitStrategy::spin) CHECK(p.parks == 0);
        if (combination.consumer == WaitStrategy::spin) CHECK(c.parks == 0);
        if (combination.producer == WaitStrategy::spin && combination.consumer == WaitStrategy::spin) {
            CHECK(p.wake_syscalls == 0);
            CHECK(c.wake_syscalls == 0);
        }
        if (combination.consumer == WaitStrategy::park) CHECK(c.parks > 0);
        if (combination.producer == WaitStrategy::park && combination.consumer == WaitStrategy::park) {
            CHECK(p.wake_syscalls > 0);  // the sleeping consumer was woken by syscalls
        }
        MESSAGE(label << ": " << segments << " x 4 KiB in "
                      << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                      << " ms; producer wake_syscalls " << p.wake_syscalls << " parks " << p.parks
                      << "; consumer wake_syscalls " << c.wake_syscalls << " parks " << c.parks);
    }
}

}  // TEST_SUITE
