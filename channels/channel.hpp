// SPDX-License-Identifier: Apache-2.0
// shmchan channels: a single-producer single-consumer ring of fixed-size segments in shared
// memory, between two processes (or two threads) on one host.
//
//   #include "channels/channel.hpp"
//
//   // Process A                                     // Process B
//   auto producer = shmchan::Producer::attach("ticks");   auto consumer = shmchan::Consumer::attach("ticks");
//   shmchan::WritableSegment out;                    shmchan::ReadableSegment in;
//   while (more) {                                   while (consumer.read(in) == shmchan::Status::ok) {
//       if (producer.acquire(out) != Status::ok)         use(in.payload);       // a view into shared memory
//           break;                                       consumer.release();    // hands the segment back
//       size_t n = fill(out.payload);                }
//       producer.publish(n);                         // Status::end_of_stream: the producer finished
//   }                                                // Status::peer_died: it died first
//   producer.end_stream();
//
// Either side may come first: attach() creates the channel if it does not exist and opens it
// otherwise (exactly one process initializes it; the others wait for its ready mark). A segment
// is the unit of hand-over: the producer fills a free segment and publishes it; the consumer reads
// it in place and releases it. Free segments are the producer's credits: when all are published
// and unreleased, the producer waits (backpressure) and memory stays bounded.
//
// Calls that can wait come in three forms: try_* (never waits), the plain call (waits until it
// can proceed, the stream ends or the peer dies; with no peer yet, it waits for one) and *_for
// (waits at most a duration). They return a Status; only setup (attach, remove) throws
// shmchan::Error, which carries an error code and a message naming the channel and the cause.
//
// Handles are movable, not copyable, and not thread-safe: one thread drives a handle at a time.
// The layout they share is channels/layout.hpp (prose: docs/LAYOUT.md).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "layout.hpp"
#include "../shm/error.hpp"

namespace shmchan {

using layout::Framing;

// How a side waits for its peer (Aeron's idle strategies).
enum class WaitStrategy : std::uint8_t {
    spin,    // busy-poll with the pause instruction: lowest latency, one core busy while waiting
    hybrid,  // spin while spinning pays off (at most `spin_budget`), then sleep on a futex (the default)
    park,    // sleep on a futex at once: no busy CPU, a wake-up costs a futex round trip
};

const char* to_string(WaitStrategy strategy) noexcept;
std::optional<WaitStrategy> wait_strategy_from_string(std::string_view text) noexcept;

// What attach() does with a leftover: a channel that no live process holds and whose stream did
// not end cleanly (a side died, was killed, or detached before end of stream), found under the
// name when it opens. A channel held by a live process, or whose stream ended cleanly, or that
// nobody ever attached to, is never a leftover: it is opened as it is.
enum class OnLeftover : std::uint8_t {
    // Continue it (the default): a consumer reads every segment the last one did not release
    // (records it had read but not released come again: at least once), a producer continues the
    // stream after the last published segment (records: after the last committed record).
    resume,
    // Remove it (its unread data is dropped) and create a fresh channel under the name, with this
    // attach's options; discarded_leftover() then says what it held. A process opening the name
    // at the same moment ends up on the fresh channel too (the removal protocol of remove_channel).
    fresh,
};

struct ChannelOptions {
    // Geometry. Unset: the defaults when creating (16 x 32 KiB), the existing values when opening.
    // Set: used when creating; when opening, a different existing value is an error.
    std::optional<std::uint32_t> segment_size;   // bytes, a multiple of 4096, 4 KiB .. 1 GiB
    std::optional<std::uint32_t> segment_count;  // 1 .. 2^20
    Framing framing = Framing::raw_bytes;        // must match the existing channel's
    // Broadcast: consumer slots (1..8; unset: 1 when creating, the existing count when opening).
    // Every consumer reads every segment at its own pace; the producer is held by the slowest
    // slot, and a slot no consumer has attached to yet holds it too (nothing is lost).
    std::optional<std::uint32_t> consumers;
    std::optional<std::uint32_t> consumer_slot;  // attach to this slot (default: the first free)
    bool checksums = false;                      // records layer: CRC-32C per segment (creation)
    std::uint64_t max_record_bytes = layout::kDefaultMaxRecordBytes;  // records layer (creation)
    // Records layer, producer: a parked consumer is woken when a segment fills, on flush(), and
    // otherwise wakes itself at the latest after this long to read committed records; 0 wakes
    // it for every record (latency mode). Without checksums a spinning consumer sees every
    // record as soon as it is committed, whatever this is.
    std::chrono::nanoseconds buffer_timeout = std::chrono::milliseconds(100);

