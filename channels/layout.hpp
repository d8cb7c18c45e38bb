// SPDX-License-Identifier: Apache-2.0
// The shared-memory layout of a channel: the one ABI header. docs/LAYOUT.md is its prose twin.
//
// A channel is one file (shm/region.hpp) laid out as
//
//     [ ChannelHeader: 8192 bytes ][ segment 0 ][ segment 1 ] ... [ segment N-1 ]
//
// and every segment is [ SegmentHeader: 64 bytes ][ payload: segment_size - 64 bytes ].
//
// Rules (each struct below follows them; the static_asserts prove them):
//  - fixed-width fields only, no pointers, standard layout, trivially copyable;
//  - every field has one writer, written beside it; producer-owned and consumer-owned fields are
//    on separate 64-byte cache lines;
//  - every atomic is lock-free and address-free (std::atomic of a 32- or 64-bit integer);
//  - positions are free-running 64-bit counts of segments; slot = position % segment_count.
//
// Versioning: kAbiVersion changes whenever any byte of this file changes meaning or place. A
// reader refuses any other version. New fields go into reserved space, and bump the version.
//
// Synchronization protocol (the only release/acquire pairs of the channel):
//  1. Ready mark. The creator writes every identity field, then stores `abi_version` with
//     release. An opener loads it with acquire; non-zero means the identity fields are complete.
//  2. Data. The producer writes a segment's payload and SegmentHeader, then stores
//     `ProducerLine::published` (position + 1) with release. The consumer loads `published`
//     with acquire before it reads that segment. Partial reads of the segment being filled:
//     when the producer takes a free segment it stores `committed_bytes` = 0 (relaxed) and then
//     `SegmentHeader::sequence` = its position (release); after writing payload bytes it stores
//     `committed_bytes` (release). A consumer at that position loads `sequence` (acquire) and,
//     only if it equals the position, loads `committed_bytes` (acquire) and may read that many
//     bytes: the sequence check keeps it from trusting a count left over from the last lap.
// 2b. Flush word. A flush (RecordWriter::flush, or every record in latency mode) stores the
//     committed_bytes of the segment being filled into `ProducerLine::flushed`, tagged with the
//     segment's position, with release after the committed_bytes store. A waiting consumer polls
//     the producer line (published, flushed) and re-reads the segment header only now and then
//     while spinning (and at every wake-up when parked), so it does not pull the header line
//     away from a producer that commits record after record; the flush word hands it the new
//     count without that line. The consumer acquires the word, checks the tag against its own
//     position and the count against the capacity, and trusts the count only then.
//  3. Credits. The consumer finishes reading a segment, then stores `ConsumerLine::released`
//     with release. The producer loads it with acquire before it overwrites that slot; with
//     several consumer slots (broadcast) it loads every slot's and is held by the minimum.
//  4. End of stream. The producer publishes its last segment, then stores
//     `ProducerLine::end_of_stream` = 1 with release; a consumer that acquires 1 there
//     re-loads `published`, which is then final.
//  5. Sleeping (Dekker). A side about to sleep stores 1 to its `sleeping` word (seq_cst), then
//     re-checks its condition (seq_cst load), then futex-waits while the word is 1. The other
//     side stores its position (release), issues a seq_cst fence, then loads the peer's
//     `sleeping` word: if 1, it exchanges it to 0 and makes the one futex_wake syscall. The
//     fences forbid both sides missing each other, so no wake is lost; the exchange makes sure a
//     sleep is woken at most once, so wake syscalls never exceed parks. A timed-out sleeper
//     exchanges its word back to 0 itself.
//  6. Counters are written by their side with relaxed stores (one writer, no read-modify-write)
//     and read by anyone with relaxed loads: they are figures, never used for synchronization.
//  7. Debloating. A consumer with a debloat target stores a credit limit (segments) in its wake
//     line, relaxed: a hint, never data. The producer loads it (relaxed) when its cached release
//     says it has that many segments in flight, clamps it to [min(2, N), N] (0: N) and, across
//     slots, obeys the smallest; it waives the limit while a record spans segments, so a reader
//     that holds the start of a record never waits for a producer that waits for it. Any value
//     there can only delay the producer as a smaller ring would: never a hang, never an access.
//
// Liveness is not in memory: each side holds an exclusive open-file-description lock on its own
// byte of the file (the *LockByte constants below; locks may lie anywhere in the file), which the
// kernel drops when the holder dies. See shm/region.hpp for why that is sound.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace shmchan::layout {

