// SPDX-License-Identifier: Apache-2.0
// The frame decoder (channels/detail/frame_decoder.hpp) at the byte level, in process: segments
// built by hand in a buffer, one case per frame kind and per fault, offsets and faults asserted.
// Last, `shm-inspect peek` and a RecordReader read one real channel and must agree.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/detail/frame_decoder.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "support.hpp"

#ifndef SHMCHAN_SHM_INSPECT_PATH
#error "SHMCHAN_SHM_INSPECT_PATH must name the shm-inspect binary"
#endif

namespace {

namespace L = shmchan::layout;
using shmchan::detail::decode_continuation;
using shmchan::detail::decode_frame;
using shmchan::detail::Frame;
using shmchan::detail::FrameFault;
using shmchan::detail::FrameStep;
using shmchan::detail::locate_frame;
using shmchan::detail::SegmentFrames;

constexpr std::uint32_t kCapacity = 4096 - L::kSegmentHeaderBytes;

// A segment's payload, built frame by frame; `committed` is how much of it the decoder sees.
struct Segment {
    alignas(64) std::array<std::byte, kCapacity> payload{};
    std::uint64_t committed = 0;
    std::uint32_t flags = 0;
    std::uint32_t first_record_offset = 0;
    bool sealed = true;
    std::uint64_t max_record = 1000;

    SegmentFrames frames() const {
        return {std::span<const std::byte>(payload.data(), committed), flags, first_record_offset, sealed, kCapacity,
                max_record};
    }
    void header(std::uint64_t at, std::uint32_t length, std::uint16_t kind, std::uint16_t event_type = 0) {
        const L::FrameHeader frame{length, kind, event_type};
        std::memcpy(payload.data() + at, &frame, sizeof frame);
    }
    // A frame of `length` payload bytes (filled with `fill`) at `at`; commits through it and
    // returns where the next frame starts.
    std::uint64_t put(std::uint64_t at, std::uint32_t length, L::FrameKind kind, std::uint16_t event_type = 0,
                      std::byte fill = std::byte{0x5a}) {
        header(at, length, static_cast<std::uint16_t>(kind), event_type);
        std::fill_n(payload.data() + at + L::kFrameHeaderBytes, length, fill);
        committed = L::frame_align(at + L::kFrameHeaderBytes + length);
        return committed;
    }
    // A record_run frame of `count` records of `size` bytes at `at`, as the writer lays it out.
    std::uint64_t put_run(std::uint64_t at, std::uint32_t size, std::uint32_t count) {
        const std::uint64_t data = L::run_data_offset(at);
        header(at, static_cast<std::uint32_t>(data - at - L::kFrameHeaderBytes + std::uint64_t{size} * count),
               static_cast<std::uint16_t>(L::FrameKind::record_run));
        const L::RunHeader run{size, count};
        std::memcpy(payload.data() + at + L::kFrameHeaderBytes, &run, sizeof run);
        committed = L::frame_align(data + std::uint64_t{size} * count);
        return committed;
    }
    const std::byte* at(std::uint64_t offset) const { return payload.data() + offset; }
};

constexpr auto kRecord = L::FrameKind::record;

void check_corrupt(const Frame& frame, std::uint64_t offset, FrameFault fault) {
    CHECK(frame.step == FrameStep::corrupt);
    CHECK(frame.fault == fault);
    CHECK(frame.offset == offset);
    CHECK(frame.next == offset);
}

}  // namespace

