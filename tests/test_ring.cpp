// SPDX-License-Identifier: Apache-2.0
// The ring cores (channels/detail/producer_ring.hpp, consumer_ring.hpp) at the byte level, in
// process: both sides over a plain buffer laid out as a channel file, no file, no lock, no
// syscall. One case per rule of layout.hpp's protocol, asserting the header words each call
// stores; then the validation of every value the other side could have damaged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include <doctest/doctest.h>

#include "channels/detail/channel_file.hpp"
#include "channels/detail/consumer_ring.hpp"
#include "channels/detail/producer_ring.hpp"
#include "channels/layout.hpp"

namespace {

namespace L = shmchan::layout;
using shmchan::ChannelOptions;
using shmchan::ReadableSegment;
using shmchan::detail::ReadProgress;
using shmchan::detail::SegmentView;
using shmchan::Status;
using shmchan::WritableSegment;
using shmchan::detail::ConsumerRing;
using shmchan::detail::Diagnostics;
using shmchan::detail::ProducerRing;
using shmchan::detail::RingMemory;

constexpr std::uint32_t kSegmentSize = 4096;
constexpr std::uint32_t kCapacity = kSegmentSize - L::kSegmentHeaderBytes;

// A channel's bytes in ordinary memory, initialized as a creator would (rule 1).
class RingBuffer {
public:
    explicit RingBuffer(std::uint32_t segments, std::uint32_t consumers = 1) {
        ChannelOptions options;
        options.segment_size = kSegmentSize;
        options.segment_count = segments;
        options.consumers = consumers;
        bytes_ = L::region_bytes(kSegmentSize, segments);
        memory_.reset(static_cast<std::byte*>(std::aligned_alloc(4096, bytes_)));
        std::memset(memory_.get(), 0, bytes_);
        shmchan::detail::initialize_header(header(), options);
        ring_ = RingMemory{&header(), memory_.get() + L::kHeaderBytes, kSegmentSize, segments, consumers};
    }
    L::ChannelHeader& header() { return *reinterpret_cast<L::ChannelHeader*>(memory_.get()); }
    L::SegmentHeader& segment(std::uint64_t position) { return ring_.segment(position); }
    std::byte* payload(std::uint64_t position) { return ring_.payload(position); }
    const RingMemory& ring() const { return ring_; }
    std::size_t bytes() const { return bytes_; }

private:
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, Free> memory_;
    std::size_t bytes_ = 0;
    RingMemory ring_;
};

// One side of each over a buffer, attached as a channel would attach them.
struct Sides {
    explicit Sides(RingBuffer& buffer, std::uint64_t epoch = 1)
        : producer(buffer.ring(), producer_errors), consumer(buffer.ring(), consumer_errors) {
        producer_errors.subject = "producer";
        consumer_errors.subject = "consumer";
        REQUIRE(producer.adopt(epoch) == Status::ok);
        REQUIRE(consumer.adopt(0) == Status::ok);
    }
    Diagnostics producer_errors, consumer_errors;
    ProducerRing producer;
    ConsumerRing consumer;
};

void fill(std::span<std::byte> payload, std::uint32_t bytes, std::uint8_t seed) {
    for (std::uint32_t i = 0; i < bytes; ++i) payload[i] = std::byte(static_cast<std::uint8_t>(seed + i));
}

bool holds(std::span<const std::byte> payload, std::uint8_t seed) {
    for (std::size_t i = 0; i < payload.size(); ++i) {
        if (payload[i] != std::byte(static_cast<std::uint8_t>(seed + i))) return false;
    }
    return true;
}

// Acquire, fill `bytes`, publish: one segment handed over.
void publish_one(ProducerRing& producer, std::uint32_t bytes, std::uint8_t seed) {
    WritableSegment out;
    REQUIRE(producer.try_acquire(out) == Status::ok);
    fill(out.payload, bytes, seed);
    REQUIRE(producer.publish(bytes, 0, 0, 0, 0) == Status::ok);
}

}  // namespace