    WaitStrategy wait = WaitStrategy::hybrid;
    // Hybrid strategy: the longest spin before sleeping. A sleeping peer costs a futex wake,
    // ~35 us on the reference VM, so this budget decides the latency of bursty traffic; it costs
    // at most this much CPU per wait that ends in a sleep. Each handle adapts its spin within it
    // (detail/waiter.hpp, SpinBudget): a spin that runs out halves the next one, a spin that is
    // answered lets it grow back, so that on a machine whose cores are scarce the waits park at
    // once instead of holding a core the peer needs; a spin that loses its own core to another
    // task for a scheduler slice stops the handle's spinning for 100 ms.
    std::chrono::nanoseconds spin_budget = std::chrono::microseconds(50);
    // How often a waiting side re-checks the peer's liveness and the header (the futex sleep's
    // timeout, a backstop against a lost wake-up, and the bound on noticing a dead peer).
    std::chrono::nanoseconds liveness_interval = std::chrono::milliseconds(100);
    // attach(): how long to wait for a concurrent creator's ready mark.
    std::chrono::nanoseconds ready_timeout = std::chrono::seconds(1);

    // Files: mode of a created file (0600; 0660 to share with a group) and an extra owner
    // accepted on open (group sharing).
    mode_t mode = 0600;
    std::optional<uid_t> allowed_owner;

    // attach(): continue a leftover channel, or replace it with a fresh one (OnLeftover).
    OnLeftover on_leftover = OnLeftover::resume;

    // Debloating (Flink's buffer debloating; docs/LAYOUT.md "Debloating"), consumer: keep the data
    // in flight at about what this consumer takes `debloat_target` to read, so that a checkpoint
    // barrier waits about that long behind it whatever the ring's size. The consumer measures its
    // throughput once per `debloat_period` of its progress (a moving average over 20 samples) and
    // limits the producer's credits to that many segments (at least 2, at most the ring). Zero:
    // off (the default), the whole ring is credit. Ignored by a producer.
    std::chrono::nanoseconds debloat_target{0};
    std::chrono::nanoseconds debloat_period = std::chrono::milliseconds(200);

