// SPDX-License-Identifier: Apache-2.0
// The cursors of the records layer's inline fast paths (channels/records.hpp,
// detail/records_inline.hpp) and the two steps they share. Internal: records.hpp includes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "frame_decoder.hpp"
#include "hooks.hpp"
#include "../layout.hpp"

namespace shmchan {

namespace detail {
// The inline fast paths of RecordWriter and RecordReader work on these; the rest of each side's
// state lives in records.cpp. A fast path runs only while `fast_limit` is non-zero, which the
// slow path sets when nothing unusual is pending (no checksum, no flush per record, no spanning
// record, no restart bookkeeping, not ended): see arm_fast_path() in records.cpp.
struct WriteCursor {
    std::byte* payload = nullptr;                    // the held segment's payload
    layout::SharedU32* committed_bytes = nullptr;    // its header's count (rule 2)
    std::uint32_t offset = 0;        // where the next frame starts
    std::uint32_t fast_frames = 0;   // records appended here since the slow path last counted
    std::uint32_t fast_limit = 0;    // a fast frame must end by here (capacity - 8); 0: slow path
    std::uint32_t reserved_size = 0;
    std::uint64_t max_fast_record = 0;  // min(max record, segment capacity)
    bool reserved = false;
};
struct ReadCursor {
    const std::byte* payload = nullptr;  // the viewed segment's payload
    std::uint64_t position = 0;          // the segment being parsed
    std::uint32_t offset = 0;            // where its next frame starts
    std::uint32_t fast_limit = 0;        // committed bytes of the view; 0: slow path
    std::uint64_t max_record = 0;
    layout::SharedU64* resume_point = nullptr;  // consumer line: where a restarted consumer resumes
    ReadProgress progress;               // consumed since the last release (counters)
    bool in_batch = false;               // inside a read_batch handler: other reads are refused
    std::uint32_t run_end = 0;           // inside a record_run frame: where its records end
    std::uint32_t run_size = 0;          // ... and the size of each (checked at the run's header)
};
// Both reader fast paths (read_fast, read_batch) take a frame only when it passes the frame
// decoder's common-case check, record_frame_fits (detail/frame_decoder.hpp); anything else goes to
// the slow path, which decodes it.
// A reader's step inside a run frame: the cursor moves to `next`, a record boundary of the run
// that ends at `run_end`; at the run's end it goes past the frame (layout::past_run, within the
// `viewed` bytes) and leaves the run (run_end 0). The one step of read_fast, read_run_fast,
// take_run and the slow path.
inline void step_in_run(std::uint32_t& offset, std::uint32_t& run_end, std::uint64_t next, std::uint64_t viewed) noexcept {
    if (next >= run_end) {
        next = layout::past_run(run_end, viewed);
        run_end = 0;
    }
    offset = static_cast<std::uint32_t>(next);
}
// From this size on, write() and write_batch() put a record that goes alone into a run frame of
// one (layout.hpp: record_run), so that its bytes start on a cache line: a long copy to an
// aligned destination writes whole lines (an unaligned one was ~12 % slower even within one
// core's L2, measured); the run's padding, at most 56 bytes, is under 6 % of such a record.
inline constexpr std::size_t kAlignedRecordMin = 1024;
// The end of both writer fast paths: the frame header of a record of `length` payload bytes
// (already in place) at the cursor, then one release store of committed_bytes, which publishes
// the frame to a partial reader (rule 2). The header's record_count is brought up to date by
// the next slow commit, flush or publish (fast_frames).
inline void commit_fast_frame(WriteCursor& c, std::size_t length, std::uint64_t end) noexcept {
    const layout::FrameHeader header{static_cast<std::uint32_t>(length),
                                     static_cast<std::uint16_t>(layout::FrameKind::record), 0};
    std::memcpy(c.payload + c.offset, &header, sizeof header);
    c.offset = static_cast<std::uint32_t>(end);
    ++c.fast_frames;
    layout::store_release(*c.committed_bytes, c.offset);
}
}  // namespace detail

}  // namespace shmchan
