// SPDX-License-Identifier: Apache-2.0
// The records layer (channels/records.hpp) across real processes: round trips of every awkward
// size (with and without checksums, small and default geometry, records larger than the ring),
// events in order, the flush policy, zero-copy reserve/commit, typed records, restart of a killed
// consumer (at-least-once, exactly-once with skip_through, a lost record larger than the ring),
// restart of a killed producer mid-record, a reader fed mutated and random shared memory, and no
// heap allocation in steady state (an operator new hook defined in this file).
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "channels/detail/hooks.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "support.hpp"

// ---- Allocation counting ---------------------------------------------------------------------
// The one replacement of the global allocation functions in the test binary (no other test file
// defines one). Each thread counts its own allocations; everything is forwarded to malloc/free.
namespace {
thread_local std::uint64_t t_allocations = 0;

void* counted_alloc(std::size_t size) {
    ++t_allocations;
    return std::malloc(size ? size : 1);
}
void* counted_aligned_alloc(std::size_t size, std::align_val_t alignment) {
    ++t_allocations;
    void* memory = nullptr;
    std::size_t align = std::max(static_cast<std::size_t>(alignment), sizeof(void*));
    if (::posix_memalign(&memory, align, size ? size : 1) != 0) return nullptr;
    return memory;
}
}  // namespace

void* operator new(std::size_t size) {
    if (void* memory = counted_alloc(size)) return memory;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
    if (void* memory = counted_alloc(size)) return memory;
    throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new(std::size_t size, std::align_val_t alignment) {
    if (void* memory = counted_aligned_alloc(size, alignment)) return memory;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
    if (void* memory = counted_aligned_alloc(size, alignment)) return memory;
    throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    return counted_aligned_alloc(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    return counted_aligned_alloc(size, alignment);
}
// GCC sees free() of memory from operator new once the two are inlined together; that is the
// point of this replacement.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete[](void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::size_t) noexcept { std::free(memory); }
void operator delete(void* memory, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete[](void* memory, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete(void* memory, std::align_val_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::align_val_t) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t, std::align_val_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::size_t, std::align_val_t) noexcept { std::free(memory); }
void operator delete(void* memory, std::align_val_t, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete[](void* memory, std::align_val_t, const std::nothrow_t&) noexcept { std::free(memory); }

using namespace std::chrono_literals;
using shmchan::ChannelOptions;
using shmchan::Record;
using shmchan::RecordKind;
using shmchan::RecordPosition;
using shmchan::RecordReader;
using shmchan::RecordRun;
using shmchan::RecordWriter;
using shmchan::Status;
using shmchan::WaitStrategy;
namespace test = shmchan::test;
namespace L = shmchan::layout;

// A user type with its own codec: a name and a vector of ints.
namespace recordtest {
struct Bag {
    std::string name;
    std::vector<int> values;
    friend bool operator==(const Bag&, const Bag&) = default;
};
struct Trade {
    std::int64_t id;
    double price;
    char venue[8];
};
}  // namespace recordtest

template <>
struct shmchan::Codec<recordtest::Bag> {
    // [u32 name length][name][u32 count][int...]
    static std::size_t size(const recordtest::Bag& bag) {
        return 4 + bag.name.size() + 4 + bag.values.size() * sizeof(int);
    }
    static void encode(const recordtest::Bag& bag, std::span<std::byte> out) {
        std::byte* at = out.data();
        std::uint32_t n = static_cast<std::uint32_t>(bag.name.size());
        std::memcpy(at, &n, 4);
        at += 4;
        if (n) std::memcpy(at, bag.name.data(), n);
        at += n;
        std::uint32_t count = static_cast<std::uint32_t>(bag.values.size());
        std::memcpy(at, &count, 4);
        at += 4;
        if (count) std::memcpy(at, bag.values.data(), count * sizeof(int));
    }
    static bool decode(std::span<const std::byte> in, recordtest::Bag& out) {
        if (in.size() < 8) return false;
        std::uint32_t n;
        std::memcpy(&n, in.data(), 4);
        if (n > in.size() - 8) return false;
        out.name.assign(reinterpret_cast<const char*>(in.data() + 4), n);
        std::uint32_t count;
        std::memcpy(&count, in.data() + 4 + n, 4);
        if (std::uint64_t{count} * sizeof(int) != in.size() - 8 - n) return false;
        out.values.resize(count);
        if (count) std::memcpy(out.values.data(), in.data() + 8 + n, count * sizeof(int));
        return true;
    }
};

namespace {

constexpr std::uint32_t kSmallSegment = 4096;
constexpr std::uint32_t kSmallCount = 4;
constexpr std::uint32_t kPayload = kSmallSegment - L::kSegmentHeaderBytes;  // 4032
constexpr auto kDeadline = std::chrono::seconds(60);                       // per blocking call

ChannelOptions records_options(std::optional<std::uint32_t> segment_size = std::nullopt,
                               std::optional<std::uint32_t> segment_count = std::nullopt, bool checksums = false) {
    ChannelOptions options;
    options.segment_size = segment_size;
    options.segment_count = segment_count;
    options.framing = L::Framing::records;
    options.checksums = checksums;
    return options;
}

// Record `index` of a test stream: its first 8 bytes hold the index (when it has 8), every other
// byte is a function of (index, offset).
void fill_record(std::byte* out, std::size_t size, std::uint64_t index) {
    std::uint64_t x = test::mix(index * 0x9e3779b97f4a7c15ull + 0x1234567ull);
    std::size_t at = 0;
    if (size >= 8) {
        std::memcpy(out, &index, 8);
        at = 8;
    }
    while (at < size) {
        x += 0x9e3779b97f4a7c15ull;
        std::uint64_t word = test::mix(x);
        std::size_t n = std::min<std::size_t>(8, size - at);
        std::memcpy(out + at, &word, n);
        at += n;
    }
}

std::vector<std::byte> make_record(std::size_t size, std::uint64_t index) {
    std::vector<std::byte> bytes(size);
    fill_record(bytes.data(), size, index);
    return bytes;
}

// Empty if `bytes` is record `index` of `size` bytes; otherwise what differs.
std::string check_record(std::span<const std::byte> bytes, std::uint64_t index, std::size_t size) {
    if (bytes.size() != size) {
        return "record " + std::to_string(index) + ": size " + std::to_string(bytes.size()) + ", expected " +
               std::to_string(size);
    }
    static thread_local std::vector<std::byte> expected;
    expected.resize(size);
    fill_record(expected.data(), size, index);
    if (size == 0 || std::memcmp(bytes.data(), expected.data(), size) == 0) return {};
    std::size_t at = 0;
    while (bytes[at] == expected[at]) ++at;
    return "record " + std::to_string(index) + " of " + std::to_string(size) + " bytes differs at byte " +
           std::to_string(at);
}

// The index a test record carries (records of at least 8 bytes).
std::uint64_t index_of(std::span<const std::byte> bytes) {
    std::uint64_t index = ~0ull;
    if (bytes.size() >= 8) std::memcpy(&index, bytes.data(), 8);
    return index;
}

std::string describe(Status status) { return shmchan::to_string(status); }

// A list of record sizes: the edge sizes of the geometry, then `random_count` random ones (mostly
// small, some up to a segment, some spanning up to `max_large`).
std::vector<std::size_t> make_sizes(std::uint32_t segment_size, std::size_t random_count, std::size_t max_large,
                                    std::uint64_t seed) {
    const std::size_t payload = segment_size - L::kSegmentHeaderBytes;
    const std::size_t inline_max = payload - L::kFrameHeaderBytes;
    std::vector<std::size_t> sizes = {0, 1, 2, 7, 8, 9, inline_max - 1, inline_max, inline_max + 1,
                                      payload, segment_size, std::size_t{10} * segment_size, 0, 1, inline_max};
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < random_count; ++i) {
        std::uint64_t kind = rng() % 10;
        if (kind < 6) sizes.push_back(rng() % 200);
        else if (kind < 9) sizes.push_back(rng() % (payload + 64));
        else sizes.push_back(rng() % max_large);
    }
    return sizes;
}

// Producer body: writes each record, then ends the stream. 0 on success.
int write_records(const std::string& name, const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::byte> buffer;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        buffer.resize(sizes[i]);
        fill_record(buffer.data(), sizes[i], i);
        Status status = writer.write(std::span<const std::byte>(buffer.data(), sizes[i]));
        if (status != Status::ok) {
            std::fprintf(stderr, "producer: write %zu (%zu bytes): %s %s\n", i, sizes[i], describe(status).c_str(),
                         writer.last_error().c_str());
            return 3;
        }
    }
    CHILD_EXPECT(writer.end_stream() == Status::ok);
    return 0;
}

// The round trip: a producer process writes `sizes`, this process reads and checks them.
void round_trip(const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
    const std::string name = test::unique_name("rec-rt");
    test::Child producer([&] { return write_records(name, options, sizes); });
    auto reader = RecordReader::attach(name, options);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        Record record;
        Status status = reader.read_for(record, kDeadline);
        REQUIRE_MESSAGE(status == Status::ok, "record " << i << " (" << sizes[i] << " bytes): " << describe(status)
                                                        << " " << reader.last_error());
        REQUIRE(record.kind == RecordKind::record);
        std::string problem = check_record(record.bytes, i, sizes[i]);
        if (!problem.empty() && ++bad <= 5) FAIL_CHECK(problem);
    }
    CHECK(bad == 0);
    Record record;
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
    reader.remove_channel();
}

}  // namespace

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

// ---- 4. Zero-copy and limits ------------------------------------------------------------------------

TEST_CASE("zero-copy reserve/commit across processes") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-zc");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        // (reserved, used) pairs; the record is the first `used` bytes.
        std::vector<std::pair<std::size_t, std::size_t>> plan = {
            {0, 0}, {1, 1}, {100, 10}, {100, 0}, {kPayload - 8, kPayload - 8}, {kPayload - 8, 1}, {64, 64}};
        std::mt19937_64 rng(99);
        for (int i = 0; i < 2000; ++i) {
            std::size_t reserved = rng() % 4 == 0 ? rng() % (kPayload - 7) : rng() % 300;
            plan.push_back({reserved, reserved ? rng() % (reserved + 1) : 0});
        }
        test::Child producer([&] {
            auto writer = RecordWriter::attach(name, options);
            CHILD_EXPECT(writer.max_inline_record() == kPayload - 8);
            for (std::size_t i = 0; i < plan.size(); ++i) {
                std::span<std::byte> room;
                CHILD_EXPECT(writer.reserve(plan[i].first, room) == Status::ok);
                CHILD_EXPECT(room.size() == plan[i].first);
                fill_record(room.data(), plan[i].second, i);
                CHILD_EXPECT(writer.commit(plan[i].second) == Status::ok);
            }
            CHILD_EXPECT(writer.end_stream() == Status::ok);
            return 0;
        });
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < plan.size(); ++i) {
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, i << ": " << describe(status) << " " << reader.last_error());
            REQUIRE(check_record(record.bytes, i, plan[i].second) == "");
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
        CHECK(producer.exit_code() == 0);
    }
}

