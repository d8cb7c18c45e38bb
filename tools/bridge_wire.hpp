// SPDX-License-Identifier: Apache-2.0
// shm-bridge's wire protocol (docs/BRIDGE.md is its prose twin): every ZeroMQ message is one
// frame, a fixed 32-byte header followed by a body whose length the header states. Integers are
// little-endian (the bridge runs on little-endian hosts only: a static_assert says so).
//
// Frames from the network are decoded into locals and checked before any use: magic, version,
// type, the stated length against the message's real size, each body against its type's bounds.
// A frame that fails is dropped with a one-line reason (decode() returns it); nothing is trusted
// as a length or index before that.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmchan::bridge {

static_assert(std::endian::native == std::endian::little, "the bridge's wire format is little-endian");

inline constexpr std::uint32_t kWireMagic = 0x42474453u;  // "SDGB" little-endian: shmchan bridge
inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kMaxNameBytes = 255;
inline constexpr std::size_t kMaxErrorBytes = 1024;
inline constexpr std::uint32_t kMaxChannelsPerLink = 1024;
// The largest segment the bridge carries (layout::kMaxSegmentSize is 1 GiB; a network frame
// that large is refused: 64 MiB segments are plenty for a link).
inline constexpr std::uint32_t kMaxWireSegmentSize = 64u << 20;

enum class FrameType : std::uint8_t {
    hello = 1,  // forwarder -> serve: open (or re-open after a reconnect) one stream
    data = 2,   // forwarder -> serve: one sealed segment at `position`
    end = 3,    // forwarder -> serve: the stream ended after `position` segments
    died = 4,   // forwarder -> serve: the local producer died after `position` segments
    ping = 5,   // forwarder -> serve: liveness of the forwarder (serve answers pong)
    ack = 6,    // serve -> forwarder: `position` segments committed, `credits` free segments
    pong = 7,   // serve -> forwarder: answer to ping (`position` echoes the ping's)
    error = 8,  // serve -> forwarder: the stream is refused; body: the reason (text)
    priority = 9,  // forwarder -> serve: a priority barrier (`position`: its checkpoint id)
};

// Header flags.
inline constexpr std::uint16_t kAckResync = 1u << 0;    // ack: resend from `position` (a gap was seen)
inline constexpr std::uint16_t kAckEnded = 1u << 1;     // ack: the end of stream is written remotely
inline constexpr std::uint16_t kAckDetached = 1u << 2;  // ack: the remote producer detached (died)
inline constexpr std::uint16_t kAckOpened = 1u << 3;    // ack: the answer to a hello
inline constexpr std::uint16_t kErrorRetry = 1u << 0;   // error: transient (say hello again later)
inline constexpr std::uint16_t kKnownFlags = 0x000f;

struct FrameHeader {
    std::uint32_t magic;      // kWireMagic
    std::uint8_t version;     // kWireVersion
    std::uint8_t type;        // FrameType
    std::uint16_t flags;      // kAck*, kError*
    std::uint32_t channel;    // the forwarder's index of the stream (< kMaxChannelsPerLink)
    std::uint32_t length;     // body bytes after the header
    std::uint64_t position;   // a segment position (type-specific)
    std::uint32_t credits;    // ack: free segments of the remote ring
    std::uint32_t reserved;   // 0
};
static_assert(sizeof(FrameHeader) == 32);
static_assert(offsetof(FrameHeader, position) == 16);

// The body of a hello: the stream's geometry and framing, then its remote name.
struct HelloBody {
    std::uint32_t segment_size;
    std::uint32_t segment_count;
    std::uint32_t framing;         // layout::Framing
    std::uint32_t channel_flags;   // layout::kFlag* (checksums)
    std::uint64_t max_record_bytes;
    std::uint32_t name_length;     // bytes of the name after this struct
    std::uint32_t reserved;
    std::uint64_t stream_id;       // the local channel's creation time (ns): tells a new stream
                                   // from a re-hello of one the remote end has already ended
};
static_assert(sizeof(HelloBody) == 40);

// The body of a data frame: the segment's metadata, then `committed` payload bytes.
struct DataBody {
    std::uint32_t committed;
    std::uint32_t flags;
    std::uint32_t record_count;
    std::uint32_t first_record_offset;
    std::uint32_t checksum;
    std::uint32_t reserved;
};
static_assert(sizeof(DataBody) == 24);