inline constexpr std::uint64_t kMagic = 0x314E414843'4D4853ull;  // "SHMCHAN1" little-endian
inline constexpr std::uint32_t kAbiVersion = 7;  // 2: flush word, consumer wake line, resume tag; 3: record runs;
                                                 // 4: a gate link per consumer slot (header 8 KiB);
                                                 // 5: Control::removed holds kRemovedMark, not 1;
                                                 //    record ordinals per segment;
                                                 // 6: Control::framing_refusals, refused_framing;
                                                 // 7: ConsumerWake::credit_limit and the debloat
                                                 //    figures (throughput, target, segment rate);
                                                 //    RecordType at 640
inline constexpr std::size_t kCacheLine = 64;

// File names in the channel directory ($SHMCHAN_DIR or /dev/shm): a channel NAME is the file
// kChannelFilePrefix + NAME, a gate NAME the file kGateFilePrefix + NAME (a prefix of its own,
// so that channel tools never take a gate for a channel).
inline constexpr std::string_view kChannelFilePrefix = "shmchan-";
inline constexpr std::string_view kGateFilePrefix = "shmgate-";
inline constexpr std::uint32_t kHeaderBytes = 8192;
inline constexpr std::uint32_t kSegmentHeaderBytes = 64;
inline constexpr std::uint32_t kMaxConsumers = 8;  // consumer slots (broadcast uses > 1)

// Geometry limits, checked at creation and at every open.
inline constexpr std::uint32_t kSegmentSizeUnit = 4096;
inline constexpr std::uint32_t kMinSegmentSize = 4096;
inline constexpr std::uint32_t kMaxSegmentSize = 1u << 30;
inline constexpr std::uint32_t kMinSegmentCount = 1;
inline constexpr std::uint32_t kMaxSegmentCount = 1u << 20;
inline constexpr std::uint64_t kMaxTotalBytes = 1ull << 40;

inline constexpr std::uint32_t kDefaultSegmentSize = 32 * 1024;
inline constexpr std::uint32_t kDefaultSegmentCount = 16;
inline constexpr std::uint64_t kDefaultMaxRecordBytes = 64ull << 20;

// Lock bytes of the file (see shm/region.hpp). The creator holds kCreatingLockByte exclusively
// until the ready mark is stored; every attached handle holds kInUseLockByte shared for its
// lifetime (a remover takes it exclusively to prove nobody holds the channel); the producer holds
// kProducerLockByte exclusively; consumer slot i holds kConsumerLockByte + i exclusively.
inline constexpr std::uint64_t kCreatingLockByte = 4000;
inline constexpr std::uint64_t kInUseLockByte = 4001;
inline constexpr std::uint64_t kProducerLockByte = 4002;
inline constexpr std::uint64_t kConsumerLockByte = 4008;  // .. 4008 + kMaxConsumers - 1

enum class Framing : std::uint32_t {
    raw_bytes = 1,  // payloads are opaque bytes (shm-pipe without --lines)
    records = 2,    // payloads are framed records and events (the records layer)
};

// Identity flags (bit set, written by the creator only).
inline constexpr std::uint32_t kFlagChecksums = 1u << 0;  // every segment carries a CRC-32C

// Segment flags (written by the producer before publishing the segment).
inline constexpr std::uint32_t kSegmentContinuesRecord = 1u << 0;  // starts inside a record
inline constexpr std::uint32_t kSegmentRecordContinues = 1u << 1;  // last record goes on
inline constexpr std::uint32_t kSegmentHasChecksum = 1u << 2;
inline constexpr std::uint32_t kSegmentKnownFlags = 0x7;

// Shared fields are plain integers, so every struct here is trivially copyable; they are
// accessed atomically through std::atomic_ref with the named helpers below (the only way the
// code touches a field that the other side reads). Lock-free atomic_ref of an aligned 32- or
// 64-bit integer is a plain load/store (or a locked instruction) on that address: address-free.
using SharedU32 = std::uint32_t;
using SharedU64 = std::uint64_t;
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::required_alignment == 4);
static_assert(std::atomic_ref<std::uint64_t>::required_alignment == 8);

template <class T>
inline std::atomic_ref<T> atomic(T& field) noexcept {
    return std::atomic_ref<T>(field);
}
// Reads of shared fields take a const view of the header (an inspector maps it read-only); an
// atomic load through the cast never writes.
template <class T>
inline T load_acquire(const T& field) noexcept {
    return std::atomic_ref<T>(const_cast<T&>(field)).load(std::memory_order_acquire);
}
template <class T>
inline T load_relaxed(const T& field) noexcept {
    return std::atomic_ref<T>(const_cast<T&>(field)).load(std::memory_order_relaxed);
}
template <class T>
inline void store_release(T& field, T value) noexcept {
    std::atomic_ref<T>(field).store(value, std::memory_order_release);
}
template <class T>
inline void store_relaxed(T& field, T value) noexcept {
    std::atomic_ref<T>(field).store(value, std::memory_order_relaxed);
}
// A single-writer counter: load + store, no locked read-modify-write (rule 6).
template <class T>
inline void counter_add(T& field, T delta) noexcept {
    store_relaxed(field, load_relaxed(field) + delta);
}