TEST_CASE("reserve/commit misuse and records over the maximum are refused, nothing written") {
    const std::string name = test::unique_name("rec-limits");
    auto options = records_options(kSmallSegment, kSmallCount);
    options.max_record_bytes = 10000;
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    CHECK(writer.max_record_bytes() == 10000);
    std::span<std::byte> room;

    CHECK(writer.commit(0) == Status::invalid_call);  // commit without reserve
    CHECK_FALSE(writer.last_error().empty());
    CHECK(writer.reserve(writer.max_inline_record() + 1, room) == Status::too_large);
    CHECK(writer.try_reserve(writer.max_inline_record() + 1, room) == Status::too_large);
    CHECK(writer.commit(1) == Status::invalid_call);  // the refused reserve reserved nothing

    auto over = make_record(10001, 0);
    CHECK(writer.write(over) == Status::too_large);
    CHECK_FALSE(writer.last_error().empty());
    CHECK(writer.try_write(over) == Status::too_large);
    CHECK(writer.write_for(over, 10ms) == Status::too_large);
    std::string too_long(10001, 'x');
    CHECK(writer.write_value(too_long) == Status::too_large);

    REQUIRE(writer.reserve(50, room) == Status::ok);
    CHECK(writer.commit(51) == Status::invalid_call);  // more than reserved
    REQUIRE(writer.reserve(50, room) == Status::ok);   // a second reserve drops the first
    fill_record(room.data(), 20, 1);
    CHECK(writer.commit(20) == Status::ok);
    CHECK(writer.commit(0) == Status::invalid_call);  // commit twice
    auto exact = make_record(10000, 2);
    CHECK(writer.write(exact) == Status::ok);          // exactly the maximum is fine
    CHECK(writer.end_stream() == Status::ok);

    Record record;
    REQUIRE(reader.try_read(record) == Status::ok);
    CHECK(check_record(record.bytes, 1, 20) == "");
    REQUIRE(reader.try_read(record) == Status::ok);
    CHECK(check_record(record.bytes, 2, 10000) == "");
    CHECK(reader.try_read(record) == Status::end_of_stream);
}

// ---- 4b. Batches ----------------------------------------------------------------------------------

namespace {
// A batch plan: runs of fixed-size records (write_batch), single writes and barriers between
// them. Record sizes cover the inline path's fixed-size copies (8 .. 128), odd sizes, the largest
// inline record and records that span segments; counts from 1 to past a segment.
struct BatchItem {
    enum Kind { batch, single, barrier } kind;
    std::size_t size;
    std::size_t count;
};
std::vector<BatchItem> batch_plan(std::uint32_t segment_size, std::size_t items, std::uint64_t seed) {
    const std::size_t inline_max = segment_size - L::kSegmentHeaderBytes - L::kFrameHeaderBytes;
    const std::size_t sizes[] = {8, 16, 24, 32, 64, 100, 128, 1000, inline_max - 8, inline_max, inline_max + 8,
                                 std::size_t{3} * segment_size};
    std::mt19937_64 rng(seed);
    std::vector<BatchItem> plan;
    for (std::size_t i = 0; i < items; ++i) {
        const std::uint64_t dice = rng() % 10;
        const std::size_t size = sizes[rng() % std::size(sizes)];
        if (dice < 7) {
            const std::size_t most = std::max<std::size_t>(1, std::min<std::size_t>(600, 6 * segment_size / size));
            plan.push_back({BatchItem::batch, size, 1 + rng() % most});
        } else if (dice < 9) {
            plan.push_back({BatchItem::single, size, 1});
        } else {
            plan.push_back({BatchItem::barrier, 0, 1});
        }
    }
    return plan;
}
// A plan's stream, flattened: a record (size, index) or a barrier (checkpoint id = the index of
// the record after it).
struct Expected {
    bool barrier;
    std::size_t size;
    std::uint64_t index;
};
std::vector<Expected> flatten(const std::vector<BatchItem>& plan) {
    std::vector<Expected> expected;
    std::uint64_t index = 0;
    for (const BatchItem& item : plan) {
        if (item.kind == BatchItem::barrier) {
            expected.push_back({true, 0, index});
        } else {
            for (std::size_t k = 0; k < item.count; ++k) expected.push_back({false, item.size, index + k});
            index += item.count;
        }
    }
    return expected;
}
// Producer body for a plan: barriers (checkpoint id = the next record's index), records filled
// with their indices into `records`, each item written by write_item(writer, item, records, rng);
// now and then a flush; then end of stream. 0 on success.
template <class WriteItem>
int write_plan(const std::string& name, const ChannelOptions& options, const std::vector<BatchItem>& plan,
               std::uint64_t seed, WriteItem write_item) {
    ::alarm(120);
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::byte> records;
    std::uint64_t index = 0;
    std::mt19937_64 rng(seed);
    for (const BatchItem& item : plan) {
        Status status;
        if (item.kind == BatchItem::barrier) {
            status = writer.write_barrier(index);
        } else {
            records.resize(item.size * item.count);
            for (std::size_t k = 0; k < item.count; ++k) fill_record(records.data() + k * item.size, item.size, index + k);
            status = write_item(writer, item, std::span<const std::byte>(records), rng);
            index += item.count;
        }
        if (status != Status::ok) {
            std::fprintf(stderr, "producer: %s %s\n", describe(status).c_str(), writer.last_error().c_str());
            return 3;
        }
        if (rng() % 8 == 0) CHILD_EXPECT(writer.flush() == Status::ok);
    }
    CHILD_EXPECT(writer.end_stream() == Status::ok);
    return 0;
}
}  // namespace

TEST_CASE("batches: write_batch and read_batch across processes, every record once, in order, intact") {
    const std::size_t items = test::kSanitized ? 150 : 600;
    for (bool checksums : {false, true}) {
        for (std::uint32_t segment_size : {kSmallSegment, L::kDefaultSegmentSize}) {
            CAPTURE(checksums);
            CAPTURE(segment_size);
            const std::string name = test::unique_name("rec-batch");
            auto options = records_options(segment_size, 4, checksums);
            const auto plan = batch_plan(segment_size, items, segment_size + checksums);
            test::Child producer([&] {
                return write_plan(name, options, plan, 7,
                                  [](RecordWriter& writer, const BatchItem& item, std::span<const std::byte> records,
                                     std::mt19937_64& rng) {
                                      if (item.kind == BatchItem::single) return writer.write(records);
                                      std::size_t written = ~std::size_t{0};
                                      const Status status = rng() % 4 == 0
                                                                ? writer.write_batch_for(records, item.size, written, kDeadline)
                                                                : writer.write_batch(records, item.size, written);
                                      // A wrong count fails the producer (write_plan prints it).
                                      if (status == Status::ok && written != item.count) return Status::invalid_call;
                                      return status;
                                  });
            });
            const std::vector<Expected> expected = flatten(plan);
            auto reader = RecordReader::attach(name, options);
            std::size_t next = 0, bad = 0, calls = 0, events_not_first = 0;
            std::mt19937_64 rng(3);
            for (;;) {
                std::size_t in_call = 0;
                auto check = [&](const Record& record) {
                    if (record.kind != RecordKind::record && in_call != 0) ++events_not_first;
                    ++in_call;
                    if (next >= expected.size()) {
                        ++bad;
                        return;
                    }
                    const Expected& want = expected[next++];
                    if (want.barrier) {
                        if (record.kind != RecordKind::barrier || record.checkpoint_id != want.index) ++bad;
                    } else if (record.kind != RecordKind::record) {
                        ++bad;
                    } else {
                        std::string problem = check_record(record.bytes, want.index, want.size);
                        if (!problem.empty() && ++bad <= 5) FAIL_CHECK(problem);
                    }
                };
                const std::size_t limit = rng() % 3 == 0 ? 1 + rng() % 5 : 1 + rng() % 2000;
                std::size_t delivered = ~std::size_t{0};
                Status status;
                const std::uint64_t how = rng() % 4;
                if (how == 0) {
                    // A try does not watch the producer's liveness: bounded by the deadline.
                    const auto until = std::chrono::steady_clock::now() + kDeadline;
                    while ((status = reader.try_read_batch(check, limit, delivered)) == Status::would_block) {
                        CHECK(delivered == 0);
                        REQUIRE(std::chrono::steady_clock::now() < until);
                        ::sched_yield();
                    }
                } else if (how == 1) {
                    status = reader.read_batch_for(check, limit, delivered, kDeadline);
                } else {
                    status = reader.read_batch(check, limit, delivered);
                }
                ++calls;
                if (status == Status::end_of_stream) {
                    CHECK(delivered == 0);
                    break;
                }
                REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
                CHECK(delivered == in_call);
                CHECK(delivered >= 1);
                CHECK(delivered <= limit);
            }
            CHECK(bad == 0);
            CHECK(next == expected.size());
            CHECK(events_not_first == 0);
            CHECK(calls < expected.size());  // batches did carry more than one record
            CHECK(producer.exit_code() == 0);
            reader.remove_channel();
        }
    }
}

TEST_CASE("write_batch refuses what it cannot frame, writing nothing; after end of stream too") {
    const std::string name = test::unique_name("rec-batch-misuse");
    auto options = records_options(kSmallSegment, kSmallCount);
    options.max_record_bytes = 20000;
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::byte> bytes(64);
    std::size_t written = 99;
    CHECK(writer.write_batch(bytes, 0, written) == Status::invalid_call);
    CHECK(written == 0);
    written = 99;
    CHECK(writer.write_batch(bytes, 24, written) == Status::invalid_call);  // 24 does not divide 64
    CHECK(written == 0);
    CHECK(writer.last_error().find("divide") != std::string::npos);
    std::vector<std::byte> large(20008);
    CHECK(writer.write_batch(large, 20008, written) == Status::too_large);
    CHECK(written == 0);
    CHECK(writer.write_batch(std::span<const std::byte>(), 8, written) == Status::ok);  // nothing to do
    CHECK(written == 0);
    fill_record(bytes.data(), 32, 0);
    fill_record(bytes.data() + 32, 32, 1);
    CHECK(writer.write_batch(bytes, 32, written) == Status::ok);
    CHECK(written == 2);
    CHECK(writer.end_stream() == Status::ok);
    CHECK(writer.write_batch(bytes, 32, written) == Status::invalid_call);
    CHECK(written == 0);

    auto reader = RecordReader::attach(name, options);
    std::vector<std::uint64_t> seen;
    std::size_t delivered = 0;
    auto take = [&](const Record& record) {
        CHECK(check_record(record.bytes, seen.size(), 32) == "");
        seen.push_back(index_of(record.bytes));
    };
    CHECK(reader.read_batch(take, 10, delivered) == Status::ok);
    CHECK(delivered == 2);
    CHECK(reader.read_batch(take, 10, delivered) == Status::end_of_stream);
    CHECK(delivered == 0);
    CHECK(seen == std::vector<std::uint64_t>{0, 1});
    reader.remove_channel();
}