TEST_SUITE("ring") {

TEST_CASE("rule 1: the creator's identity validates, the ready mark last") {
    RingBuffer buffer(4);
    CHECK(L::load_relaxed(buffer.header().identity.abi_version) == L::kAbiVersion);
    shmchan::detail::Geometry geometry;
    CHECK(shmchan::detail::check_identity(buffer.header(), buffer.bytes(), geometry).empty());
    CHECK(geometry.segment_count == 4);
    CHECK(geometry.segment_size == kSegmentSize);
    // Shorter than its geometry: refused, with the sizes in the message.
    CHECK(shmchan::detail::check_identity(buffer.header(), buffer.bytes() - 1, geometry).find("needs") != std::string::npos);
    buffer.header().identity.segment_count = 3;
    CHECK(shmchan::detail::check_identity(buffer.header(), buffer.bytes(), geometry).find("total size") != std::string::npos);
}

TEST_CASE("rule 2: acquire takes the lap, commit and publish store their words") {
    RingBuffer buffer(4);
    Sides sides(buffer, /*epoch=*/7);
    // Leftovers of an earlier lap in the slot: acquire must reset them before it stores sequence.
    buffer.segment(0).committed_bytes = 99;
    buffer.segment(0).flags = L::kSegmentRecordContinues;
    buffer.segment(0).sequence = 1;  // not position 0: nothing to continue

    WritableSegment out;
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    CHECK(out.sequence == 0);
    CHECK(out.payload.size() == kCapacity);
    CHECK(out.payload.data() == buffer.payload(0));
    CHECK(out.committed == 0);
    CHECK(buffer.segment(0).sequence == 0);
    CHECK(buffer.segment(0).committed_bytes == 0);
    CHECK(buffer.segment(0).flags == 0);
    CHECK(buffer.segment(0).producer_epoch == 7);

    fill(out.payload, 100, 1);
    REQUIRE(sides.producer.commit(40) == Status::ok);
    CHECK(buffer.segment(0).committed_bytes == 40);
    CHECK(buffer.header().producer.published == 0);  // committed is not published

    REQUIRE(sides.producer.publish(100, L::kSegmentRecordContinues, 3, 8, 0xabcd) == Status::ok);
    CHECK(buffer.header().producer.published == 1);
    CHECK(buffer.segment(0).committed_bytes == 100);
    CHECK(buffer.segment(0).record_count == 3);
    CHECK(buffer.segment(0).first_record_offset == 8);
    CHECK(buffer.segment(0).checksum == 0xabcd);
    CHECK(buffer.header().producer_counters.segments_published == 1);
    CHECK(buffer.header().producer_counters.bytes_written == 100);

    ReadableSegment in;
    REQUIRE(sides.consumer.try_read(in) == Status::ok);
    CHECK(in.sequence == 0);
    CHECK(in.payload.data() == buffer.payload(0));
    CHECK(in.payload.size() == 100);
    CHECK(holds(in.payload, 1));
    CHECK(in.flags == L::kSegmentRecordContinues);
    CHECK(in.record_count == 3);
    CHECK(in.first_record_offset == 8);
    CHECK(in.checksum == 0xabcd);
    CHECK(sides.consumer.try_read(in) == Status::would_block);  // released segment 0 first
    CHECK(buffer.header().consumers[0].position.released == 1);
}

TEST_CASE("rule 2: a partial read sees committed bytes of this lap only") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    SegmentView view;
    // Never taken: the slot holds sequence 0 of no lap, and nothing is committed.
    CHECK(sides.consumer.try_view(0, view) == Status::would_block);

    WritableSegment out;
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    CHECK(sides.consumer.try_view(0, view) == Status::would_block);  // taken, nothing committed
    fill(out.payload, 64, 9);
    REQUIRE(sides.producer.commit(64) == Status::ok);
    REQUIRE(sides.consumer.try_view(0, view) == Status::ok);
    CHECK_FALSE(view.sealed);
    CHECK(view.payload.size() == 64);
    CHECK(holds(view.payload, 9));

    REQUIRE(sides.producer.publish(128, 0, 0, 0, 0) == Status::ok);
    REQUIRE(sides.consumer.try_view(0, view) == Status::ok);
    CHECK(view.sealed);
    CHECK(view.payload.size() == 128);
    // A view outside [released, released + segments) is a misuse, not a wait.
    CHECK(sides.consumer.try_view(2, view) == Status::invalid_call);
}

