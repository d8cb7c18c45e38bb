// SPDX-License-Identifier: Apache-2.0
// The producer's half of the segment ring. Each atomic access names the rule of layout.hpp it
// implements; every value loaded from a consumer's line or a predecessor's segment is copied into
// a local once, checked, and only the local is used.
#include "channels/detail/producer_ring.hpp"

#include <algorithm>
#include <span>
#include <string>
#include <utility>

#include "shm/process.hpp"

namespace shmchan::detail {

namespace L = layout;

Status ProducerRing::adopt(std::uint64_t epoch) {
    epoch_ = epoch;
    // Rule 2: our predecessor's `published` (ours from here on: we hold the producer lock).
    const std::uint64_t published = L::load_acquire(memory_.header->producer.published);
    std::uint64_t released = published;
    for (std::uint32_t i = 0; i < memory_.consumer_slots; ++i) {
        // Rule 3: acquire each slot's release; it must lie within one ring behind `published`.
        const std::uint64_t slot_released = L::load_acquire(memory_.header->consumers[i].position.released);
        if (slot_released > published || published - slot_released > memory_.segment_count) {
            return fail(Status::corrupt, "positions published " + std::to_string(published) + " and released " +
                                             std::to_string(slot_released) + " (slot " + std::to_string(i) +
                                             ") are inconsistent");
        }
        released = std::min(released, slot_released);
    }
    position_ = published;
    cached_release_ = released;
    // A predecessor's flush word stays valid for a segment we continue; a fresh one resets it.
    flushed_word_ = L::load_relaxed(memory_.header->producer.flushed);
    return Status::ok;
}

Status ProducerRing::try_acquire(WritableSegment& out) {
    if (ended_) return fail(Status::invalid_call, "the stream has ended");
    if (!holding_) {
        // credit_limit_ is N unless a consumer publishes a smaller limit (rule 7): with debloating
        // off this is the one test of a full ring it always was.
        if (position_ - cached_release_ >= credit_limit_) {
            std::uint64_t released = 0;
            if (Status status = load_slowest_release(released); status != Status::ok) return status;
            if (position_ - released >= memory_.segment_count) return Status::would_block;
            credit_limit_ = load_credit_limit();
            if (position_ - released >= credit_limit_ && !record_spans()) return Status::would_block;
        }
        L::SegmentHeader& segment = memory_.segment(position_);
        holding_ = true;
        if (std::exchange(first_acquire_, false) && resume_segment(segment)) {
            // A segment a dead producer had started: keep its committed records.
        } else {
            // Rule 2 (partial reads): a reader that acquires `sequence` == position sees this
            // lap's reset metadata and committed_bytes.
            L::store_relaxed(segment.committed_bytes, 0u);
            L::store_relaxed(segment.flags, 0u);
            L::store_relaxed(segment.record_count, 0u);
            L::store_relaxed(segment.first_record_offset, 0u);
            L::store_relaxed(segment.checksum, 0u);
            L::store_relaxed(segment.producer_epoch, static_cast<std::uint32_t>(epoch_));
            // Read only by a successor that finds `sequence` == this position (resume_view).
            L::store_relaxed(segment.first_record_ordinal, record_ordinal_);
            L::store_release(segment.sequence, position_);
            // Rule 2b: no flush of this position yet, so that a stale word can never match it
            // (its 32-bit tag would again after 2^32 segments). From our own copy: a load of the
            // producer line here would wait for the consumer that polls it.
            if (flushed_word_ != 0) {
                flushed_word_ = 0;
                L::store_release(memory_.header->producer.flushed, std::uint64_t{0});
            }
        }
    }
    const L::SegmentHeader& segment = memory_.segment(position_);
    out.payload = std::span<std::byte>(memory_.payload(position_), capacity_);
    out.sequence = position_;
    // Our own stores (or, after resume_segment, checked values).
    out.committed = L::load_relaxed(segment.committed_bytes);
    out.record_count = L::load_relaxed(segment.record_count);
    out.flags = L::load_relaxed(segment.flags);
    out.first_record_offset = L::load_relaxed(segment.first_record_offset);
    return Status::ok;
}

// Each field read once; false if there is none, or it is garbage (then started afresh).
bool ProducerRing::continuable(const L::SegmentHeader& segment, Continued& out) const {
    out.sequence = L::load_acquire(segment.sequence);
    out.committed = L::load_acquire(segment.committed_bytes);
    out.flags = L::load_relaxed(segment.flags);
    out.first_record_offset = L::load_relaxed(segment.first_record_offset);
    if (out.sequence != position_ || out.committed == 0) return false;
    out.garbage = out.committed > capacity_ || (out.flags & ~L::kSegmentKnownFlags) ||
                  out.first_record_offset > out.committed;
    return !out.garbage;
}

// The first acquire after attach: if the slot holds this position's segment started by a
// previous producer with committed bytes (a consumer may have read them), continue it.
bool ProducerRing::resume_segment(L::SegmentHeader& segment) {
    Continued continued;
    if (!continuable(segment, continued)) return false;
    // A record that goes on past a full segment ("last record continues") stays flagged: the
    // segment we start next does not continue it, and that is how a reader drops it. On a segment
    // that is not full the flag is damage: cleared, so that no frame is taken for one.
    if (continued.committed != capacity_) {
        L::store_relaxed(segment.flags, continued.flags & ~L::kSegmentRecordContinues);
    }
    L::store_relaxed(segment.producer_epoch, static_cast<std::uint32_t>(epoch_));
    return true;
}

// Before the first acquire: the records completed before the segment we will continue (its
// committed bytes in `out`) or start afresh (`out` empty). See layout.hpp SegmentHeader.
Status ProducerRing::resume_view(SegmentView& out, std::uint64_t& ordinal) {
    out = SegmentView{};
    out.sequence = position_;
    ordinal = 0;
    if (!first_acquire_) return fail(Status::invalid_call, "resume_view after the first acquire");
    const L::SegmentHeader& segment = memory_.segment(position_);
    Continued continued;
    if (continuable(segment, continued)) {
        out.payload = std::span<const std::byte>(memory_.payload(position_), continued.committed);
        out.flags = continued.flags;
        out.first_record_offset = continued.first_record_offset;
    } else if (continued.garbage) {
        return fail(Status::corrupt, "segment " + std::to_string(position_) +
                                         " left by the previous producer has a bad header: its records cannot be counted");
    }
    if (continued.sequence == position_) {
        // Taken by the previous producer (or never, at position 0 of a fresh file: zeros). Its
        // first ordinal was stored before the sequence we acquired.
        ordinal = L::load_relaxed(segment.first_record_ordinal);
        if (position_ == 0 || memory_.segment_count == 1) return Status::ok;
        // The segment before it is still in its slot (we have not taken this one): they agree.
        const L::SegmentHeader& previous = memory_.segment(position_ - 1);
        const std::uint64_t end = L::load_relaxed(previous.end_record_ordinal);
        if (L::load_relaxed(previous.sequence) == position_ - 1 && end == ordinal) return Status::ok;
        return fail(Status::corrupt, "segment " + std::to_string(position_) + " starts at record " + std::to_string(ordinal) +
                                         ", segment " + std::to_string(position_ - 1) + " ends at record " + std::to_string(end));
    }
    if (position_ == 0) return Status::ok;
    // Not taken yet: the published segment before it still holds its end ordinal (stored before
    // `published`, which we acquired at attach), also when it shares the slot (one segment) and
    // the previous producer died resetting it, which leaves that field alone.
    const L::SegmentHeader& previous = memory_.segment(position_ - 1);
    const std::uint64_t sequence = L::load_acquire(previous.sequence);
    const std::uint64_t first = L::load_relaxed(previous.first_record_ordinal);
    ordinal = L::load_relaxed(previous.end_record_ordinal);
    if (sequence == position_ - 1 && (memory_.segment_count == 1 || first <= ordinal)) return Status::ok;
    return fail(Status::corrupt, "published segment " + std::to_string(position_ - 1) + " carries sequence " +
                                     std::to_string(sequence) + " and records " + std::to_string(first) + " to " +
                                     std::to_string(ordinal));
}

Status ProducerRing::commit(std::uint32_t bytes) {
    if (!holding_) return fail(Status::invalid_call, "commit without an acquired segment");
    if (bytes > capacity_) return fail(Status::invalid_call, "commit beyond the segment's capacity");
    // Rule 2: release the payload bytes written so far to a partial reader.
    L::store_release(memory_.segment(position_).committed_bytes, bytes);
    return Status::ok;
}

Status ProducerRing::commit(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                            std::uint32_t first_record_offset) {
    if (!holding_) return fail(Status::invalid_call, "commit without an acquired segment");
    if (bytes > capacity_ || first_record_offset > bytes || (flags & ~L::kSegmentKnownFlags)) {
        return fail(Status::invalid_call, "commit with out-of-range metadata");
    }
    L::SegmentHeader& segment = memory_.segment(position_);
    L::store_relaxed(segment.flags, flags);
    L::store_relaxed(segment.record_count, record_count);
    L::store_relaxed(segment.first_record_offset, first_record_offset);
    // Rule 2: the release of committed_bytes publishes the metadata above with the bytes.
    L::store_release(segment.committed_bytes, bytes);
    return Status::ok;
}

Status ProducerRing::publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                             std::uint32_t first_record_offset, std::uint32_t checksum) {
    if (!holding_) return fail(Status::invalid_call, "publish without an acquired segment");
    if (bytes > capacity_) {
        return fail(Status::invalid_call, "publish of " + std::to_string(bytes) + " bytes exceeds the payload capacity " +
                                              std::to_string(capacity_));
    }
    if (flags & ~L::kSegmentKnownFlags) return fail(Status::invalid_call, "unknown segment flags");
    L::SegmentHeader& segment = memory_.segment(position_);
    // Relaxed stores (a partial reader may load them concurrently); rule 2's release of
    // committed_bytes and of `published` below publishes them.
    L::store_relaxed(segment.record_count, record_count);
    L::store_relaxed(segment.flags, flags);
    L::store_relaxed(segment.checksum, checksum);
    L::store_relaxed(segment.first_record_offset, first_record_offset);
    // Read only by a successor that acquires `published` past this segment (resume_view).
    L::store_relaxed(segment.end_record_ordinal, record_ordinal_);
    L::store_release(segment.committed_bytes, bytes);
    ++position_;
    holding_ = false;
    // Rule 2: hand the segment over.
    L::store_release(memory_.header->producer.published, position_);
    if constexpr (kHotCounters) {
        auto& counters = memory_.header->producer_counters;
        L::counter_add(counters.segments_published, std::uint64_t{1});
        L::counter_add(counters.bytes_written, std::uint64_t{bytes});
        L::store_relaxed(counters.last_publish_realtime_ns, shm::realtime_coarse_ns());  // display: coarse is enough
    }
    return Status::ok;
}

