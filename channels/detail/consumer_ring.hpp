// SPDX-License-Identifier: Apache-2.0
// A consumer's half of the segment ring (layout.hpp rules 2-4), for one consumer slot: read
// published segments, view the one being filled (partial reads, the flush word of rule 2b),
// release segments with the records layer's resume point, take the priority lane's event. It only
// loads and stores the shared words: waking a sleeping producer (rule 5) after a release is the
// caller's job (see channel.cpp).
//
// The producer is untrusted: `published`, the flush word and every segment header field are
// copied into a local once, checked against our position and the geometry, and only then used.
#pragma once

#include <cstdint>

#include "channels/detail/ring.hpp"

namespace shmchan::detail {

class ConsumerRing {
public:
    ConsumerRing(const RingMemory& memory, Diagnostics& diagnostics) noexcept
        : memory_(memory), capacity_(memory.capacity()), diagnostics_(&diagnostics) {}

    // At attach, with slot `slot`'s lock held: resume at the slot's release and find the records
    // layer's resume point. corrupt: the positions or the resume point are inconsistent.
    Status adopt(std::uint32_t slot);

    Status try_read(ReadableSegment& out);  // releases a segment still held first
    Status release();                       // the segment of the last try_read

    // Records layer: see ConsumerHooks (detail/hooks.hpp). poll_view loads only
    // the producer line unless `eager` (or a new segment is published).
    Status try_view(std::uint64_t position, SegmentView& out);
    Status poll_view(std::uint64_t position, SegmentView& out, bool eager);
    Status release_until(std::uint64_t position, std::uint64_t resume_offset, std::uint64_t in_flight,
                         const ReadProgress& progress);
    bool take_priority(std::uint64_t& checkpoint_id);

    // What a waiting consumer re-checks at each liveness check: the producer position it waits on.
    Status check_positions();
    std::uint64_t buffer_timeout_ns() const noexcept;  // the producer's flush timeout (a hint)

    ResumePoint resume_point() const noexcept { return resume_; }
    std::uint64_t* resume_point_field() noexcept { return &line().resume_point; }
    std::uint64_t position() const noexcept { return position_; }  // the next segment to release
    std::uint32_t slot() const noexcept { return slot_; }

private:
    Status load_published(std::uint64_t low, std::uint64_t& published);
    Status refresh_published();
    layout::ConsumerLine& line() const noexcept { return memory_.header->consumers[slot_].position; }
    Status fail(Status status, const std::string& message) { return diagnostics_->fail(status, message); }

    RingMemory memory_;
    std::uint32_t capacity_ = 0;
    Diagnostics* diagnostics_;
    std::uint32_t slot_ = 0;
    std::uint64_t position_ = 0;          // the next segment to read (and to release)
    std::uint64_t cached_published_ = 0;  // the producer's `published` as we saw it last
    ResumePoint resume_;                  // found at adopt()
    std::uint32_t held_bytes_ = 0;        // of the segment try_read gave out
    bool holding_ = false;
};

}  // namespace shmchan::detail