TEST_SUITE("frames") {

TEST_CASE("a record frame: its bytes and the next frame's offset") {
    Segment s;
    CHECK(s.put(0, 5, kRecord) == 16);
    CHECK(s.put(16, 0, kRecord) == 24);  // an empty record
    Frame f = decode_frame(s.frames(), 0);
    CHECK(f.step == FrameStep::record);
    CHECK(f.offset == 0);
    CHECK(f.length == 5);
    CHECK(f.bytes.data() == s.at(8));
    CHECK(f.bytes.size() == 5);
    CHECK_FALSE(f.spans);
    CHECK(f.next == 16);
    f = decode_frame(s.frames(), 16);
    CHECK(f.step == FrameStep::record);
    CHECK(f.bytes.size() == 0);
    CHECK(f.next == 24);
    CHECK(decode_frame(s.frames(), 24).step == FrameStep::end);
    CHECK(decode_frame(s.frames(), 24).next == 24);
    // A last frame whose padding the committed bytes do not hold: next is the committed end.
    s.put(16, 1, kRecord);
    s.committed = 25;
    CHECK(decode_frame(s.frames(), 16).next == 25);
}

TEST_CASE("event frames: end of stream, barrier, user event") {
    Segment s;
    s.put(0, 0, L::FrameKind::end_of_stream);
    s.put(8, 8, L::FrameKind::barrier);
    const std::uint64_t id = 42;
    std::memcpy(s.payload.data() + 16, &id, sizeof id);
    s.put(24, 3, L::FrameKind::user_event, 7);
    Frame f = decode_frame(s.frames(), 0);
    CHECK(f.step == FrameStep::event);
    CHECK(f.kind == L::FrameKind::end_of_stream);
    CHECK(f.bytes.empty());
    CHECK(f.next == 8);
    f = decode_frame(s.frames(), 8);
    CHECK(f.step == FrameStep::event);
    CHECK(f.kind == L::FrameKind::barrier);
    REQUIRE(f.bytes.size() == 8);
    std::uint64_t read = 0;
    std::memcpy(&read, f.bytes.data(), sizeof read);
    CHECK(read == 42);
    CHECK(f.next == 24);
    f = decode_frame(s.frames(), 24);
    CHECK(f.step == FrameStep::event);
    CHECK(f.kind == L::FrameKind::user_event);
    CHECK(f.event_type == 7);
    CHECK(f.bytes.data() == s.at(32));
    CHECK(f.bytes.size() == 3);
    CHECK(f.next == 40);
}

TEST_CASE("a record_run frame: where its records start and end, and the frame after it") {
    Segment s;
    s.put(0, 4, kRecord);
    const std::uint64_t after = s.put_run(16, 12, 5);  // data at 64, 60 bytes of records
    CHECK(after == 128);
    const Frame f = decode_frame(s.frames(), 16);
    CHECK(f.step == FrameStep::run);
    CHECK(f.offset == 16);
    CHECK(f.run.header.record_size == 12);
    CHECK(f.run.header.count == 5);
    CHECK(f.run.data == 64);
    CHECK(f.run.end == 124);
    CHECK(f.bytes.data() == s.at(64));
    CHECK(f.bytes.size() == 60);
    CHECK(f.next == 128);
}

TEST_CASE("continuation bytes at the start of a segment that continues a record") {
    Segment s;
    s.flags = L::kSegmentContinuesRecord;
    s.first_record_offset = 24;  // 20 continuation bytes, rounded up
    s.put(24, 3, kRecord);
    Frame f = decode_frame(s.frames(), 0);
    CHECK(f.step == FrameStep::continuation);
    CHECK(f.offset == 0);
    CHECK(f.bytes.data() == s.at(0));
    CHECK(f.bytes.size() == 24);
    CHECK_FALSE(f.spans);
    CHECK(f.next == 24);
    CHECK(decode_frame(s.frames(), f.next).step == FrameStep::record);

    // All continuation, and the record goes on: the whole segment.
    s.flags = L::kSegmentContinuesRecord | L::kSegmentRecordContinues;
    s.committed = kCapacity;
    s.first_record_offset = kCapacity;
    f = decode_frame(s.frames(), 0);
    CHECK(f.step == FrameStep::continuation);
    CHECK(f.spans);
    CHECK(f.bytes.size() == kCapacity);
    CHECK(f.next == kCapacity);

    // A continuation holds at least one byte: at offset 0 a reader would never move on.
    s.flags = L::kSegmentContinuesRecord;
    s.committed = 64;
    s.first_record_offset = 0;
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::empty_continuation);
}