TEST_CASE("write_values: an array of trivially copyable values, one record each, read back typed") {
    const std::string name = test::unique_name("rec-batch-values");
    auto options = records_options(kSmallSegment, kSmallCount);
    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        std::vector<recordtest::Trade> trades(500);  // 32-byte frames: spread over several segments
        for (std::size_t i = 0; i < trades.size(); ++i) {
            trades[i] = recordtest::Trade{static_cast<std::int64_t>(i), 0.25 * static_cast<double>(i), "XNAS"};
        }
        std::size_t written = 0;
        CHILD_EXPECT(writer.write_values(std::span<const recordtest::Trade>(trades), written) == Status::ok);
        CHILD_EXPECT(written == trades.size());
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    auto reader = RecordReader::attach(name, options);
    std::int64_t next = 0;
    recordtest::Trade trade{};
    Status status;
    while ((status = reader.read_value(trade)) == Status::ok) {
        CHECK(trade.id == next);
        CHECK(trade.price == 0.25 * static_cast<double>(next));
        CHECK(std::string(trade.venue) == "XNAS");
        ++next;
    }
    CHECK(status == Status::end_of_stream);
    CHECK(next == 500);
    CHECK(producer.exit_code() == 0);
    reader.remove_channel();
}

TEST_CASE("runs: write_batch and reserve_run/commit_run in, read_run and read_values out, across processes") {
    // Runs of equal records (one run frame per segment they fill), single records, events and
    // spanning records interleaved; the reader takes runs with random limits and checks every
    // record once, in order, with the position of each.
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-runs");
        auto options = records_options(kSmallSegment, 4, checksums);
        const auto plan = batch_plan(kSmallSegment, test::kSanitized ? 150 : 500, 77 + checksums);
        test::Child producer([&] {
            return write_plan(name, options, plan, 5,
                              [](RecordWriter& writer, const BatchItem& item, std::span<const std::byte> records,
                                 std::mt19937_64& rng) {
                                  if (item.kind == BatchItem::batch && item.size <= 1000 && rng() % 2 == 0) {
                                      // In place: as many as each reservation gives, copied there.
                                      Status status = Status::ok;
                                      std::size_t done = 0;
                                      while (done < item.count && status == Status::ok) {
                                          std::span<std::byte> room;
                                          std::size_t count = 0;
                                          status = rng() % 3 == 0
                                                       ? writer.reserve_run_for(item.size, item.count - done, room, count, kDeadline)
                                                       : writer.reserve_run(item.size, item.count - done, room, count);
                                          if (status != Status::ok) break;
                                          if (count < 1 || count > item.count - done || room.size() != count * item.size) {
                                              return Status::invalid_call;  // fails the producer
                                          }
                                          // Sometimes commit fewer than reserved: the rest is not written.
                                          const std::size_t used = count > 1 && rng() % 4 == 0 ? count - 1 : count;
                                          std::memcpy(room.data(), records.data() + done * item.size, used * item.size);
                                          status = writer.commit_run(used);
                                          done += used;
                                      }
                                      return status;
                                  }
                                  std::size_t written = 0;
                                  return item.kind == BatchItem::single ? writer.write(records)
                                                                        : writer.write_batch(records, item.size, written);
                              });
        });
        const std::vector<Expected> expected = flatten(plan);
        auto reader = RecordReader::attach(name, options);
        std::size_t next = 0, bad = 0, runs = 0, longest = 0;
        RecordPosition previous{};
        std::mt19937_64 rng(9);
        for (;;) {
            const std::size_t limit = rng() % 3 == 0 ? 1 + rng() % 5 : 1 + rng() % 2000;
            RecordRun run;
            Status status;
            const std::uint64_t how = rng() % 4;
            if (how == 0) {
                const auto until = std::chrono::steady_clock::now() + kDeadline;
                while ((status = reader.try_read_run(run, limit)) == Status::would_block) {
                    REQUIRE(std::chrono::steady_clock::now() < until);
                    ::sched_yield();
                }
            } else if (how == 1) {
                status = reader.read_run_for(run, limit, kDeadline);
            } else {
                status = reader.read_run(run, limit);
            }
            if (status == Status::end_of_stream) break;
            REQUIRE(next < expected.size());
            if (status == Status::event) {
                CHECK(run.count == 0);
                const Expected& want = expected[next++];
                CHECK(want.barrier);
                CHECK(reader.last().kind == RecordKind::barrier);
                CHECK(reader.last().checkpoint_id == want.index);
                continue;
            }
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            REQUIRE(run.count >= 1);
            CHECK(run.count <= limit);
            CHECK(run.bytes.size() == run.count * run.record_size);
            if (runs > 0) CHECK(previous < run.position);
            previous = run.position;
            ++runs;
            longest = std::max(longest, run.count);
            for (std::size_t k = 0; k < run.count; ++k) {
                REQUIRE(next < expected.size());
                const Expected& want = expected[next++];
                CHECK_FALSE(want.barrier);
                std::string problem = check_record(run.record(k), want.index, want.size);
                if (!problem.empty() && ++bad <= 5) FAIL_CHECK(problem);
            }
        }
        CHECK(bad == 0);
        CHECK(next == expected.size());
        if (!checksums) CHECK(longest > 100);  // runs did carry many records per call
        CHECK(runs < expected.size());
        CHECK(producer.exit_code() == 0);
        reader.remove_channel();
    }
}

TEST_CASE("read_values copies a run of T; decode_error for records of another size; events say so") {
    const std::string name = test::unique_name("rec-read-values");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::uint64_t> values(300);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = i * 7 + 1;
    std::size_t written = 0;
    REQUIRE(writer.write_values(std::span<const std::uint64_t>(values), written) == Status::ok);
    REQUIRE(writer.write_barrier(5) == Status::ok);
    const std::uint32_t odd[3] = {1, 2, 3};
    REQUIRE(writer.write_values(std::span<const std::uint32_t>(odd), written) == Status::ok);
    REQUIRE(writer.write_value(std::uint64_t{99}) == Status::ok);
    REQUIRE(writer.end_stream() == Status::ok);

    auto reader = RecordReader::attach(name, options);
    std::vector<std::uint64_t> got;
    std::uint64_t out[64];
    std::size_t n = 99;
    CHECK(reader.read_values(std::span<std::uint64_t>(out, 0), n) == Status::invalid_call);
    CHECK(n == 0);
    Status status;
    while ((status = reader.read_values(std::span<std::uint64_t>(out), n)) == Status::ok) {
        CHECK(n >= 1);
        CHECK(n <= 64);
        got.insert(got.end(), out, out + n);
    }
    CHECK(got == values);
    CHECK(n == 0);
    REQUIRE(status == Status::event);
    CHECK(reader.last().kind == RecordKind::barrier);
    CHECK(reader.last().checkpoint_id == 5);
    CHECK(reader.read_values(std::span<std::uint64_t>(out), n) == Status::decode_error);  // 4-byte records
    CHECK(n == 0);
    CHECK(reader.last().bytes.size() == 4);
    CHECK(reader.read_values(std::span<std::uint64_t>(out), n) == Status::ok);  // all three were consumed
    CHECK(n == 1);
    CHECK(out[0] == 99);
    CHECK(reader.read_values(std::span<std::uint64_t>(out), n) == Status::end_of_stream);
    reader.remove_channel();
}

TEST_CASE("a record of 1 KiB or more written alone starts on a cache line, wherever the last one ended") {
    // Every way of writing one record: write, write_for, reserve/commit (whole, or fewer bytes
    // than reserved), write_value. From kAlignedRecordMin bytes on, the record's bytes start on a
    // cache line wherever that fits one segment; a larger one is a plain frame.
    const std::string name = test::unique_name("rec-aligned");
    auto options = records_options();  // 32 KiB segments
    const std::size_t largest = L::kDefaultSegmentSize - L::kSegmentHeaderBytes - L::run_data_offset(0);  // 32640
    enum class Way { write, write_for, reserve, reserve_more, write_value };
    struct Case {
        std::size_t size;
        Way way;
    };
    const std::vector<Case> cases = {
        {100, Way::write},          {shmchan::detail::kAlignedRecordMin, Way::write_for}, {3000, Way::reserve},
        {24, Way::write},           {largest, Way::reserve},                            {5000, Way::reserve_more},
        {largest + 8, Way::reserve}, {2000, Way::write_value},                           {1500, Way::reserve_more},
        {0, Way::reserve_more},     {largest, Way::write},                              {largest + 8, Way::write}};
    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        for (std::size_t i = 0; i < cases.size(); ++i) {
            const std::size_t size = cases[i].size;
            const auto bytes = make_record(size, i);
            std::span<std::byte> room;
            switch (cases[i].way) {
            case Way::write: CHILD_EXPECT(writer.write(bytes) == Status::ok); break;
            case Way::write_for: CHILD_EXPECT(writer.write_for(bytes, kDeadline) == Status::ok); break;
            case Way::reserve:
            case Way::reserve_more: {
                const std::size_t reserve = cases[i].way == Way::reserve ? size : size + 2048;
                CHILD_EXPECT(writer.reserve(reserve, room) == Status::ok);
                CHILD_EXPECT(room.size() == reserve);
                if (size) std::memcpy(room.data(), bytes.data(), size);
                CHILD_EXPECT(writer.commit(size) == Status::ok);
                break;
            }
            case Way::write_value:
                CHILD_EXPECT(writer.write_value(std::string(reinterpret_cast<const char*>(bytes.data()), size)) == Status::ok);
                break;
            }
        }
        // A write between a large reserve and its commit drops the reservation, as for a small one.
        std::span<std::byte> room;
        CHILD_EXPECT(writer.reserve(4096, room) == Status::ok);
        CHILD_EXPECT(writer.write(make_record(10, cases.size())) == Status::ok);
        CHILD_EXPECT(writer.commit(4096) == Status::invalid_call);
        CHILD_EXPECT(writer.commit(10) == Status::invalid_call);
        // So does a second reserve; its commit frames the second.
        CHILD_EXPECT(writer.reserve(4096, room) == Status::ok);
        CHILD_EXPECT(writer.reserve(12, room) == Status::ok);
        fill_record(room.data(), 12, cases.size() + 1);
        CHILD_EXPECT(writer.commit(12) == Status::ok);
        CHILD_EXPECT(writer.commit(12) == Status::invalid_call);
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    auto reader = RecordReader::attach(name, options);
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const std::size_t size = cases[i].size;
        CAPTURE(i);
        CAPTURE(size);
        Record record;
        REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
        CHECK(check_record(record.bytes, i, size) == "");
        const auto address = reinterpret_cast<std::uintptr_t>(record.bytes.data());
        if (size >= shmchan::detail::kAlignedRecordMin && size <= largest) CHECK(address % 64 == 0);
    }
    Record record;
    REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
    CHECK(check_record(record.bytes, cases.size(), 10) == "");
    REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
    CHECK(check_record(record.bytes, cases.size() + 1, 12) == "");
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
    reader.remove_channel();
}

TEST_CASE("reserve_run after a producer restart, where the continued segment has too little room for a run") {
    // The first producer leaves 56 committed bytes (one 48-byte record) in a segment it never
    // published; the second continues it. A run there starts at payload offset 128 (72 bytes of
    // headers and padding), so a record of 3908 bytes fits a fresh segment (64 + 3908 <= 4032)
    // but not this one: the segment is handed over and the run goes into a fresh one.
    const std::string name = test::unique_name("rec-run-continued");
    auto options = records_options(kSmallSegment, kSmallCount);
    options.buffer_timeout = std::chrono::hours(1);
    {
        auto first = RecordWriter::attach(name, options);
        REQUIRE(first.write(make_record(48, 0)) == Status::ok);
    }  // detached holding the segment: its 56 committed bytes stay, unpublished
    auto second = RecordWriter::attach(name, options);
    const std::size_t record_size = kPayload - 56 - 68;  // 3908
    std::span<std::byte> room;
    std::size_t count = 0;
    REQUIRE_MESSAGE(second.reserve_run(record_size, 1, room, count) == Status::ok, second.last_error());
    REQUIRE(count == 1);
    fill_record(room.data(), record_size, 1);
    REQUIRE(second.commit_run(count) == Status::ok);
    REQUIRE(second.end_stream() == Status::ok);
    auto reader = RecordReader::attach(name, options);
    Record record;
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(check_record(record.bytes, 0, 48) == "");
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(check_record(record.bytes, 1, record_size) == "");
    CHECK(reader.read(record) == Status::end_of_stream);
    reader.remove_channel();
}