    // The type of the records the channel carries, as a name the user declares ("trade.v1"):
    // 1..47 bytes of printable ASCII without space; empty: none declared. The creator stores it
    // in the header, where it stays for the channel's life. An opener that declares a type must
    // declare the same one (else attach throws Error(Errc::type_mismatch) naming both); an
    // opener that declares none adopts the channel's. The type is fixed at creation: declare it
    // on every side that may create the channel. Typed calls check it (records.hpp,
    // record_type_name).
    std::string record_type;
};

enum class [[nodiscard]] Status : std::uint8_t {
    ok,
    would_block,    // try_*: nothing to read, or no free segment
    timed_out,      // *_for: the duration passed
    end_of_stream,  // consumer: the producer ended the stream and every segment was read
    peer_died,      // the peer died or detached without ending the stream; waits return this
                    // at once until a new peer attaches (everything published before is still read)
    corrupt,        // a shared value failed validation: see last_error()
    invalid_call,   // misuse: publish without acquire, a length over the capacity, after end
    interrupted,    // a wait ended because a signal handler ran while it slept (EINTR): act on
                    // the signal, or call again
    // Records layer:
    event,          // read_value(): the next frame is an event (RecordReader::last())
    record_lost,    // a restarted consumer: a record larger than the ring was in flight when
                    // the previous consumer died; its size is in the Record (never half given)
    decode_error,   // read_value(): the record does not decode as the type asked for
    too_large,      // write: the record exceeds the channel's max record size (nothing written)
    incompatible,   // a would-be peer was refused because it asked for the other framing (raw
                    // bytes / records): it will not come. Reported once per refusal; see last_error()
};

const char* to_string(Status status) noexcept;

// What the producer writes into: the payload of a free segment.
struct WritableSegment {
    std::span<std::byte> payload;  // segment_size - 64 bytes
    std::uint64_t sequence = 0;    // the segment's position in the stream
    // Bytes of this segment already committed (and possibly read): non-zero only for a segment
    // that a previous producer of this channel filled partly before it died. Write after them.
    std::uint32_t committed = 0;
    std::uint32_t record_count = 0;  // records layer: frames already committed in it
    std::uint32_t flags = 0;         // records layer: flags already set on it
    std::uint32_t first_record_offset = 0;
};

// What the consumer reads: the committed payload of a published segment. A view into shared
// memory, valid until release() or the next read. The bytes are the producer's: a buggy or
// hostile producer may still change them, so parse them as untrusted input.
struct ReadableSegment {
    std::span<const std::byte> payload;
    std::uint64_t sequence = 0;
    std::uint32_t flags = 0;         // layout::kSegment*
    std::uint32_t record_count = 0;  // records layer
    std::uint32_t checksum = 0;
    std::uint32_t first_record_offset = 0;
};

// A snapshot of the header, for tools and tests (read with relaxed loads; see inspect()).
struct ChannelInfo {
    std::string name, path;
    std::uint32_t abi_version = 0, segment_size = 0, segment_count = 0, flags = 0;
    Framing framing = Framing::raw_bytes;
    std::uint64_t max_record_bytes = 0, total_bytes = 0, created_realtime_ns = 0;
    std::uint64_t published = 0, released = 0;  // released: the slowest consumer slot's
    // Records layer (layout.hpp): the producer's buffer timeout, its flush word (rule 2b) and
    // consumer slot 0's resume word and in-flight size, as stored (decode with the layout's
    // helpers: the words carry 32-bit position tags).
    std::uint64_t buffer_timeout_ns = 0, flush_word = 0, resume_word = 0, in_flight_record_bytes = 0;
    std::uint32_t consumer_slots = 0;
    bool end_of_stream = false, removed = false;
    // Openers refused for asking the other framing (layout.hpp Control), and the last one's
    // framing (bit 8: as the producer).
    std::uint32_t framing_refusals = 0, refused_framing = 0;
    std::string record_type;       // the declared record type; empty: none
    std::uint64_t file_bytes = 0;  // bytes mapped (the file's size when opened)
    bool creator_alive = false;    // a live process is still creating it (abi_version 0)
    bool in_use = false;           // some handle holds it (the in-use lock byte)
    struct Side {
        bool attached = false;      // attached and not cleanly detached
        bool alive = false;         // its lock is held (the authority)
        std::int32_t pid = 0;
        std::uint64_t start_time = 0;
        std::uint64_t attach_count = 0;
        bool sleeping = false;
    } producer, consumer;
    struct Counters {
        std::uint64_t bytes = 0, records = 0, segments = 0, events = 0, wake_syscalls = 0,
                      parks = 0, waited_ns = 0, last_realtime_ns = 0;
        std::uint64_t waiting_since_ns = 0;  // CLOCK_MONOTONIC start of a wait in progress, or 0
    } producer_counters, consumer_counters;  // waited_ns: back-pressured / idle, finished waits
    // Debloating (layout.hpp rule 7), as the consumer slots published it: the limit the producer
    // obeys (the smallest non-zero credit limit of the slots; 0: none) and, of the slot that set
    // it (slot 0 if none), its throughput and target.
    std::uint32_t credit_limit = 0;
    std::uint64_t throughput_bytes_per_s = 0, debloat_target_ns = 0, segments_per_ks = 0;
};

namespace detail {
class ProducerSide;
class ConsumerSide;
class ProducerHooks;
class ConsumerHooks;
}  // namespace detail

class Producer {
public:
    // Creates or opens channel `name` and attaches as its producer. Throws Error if the name is
    // invalid, the file is unsafe or corrupt, the options disagree with the existing channel, a
    // live producer is attached already, or the stream has ended.
    static Producer attach(std::string_view name, const ChannelOptions& options = {});

    Producer(Producer&&) noexcept;
    Producer& operator=(Producer&&) noexcept;
    ~Producer();  // detaches (without ending the stream: the consumer sees peer_died)

    // A free segment to fill. Only one segment is held at a time: acquire, fill, publish.
    Status try_acquire(WritableSegment& out);
    Status acquire(WritableSegment& out);
    Status acquire_for(WritableSegment& out, std::chrono::nanoseconds timeout);

    // Makes the first `bytes` of the acquired payload visible without handing the segment over
    // (a consumer may read them before the segment is published). Cheap: one release store.
    Status commit(std::uint32_t bytes);
    // Hands the acquired segment to the consumer with `bytes` of payload, waking it if it sleeps.
    Status publish(std::uint32_t bytes);