TEST_CASE("a record that spans segments, and one still being written") {
    Segment s;
    s.put(0, 8, kRecord);
    s.header(16, 5000, static_cast<std::uint16_t>(kRecord));  // runs past the segment's end
    s.committed = kCapacity;
    s.max_record = 1 << 20;
    s.flags = L::kSegmentRecordContinues;
    Frame f = decode_frame(s.frames(), 16);
    CHECK(f.step == FrameStep::record);
    CHECK(f.spans);
    CHECK(f.length == 5000);
    CHECK(f.bytes.data() == s.at(24));
    CHECK(f.bytes.size() == kCapacity - 24);
    CHECK(f.next == kCapacity);

    // The same frame seen in a segment not sealed yet: wait (the flags may not be final).
    s.sealed = false;
    s.flags = 0;
    s.committed = 200;
    f = decode_frame(s.frames(), 16);
    CHECK(f.step == FrameStep::pending);
    CHECK(f.offset == 16);
    CHECK(f.next == 16);
    CHECK(f.bytes.size() == 200 - 24);
}

TEST_CASE("corrupt: misaligned offset, truncated header, unknown kind") {
    Segment s;
    s.put(0, 16, kRecord);
    check_corrupt(decode_frame(s.frames(), 4), 4, FrameFault::misaligned);
    s.committed = 20;  // 4 bytes of a header at 16
    s.header(16, 0, 0);
    check_corrupt(decode_frame(s.frames(), 16), 16, FrameFault::truncated_header);
    s.put(0, 16, static_cast<L::FrameKind>(9));
    const Frame f = decode_frame(s.frames(), 0);
    check_corrupt(f, 0, FrameFault::unknown_kind);
    CHECK(static_cast<unsigned>(f.kind) == 9);
}

TEST_CASE("corrupt: a record over the maximum, events of bad lengths") {
    Segment s;
    s.max_record = 100;
    s.put(0, 101, kRecord);
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::record_too_large);
    s.put(0, 100, kRecord);
    CHECK(decode_frame(s.frames(), 0).step == FrameStep::record);
    s.put(0, 4, L::FrameKind::barrier);
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::bad_event_length);
    s.put(0, 1, L::FrameKind::end_of_stream);
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::bad_event_length);
    s.put(0, L::kMaxEventPayload + 1, L::FrameKind::user_event);
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::bad_event_length);
    s.put(0, L::kMaxEventPayload, L::FrameKind::user_event);
    CHECK(decode_frame(s.frames(), 0).step == FrameStep::event);
}

TEST_CASE("corrupt: a frame whose length runs past the committed bytes") {
    Segment s;
    s.put(0, 40, kRecord);
    s.committed = 32;
    // A sealed segment that does not say its last record goes on.
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::past_committed);
    // An event never spans, flag or not, sealed or not.
    s.put(0, 40, L::FrameKind::user_event);
    s.committed = 32;
    s.flags = L::kSegmentRecordContinues;
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::past_committed);
    s.sealed = false;
    check_corrupt(decode_frame(s.frames(), 0), 0, FrameFault::past_committed);
}

TEST_CASE("corrupt: run headers that do not fit") {
    Segment s;
    s.put_run(0, 12, 5);
    const std::uint64_t run_header = L::kFrameHeaderBytes;
    auto poke = [&](std::uint64_t at, std::uint32_t value) { std::memcpy(s.payload.data() + at, &value, 4); };
    auto check_bad_run = [&](const char* what) {
        CAPTURE(what);
        const Frame f = decode_frame(s.frames(), 0);
        check_corrupt(f, 0, FrameFault::bad_run);
    };
    poke(run_header + 4, 0x10000000);  // count: records beyond the frame and the segment
    check_bad_run("count too large");
    poke(run_header + 4, 5);
    poke(run_header, 0);  // record size 0
    check_bad_run("record size 0");
    poke(run_header, 13);  // records larger than the frame
    check_bad_run("record size 13");
    poke(run_header, 12);
    REQUIRE(decode_frame(s.frames(), 0).step == FrameStep::run);
    poke(run_header, 0);
    poke(run_header + 4, 0);  // count 0
    poke(run_header, 12);
    check_bad_run("count 0");
    poke(run_header + 4, 5);
    s.max_record = 11;  // records over the maximum
    check_bad_run("records over the maximum");
    s.max_record = 1000;
    s.committed = 100;  // the frame passes the committed bytes (a run never spans)
    check_bad_run("frame past the committed bytes");
    // A run frame too short to hold its run header, and one whose run header is cut off by the
    // committed bytes: the header is not read (it stays zero), the run is refused.
    s.put(0, 4, L::FrameKind::record_run);
    Frame f = decode_frame(s.frames(), 0);
    check_corrupt(f, 0, FrameFault::bad_run);
    CHECK(f.run.header.record_size == 0);
    s.put_run(0, 12, 5);
    s.committed = 12;
    f = decode_frame(s.frames(), 0);
    check_corrupt(f, 0, FrameFault::bad_run);
    CHECK(f.run.header.record_size == 0);
}