// Line 0. Written by the creator before the ready mark; read-only afterwards.
struct alignas(kCacheLine) Identity {
    std::uint64_t magic;             // kMagic
    SharedU32 abi_version;           // the ready mark: stored last, with release (rule 1)
    std::uint32_t header_bytes;      // kHeaderBytes
    std::uint32_t segment_size;      // bytes per segment, SegmentHeader included
    std::uint32_t segment_count;     // segments in the ring
    std::uint32_t framing;           // Framing
    std::uint32_t flags;             // kFlag*
    std::uint64_t max_record_bytes;  // records layer: largest record accepted
    std::uint64_t total_bytes;       // header_bytes + segment_size * segment_count
    std::uint64_t created_realtime_ns;
    std::uint32_t consumer_slots;    // slots in use (1 = single consumer)
    std::uint32_t reserved0;
};

// The value a remover stores in Control::removed. A word that is neither 0 nor this is damage
// (a stray byte), reported as corrupt: never a reason to unlink a channel and its data.
inline constexpr std::uint32_t kRemovedMark = 0x444D4552u;  // "REMD" little-endian

// Line 1. Whole-channel control.
struct alignas(kCacheLine) Control {
    SharedU32 removed;              // kRemovedMark, stored by a remover before it unlinks the
                                    // file; openers that see it start over on a fresh file
                                    // (relaxed: the remover's lock on kInUseLockByte orders it,
                                    // see channel.cpp); 0 otherwise
    std::uint32_t creator_pid;      // display only
    std::uint64_t creator_start_time;
    // A process that opened the channel as a side nobody holds, asking for the other framing
    // (raw bytes / records), was refused: it stores the framing it asked for (relaxed), then adds
    // 1 here (release). A waiting side compares the count (acquire) with the one it saw last at
    // each liveness check, and ends its wait if the refused opener was its peer's side.
    SharedU32 framing_refusals;     // any refused opener; release / acquire
    SharedU32 refused_framing;      // the last refused opener's framing (1, 2); bit 8: as producer
    std::uint8_t reserved[40];
};

// The record type the creator declared (ChannelOptions::record_type), at 640. Written by the
// creator before the ready mark; read-only afterwards (rule 1 publishes it with the identity).
// Valid: length <= kMaxRecordTypeLength, name[0, length) printable ASCII without space
// (0x21..0x7e), every byte after it 0. length 0: no type declared.
inline constexpr std::size_t kMaxRecordTypeLength = 47;
struct alignas(kCacheLine) RecordType {
    std::uint32_t length;  // bytes of `name` in use; 0 = none declared
    std::uint32_t reserved0;
    char name[kMaxRecordTypeLength + 1];  // not NUL-terminated: `length` says where it ends
    std::uint8_t reserved[8];
};
inline constexpr bool valid_record_type_char(char c) noexcept { return c > 0x20 && c < 0x7f; }

// Producer-owned, read by consumers: the position line (hot: read by the consumer per segment).
struct alignas(kCacheLine) ProducerLine {
    SharedU64 published;      // segments published; release by producer (rule 2)
    SharedU32 end_of_stream;  // 1 once the stream ended; release by producer (rule 4)
    SharedU32 sleeping;       // producer sets 1 before parking; consumer exchanges to 0 (rule 5)
    SharedU64 buffer_timeout_ns;  // records layer: the producer's flush timeout, which bounds a
                                  // parked consumer's sleep (relaxed: a setting, not data)
    SharedU64 flushed;        // the flush word (rule 2b): make_tagged_word(position, committed
                              // bytes) of the segment being filled; release by producer on flush
    std::uint8_t reserved[32];
};

// Who holds a side: written by the side that attaches, read by everybody.
struct alignas(kCacheLine) Attachment {
    SharedU32 attached;         // 1 while attached; 0 after a clean detach (relaxed: display,
                                // liveness itself is the lock)
    std::int32_t pid;           // display only: the holder's pid in its own namespace
    std::uint64_t start_time;   // display only: /proc/PID/stat starttime
    SharedU64 attach_count;     // incremented by each attach (relaxed); 0 = never had one
    std::uint64_t attach_realtime_ns;
    std::uint8_t reserved[32];
};

