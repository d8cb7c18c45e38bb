// SPDX-License-Identifier: Apache-2.0
// Topologies: an input gate reads many channels [Flink's InputGate], an output partition writes
// many [ResultPartition], with checkpoint barriers aligned across a gate's channels and
// watermarks combined as their minimum.
//
//   // consumer process: one gate over three channels
//   auto gate = shmchan::InputGate::attach("reducer", {"map0", "map1", "map2"});
//   shmchan::Record record;
//   std::uint32_t channel;
//   while (gate.read(record, channel) == shmchan::Status::ok) {
//       if (record.kind == shmchan::RecordKind::barrier) snapshot(record.checkpoint_id);  // aligned
//       else consume(channel, record.bytes);
//   }                                                  // end_of_stream once every channel ended
//
//   // producer process: one partition over the same channels, by key
//   auto partition = shmchan::OutputPartition::attach({"map0", "map1", "map2"}, shmchan::PartitionMode::by_key);
//   partition.write_keyed(key, record);                // blocks only if that channel is full
//   partition.write_barrier(42);                       // to every channel
//   partition.end_stream();
//
// How the gate waits: it sleeps on one futex word in its gate file (`shmgate-NAME`). A producer of
// any of its channels, after publishing a segment (or on flush, or per record with a zero buffer
// timeout), sets its channel's bit in the gate's bitmap and wakes the gate only if it sleeps. The
// gate takes the bits with one exchange per 64 channels, so finding the channels with data never
// scans them all, and reads the ready channels round-robin, one record each per turn, so a busy
// channel cannot starve the others. A parked gate also wakes at the producers' buffer timeout (and
// its liveness interval) to read records committed without a notification and to check that its
// producers live.
//
// Barriers (aligned mode, the default): once barrier n arrives on a channel, that channel is held
// until barrier n has arrived on every channel that has not ended; then the gate delivers barrier
// n once and releases them. A newer barrier arriving before the older one completed aborts the
// older (as Flink does). Watermarks: user events of type `watermark_event_type` carrying a 64-bit
// value; the gate delivers the minimum over its live channels whenever that minimum rises.
//
// Broadcast: a channel created with ChannelOptions::consumers = N is one ring that N consumers
// read, each in its own slot at its own pace; every record is serialized once, and the producer
// is held by the slowest slot (Aeron's tethered subscribers). Write it with a plain RecordWriter;
// each consumer attaches a RecordReader (or a gate). OutputPartition's broadcast mode instead
// writes a copy to each of several channels (for consumers that need separate channels).
//
// Priority barriers (write_barrier(id, true)) also travel in each channel's priority lane: an
// unaligned gate delivers the barrier as soon as one lane has it, and every channel's queued
// records ahead of its in-band copy come flagged in_flight_of, its own included.
// Each slot has its own gate link, so each consumer of a broadcast channel may be a different
// gate.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "records.hpp"

namespace shmchan {

struct GateOptions {
    ChannelOptions channel;            // for every channel (framing is records)
    bool align_barriers = true;        // false: barriers are delivered as they arrive, per channel
    // Unaligned checkpoints: barrier n is delivered as soon as it arrives on one channel; the
    // records still queued ahead of barrier n on the other channels are delivered afterwards
    // flagged Record::in_flight_of = n (persist them with the checkpoint's state), and a record of
    // kind in_flight_end says when barrier n has arrived everywhere.
    bool unaligned = false;
    // Aligned mode: an alignment that has not completed after this long switches to unaligned
    // for that checkpoint (Flink's alignment timeout). Zero: never.
    std::chrono::nanoseconds alignment_timeout{0};
    std::uint16_t watermark_event_type = 1;  // user events of this type combine as a minimum
    bool combine_watermarks = true;
};

class InputGate {
public:
    // Creates the gate file `shmgate-NAME` (replacing a stale one) and attaches as the consumer of
    // every channel (creating those that do not exist). Throws Error (bad name, more than 4096
    // channels, a live gate of that name, or an attach error of a channel).
    static InputGate attach(std::string_view name, const std::vector<std::string>& channels,
                            const GateOptions& options = {});

    InputGate(InputGate&&) noexcept;
    InputGate& operator=(InputGate&&) noexcept;
    ~InputGate();  // unlinks the channels and removes the gate file

    // The next record or event of any channel; `channel` is its index. ok; end_of_stream once
    // every channel ended; peer_died (once per death: `channel` names it; reading the others goes
    // on); record_lost; corrupt (last_error()); would_block / timed_out.
    Status read(Record& out, std::uint32_t& channel);
    Status try_read(Record& out, std::uint32_t& channel);
    Status read_for(Record& out, std::uint32_t& channel, std::chrono::nanoseconds timeout);

    // For event loops (epoll, Boost.Asio, libuv): a file descriptor (an eventfd) that becomes
    // readable when the gate may have something to read: call try_read until it returns
    // would_block, then wait on the descriptor again (reading it is optional). A watcher thread
    // in this process sleeps on the gate's futex word for that, so the producers' path is the
    // same as without it. It also becomes readable at each rescan interval (buffer timeout,
    // liveness). Owned by the gate; do not mix with blocking read()/read_for() on the gate.
    int event_fd();

    std::uint32_t size() const noexcept;
    bool ended(std::uint32_t channel) const;
    RecordReader& channel(std::uint32_t index);
    const std::string& last_error() const noexcept;
    // Figures: futex wakes the producers made for this gate, and the gate's parks.
    std::uint64_t wake_syscalls() const noexcept;
    std::uint64_t parks() const noexcept;

private:
    struct State;
    explicit InputGate(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

enum class PartitionMode : std::uint8_t {
    by_key,       // write_keyed(): the channel is a hash of the key
    round_robin,  // write(): channels in turn
    broadcast,    // write(): every channel gets a copy (one ring for all: ChannelOptions::consumers)
};

class OutputPartition {
public:
    static OutputPartition attach(const std::vector<std::string>& channels, PartitionMode mode,
                                  const ChannelOptions& options = {});

    OutputPartition(OutputPartition&&) noexcept;
    OutputPartition& operator=(OutputPartition&&) noexcept;
    ~OutputPartition();

    // by_key: the record goes to channel hash(key) % size(); only that channel's backpressure
    // can block the call.
    Status write_keyed(std::span<const std::byte> key, std::span<const std::byte> record);
    Status write_keyed(std::string_view key, std::span<const std::byte> record) {
        return write_keyed(std::as_bytes(std::span(key.data(), key.size())), record);
    }
    // round_robin: the next channel; broadcast: every channel.
    Status write(std::span<const std::byte> record);
    // Events go to every channel, in order with the records (priority: see RecordWriter).
    Status write_barrier(std::uint64_t checkpoint_id, bool priority = false);
    Status write_watermark(std::uint64_t watermark, std::uint16_t event_type = 1);
    Status flush();
    Status end_stream();

    std::uint32_t size() const noexcept;
    std::uint32_t channel_for_key(std::span<const std::byte> key) const noexcept;
    RecordWriter& channel(std::uint32_t index);
    const std::string& last_error() const noexcept;

private:
    struct State;
    explicit OutputPartition(std::unique_ptr<State> state);
    std::unique_ptr<State> state_;
};

}  // namespace shmchan