TEST_CASE("reserve_run/commit_run misuse is refused; a write or reserve in between drops the run") {
    const std::string name = test::unique_name("rec-run-misuse");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    std::span<std::byte> room;
    std::size_t count = 99;
    CHECK(writer.commit_run(1) == Status::invalid_call);  // nothing reserved
    CHECK(writer.reserve_run(0, 10, room, count) == Status::invalid_call);
    CHECK(count == 0);
    CHECK(writer.reserve_run(8, 0, room, count) == Status::invalid_call);
    CHECK(writer.reserve_run(kPayload - 63, 2, room, count) == Status::too_large);  // no room for a run frame
    CHECK(writer.last_error().find("reserve_run") != std::string::npos);
    // A run frame of one record: headers and padding take 64 bytes of the payload.
    CHECK(writer.reserve_run(kPayload - 64, 2, room, count) == Status::ok);
    CHECK(count == 1);
    CHECK(writer.commit_run(2) == Status::invalid_call);  // more than reserved
    CHECK(writer.commit_run(1) == Status::invalid_call);  // the failed commit dropped it

    // A write, a reserve or an event between reserve_run and commit_run drops the reservation.
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    const std::byte one[16] = {};
    REQUIRE(writer.write(std::span<const std::byte>(one)) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    std::span<std::byte> single;
    REQUIRE(writer.reserve(16, single) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    REQUIRE(writer.write_barrier(3) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);
    // commit_run(0) writes nothing; a good run goes through.
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    CHECK(writer.commit_run(0) == Status::ok);
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    REQUIRE(count == 10);
    for (std::size_t k = 0; k < count; ++k) fill_record(room.data() + k * 16, 16, k);
    REQUIRE(writer.commit_run(count) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);  // once
    REQUIRE(writer.end_stream() == Status::ok);
    CHECK(writer.reserve_run(16, 10, room, count) == Status::invalid_call);

    auto reader = RecordReader::attach(name, options);
    Record record;
    REQUIRE(reader.read(record) == Status::ok);  // the plain write
    CHECK(record.bytes.size() == 16);
    REQUIRE(reader.read(record) == Status::ok);  // the barrier (the single reserve was never committed)
    CHECK(record.kind == RecordKind::barrier);
    RecordRun run;
    REQUIRE(reader.read_run(run, 100) == Status::ok);
    CHECK(run.count == 10);
    CHECK(run.record_size == 16);
    for (std::size_t k = 0; k < run.count; ++k) CHECK(check_record(run.record(k), k, 16) == "");
    CHECK(reader.read_run(run, 100) == Status::end_of_stream);
    reader.remove_channel();
}

TEST_CASE("try_write_batch and write_batch_for stop where they would wait, saying how many went in") {
    // No consumer reads: the ring (4 x 4 KiB) fills, and nothing of the rest is written until a
    // reader frees segments. The verdicts depend on the ring being full, not on time.
    const std::string name = test::unique_name("rec-batch-partial");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    constexpr std::size_t kSize = 100, kCount = 1000;  // 144 in the ring framed one by one (112 B)
    std::vector<std::byte> bytes(kSize * kCount);
    for (std::size_t k = 0; k < kCount; ++k) fill_record(bytes.data() + k * kSize, kSize, k);
    std::size_t written = 0;
    CHECK(writer.try_write_batch(bytes, kSize, written) == Status::would_block);
    // At least what one frame per record would fit (runs pack more), and not all of it.
    const std::size_t framed_one_by_one = kSmallCount * (kPayload / L::frame_align(L::kFrameHeaderBytes + kSize));
    CHECK(written >= framed_one_by_one);
    CHECK(written < kCount);
    std::size_t more = 99;
    const auto rest = std::span<const std::byte>(bytes).subspan(written * kSize);
    CHECK(writer.write_batch_for(rest, kSize, more, 1ms) == Status::timed_out);
    CHECK(more == 0);
    CHECK(writer.try_write_batch(rest, kSize, more) == Status::would_block);
    CHECK(more == 0);

    // A consumer in another process reads everything; the blocking call writes the rest.
    test::Child consumer([&] {
        ::alarm(120);
        auto reader = RecordReader::attach(name, options);
        std::uint64_t next = 0;
        bool good = true;
        auto take = [&](const Record& record) {
            good = good && record.kind == RecordKind::record && check_record(record.bytes, next, kSize).empty();
            ++next;
        };
        std::size_t delivered = 0;
        Status status;
        while ((status = reader.read_batch(take, 64, delivered)) == Status::ok) {
        }
        CHILD_EXPECT(status == Status::end_of_stream);
        CHILD_EXPECT(good);
        CHILD_EXPECT(next == kCount);
        return 0;
    });
    CHECK(writer.write_batch(rest, kSize, more) == Status::ok);
    CHECK(written + more == kCount);
    CHECK(writer.end_stream() == Status::ok);
    CHECK(consumer.exit_code() == 0);
    shmchan::remove_channel(name, true);
}

TEST_CASE("read_batch: an event comes first in a call; a handler that throws leaves the reader after its record") {
    const std::string name = test::unique_name("rec-batch-events");
    auto options = records_options();
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    std::vector<std::byte> bytes(64 * 5);
    for (std::size_t k = 0; k < 5; ++k) fill_record(bytes.data() + k * 64, 64, k);
    std::size_t written = 0;
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(3 * 64), 64, written) == Status::ok);
    REQUIRE(writer.write_barrier(42) == Status::ok);
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).subspan(3 * 64), 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);

    std::vector<std::string> seen;
    auto take = [&](const Record& record) {
        seen.push_back(record.kind == RecordKind::barrier ? "barrier " + std::to_string(record.checkpoint_id)
                                                          : std::to_string(index_of(record.bytes)));
    };
    std::size_t delivered = 0;
    CHECK(reader.read_batch(take, 100, delivered) == Status::ok);
    CHECK(delivered == 3);  // stops before the barrier
    CHECK(reader.try_read_batch(take, 2, delivered) == Status::ok);
    CHECK(delivered == 2);  // the barrier first, then one record: the limit
    CHECK(seen == std::vector<std::string>{"0", "1", "2", "barrier 42", "3"});

    // A throwing handler: record 4 was handed over; the reader stands after it.
    auto throwing = [&](const Record&) { throw std::runtime_error("handler failed"); };
    CHECK_THROWS_AS(static_cast<void>(reader.read_batch(throwing, 100, delivered)), std::runtime_error);
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(64), 64, written) == Status::ok);  // record 0 again
    REQUIRE(writer.flush() == Status::ok);
    Record record;
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(index_of(record.bytes) == 0);
    // The same inside a run of equal frames (the stride loop): 5 records, the 3rd throws.
    REQUIRE(writer.write_batch(bytes, 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    std::size_t calls = 0;
    auto third_throws = [&](const Record&) {
        if (++calls == 3) throw std::runtime_error("third");
    };
    CHECK_THROWS_AS(static_cast<void>(reader.read_batch(third_throws, 100, delivered)), std::runtime_error);
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(index_of(record.bytes) == 3);
    // Inside a handler the reader refuses reads: a read through the batch's cursor would hand
    // over records twice.
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(3 * 64), 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    std::vector<std::uint64_t> got;
    Status nested = Status::ok;
    auto reads_inside = [&](const Record& given) {
        got.push_back(index_of(given.bytes));
        Record inner;
        nested = reader.try_read(inner);  // refused: would otherwise hand over the next record here
        if (nested != Status::invalid_call) got.push_back(1000 + index_of(inner.bytes));
    };
    std::size_t total = 0, refused = 0;
    while (total < 4) {
        REQUIRE(reader.read_batch(reads_inside, 100, delivered) == Status::ok);
        total += delivered;
        if (nested == Status::invalid_call) ++refused;
    }
    CHECK(total == 4);
    CHECK(refused >= 1);
    CHECK(nested == Status::invalid_call);
    CHECK(reader.last_error().find("read_batch handler") != std::string::npos);
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(64), 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    CHECK(reader.read(record) == Status::ok);  // after the batch, reads work again
    got.push_back(index_of(record.bytes));
    CHECK(got == std::vector<std::uint64_t>{4, 0, 1, 2, 0});
    CHECK(writer.end_stream() == Status::ok);
    CHECK(reader.read(record) == Status::end_of_stream);
    reader.remove_channel();
}

// ---- 5. Typed records -------------------------------------------------------------------------------

TEST_CASE("typed records: trivially copyable, strings, a user codec; event and decode_error") {
    using recordtest::Bag;
    using recordtest::Trade;
    const std::string name = test::unique_name("rec-typed");
    auto options = records_options(kSmallSegment, kSmallCount);
    const Trade trade{77, 101.25, {'X', 'N', 'A', 'S'}};
    const std::string short_text = "hello, records";
    const std::string long_text(3 * kSmallSegment + 5, 'q');  // spans segments
    const std::string_view view_text = "a view";
    Bag bag{"bag", {}};
    for (int i = 0; i < 3000; ++i) bag.values.push_back(i * 7 - 1000);  // 12 KiB: spans
    const Bag small_bag{"", {1, 2, 3}};

    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        CHILD_EXPECT(writer.write_value(trade) == Status::ok);
        CHILD_EXPECT(writer.write_value(short_text) == Status::ok);
        CHILD_EXPECT(writer.write_value(long_text) == Status::ok);
        CHILD_EXPECT(writer.write_value(view_text) == Status::ok);
        CHILD_EXPECT(writer.write_value(bag) == Status::ok);
        CHILD_EXPECT(writer.write_value(small_bag) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(5) == Status::ok);
        CHILD_EXPECT(writer.write_value(std::string("abc")) == Status::ok);  // not a Trade
        CHILD_EXPECT(writer.write_value(std::uint16_t{9}) == Status::ok);
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    auto reader = RecordReader::attach(name, options);
    Trade got_trade{};
    REQUIRE(reader.read_value(got_trade) == Status::ok);
    CHECK(got_trade.id == trade.id);
    CHECK(got_trade.price == trade.price);
    CHECK(std::memcmp(got_trade.venue, trade.venue, sizeof trade.venue) == 0);
    std::string got_text;
    REQUIRE(reader.read_value(got_text) == Status::ok);
    CHECK(got_text == short_text);
    REQUIRE(reader.read_value(got_text) == Status::ok);
    CHECK(got_text == long_text);
    std::string_view got_view;
    REQUIRE(reader.read_value(got_view) == Status::ok);
    CHECK(got_view == view_text);
    Bag got_bag;
    REQUIRE(reader.read_value(got_bag) == Status::ok);
    CHECK(got_bag == bag);
    REQUIRE(reader.read_value(got_bag) == Status::ok);
    CHECK(got_bag == small_bag);
    CHECK(reader.read_value(got_trade) == Status::event);
    CHECK(reader.last().kind == RecordKind::barrier);
    CHECK(reader.last().checkpoint_id == 5);
    CHECK(reader.read_value(got_trade) == Status::decode_error);  // 3 bytes, not a Trade
    std::uint32_t wrong = 0;
    CHECK(reader.read_value(wrong) == Status::decode_error);      // 2 bytes, not 4
    CHECK(reader.read_value(got_trade) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
}

}  // TEST_SUITE

// ---- 6. Restart of a killed consumer ------------------------------------------------------------

namespace {

constexpr std::size_t kRestartRecords = 1500;

struct RestartShared {
    std::atomic<std::int64_t> in_progress{-1};  // last index read() returned to the first consumer
    std::atomic<std::int64_t> finished{-1};     // last index it finished processing
    std::atomic<std::int64_t> run_first{-1};    // read_run: the first index of the run in hand
    RecordPosition positions[kRestartRecords];  // position of each finished record (stored first)
    std::atomic<int> producer_status{0};
};

enum class KillMode {
    processing,  // raise(SIGKILL) after read() returned record K, before finishing it
    finished,    // raise(SIGKILL) after finishing record K, before the next read()
    external,    // the test kills it once it has passed record K, wherever it is
};

std::vector<std::size_t> restart_sizes(std::uint64_t seed) {
    std::vector<std::size_t> sizes;
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < kRestartRecords; ++i) {
        std::uint64_t kind = rng() % 10;
        // At least 8 bytes (the index); spanning ones stay well inside the 8 x 4 KiB ring.
        sizes.push_back(kind < 7 ? 8 + rng() % 300 : kind < 9 ? 8 + rng() % 4000 : 4000 + rng() % 9000);
    }
    return sizes;
}

// Ends the stream once a consumer is attached (a consumer's death is ridden out until `until`).
int end_stream_riding_out(RecordWriter& writer, std::chrono::steady_clock::time_point until) {
    Status status;
    while ((status = writer.end_stream()) == Status::peer_died) {
        if (std::chrono::steady_clock::now() > until) return 4;
        ::sched_yield();
    }
    CHILD_EXPECT(status == Status::ok);
    return 0;
}

// Runs of 20-120 records of one size (the shapes write_batch frames and read_batch walks at a
// stride, and that runs frame): mostly small (some of sizes that are not a multiple of 8, so
// that a resume point inside a run is not 8-aligned), some up to a segment, a few spanning.
std::vector<std::size_t> restart_batch_sizes(std::uint64_t seed) {
    std::vector<std::size_t> sizes;
    std::mt19937_64 rng(seed);
    while (sizes.size() < kRestartRecords) {
        std::uint64_t kind = rng() % 10;
        std::size_t size = kind < 5 ? 8 + 8 * (rng() % 40) : kind < 8 ? 9 + rng() % 300 : kind < 9 ? 8 + rng() % 4000 : 4000 + rng() % 9000;
        std::size_t run = std::min<std::size_t>(20 + rng() % 100, kRestartRecords - sizes.size());
        sizes.insert(sizes.end(), run, size);
    }
    return sizes;
}

// The same producer through write_batch, one call per run of equal sizes; after peer_died,
// `written` says where to go on once a new consumer is attached.
int restart_batch_producer(const std::string& name, const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
    auto writer = RecordWriter::attach(name, options);
    auto until = std::chrono::steady_clock::now() + 120s;
    std::vector<std::byte> buffer;
    for (std::size_t i = 0; i < sizes.size();) {
        std::size_t run = 1;
        while (i + run < sizes.size() && sizes[i + run] == sizes[i]) ++run;
        buffer.resize(run * sizes[i]);
        for (std::size_t k = 0; k < run; ++k) fill_record(buffer.data() + k * sizes[i], sizes[i], i + k);
        std::size_t done = 0;
        while (done < run) {
            std::size_t written = 0;
            Status status = writer.write_batch(std::span<const std::byte>(buffer).subspan(done * sizes[i]), sizes[i], written);
            done += written;
            if (status == Status::peer_died) {
                if (std::chrono::steady_clock::now() > until) return 4;
                ::sched_yield();
                continue;
            }
            if (status != Status::ok) {
                std::fprintf(stderr, "producer: write_batch at %zu: %s %s\n", i + done, describe(status).c_str(),
                             writer.last_error().c_str());
                return 3;
            }
        }
        i += run;
    }
    return end_stream_riding_out(writer, until);
}

// A producer that rides out the consumer's death: a write that returns peer_died did not complete
// its record, so it is written again once a new consumer is attached.
int restart_producer(const std::string& name, const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
    auto writer = RecordWriter::attach(name, options);
    auto until = std::chrono::steady_clock::now() + 120s;
    std::vector<std::byte> buffer;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        buffer.resize(sizes[i]);
        fill_record(buffer.data(), sizes[i], i);
        Status status;
        while ((status = writer.write(std::span<const std::byte>(buffer.data(), sizes[i]))) == Status::peer_died) {
            if (std::chrono::steady_clock::now() > until) return 4;
            ::sched_yield();
        }
        if (status != Status::ok) {
            std::fprintf(stderr, "producer: write %zu: %s %s\n", i, describe(status).c_str(), writer.last_error().c_str());
            return 3;
        }
    }
    return end_stream_riding_out(writer, until);
}