// Producer counters, producer-written with relaxed stores (rule 6).
struct alignas(kCacheLine) ProducerCounters {
    SharedU64 bytes_written;
    SharedU64 records_written;
    SharedU64 segments_published;
    SharedU64 events_written;
    SharedU64 wake_syscalls;     // futex_wake calls made to wake the consumer
    SharedU64 parks;             // times the producer set `sleeping` to sleep
    SharedU64 backpressured_ns;  // time spent waiting for a free segment (added when a wait ends)
    SharedU64 last_publish_realtime_ns;
    SharedU64 waiting_since_ns;  // CLOCK_MONOTONIC start of the wait in progress, 0 if none, so
                                 // a tool can count a wait that has not ended yet
    std::uint8_t reserved[56];
};

// Consumer slot: position line, then attachment, counters and the wake line (ConsumerWake).
struct alignas(kCacheLine) ConsumerLine {
    SharedU64 released;        // segments released; release by consumer (rule 3)
    std::uint32_t reserved1;   // (ABI 1 had `sleeping` here: now ConsumerWake, its own line)
    std::uint32_t reserved0;
    SharedU64 resume_point;    // records layer: where a restarted consumer resumes, as a resume
                               // word (make_tagged_word: the segment's position tag and the payload
                               // offset of the first unfinished frame); consumer-written, relaxed,
                               // read on restart. Stored before `released`: see make_tagged_word
    SharedU64 in_flight_record_bytes;  // records layer: size of a record larger than the ring
                                       // whose first segments were released while it was read
                                       // (0 otherwise); a restarted consumer reports it lost
    std::uint8_t reserved[32];
};

struct alignas(kCacheLine) ConsumerCounters {
    SharedU64 bytes_read;
    SharedU64 records_read;
    SharedU64 segments_released;
    SharedU64 events_read;
    SharedU64 wake_syscalls;  // futex_wake calls made to wake the producer
    SharedU64 parks;          // times the consumer set `sleeping` to sleep
    SharedU64 idle_ns;        // time spent waiting for data (added when a wait ends)
    SharedU64 last_release_realtime_ns;
    SharedU64 waiting_since_ns;  // as ProducerCounters::waiting_since_ns
    std::uint8_t reserved[56];
};

// The priority lane: one slot for an event that overtakes the data queued in the ring (an
// unaligned checkpoint barrier). If the slot is free (acknowledged == sequence), the producer
// fills the event with its current write position (everything before it is overtaken), stores
// `sequence` + 1 (release), notifies, and then writes the event in band as usual (which may wait
// for room): the in-band copy marks where the overtaken data ends. A consumer that takes the
// event (acquire of `sequence`) acknowledges it (release of `acknowledged`).
struct alignas(kCacheLine) PriorityEvent {
    SharedU64 sequence;           // priority events published; producer, release after the fields
    std::uint32_t kind;           // FrameKind (barrier)
    std::uint32_t reserved0;
    std::uint64_t checkpoint_id;
    std::uint64_t segment;        // the producer's write position when it published the event:
    std::uint64_t offset;         // segment position and payload offset (informational)
    std::uint8_t reserved[24];
};
struct alignas(kCacheLine) PriorityLane {
    PriorityEvent event;          // producer-owned line
    SharedU64 acknowledged;       // consumer-owned (its own line): events taken; release
    std::uint8_t reserved0[56];
    std::uint8_t reserved[128];
};

// Gates: one consumer reading many channels and sleeping on one futex word (GateHeader below).
// While a gate consumes a channel's consumer slot, the slot's GateLink names the gate and the
// channel's bit in it; the producer then notifies that gate instead of the slot's own `sleeping`
// word. One link per slot: each consumer of a broadcast channel may be a different gate.
inline constexpr std::size_t kMaxGateNameLength = 100;
inline constexpr std::size_t kGateNameWords = 13;  // GateLink::gate_name: 104 bytes
struct alignas(kCacheLine) GateLink {
    SharedU32 linked;       // 1 while a gate consumes the slot; written by the gate's process
                            // (release, after the fields below), read by the producer (acquire)
    SharedU32 index;        // the channel's bit in the gate (checked < GateHeader::channel_count)
    SharedU64 generation;   // a seqlock: odd while the gate's process writes the name and index,
                            // a new even value once they are complete (release); starts at 0
    SharedU64 gate_name[kGateNameWords];  // the gate's name, NUL-terminated in these 104 bytes
                                          // (validated before use), a word at a time (relaxed)
    std::uint8_t reserved[8];
};