Status ProducerRing::end_stream() {
    if (ended_) return Status::ok;
    if (holding_) {
        // A held segment with committed bytes is published; an empty one is dropped.
        const L::SegmentHeader& segment = memory_.segment(position_);
        const std::uint32_t committed = L::load_relaxed(segment.committed_bytes);  // our own stores
        if (committed > 0) {
            Status status = publish(committed, L::load_relaxed(segment.flags), L::load_relaxed(segment.record_count),
                                    L::load_relaxed(segment.first_record_offset), 0);
            if (status != Status::ok) return status;
        } else {
            holding_ = false;
        }
    }
    // Rule 4: after the last publish.
    L::store_release(memory_.header->producer.end_of_stream, 1u);
    ended_ = true;
    return Status::ok;
}

bool ProducerRing::flush() {
    if (!holding_) return false;
    const std::uint32_t committed = L::load_relaxed(memory_.segment(position_).committed_bytes);  // our own store
    const std::uint64_t word = L::make_tagged_word(position_, committed);
    if (committed == 0 || flushed_word_ == word) return false;
    flushed_word_ = word;
    // Rule 2b. Release: pairs with the consumer's acquire in poll_view; the payload and the
    // committed_bytes store before it are visible to a consumer that sees the word.
    L::store_release(memory_.header->producer.flushed, word);
    return true;
}

