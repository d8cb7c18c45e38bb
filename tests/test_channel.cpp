// SPDX-License-Identifier: Apache-2.0
// The channel API: attaching, geometry and framing, options, sides, end of stream, the status of
// every call that can wait, removal and inspection.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "channels/detail/hooks.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using shmchan::ChannelOptions;
using shmchan::Consumer;
using shmchan::Errc;
using shmchan::Producer;
using shmchan::ReadableSegment;
using shmchan::Status;
using shmchan::WritableSegment;
namespace test = shmchan::test;

namespace {

// Producer body: `count` segments of the test pattern (sequence from `first`), then end of stream.
int produce(const std::string& name, const ChannelOptions& options, std::uint64_t first,
            std::uint64_t count, bool end) {
    auto producer = Producer::attach(name, options);
    for (std::uint64_t i = 0; i < count; ++i) {
        WritableSegment out;
        CHILD_EXPECT(producer.acquire(out) == Status::ok);
        CHILD_EXPECT(out.sequence == first + i);
        CHILD_EXPECT(out.payload.size() == producer.payload_capacity());
        test::fill_segment(out.payload, first + i);
        CHILD_EXPECT(producer.publish(static_cast<std::uint32_t>(out.payload.size())) == Status::ok);
    }
    if (end) CHILD_EXPECT(producer.end_stream() == Status::ok);
    return 0;
}

// Consumer body: expects `count` pattern segments from `first`, then `final_status`.
int consume(const std::string& name, const ChannelOptions& options, std::uint64_t first,
            std::uint64_t count, Status final_status) {
    auto consumer = Consumer::attach(name, options);
    for (std::uint64_t i = 0; i < count; ++i) {
        ReadableSegment in;
        Status status = consumer.read(in);
        if (status != Status::ok) {
            std::fprintf(stderr, "read %llu: %s (%s)\n", (unsigned long long)i, shmchan::to_string(status),
                         consumer.last_error().c_str());
        }
        CHILD_EXPECT(status == Status::ok);
        CHILD_EXPECT(in.sequence == first + i);
        std::string problem = test::check_segment(in.payload, first + i, consumer.payload_capacity());
        if (!problem.empty()) std::fprintf(stderr, "%s\n", problem.c_str());
        CHILD_EXPECT(problem.empty());
        CHILD_EXPECT(consumer.release() == Status::ok);
    }
    ReadableSegment in;
    CHILD_EXPECT(consumer.read(in) == final_status);
    return 0;
}

}  // namespace