TEST_CASE("rule 2b: the flush word hands a waiting reader the new count") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    WritableSegment out;
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    fill(out.payload, 256, 3);
    CHECK_FALSE(sides.producer.flush());  // nothing committed: no word
    CHECK(buffer.header().producer.flushed == 0);

    REQUIRE(sides.producer.commit(32) == Status::ok);
    CHECK(sides.producer.flush());
    CHECK(buffer.header().producer.flushed == L::make_tagged_word(0, 32));
    CHECK_FALSE(sides.producer.flush());  // the same count again: no store

    SegmentView view;
    REQUIRE(sides.consumer.poll_view(0, view, /*eager=*/false) == Status::ok);  // first look reads the header
    CHECK(view.payload.size() == 32);
    REQUIRE(sides.producer.commit(96) == Status::ok);
    // Not flushed yet: a lazy poll loads only the producer line and sees nothing new.
    CHECK(sides.consumer.poll_view(0, view, false) == Status::would_block);
    CHECK(sides.producer.flush());
    REQUIRE(sides.consumer.poll_view(0, view, false) == Status::ok);
    CHECK(view.payload.size() == 96);
    CHECK(holds(view.payload, 3));

    // The next acquire clears the word, so an old tag can never match a new segment.
    REQUIRE(sides.producer.publish(96, 0, 0, 0, 0) == Status::ok);
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    CHECK(buffer.header().producer.flushed == 0);
}

TEST_CASE("rule 3: free segments are the producer's credits") {
    RingBuffer buffer(3);
    Sides sides(buffer);
    CHECK(sides.producer.free_segments() == 3);
    for (std::uint8_t i = 0; i < 3; ++i) publish_one(sides.producer, 10, i);
    CHECK(sides.producer.free_segments() == 0);
    WritableSegment out;
    CHECK(sides.producer.try_acquire(out) == Status::would_block);

    ReadableSegment in;
    REQUIRE(sides.consumer.try_read(in) == Status::ok);
    CHECK(buffer.header().consumers[0].position.released == 0);  // held, not released yet
    REQUIRE(sides.consumer.release() == Status::ok);
    CHECK(buffer.header().consumers[0].position.released == 1);
    CHECK(buffer.header().consumers[0].counters.segments_released == 1);
    CHECK(buffer.header().consumers[0].counters.bytes_read == 10);
    CHECK(sides.consumer.release() == Status::invalid_call);

    CHECK(sides.producer.free_segments() == 1);
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    CHECK(out.sequence == 3);
    CHECK(buffer.segment(3).sequence == 3);  // slot 0, its second lap
}

TEST_CASE("rule 3: with several consumer slots the slowest holds the producer") {
    RingBuffer buffer(2, /*consumers=*/2);
    Diagnostics producer_errors, errors0, errors1;
    ProducerRing producer(buffer.ring(), producer_errors);
    ConsumerRing first(buffer.ring(), errors0), second(buffer.ring(), errors1);
    REQUIRE(producer.adopt(1) == Status::ok);
    REQUIRE(first.adopt(0) == Status::ok);
    REQUIRE(second.adopt(1) == Status::ok);
    publish_one(producer, 8, 0);
    publish_one(producer, 8, 1);
    ReadableSegment in;
    for (int i = 0; i < 2; ++i) REQUIRE(first.try_read(in) == Status::ok);
    REQUIRE(first.release() == Status::ok);
    CHECK(buffer.header().consumers[0].position.released == 2);
    CHECK(producer.free_segments() == 0);  // slot 1 has released nothing
    REQUIRE(second.try_read(in) == Status::ok);
    REQUIRE(second.release() == Status::ok);
    CHECK(producer.free_segments() == 1);
}

