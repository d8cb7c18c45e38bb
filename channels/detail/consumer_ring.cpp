// SPDX-License-Identifier: Apache-2.0
// A consumer's half of the segment ring. Each atomic access names the rule of layout.hpp it
// implements; every value loaded from the producer's line or a segment header is copied into a
// local once, checked, and only the local is used.
#include "channels/detail/consumer_ring.hpp"

#include <algorithm>
#include <span>
#include <string>

#include "shm/process.hpp"

namespace shmchan::detail {

namespace L = layout;

Status ConsumerRing::adopt(std::uint32_t slot) {
    slot_ = slot;
    // Rule 2 and 3: the producer's `published` and our slot's release (ours from here on: we hold
    // the slot's lock); the release must lie within one ring behind `published`.
    const std::uint64_t published = L::load_acquire(memory_.header->producer.published);
    const std::uint64_t released = L::load_acquire(line().released);
    if (released > published || published - released > memory_.segment_count) {
        return fail(Status::corrupt, "positions published " + std::to_string(published) + " and released " +
                                         std::to_string(released) + " (slot " + std::to_string(slot) +
                                         ") are inconsistent");
    }
    position_ = released;
    cached_published_ = released;  // forces a load of `published` at the first read
    // The records layer's resume point (layout.hpp, make_tagged_word): in segment `released`, or
    // one release ahead if our predecessor died between its two stores (release_until).
    const std::uint64_t word = L::load_relaxed(line().resume_point);
    const std::uint64_t limit = std::min(published, released + memory_.segment_count);
    if (!L::decode_tagged_word(word, released, limit, resume_.position, resume_.offset)) {
        return fail(Status::corrupt, "resume point " + std::to_string(word >> 32) + ":" +
                                         std::to_string(word & 0xffff'ffffull) + " names no segment in [" +
                                         std::to_string(released) + ", " + std::to_string(limit) + "]");
    }
    resume_.in_flight_record_bytes = L::load_relaxed(line().in_flight_record_bytes);
    if (resume_.position != released) cached_published_ = published;  // release_until may go there
    return Status::ok;
}

// Rule 2: acquires the producer's `published`, which must lie in [low, position + segments].
Status ConsumerRing::load_published(std::uint64_t low, std::uint64_t& published) {
    published = L::load_acquire(memory_.header->producer.published);
    if (published < low || published - position_ > memory_.segment_count) {
        return fail(Status::corrupt, "producer position " + std::to_string(published) + " is outside [" +
                                         std::to_string(low) + ", " + std::to_string(position_ + memory_.segment_count) +
                                         "]");
    }
    return Status::ok;
}

// Acquire the producer's publication before reading the segments.
Status ConsumerRing::refresh_published() {
    std::uint64_t published = 0;
    if (Status status = load_published(position_, published); status != Status::ok) return status;
    cached_published_ = published;
    return Status::ok;
}

Status ConsumerRing::try_read(ReadableSegment& out) {
    if (holding_) {
        if (Status status = release(); status != Status::ok) return status;
    }
    if (position_ == cached_published_) {
        if (Status status = refresh_published(); status != Status::ok) return status;
        if (position_ == cached_published_) {
            // Rule 4: end of stream makes `published` final; re-load it after the acquire.
            if (L::load_acquire(memory_.header->producer.end_of_stream) != 0) {
                if (Status status = refresh_published(); status != Status::ok) return status;
                if (position_ == cached_published_) return Status::end_of_stream;
            } else {
                // Nothing yet: fetch the next segment's header and first payload line while we
                // wait. The producer writes them before `published`, so by the time we see
                // `published` they are usually here: one cache-line transfer on the critical path
                // instead of two in a row (64 B ping-pong p50 0.27 -> 0.23 us). A prefetch is only
                // a hint: nothing is read from it before the acquire. It takes those two lines
                // from a producer filling that segment (two transfers per segment at most; the
                // 64 B and 32 KiB streams measured no change).
                __builtin_prefetch(&memory_.segment(position_));
                __builtin_prefetch(memory_.payload(position_));
                return Status::would_block;
            }
        }
    }
    const L::SegmentHeader& segment = memory_.segment(position_);
    // One read of each field into a local; only the locals are checked and used. The acquire of
    // committed_bytes pairs with the producer's release of it (rule 2).
    const std::uint32_t committed = L::load_acquire(segment.committed_bytes);
    const std::uint64_t sequence = L::load_relaxed(segment.sequence);
    const std::uint32_t flags = L::load_relaxed(segment.flags);
    const std::uint32_t record_count = L::load_relaxed(segment.record_count);
    const std::uint32_t first_record_offset = L::load_relaxed(segment.first_record_offset);
    const std::uint32_t checksum = L::load_relaxed(segment.checksum);
    if (sequence != position_) {
        return fail(Status::corrupt, "segment " + std::to_string(position_) + " (slot " +
                                         std::to_string(position_ % memory_.segment_count) + ") carries sequence " +
                                         std::to_string(sequence));
    }
    if (committed > capacity_) {
        return fail(Status::corrupt, "segment " + std::to_string(position_) + " claims " + std::to_string(committed) +
                                         " bytes, capacity is " + std::to_string(capacity_));
    }
    if (flags & ~L::kSegmentKnownFlags) {
        return fail(Status::corrupt, "segment " + std::to_string(position_) + " has unknown flags " + std::to_string(flags));
    }
    if (first_record_offset > committed) {
        return fail(Status::corrupt, "segment " + std::to_string(position_) + " first record offset " +
                                         std::to_string(first_record_offset) + " beyond its " + std::to_string(committed) +
                                         " bytes");
    }
    out.payload = std::span<const std::byte>(memory_.payload(position_), committed);
    out.sequence = position_;
    out.flags = flags;
    out.record_count = record_count;
    out.checksum = checksum;
    out.first_record_offset = first_record_offset;
    held_bytes_ = committed;
    holding_ = true;
    return Status::ok;
}

Status ConsumerRing::release() {
    if (!holding_) return fail(Status::invalid_call, "release without a read segment");
    holding_ = false;
    // The segment read last is position_ < published: within release_until's range.
    return release_until(position_ + 1, 0, 0, ReadProgress{held_bytes_, 0, 0});
}

Status ConsumerRing::try_view(std::uint64_t position, SegmentView& out) {
    if (position < position_ || position - position_ >= memory_.segment_count) {
        return fail(Status::invalid_call, "view of segment " + std::to_string(position) + " outside the ring");
    }
    if (position >= cached_published_) {
        if (Status status = refresh_published(); status != Status::ok) return status;
    }
    const L::SegmentHeader& segment = memory_.segment(position);
    bool sealed = position < cached_published_;
    if (!sealed) {
        // The segment being filled (rule 2, partial reads): trust committed_bytes only after
        // acquiring this lap's sequence.
        const std::uint64_t lap = L::load_acquire(segment.sequence);
        if (lap != position) {
            // Not taken for this lap yet: the slot still holds the last lap's sequence (or 0,
            // never used). Anything else is damage that would have us wait forever.
            const std::uint64_t count = memory_.segment_count;
            const bool last_lap = position >= count ? lap == position - count : lap == 0;
            if (!last_lap) {
                return fail(Status::corrupt, "segment " + std::to_string(position) + " being filled carries sequence " +
                                                 std::to_string(lap));
            }
            // Rule 4: the end of the stream makes `published` final.
            if (L::load_acquire(memory_.header->producer.end_of_stream) == 0) return Status::would_block;
            if (Status status = refresh_published(); status != Status::ok) return status;
            if (position >= cached_published_) return Status::end_of_stream;
            sealed = true;
        }
    }
    const std::uint32_t committed = L::load_acquire(segment.committed_bytes);  // rule 2
    const std::uint64_t sequence = L::load_relaxed(segment.sequence);
    const std::uint32_t flags = L::load_relaxed(segment.flags);
    const std::uint32_t record_count = L::load_relaxed(segment.record_count);
    const std::uint32_t first_record_offset = L::load_relaxed(segment.first_record_offset);
    const std::uint32_t checksum = L::load_relaxed(segment.checksum);
    const std::uint32_t epoch = L::load_relaxed(segment.producer_epoch);
    if (sequence != position) {
        // Unsealed: the producer moved on to a new lap, impossible without our release, so treat
        // it as not there yet.
        if (!sealed) return Status::would_block;
        return fail(Status::corrupt, "segment " + std::to_string(position) + " carries sequence " + std::to_string(sequence));
    }
    if (!sealed && (committed == 0 || first_record_offset > committed)) {
        // Being filled: nothing committed yet, or metadata stored for a commit whose release of
        // committed_bytes we have not seen yet. Not there yet, not corrupt.
        return Status::would_block;
    }
    if (committed > capacity_ || (flags & ~L::kSegmentKnownFlags) || first_record_offset > committed) {
        return fail(Status::corrupt, "segment " + std::to_string(position) + " (slot " +
                                         std::to_string(position % memory_.segment_count) + ") has committed " +
                                         std::to_string(committed) + ", flags " + std::to_string(flags) +
                                         ", first record at " + std::to_string(first_record_offset) + ": out of range");
    }
    out.payload = std::span<const std::byte>(memory_.payload(position), committed);
    out.sequence = position;
    out.sealed = sealed;
    out.flags = flags;
    out.record_count = record_count;
    out.first_record_offset = first_record_offset;
    out.checksum = checksum;
    out.producer_epoch = epoch;
    return Status::ok;
}

// Rule 2b: what a waiting records reader polls. A newly published segment, or any look when
// `eager`, reads the segment header (try_view); otherwise only the producer line is loaded:
// `published`, then the flush word, which extends an unsealed view we already hold.
Status ConsumerRing::poll_view(std::uint64_t position, SegmentView& out, bool eager) {
    if (eager || position < cached_published_) return try_view(position, out);
    const std::uint64_t published = L::load_acquire(memory_.header->producer.published);
    if (published != cached_published_ || L::load_relaxed(memory_.header->producer.end_of_stream) != 0) {
        return try_view(position, out);  // try_view validates and caches the new position
    }
    // Acquire: pairs with the release in ProducerRing::flush (the payload and header before it).
    const std::uint64_t word = L::load_acquire(memory_.header->producer.flushed);
    std::uint64_t tagged = 0, committed = 0;
    if (!L::decode_tagged_word(word, position, position, tagged, committed)) return Status::would_block;
    if (committed > capacity_) {
        return fail(Status::corrupt, "flush word of segment " + std::to_string(position) + " claims " +
                                         std::to_string(committed) + " bytes, capacity is " + std::to_string(capacity_));
    }
    // A segment we have no view of yet: read its header once (the flush says there is data).
    if (out.sequence != position || out.payload.empty() || out.sealed) return try_view(position, out);
    if (committed <= out.payload.size()) return Status::would_block;
    // The metadata of an unsealed segment does not change until it is published, so the view's
    // flags and offsets stay valid; only the count grows.
    out.payload = std::span<const std::byte>(memory_.payload(position), committed);
    return Status::ok;
}

Status ConsumerRing::release_until(std::uint64_t position, std::uint64_t resume_offset, std::uint64_t in_flight,
                                   const ReadProgress& progress) {
    if (position < position_ || position > cached_published_) {
        return fail(Status::invalid_call, "release up to " + std::to_string(position) + " outside [" +
                                              std::to_string(position_) + ", " + std::to_string(cached_published_) + "]");
    }
    L::ConsumerLine& mine = line();
    // The resume point first, tagged with its position: a consumer that dies between these stores
    // and `released` leaves them describing `position`, and the next one resumes there
    // (layout.hpp, make_tagged_word); the in-flight size goes with it. Relaxed: read only by the
    // next consumer of this slot, which holds the slot's lock after we are gone.
    L::store_relaxed(mine.resume_point, L::make_tagged_word(position, resume_offset));
    L::store_relaxed(mine.in_flight_record_bytes, in_flight);
    auto& counters = memory_.header->consumers[slot_].counters;
    if constexpr (kHotCounters) {
        if (progress.bytes) L::counter_add(counters.bytes_read, progress.bytes);
        if (progress.records) L::counter_add(counters.records_read, progress.records);
        if (progress.events) L::counter_add(counters.events_read, progress.events);
    }
    if (position == position_) return Status::ok;
    if constexpr (kHotCounters) L::counter_add(counters.segments_released, position - position_);
    position_ = position;
    // Rule 3: the producer that acquires this may reuse every segment before it.
    L::store_release(mine.released, position_);
    if constexpr (kHotCounters) L::store_relaxed(counters.last_release_realtime_ns, shm::realtime_coarse_ns());
    return Status::ok;
}

bool ConsumerRing::take_priority(std::uint64_t& checkpoint_id) {
    L::PriorityLane& lane = memory_.header->priority_lane;
    // Acquire: pairs with the producer's release of the sequence; the event's fields are complete.
    const std::uint64_t sequence = L::load_acquire(lane.event.sequence);
    const std::uint64_t acknowledged = L::load_relaxed(lane.acknowledged);  // our own field
    if (sequence == acknowledged) return false;
    const std::uint32_t kind = lane.event.kind;
    const std::uint64_t id = lane.event.checkpoint_id;
    // Release: the producer rewrites the event only after acquiring this, so after our copy.
    L::store_release(lane.acknowledged, sequence);
    if (kind != static_cast<std::uint32_t>(L::FrameKind::barrier)) return false;  // unknown: ignored
    checkpoint_id = id;
    return true;
}

Status ConsumerRing::check_positions() {
    // The producer position we wait on (it only grows): damage there must end the wait, not
    // prolong it.
    std::uint64_t published = 0;
    return load_published(cached_published_, published);
}

std::uint64_t ConsumerRing::buffer_timeout_ns() const noexcept {
    return L::load_relaxed(memory_.header->producer.buffer_timeout_ns);  // a hint: any value is safe
}

}  // namespace shmchan::detail
