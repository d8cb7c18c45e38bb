// SPDX-License-Identifier: Apache-2.0
// The frame decoder (frame_decoder.hpp). Every length and offset is checked in 64-bit arithmetic
// against the committed bytes before a byte is read; each header is copied into a local once.
#include "channels/detail/frame_decoder.hpp"

#include <algorithm>
#include <cstring>

namespace shmchan::detail {

namespace L = layout;

namespace {

Frame corrupt(Frame frame, FrameFault fault) noexcept {
    frame.step = FrameStep::corrupt;
    frame.fault = fault;
    frame.next = frame.offset;
    return frame;
}

// The bytes [from, from + count) of the committed ones (the caller checked they lie inside).
std::span<const std::byte> part(const SegmentFrames& segment, std::uint64_t from, std::uint64_t count) noexcept {
    return segment.committed.subspan(from, count);
}

bool event_length_ok(L::FrameKind kind, std::uint64_t length) noexcept {
    switch (kind) {
        case L::FrameKind::end_of_stream: return length == 0;
        case L::FrameKind::barrier: return length == sizeof(std::uint64_t);
        case L::FrameKind::user_event: return length <= L::kMaxEventPayload;
        default: return true;
    }
}

}  // namespace

Frame decode_frame(const SegmentFrames& segment, std::uint64_t offset) noexcept {
    const std::uint64_t size = segment.committed.size();
    Frame frame;
    frame.offset = offset;
    if (offset == 0 && (segment.flags & L::kSegmentContinuesRecord)) {
        // A reader that took it for a continuation would stay at offset 0 and report a lost
        // record there forever.
        if (segment.first_record_offset == 0) return corrupt(frame, FrameFault::empty_continuation);
        frame.step = FrameStep::continuation;
        frame.next = std::min<std::uint64_t>(segment.first_record_offset, size);
        frame.bytes = part(segment, 0, frame.next);
        frame.spans = segment.first_record_offset >= size && (segment.flags & L::kSegmentRecordContinues);
        return frame;
    }
    if (offset >= size) {
        frame.step = FrameStep::end;
        frame.next = offset;
        return frame;
    }
    if (offset % L::kFrameAlignment != 0) return corrupt(frame, FrameFault::misaligned);
    if (size - offset < L::kFrameHeaderBytes) return corrupt(frame, FrameFault::truncated_header);
    L::FrameHeader header;
    std::memcpy(&header, segment.committed.data() + offset, sizeof header);  // once; use the local
    frame.kind = static_cast<L::FrameKind>(header.kind);
    frame.event_type = header.event_type;
    frame.length = header.length;
    const std::uint64_t room = size - offset - L::kFrameHeaderBytes;
    const std::uint64_t data = offset + L::kFrameHeaderBytes;
    if (record_frame_fits(header, room, segment.max_record)) {
        frame.step = FrameStep::record;
        frame.bytes = part(segment, data, frame.length);
        frame.next = std::min(L::frame_align(data + frame.length), size);
        return frame;
    }
    if (frame.kind == L::FrameKind::record_run) {
        // Runs never span and are committed whole: all of one lies in the committed bytes.
        if (!L::decode_run(segment.committed.data(), offset, frame.length, room, segment.max_record, frame.run)) {
            return corrupt(frame, FrameFault::bad_run);
        }
        frame.step = FrameStep::run;
        frame.bytes = part(segment, frame.run.data, frame.run.end - frame.run.data);
        frame.next = L::past_run(frame.run.end, size);
        return frame;
    }
    if (header.kind > static_cast<std::uint16_t>(L::FrameKind::user_event)) return corrupt(frame, FrameFault::unknown_kind);
    const bool is_record = frame.kind == L::FrameKind::record;
    if (is_record && frame.length > segment.max_record) return corrupt(frame, FrameFault::record_too_large);
    if (!event_length_ok(frame.kind, frame.length)) return corrupt(frame, FrameFault::bad_event_length);
    if (frame.length <= room) {
        frame.step = is_record ? FrameStep::record : FrameStep::event;
        frame.bytes = part(segment, data, frame.length);
        frame.next = std::min(L::frame_align(data + frame.length), size);
        return frame;
    }
    // Past the committed bytes: only a record spanning segments may be, and its segment is then
    // handed over whole, ending with it.
    frame.bytes = part(segment, data, room);
    if (is_record && !segment.sealed) {
        frame.step = FrameStep::pending;
        frame.next = offset;
        return frame;
    }
    if (!is_record || !(segment.flags & L::kSegmentRecordContinues)) return corrupt(frame, FrameFault::past_committed);
    frame.step = FrameStep::record;
    frame.spans = true;
    frame.next = size;
    return frame;
}

Frame decode_continuation(const SegmentFrames& segment, std::uint64_t needed) noexcept {
    const std::uint64_t size = segment.committed.size();
    Frame frame;
    frame.length = needed;
    if (!(segment.flags & L::kSegmentContinuesRecord)) return corrupt(frame, FrameFault::not_a_continuation);
    if (needed > size) {
        // The whole segment is continuation; the writer publishes such a segment whole.
        if (!segment.sealed) {
            frame.step = FrameStep::pending;
            return frame;
        }
        if (!(segment.flags & L::kSegmentRecordContinues) || size != segment.capacity) {
            return corrupt(frame, FrameFault::short_continuation);
        }
        frame.step = FrameStep::continuation;
        frame.bytes = segment.committed;
        frame.spans = true;
        frame.next = size;
        return frame;
    }
    // The record ends here: the writer commits this segment only once the record is whole, with
    // the first frame after it at its end rounded up (or at the committed end).
    if (segment.first_record_offset != L::frame_align(needed) && segment.first_record_offset != size) {
        return corrupt(frame, FrameFault::misplaced_first_frame);
    }
    frame.step = FrameStep::continuation;
    frame.bytes = part(segment, 0, needed);
    frame.next = std::min(L::frame_align(needed), size);
    return frame;
}

FramePlace locate_frame(const SegmentFrames& segment, std::uint64_t target) noexcept {
    std::uint64_t at = L::first_frame_offset(segment.flags, segment.first_record_offset);
    while (at < target) {
        const Frame frame = decode_frame(segment, at);
        if (frame.step == FrameStep::run && target < frame.run.end) {
            const std::uint64_t data = frame.run.data, record_size = frame.run.header.record_size;
            if (target < data || (target - data) % record_size != 0) return {};
            return {true, frame.run.end, frame.run.header.record_size};
        }
        const bool whole = frame.step == FrameStep::run ||
                           ((frame.step == FrameStep::record || frame.step == FrameStep::event) && !frame.spans);
        if (!whole || frame.next <= at) return {};
        at = frame.next;
    }
    return {at == target, 0, 0};
}

bool count_complete_records(const SegmentFrames& segment, std::uint64_t& records) noexcept {
    records = 0;
    for (std::uint64_t at = 0;;) {
        const Frame frame = decode_frame(segment, at);
        switch (frame.step) {
            case FrameStep::record:
            case FrameStep::continuation: records += frame.spans ? 0 : 1; break;
            case FrameStep::run: records += frame.run.header.count; break;
            case FrameStep::event: break;
            case FrameStep::pending:
            case FrameStep::end: return true;
            case FrameStep::corrupt: return false;
        }
        if (frame.next <= at) return false;  // no frame ends where it starts
        at = frame.next;
    }
}

const char* to_string(FrameStep step) noexcept {
    switch (step) {
        case FrameStep::record: return "record";
        case FrameStep::event: return "event";
        case FrameStep::run: return "run";
        case FrameStep::continuation: return "continuation";
        case FrameStep::pending: return "pending";
        case FrameStep::end: return "end";
        case FrameStep::corrupt: return "corrupt";
    }
    return "?";
}

const char* to_string(FrameFault fault) noexcept {
    switch (fault) {
        case FrameFault::none: return "none";
        case FrameFault::misaligned: return "misaligned frame";
        case FrameFault::truncated_header: return "truncated frame header";
        case FrameFault::unknown_kind: return "unknown frame kind";
        case FrameFault::record_too_large: return "record over the maximum size";
        case FrameFault::bad_event_length: return "event of a bad length";
        case FrameFault::past_committed: return "frame past the committed bytes";
        case FrameFault::bad_run: return "record run that does not fit";
        case FrameFault::not_a_continuation: return "segment does not continue the record";
        case FrameFault::short_continuation: return "short continuation segment";
        case FrameFault::empty_continuation: return "segment continues a record but holds none of its bytes (first record offset 0)";
        case FrameFault::misplaced_first_frame: return "first record offset disagrees with the record's end";
    }
    return "?";
}

}  // namespace shmchan::detail