// The consumer's futex word, alone on its line: the producer loads it at every hand-over, and a
// line the consumer writes per record or segment (ConsumerLine) would then cross the cores twice
// per hand-over (the load pulls it over; the consumer's next store pulls it back and, stores
// leaving in order, holds up the consumer's later stores).
//
// Debloating (rule 7) lives on this line too: the consumer writes it every sample period (200 ms
// by default), and the producer loads `credit_limit` only when its cached release says it has
// reached its limit, beside the loads of `released` it makes then anyway.
struct alignas(kCacheLine) ConsumerWake {
    SharedU32 sleeping;        // consumer sets 1 before parking; producer exchanges to 0 (rule 5)
    SharedU32 credit_limit;    // debloating (rule 7): segments the producer may have in flight for
                               // this slot (published and not released, plus the one it fills);
                               // 0: no limit. Consumer-written, relaxed (a hint); the producer
                               // clamps it to [min(2, N), N] before use
    SharedU64 throughput_bytes_per_s;  // debloating: the consumer's measured throughput (EMA over
                                       // its busy time), display only; relaxed
    SharedU64 debloat_target_ns;       // debloating: the consumer's target time in flight, 0 when
                                       // off; display only; relaxed
    SharedU64 segments_per_ks;         // debloating: the consumer's measured rate in segments per
                                       // 1000 s (the limit's basis), display only; relaxed
    std::uint8_t reserved[32];
};

struct alignas(kCacheLine) ConsumerSlot {
    ConsumerLine position;
    Attachment attachment;
    ConsumerCounters counters;
    ConsumerWake wake;
};

struct alignas(kCacheLine) ChannelHeader {
    Identity identity;                         // 0
    Control control;                           // 64
    ProducerLine producer;                     // 128
    Attachment producer_attachment;            // 192
    ProducerCounters producer_counters;        // 256
    PriorityLane priority_lane;                // 384: events that overtake queued data
    RecordType record_type;                    // 640: the declared record type (ABI 7)
    std::uint8_t reserved_704[64];             // 704: ABI 3's one gate link was at 640..767
    ConsumerSlot consumers[kMaxConsumers];     // 768
    std::uint8_t reserved_locks[4096 - 768 - kMaxConsumers * sizeof(ConsumerSlot)];  // lock bytes at 4000
    GateLink gate_links[kMaxConsumers];        // 4096: slot i's link, set while a gate consumes slot i
    std::uint8_t reserved_tail[kHeaderBytes - 4096 - kMaxConsumers * sizeof(GateLink)];
};

struct alignas(kCacheLine) SegmentHeader {
    SharedU32 committed_bytes;   // payload bytes valid; release by producer (rule 2)
    std::uint32_t record_count;  // frames that start in this segment (records layer; a run is one)
    std::uint32_t flags;         // kSegment*
    std::uint32_t checksum;      // CRC-32C of payload[0, committed_bytes) when flagged
    SharedU64 sequence;          // the segment's position; release by producer (rule 2)
    std::uint32_t first_record_offset;  // records layer: where the first record starting here begins
    std::uint32_t producer_epoch;       // producer attach_count that wrote it
    // Records layer, read only by a producer that replaces a dead one (RecordWriter::
    // completed_records): records of the stream completed (last byte committed) before this
    // segment, stored when the producer takes it, before `sequence` (whose release orders it; a
    // successor trusts it only with sequence == its position) ...
    SharedU64 first_record_ordinal;
    // ... and through its end, stored before `published` is released for it. Two fields, not
    // one: with a ring of one segment, taking the next segment resets this header before its
    // sequence changes, and the count must outlive that reset (it does not touch this field).
    SharedU64 end_record_ordinal;
    std::uint8_t reserved[16];
};

// A gate file: `shmgate-NAME` beside the channels (a prefix of its own, so channel tools never
// take it for a channel). One page: identity, the consumer's futex word, and a bitmap with one
// bit per channel that producers set (fetch_or) after publishing. The consumer takes the bits
// with an exchange of each word. A bitmap rather than a queue: a producer killed in the middle
// of a fetch_or leaves nothing half done, where a killed producer of a queue could leave a
// claimed, never-filled cell that stalls the consumer.
inline constexpr std::uint64_t kGateMagic = 0x3145544147'4D4853ull;  // "SHMGATE1" little-endian
inline constexpr std::uint32_t kMaxGateChannels = 4096;
inline constexpr std::uint32_t kGateBytes = 4096;
// The gate's process holds this byte of the gate file exclusively while it lives (liveness).
inline constexpr std::uint64_t kGateLockByte = 1;
struct alignas(kCacheLine) GateHeader {
    std::uint64_t magic;            // kGateMagic
    SharedU32 abi_version;          // ready mark (rule 1), kAbiVersion
    std::uint32_t channel_count;    // bits in use, <= kMaxGateChannels
    std::uint64_t created_realtime_ns;
    std::uint8_t reserved0[40];
    // Consumer line.
    SharedU32 sleeping;             // the gate consumer sets 1 before parking; a producer
                                    // exchanges it to 0 and wakes it (rule 5)
    std::uint32_t reserved1;
    SharedU64 wake_syscalls;        // futex_wake calls made by producers (relaxed, display;
                                    // a read-modify-write: many writers)
    SharedU64 parks;                // consumer-written (relaxed)
    std::uint8_t reserved2[40];
    std::uint8_t reserved3[384];
    SharedU64 ready[kMaxGateChannels / 64];  // 512: bit i: channel i published since last taken
    SharedU64 priority[kMaxGateChannels / 64];  // 1024: bit i: channel i's priority lane has an
                                                // event (set like `ready`, taken by exchange)
    std::uint8_t reserved_tail[kGateBytes - 1024 - kMaxGateChannels / 8];
};

