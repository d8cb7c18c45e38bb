// SPDX-License-Identifier: Apache-2.0
// The records layer (channels/records.hpp) across real processes: round trips of every awkward
// size (with and without checksums, small and default geometry, records larger than the ring),
// events in order with the records, and the flush policy.
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include "records_support.hpp"

TEST_SUITE("records") {

// ---- 1. Round trips -------------------------------------------------------------------------------

TEST_CASE("round trip of edge and random sizes across processes") {
    const std::size_t random_count = test::kSanitized ? 400 : 3000;
    for (bool checksums : {false, true}) {
        SUBCASE(checksums ? "small geometry, checksums" : "small geometry") {
            auto sizes = make_sizes(kSmallSegment, random_count, 3 * kSmallSegment, 11 + checksums);
            round_trip(records_options(kSmallSegment, kSmallCount, checksums), sizes);
        }
        SUBCASE(checksums ? "default geometry, checksums" : "default geometry") {
            auto sizes = make_sizes(L::kDefaultSegmentSize, random_count, 3 * L::kDefaultSegmentSize, 21 + checksums);
            round_trip(records_options(std::nullopt, std::nullopt, checksums), sizes);
        }
    }
}

// The inline fast paths (write, reserve/commit, read) and the slow paths interleaved at random:
// records of every size (some spanning), events, flushes, abandoned reserves, typed values; the
// reader mixes read(), try_read() and read_for(). Everything arrives once, in order, intact.
namespace {
enum class Step : std::uint8_t { write, zero_copy, zero_copy_shorter, barrier, user_event, flush, reserve_twice };
struct MixedItem {
    Step step;
    std::size_t size;
};
std::vector<MixedItem> mixed_plan(std::uint32_t segment_size, std::size_t count, std::uint64_t seed) {
    const std::size_t inline_max = segment_size - L::kSegmentHeaderBytes - L::kFrameHeaderBytes;
    std::mt19937_64 rng(seed);
    std::vector<MixedItem> plan;
    for (std::size_t i = 0; i < count; ++i) {
        std::uint64_t dice = rng() % 100;
        std::size_t size = dice % 10 < 7 ? 8 + rng() % 120 : dice % 10 < 9 ? 8 + rng() % inline_max : 8 + rng() % (3 * segment_size);
        Step step = dice < 50   ? Step::write
                    : dice < 75 ? Step::zero_copy
                    : dice < 82 ? Step::zero_copy_shorter
                    : dice < 86 ? Step::barrier
                    : dice < 90 ? Step::user_event
                    : dice < 95 ? Step::flush
                                : Step::reserve_twice;
        if (step == Step::zero_copy || step == Step::zero_copy_shorter || step == Step::reserve_twice) {
            size = std::min(size, inline_max);
        }
        plan.push_back({step, size});
    }
    return plan;
}
}  // namespace

TEST_CASE("inline fast paths and slow paths interleaved: everything once, in order, intact") {
    const std::size_t count = test::kSanitized ? 3000 : 20000;
    for (std::uint32_t segment_size : {kSmallSegment, L::kDefaultSegmentSize}) {
        CAPTURE(segment_size);
        const std::string name = test::unique_name("rec-mixed");
        auto options = records_options(segment_size, 4);
        const auto plan = mixed_plan(segment_size, count, segment_size + 5);
        test::Child producer([&] {
            ::alarm(120);
            auto writer = RecordWriter::attach(name, options);
            std::vector<std::byte> buffer;
            for (std::size_t i = 0; i < plan.size(); ++i) {
                const MixedItem item = plan[i];
                Status status = Status::ok;
                std::span<std::byte> room;
                switch (item.step) {
                    case Step::write:
                        buffer.resize(item.size);
                        fill_record(buffer.data(), item.size, i);
                        status = writer.write(std::span<const std::byte>(buffer.data(), item.size));
                        break;
                    case Step::zero_copy:
                    case Step::zero_copy_shorter:
                    case Step::reserve_twice: {
                        // reserve_twice: a first reservation abandoned by a second one.
                        if (item.step == Step::reserve_twice && writer.reserve(item.size / 2 + 1, room) != Status::ok) return 5;
                        std::size_t reserve = item.step == Step::zero_copy_shorter ? item.size + 40 : item.size;
                        reserve = std::min(reserve, writer.max_inline_record());
                        status = writer.reserve(reserve, room);
                        if (status != Status::ok) break;
                        fill_record(room.data(), item.size, i);
                        status = writer.commit(item.size);
                        break;
                    }
                    case Step::barrier: status = writer.write_barrier(i); break;
                    case Step::user_event: {
                        std::uint64_t payload = i;
                        status = writer.write_event(7, std::as_bytes(std::span(&payload, 1)));
                        break;
                    }
                    case Step::flush:
                        buffer.resize(item.size);
                        fill_record(buffer.data(), item.size, i);
                        status = writer.write(std::span<const std::byte>(buffer.data(), item.size));
                        if (status == Status::ok) status = writer.flush();
                        break;
                }
                if (status != Status::ok) {
                    std::fprintf(stderr, "producer: item %zu: %s %s\n", i, describe(status).c_str(), writer.last_error().c_str());
                    return 3;
                }
            }
            CHILD_EXPECT(writer.end_stream() == Status::ok);
            return 0;
        });
        test::Child consumer([&] {
            ::alarm(120);  // read() has no deadline: a hang ends the child, and the test fails
            auto reader = RecordReader::attach(name, options);
            std::mt19937_64 rng(99);
            for (std::size_t i = 0; i < plan.size(); ++i) {
                Record record;
                Status status;
                const std::uint64_t how = rng() % 10;
                if (how < 7) {
                    status = reader.read(record);
                } else if (how < 9) {
                    while ((status = reader.try_read(record)) == Status::would_block) ::sched_yield();
                } else {
                    status = reader.read_for(record, kDeadline);
                }
                if (status != Status::ok) {
                    std::fprintf(stderr, "consumer: item %zu: %s %s\n", i, describe(status).c_str(), reader.last_error().c_str());
                    return 3;
                }
                switch (plan[i].step) {
                    case Step::barrier:
                        CHILD_EXPECT(record.kind == RecordKind::barrier && record.checkpoint_id == i);
                        break;
                    case Step::user_event: {
                        std::uint64_t payload = ~0ull;
                        CHILD_EXPECT(record.kind == RecordKind::user_event && record.event_type == 7 && record.bytes.size() == 8);
                        std::memcpy(&payload, record.bytes.data(), 8);
                        CHILD_EXPECT(payload == i);
                        break;
                    }
                    default: {
                        CHILD_EXPECT(record.kind == RecordKind::record);
                        std::string problem = check_record(record.bytes, i, plan[i].size);
                        if (!problem.empty()) {
                            std::fprintf(stderr, "consumer: %s\n", problem.c_str());
                            return 4;
                        }
                    }
                }
            }
            Record record;
            CHILD_EXPECT(reader.read(record) == Status::end_of_stream);
            return 0;
        });
        CHECK(producer.exit_code() == 0);
        CHECK(consumer.exit_code() == 0);
        shmchan::remove_channel(name, true);
    }
}

TEST_CASE("a try or a zero-timeout read sees every committed record, flushed or not") {
    // The lazy polling of a waiting reader (layout.hpp rule 2b) must not hide a committed record
    // from a read that has no time to wait.
    const std::string name = test::unique_name("rec-visible");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    Record record;
    REQUIRE(writer.write(make_record(16, 0)) == Status::ok);
    REQUIRE(reader.read(record) == Status::ok);  // the reader now holds a view of segment 0
    REQUIRE(writer.write(make_record(16, 1)) == Status::ok);  // committed, not flushed
    REQUIRE(reader.read_for(record, 0ns) == Status::ok);
    CHECK(check_record(record.bytes, 1, 16) == "");
    REQUIRE(writer.write(make_record(16, 2)) == Status::ok);
    REQUIRE(reader.try_read(record) == Status::ok);
    CHECK(check_record(record.bytes, 2, 16) == "");
    CHECK(reader.read_for(record, 0ns) == Status::timed_out);
    CHECK(reader.try_read(record) == Status::would_block);
}

TEST_CASE("a flush word beyond the segment's capacity is reported corrupt, never read") {
    const std::string name = test::unique_name("rec-flushword");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    auto first = make_record(16, 0);
    REQUIRE(writer.write(first) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    // The flush stored segment 0's committed bytes: 8 + 16.
    CHECK(file.peek64(test::offsets::flushed) == (std::uint64_t{0} << 32 | 24));
    Record record;
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(check_record(record.bytes, 0, 16) == "");
    // A flush word for segment 0 claiming more than a segment holds: the waiting reader polls it
    // (it holds a view of segment 0) and must refuse it.
    file.poke64(test::offsets::flushed, std::uint64_t{0} << 32 | (kPayload + 8));
    CHECK(reader.read_for(record, 5s) == Status::corrupt);
    CHECK(reader.last_error().find("flush word") != std::string::npos);
}

TEST_CASE("records larger than the whole ring arrive through the blocking write") {
    // 4 KiB x 4 = a 16 KiB ring; records of 200 KiB and odd sizes around it, between small ones.
    std::vector<std::size_t> sizes = {5, 200 * 1024, 3, 200 * 1024 + 1, 0, 16 * 1024, 16 * 1024 + 7, 4 * kPayload,
                                      4 * kPayload - 8, 100, 1'000'003};
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        round_trip(records_options(kSmallSegment, kSmallCount, checksums), sizes);
    }
}

TEST_CASE("try_write and write_for refuse a record larger than the ring; write accepts it") {
    const std::string name = test::unique_name("rec-ring");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    auto big = make_record(200 * 1024, 0);
    Status status = writer.try_write(big);
    CHECK(status != Status::ok);
    CHECK(status != Status::would_block);  // waiting could never help: not a "try later"
    CHECK_FALSE(writer.last_error().empty());
    CHECK(writer.write_for(big, 10ms) != Status::ok);
    // Nothing of it was written: a reader sees the next record first.
    auto small = make_record(10, 1);
    CHECK(writer.write(small) == Status::ok);
    CHECK(writer.end_stream() == Status::ok);
    auto reader = RecordReader::attach(name, options);
    Record record;
    REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
    CHECK(check_record(record.bytes, 1, 10) == "");
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
}

TEST_CASE("with checksums, write_for that must wait hands over the segment a reader needs to free the ring") {
    // A record spanning 4 x 4 KiB ends in the segment the writer holds; with checksums the reader
    // takes only handed-over segments, so it holds the other three until that one is handed
    // over. A timed write that does not fit the held segment must hand it over before waiting
    // (the blocking write does): once waited with it held, neither side could move.
    const std::string name = test::unique_name("rec-timed-seal");
    auto options = records_options(kSmallSegment, kSmallCount, /*checksums=*/true);
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    auto spanning = make_record(3 * kSmallSegment, 0);
    REQUIRE(writer.write(spanning) == Status::ok);
    Record record;
    CHECK(reader.try_read(record) == Status::would_block);  // the end is in the held segment
    auto next = make_record(3900, 1);                       // does not fit the held segment's room
    CHECK(writer.write_for(next, 10ms) == Status::timed_out);  // the ring is full: nothing written
    REQUIRE(reader.try_read(record) == Status::ok);         // the held segment was handed over
    CHECK(check_record(record.bytes, 0, spanning.size()) == "");
    CHECK(reader.try_read(record) == Status::would_block);  // releases the segments passed
    CHECK(writer.write_for(next, kDeadline) == Status::ok);
    CHECK(writer.end_stream() == Status::ok);
    REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
    CHECK(check_record(record.bytes, 1, next.size()) == "");
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    reader.remove_channel();
}

// ---- 2. Events --------------------------------------------------------------------------------

TEST_CASE("every event kind arrives in order with the records, then end of stream for good") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-ev");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        // The plan: a mix of records (some spanning, some larger than the ring), barriers and
        // user events (payloads of 0, small and the maximum 1024 bytes).
        struct Item {
            int kind;  // 0 record, 1 barrier, 2 user event
            std::size_t size;
            std::uint64_t id;
        };
        std::vector<Item> plan;
        std::mt19937_64 rng(7 + checksums);
        for (int i = 0; i < 400; ++i) {
            int kind = static_cast<int>(rng() % 3);
            std::size_t size = kind == 0 ? (rng() % 8 == 0 ? rng() % 40000 : rng() % 500) : rng() % 1025;
            if (i == 1) size = 1024;
            if (i == 2) size = 0;
            plan.push_back({kind, size, rng()});
        }
        test::Child producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = 0; i < plan.size(); ++i) {
                Status status;
                auto bytes = make_record(plan[i].size, i);
                if (plan[i].kind == 0) status = writer.write(bytes);
                else if (plan[i].kind == 1) status = writer.write_barrier(plan[i].id);
                else status = writer.write_event(static_cast<std::uint16_t>(plan[i].id), bytes);
                CHILD_EXPECT(status == Status::ok);
            }
            auto too_big = make_record(1025, 0);
            CHILD_EXPECT(writer.write_event(1, too_big) == Status::too_large);
            CHILD_EXPECT(writer.end_stream() == Status::ok);
            CHILD_EXPECT(writer.write(too_big) == Status::invalid_call);  // after the end
            return 0;
        });
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < plan.size(); ++i) {
            CAPTURE(i);
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            if (plan[i].kind == 0) {
                REQUIRE(record.kind == RecordKind::record);
                CHECK(check_record(record.bytes, i, plan[i].size) == "");
            } else if (plan[i].kind == 1) {
                REQUIRE(record.kind == RecordKind::barrier);
                CHECK(record.checkpoint_id == plan[i].id);
            } else {
                REQUIRE(record.kind == RecordKind::user_event);
                CHECK(record.event_type == static_cast<std::uint16_t>(plan[i].id));
                CHECK(check_record(record.bytes, i, plan[i].size) == "");
            }
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
        CHECK(reader.read(record) == Status::end_of_stream);
        CHECK(reader.try_read(record) == Status::end_of_stream);
        CHECK(reader.read_for(record, 1ms) == Status::end_of_stream);
        int value = 0;
        CHECK(reader.read_value(value) == Status::end_of_stream);
        CHECK(producer.exit_code() == 0);
    }
}