TEST_SUITE("core") {

TEST_CASE("wait strategies have names") {
    for (auto strategy : {shmchan::WaitStrategy::spin, shmchan::WaitStrategy::hybrid, shmchan::WaitStrategy::park}) {
        auto parsed = shmchan::wait_strategy_from_string(shmchan::to_string(strategy));
        REQUIRE(parsed.has_value());
        CHECK(*parsed == strategy);
    }
    CHECK_FALSE(shmchan::wait_strategy_from_string("sleepy").has_value());
    CHECK(std::string(shmchan::to_string(Status::peer_died)) != std::string(shmchan::to_string(Status::ok)));
}

TEST_CASE("either side may attach first, across processes") {
    const std::uint64_t kSegments = 200;
    for (bool producer_first : {true, false}) {
        CAPTURE(producer_first);
        const std::string name = test::unique_name(producer_first ? "pfirst" : "cfirst");
        struct Shared {
            std::atomic<int> first_attached{0};
        };
        test::SharedBlock<Shared> shared;
        ChannelOptions options = test::geometry(4096, 4);
        // The first side attaches, says so, and then the other starts. The first side's own
        // attach creates the channel; the second opens it.
        auto first_body = [&](bool as_producer) {
            if (as_producer) {
                auto producer = Producer::attach(name, options);
                shared->first_attached.store(1);
                for (std::uint64_t i = 0; i < kSegments; ++i) {
                    WritableSegment out;
                    CHILD_EXPECT(producer.acquire(out) == Status::ok);
                    test::fill_segment(out.payload, i);
                    CHILD_EXPECT(producer.publish(static_cast<std::uint32_t>(out.payload.size())) == Status::ok);
                }
                CHILD_EXPECT(producer.end_stream() == Status::ok);
                return 0;
            }
            auto consumer = Consumer::attach(name, options);
            shared->first_attached.store(1);
            for (std::uint64_t i = 0; i < kSegments; ++i) {
                ReadableSegment in;
                CHILD_EXPECT(consumer.read(in) == Status::ok);
                CHILD_EXPECT(test::check_segment(in.payload, i, consumer.payload_capacity()).empty());
                CHILD_EXPECT(consumer.release() == Status::ok);
            }
            ReadableSegment in;
            CHILD_EXPECT(consumer.read(in) == Status::end_of_stream);
            return 0;
        };
        test::Child first([&] { return first_body(producer_first); });
        test::Child second([&] {
            CHILD_EXPECT(test::wait_for_flag(shared->first_attached, 1));
            if (producer_first) return consume(name, {}, 0, kSegments, Status::end_of_stream);
            return produce(name, {}, 0, kSegments, true);
        });
        CHECK(first.exit_code(60s) == 0);
        CHECK(second.exit_code(60s) == 0);
    }
}

TEST_CASE("a wait that ends while spinning is counted: idle for the consumer, back-pressured for the producer") {
    // Such a wait is timed by its spins (no clock read when it ends): it must still count.
    const std::string name = test::unique_name("spin-counted");
    ChannelOptions options = test::geometry(4096, 1);
    options.wait = shmchan::WaitStrategy::spin;
    struct Shared {
        std::atomic<int> step{0};
    };
    test::SharedBlock<Shared> shared;
    auto producer = Producer::attach(name, options);
    test::Child consumer([&] {
        auto c = Consumer::attach(name, options);
        ReadableSegment in;
        CHILD_EXPECT(c.read(in) == Status::ok);  // waits for the first segment, spinning
        shared->step.store(1);
        CHILD_EXPECT(test::wait_for_flag(shared->step, 2));  // holds the only segment meanwhile
        CHILD_EXPECT(c.release() == Status::ok);
        CHILD_EXPECT(c.read(in) == Status::ok);
        CHILD_EXPECT(c.release() == Status::ok);
        return 0;
    });
    // The consumer is inside its wait (waiting_since set) before anything is published.
    REQUIRE(test::eventually([&] { return shmchan::inspect(name).consumer_counters.waiting_since_ns != 0; }, 60s));
    WritableSegment out;
    REQUIRE(producer.acquire(out) == Status::ok);
    REQUIRE(producer.publish(8) == Status::ok);
    REQUIRE(test::wait_for_flag(shared->step, 1));
    // The ring (one segment) is full: the producer waits, spinning, until the consumer releases.
    test::Child releaser([&] {
        CHILD_EXPECT(test::eventually([&] { return shmchan::inspect(name).producer_counters.waiting_since_ns != 0; }, 60s));
        shared->step.store(2);
        return 0;
    });
    REQUIRE(producer.acquire(out) == Status::ok);
    REQUIRE(producer.publish(8) == Status::ok);
    CHECK(releaser.exit_code() == 0);
    CHECK(consumer.exit_code() == 0);
    const shmchan::ChannelInfo info = shmchan::inspect(name);
    CHECK(info.consumer_counters.waited_ns > 0);
    CHECK(info.producer_counters.waited_ns > 0);
    CHECK(info.consumer_counters.waiting_since_ns == 0);
    CHECK(info.producer_counters.waiting_since_ns == 0);
}

TEST_CASE("an opener adopts the existing geometry; asking for another one is an error") {
    const std::string name = test::unique_name("geom");
    auto producer = Producer::attach(name, test::geometry(8192, 8));
    CHECK(producer.payload_capacity() == 8192 - shmchan::layout::kSegmentHeaderBytes);
    {
        ChannelOptions bigger = test::geometry(16384, 8);
        SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, bigger), Errc::geometry_mismatch);
        ChannelOptions fewer = test::geometry(8192, 4);
        SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, fewer), Errc::geometry_mismatch);
        ChannelOptions only_size;
        only_size.segment_size = 4096;
        SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, only_size), Errc::geometry_mismatch);
    }
    {
        auto consumer = Consumer::attach(name);  // no geometry: adopts 8192 x 8
        auto info = consumer.info();
        CHECK(info.segment_size == 8192);
        CHECK(info.segment_count == 8);
        CHECK(info.total_bytes == shmchan::layout::region_bytes(8192, 8));
        CHECK(consumer.payload_capacity() == 8192 - 64);
    }
    {
        auto consumer = Consumer::attach(name, test::geometry(8192, 8));  // the same, explicitly
        CHECK(consumer.info().segment_count == 8);
    }
    struct stat st {};
    REQUIRE(::stat(test::path_of(name).c_str(), &st) == 0);
    CHECK(static_cast<std::uint64_t>(st.st_size) == shmchan::layout::region_bytes(8192, 8));
}