TEST_CASE("rule 4: end of stream publishes a held segment, then ends") {
    RingBuffer buffer(4);
    Sides sides(buffer);
    publish_one(sides.producer, 5, 0);
    WritableSegment out;
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    fill(out.payload, 7, 1);
    REQUIRE(sides.producer.commit(7) == Status::ok);
    REQUIRE(sides.producer.end_stream() == Status::ok);
    CHECK(buffer.header().producer.published == 2);
    CHECK(buffer.header().producer.end_of_stream == 1);
    CHECK(sides.producer.try_acquire(out) == Status::invalid_call);

    ReadableSegment in;
    REQUIRE(sides.consumer.try_read(in) == Status::ok);
    CHECK(in.payload.size() == 5);
    REQUIRE(sides.consumer.try_read(in) == Status::ok);
    CHECK(in.payload.size() == 7);
    CHECK(sides.consumer.try_read(in) == Status::end_of_stream);
    SegmentView view;
    CHECK(sides.consumer.try_view(2, view) == Status::end_of_stream);
}

TEST_CASE("an empty held segment is dropped at the end of the stream") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    WritableSegment out;
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    REQUIRE(sides.producer.end_stream() == Status::ok);
    CHECK(buffer.header().producer.published == 0);
    ReadableSegment in;
    CHECK(sides.consumer.try_read(in) == Status::end_of_stream);
}

TEST_CASE("misuse is invalid_call and stores nothing") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    CHECK(sides.producer.commit(1) == Status::invalid_call);
    CHECK(sides.producer.publish(1, 0, 0, 0, 0) == Status::invalid_call);
    CHECK(sides.producer_errors.last_error.find("without an acquired segment") != std::string::npos);
    WritableSegment out;
    REQUIRE(sides.producer.try_acquire(out) == Status::ok);
    CHECK(sides.producer.commit(kCapacity + 1) == Status::invalid_call);
    CHECK(sides.producer.commit(10, 0, 1, 11) == Status::invalid_call);  // first record past the bytes
    CHECK(sides.producer.publish(kCapacity + 1, 0, 0, 0, 0) == Status::invalid_call);
    CHECK(sides.producer.publish(1, 0x8000'0000u, 0, 0, 0) == Status::invalid_call);  // unknown flag
    CHECK(buffer.segment(0).committed_bytes == 0);
    CHECK(buffer.header().producer.published == 0);
    CHECK(sides.consumer.release_until(1, 0, 0, ReadProgress{}) == Status::invalid_call);  // nothing published
}

TEST_CASE("a consumer's damaged values are corrupt for the producer") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    publish_one(sides.producer, 1, 0);
    publish_one(sides.producer, 1, 0);
    WritableSegment out;
    SUBCASE("a release ahead of what was published") {
        buffer.header().consumers[0].position.released = 3;
        CHECK(sides.producer.try_acquire(out) == Status::corrupt);
        CHECK(sides.producer_errors.last_error.find("outside") != std::string::npos);
    }
    SUBCASE("a release that goes back") {
        buffer.header().consumers[0].position.released = 1;
        CHECK(sides.producer.free_segments() == 1);
        buffer.header().consumers[0].position.released = 0;
        CHECK(sides.producer.check_positions() == Status::corrupt);
        CHECK(sides.producer_errors.last_error.find("went back") != std::string::npos);
    }
}