// How the first consumer reads: read()/read_for() one record at a time, read_batch() (the kill
// lands in its handler), or read_run() (the kill lands while it processes a run's records).
enum class ReadWith { record, batch, run };

void consumer_restart_case(KillMode mode, std::size_t kill_at, bool exactly_once, bool checksums,
                           ReadWith read_with = ReadWith::record) {
    const bool batches = read_with != ReadWith::record;
    CAPTURE(kill_at);
    CAPTURE(exactly_once);
    CAPTURE(static_cast<int>(read_with));
    const std::string name = test::unique_name("rec-crestart");
    auto options = records_options(kSmallSegment, 8, checksums);
    // With batches both sides use them: runs of equal sizes through write_batch, so that the
    // kill lands inside read_batch's fixed-stride loop.
    const std::uint64_t seed = kill_at * 31 + static_cast<int>(mode);
    const auto sizes = batches ? restart_batch_sizes(seed) : restart_sizes(seed);
    test::SharedBlock<RestartShared> shared;

    test::Child producer([&] {
        return batches ? restart_batch_producer(name, options, sizes) : restart_producer(name, options, sizes);
    });
    test::Child first([&] {
        ::alarm(120);  // read() has no deadline: a hang ends the child, and the test fails
        auto reader = RecordReader::attach(name, options);
        std::size_t expected = 0;
        bool good = true;
        auto process = [&](const Record& record) {
            std::uint64_t index = index_of(record.bytes);
            if (record.kind != RecordKind::record || index != expected ||
                !check_record(record.bytes, index, sizes[index]).empty()) {
                good = false;
                return;
            }
            ++expected;
            shared->in_progress.store(static_cast<std::int64_t>(index));
            if (mode == KillMode::processing && index == kill_at) ::raise(SIGKILL);
            shared->positions[index] = record.position;
            shared->finished.store(static_cast<std::int64_t>(index));
            if (mode == KillMode::finished && index == kill_at) ::raise(SIGKILL);
            if (mode == KillMode::external && index >= kill_at) {
                // Some work per record, so that the test's kill lands while the stream goes on.
                volatile std::uint64_t sink = 0;
                for (int spin = 0; spin < 200000; ++spin) sink = sink + static_cast<std::uint64_t>(spin);
            }
        };
        while (expected < sizes.size() && good) {
            Status status;
            if (read_with == ReadWith::run) {
                // The records of a run are processed one by one after read_run returned them
                // all: the kill lands inside the run, whose first record the successor resumes at.
                RecordRun run;
                status = expected % 3 == 2 ? reader.read_run_for(run, 1 + expected % 700, kDeadline)
                                           : reader.read_run(run, 1000);
                if (status == Status::ok) {
                    shared->run_first.store(static_cast<std::int64_t>(expected));
                    for (std::size_t k = 0; k < run.count && good; ++k) {
                        Record record;
                        record.bytes = run.record(k);
                        record.position = RecordPosition{run.position.segment, run.position.offset + k * run.record_size};
                        process(record);
                    }
                }
            } else if (batches) {
                // The handler runs inside read_batch: the kill lands mid-batch.
                std::size_t delivered = 0;
                status = expected % 3 == 2 ? reader.read_batch_for(process, 64, delivered, kDeadline)
                                           : reader.read_batch(process, 1000, delivered);
            } else {
                Record record;
                // Both the inline fast path (read) and the slow path (read_for) store the resume point.
                status = expected % 3 == 2 ? reader.read_for(record, kDeadline) : reader.read(record);
                if (status == Status::ok) process(record);
            }
            CHILD_EXPECT(status == Status::ok);
        }
        CHILD_EXPECT(good);
        return 0;
    });
    if (mode == KillMode::external) {
        REQUIRE(test::eventually([&] { return shared->in_progress.load() >= static_cast<std::int64_t>(kill_at); }, 60s));
        first.kill(SIGKILL);
    }
    const int first_code = first.exit_code();
    CHECK(first_code == -(100 + SIGKILL));
    const std::int64_t in_progress = shared->in_progress.load();
    const std::int64_t finished = shared->finished.load();
    CAPTURE(in_progress);
    CAPTURE(finished);
    REQUIRE(in_progress >= 0);

    // The new consumer (this process) reads to the end.
    auto reader = RecordReader::attach(name, options);
    if (exactly_once && finished >= 0) reader.skip_through(shared->positions[finished]);
    std::vector<std::uint64_t> seen;
    Status status;
    while (true) {
        Record record;
        status = reader.read_for(record, kDeadline);
        if (status != Status::ok) break;
        REQUIRE(record.kind == RecordKind::record);
        std::uint64_t index = index_of(record.bytes);
        REQUIRE(index < sizes.size());
        CHECK(check_record(record.bytes, index, sizes[index]) == "");
        seen.push_back(index);
    }
    CHECK_MESSAGE(status == Status::end_of_stream, describe(status) << " " << reader.last_error());
    REQUIRE_FALSE(seen.empty());
    const std::int64_t first_seen = static_cast<std::int64_t>(seen.front());
    // Nothing lost: every record the dead consumer had not finished comes again.
    CHECK(first_seen <= finished + 1);
    if (exactly_once) {
        CHECK(first_seen == finished + 1);  // no duplicate at all
    } else {
        // Duplicates only of the record in progress (read, maybe finished, next read() not
        // called); with read_run, of the run in progress, from its first record.
        const std::int64_t unfinished_from = read_with == ReadWith::run ? shared->run_first.load() : in_progress;
        CHECK(first_seen >= unfinished_from);
        if (mode != KillMode::external) CHECK(first_seen == unfinished_from);
    }
    // Then every record once, in order, to the end.
    bool contiguous = true;
    for (std::size_t i = 0; i < seen.size(); ++i) contiguous = contiguous && seen[i] == seen.front() + i;
    CHECK(contiguous);
    CHECK(seen.back() == sizes.size() - 1);
    CHECK(producer.exit_code() == 0);
}

}  // namespace