TEST_CASE("continuation of a record being reassembled") {
    Segment s;
    s.flags = 0;
    check_corrupt(decode_continuation(s.frames(), 10), 0, FrameFault::not_a_continuation);

    // The record ends here after 20 bytes; the next frame at 24.
    s.flags = L::kSegmentContinuesRecord;
    s.first_record_offset = 24;
    s.put(24, 1, kRecord);
    Frame f = decode_continuation(s.frames(), 20);
    CHECK(f.step == FrameStep::continuation);
    CHECK_FALSE(f.spans);
    CHECK(f.bytes.data() == s.at(0));
    CHECK(f.bytes.size() == 20);
    CHECK(f.next == 24);
    check_corrupt(decode_continuation(s.frames(), 30), 0, FrameFault::misplaced_first_frame);

    // More needed than the segment holds: pending until sealed, then all of a full segment that
    // says the record goes on; anything short of that is corrupt.
    s.committed = kCapacity;
    s.first_record_offset = kCapacity;
    s.sealed = false;
    CHECK(decode_continuation(s.frames(), 5000).step == FrameStep::pending);
    s.sealed = true;
    check_corrupt(decode_continuation(s.frames(), 5000), 0, FrameFault::short_continuation);
    s.flags |= L::kSegmentRecordContinues;
    f = decode_continuation(s.frames(), 5000);
    CHECK(f.step == FrameStep::continuation);
    CHECK(f.spans);
    CHECK(f.bytes.size() == kCapacity);
    CHECK(f.next == kCapacity);
    s.committed = kCapacity - 8;
    s.first_record_offset = kCapacity - 8;
    check_corrupt(decode_continuation(s.frames(), 5000), 0, FrameFault::short_continuation);
}

TEST_CASE("a segment walked frame by frame: every kind, in order") {
    Segment s;
    s.flags = L::kSegmentContinuesRecord;
    s.first_record_offset = 16;
    std::uint64_t at = 16;
    at = s.put(at, 3, kRecord);                    // 16
    at = s.put_run(at, 7, 3);                      // 32: data at 64, ends at 85
    at = s.put(at, 8, L::FrameKind::barrier);      // 88
    at = s.put(at, 2, L::FrameKind::user_event, 1);  // 104
    at = s.put(at, 0, L::FrameKind::end_of_stream);  // 120
    std::vector<std::pair<FrameStep, std::uint64_t>> walked;
    for (Frame f = decode_frame(s.frames(), 0); f.step != FrameStep::end; f = decode_frame(s.frames(), f.next)) {
        REQUIRE(f.step != FrameStep::corrupt);
        REQUIRE(walked.size() < 10);
        walked.emplace_back(f.step, f.offset);
    }
    const std::vector<std::pair<FrameStep, std::uint64_t>> expected{
        {FrameStep::continuation, 0}, {FrameStep::record, 16}, {FrameStep::run, 32},
        {FrameStep::event, 88},       {FrameStep::event, 104}, {FrameStep::event, 120}};
    CHECK(walked == expected);
    CHECK(at == 128);
}

