// SPDX-License-Identifier: Apache-2.0
// Producer restart, exactly-once: a RecordWriter that replaces a dead one resumes at
// completed_records(), and the consumer sees every record number exactly once, in order, across
// kills at random points (real processes, SIGKILL) and at each point of the protocol (a death
// simulated by rolling the shared header back to what it held at that point).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "support.hpp"

using namespace shmchan;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t kSegment = 4096;  // payload 4032: records of 5 KiB and more span
constexpr std::chrono::seconds kReadDeadline{30};

// The stream every producer of a test writes: record n is a function of n alone, so that a
// replacement that resumes at any n writes what the dead one would have. Records come in groups
// of 8; a group is written as a batch (one size: runs), or record by record with sizes from 8
// bytes to records that span segments, through write(), reserve()/commit() or write_batch() of
// one; a user event now and then, which is not counted.
struct Plan {
    static std::uint64_t group(std::uint64_t n) { return n / 8; }
    static bool batched(std::uint64_t n) { return test::mix(group(n) * 3 + 1) % 3 == 0; }
    static std::size_t size(std::uint64_t n) {
        if (batched(n)) return 8 + test::mix(group(n)) % 200;
        const std::uint64_t h = test::mix(n * 7 + 5);
        switch (h % 10) {
            case 0: return 5000 + (h >> 8) % 12000;  // spans 2 to 5 segments
            case 1: return 1024 + (h >> 8) % 2500;   // a run of one, on a cache line
            default: return 8 + (h >> 8) % 400;
        }
    }
    static void fill(std::uint64_t n, std::span<std::byte> out) {
        std::memcpy(out.data(), &n, sizeof n);
        for (std::size_t i = sizeof n; i < out.size(); ++i) out[i] = static_cast<std::byte>(test::mix(n + i) & 0xff);
    }
    static std::vector<std::byte> record(std::uint64_t n) {
        std::vector<std::byte> bytes(size(n));
        fill(n, bytes);
        return bytes;
    }
    static std::string check(std::span<const std::byte> bytes, std::uint64_t n) {
        if (bytes.size() != size(n)) return "record " + std::to_string(n) + " of " + std::to_string(bytes.size()) + " bytes";
        std::vector<std::byte> expected = record(n);
        if (std::memcmp(bytes.data(), expected.data(), expected.size()) != 0) return "record " + std::to_string(n) + " bytes differ";
        return "";
    }
    static std::uint64_t number(std::span<const std::byte> bytes) {
        std::uint64_t n = ~std::uint64_t{0};
        if (bytes.size() >= sizeof n) std::memcpy(&n, bytes.data(), sizeof n);
        return n;
    }
};

