// SPDX-License-Identifier: Apache-2.0
// The records layer's and the gates' access to an attached side, beyond the user's API of
// channels/channel.hpp. Internal: records.cpp, topology.cpp and tests include it; users never do.
//
//   detail::ProducerHooks hooks(producer);   // a pointer to the side: cheap, valid while the
//   hooks.free_segments();                   // Producer lives (moving the Producer keeps it)
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>

#include "../channel.hpp"

namespace shmchan::detail {

// A segment seen by the records layer without moving any position: a published (sealed) one, or
// the one the producer is filling (its committed prefix). Same trust rules as ReadableSegment.
struct SegmentView {
    std::span<const std::byte> payload;  // the committed bytes
    std::uint64_t sequence = 0;
    bool sealed = false;                 // published: payload and metadata are final
    std::uint32_t flags = 0;
    std::uint32_t record_count = 0;
    std::uint32_t first_record_offset = 0;
    std::uint32_t checksum = 0;
    std::uint32_t producer_epoch = 0;
};

// Where a new consumer resumes (records layer): segment `position`, payload offset `offset`;
// `in_flight_record_bytes` != 0 when a record larger than the ring was being read and its first
// segments were already released: that record is lost for the new consumer.
struct ResumePoint {
    std::uint64_t position = 0;
    std::uint64_t offset = 0;
    std::uint64_t in_flight_record_bytes = 0;
};

// What a records reader consumed since its last report (counters, per segment not per record).
struct ReadProgress {
    std::uint64_t bytes = 0, records = 0, events = 0;
};

class ProducerHooks {
public:
    explicit ProducerHooks(Producer& producer) noexcept : side_(producer.side_.get()) {}

    // commit() with the segment's metadata so far (relaxed stores before the release of bytes).
    Status commit(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                  std::uint32_t first_record_offset);
    // Hands the acquired segment over with its records metadata, waking the consumer if it sleeps.
    Status publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                   std::uint32_t first_record_offset, std::uint32_t checksum);
    // Segments the producer could acquire now without waiting (loads the consumers' positions).
    std::uint32_t free_segments();
    // A flush: hands the committed bytes of the held segment to a waiting consumer (the flush
    // word, layout.hpp rule 2b) and wakes it if it sleeps: a fence and a load; a syscall only when
    // it sleeps.
    void wake_consumer();
    // Waits until `count` segments are free (count <= segment count), for at most `timeout`
    // (negative: no limit).
    Status wait_for_free(std::uint32_t count, std::chrono::nanoseconds timeout);
    // The flush timeout a parked consumer honours (written to the header).
    void set_buffer_timeout(std::chrono::nanoseconds timeout);
    // Adds frames written to the shared counters (records, events).
    void add_written(std::uint64_t records, std::uint64_t events);
    // Restart (layout.hpp SegmentHeader::first_record_ordinal): the records of the stream
    // completed so far, which the producer stores into the next segment it publishes (as its end)
    // and takes (as its start). A member store, no shared memory: call it before each publish.
    void set_record_ordinal(std::uint64_t completed) noexcept;
    // Before the first acquire: the records completed when the previous producer stopped, up to
    // the segment this one continues or starts (`ordinal`), and that segment's committed bytes
    // (`out`: empty when it starts afresh; never sealed), whose whole records the caller counts.
    // corrupt: the counts in the segment headers disagree, or the segment to continue is damaged.
    Status resume_view(SegmentView& out, std::uint64_t& ordinal);
    // The priority lane (layout.hpp): publishes a barrier that overtakes queued data and wakes
    // the consumer; false if the previous priority event has not been taken yet.
    bool publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset);

private:
    ProducerSide* side_;
};

// Do not mix with Consumer::read/release on one handle.
class ConsumerHooks {
public:
    explicit ConsumerHooks(Consumer& consumer) noexcept : side_(consumer.side_.get()) {}

    ResumePoint resume_point() const;
    // The segment at `position` (between the released and the published position, or the one
    // being filled). would_block: the producer has not started it; end_of_stream: it is past the
    // end of the stream.
    Status try_view(std::uint64_t position, SegmentView& out);
    // What a waiting reader polls (layout.hpp rule 2b): a newly published segment or the flush
    // word; the header of the segment being filled only if `out` holds no view of it yet and it
    // was flushed. would_block: nothing new that way (try_view reads the header itself).
    Status poll_view(std::uint64_t position, SegmentView& out);
    // Waits until the segment at `position` is sealed or has more than `committed` bytes (or the
    // stream ended, or the peer died), for at most `timeout` (negative: no limit). A parked
    // consumer sleeps at most the producer's buffer timeout, so committed records are seen.
    Status wait_view(std::uint64_t position, std::uint32_t committed, SegmentView& out,
                     std::chrono::nanoseconds timeout);
    // Releases every segment before `position`, records the resume point inside it and adds
    // `progress` to the counters.
    Status release_until(std::uint64_t position, std::uint64_t resume_offset, std::uint64_t in_flight_record_bytes,
                         const ReadProgress& progress);
    // Our slot's resume word (layout::ConsumerLine::resume_point), which the records layer's
    // inline read path stores per record (relaxed, read only by the next consumer of the slot).
    std::uint64_t* resume_point_field() noexcept;
    // The priority lane: takes a published priority barrier (and acknowledges it).
    bool take_priority(std::uint64_t& checkpoint_id);
    // Gates (channels/topology.hpp): producers of a linked channel notify the gate instead.
    void set_gate_link(std::string_view gate_name, std::uint32_t index);
    void clear_gate_link();

private:
    ConsumerSide* side_;
};

}  // namespace shmchan::detail
