// SPDX-License-Identifier: Apache-2.0
// The producer's half of the segment ring (layout.hpp rules 2-4): acquire a free segment, commit
// bytes into it, publish it, end the stream; restart where a previous producer stopped; the flush
// word and the priority lane. It only loads and stores the shared words: waking a sleeping
// consumer (rule 5) is the caller's job after publish(), flush(), publish_priority() and
// end_stream() (see channel.cpp).
//
// Every value it loads from the consumers' lines is checked against its own position before use;
// what it loads from the segment it continues after a restart is checked before it is trusted.
#pragma once

#include <cstdint>

#include "channels/detail/ring.hpp"

namespace shmchan::detail {

class ProducerRing {
public:
    ProducerRing(const RingMemory& memory, Diagnostics& diagnostics) noexcept
        : memory_(memory), capacity_(memory.capacity()), diagnostics_(&diagnostics) {}

    // At attach, with the producer side's lock held: continue at `published`. corrupt: a
    // consumer slot's release is not within a ring of it. `epoch` is this producer's attach count.
    Status adopt(std::uint64_t epoch);

    Status try_acquire(WritableSegment& out);
    Status commit(std::uint32_t bytes);
    Status commit(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                  std::uint32_t first_record_offset);
    Status publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                   std::uint32_t first_record_offset, std::uint32_t checksum);
    // Publishes a held segment with committed bytes (drops an empty one), then marks the end.
    Status end_stream();

    // Rule 2b: hands the committed bytes of the held segment to a waiting consumer (the flush
    // word). False when there was nothing new to hand over.
    bool flush();
    // The priority lane: a barrier that overtakes queued data. False if the consumer has not
    // taken the previous one yet.
    bool publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset);

    // Rule 3: the slowest consumer slot's release, checked against our position (and cached).
    Status load_slowest_release(std::uint64_t& slowest);
    std::uint32_t free_segments();  // 0 also when a release is corrupt (the next acquire says so)
    // What a waiting producer re-checks at each liveness check: the releases it waits on.
    Status check_positions();

    // Restart (layout.hpp SegmentHeader::first_record_ordinal): see ProducerHooks::resume_view.
    Status resume_view(SegmentView& out, std::uint64_t& ordinal);
    void set_record_ordinal(std::uint64_t completed) noexcept { record_ordinal_ = completed; }

    void set_buffer_timeout(std::uint64_t timeout_ns) noexcept;
    void add_written(std::uint64_t records, std::uint64_t events) noexcept;

    // Rule 7: the credit limit the producer obeys now (N without debloating), as last loaded.
    std::uint32_t credit_limit() const noexcept { return credit_limit_; }

    std::uint64_t position() const noexcept { return position_; }  // the next segment to publish
    bool holding() const noexcept { return holding_; }
    bool ended() const noexcept { return ended_; }

private:
    // A segment a previous producer took at our position and committed bytes to.
    struct Continued {
        std::uint64_t sequence = 0;
        std::uint32_t committed = 0, flags = 0, first_record_offset = 0;
        bool garbage = false;  // taken at our position with committed bytes, but a bad header
    };
    bool continuable(const layout::SegmentHeader& segment, Continued& out) const;
    bool resume_segment(layout::SegmentHeader& segment);
    std::uint32_t load_credit_limit() const noexcept;
    bool record_spans() const noexcept;
    Status fail(Status status, const std::string& message) { return diagnostics_->fail(status, message); }

    RingMemory memory_;
    std::uint32_t capacity_ = 0;
    Diagnostics* diagnostics_;
    std::uint64_t position_ = 0;        // the next segment to publish
    std::uint64_t cached_release_ = 0;  // the slowest release we saw last (rule 3)
    std::uint32_t credit_limit_ = memory_.segment_count;  // segments we may have in flight (rule 7)
    std::uint64_t epoch_ = 0;
    std::uint64_t flushed_word_ = 0;    // the flush word we stored last (rule 2b)
    std::uint64_t record_ordinal_ = 0;  // records layer: records completed (set_record_ordinal)
    bool first_acquire_ = true;
    bool holding_ = false;
    bool ended_ = false;
};

}  // namespace shmchan::detail