// Writes records [from, to) of the plan. ok, or the first failing status.
Status write_plan(RecordWriter& writer, std::uint64_t from, std::uint64_t to) {
    std::uint64_t n = from;
    while (n < to) {
        if (Plan::batched(n)) {
            const std::uint64_t end = std::min<std::uint64_t>(to, (Plan::group(n) + 1) * 8);
            const std::size_t size = Plan::size(n);
            std::vector<std::byte> batch((end - n) * size);
            for (std::uint64_t i = n; i < end; ++i) Plan::fill(i, std::span(batch).subspan((i - n) * size, size));
            std::size_t written = 0;
            if (Status status = writer.write_batch(batch, size, written); status != Status::ok) return status;
            n = end;
            continue;
        }
        const std::uint64_t how = test::mix(n * 11 + 3) % 4;
        const std::size_t size = Plan::size(n);
        Status status;
        if (how == 0 && size <= writer.max_inline_record()) {
            std::span<std::byte> room;
            status = writer.reserve(size, room);
            if (status == Status::ok) {
                Plan::fill(n, room);
                status = writer.commit(size);
            }
        } else if (how == 1) {
            std::vector<std::byte> one = Plan::record(n);
            std::size_t written = 0;
            status = writer.write_batch(one, size, written);
        } else {
            status = writer.write(Plan::record(n));
        }
        if (status != Status::ok) return status;
        if (test::mix(n) % 16 == 0) {
            const std::byte payload[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
            if (Status event = writer.write_event(7, payload); event != Status::ok) return event;
        }
        ++n;
    }
    return Status::ok;
}

ChannelOptions restart_options(std::uint32_t segment_count, bool checksums) {
    ChannelOptions options = test::geometry(kSegment, segment_count);
    options.framing = Framing::records;
    options.checksums = checksums;
    options.buffer_timeout = 1ms;  // with checksums, the reader gets partly filled segments soon
    return options;
}

// A producer child: resumes at completed_records() and writes the plan up to `total`, then ends
// the stream. Reports where it resumed in `resumed_at` (for the message of a failure).
test::Child producer_child(const std::string& name, const ChannelOptions& options, std::uint64_t total,
                           std::atomic<std::uint64_t>* resumed_at) {
    return test::Child([=] {
        auto writer = RecordWriter::attach(name, options);
        const std::uint64_t from = writer.completed_records();
        resumed_at->store(from);
        CHILD_EXPECT(from <= total);
        CHILD_EXPECT(write_plan(writer, from, total) == Status::ok);
        CHILD_EXPECT(writer.completed_records() == total);
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
}

// Reads the whole stream: every number once, in order, intact; events skipped. Returns the
// problem, or "" when all `total` arrived and the stream ended.
struct StreamCheck {
    std::uint64_t next = 0;
    std::string problem;
    bool take(const Record& record) {
        if (record.kind != RecordKind::record) return true;
        const std::uint64_t n = Plan::number(record.bytes);
        if (n != next) {
            problem = "got record " + std::to_string(n) + ", expected " + std::to_string(next);
            return false;
        }
        problem = Plan::check(record.bytes, n);
        if (!problem.empty()) return false;
        ++next;
        return true;
    }
};

// Reads the stream to its end with `reader`; CHECKs that records 0 .. total-1 came, each once.
void read_whole_stream(RecordReader& reader, std::uint64_t total) {
    StreamCheck check;
    Status status = Status::ok;
    while (true) {
        Record record;
        status = reader.read_for(record, kReadDeadline);
        if (status == Status::peer_died) continue;  // the successor has not attached yet
        if (status != Status::ok) break;
        REQUIRE_MESSAGE(check.take(record), check.problem);
    }
    CHECK_MESSAGE(status == Status::end_of_stream, to_string(status) << " " << reader.last_error());
    CHECK(check.next == total);
}

std::size_t segment_offset(std::uint64_t slot) { return layout::kHeaderBytes + slot * kSegment; }

// What a death at one point of the protocol leaves behind, made from the state of a producer that
// died after segment `boundary` - 1 was published and `boundary` taken (or further on).
enum class DeathPoint {
    committed_not_published,  // segment boundary - 1: final committed bytes, `published` not stored
    published_not_taken,      // `published` = boundary, the next slot not taken yet
    taken_nothing_committed,  // segment boundary taken (sequence stored), no byte committed
};
const char* to_string(DeathPoint point) {
    switch (point) {
        case DeathPoint::committed_not_published: return "committed, not published";
        case DeathPoint::published_not_taken: return "published, next not taken";
        case DeathPoint::taken_nothing_committed: return "next taken, nothing committed";
    }
    return "?";
}
// Rolls the header back: segments after the last one in use are untaken (sequence 0, as in a
// fresh file; their positions are not 0).
void roll_back(test::MappedFile& file, std::uint64_t published, std::uint64_t boundary, DeathPoint point) {
    const std::uint64_t in_use = point == DeathPoint::committed_not_published ? boundary - 1
                                 : point == DeathPoint::published_not_taken   ? boundary - 1
                                                                              : boundary;
    for (std::uint64_t slot = in_use + 1; slot <= published; ++slot) {
        file.poke64(segment_offset(slot) + offsetof(layout::SegmentHeader, sequence), 0);
    }
    if (point == DeathPoint::taken_nothing_committed) {
        file.poke32(segment_offset(boundary) + offsetof(layout::SegmentHeader, committed_bytes), 0);
    }
    file.poke64(test::offsets::published, point == DeathPoint::committed_not_published ? boundary - 1 : boundary);
}

void kill_at_random_points(bool checksums, int kills) {
    CAPTURE(checksums);
    const std::string name = test::unique_name("restart-random");
    const ChannelOptions options = restart_options(4, checksums);
    const std::uint64_t total = 40 * static_cast<std::uint64_t>(kills) + 400;
    test::SharedBlock<std::atomic<std::uint64_t>> resumed_at;
    std::mt19937_64 rng(checksums ? 11 : 7);

    auto reader = RecordReader::attach(name, options);
    std::optional<test::Child> producer;
    producer.emplace(producer_child(name, options, total, &*resumed_at));
    StreamCheck check;
    int killed = 0;
    std::uint64_t kill_after = check.next + rng() % 80;
    bool stall = false;  // stop reading, let the producer block on a full ring, then kill it
    Status status = Status::ok;
    while (true) {
        if (producer && killed < kills && (check.next >= kill_after || stall)) {
            if (stall) {
                // Blocked in the middle of a record or waiting for a segment (a spanning record
                // often): the ring is full.
                REQUIRE(test::eventually([&] {
                    auto info = reader.consumer().info();
                    return info.published - info.released == 4 || !info.producer.alive;
                }, 60s));
            }
            producer->kill(SIGKILL);
            const int code = producer->exit_code();
            REQUIRE_MESSAGE((code == -(100 + SIGKILL) || code == 0), "producer exit " << code);
            producer.reset();
            ++killed;
            stall = rng() % 5 == 0;
            kill_after = check.next + rng() % 80;
        }
        Record record;
        status = reader.read_for(record, kReadDeadline);
        if (status == Status::peer_died) {
            if (!producer) {
                producer.emplace(producer_child(name, options, total, &*resumed_at));
            }
            continue;
        }
        if (status != Status::ok) break;
        REQUIRE_MESSAGE(check.take(record), check.problem << " after " << killed << " kills (last resume at "
                                                          << resumed_at->load() << ")");
    }
    CHECK_MESSAGE(status == Status::end_of_stream, to_string(status) << " " << reader.last_error());
    CHECK(check.next == total);
    CHECK(killed == kills);
    REQUIRE(producer);
    CHECK(producer->exit_code() == 0);
}

}  // namespace

TEST_SUITE("restart") {

TEST_CASE("producers killed at random points: each successor resumes at completed_records(), exactly once") {
    kill_at_random_points(/*checksums=*/false, 50);
    kill_at_random_points(/*checksums=*/true, 20);
}

TEST_CASE("a producer that dies right after a call returns: the successor resumes after what it committed") {
    // After write(), write_batch() and commit_run() the records are committed, in a segment not
    // yet published: counted. A reserve() or reserve_run() without its commit: not counted.
    enum class Last { write, batch, reserve_only, run_only, run_committed };
    for (Last last : {Last::write, Last::batch, Last::reserve_only, Last::run_only, Last::run_committed}) {
        CAPTURE(static_cast<int>(last));
        const std::string name = test::unique_name("restart-call");
        const ChannelOptions options = restart_options(64, false);
        constexpr std::uint64_t kFirst = 21, kTotal = 60;
        test::Child dying([&] {
            auto writer = RecordWriter::attach(name, options);
            CHILD_EXPECT(write_plan(writer, 0, kFirst) == Status::ok);
            std::span<std::byte> room;
            std::size_t count = 0;
            switch (last) {
                case Last::write: CHILD_EXPECT(writer.write(Plan::record(kFirst)) == Status::ok); break;
                case Last::batch: CHILD_EXPECT(write_plan(writer, kFirst, kFirst + 1) == Status::ok); break;
                case Last::reserve_only:
                    CHILD_EXPECT(writer.reserve(Plan::size(kFirst), room) == Status::ok);
                    Plan::fill(kFirst, room);
                    break;
                case Last::run_only:
                case Last::run_committed:
                    CHILD_EXPECT(writer.reserve_run(Plan::size(kFirst), 1, room, count) == Status::ok);
                    Plan::fill(kFirst, room);
                    if (last == Last::run_committed) CHILD_EXPECT(writer.commit_run(1) == Status::ok);
                    break;
            }
            ::raise(SIGKILL);
            return 7;
        });
        CHECK(dying.exit_code() == -(100 + SIGKILL));
        std::uint64_t resumed = 0;
        {
            auto writer = RecordWriter::attach(name, options);
            resumed = writer.completed_records();
            const bool counted = last == Last::write || last == Last::batch || last == Last::run_committed;
            CHECK(resumed == kFirst + (counted ? 1 : 0));
            REQUIRE(write_plan(writer, resumed, kTotal) == Status::ok);
            CHECK(writer.completed_records() == kTotal);
            REQUIRE(writer.end_stream() == Status::ok);
        }
        auto reader = RecordReader::attach(name, options);
        read_whole_stream(reader, kTotal);
    }
}

TEST_CASE("a producer that dies at each point of the protocol between two segments: exactly once") {
    // One real stream, written by a producer that then dies holding a segment; for each segment
    // boundary and each point of the hand-over, the header is rolled back to what a death there
    // leaves, a successor resumes at completed_records() and writes the rest, and a reader must
    // get every record once. The count agrees across the points of one boundary.
    constexpr std::uint64_t kFirst = 45, kTotal = 80;
    const ChannelOptions options = restart_options(64, false);
    auto write_and_die = [&](const std::string& name) {
        test::Child dying([&] {
            auto writer = RecordWriter::attach(name, options);
            CHILD_EXPECT(write_plan(writer, 0, kFirst) == Status::ok);
            ::raise(SIGKILL);
            return 7;
        });
        REQUIRE(dying.exit_code() == -(100 + SIGKILL));
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        return file.peek64(test::offsets::published);
    };
    const std::uint64_t published = write_and_die(test::unique_name("restart-probe"));
    REQUIRE(published >= 4);
    REQUIRE(published < 60);
    std::uint64_t previous_count = 0;
    for (std::uint64_t boundary = 1; boundary <= published; ++boundary) {
        std::optional<std::uint64_t> count;
        for (DeathPoint point :
             {DeathPoint::committed_not_published, DeathPoint::published_not_taken, DeathPoint::taken_nothing_committed}) {
            CAPTURE(boundary);
            CAPTURE(to_string(point));
            const std::string name = test::unique_name("restart-point");
            REQUIRE(write_and_die(name) == published);
            {
                test::MappedFile file(test::path_of(name));
                REQUIRE(file.ok());
                roll_back(file, published, boundary, point);
            }
            std::uint64_t resumed = 0;
            {
                auto writer = RecordWriter::attach(name, options);
                resumed = writer.completed_records();
                REQUIRE(write_plan(writer, resumed, kTotal) == Status::ok);
                REQUIRE(writer.end_stream() == Status::ok);
            }
            if (count) CHECK(resumed == *count);
            count = resumed;
            CHECK(resumed >= previous_count);
            auto reader = RecordReader::attach(name, options);
            read_whole_stream(reader, kTotal);
        }
        previous_count = *count;
    }
    CHECK(previous_count < kFirst);  // the last boundary's records before the held segment
}

TEST_CASE("a ring of one segment: a producer that died resetting the slot for the next segment") {
    // With one segment, taking the next resets the slot before its sequence changes: the count of
    // the segment before must survive that (end_record_ordinal, which the reset leaves alone).
    for (bool interrupted : {false, true}) {
        CAPTURE(interrupted);
        const std::string name = test::unique_name("restart-one");
        const ChannelOptions options = restart_options(1, false);
        constexpr std::uint64_t kTotal = 50;
        auto reader = RecordReader::attach(name, options);
        StreamCheck check;
        std::uint64_t written = 0;
        {
            auto writer = RecordWriter::attach(name, options);
            // Records until one does not fit: try_write hands the segment over first and then
            // refuses (would_block; invalid_call for a record larger than the ring).
            while (true) {
                Status status = writer.try_write(Plan::record(written));
                if (status == Status::would_block || status == Status::invalid_call) break;
                REQUIRE(status == Status::ok);
                ++written;
            }
            REQUIRE(written > 0);
            REQUIRE(writer.producer().info().published == 1);
            Record record;
            while (reader.try_read(record) == Status::ok) REQUIRE_MESSAGE(check.take(record), check.problem);
            REQUIRE(check.next == written);
        }  // a clean detach leaves what a death does here
        if (interrupted) {
            // The reset of the slot for segment 1 half done: its sequence (and first ordinal) still
            // say segment 0, its committed bytes and flags are gone.
            test::MappedFile file(test::path_of(name));
            REQUIRE(file.ok());
            REQUIRE(reader.consumer().info().released == 1);
            file.poke32(segment_offset(0) + offsetof(layout::SegmentHeader, committed_bytes), 0);
            file.poke32(segment_offset(0) + offsetof(layout::SegmentHeader, flags), 0);
            file.poke32(segment_offset(0) + offsetof(layout::SegmentHeader, record_count), 0);
            file.poke32(segment_offset(0) + offsetof(layout::SegmentHeader, first_record_offset), 0);
        }
        test::SharedBlock<std::atomic<std::uint64_t>> resumed_at;
        test::Child successor = producer_child(name, options, kTotal, &*resumed_at);
        Status status = Status::ok;
        while (true) {
            Record record;
            status = reader.read_for(record, kReadDeadline);
            if (status == Status::peer_died) continue;
            if (status != Status::ok) break;
            REQUIRE_MESSAGE(check.take(record), check.problem);
        }
        CHECK(status == Status::end_of_stream);
        CHECK(check.next == kTotal);
        CHECK(resumed_at->load() == written);
        CHECK(successor.exit_code() == 0);
    }
}

}  // TEST_SUITE