// Records framing (Framing::records). A segment's payload is a sequence of frames, each starting
// at an 8-byte-aligned offset: a FrameHeader, then `length` bytes. A data frame larger than the
// room left in its segment spans segments: the first holds the header and the first bytes (flag
// kSegmentRecordContinues), the next ones hold only continuation bytes from offset 0 (flag
// kSegmentContinuesRecord), and the first frame after the continuation starts at
// `first_record_offset` (the continuation's length rounded up to 8). Events never span.
struct FrameHeader {
    std::uint32_t length;      // payload bytes after this header (<= identity.max_record_bytes)
    std::uint16_t kind;        // FrameKind
    std::uint16_t event_type;  // user events: the user's type; 0 otherwise
};
enum class FrameKind : std::uint16_t {
    record = 0,         // user data
    end_of_stream = 1,  // no payload; the last frame of the stream
    barrier = 2,        // checkpoint barrier: payload is the 64-bit checkpoint id
    user_event = 3,     // a user event (watermark, ...): event_type and a small payload
    record_run = 4,     // `count` records of `record_size` bytes each (RunHeader), packed back to
                        // back without headers; never spans segments. A record of a run is
                        // positioned at the payload offset of its first byte.
};
// The payload of a record_run frame starts with this. The records start at the first 64-byte
// boundary of the segment's payload at or after the run header's end (run_data_offset: a long
// copy into a cache-line-aligned destination writes whole lines), so the frame's length is the
// run header, that padding, and record_size * count bytes.
struct RunHeader {
    std::uint32_t record_size;  // >= 1, <= identity.max_record_bytes
    std::uint32_t count;        // >= 1
};
inline constexpr std::uint32_t kRunHeaderBytes = 8;
inline constexpr std::uint32_t kFrameHeaderBytes = 8;
inline constexpr std::uint32_t kFrameAlignment = 8;
inline constexpr std::uint32_t kMaxEventPayload = 1024;
inline constexpr std::uint64_t kMaxRecordsFramingRecord = 0xFFFFFFFFull;  // length is 32 bits

inline constexpr std::uint64_t frame_align(std::uint64_t offset) {
    return (offset + kFrameAlignment - 1) & ~std::uint64_t{kFrameAlignment - 1};
}

// Where the records of a run frame at payload offset `frame_offset` start.
inline constexpr std::uint64_t run_data_offset(std::uint64_t frame_offset) {
    return (frame_offset + kFrameHeaderBytes + kRunHeaderBytes + 63) & ~std::uint64_t{63};
}
// Checks a record_run frame at `frame_offset` (its run header read once into `run` by the caller)
// against the frame's length and the bytes that follow the frame header (`room`). The arithmetic
// is 64-bit: no product of two 32-bit fields overflows.
inline constexpr bool valid_run(const RunHeader& run, std::uint64_t frame_offset, std::uint64_t frame_length,
                                std::uint64_t room, std::uint64_t max_record) {
    const std::uint64_t before_data = run_data_offset(frame_offset) - frame_offset - kFrameHeaderBytes;
    return run.record_size >= 1 && run.count >= 1 && run.record_size <= max_record &&
           frame_length == before_data + std::uint64_t{run.record_size} * run.count && frame_length <= room;
}

