// SPDX-License-Identifier: Apache-2.0
// The channel file: options checked, the header validated against the file, create-or-open by
// name, and the snapshot that inspection reads. Internal (channel.cpp and the tests).
//
// Open-or-create and removal (why no opener ever uses a half-made or removed file):
//  - A creator builds the whole channel in an unnamed file (shm::Region::create_unnamed): identity,
//    then the ready mark last (layout.hpp rule 1), then kInUseLockByte (shared); only then does it
//    give the file its name (link_name), and of racing creators the kernel lets exactly one win.
//    Openers of a file made by other means wait, bounded, for the ready mark.
//  - Every handle holds kInUseLockByte shared while attached. A remover that must not remove a
//    channel in use takes kInUseLockByte exclusively (possible only when no handle holds it), sets
//    Control::removed, unlinks, and lets go. A handle checks `removed` and the link count only
//    after it holds its shared lock, so either the remover saw the lock (and did not remove), or
//    the handle sees the removal and starts over on a fresh file.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "shm/region.hpp"

namespace shmchan::detail {

// The identity of a channel as validated at open: never re-read on the hot path.
struct Geometry {
    std::uint32_t segment_size = 0;
    std::uint32_t segment_count = 0;
    std::uint32_t framing = 0;
    std::uint32_t flags = 0;
    std::uint32_t consumer_slots = 0;
    std::uint64_t max_record_bytes = 0;
    std::uint64_t total_bytes = 0;
    std::uint64_t created_realtime_ns = 0;
    std::string record_type;  // the declared record type; empty: none
};

std::string describe_channel(const std::string& name);  // "channel 'NAME'"

// Throws Error(bad_options) for an option out of range.
void validate_options(const std::string& name, const ChannelOptions& options);

// Reads the identity once into locals (after the ready mark's acquire) and checks every field
// against the limits and the mapped size. Returns an error message, or empty when valid.
std::string check_identity(const layout::ChannelHeader& header, std::size_t mapped_bytes, Geometry& out);
// Copies a header's record type once into `out` and checks it (layout.hpp RecordType).
// Returns an error message, or empty when valid.
std::string read_record_type(const layout::RecordType& field, std::string& out);
Errc classify_identity_error(const layout::ChannelHeader& header, std::size_t mapped_bytes);

// Writes a new channel's identity into zeroed memory, the ready mark last (rule 1).
void initialize_header(layout::ChannelHeader& header, const ChannelOptions& options);

// An open, validated, in-use-locked mapping of a channel.
struct OpenChannel {
    shm::Region region;
    Geometry geometry;
    std::string discarded_leftover;  // on_leftover = fresh: what the removed leftover held
};
// Creates channel `name` or opens it, as the options say, for the side `as_producer` says (a
// framing refusal names it: detail/framing_refusal.hpp); throws Error on any problem.
OpenChannel open_or_create(const std::string& name, const ChannelOptions& options, bool as_producer);

// `self`: the side the caller holds (its own lock does not conflict with itself), if any.
enum class Self { none, producer, consumer };
ChannelInfo read_info(const std::string& name, const shm::Region& region, Self self = Self::none);

}  // namespace shmchan::detail