    // Ends the stream (after publishing a held segment, if any) and wakes the consumer.
    Status end_stream();

    // After peer_died (waits return it at once until a new consumer attaches), or before the
    // first consumer: waits until a live consumer holds every slot, for at most `timeout`
    // (negative: no limit). ok: it is there (waits no longer report the old death); timed_out;
    // interrupted: a signal handler ran while it slept; peer_died: a consumer attached and went
    // away again before it was seen alive; corrupt: see last_error(). Parks on a futex (an
    // attaching consumer wakes it): no busy CPU.
    Status wait_for_peer(std::chrono::nanoseconds timeout);

    bool consumer_alive() const;  // a syscall: not for every record
    std::uint32_t payload_capacity() const noexcept;
    std::uint32_t segment_count() const noexcept;
    std::uint32_t channel_flags() const noexcept;  // layout::kFlag* of the channel
    std::uint64_t max_record_bytes() const noexcept;
    const std::string& record_type() const noexcept;  // the channel's declared type ("": none)
    const std::string& name() const noexcept;
    const std::string& last_error() const noexcept;
    // Non-empty when attach() removed a leftover under the name (OnLeftover::fresh): what it held.
    const std::string& discarded_leftover() const noexcept;
    ChannelInfo info() const;

private:
    friend class detail::ProducerHooks;  // the records layer's access (channels/detail/hooks.hpp)
    explicit Producer(std::unique_ptr<detail::ProducerSide> side);
    std::unique_ptr<detail::ProducerSide> side_;
};

class Consumer {
public:
    // Creates or opens channel `name` and attaches as its consumer; reading resumes at the first
    // segment that the previous consumer (if any) had not released.
    static Consumer attach(std::string_view name, const ChannelOptions& options = {});

    Consumer(Consumer&&) noexcept;
    Consumer& operator=(Consumer&&) noexcept;
    ~Consumer();

    // The next published segment. A segment read earlier and not released is released first.
    Status try_read(ReadableSegment& out);
    Status read(ReadableSegment& out);
    Status read_for(ReadableSegment& out, std::chrono::nanoseconds timeout);
    // Hands the segment of the last read back to the producer (a credit), waking it if it sleeps.
    Status release();

    // After peer_died, or before the first producer: waits until a live producer is attached,
    // for at most `timeout` (negative: no limit); as Producer::wait_for_peer. The new producer
    // resumes the stream where the old one stopped. end_of_stream: the stream has ended, so no
    // producer can attach again (what is still unread can be read).
    Status wait_for_peer(std::chrono::nanoseconds timeout);

    bool producer_alive() const;  // a syscall: not for every record

    // Removes the channel's file now (the mappings stay valid). For a consumer done with the
    // stream; a process opening the name afterwards gets a fresh channel.
    void remove_channel();
    std::uint32_t payload_capacity() const noexcept;
    std::uint32_t segment_count() const noexcept;
    std::uint32_t channel_flags() const noexcept;  // layout::kFlag* of the channel
    std::uint64_t max_record_bytes() const noexcept;
    const std::string& record_type() const noexcept;  // the channel's declared type ("": none)
    const std::string& name() const noexcept;
    const std::string& last_error() const noexcept;
    // Non-empty when attach() removed a leftover under the name (OnLeftover::fresh): what it held.
    const std::string& discarded_leftover() const noexcept;
    ChannelInfo info() const;

private:
    friend class detail::ConsumerHooks;  // the records layer's and gates' access (detail/hooks.hpp)
    explicit Consumer(std::unique_ptr<detail::ConsumerSide> side);
    std::unique_ptr<detail::ConsumerSide> side_;
};

// Reads a channel's header without attaching (read-only mapping, no locks taken, nobody woken).
// A channel still being created by a live process gives abi_version 0. Throws Error if the file
// is missing, unsafe or fails validation, or was left half-created (Errc::not_ready).
ChannelInfo inspect(std::string_view name, const ChannelOptions& options = {});

enum class RemoveResult { removed, not_found, in_use };
// Removes channel `name` unless a live process holds it (`force` removes it anyway; attached
// processes keep their mappings, and later openers get a fresh channel).
RemoveResult remove_channel(std::string_view name, bool force = false);

}  // namespace shmchan