bool ProducerRing::publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset) {
    L::PriorityLane& lane = memory_.header->priority_lane;
    const std::uint64_t sequence = L::load_relaxed(lane.event.sequence);  // our own field
    // Acquire: pairs with the consumer's release of `acknowledged` after it copied the event.
    if (L::load_acquire(lane.acknowledged) != sequence) return false;  // not taken yet
    // The consumer reads these only after acquiring the new sequence, and we write them only
    // after it acknowledged the last one: no concurrent access.
    lane.event.kind = static_cast<std::uint32_t>(L::FrameKind::barrier);
    lane.event.checkpoint_id = checkpoint_id;
    lane.event.segment = segment;
    lane.event.offset = offset;
    // Release: the event's fields above are complete for a consumer that acquires the sequence.
    L::store_release(lane.event.sequence, sequence + 1);
    return true;
}

// Rule 3: acquire every consumer slot's release before reusing segments; the slowest slot bounds
// the producer. Each value is checked against our own position.
Status ProducerRing::load_slowest_release(std::uint64_t& slowest) {
    slowest = position_;
    for (std::uint32_t i = 0; i < memory_.consumer_slots; ++i) {
        const std::uint64_t released = L::load_acquire(memory_.header->consumers[i].position.released);
        if (released > position_ || position_ - released > memory_.segment_count) {
            return fail(Status::corrupt, "consumer slot " + std::to_string(i) + " position " + std::to_string(released) +
                                             " is outside [" +
                                             std::to_string(position_ - std::min<std::uint64_t>(position_, memory_.segment_count)) +
                                             ", " + std::to_string(position_) + "]");
        }
        slowest = std::min(slowest, released);
    }
    // Every slot's release only grows, so the slowest does too: a smaller one is damage, and
    // trusting it would have us wait for credits that were already given.
    if (slowest < cached_release_) {
        return fail(Status::corrupt, "consumer release went back from " + std::to_string(cached_release_) + " to " +
                                         std::to_string(slowest));
    }
    cached_release_ = slowest;
    return Status::ok;
}

