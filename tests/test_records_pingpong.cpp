// SPDX-License-Identifier: Apache-2.0
// Regression guard for the spin-mode stall the bench once saw (docs/PERFORMANCE.md): a ping-pong of
// records larger than the ring with WaitStrategy::spin on both sides, in the "records" suite.
//
// What it checks, with no timing verdict except a blocking call's generous deadline:
//  - every round trip completes (read_for with a deadline: timed_out = the reported stall);
//  - the echo is intact (every byte);
//  - on both readers, after read() returns a record that starts in segment S, the channel's
//    `released` is >= S (finish_previous released everything before the record) and the reader
//    holds at most segment_count segments (published - released <= segment_count). A reader whose
//    floor advanced without a release (an ignored release_until failure) breaks the first check.
// The record sizes walk every start offset (a frame's size mod the payload is a multiple of 8
// coprime with payload/8) and include records ending exactly at a segment boundary and records
// whose header leaves exactly 8 bytes of room.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "support.hpp"

namespace shmchan {
namespace {

namespace L = layout;
using namespace std::chrono_literals;

constexpr auto kPingPongDeadline = std::chrono::seconds(30);  // per blocking call

ChannelOptions spin_records(std::optional<std::uint32_t> segment_size, std::optional<std::uint32_t> segment_count) {
    ChannelOptions options;
    options.segment_size = segment_size;
    options.segment_count = segment_count;
    options.framing = L::Framing::records;
    options.wait = WaitStrategy::spin;
    return options;
}

void fill_ping(std::byte* out, std::size_t size, std::uint64_t index) {
    std::uint64_t x = test::mix(index + 0x51f15eedull);
    std::size_t at = 0;
    while (at < size) {
        x += 0x9e3779b97f4a7c15ull;
        std::uint64_t word = x ^ (x >> 29);
        std::size_t n = std::min<std::size_t>(8, size - at);
        std::memcpy(out + at, &word, n);
        at += n;
    }
}

bool is_ping(std::span<const std::byte> bytes, std::size_t size, std::uint64_t index, std::vector<std::byte>& scratch) {
    if (bytes.size() != size) return false;
    scratch.resize(size);
    fill_ping(scratch.data(), size, index);
    return std::memcmp(bytes.data(), scratch.data(), size) == 0;
}

// Sizes larger than the ring (segment_count * payload): exact segment multiples of frames, the
// "8 bytes of room left" case, and a walk over every start offset.
std::vector<std::size_t> ping_sizes(std::size_t payload, std::size_t count, std::size_t rounds, std::uint64_t seed) {
    const std::size_t ring = payload * count;
    std::vector<std::size_t> sizes;
    for (std::size_t n = count + 1; n <= count + 3; ++n) {
        sizes.push_back(n * payload - L::kFrameHeaderBytes);       // frame fills n segments exactly
        sizes.push_back(n * payload - 2 * L::kFrameHeaderBytes);   // 8 bytes of room left after it
        sizes.push_back(n * payload - L::kFrameHeaderBytes + 1);   // one byte into the next segment
    }
    // Steps of 8 * 5 bytes (5 is coprime with payload / 8 for both geometries) walk the offsets.
    for (std::size_t k = 0; sizes.size() < rounds / 2; ++k) sizes.push_back(ring + 1 + ((k * 5 * 8) % payload));
    std::mt19937_64 rng(seed);
    while (sizes.size() < rounds) sizes.push_back(ring + 1 + rng() % (ring + payload));
    return sizes;
}

// After read() returned a record starting in segment `start`: the reader released everything
// before it and holds at most the ring. Empty if so.
std::string check_released(RecordReader& reader, std::uint64_t start) {
    ChannelInfo info = reader.consumer().info();
    if (info.released < start) {
        return "released " + std::to_string(info.released) + " < record start segment " + std::to_string(start);
    }
    if (info.published - info.released > info.segment_count) {
        return "published " + std::to_string(info.published) + " - released " + std::to_string(info.released) +
               " exceeds the ring";
    }
    return {};
}

// The ponger: echoes every ping until end of stream. 0 on success.
int ponger(const std::string& ping, const std::string& pong, const ChannelOptions& options,
           const std::vector<std::size_t>& sizes) {
    auto reader = RecordReader::attach(ping, options);
    auto writer = RecordWriter::attach(pong, options);
    std::vector<std::byte> scratch;
    for (std::size_t i = 0;; ++i) {
        Record record;
        Status status = reader.read_for(record, kPingPongDeadline);
        if (status == Status::end_of_stream) return i == sizes.size() ? 0 : 4;
        if (status != Status::ok) {
            std::fprintf(stderr, "ponger: read of ping %zu: %s %s\n", i, to_string(status), reader.last_error().c_str());
            return 3;
        }
        CHILD_EXPECT(i < sizes.size());
        CHILD_EXPECT(is_ping(record.bytes, sizes[i], i, scratch));
        std::string problem = check_released(reader, record.position.segment);
        if (!problem.empty()) {
            std::fprintf(stderr, "ponger: ping %zu: %s\n", i, problem.c_str());
            return 5;
        }
        CHILD_EXPECT(writer.write(record.bytes) == Status::ok);
        CHILD_EXPECT(writer.flush() == Status::ok);
    }
}

void ping_pong(const ChannelOptions& options, std::size_t payload, std::size_t count, std::size_t rounds) {
    const std::string ping = test::unique_name("pp-ping");
    const std::string pong = test::unique_name("pp-pong");
    const auto sizes = ping_sizes(payload, count, rounds, 7 + count);
    test::Child child([&] { return ponger(ping, pong, options, sizes); });
    auto writer = RecordWriter::attach(ping, options);
    auto reader = RecordReader::attach(pong, options);
    std::vector<std::byte> buffer, scratch;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        CAPTURE(i);
        CAPTURE(sizes[i]);
        buffer.resize(sizes[i]);
        fill_ping(buffer.data(), sizes[i], i);
        REQUIRE(writer.write(std::span<const std::byte>(buffer.data(), sizes[i])) == Status::ok);
        REQUIRE(writer.flush() == Status::ok);
        Record echo;
        Status status = reader.read_for(echo, kPingPongDeadline);
        // timed_out here is the stall of the bench: a committed ping or echo not seen.
        REQUIRE_MESSAGE(status == Status::ok, "echo " << i << ": " << to_string(status) << " " << reader.last_error()
                                                      << "; ping " << writer.producer().info().published << " published, "
                                                      << writer.producer().info().released << " released");
        REQUIRE(is_ping(echo.bytes, sizes[i], i, scratch));
        std::string problem = check_released(reader, echo.position.segment);
        REQUIRE_MESSAGE(problem.empty(), problem);
    }
    REQUIRE(writer.end_stream() == Status::ok);
    CHECK(child.exit_code(std::chrono::duration_cast<std::chrono::milliseconds>(kPingPongDeadline)) == 0);
    Record last;
    CHECK(reader.try_read(last) != Status::ok);  // nothing but (possibly) the ponger's end
    reader.remove_channel();
}

}  // namespace

TEST_SUITE("records") {

TEST_CASE("spin ping-pong of records larger than the ring: every round trip completes, released keeps up") {
    SUBCASE("4 KiB x 4 (a 16 KiB ring)") {
        ping_pong(spin_records(4096, 4), 4096 - L::kSegmentHeaderBytes, 4, test::kSanitized ? 300 : 2000);
    }
    SUBCASE("default 32 KiB x 16, records of 0.5 to 1.5 MiB") {
        ping_pong(spin_records(std::nullopt, std::nullopt), L::kDefaultSegmentSize - L::kSegmentHeaderBytes,
                  L::kDefaultSegmentCount, test::kSanitized ? 40 : 300);
    }
}

}  // TEST_SUITE

}  // namespace shmchan