TEST_CASE("a framing mismatch is an error") {
    const std::string name = test::unique_name("framing");
    ChannelOptions records = test::geometry(4096, 4);
    records.framing = shmchan::Framing::records;
    auto producer = Producer::attach(name, records);
    CHECK(producer.info().framing == shmchan::Framing::records);
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name), Errc::framing_mismatch);
    ChannelOptions same;
    same.framing = shmchan::Framing::records;
    CHECK_NOTHROW(Consumer::attach(name, same));

    const std::string raw = test::unique_name("framing-raw");
    auto raw_consumer = Consumer::attach(raw);
    SHMCHAN_CHECK_THROWS_CODE(Producer::attach(raw, same), Errc::framing_mismatch);
}

TEST_CASE("options are validated and a refused creation leaves no file") {
    struct Case {
        const char* what;
        ChannelOptions options;
    };
    auto with = [](std::optional<std::uint32_t> size, std::optional<std::uint32_t> count) {
        ChannelOptions options;
        options.segment_size = size;
        options.segment_count = count;
        return options;
    };
    ChannelOptions zero_liveness;
    zero_liveness.liveness_interval = 0ns;
    ChannelOptions bad_mode;
    bad_mode.mode = 0666;  // a world-writable channel would be refused by every opener
    const Case cases[] = {
        {"segment size not a multiple of 4096", with(5000, 4)},
        {"segment size 0", with(0, 4)},
        {"segment size 2048", with(2048, 4)},
        {"segment size over 1 GiB", with((1u << 30) + 4096, 1)},
        {"segment count 0", with(4096, 0)},
        {"segment count over 2^20", with(4096, (1u << 20) + 1)},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        const std::string name = test::unique_name("opts");
        SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name, c.options), Errc::bad_options);
        SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, c.options), Errc::bad_options);
        CHECK_FALSE(test::file_exists(test::path_of(name)));
    }
    // Not in the list, but a world-writable mode would make a channel nobody may open.
    const std::string name = test::unique_name("opts-mode");
    auto code = test::error_of([&] { Producer::attach(name, bad_mode); });
    if (!code) MESSAGE("note: mode 0666 accepted at creation (openers will refuse the file)");
}

