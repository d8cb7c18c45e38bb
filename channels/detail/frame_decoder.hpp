// SPDX-License-Identifier: Apache-2.0
// The frame decoder: the one place that walks the frames of a records segment (channels/layout.hpp,
// "Records framing"). Pure and bounds-checked: it reads only the committed bytes it is given, each
// frame header and run header once into a local, and says what lies at an offset:
//
//   for (Frame f = decode_frame(segment, 0); f.step is record, event, run or continuation;
//        f = decode_frame(segment, f.next)) { ... }
//
// The reader (channels/records.cpp), its inline fast paths (records.hpp, through
// record_frame_fits), `shm-inspect peek` and the fuzz targets all decode frames through it; what
// to do with a step (wait, reassemble, report) is theirs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../layout.hpp"

namespace shmchan::detail {

// The committed bytes of one segment of a records channel, as a reader sees them: a view of the
// shared memory or a copy (untrusted either way).
struct SegmentFrames {
    std::span<const std::byte> committed;  // payload bytes [0, committed_bytes)
    std::uint32_t flags = 0;                // layout::kSegment* flags
    std::uint32_t first_record_offset = 0;  // where the first frame after continuation bytes starts
    bool sealed = false;                    // published: `committed` and the flags are final
    std::uint32_t capacity = 0;             // payload bytes of a segment (segment_size - 64)
    std::uint64_t max_record = 0;           // largest record accepted (identity.max_record_bytes)
};

enum class FrameStep : std::uint8_t {
    record,        // a record frame: `bytes`; with `spans` its first part, the segment ends with it
                   // (flag kSegmentRecordContinues) and it goes on in the next segment
    event,         // an event frame (end_of_stream, barrier, user_event): `kind`, `event_type`, `bytes`
    run,           // a record_run frame: `run` (records of run.header.record_size from run.data to run.end)
    continuation,  // bytes at offset 0 of a segment that continues a record (flag
                   // kSegmentContinuesRecord): `bytes`; `spans`: the whole segment is continuation
    pending,       // a record frame runs past the committed bytes of a segment not sealed yet
    end,           // `offset` is at or past the committed bytes: no frame there (yet)
    corrupt,       // `fault` says why; `kind`, `length` and `run.header` hold what was read
};

enum class FrameFault : std::uint8_t {
    none,
    misaligned,             // a frame offset that is not a multiple of kFrameAlignment
    truncated_header,       // fewer than kFrameHeaderBytes committed bytes left for the header
    unknown_kind,           // a kind that is not a FrameKind
    record_too_large,       // a record frame longer than max_record
    bad_event_length,       // barrier not 8, end_of_stream not 0, user_event over kMaxEventPayload
    past_committed,         // the frame runs past the committed bytes and may not (an event, or a
                            // record in a sealed segment without kSegmentRecordContinues)
    bad_run,                // a run header that does not fit its frame or the committed bytes
    not_a_continuation,     // decode_continuation: the segment has no kSegmentContinuesRecord
    short_continuation,     // ... a sealed segment of continuation bytes only that is not full
                            //     or does not say the record goes on
    misplaced_first_frame,  // ... first_record_offset disagrees with where the record ends
    empty_continuation,     // kSegmentContinuesRecord with first_record_offset 0: a continuation
                            // holds at least one byte of its record
};

struct Frame {
    FrameStep step = FrameStep::end;
    FrameFault fault = FrameFault::none;
    std::uint64_t offset = 0;  // payload offset of the frame (of the continuation bytes: 0)
    std::uint64_t next = 0;    // where the next frame starts, at most the committed bytes
    layout::FrameKind kind = layout::FrameKind::record;  // the header's kind, as read
    std::uint16_t event_type = 0;
    std::uint64_t length = 0;  // the header's length, as read
    std::span<const std::byte> bytes;  // inside `committed`
    bool spans = false;
    layout::RunExtent run;
};

// The frame at payload offset `offset`. At offset 0 of a segment with kSegmentContinuesRecord:
// its continuation bytes, up to first_record_offset (or all, with `spans`, when the record goes
// on past this segment).
Frame decode_frame(const SegmentFrames& segment, std::uint64_t offset) noexcept;

// The continuation bytes of a record that has `needed` bytes still to come, at the start of
// `segment`: all of it (`spans`: full, and the record goes on), or its first `needed` bytes with
// `next` the first frame after them; pending while a segment of continuation only is not sealed.
Frame decode_continuation(const SegmentFrames& segment, std::uint64_t needed) noexcept;

// Where payload offset `target` (> 0) lies among the frames of `segment`, walking them from its
// first frame: `found` when it is a frame's start (run_end 0) or a record's start inside a valid
// record_run frame (run_end: where that run's records end; record_size: theirs). Not found: it is
// neither, or a frame on the way is not a whole record, event or run: no reader may resume there.
struct FramePlace {
    bool found = false;
    std::uint64_t run_end = 0;
    std::uint32_t record_size = 0;
};
FramePlace locate_frame(const SegmentFrames& segment, std::uint64_t target) noexcept;

// The records whose last byte lies in the committed bytes of `segment` (what a producer that
// continues it after a dead one finds completed there): a record frame that does not span and a
// continuation that ends here count one each, a run its count, events none; a record that goes on
// past them (spans, pending) none. False if a frame on the way is corrupt.
bool count_complete_records(const SegmentFrames& segment, std::uint64_t& records) noexcept;

// The decoder's common case, also the check of the reader's inline fast paths: a frame header,
// read once into a local, is a record whose payload fits the `room` of committed bytes after it.
inline bool record_frame_fits(const layout::FrameHeader& header, std::uint64_t room, std::uint64_t max_record) noexcept {
    return header.kind == static_cast<std::uint16_t>(layout::FrameKind::record) && header.length <= room &&
           header.length <= max_record;
}

const char* to_string(FrameStep step) noexcept;
const char* to_string(FrameFault fault) noexcept;

}  // namespace shmchan::detail
