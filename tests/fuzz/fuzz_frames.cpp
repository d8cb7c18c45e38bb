// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the frame decoder (channels/detail/frame_decoder.hpp): the input becomes
// one segment's committed bytes, copied into a buffer of exactly that size (so ASan catches a
// read past them), with its flags, first record offset and seal. Every offset of it is decoded,
// the segment is walked from offset 0, a record's continuation and a resume offset are decoded;
// each answer must stay inside the committed bytes and a walk must end. Build and run:
// tests/fuzz/README.md.
//
// Input layout (missing bytes read as zero):
//   byte 0      bits 0-1 the segment flags (continues a record, the record continues),
//               bit 2 sealed, bit 3 a small max record (64 bytes, else 1 MiB)
//   bytes 1-2   committed bytes (little endian, mod capacity + 1)
//   bytes 3-4   first record offset (mod committed + 1)
//   bytes 5-8   the bytes a record being reassembled still needs
//   bytes 9-10  a resume offset to locate (mod capacity + 1)
//   bytes 11..  the payload
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "channels/detail/frame_decoder.hpp"
#include "channels/layout.hpp"

namespace L = shmchan::layout;
using namespace shmchan::detail;

namespace {

constexpr std::uint32_t kCapacity = 4096 - L::kSegmentHeaderBytes;

std::uint64_t load_le(const std::uint8_t* data, std::size_t size, std::size_t at, std::size_t bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < bytes; ++i) value |= std::uint64_t{at + i < size ? data[at + i] : 0u} << (8 * i);
    return value;
}

[[noreturn]] void fail(const char* what, const Frame& frame) {
    std::fprintf(stderr, "%s: step %s, fault %s, offset %llu, next %llu\n", what, to_string(frame.step),
                 to_string(frame.fault), static_cast<unsigned long long>(frame.offset),
                 static_cast<unsigned long long>(frame.next));
    std::abort();
}

// What every answer must satisfy: its bytes and its next offset inside the committed bytes.
void check_inside(const SegmentFrames& segment, const Frame& frame) {
    const std::byte* begin = segment.committed.data();
    const std::uint64_t size = segment.committed.size();
    if (!frame.bytes.empty() &&
        (frame.bytes.data() < begin || frame.bytes.data() + frame.bytes.size() > begin + size)) {
        fail("bytes outside the committed ones", frame);
    }
    if (frame.next > size && frame.next != frame.offset) fail("next past the committed bytes", frame);
    if (frame.step == FrameStep::run &&
        (frame.run.end > size || frame.run.data > frame.run.end || frame.run.header.record_size == 0)) {
        fail("run outside the committed bytes", frame);
    }
    if (frame.step == FrameStep::corrupt && frame.fault == FrameFault::none) fail("corrupt without a fault", frame);
}

bool moves_on(const Frame& frame) {
    return frame.step == FrameStep::record || frame.step == FrameStep::event || frame.step == FrameStep::run ||
           (frame.step == FrameStep::continuation && frame.next > 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::uint64_t control = load_le(data, size, 0, 1);
    const std::uint64_t committed = load_le(data, size, 1, 2) % (kCapacity + 1);
    const std::uint64_t first_record_offset = load_le(data, size, 3, 2) % (committed + 1);
    const std::uint64_t needed = load_le(data, size, 5, 4);
    const std::uint64_t target = load_le(data, size, 9, 2) % (kCapacity + 1);
    constexpr std::size_t payload_at = 11;

    // Exactly `committed` bytes on the heap: a read past them is an ASan report.
    std::unique_ptr<std::byte[]> payload(new std::byte[committed ? committed : 1]);
    for (std::uint64_t i = 0; i < committed; ++i) {
        payload[i] = std::byte{payload_at + i < size ? data[payload_at + i] : std::uint8_t{0}};
    }
    SegmentFrames segment;
    segment.committed = std::span<const std::byte>(payload.get(), committed);
    segment.flags = static_cast<std::uint32_t>(control & 3);
    segment.first_record_offset = static_cast<std::uint32_t>(first_record_offset);
    segment.sealed = (control & 4) != 0;
    segment.capacity = kCapacity;
    segment.max_record = (control & 8) ? 64 : 1u << 20;

    for (std::uint64_t offset = 0; offset <= committed; ++offset) {
        const Frame frame = decode_frame(segment, offset);
        if (frame.offset != offset) fail("offset changed", frame);
        check_inside(segment, frame);
        if (moves_on(frame) && frame.next <= offset) fail("a whole frame that does not move on", frame);
    }
    std::uint64_t steps = 0;
    for (Frame frame = decode_frame(segment, 0); moves_on(frame); frame = decode_frame(segment, frame.next)) {
        if (++steps > committed + 1) fail("a walk that does not end", frame);
    }
    const Frame part = decode_continuation(segment, needed);
    check_inside(segment, part);
    if (part.step == FrameStep::continuation && part.bytes.size() > needed) fail("continuation beyond the record", part);
    const FramePlace place = locate_frame(segment, target);
    if (place.found && (target > committed || place.run_end > committed || (place.run_end != 0 && place.record_size == 0))) {
        std::fprintf(stderr, "located %llu outside the committed %llu bytes\n", static_cast<unsigned long long>(target),
                     static_cast<unsigned long long>(committed));
        std::abort();
    }
    return 0;
}
