// SPDX-License-Identifier: Apache-2.0
// What the two ring cores share: where the ring is, its validated geometry, and where a failure's
// message goes. Internal: included by the ring cores, the channel and the tests, never by users.
//
// A ring core (producer_ring.hpp, consumer_ring.hpp) is one side of the segment protocol of
// layout.hpp (rules 2-4) over a header and a segment base that the caller provides: it opens no
// file, takes no lock and makes no syscall, so a test can drive both sides over a plain buffer.
// Waiting, waking (rule 5), liveness and the file are the channel's (channel.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "channels/detail/hooks.hpp"
#include "channels/layout.hpp"

// The per-segment counters of the hot path (bytes, records, segments, last publish/release time)
// are always on in a normal build. SHMCHAN_HOT_COUNTERS=0 exists only so that
// bench/shm-counters-cost can measure what they cost (a definition on the whole library).
#ifndef SHMCHAN_HOT_COUNTERS
#define SHMCHAN_HOT_COUNTERS 1
#endif

namespace shmchan::detail {

constexpr bool kHotCounters = SHMCHAN_HOT_COUNTERS != 0;

// A ring in memory. The geometry is the one validated at open (check_identity): it is never
// re-read from the header on the hot path.
struct RingMemory {
    layout::ChannelHeader* header = nullptr;
    std::byte* segments = nullptr;  // header + kHeaderBytes: segment_count x segment_size
    std::uint32_t segment_size = 0;
    std::uint32_t segment_count = 0;
    std::uint32_t consumer_slots = 1;

    std::uint32_t capacity() const noexcept { return layout::segment_payload_capacity(segment_size); }
    // `position` is any 64-bit value: the modulo keeps the slot inside the ring.
    layout::SegmentHeader& segment(std::uint64_t position) const noexcept {
        const std::uint64_t slot = position % segment_count;
        return *reinterpret_cast<layout::SegmentHeader*>(segments + slot * segment_size);
    }
    std::byte* payload(std::uint64_t position) const noexcept {
        return reinterpret_cast<std::byte*>(&segment(position)) + layout::kSegmentHeaderBytes;
    }
};

// Where a side's failures are described: the channel's name, and the message of the last status
// that was not ok (last_error()). One per attached side, shared by its ring and its channel code.
struct Diagnostics {
    std::string subject;  // "channel 'NAME'"
    std::string last_error;

    Status fail(Status status, const std::string& message) {
        last_error = subject + ": " + message;
        return status;
    }
};

}  // namespace shmchan::detail