TEST_CASE("locate_frame: frame starts and record starts inside a run, nothing else") {
    Segment s;
    s.flags = L::kSegmentContinuesRecord;
    s.first_record_offset = 8;
    s.put(8, 3, kRecord);  // 8
    s.put_run(24, 12, 5);  // 24: data at 64, ends at 124
    s.put(128, 1, kRecord);
    CHECK(locate_frame(s.frames(), 8).found);  // the first frame after the continuation
    CHECK(locate_frame(s.frames(), 24).found);
    CHECK(locate_frame(s.frames(), 24).run_end == 0);
    for (std::uint64_t i = 0; i < 5; ++i) {
        const auto place = locate_frame(s.frames(), 64 + 12 * i);
        CHECK(place.found);
        CHECK(place.run_end == 124);
        CHECK(place.record_size == 12);
    }
    CHECK(locate_frame(s.frames(), 128).found);
    CHECK(locate_frame(s.frames(), 144).found);  // the committed end: a frame not written yet
    CHECK_FALSE(locate_frame(s.frames(), 4).found);   // inside the continuation bytes
    CHECK_FALSE(locate_frame(s.frames(), 16).found);  // inside a record frame
    CHECK_FALSE(locate_frame(s.frames(), 40).found);  // the run's padding
    CHECK_FALSE(locate_frame(s.frames(), 65).found);  // inside a record of the run
    CHECK_FALSE(locate_frame(s.frames(), 200).found);  // past the committed bytes
    // A bad frame on the way: nothing after it can be located.
    s.header(24, 0, 9);
    CHECK_FALSE(locate_frame(s.frames(), 128).found);
}

TEST_CASE("garbage: every offset of random segments stays within the committed bytes") {
    Segment s;
    std::uint64_t seed = 1;
    for (int round = 0; round < 200; ++round) {
        for (std::size_t i = 0; i < s.payload.size(); i += 8) {
            seed = shmchan::test::mix(seed + i);
            std::uint64_t word = seed;
            // Mostly small lengths and known kinds, so that walks get past the first frame.
            if (round % 2 == 0) word &= 0x0003'0007'0000'00ffull;
            std::memcpy(s.payload.data() + i, &word, sizeof word);
        }
        s.committed = shmchan::test::mix(seed) % (kCapacity + 1);
        s.flags = static_cast<std::uint32_t>(round % 4);
        s.first_record_offset = static_cast<std::uint32_t>(shmchan::test::mix(seed + 1) % (s.committed + 1));
        s.sealed = round % 3 != 0;
        const SegmentFrames frames = s.frames();
        const std::byte* begin = s.payload.data();
        const std::byte* end = begin + s.committed;
        for (std::uint64_t offset = 0; offset <= s.committed; ++offset) {
            const Frame f = decode_frame(frames, offset);
            REQUIRE(f.offset == offset);
            REQUIRE(f.next <= std::max<std::uint64_t>(offset, s.committed));
            if (!f.bytes.empty()) {
                REQUIRE(f.bytes.data() >= begin);
                REQUIRE(f.bytes.data() + f.bytes.size() <= end);
            }
            const bool whole = f.step == FrameStep::record || f.step == FrameStep::event || f.step == FrameStep::run;
            if (whole) REQUIRE(f.next > offset);
            if (f.step == FrameStep::run) REQUIRE(f.run.end <= s.committed);
        }
        // A walk ends: whole frames move forward, continuation bytes come only at offset 0.
        std::uint64_t steps = 0;
        Frame f = decode_frame(frames, 0);
        auto moves_on = [](const Frame& frame) {
            return frame.step == FrameStep::record || frame.step == FrameStep::event || frame.step == FrameStep::run ||
                   (frame.step == FrameStep::continuation && frame.next > 0);
        };
        while (moves_on(f)) {
            f = decode_frame(frames, f.next);
            REQUIRE(++steps <= kCapacity);
        }
        for (std::uint64_t needed : {std::uint64_t{1}, s.committed, s.committed + 1, std::uint64_t{1} << 40}) {
            const Frame part = decode_continuation(frames, needed);
            if (!part.bytes.empty()) REQUIRE(part.bytes.data() + part.bytes.size() <= end);
            REQUIRE(part.next <= s.committed);
        }
        (void)locate_frame(frames, shmchan::test::mix(seed + 2) % (kCapacity + 1));
    }
}

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

