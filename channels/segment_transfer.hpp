// SPDX-License-Identifier: Apache-2.0
// Whole segments in and out of a channel, framing metadata included: for a program that carries a
// channel somewhere else verbatim (shm-bridge) instead of decoding its records.
//
//   SegmentSource source(consumer);            SegmentSink sink(producer);
//   CarriedSegment segment;                    // on the other end, for each segment received:
//   source.wait(position, segment, 100ms);     sink.try_write(segment);   // exact copy, flags kept
//   ... later, once it is safe elsewhere:
//   source.release_until(position + 1);
//
// A source reads sealed (published) segments at any position between the first one it has not
// released and the producer's position, without releasing them: the caller releases them when it
// no longer needs them (after the far end acknowledged them). A sink writes a segment as it was
// published at the source: payload, flags (a record that continues or is continued), record
// count, first record offset and checksum, so a records channel on the far side decodes the same
// records, spanning records and events. The sink validates what it is given as untrusted input
// (position, lengths, flags, offsets, checksum) and refuses it with Status::corrupt.
//
// Internal to the project's tools (not installed): it wraps channels/detail/hooks.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "channel.hpp"

namespace shmchan {

// One sealed segment as the producer published it.
struct CarriedSegment {
    std::uint64_t position = 0;              // the segment's place in the stream
    std::span<const std::byte> payload;      // the committed bytes
    std::uint32_t flags = 0;                 // layout::kSegment*
    std::uint32_t record_count = 0;
    std::uint32_t first_record_offset = 0;
    std::uint32_t checksum = 0;
};

class SegmentSource {
public:
    explicit SegmentSource(Consumer& consumer);

    // The first position not yet released (where a restarted source resumes).
    std::uint64_t first_unreleased() const noexcept { return released_; }
    // The sealed segment at `position` (first_unreleased() <= position < first_unreleased() +
    // segment count), waiting at most `timeout` for it. The view stays valid until it is
    // released. ok; timed_out; end_of_stream (the stream ended before it); peer_died (the
    // producer died before publishing it); corrupt; invalid_call (outside the window).
    Status wait(std::uint64_t position, CarriedSegment& out, std::chrono::nanoseconds timeout);
    // As wait() without waiting: would_block when it is not sealed yet.
    Status try_get(std::uint64_t position, CarriedSegment& out);
    // Hands every segment before `position` back to the producer.
    Status release_until(std::uint64_t position);
    // The priority lane (unaligned checkpoints): takes a barrier published there, ahead of the
    // queued segments. Its in-band copy still comes in order with the segments.
    bool take_priority(std::uint64_t& checkpoint_id);
    const std::string& last_error() const noexcept;

private:
    Consumer* consumer_;
    std::uint64_t released_ = 0;
    std::uint64_t segments_ = 0;
    std::string error_;
};

class SegmentSink {
public:
    explicit SegmentSink(Producer& producer);

    // The next position the sink writes: segments before it are published in the channel.
    std::uint64_t next_position() const noexcept { return next_; }
    // Segments that can be written now without waiting (the far end's credits).
    std::uint32_t free_segments();
    // Writes `segment` (its position must be next_position()). would_block: no free segment;
    // corrupt: the segment fails validation (last_error() says why; nothing written);
    // peer_died is not returned (a producer writes without a consumer until the ring is full).
    Status try_write(const CarriedSegment& segment);
    // Publishes a barrier in the channel's priority lane (it overtakes the queued segments);
    // false if the lane still holds one the consumer has not taken (the in-band copy still comes).
    bool publish_priority(std::uint64_t checkpoint_id);
    const std::string& last_error() const noexcept { return error_; }

private:
    Status refuse(const std::string& why);
    Producer* producer_;
    std::uint64_t next_ = 0;
    std::uint32_t capacity_ = 0;
    bool checksums_ = false;
    bool records_ = false;
    std::string error_;
};

}  // namespace shmchan