// A record_run frame at payload offset `frame_offset`, decoded: its run header (read once from
// `payload`, only if the frame and the `room` of bytes after the frame header hold it; zeroed
// otherwise, which valid_run refuses), where its records start and end. decode_run() says
// whether it is valid; the header is kept either way for an error message.
struct RunExtent {
    RunHeader header{};
    std::uint64_t data = 0, end = 0;
};
inline bool decode_run(const std::byte* payload, std::uint64_t frame_offset, std::uint64_t frame_length,
                       std::uint64_t room, std::uint64_t max_record, RunExtent& out) {
    out = RunExtent{};
    if (frame_length >= kRunHeaderBytes && room >= kRunHeaderBytes) {
        std::memcpy(&out.header, payload + frame_offset + kFrameHeaderBytes, sizeof out.header);
    }
    if (!valid_run(out.header, frame_offset, frame_length, room, max_record)) return false;
    out.data = run_data_offset(frame_offset);
    out.end = out.data + std::uint64_t{out.header.record_size} * out.header.count;
    return true;
}
// Where the frame after a run that ends at `run_end` starts, within `limit` bytes.
inline constexpr std::uint64_t past_run(std::uint64_t run_end, std::uint64_t limit) {
    const std::uint64_t next = frame_align(run_end);
    return next < limit ? next : limit;
}
// Where a segment's first frame starts: after the continuation bytes of a record from an earlier
// segment (kSegmentContinuesRecord), else at 0. Walking the frames of a segment is the frame
// decoder's (channels/detail/frame_decoder.hpp); this header only encodes and decodes one header.
inline constexpr std::uint64_t first_frame_offset(std::uint32_t segment_flags, std::uint32_t first_record_offset) {
    return (segment_flags & kSegmentContinuesRecord) ? first_record_offset : 0;
}