TEST_SUITE("records") {

TEST_CASE("a killed consumer's successor loses nothing: at-least-once, exactly-once with skip_through") {
    for (bool exactly_once : {false, true}) {
        SUBCASE(exactly_once ? "exactly-once, killed while processing" : "at-least-once, killed while processing") {
            for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{57}, std::size_t{700}, kRestartRecords - 1}) {
                consumer_restart_case(KillMode::processing, k, exactly_once, false);
            }
        }
        SUBCASE(exactly_once ? "exactly-once, killed after finishing" : "at-least-once, killed after finishing") {
            for (std::size_t k : {std::size_t{0}, std::size_t{13}, std::size_t{400}, kRestartRecords - 2}) {
                consumer_restart_case(KillMode::finished, k, exactly_once, false);
            }
            consumer_restart_case(KillMode::finished, 250, exactly_once, true);
        }
        SUBCASE(exactly_once ? "exactly-once, killed from outside" : "at-least-once, killed from outside") {
            for (std::size_t k : {std::size_t{100}, std::size_t{500}, std::size_t{900}}) {
                consumer_restart_case(KillMode::external, k, exactly_once, false);
            }
        }
        SUBCASE(exactly_once ? "exactly-once, read_batch, killed in the handler" : "at-least-once, read_batch, killed in the handler") {
            for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{57}, std::size_t{700}, kRestartRecords - 1}) {
                consumer_restart_case(KillMode::processing, k, exactly_once, false, ReadWith::batch);
            }
            for (std::size_t k : {std::size_t{0}, std::size_t{13}, std::size_t{400}, kRestartRecords - 2}) {
                consumer_restart_case(KillMode::finished, k, exactly_once, false, ReadWith::batch);
            }
            consumer_restart_case(KillMode::external, 500, exactly_once, false, ReadWith::batch);
        }
        SUBCASE(exactly_once ? "exactly-once, read_run, killed inside a run" : "at-least-once, read_run, killed inside a run") {
            for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{57}, std::size_t{700}, kRestartRecords - 1}) {
                consumer_restart_case(KillMode::processing, k, exactly_once, false, ReadWith::run);
            }
            for (std::size_t k : {std::size_t{13}, std::size_t{400}, kRestartRecords - 2}) {
                consumer_restart_case(KillMode::finished, k, exactly_once, false, ReadWith::run);
            }
            consumer_restart_case(KillMode::finished, 250, exactly_once, true, ReadWith::run);
            consumer_restart_case(KillMode::external, 500, exactly_once, false, ReadWith::run);
        }
    }
}

TEST_CASE("a consumer killed inside a run of 12-byte records: its successor resumes at the record, unaligned") {
    // One run frame of 12-byte records (data at payload offset 64): record k starts at 64 + 12 k,
    // so the resume points of records 1 and 77 (offsets 76 and 988) are not multiples of 8.
    const std::string name = test::unique_name("rec-run-resume");
    auto options = records_options(kSmallSegment, kSmallCount);
    struct Twelve {
        std::uint32_t index, twice, thrice;
    };
    static_assert(sizeof(Twelve) == 12);
    std::vector<Twelve> values(200);
    for (std::uint32_t i = 0; i < values.size(); ++i) values[i] = {i, 2 * i, 3 * i};
    auto writer = RecordWriter::attach(name, options);
    std::size_t written = 0;
    REQUIRE(writer.write_values(std::span<const Twelve>(values), written) == Status::ok);
    REQUIRE(writer.end_stream() == Status::ok);
    for (std::uint32_t kill_after : {1u, 6u, 77u}) {
        CAPTURE(kill_after);
        test::Child first([&] {
            ::alarm(60);
            auto reader = RecordReader::attach(name, options);
            Twelve value{};
            do {
                if (reader.read_value(value) != Status::ok) return 3;
            } while (value.index < kill_after);
            ::raise(SIGKILL);  // record kill_after read, not finished: it comes again
            return 0;
        });
        CHECK(first.exit_code() == -(100 + SIGKILL));
        auto reader = RecordReader::attach(name, options);
        Twelve out[64];
        std::size_t got = 0;
        REQUIRE_MESSAGE(reader.read_values(std::span<Twelve>(out), got) == Status::ok, reader.last_error());
        REQUIRE(got >= 1);
        CHECK(out[0].index == kill_after);
        CHECK(out[0].thrice == 3 * kill_after);
    }
    // Each of those readers took a run from kill_after and detached without finishing it (no
    // further read): the next one, child or not, resumed at the run's first record. A last one
    // reads to the end from 77.
    auto reader = RecordReader::attach(name, options);
    std::uint32_t next = 77;
    Twelve value{};
    Status status;
    while ((status = reader.read_value(value)) == Status::ok) {
        CHECK(value.index == next);
        CHECK(value.twice == 2 * next);
        ++next;
    }
    CHECK(status == Status::end_of_stream);
    CHECK(next == values.size());
    reader.remove_channel();
}

TEST_CASE("a consumer that died between storing its resume point and released: the next resumes at the tag") {
    // 4 KiB segments: 36 records of 100 bytes (112 with header and padding) per segment.
    const std::string name = test::unique_name("rec-resume-tag");
    auto options = records_options(kSmallSegment, kSmallCount);
    constexpr std::size_t kRecords = 110;  // three segments: the ring of four holds them all
    {
        auto writer = RecordWriter::attach(name, options);
        for (std::size_t i = 0; i < kRecords; ++i) REQUIRE(writer.write(make_record(100, i)) == Status::ok);
        REQUIRE(writer.end_stream() == Status::ok);
    }
    RecordPosition position_of_40;
    {
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i <= 40; ++i) {
            Record record;
            REQUIRE(reader.read(record) == Status::ok);  // the inline path, mostly
            REQUIRE(index_of(record.bytes) == i);
            position_of_40 = record.position;
        }
    }  // detached with record 40 unfinished: resume word (1, offset of 40), released 1
    REQUIRE(position_of_40.segment == 1);
    REQUIRE(position_of_40.offset != 0);
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    REQUIRE(file.peek64(test::offsets::released) == 1);
    SUBCASE("released still at the old segment: resume in the segment the tag names") {
        file.poke64(test::offsets::released, 0);  // as if it died before storing released = 1
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 40; i < kRecords; ++i) {
            Record record;
            REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
            REQUIRE(index_of(record.bytes) == i);
            CHECK(check_record(record.bytes, i, 100) == "");
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
        CHECK(shmchan::inspect(name).released >= 2);  // the segments before it were released
    }
    SUBCASE("a tag that names no unreleased segment is refused at attach") {
        const std::size_t word = offsetof(L::ChannelHeader, consumers) + offsetof(L::ConsumerSlot, position) +
                                 offsetof(L::ConsumerLine, resume_point);
        file.poke64(word, L::make_tagged_word(9, 0));
        CHECK_THROWS_AS(RecordReader::attach(name, options), shmchan::Error);
    }
}

TEST_CASE("a record larger than the ring in flight at the consumer's death is reported lost with its size") {
  for (bool batch : {false, true}) {
    CAPTURE(batch);  // the successor's first call: read_for, or read_batch_for (the loss in last())
    // 4 KiB x 4 ring; record 10 is 100 KiB. The producer writes records 0..9 and fills the ring
    // with the head of record 10; the test stops it there (SIGSTOP), so that the first consumer,
    // reading with try_read, deterministically has the record half read, with its first segments
    // released, when try_read comes back would_block: it kills itself then. The producer,
    // resumed, does not retry record 10 if its write fails.
    constexpr std::size_t kBig = 100 * 1024 + 3;
    constexpr std::size_t kCount = 20;
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < kCount; ++i) sizes.push_back(i == 10 ? kBig : 16 + i * 37);
    const std::string name = test::unique_name("rec-lost");
    auto options = records_options(kSmallSegment, kSmallCount);
    test::SharedBlock<std::atomic<int>> big_outcome;  // 1 written, 2 peer_died
    test::SharedBlock<std::atomic<int>> big_started;
    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        auto until = std::chrono::steady_clock::now() + 120s;
        for (std::size_t i = 0; i < kCount; ++i) {
            auto bytes = make_record(sizes[i], i);
            if (i == 10) big_started->store(1);
            Status status;
            while ((status = writer.write(bytes)) == Status::peer_died && i != 10) {
                if (std::chrono::steady_clock::now() > until) return 4;
                ::sched_yield();
            }
            if (i == 10) {
                big_outcome->store(status == Status::ok ? 1 : status == Status::peer_died ? 2 : 3);
                continue;
            }
            CHILD_EXPECT(status == Status::ok);
        }
        return end_stream_riding_out(writer, until);
    });
    REQUIRE(test::wait_for_flag(*big_started, 1, 60s));
    REQUIRE(test::eventually([&] {
        auto info = shmchan::inspect(name);
        return info.published - info.released == kSmallCount;  // the producer waits inside record 10
    }, 60s));
    producer.kill(SIGSTOP);
    test::Child first([&] {
        auto reader = RecordReader::attach(name, options);
        test::MappedFile file(test::path_of(name));
        CHILD_EXPECT(file.ok());
        const auto& line = file.header().consumers[0].position;
        for (std::size_t i = 0; i < 10; ++i) {
            Record record;
            CHILD_EXPECT(reader.read_for(record, kDeadline) == Status::ok);
            CHILD_EXPECT(check_record(record.bytes, i, sizes[i]).empty());
        }
        Record record;
        Status status = reader.try_read(record);
        CHILD_EXPECT(status == Status::would_block);
        CHILD_EXPECT(L::load_relaxed(line.in_flight_record_bytes) == kBig);
        ::raise(SIGKILL);
        return 5;
    });
    CHECK(first.exit_code() == -(100 + SIGKILL));
    producer.kill(SIGCONT);

    auto reader = RecordReader::attach(name, options);
    Record record;
    Status status;
    if (batch) {
        std::size_t delivered = 99, handled = 0;
        status = reader.read_batch_for([&](const Record&) { ++handled; }, 10, delivered, kDeadline);
        CHECK(delivered == 0);
        CHECK(handled == 0);
        record = reader.last();
    } else {
        status = reader.read_for(record, kDeadline);
    }
    CHECK_MESSAGE(status == Status::record_lost, describe(status) << " " << reader.last_error());
    CHECK(record.lost_bytes == kBig);
    CHECK(record.position.segment > 0);
    for (std::size_t i = 11; i < kCount; ++i) {
        CAPTURE(i);
        status = reader.read_for(record, kDeadline);
        REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
        REQUIRE(record.kind == RecordKind::record);
        CHECK(check_record(record.bytes, i, sizes[i]) == "");
    }
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
    // The producer either saw the death (peer_died, the record abandoned) or went on writing the
    // record into the new consumer's ring (a new consumer attached before it noticed): in both
    // cases the new consumer reports the record lost and never delivers a part of it.
    CHECK((big_outcome->load() == 1 || big_outcome->load() == 2));
    shmchan::remove_channel(name, true);
  }
}

// ---- 7. Restart of a killed producer ----------------------------------------------------------------