// A decoded frame: header fields and, per type, the body's fields (views into the message).
struct Frame {
    FrameHeader header{};
    FrameType type{};
    HelloBody hello{};
    std::string_view name;           // hello
    DataBody data{};
    const std::byte* payload = nullptr;  // data: `data.committed` bytes
    std::string_view text;           // error
};

inline std::string printable(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

// Checks one message and decodes it into `out`; returns the reason it is refused, or nullopt.
inline std::optional<std::string> decode(const void* message, std::size_t size, Frame& out) {
    out = Frame{};
    if (size < sizeof(FrameHeader)) return "frame of " + std::to_string(size) + " bytes is shorter than a header";
    std::memcpy(&out.header, message, sizeof out.header);
    const FrameHeader& h = out.header;
    if (h.magic != kWireMagic) return "bad magic (not a shm-bridge peer)";
    if (h.version != kWireVersion) return "wire version " + std::to_string(h.version) + ", expected " + std::to_string(kWireVersion);
    if (h.type < 1 || h.type > 9) return "unknown frame type " + std::to_string(h.type);
    if ((h.flags & ~kKnownFlags) != 0 || h.reserved != 0) return "unknown flags or reserved bits set";
    if (h.length != size - sizeof(FrameHeader)) {
        return "header states " + std::to_string(h.length) + " body bytes, the frame has " +
               std::to_string(size - sizeof(FrameHeader));
    }
    if (h.channel >= kMaxChannelsPerLink) return "channel index " + std::to_string(h.channel) + " out of range";
    out.type = static_cast<FrameType>(h.type);
    const auto* body = static_cast<const std::byte*>(message) + sizeof(FrameHeader);
    switch (out.type) {
        case FrameType::hello: {
            if (h.length < sizeof(HelloBody)) return "hello body too short";
            std::memcpy(&out.hello, body, sizeof out.hello);
            const HelloBody& b = out.hello;
            if (b.name_length == 0 || b.name_length > kMaxNameBytes || b.name_length != h.length - sizeof(HelloBody)) {
                return "hello name length " + std::to_string(b.name_length) + " does not match its body";
            }
            if (b.segment_size < 4096 || b.segment_size > kMaxWireSegmentSize || b.segment_size % 4096 != 0) {
                return "hello segment size " + std::to_string(b.segment_size) + " out of range";
            }
            if (b.segment_count < 1 || b.segment_count > (1u << 20)) {
                return "hello segment count " + std::to_string(b.segment_count) + " out of range";
            }
            if (b.framing != 1 && b.framing != 2) return "hello framing " + std::to_string(b.framing) + " unknown";
            if ((b.channel_flags & ~1u) != 0 || b.reserved != 0) return "hello flags unknown";
            out.name = std::string_view(reinterpret_cast<const char*>(body + sizeof(HelloBody)), b.name_length);
            return std::nullopt;
        }
        case FrameType::data: {
            if (h.length < sizeof(DataBody)) return "data body too short";
            std::memcpy(&out.data, body, sizeof out.data);
            if (out.data.committed != h.length - sizeof(DataBody) || out.data.committed > kMaxWireSegmentSize) {
                return "data frame states " + std::to_string(out.data.committed) + " payload bytes, carries " +
                       std::to_string(h.length - sizeof(DataBody));
            }
            if (out.data.reserved != 0) return "data reserved field set";
            out.payload = body + sizeof(DataBody);
            return std::nullopt;
        }
        case FrameType::error:
            if (h.length > kMaxErrorBytes) return "error text too long";
            out.text = std::string_view(reinterpret_cast<const char*>(body), h.length);
            return std::nullopt;
        default:
            if (h.length != 0) return "frame type " + std::to_string(h.type) + " carries an unexpected body";
            return std::nullopt;
    }
}

// Encoding: a header (and body) appended to `out`, which the caller sends as one message.
inline void append_bytes(std::vector<std::byte>& out, const void* data, std::size_t size) {
    if (size == 0) return;
    const std::size_t old = out.size();
    out.resize(old + size);
    std::memcpy(out.data() + old, data, size);
}
template <class T>
inline void append(std::vector<std::byte>& out, const T& value) {
    append_bytes(out, &value, sizeof value);
}
inline void encode_header(std::vector<std::byte>& out, FrameType type, std::uint16_t flags, std::uint32_t channel,
                          std::uint64_t position, std::uint32_t credits, std::size_t body_length) {
    const FrameHeader h{kWireMagic, kWireVersion, static_cast<std::uint8_t>(type), flags, channel,
                        static_cast<std::uint32_t>(body_length), position, credits, 0};
    append(out, h);
}

}  // namespace shmchan::bridge