// ---- 3. Flush policy ----------------------------------------------------------------------------

namespace {

// The producer writes one record and then blocks on a pipe without flushing (or after `flush()`),
// only once the consumer is parked. The consumer parks with a liveness backstop far longer than
// the deadline, so only the flush policy can bring it the record in time.
void flush_case(std::chrono::nanoseconds buffer_timeout, bool explicit_flush, bool checksums) {
    const std::string name = test::unique_name("rec-flush");
    struct Flags {
        std::atomic<int> producer_ready{0}, received{0}, content_ok{0};
    };
    test::SharedBlock<Flags> flags;
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    auto options = records_options(kSmallSegment, 8, checksums);
    options.wait = WaitStrategy::park;
    // The consumer's backstop: a parked reader re-checks at least this often whatever the flush
    // policy (10 s, the longest allowed). The test waits 9 s for the record, so only the flush
    // policy (a 50 ms timeout, a wake per record, or flush()) can bring it in time: 180 times
    // the expected time, generous for sanitizers. The consumer reads with the blocking read() in
    // its own process, so no final check at a deadline of ours can find the record instead.
    options.liveness_interval = std::chrono::seconds(10);
    test::Child producer([&] {
        ::close(pipe_fds[1]);
        auto producer_options = options;
        producer_options.buffer_timeout = buffer_timeout;
        auto writer = RecordWriter::attach(name, producer_options);
        flags->producer_ready.store(1);
        // Wait until the consumer is parked on its futex: a record written now can only reach it
        // through the flush policy.
        bool parked = test::eventually([&] { return writer.producer().info().consumer.sleeping; }, 60s);
        CHILD_EXPECT(parked);
        auto bytes = make_record(100, 42);
        CHILD_EXPECT(writer.write(bytes) == Status::ok);
        if (explicit_flush) CHILD_EXPECT(writer.flush() == Status::ok);
        char c;
        (void)!::read(pipe_fds[0], &c, 1);  // blocks until the test closes the pipe
        return 0;
    });
    ::close(pipe_fds[0]);
    test::Child consumer([&] {
        ::close(pipe_fds[1]);
        // Attach after the producer has published its buffer timeout (a sleep already begun
        // keeps its old bound).
        CHILD_EXPECT(test::wait_for_flag(flags->producer_ready, 1, 60s));
        auto reader = RecordReader::attach(name, options);
        Record record;
        Status status = reader.read(record);
        CHILD_EXPECT(status == Status::ok);
        flags->content_ok.store(check_record(record.bytes, 42, 100).empty() ? 1 : 0);
        flags->received.store(1);
        return 0;
    });
    bool received = test::eventually([&] { return flags->received.load() == 1; }, 9s);
    CHECK_MESSAGE(received, "the parked consumer did not get the record before its 10 s backstop");
    CHECK(flags->content_ok.load() == 1);
    ::close(pipe_fds[1]);
    if (received) CHECK(consumer.exit_code() == 0);
    CHECK(producer.exit_code() == 0);
}

}  // namespace

TEST_CASE("a parked consumer gets a record the producer never flushed, after the buffer timeout") {
    flush_case(50ms, false, false);
}

TEST_CASE("latency mode (buffer timeout 0) wakes a parked consumer for the record") {
    flush_case(0ms, false, false);
}

TEST_CASE("explicit flush wakes a parked consumer (buffer timeout of an hour)") {
    SUBCASE("without checksums") { flush_case(std::chrono::hours(1), true, false); }
    SUBCASE("with checksums: flush hands over the partly filled segment") { flush_case(std::chrono::hours(1), true, true); }
}

}  // TEST_SUITE