TEST_CASE("a producer killed in the middle of a record larger than the ring: the half record never appears") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-prestart");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        constexpr std::size_t kFirst = 30, kSecond = 25, kHuge = 200 * 1024;
        std::vector<std::size_t> sizes;
        std::mt19937_64 rng(3 + checksums);
        for (std::size_t i = 0; i < kFirst + 1 + kSecond; ++i) sizes.push_back(8 + rng() % 3000);
        sizes[kFirst] = kHuge;
        sizes[5] = 6000;  // a spanning record that completes
        test::SharedBlock<std::atomic<int>> huge_started;

        test::Child first_producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = 0; i < kFirst; ++i) CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
            huge_started->store(1);
            static_cast<void>(writer.write(make_record(kHuge, kFirst)));  // blocks until killed: the consumer stops reading
            return 7;
        });
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < kFirst; ++i) {
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            REQUIRE(check_record(record.bytes, i, sizes[i]) == "");
        }
        // The consumer stops; the producer fills the ring with the head of the huge record and
        // blocks in the middle of it. Kill it there.
        REQUIRE(test::wait_for_flag(*huge_started, 1, 60s));
        REQUIRE(test::eventually([&] {
            auto info = reader.consumer().info();
            return info.published - info.released == kSmallCount;
        }, 60s));
        first_producer.kill(SIGKILL);
        CHECK(first_producer.exit_code() == -(100 + SIGKILL));

        std::optional<test::Child> second_producer;
        std::vector<std::uint64_t> seen;
        int peer_died = 0;
        auto until = std::chrono::steady_clock::now() + 120s;
        Status status;
        while (std::chrono::steady_clock::now() < until) {
            Record record;
            status = reader.read_for(record, kDeadline);
            if (status == Status::peer_died) {
                ++peer_died;
                if (!second_producer) {
                    second_producer.emplace([&] {
                        auto writer = RecordWriter::attach(name, options);
                        for (std::size_t i = kFirst + 1; i < sizes.size(); ++i) {
                            CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
                        }
                        CHILD_EXPECT(writer.end_stream() == Status::ok);
                        return 0;
                    });
                }
                continue;  // reading goes on once the new producer is attached
            }
            if (status != Status::ok) break;
            REQUIRE(record.kind == RecordKind::record);
            std::uint64_t index = index_of(record.bytes);
            CHECK_MESSAGE(index != kFirst, "the half-written record was delivered");
            REQUIRE(index < sizes.size());
            CHECK(check_record(record.bytes, index, sizes[index]) == "");
            seen.push_back(index);
        }
        CHECK_MESSAGE(status == Status::end_of_stream, describe(status) << " " << reader.last_error());
        CHECK(peer_died > 0);
        REQUIRE(second_producer);
        CHECK(second_producer->exit_code() == 0);
        std::vector<std::uint64_t> expected;
        for (std::size_t i = kFirst + 1; i < sizes.size(); ++i) expected.push_back(i);
        CHECK(seen == expected);
    }
}

TEST_CASE("a producer killed with committed records in an unpublished segment: its successor continues it") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-presume");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        options.buffer_timeout = std::chrono::hours(1);  // no hand-over by timeout
        constexpr std::size_t kFirst = 7, kTotal = 40;
        std::vector<std::size_t> sizes;
        for (std::size_t i = 0; i < kTotal; ++i) sizes.push_back(8 + (i * 97) % 500);
        test::Child first_producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = 0; i < kFirst; ++i) CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
            ::raise(SIGKILL);  // dies holding a partly filled segment
            return 7;
        });
        CHECK(first_producer.exit_code() == -(100 + SIGKILL));
        test::Child second_producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = kFirst; i < kTotal; ++i) CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
            CHILD_EXPECT(writer.end_stream() == Status::ok);
            return 0;
        });
        CHECK(second_producer.exit_code() == 0);
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < kTotal; ++i) {
            CAPTURE(i);
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            CHECK(check_record(record.bytes, i, sizes[i]) == "");
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    }
}

}  // TEST_SUITE

// ---- 8. A reader fed mutated and random shared memory ---------------------------------------------

namespace {

struct FuzzShared {
    std::atomic<std::uint64_t> cases{0}, current{0};
    std::atomic<std::uint64_t> ok_reads{0}, corrupt{0}, attach_refused{0}, lost{0}, ends{0}, other{0};
};

bool documented_read_status(Status status) {
    switch (status) {
        case Status::would_block:
        case Status::timed_out:
        case Status::end_of_stream:
        case Status::record_lost:
        case Status::peer_died:
        case Status::corrupt: return true;
        default: return false;
    }
}

// One case: a channel written with a random mix, mutated, then read to the first non-ok status.
// Returns an empty string or what went wrong.
std::string fuzz_case(std::uint64_t seed, FuzzShared& stats) {
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) { return n ? rng() % n : 0; };
    const std::uint32_t count = 2 + static_cast<std::uint32_t>(pick(5));
    const bool checksums = pick(3) == 0;
    const std::string name = "fz-" + std::to_string(seed);
    ChannelOptions options = records_options(kSmallSegment, count, checksums);
    options.ready_timeout = 10ms;
    options.liveness_interval = 10ms;
    const std::uint32_t capacity = kSmallSegment - L::kSegmentHeaderBytes;
    std::string problem;
    {
        std::optional<RecordWriter> writer(RecordWriter::attach(name, options));
        std::optional<RecordReader> reader(RecordReader::attach(name, options));
        std::vector<std::byte> buffer(3 * kSmallSegment);
        auto write_mix = [&](int items) {
            for (int i = 0; i < items; ++i) {
                std::uint64_t kind = pick(10);
                // Barriers and events block for a free segment: only while one is free (a record
                // in flight holds its segments, so the ring can be full when a lap starts).
                if ((kind == 7 || kind == 8) && shmchan::detail::ProducerHooks(writer->producer()).free_segments() == 0) return;
                Status status;
                if (kind == 5 && pick(2) == 0) {
                    // A batch: run frames (or frames one by one, with checksums).
                    const std::size_t size = 1 + pick(pick(4) == 0 ? capacity : 100);
                    const std::size_t n = std::min<std::size_t>(1 + pick(80), buffer.size() / size);
                    for (std::size_t k = 0; k < n; ++k) fill_record(buffer.data() + k * size, size, k);
                    std::size_t written = 0;
                    status = writer->try_write_batch(std::span<const std::byte>(buffer.data(), n * size), size, written);
                } else if (kind == 6 && pick(2) == 0) {
                    std::span<std::byte> room;
                    std::size_t got = 0;
                    status = writer->try_reserve_run(1 + pick(200), 1 + pick(100), room, got);
                    if (status == Status::ok) status = writer->commit_run(pick(got + 1));
                } else if (kind < 6) {
                    std::size_t size = pick(4) == 0 ? pick(2 * capacity) : pick(200);
                    fill_record(buffer.data(), size, i);
                    status = writer->try_write(std::span<const std::byte>(buffer.data(), size));
                } else if (kind == 6) {
                    std::span<std::byte> room;
                    std::size_t size = pick(capacity - 8);
                    status = writer->try_reserve(size, room);
                    if (status == Status::ok) status = writer->commit(pick(size + 1));
                } else if (kind == 7) {
                    status = writer->write_barrier(rng());
                } else if (kind == 8) {
                    status = writer->write_event(static_cast<std::uint16_t>(rng()),
                                                 std::span<const std::byte>(buffer.data(), pick(64)));
                } else {
                    status = writer->flush();
                }
                if (status != Status::ok) return;
            }
        };
        // Some laps written and read cleanly first, so positions and slots wrap.
        const int laps = static_cast<int>(pick(4));
        for (int lap = 0; lap < laps; ++lap) {
            write_mix(static_cast<int>(1 + pick(30)));
            for (int reads = 0; reads < 10000; ++reads) {
                Record record;
                Status status = reader->try_read(record);
                if (status == Status::would_block) break;
                if (status != Status::ok) return "clean lap: " + describe(status) + " " + reader->last_error();
            }
        }
        write_mix(static_cast<int>(1 + pick(40)));
        if (pick(5) == 0 && shmchan::detail::ProducerHooks(writer->producer()).free_segments() > 0 &&
            writer->end_stream() != Status::ok) {
            return "end_stream: " + writer->last_error();
        }
        for (std::uint64_t n = pick(3); n > 0; --n) {  // a reader part way into the data
            Record record;
            if (reader->try_read(record) != Status::ok) break;
        }
        if (pick(2) == 0) writer.reset();

        // Mutations.
        test::MappedFile file(test::path_of(name));
        if (!file.ok()) return "cannot map " + test::path_of(name);
        std::byte* base = reinterpret_cast<std::byte*>(&file.header());
        auto segment_at = [&](std::uint32_t slot) { return base + L::kHeaderBytes + std::uint64_t{slot} * kSmallSegment; };
        auto interesting32 = [&]() -> std::uint32_t {
            switch (pick(10)) {
                case 0: return 0;
                case 1: return capacity;
                case 2: return capacity + 1;
                case 3: return capacity - 8;
                case 4: return 0xFFFFFFFFu;
                case 5: return static_cast<std::uint32_t>(pick(capacity + 16));
                case 6: return static_cast<std::uint32_t>(pick(capacity / 8) * 8);
                case 7: return 0x80000000u;
                default: return static_cast<std::uint32_t>(rng());
            }
        };
        const int mutations = 1 + static_cast<int>(pick(6));
        for (int m = 0; m < mutations; ++m) {
            std::uint32_t slot = static_cast<std::uint32_t>(pick(count));
            std::byte* segment = segment_at(slot);
            std::byte* payload = segment + L::kSegmentHeaderBytes;
            switch (pick(10)) {
                case 0:  // a random byte anywhere in the segments
                    segment[pick(kSmallSegment)] = static_cast<std::byte>(rng());
                    break;
                case 1: {  // a segment header field
                    static constexpr std::size_t fields[] = {0, 4, 8, 12, 24, 28};
                    std::size_t field = fields[pick(6)];
                    std::uint32_t value = interesting32();
                    if (field == 8 && pick(2)) value = static_cast<std::uint32_t>(pick(8));  // flags
                    file.poke32(static_cast<std::size_t>(segment - base) + field, value);
                    break;
                }
                case 2:  // the segment's sequence
                    file.poke64(static_cast<std::size_t>(segment - base) + 16,
                                pick(2) ? file.peek64(static_cast<std::size_t>(segment - base) + 16) + pick(3) - 1 : rng());
                    break;
                case 3:
                case 4: {  // a frame header inside the payload
                    std::size_t at = pick(capacity / 8) * 8;
                    std::uint32_t length = interesting32();
                    if (pick(2)) length = static_cast<std::uint32_t>(pick(3 * capacity));
                    std::uint16_t kind = static_cast<std::uint16_t>(pick(6));
                    std::uint16_t type = static_cast<std::uint16_t>(rng());
                    std::memcpy(payload + at, &length, 4);
                    std::memcpy(payload + at + 4, &kind, 2);
                    std::memcpy(payload + at + 6, &type, 2);
                    if (kind == static_cast<std::uint16_t>(L::FrameKind::record_run) && at + 16 <= capacity && pick(2)) {
                        // Its run header: record size and count, each odd or plausible.
                        const std::uint32_t run[2] = {pick(2) ? interesting32() : static_cast<std::uint32_t>(1 + pick(100)),
                                                      pick(2) ? interesting32() : static_cast<std::uint32_t>(1 + pick(100))};
                        std::memcpy(payload + at + 8, run, sizeof run);
                    }
                    break;
                }
                case 5:  // random payload bytes
                    for (std::uint64_t n = 1 + pick(64); n > 0; --n) payload[pick(capacity)] = static_cast<std::byte>(rng());
                    break;
                case 6: {  // a whole segment of garbage, header included (or with its sequence kept)
                    std::uint64_t sequence = file.peek64(static_cast<std::size_t>(segment - base) + 16);
                    for (std::uint32_t i = 0; i < kSmallSegment; ++i) segment[i] = static_cast<std::byte>(rng());
                    if (pick(2)) {
                        file.poke64(static_cast<std::size_t>(segment - base) + 16, sequence);
                        file.poke32(static_cast<std::size_t>(segment - base) + 0, static_cast<std::uint32_t>(pick(capacity + 1)));
                        file.poke32(static_cast<std::size_t>(segment - base) + 8, static_cast<std::uint32_t>(pick(8)));
                    }
                    break;
                }
                case 7: {  // the consumer's resume point and in-flight size
                    std::size_t line = offsetof(L::ChannelHeader, consumers) + offsetof(L::ConsumerSlot, position);
                    if (pick(2)) file.poke64(line + offsetof(L::ConsumerLine, resume_point), pick(2) ? pick(capacity + 16) : rng());
                    else file.poke64(line + offsetof(L::ConsumerLine, in_flight_record_bytes), pick(2) ? pick(100000) : rng());
                    break;
                }
                case 8: {  // positions and end of stream
                    std::uint64_t published = file.peek64(test::offsets::published);
                    switch (pick(3)) {
                        case 0: file.poke64(test::offsets::published, published + pick(2 * count + 1) - count); break;
                        case 1: file.poke32(test::offsets::end_of_stream, static_cast<std::uint32_t>(pick(3))); break;
                        default: file.poke64(test::offsets::released, file.peek64(test::offsets::released) + pick(3) - 1); break;
                    }
                    break;
                }
                default: {  // the channel header, rarely: any byte of it
                    if (pick(4) == 0) base[pick(L::kHeaderBytes)] = static_cast<std::byte>(rng());
                    break;
                }
            }
        }

        // Read with the existing reader or a fresh one, to the first non-ok status.
        if (pick(2) == 0) {
            reader.reset();
            try {
                reader.emplace(RecordReader::attach(name, options));
            } catch (const shmchan::Error& error) {
                ++stats.attach_refused;
                if (std::string(error.what()).empty()) return "attach refused without a message";
            }
        }
        if (reader) {
            const bool timed = pick(8) == 0;
            Status status = Status::ok;
            std::uint64_t sum = 0;
            int reads = 0;
            const bool runs = pick(3) == 0;
            for (; reads < 100000; ++reads) {
                Record record;
                if (runs) {
                    // read_run: a view of a run's records (an event comes back as Status::event).
                    shmchan::RecordRun run;
                    status = timed ? reader->read_run_for(run, 1 + pick(300), 1ms) : reader->try_read_run(run, 1 + pick(300));
                    if (status == Status::event) status = Status::ok;
                    if (status != Status::ok) break;
                    ++stats.ok_reads;
                    if (run.bytes.size() != run.count * run.record_size) return "a run whose bytes are not count x size";
                    for (std::byte b : run.bytes) sum += static_cast<unsigned>(b);  // touch every byte
                    continue;
                }
                status = timed ? reader->read_for(record, 1ms) : reader->try_read(record);
                if (status != Status::ok) break;
                ++stats.ok_reads;
                if (record.kind != RecordKind::record && record.kind != RecordKind::barrier &&
                    record.kind != RecordKind::user_event) {
                    return "ok with an unknown kind";
                }
                for (std::byte b : record.bytes) sum += static_cast<unsigned>(b);  // touch every byte
            }
            (void)sum;
            if (reads == 100000) return "100000 reads without an end: a loop";
            if (!documented_read_status(status)) return "read returned " + describe(status) + " " + reader->last_error();
            if (status == Status::corrupt) {
                ++stats.corrupt;
                if (reader->last_error().empty()) return "corrupt without last_error()";
            } else if (status == Status::record_lost) {
                ++stats.lost;
            } else if (status == Status::end_of_stream) {
                ++stats.ends;
            } else {
                ++stats.other;
            }
            // Once more after the failure: still no crash, still a documented status.
            Record record;
            Status again = reader->try_read(record);
            if (again != Status::ok && !documented_read_status(again)) {
                return "read after " + describe(status) + " returned " + describe(again);
            }
        }
        reader.reset();
        writer.reset();
    }
    shmchan::remove_channel(name, true);
    return problem;
}

}  // namespace