TEST_CASE("a producer's damaged values are corrupt for the consumer") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    ReadableSegment in;
    SegmentView view;
    SUBCASE("published beyond the ring") {
        buffer.header().producer.published = 3;
        CHECK(sides.consumer.try_read(in) == Status::corrupt);
        CHECK(sides.consumer.check_positions() == Status::corrupt);
    }
    SUBCASE("a segment with another lap's sequence") {
        publish_one(sides.producer, 10, 0);
        buffer.segment(0).sequence = 2;
        CHECK(sides.consumer.try_read(in) == Status::corrupt);
        CHECK(sides.consumer_errors.last_error.find("carries sequence 2") != std::string::npos);
    }
    SUBCASE("committed bytes over the capacity") {
        publish_one(sides.producer, 10, 0);
        buffer.segment(0).committed_bytes = kCapacity + 1;
        CHECK(sides.consumer.try_read(in) == Status::corrupt);
    }
    SUBCASE("unknown flags, and a first record past the bytes") {
        publish_one(sides.producer, 10, 0);
        buffer.segment(0).flags = 0x8000'0000u;
        CHECK(sides.consumer.try_read(in) == Status::corrupt);
        buffer.segment(0).flags = 0;
        buffer.segment(0).first_record_offset = 11;
        CHECK(sides.consumer.try_read(in) == Status::corrupt);
    }
    SUBCASE("a segment being filled with a sequence of no lap") {
        buffer.segment(0).sequence = 5;
        CHECK(sides.consumer.try_view(0, view) == Status::corrupt);
    }
    SUBCASE("a flush word over the capacity") {
        WritableSegment out;
        REQUIRE(sides.producer.try_acquire(out) == Status::ok);
        REQUIRE(sides.producer.commit(8) == Status::ok);
        REQUIRE(sides.consumer.try_view(0, view) == Status::ok);
        buffer.header().producer.flushed = L::make_tagged_word(0, kCapacity + 1);
        CHECK(sides.consumer.poll_view(0, view, false) == Status::corrupt);
    }
    SUBCASE("a flush word of another segment is ignored") {
        WritableSegment out;
        REQUIRE(sides.producer.try_acquire(out) == Status::ok);
        REQUIRE(sides.producer.commit(8) == Status::ok);
        REQUIRE(sides.consumer.try_view(0, view) == Status::ok);
        buffer.header().producer.flushed = L::make_tagged_word(1, 100);
        CHECK(sides.consumer.poll_view(0, view, false) == Status::would_block);
        CHECK(view.payload.size() == 8);
    }
}

TEST_CASE("attach: positions are adopted and checked") {
    RingBuffer buffer(4);
    Diagnostics errors;
    SUBCASE("a consumer resumes at its slot's release and finds the tagged resume point") {
        {
            Sides sides(buffer);
            for (std::uint8_t i = 0; i < 3; ++i) publish_one(sides.producer, 16, i);
            ReadableSegment in;
            REQUIRE(sides.consumer.try_read(in) == Status::ok);
            REQUIRE(sides.consumer.release_until(1, 12, 0, ReadProgress{16, 2, 0}) == Status::ok);
            CHECK(buffer.header().consumers[0].position.resume_point == L::make_tagged_word(1, 12));
            CHECK(buffer.header().consumers[0].counters.records_read == 2);
        }
        ConsumerRing next(buffer.ring(), errors);
        REQUIRE(next.adopt(0) == Status::ok);
        CHECK(next.position() == 1);
        CHECK(next.resume_point().position == 1);
        CHECK(next.resume_point().offset == 12);
    }
    SUBCASE("a consumer that died between the resume point and the release resumes one ahead") {
        {
            Sides sides(buffer);
            for (std::uint8_t i = 0; i < 3; ++i) publish_one(sides.producer, 16, i);
        }
        buffer.header().consumers[0].position.resume_point = L::make_tagged_word(1, 4);  // released stays 0
        ConsumerRing next(buffer.ring(), errors);
        REQUIRE(next.adopt(0) == Status::ok);
        CHECK(next.position() == 0);
        CHECK(next.resume_point().position == 1);
        CHECK(next.resume_point().offset == 4);
        REQUIRE(next.release_until(1, 4, 0, ReadProgress{}) == Status::ok);  // allowed up to there
    }
    SUBCASE("a resume point outside the published range is corrupt") {
        buffer.header().consumers[0].position.resume_point = L::make_tagged_word(9, 0);
        ConsumerRing next(buffer.ring(), errors);
        CHECK(next.adopt(0) == Status::corrupt);
        CHECK(errors.last_error.find("resume point") != std::string::npos);
    }
    SUBCASE("inconsistent positions are corrupt for either side") {
        buffer.header().producer.published = 10;  // five past a release of 0 in a ring of 4
        ProducerRing producer(buffer.ring(), errors);
        CHECK(producer.adopt(1) == Status::corrupt);
        ConsumerRing consumer(buffer.ring(), errors);
        CHECK(consumer.adopt(0) == Status::corrupt);
    }
}

