// SPDX-License-Identifier: Apache-2.0
// docs/LAYOUT.md is the prose twin of channels/layout.hpp: every offset its tables give is checked
// here against offsetof, so that the two cannot drift apart. In process, no channel.
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "channels/layout.hpp"

#ifndef SHMCHAN_SOURCE_DIR
#error "SHMCHAN_SOURCE_DIR must name the source tree"
#endif

namespace {

namespace L = shmchan::layout;

std::string layout_doc() {
    std::ifstream in(std::string(SHMCHAN_SOURCE_DIR) + "/docs/LAYOUT.md");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// A table row "| OFFSET | `NAME`..." of the doc (the offset cell as the doc writes it).
bool has_row(const std::string& doc, const std::string& offset, const std::string& name) {
    return doc.find("\n| " + offset + " | `" + name + "`") != std::string::npos;
}

struct Row {
    std::string offset;  // as the doc writes it: "64", "+16", "768 + 320·i"
    std::string name;
};

std::string at(std::size_t offset) { return std::to_string(offset); }
std::string plus(std::size_t offset) { return "+" + std::to_string(offset); }

}  // namespace

TEST_SUITE("layout") {

TEST_CASE("docs/LAYOUT.md gives every documented offset as layout.hpp has it") {
    const std::string doc = layout_doc();
    REQUIRE_MESSAGE(!doc.empty(), "docs/LAYOUT.md not found under " SHMCHAN_SOURCE_DIR);
    using H = L::ChannelHeader;
    const std::size_t identity = offsetof(H, identity), producer = offsetof(H, producer);
    const std::size_t slot = offsetof(H, consumers), link = offsetof(H, gate_links);
    const std::vector<Row> rows = {
        // Channel header.
        {at(identity + offsetof(L::Identity, magic)), "identity.magic"},
        {at(identity + offsetof(L::Identity, abi_version)), "identity.abi_version"},
        {at(identity + offsetof(L::Identity, header_bytes)), "identity.header_bytes"},
        {at(identity + offsetof(L::Identity, segment_size)), "identity.segment_size"},
        {at(identity + offsetof(L::Identity, segment_count)), "identity.segment_count"},
        {at(identity + offsetof(L::Identity, framing)), "identity.framing"},
        {at(identity + offsetof(L::Identity, flags)), "identity.flags"},
        {at(identity + offsetof(L::Identity, max_record_bytes)), "identity.max_record_bytes"},
        {at(identity + offsetof(L::Identity, total_bytes)), "identity.total_bytes"},
        {at(identity + offsetof(L::Identity, created_realtime_ns)), "identity.created_realtime_ns"},
        {at(identity + offsetof(L::Identity, consumer_slots)), "identity.consumer_slots"},
        {at(offsetof(H, control) + offsetof(L::Control, removed)), "control.removed"},
        {at(offsetof(H, control) + offsetof(L::Control, creator_pid)), "control.creator_pid"},
        {at(offsetof(H, control) + offsetof(L::Control, framing_refusals)), "control.framing_refusals"},
        {at(offsetof(H, control) + offsetof(L::Control, refused_framing)), "control.refused_framing"},
        {at(offsetof(H, record_type) + offsetof(L::RecordType, length)), "record_type.length"},
        {at(offsetof(H, record_type) + offsetof(L::RecordType, name)), "record_type.name"},
        {at(producer + offsetof(L::ProducerLine, published)), "producer.published"},
        {at(producer + offsetof(L::ProducerLine, end_of_stream)), "producer.end_of_stream"},
        {at(producer + offsetof(L::ProducerLine, sleeping)), "producer.sleeping"},
        {at(producer + offsetof(L::ProducerLine, buffer_timeout_ns)), "producer.buffer_timeout_ns"},
        {at(producer + offsetof(L::ProducerLine, flushed)), "producer.flushed"},
        {at(offsetof(H, producer_attachment)), "producer_attachment"},
        {at(offsetof(H, producer_counters)), "producer_counters"},
        {at(offsetof(H, priority_lane) + offsetof(L::PriorityLane, event) + offsetof(L::PriorityEvent, sequence)),
         "priority_lane.event.sequence"},
        {at(offsetof(H, priority_lane) + offsetof(L::PriorityLane, acknowledged)), "priority_lane.acknowledged"},
        {at(slot) + " + " + std::to_string(sizeof(L::ConsumerSlot)) + "·i", "consumers[i]"},
        {plus(offsetof(L::ConsumerSlot, position) + offsetof(L::ConsumerLine, released)), ".position.released"},
        {plus(offsetof(L::ConsumerSlot, position) + offsetof(L::ConsumerLine, resume_point)), ".position.resume_point"},
        {plus(offsetof(L::ConsumerSlot, position) + offsetof(L::ConsumerLine, in_flight_record_bytes)),
         ".position.in_flight_record_bytes"},
        {plus(offsetof(L::ConsumerSlot, attachment)), ".attachment"},
        {plus(offsetof(L::ConsumerSlot, counters)), ".counters"},
        {plus(offsetof(L::ConsumerSlot, wake)), ".wake.sleeping"},
        {plus(offsetof(L::ConsumerSlot, wake) + offsetof(L::ConsumerWake, credit_limit)), ".wake.credit_limit"},
        {plus(offsetof(L::ConsumerSlot, wake) + offsetof(L::ConsumerWake, throughput_bytes_per_s)),
         ".wake.throughput_bytes_per_s"},
        {plus(offsetof(L::ConsumerSlot, wake) + offsetof(L::ConsumerWake, debloat_target_ns)), ".wake.debloat_target_ns"},
        {plus(offsetof(L::ConsumerSlot, wake) + offsetof(L::ConsumerWake, segments_per_ks)), ".wake.segments_per_ks"},
        {at(link) + " + " + std::to_string(sizeof(L::GateLink)) + "·i", "gate_links[i]"},
        {plus(offsetof(L::GateLink, linked)), ".linked"},
        {plus(offsetof(L::GateLink, index)), ".index"},
        {plus(offsetof(L::GateLink, generation)), ".generation"},
        {plus(offsetof(L::GateLink, gate_name)), ".gate_name"},
        // Segment header.
        {at(offsetof(L::SegmentHeader, committed_bytes)), "committed_bytes"},
        {at(offsetof(L::SegmentHeader, record_count)), "record_count"},
        {at(offsetof(L::SegmentHeader, flags)), "flags"},
        {at(offsetof(L::SegmentHeader, checksum)), "checksum"},
        {at(offsetof(L::SegmentHeader, sequence)), "sequence"},
        {at(offsetof(L::SegmentHeader, first_record_offset)), "first_record_offset"},
        {at(offsetof(L::SegmentHeader, producer_epoch)), "producer_epoch"},
        {at(offsetof(L::SegmentHeader, first_record_ordinal)), "first_record_ordinal"},
        {at(offsetof(L::SegmentHeader, end_record_ordinal)), "end_record_ordinal"},
        // Frame header.
        {at(offsetof(L::FrameHeader, length)), "length"},
        {at(offsetof(L::FrameHeader, kind)), "kind"},
        {at(offsetof(L::FrameHeader, event_type)), "event_type"},
        // Gate header.
        {at(offsetof(L::GateHeader, magic)), "magic"},
        {at(offsetof(L::GateHeader, abi_version)), "abi_version"},
        {at(offsetof(L::GateHeader, channel_count)), "channel_count"},
        {at(offsetof(L::GateHeader, sleeping)), "sleeping"},
        {at(offsetof(L::GateHeader, wake_syscalls)), "wake_syscalls"},
        {at(offsetof(L::GateHeader, parks)), "parks"},
        {at(offsetof(L::GateHeader, ready)), "ready[64]"},
        {at(offsetof(L::GateHeader, priority)), "priority[64]"},
    };
    for (const Row& row : rows) {
        CHECK_MESSAGE(has_row(doc, row.offset, row.name), "docs/LAYOUT.md has no row '| " << row.offset << " | `"
                                                                                            << row.name << "`'");
    }
    // The lock bytes table and the version the doc describes.
    for (std::uint64_t byte : {L::kCreatingLockByte, L::kInUseLockByte, L::kProducerLockByte}) {
        CHECK_MESSAGE(doc.find("\n| " + std::to_string(byte) + " | ") != std::string::npos, "lock byte " << byte);
    }
    CHECK(doc.find("\n| " + std::to_string(L::kConsumerLockByte) + " + i | ") != std::string::npos);
    CHECK(doc.find("(ABI version " + std::to_string(L::kAbiVersion) + ")") != std::string::npos);
}

}  // TEST_SUITE