TEST_SUITE("records") {

TEST_CASE("a reader fed mutated headers, frames and garbage segments never crashes, overruns or loops") {
    std::uint64_t first_seed = 1, cases = test::kSanitized ? 4000 : 20000;
    if (const char* seed = std::getenv("SHMCHAN_RECORDS_FUZZ_SEED")) {  // reproduce one case
        first_seed = std::strtoull(seed, nullptr, 10);
        cases = 1;
    }
    test::SharedBlock<FuzzShared> stats;
    // In a child: a crash or a hang fails this case (with the seed) instead of the runner.
    test::Child child([&] {
        for (std::uint64_t seed = first_seed; seed < first_seed + cases; ++seed) {
            stats->current.store(seed);
            std::string problem = fuzz_case(seed, *stats);
            if (!problem.empty()) {
                std::fprintf(stderr, "fuzz case %llu: %s\n", static_cast<unsigned long long>(seed), problem.c_str());
                return 3;
            }
            stats->cases.fetch_add(1);
        }
        return 0;
    });
    int code = child.exit_code(std::chrono::seconds(400));
    CHECK_MESSAGE(code == 0, "fuzz child exit " << code << " at case seed " << stats->current.load()
                                                << " (-1: hung, <= -100: killed by signal)");
    CHECK(stats->cases.load() == cases);
    MESSAGE("fuzz: " << stats->cases.load() << " cases, " << stats->ok_reads.load() << " ok reads, "
                     << stats->corrupt.load() << " corrupt, " << stats->attach_refused.load() << " attach refused, "
                     << stats->lost.load() << " lost, " << stats->ends.load() << " ends, " << stats->other.load()
                     << " would_block/timed_out/peer_died");
    if (cases >= 100) CHECK(stats->corrupt.load() > cases / 20);  // the mutations did reach the parser
}

// ---- 9. No allocation in steady state ---------------------------------------------------------------

TEST_CASE("steady-state writes and reads make no heap allocation") {
    const std::string name = test::unique_name("rec-alloc");
    auto options = records_options();  // default geometry
    constexpr std::uint64_t kWarmup = 5000, kMeasured = 100000;
    struct Pod {
        std::uint64_t index;
        std::uint64_t check;
        double value;
    };
    std::atomic<std::uint64_t> writer_allocations{~0ull}, reader_allocations{~0ull};
    std::atomic<int> writer_failures{0}, reader_failures{0};
    std::atomic<std::uint64_t> reader_checked{0};
    std::atomic<bool> writer_attached{false};

    std::thread writer_thread([&] {
        auto writer = RecordWriter::attach(name, options);
        writer_attached.store(true);
        std::byte bytes[64];
        std::uint64_t before = 0;
        for (std::uint64_t i = 0; i < kWarmup + kMeasured; ++i) {
            if (i == kWarmup) before = t_allocations;
            Status status;
            switch (i % 3) {
                case 0:
                    fill_record(bytes, sizeof bytes, i);
                    status = writer.write(std::span<const std::byte>(bytes, sizeof bytes));
                    break;
                case 1: {
                    std::span<std::byte> room;
                    status = writer.reserve(48, room);
                    if (status == Status::ok) {
                        fill_record(room.data(), 40, i);
                        status = writer.commit(40);
                    }
                    break;
                }
                default: status = writer.write_value(Pod{i, test::mix(i), 0.5 * static_cast<double>(i)}); break;
            }
            if (status != Status::ok) {
                ++writer_failures;
                break;
            }
        }
        writer_allocations.store(t_allocations - before);
        if (writer.end_stream() != Status::ok) ++writer_failures;
    });
    std::thread reader_thread([&] {
        while (!writer_attached.load()) std::this_thread::yield();
        auto reader = RecordReader::attach(name, options);
        std::uint64_t before = 0;
        for (std::uint64_t i = 0; i < kWarmup + kMeasured; ++i) {
            if (i == kWarmup) before = t_allocations;
            bool good;
            if (i % 3 == 2) {
                Pod pod{};
                good = reader.read_value(pod) == Status::ok && pod.index == i && pod.check == test::mix(i);
            } else {
                Record record;
                good = reader.read(record) == Status::ok &&
                       check_record(record.bytes, i, i % 3 == 0 ? 64 : 40).empty();
            }
            if (!good) {
                ++reader_failures;
                break;
            }
            reader_checked.fetch_add(1, std::memory_order_relaxed);
        }
        reader_allocations.store(t_allocations - before);
        Record record;
        if (reader.read(record) != Status::end_of_stream) ++reader_failures;
        reader.remove_channel();
    });
    writer_thread.join();
    reader_thread.join();
    CHECK(writer_failures.load() == 0);
    CHECK(reader_failures.load() == 0);
    CHECK(reader_checked.load() == kWarmup + kMeasured);
    CHECK(writer_allocations.load() == 0);
    CHECK(reader_allocations.load() == 0);
}

TEST_CASE("steady-state write_batch and read_batch make no heap allocation") {
    const std::string name = test::unique_name("rec-alloc-batch");
    auto options = records_options();
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    constexpr std::size_t kSize = 64, kCount = 600;  // a long run: framed in the writer's stage buffer
    std::vector<std::byte> bytes(kSize * kCount);
    std::uint64_t next = 0, bad = 0;
    auto take = [&](const Record& record) {
        if (index_of(record.bytes) != next++) ++bad;
    };
    std::uint64_t before = 0;
    for (int round = 0; round < 200; ++round) {
        if (round == 10) before = t_allocations;  // the stage buffer is allocated in the warm-up
        for (std::size_t k = 0; k < kCount; ++k) {
            const std::uint64_t index = static_cast<std::uint64_t>(round) * kCount + k;
            std::memcpy(bytes.data() + k * kSize, &index, sizeof index);
        }
        std::size_t written = 0, got = 0, delivered = 0;
        REQUIRE(writer.write_batch(bytes, kSize, written) == Status::ok);
        while (got < kCount) {
            REQUIRE(reader.read_batch(take, kCount, delivered) == Status::ok);
            got += delivered;
        }
    }
    CHECK(t_allocations - before == 0);
    CHECK(bad == 0);
    CHECK(next == 200 * kCount);
    CHECK(writer.end_stream() == Status::ok);
    reader.remove_channel();
}

TEST_CASE("the allocation hook counts (so the zero above can fail)") {
    std::uint64_t before = t_allocations;
    auto* p = new std::uint64_t(5);
    std::vector<int> v(100);
    delete p;
    CHECK(t_allocations - before >= 2);
}

}  // TEST_SUITE