// Rule 7: the smallest credit limit of the consumer slots, each clamped to [min(2, N), N] (0: N).
// Relaxed: a hint that orders nothing; any value yields a limit within the ring.
std::uint32_t ProducerRing::load_credit_limit() const noexcept {
    const std::uint32_t count = memory_.segment_count;
    const std::uint32_t low = std::min<std::uint32_t>(2, count);
    std::uint32_t limit = count;
    for (std::uint32_t i = 0; i < memory_.consumer_slots; ++i) {
        const std::uint32_t wanted = L::load_relaxed(memory_.header->consumers[i].wake.credit_limit);
        if (wanted == 0) continue;
        limit = std::min(limit, std::clamp(wanted, low, count));
    }
    return limit;
}

// The last published segment ends in a record that goes on: the limit is waived until it ends,
// so that a reader holding the record's first segments is never waited for (rule 7).
bool ProducerRing::record_spans() const noexcept {
    if (position_ == 0) return false;
    // Our own store (publish), in a slot we do not reuse before taking position_ - 1 + N.
    return (L::load_relaxed(memory_.segment(position_ - 1).flags) & L::kSegmentRecordContinues) != 0;
}

std::uint32_t ProducerRing::free_segments() {
    std::uint64_t released = 0;
    if (load_slowest_release(released) != Status::ok) return 0;
    const std::uint64_t used = position_ - released + (holding_ ? 1 : 0);
    return used >= memory_.segment_count ? 0 : static_cast<std::uint32_t>(memory_.segment_count - used);
}

Status ProducerRing::check_positions() {
    if (ended_) return Status::ok;
    std::uint64_t released = 0;
    return load_slowest_release(released);
}

void ProducerRing::set_buffer_timeout(std::uint64_t timeout_ns) noexcept {
    L::store_relaxed(memory_.header->producer.buffer_timeout_ns, timeout_ns);  // a hint, read relaxed
}

void ProducerRing::add_written(std::uint64_t records, std::uint64_t events) noexcept {
    if constexpr (!kHotCounters) return;
    auto& counters = memory_.header->producer_counters;
    if (records) L::counter_add(counters.records_written, records);
    if (events) L::counter_add(counters.events_written, events);
}

}  // namespace shmchan::detail