TEST_CASE("one live producer and one live consumer per channel") {
    const std::string name = test::unique_name("sides");
    ChannelOptions options = test::geometry(4096, 4);
    {
        auto producer = Producer::attach(name, options);
        auto consumer = Consumer::attach(name, options);
        // Two handles in one process conflict as two processes would.
        SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name, options), Errc::side_taken);
        SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, options), Errc::side_taken);
    }
    // Both detached: both sides are free again.
    {
        auto producer = Producer::attach(name, options);
        CHECK(producer.info().producer.attach_count == 2);
    }
    // Across processes: a live producer in another process refuses ours; once it died (SIGKILL,
    // no clean detach), ours is accepted.
    struct Shared {
        std::atomic<int> attached{0};
        std::atomic<int> refused{0};
    };
    test::SharedBlock<Shared> shared;
    {
        test::Child holder([&] {
            auto producer = Producer::attach(name, options);
            shared->attached.store(1);
            ::pause();
            return 0;
        });
        REQUIRE(test::wait_for_flag(shared->attached, 1));
        test::Child contender([&] {
            auto code = test::error_of([&] { Producer::attach(name, options); });
            CHILD_EXPECT(code && *code == Errc::side_taken);
            return 0;
        });
        CHECK(contender.exit_code(30s) == 0);
        SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name, options), Errc::side_taken);
        auto info = shmchan::inspect(name);
        CHECK(info.producer.alive);
        CHECK(info.producer.pid == holder.pid());
        holder.kill();
        REQUIRE(holder.wait(30s).has_value());
    }
    auto info = shmchan::inspect(name);
    CHECK_FALSE(info.producer.alive);
    auto replacement = Producer::attach(name, options);
    CHECK(replacement.info().producer.alive);
    CHECK(replacement.info().producer.pid == ::getpid());
}

TEST_CASE("end of stream") {
    const std::string name = test::unique_name("eos");
    ChannelOptions options = test::geometry(4096, 4);
    auto producer = Producer::attach(name, options);
    auto consumer = Consumer::attach(name, options);
    for (std::uint64_t i = 0; i < 3; ++i) {
        WritableSegment out;
        REQUIRE(producer.acquire(out) == Status::ok);
        test::fill_segment(out.payload, i);
        REQUIRE(producer.publish(producer.payload_capacity()) == Status::ok);
    }
    // The stream ends with a held segment: it is published first (its committed bytes).
    WritableSegment last;
    REQUIRE(producer.acquire(last) == Status::ok);
    std::memset(last.payload.data(), 'x', 100);
    CHECK(producer.commit(100) == Status::ok);
    CHECK(producer.end_stream() == Status::ok);
    CHECK(producer.info().end_of_stream);

    // The producer may not go on.
    WritableSegment more;
    CHECK(producer.try_acquire(more) == Status::invalid_call);
    CHECK(producer.publish(0) == Status::invalid_call);

    ReadableSegment in;
    for (std::uint64_t i = 0; i < 3; ++i) {
        REQUIRE(consumer.try_read(in) == Status::ok);
        CHECK(in.sequence == i);
        CHECK(test::check_segment(in.payload, i, consumer.payload_capacity()).empty());
        CHECK(consumer.release() == Status::ok);
    }
    REQUIRE(consumer.try_read(in) == Status::ok);
    CHECK(in.sequence == 3);
    CHECK(in.payload.size() == 100);
    CHECK(consumer.release() == Status::ok);
    CHECK(consumer.read(in) == Status::end_of_stream);
    CHECK(consumer.read(in) == Status::end_of_stream);
    CHECK(consumer.try_read(in) == Status::end_of_stream);
    CHECK(consumer.read_for(in, 10ms) == Status::end_of_stream);
    CHECK(consumer.info().end_of_stream);
}

TEST_CASE("a producer attaching to an ended channel is refused with stream_ended") {
    const std::string name = test::unique_name("ended");
    {
        auto producer = Producer::attach(name, test::geometry(4096, 4));
        CHECK(producer.end_stream() == Status::ok);
    }
    SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name), Errc::stream_ended);
    // A consumer can still attach and sees the end.
    auto consumer = Consumer::attach(name);
    ReadableSegment in;
    CHECK(consumer.read(in) == Status::end_of_stream);
    // Once the consumer removed the channel, the name starts a fresh stream.
    consumer.remove_channel();
    CHECK_FALSE(test::file_exists(test::path_of(name)));
    CHECK_NOTHROW(consumer.info());
    auto fresh = Producer::attach(name);
    CHECK_FALSE(fresh.info().end_of_stream);
    CHECK(fresh.info().published == 0);
}