// What peek shows of each record and event, in order, reduced to "record @S:O, N bytes" and
// "event @S:O: ..." (the payload dropped).
std::vector<std::string> peek_items(const std::string& out) {
    static const std::regex item(
        R"(^(record @\d+:\d+, \d+ bytes|event @\d+:\d+: (checkpoint barrier \d+|user event \d+, \d+ bytes|end of stream)))");
    std::vector<std::string> items;
    std::istringstream in(out);
    std::string line;
    std::smatch match;
    while (std::getline(in, line)) {
        if (std::regex_search(line, match, item)) items.push_back(match[1].str());
    }
    return items;
}

std::string where(const shmchan::RecordPosition& position) {
    return "@" + std::to_string(position.segment) + ":" + std::to_string(position.offset);
}

}  // namespace

TEST_CASE("peek and the reader decode a real channel's segments alike") {
    using shmchan::RecordKind;
    using shmchan::Status;
    const std::string name = shmchan::test::unique_name("frames-agree");
    const shmchan::ChannelOptions options = shmchan::test::geometry(4096, 8);
    shmchan::test::Child writer([&] {
        auto w = shmchan::RecordWriter::attach(name, options);
        bool ok = w.write(std::string_view("alpha")) == Status::ok;
        std::vector<std::uint32_t> values{1, 2, 3, 4, 5, 6};
        std::size_t written = 0;
        ok = ok && w.write_values(std::span<const std::uint32_t>(values), written) == Status::ok && written == 6;
        ok = ok && w.write_barrier(42) == Status::ok;
        const std::array<std::byte, 2> wm{std::byte{'w'}, std::byte{'m'}};
        ok = ok && w.write_event(7, wm) == Status::ok;
        ok = ok && w.write(std::string(2000, 'a')) == Status::ok;  // a run of one, aligned
        ok = ok && w.write(std::string(9000, 'b')) == Status::ok;  // spans three segments
        ok = ok && w.write(std::string_view("omega")) == Status::ok;
        ok = ok && w.end_stream() == Status::ok;
        return ok ? 0 : 1;
    });
    REQUIRE(writer.exit_code() == 0);

    const std::string out_path = shmchan::test::channel_directory() + "/frames-peek.out";
    const pid_t pid = shmchan::test::spawn({SHMCHAN_SHM_INSPECT_PATH, "peek", name, "--count", "100"}, "/dev/null",
                                           out_path, "/dev/null");
    REQUIRE(pid > 0);
    REQUIRE(shmchan::test::wait_exit(pid) == 0);
    const std::vector<std::string> peeked = peek_items(slurp(out_path));

    std::vector<std::string> read;
    auto reader = shmchan::RecordReader::attach(name, options);
    shmchan::Record record;
    Status status = Status::ok;
    while ((status = reader.try_read(record)) == Status::ok) {
        const std::string at = where(record.position);
        switch (record.kind) {
            case RecordKind::record: read.push_back("record " + at + ", " + std::to_string(record.bytes.size()) + " bytes"); break;
            case RecordKind::barrier: read.push_back("event " + at + ": checkpoint barrier " + std::to_string(record.checkpoint_id)); break;
            case RecordKind::user_event:
                read.push_back("event " + at + ": user event " + std::to_string(record.event_type) + ", " +
                               std::to_string(record.bytes.size()) + " bytes");
                break;
            case RecordKind::in_flight_end: read.push_back("in flight end"); break;
        }
    }
    REQUIRE(status == Status::end_of_stream);
    read.push_back("event " + where(record.position) + ": end of stream");
    CHECK(read.size() == 13);  // 1 + 6 + barrier + event + 3 + end
    CHECK(peeked == read);
    reader.remove_channel();
}

}  // TEST_SUITE
