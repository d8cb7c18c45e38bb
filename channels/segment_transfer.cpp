// SPDX-License-Identifier: Apache-2.0
#include "segment_transfer.hpp"

#include <cstring>
#include <limits>

#include "crc32c.hpp"
#include "detail/hooks.hpp"
#include "layout.hpp"

namespace shmchan {

namespace L = layout;

SegmentSource::SegmentSource(Consumer& consumer) : consumer_(&consumer) {
    // Where the last consumer of this slot stopped: its resume word names the segment (one past
    // `released` if it died between its two stores, layout.hpp make_tagged_word).
    detail::ConsumerHooks hooks(consumer);
    const detail::ResumePoint resume = hooks.resume_point();
    segments_ = consumer.segment_count();
    // Finish that release, so that our window starts at the ring's own position. Whole segments
    // travel: one a records reader had partly read is carried whole.
    if (hooks.release_until(resume.position, 0, 0, detail::ReadProgress{}) == Status::ok) released_ = resume.position;
    else released_ = consumer.info().released;
}

const std::string& SegmentSource::last_error() const noexcept {
    return error_.empty() ? consumer_->last_error() : error_;
}

Status SegmentSource::wait(std::uint64_t position, CarriedSegment& out, std::chrono::nanoseconds timeout) {
    if (position < released_ || position - released_ >= segments_) {
        error_ = "segment " + std::to_string(position) + " is outside the window [" + std::to_string(released_) +
                 ", " + std::to_string(released_ + segments_) + ")";
        return Status::invalid_call;
    }
    error_.clear();
    detail::ConsumerHooks hooks(*consumer_);
    detail::SegmentView view;
    // Only a sealed segment is carried: ask for more bytes than any segment holds, so that a
    // partly filled one keeps us waiting until it is published.
    Status status = timeout.count() == 0 ? hooks.try_view(position, view)
                                         : hooks.wait_view(position, std::numeric_limits<std::uint32_t>::max(), view, timeout);
    if (status == Status::ok && !view.sealed) status = timeout.count() == 0 ? Status::would_block : Status::timed_out;
    if (status != Status::ok) return status;
    out.position = position;
    out.payload = view.payload;
    out.flags = view.flags;
    out.record_count = view.record_count;
    out.first_record_offset = view.first_record_offset;
    out.checksum = view.checksum;
    return Status::ok;
}

Status SegmentSource::try_get(std::uint64_t position, CarriedSegment& out) {
    return wait(position, out, std::chrono::nanoseconds(0));
}

Status SegmentSource::release_until(std::uint64_t position) {
    if (position <= released_) return Status::ok;
    detail::ConsumerHooks hooks(*consumer_);
    Status status = hooks.release_until(position, 0, 0, detail::ReadProgress{});
    if (status == Status::invalid_call && position - released_ <= segments_) {
        // Segments we have not looked at (a restarted source whose far end had them already):
        // a view of the last one loads the producer's position, then they can be released.
        detail::SegmentView view;
        if (Status seen = hooks.try_view(position - 1, view); seen != Status::ok) {
            error_ = "segment " + std::to_string(position - 1) + " is not published here (" + to_string(seen) + ")";
            return Status::invalid_call;
        }
        status = hooks.release_until(position, 0, 0, detail::ReadProgress{});
    }
    if (status == Status::ok) released_ = position;
    return status;
}

bool SegmentSource::take_priority(std::uint64_t& checkpoint_id) {
    return detail::ConsumerHooks(*consumer_).take_priority(checkpoint_id);
}

bool SegmentSink::publish_priority(std::uint64_t checkpoint_id) {
    return detail::ProducerHooks(*producer_).publish_priority(checkpoint_id, next_, 0);
}

SegmentSink::SegmentSink(Producer& producer) : producer_(&producer) {
    const ChannelInfo info = producer.info();
    next_ = info.published;
    capacity_ = producer.payload_capacity();
    checksums_ = (info.flags & L::kFlagChecksums) != 0;
    records_ = info.framing == Framing::records;
}

std::uint32_t SegmentSink::free_segments() { return detail::ProducerHooks(*producer_).free_segments(); }

Status SegmentSink::refuse(const std::string& why) {
    error_ = "segment " + std::to_string(next_) + " refused: " + why;
    return Status::corrupt;
}

Status SegmentSink::try_write(const CarriedSegment& segment) {
    // Every field is a local of the caller's (decoded from the network): checked before use.
    if (segment.position != next_) {
        return refuse("it carries position " + std::to_string(segment.position) + ", the channel expects " +
                      std::to_string(next_));
    }
    if (segment.payload.size() > capacity_) {
        return refuse(std::to_string(segment.payload.size()) + " bytes exceed the payload capacity " +
                      std::to_string(capacity_));
    }
    const auto bytes = static_cast<std::uint32_t>(segment.payload.size());
    if ((segment.flags & ~L::kSegmentKnownFlags) != 0) return refuse("unknown flags " + std::to_string(segment.flags));
    if (!records_ && (segment.flags != 0 || segment.record_count != 0 || segment.first_record_offset != 0)) {
        return refuse("records metadata on a raw-bytes channel");
    }
    if (records_) {
        if (segment.first_record_offset > bytes || segment.first_record_offset % L::kFrameAlignment != 0) {
            return refuse("first record offset " + std::to_string(segment.first_record_offset) + " outside its " +
                          std::to_string(bytes) + " bytes");
        }
        if (segment.record_count > bytes / L::kFrameHeaderBytes + 1) {
            return refuse("record count " + std::to_string(segment.record_count) + " cannot fit " +
                          std::to_string(bytes) + " bytes");
        }
    }
    const bool flagged = (segment.flags & L::kSegmentHasChecksum) != 0;
    if (flagged && !(checksums_ && records_)) return refuse("a checksum on a channel without checksums");
    if (flagged && crc32c(segment.payload.data(), bytes) != segment.checksum) return refuse("checksum mismatch");

    WritableSegment out;
    Status status = producer_->try_acquire(out);
    if (status != Status::ok) {
        error_ = producer_->last_error();
        return status;
    }
    if (out.sequence != next_ || out.committed != 0) {
        // A leftover segment that a records producer had started (never ours: we publish whole
        // segments), or a position that moved under us.
        error_ = "channel segment " + std::to_string(out.sequence) + " holds " + std::to_string(out.committed) +
                 " committed bytes of another producer; expected an empty segment " + std::to_string(next_);
        return Status::corrupt;
    }
    if (bytes != 0) std::memcpy(out.payload.data(), segment.payload.data(), bytes);
    detail::ProducerHooks hooks(*producer_);
    if (records_ && segment.record_count != 0) hooks.add_written(segment.record_count, 0);
    status = hooks.publish(bytes, segment.flags, segment.record_count, segment.first_record_offset, segment.checksum);
    if (status != Status::ok) {
        error_ = producer_->last_error();
        return status;
    }
    ++next_;
    return Status::ok;
}

}  // namespace shmchan