TEST_CASE("try_* returns would_block and *_for returns timed_out") {
    const std::string name = test::unique_name("nonblock");
    ChannelOptions options = test::geometry(4096, 2);
    auto producer = Producer::attach(name, options);
    auto consumer = Consumer::attach(name, options);
    ReadableSegment in;
    CHECK(consumer.try_read(in) == Status::would_block);
    auto start = std::chrono::steady_clock::now();
    CHECK(consumer.read_for(in, 50ms) == Status::timed_out);
    MESSAGE("read_for(50 ms) returned after "
            << std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count() << " us");
    // Fill the ring: 2 segments.
    for (int i = 0; i < 2; ++i) {
        WritableSegment out;
        REQUIRE(producer.try_acquire(out) == Status::ok);
        REQUIRE(producer.publish(8) == Status::ok);
    }
    WritableSegment out;
    CHECK(producer.try_acquire(out) == Status::would_block);
    CHECK(producer.acquire_for(out, 50ms) == Status::timed_out);
    auto info = producer.info();
    CHECK(info.published - info.released == 2);
    // One release gives one credit back.
    REQUIRE(consumer.try_read(in) == Status::ok);
    CHECK(in.payload.size() == 8);
    CHECK(consumer.release() == Status::ok);
    CHECK(producer.try_acquire(out) == Status::ok);
    CHECK(producer.publish(0) == Status::ok);
    CHECK(producer.try_acquire(out) == Status::would_block);
}

TEST_CASE("misuse returns invalid_call") {
    const std::string name = test::unique_name("misuse");
    ChannelOptions options = test::geometry(4096, 2);
    auto producer = Producer::attach(name, options);
    auto consumer = Consumer::attach(name, options);
    CHECK(producer.publish(0) == Status::invalid_call);  // nothing acquired
    CHECK(shmchan::detail::ProducerHooks(producer).publish(10, 0, 0, 0, 0) == Status::invalid_call);
    CHECK(producer.commit(10) == Status::invalid_call);
    WritableSegment out;
    REQUIRE(producer.acquire(out) == Status::ok);
    CHECK(producer.publish(producer.payload_capacity() + 1) == Status::invalid_call);
    CHECK(producer.commit(producer.payload_capacity() + 1) == Status::invalid_call);
    // The over-long publish published nothing.
    ReadableSegment in;
    CHECK(consumer.try_read(in) == Status::would_block);
    CHECK(producer.info().published == 0);
    // The segment is still held and can be published properly.
    CHECK(producer.publish(producer.payload_capacity()) == Status::ok);
    CHECK(consumer.try_read(in) == Status::ok);
    CHECK(in.payload.size() == producer.payload_capacity());
}

TEST_CASE("remove_channel: in_use while a live process holds it, removed otherwise, force") {
    const std::string name = test::unique_name("remove");
    CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::not_found);
    struct Shared {
        std::atomic<int> attached{0};
    };
    test::SharedBlock<Shared> shared;
    {
        test::Child holder([&] {
            auto consumer = Consumer::attach(name, test::geometry(4096, 2));
            shared->attached.store(1);
            ::pause();
            return 0;
        });
        REQUIRE(test::wait_for_flag(shared->attached, 1));
        CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::in_use);
        CHECK(test::file_exists(test::path_of(name)));
        CHECK(shmchan::inspect(name).consumer.alive);
        holder.kill();
        REQUIRE(holder.wait(30s).has_value());
    }
    // Its holder died: nobody holds it.
    CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::removed);
    CHECK_FALSE(test::file_exists(test::path_of(name)));
    CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::not_found);

    // Force: removed under a live holder in another process.
    shared->attached.store(0);
    {
        test::Child holder([&] {
            auto producer = Producer::attach(name, test::geometry(4096, 2));
            shared->attached.store(1);
            ::pause();
            return 0;
        });
        REQUIRE(test::wait_for_flag(shared->attached, 1));
        CHECK(shmchan::remove_channel(name, true) == shmchan::RemoveResult::removed);
        CHECK_FALSE(test::file_exists(test::path_of(name)));
        // A later opener gets a fresh channel: no live producer there.
        auto consumer = Consumer::attach(name, test::geometry(4096, 2));
        CHECK_FALSE(consumer.info().producer.alive);
        CHECK(consumer.info().producer.attach_count == 0);
        CHECK_FALSE(consumer.producer_alive());
    }
}