// --- The ABI, proven ----------------------------------------------------------------------------
#define SHMCHAN_ABI_STRUCT(T, size)                                                 \
    static_assert(std::is_standard_layout_v<T>, #T " must be standard layout");     \
    static_assert(std::is_trivially_copyable_v<T>, #T " must be trivially copyable"); \
    static_assert(sizeof(T) == (size), #T " changed size: bump kAbiVersion")

SHMCHAN_ABI_STRUCT(Identity, 64);
SHMCHAN_ABI_STRUCT(Control, 64);
SHMCHAN_ABI_STRUCT(RecordType, 64);
SHMCHAN_ABI_STRUCT(ProducerLine, 64);
SHMCHAN_ABI_STRUCT(Attachment, 64);
SHMCHAN_ABI_STRUCT(ProducerCounters, 128);
SHMCHAN_ABI_STRUCT(ConsumerLine, 64);
SHMCHAN_ABI_STRUCT(GateLink, 128);
SHMCHAN_ABI_STRUCT(PriorityEvent, 64);
SHMCHAN_ABI_STRUCT(PriorityLane, 256);
SHMCHAN_ABI_STRUCT(GateHeader, kGateBytes);
SHMCHAN_ABI_STRUCT(ConsumerCounters, 128);
SHMCHAN_ABI_STRUCT(ConsumerWake, 64);
SHMCHAN_ABI_STRUCT(ConsumerSlot, 320);
SHMCHAN_ABI_STRUCT(ChannelHeader, kHeaderBytes);
SHMCHAN_ABI_STRUCT(SegmentHeader, kSegmentHeaderBytes);
SHMCHAN_ABI_STRUCT(FrameHeader, kFrameHeaderBytes);
SHMCHAN_ABI_STRUCT(RunHeader, kRunHeaderBytes);
#undef SHMCHAN_ABI_STRUCT

static_assert(offsetof(RunHeader, count) == 4);
static_assert(offsetof(Identity, magic) == 0);
static_assert(offsetof(Identity, abi_version) == 8);
static_assert(offsetof(Identity, segment_size) == 16);
static_assert(offsetof(Identity, segment_count) == 20);
static_assert(offsetof(Identity, framing) == 24);
static_assert(offsetof(Identity, max_record_bytes) == 32);
static_assert(offsetof(Identity, total_bytes) == 40);
static_assert(offsetof(ChannelHeader, control) == 64);
static_assert(offsetof(ChannelHeader, producer) == 128);
static_assert(offsetof(ChannelHeader, producer_attachment) == 192);
static_assert(offsetof(ChannelHeader, producer_counters) == 256);
static_assert(offsetof(ChannelHeader, priority_lane) == 384);
static_assert(offsetof(ChannelHeader, gate_links) == 4096);
static_assert(offsetof(ChannelHeader, record_type) == 640);
static_assert(offsetof(RecordType, length) == 0);
static_assert(offsetof(RecordType, name) == 8);
static_assert(offsetof(PriorityEvent, sequence) == 0);
static_assert(offsetof(PriorityEvent, checkpoint_id) == 16);
static_assert(offsetof(PriorityEvent, segment) == 24);
static_assert(offsetof(PriorityEvent, offset) == 32);
static_assert(offsetof(PriorityLane, acknowledged) == 64);
static_assert(offsetof(GateLink, linked) == 0);
static_assert(offsetof(GateLink, index) == 4);
static_assert(offsetof(GateLink, generation) == 8);
static_assert(offsetof(GateLink, gate_name) == 16);
static_assert(sizeof(GateLink::gate_name) > kMaxGateNameLength);
static_assert(offsetof(GateHeader, abi_version) == 8);
static_assert(offsetof(GateHeader, channel_count) == 12);
static_assert(offsetof(GateHeader, sleeping) == 64);
static_assert(offsetof(GateHeader, ready) == 512);
static_assert(offsetof(GateHeader, priority) == 1024);
static_assert(offsetof(ChannelHeader, consumers) == 768);
static_assert(offsetof(Control, removed) == 0);
static_assert(offsetof(Control, framing_refusals) == 16);
static_assert(offsetof(Control, refused_framing) == 20);
static_assert(offsetof(ProducerLine, published) == 0);
static_assert(offsetof(ProducerLine, end_of_stream) == 8);
static_assert(offsetof(ProducerLine, sleeping) == 12);
static_assert(offsetof(ProducerLine, buffer_timeout_ns) == 16);
static_assert(offsetof(ProducerLine, flushed) == 24);
static_assert(offsetof(ConsumerLine, released) == 0);
static_assert(offsetof(ConsumerLine, resume_point) == 16);
static_assert(offsetof(ConsumerLine, in_flight_record_bytes) == 24);
static_assert(offsetof(ConsumerSlot, attachment) == 64);
static_assert(offsetof(ConsumerSlot, counters) == 128);
static_assert(offsetof(ConsumerSlot, wake) == 256);
static_assert(offsetof(ConsumerWake, sleeping) == 0);
static_assert(offsetof(ConsumerWake, credit_limit) == 4);
static_assert(offsetof(ConsumerWake, throughput_bytes_per_s) == 8);
static_assert(offsetof(ConsumerWake, debloat_target_ns) == 16);
static_assert(offsetof(ConsumerWake, segments_per_ks) == 24);
static_assert(offsetof(ProducerCounters, waiting_since_ns) == 64);
static_assert(offsetof(ConsumerCounters, waiting_since_ns) == 64);
static_assert(offsetof(SegmentHeader, committed_bytes) == 0);
static_assert(offsetof(SegmentHeader, sequence) == 16);
static_assert(offsetof(SegmentHeader, first_record_offset) == 24);
static_assert(offsetof(SegmentHeader, producer_epoch) == 28);
static_assert(offsetof(SegmentHeader, first_record_ordinal) == 32);
static_assert(offsetof(SegmentHeader, end_record_ordinal) == 40);
static_assert(offsetof(FrameHeader, length) == 0);
static_assert(offsetof(FrameHeader, kind) == 4);
static_assert(offsetof(FrameHeader, event_type) == 6);
static_assert((kMinSegmentSize - kSegmentHeaderBytes) % kFrameAlignment == 0,
              "payload capacity must be a multiple of the frame alignment");
static_assert(kConsumerLockByte + kMaxConsumers <= offsetof(ChannelHeader, gate_links));
static_assert(kCreatingLockByte >= 768 + kMaxConsumers * sizeof(ConsumerSlot),
              "lock bytes must not overlap fields (they would not conflict, but keep them apart)");

// A tagged word: (position mod 2^32) << 32 | a 32-bit value that belongs to that segment. Two
// words have this form: the flush word (value: committed bytes, rule 2b) and the resume word
// (value: payload offset). The consumer stores the resume word before `released`, so one that
// dies between the two leaves it one release ahead; the tag says which segment it belongs to,
// and the next consumer resumes there.
inline constexpr std::uint64_t make_tagged_word(std::uint64_t position, std::uint64_t value) noexcept {
    return (position & 0xffff'ffffull) << 32 | (value & 0xffff'ffffull);
}
// The position in [low, high] whose tag the word carries, and its value; false if none (a stale
// or corrupt word, or high < low). The tag is unambiguous while high - low < 2^32.
inline constexpr bool decode_tagged_word(std::uint64_t word, std::uint64_t low, std::uint64_t high,
                                         std::uint64_t& position, std::uint64_t& value) noexcept {
    const std::uint64_t ahead = ((word >> 32) - low) & 0xffff'ffffull;
    if (high < low || ahead > high - low) return false;
    position = low + ahead;
    value = word & 0xffff'ffffull;
    return true;
}

inline constexpr std::uint32_t segment_payload_capacity(std::uint32_t segment_size) {
    return segment_size - kSegmentHeaderBytes;
}

inline constexpr std::uint64_t region_bytes(std::uint32_t segment_size, std::uint32_t segment_count) {
    return std::uint64_t{kHeaderBytes} + std::uint64_t{segment_size} * segment_count;
}

}  // namespace shmchan::layout
