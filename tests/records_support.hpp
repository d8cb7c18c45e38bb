// SPDX-License-Identifier: Apache-2.0
// What the records suites (tests/test_records*.cpp) share: the geometry, records whose every byte
// is a function of their index (so a reader can check each one), and a producer body.
#pragma once

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


namespace recordtest {

inline constexpr std::uint32_t kSmallSegment = 4096;
inline constexpr std::uint32_t kSmallCount = 4;
inline constexpr std::uint32_t kPayload = kSmallSegment - L::kSegmentHeaderBytes;  // 4032
inline constexpr auto kDeadline = std::chrono::seconds(60);                       // per blocking call

inline ChannelOptions records_options(std::optional<std::uint32_t> segment_size = std::nullopt,
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
inline void fill_record(std::byte* out, std::size_t size, std::uint64_t index) {
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

inline std::vector<std::byte> make_record(std::size_t size, std::uint64_t index) {
    std::vector<std::byte> bytes(size);
    fill_record(bytes.data(), size, index);
    return bytes;
}

// Empty if `bytes` is record `index` of `size` bytes; otherwise what differs.
inline std::string check_record(std::span<const std::byte> bytes, std::uint64_t index, std::size_t size) {
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
inline std::uint64_t index_of(std::span<const std::byte> bytes) {
    std::uint64_t index = ~0ull;
    if (bytes.size() >= 8) std::memcpy(&index, bytes.data(), 8);
    return index;
}

inline std::string describe(Status status) { return shmchan::to_string(status); }

// A list of record sizes: the edge sizes of the geometry, then `random_count` random ones (mostly
// small, some up to a segment, some spanning up to `max_large`).
inline std::vector<std::size_t> make_sizes(std::uint32_t segment_size, std::size_t random_count, std::size_t max_large,
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
inline int write_records(const std::string& name, const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
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
inline void round_trip(const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
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

}  // namespace recordtest

using namespace recordtest;