TEST_CASE("restart: a producer continues the segment its predecessor committed to") {
    RingBuffer buffer(4);
    {
        Sides sides(buffer, 1);
        sides.producer.set_record_ordinal(5);  // records completed by the end of segment 0
        publish_one(sides.producer, 20, 0);
        WritableSegment out;
        REQUIRE(sides.producer.try_acquire(out) == Status::ok);
        fill(out.payload, 30, 4);
        REQUIRE(sides.producer.commit(30, 0, 2, 0) == Status::ok);
        // Dies here: segment 1 holds 30 committed bytes, never published.
    }
    Diagnostics errors;
    ProducerRing next(buffer.ring(), errors);
    REQUIRE(next.adopt(2) == Status::ok);
    CHECK(next.position() == 1);
    SegmentView view;
    std::uint64_t ordinal = 0;
    REQUIRE(next.resume_view(view, ordinal) == Status::ok);
    CHECK(view.payload.size() == 30);
    CHECK(ordinal == 5);
    WritableSegment out;
    REQUIRE(next.try_acquire(out) == Status::ok);
    CHECK(out.sequence == 1);
    CHECK(out.committed == 30);
    CHECK(out.record_count == 2);
    CHECK(holds(out.payload.first(30), 4));
    CHECK(buffer.segment(1).producer_epoch == 2);
    CHECK(next.resume_view(view, ordinal) == Status::invalid_call);  // only before the first acquire
}

TEST_CASE("restart: a damaged segment left behind is corrupt for resume_view") {
    RingBuffer buffer(4);
    {
        Sides sides(buffer, 1);
        WritableSegment out;
        REQUIRE(sides.producer.try_acquire(out) == Status::ok);
        REQUIRE(sides.producer.commit(30) == Status::ok);
    }
    buffer.segment(0).committed_bytes = kCapacity + 5;
    Diagnostics errors;
    ProducerRing next(buffer.ring(), errors);
    REQUIRE(next.adopt(2) == Status::ok);
    SegmentView view;
    std::uint64_t ordinal = 0;
    CHECK(next.resume_view(view, ordinal) == Status::corrupt);
    // The first acquire starts that segment afresh instead of trusting it.
    WritableSegment out;
    REQUIRE(next.try_acquire(out) == Status::ok);
    CHECK(out.committed == 0);
    CHECK(buffer.segment(0).committed_bytes == 0);
}

TEST_CASE("the priority lane: one event at a time, acknowledged by the consumer") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    CHECK(sides.producer.publish_priority(42, 3, 128));
    CHECK(buffer.header().priority_lane.event.sequence == 1);
    CHECK_FALSE(sides.producer.publish_priority(43, 3, 128));  // not taken yet
    std::uint64_t id = 0;
    REQUIRE(sides.consumer.take_priority(id));
    CHECK(id == 42);
    CHECK(buffer.header().priority_lane.acknowledged == 1);
    CHECK_FALSE(sides.consumer.take_priority(id));
    CHECK(sides.producer.publish_priority(43, 4, 0));
    // An event of a kind this build does not know is acknowledged and ignored.
    buffer.header().priority_lane.event.kind = 77;
    CHECK_FALSE(sides.consumer.take_priority(id));
    CHECK(buffer.header().priority_lane.acknowledged == 2);
}

TEST_CASE("positions run free past many laps") {
    RingBuffer buffer(2);
    Sides sides(buffer);
    ReadableSegment in;
    for (std::uint32_t i = 0; i < 1000; ++i) {
        publish_one(sides.producer, 1 + i % 50, static_cast<std::uint8_t>(i));
        REQUIRE(sides.consumer.try_read(in) == Status::ok);
        REQUIRE(in.sequence == i);
        REQUIRE(holds(in.payload, static_cast<std::uint8_t>(i)));
    }
    REQUIRE(sides.consumer.release() == Status::ok);
    CHECK(buffer.header().producer.published == 1000);
    CHECK(buffer.header().consumers[0].position.released == 1000);
    CHECK(buffer.segment(999).sequence == 999);
}

}  // TEST_SUITE