TEST_CASE("inspect() of a live channel") {
    const std::string name = test::unique_name("inspect");
    SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(name), std::errc::no_such_file_or_directory);
    CHECK_FALSE(test::file_exists(test::path_of(name)));  // inspect creates nothing
    struct Shared {
        std::atomic<int> produced{0};
        std::atomic<int> consumed{0};
    };
    test::SharedBlock<Shared> shared;
    ChannelOptions options = test::geometry(4096, 8);
    test::Child producer_process([&] {
        auto producer = Producer::attach(name, options);
        for (int i = 0; i < 3; ++i) {
            WritableSegment out;
            CHILD_EXPECT(producer.acquire(out) == Status::ok);
            std::memset(out.payload.data(), 'a' + i, 100);
            CHILD_EXPECT(producer.publish(100) == Status::ok);
        }
        shared->produced.store(1);
        ::pause();
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->produced, 1));
    test::Child consumer_process([&] {
        auto consumer = Consumer::attach(name);
        ReadableSegment in;
        CHILD_EXPECT(consumer.read(in) == Status::ok);
        CHILD_EXPECT(in.payload.size() == 100);
        CHILD_EXPECT(consumer.release() == Status::ok);
        shared->consumed.store(1);
        ::pause();
        return 0;
    });
    REQUIRE(test::wait_for_flag(shared->consumed, 1));
    auto info = shmchan::inspect(name);
    CHECK(info.name == name);
    CHECK(info.path == test::path_of(name));
    CHECK(info.abi_version == shmchan::layout::kAbiVersion);
    CHECK(info.segment_size == 4096);
    CHECK(info.segment_count == 8);
    CHECK(info.framing == shmchan::Framing::raw_bytes);
    CHECK(info.total_bytes == shmchan::layout::region_bytes(4096, 8));
    CHECK(info.published == 3);
    CHECK(info.released == 1);
    CHECK_FALSE(info.end_of_stream);
    CHECK_FALSE(info.removed);
    CHECK(info.producer.attached);
    CHECK(info.producer.alive);
    CHECK(info.producer.pid == producer_process.pid());
    CHECK(info.producer.start_time != 0);
    CHECK(info.producer.attach_count == 1);
    CHECK(info.consumer.attached);
    CHECK(info.consumer.alive);
    CHECK(info.consumer.pid == consumer_process.pid());
    CHECK(info.producer_counters.bytes == 300);
    CHECK(info.producer_counters.segments == 3);
    CHECK(info.consumer_counters.segments == 1);
    CHECK(info.created_realtime_ns != 0);
    // Inspecting disturbed nothing: the same figures again, nobody detached.
    auto again = shmchan::inspect(name);
    CHECK(again.published == 3);
    CHECK(again.released == 1);
    CHECK(again.consumer.attach_count == 1);
    producer_process.kill();
    consumer_process.kill();
    REQUIRE(producer_process.wait(30s).has_value());
    REQUIRE(consumer_process.wait(30s).has_value());
    auto dead = shmchan::inspect(name);
    CHECK_FALSE(dead.producer.alive);
    CHECK_FALSE(dead.consumer.alive);
}

}  // TEST_SUITE
