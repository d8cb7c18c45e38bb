// SPDX-License-Identifier: Apache-2.0
// Input gates and output partitions (see channels/topology.hpp).
//
// Shared-memory protocol of a gate (channels/layout.hpp: GateHeader, GateLink):
//  - The gate's process creates `shmgate-NAME`, stores its ready mark last (release), holds byte 1
//    of the file locked for its life, and links each channel through the link of the consumer
//    slot it holds there (ChannelHeader::gate_links[slot]: fields, then `linked` with release).
//  - A producer of a linked channel, after its release of `published` (or of committed bytes),
//    sets its bit with a seq_cst fetch_or, fences, and wakes the gate if its `sleeping` word is 1
//    (exchange to 0 first: one wake per sleep).
//  - The gate takes a word of bits with a seq_cst exchange (acquire: it synchronizes with the
//    fetch_or of every bit it takes, so the publications before them are visible), then reads
//    those channels. Before sleeping it stores 1 to `sleeping`, fences, and re-checks the bitmap
//    (rule 5, channels/detail/waiter.hpp). A record committed without a notification is found at the periodic rescan.
#include "channels/topology.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <thread>

#include "channels/detail/hooks.hpp"
#include "channels/detail/waiter.hpp"
#include "shm/process.hpp"
#include "shm/region.hpp"

namespace shmchan {

namespace L = layout;

namespace {

constexpr std::uint64_t kNoDeadline = std::numeric_limits<std::uint64_t>::max();

std::uint64_t hash_bytes(std::span<const std::byte> bytes) noexcept {
    std::uint64_t hash = 1469598103934665603ull;  // FNV-1a, then a finalizer for the low bits
    for (std::byte b : bytes) {
        hash ^= static_cast<std::uint8_t>(b);
        hash *= 1099511628211ull;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdull;
    hash ^= hash >> 33;
    return hash;
}

}  // namespace

// ---- InputGate -------------------------------------------------------------------------------------

struct InputGate::State {
    std::string name;
    GateOptions options;
    shm::Region region;
    L::GateHeader* gate = nullptr;
    std::vector<RecordReader> readers;
    std::uint32_t count = 0;

    std::vector<std::uint64_t> available;  // channels worth a try (consumer-private bitmap)
    std::vector<std::uint8_t> is_ended, blocked;
    std::vector<std::uint64_t> dead_reported;  // producer attach count already reported dead
    std::uint32_t ended_count = 0;
    std::uint32_t cursor = 0;

    bool aligning = false;
    std::uint64_t checkpoint = 0;
    std::uint32_t arrived = 0;
    std::uint64_t alignment_deadline = 0;  // aligned mode with a timeout: when to switch

    // Unaligned checkpoints: `overtaken` was delivered; channels with in_flight set still have
    // records queued ahead of its barrier.
    bool overtaking = false;
    std::uint64_t overtaken = 0;
    std::uint64_t last_started = 0;  // newest checkpoint delivered or being aligned
    std::vector<std::uint8_t> in_flight;
    std::uint32_t in_flight_open = 0;

    std::vector<std::uint64_t> watermark;
    std::vector<std::uint8_t> has_watermark;
    bool emitted_watermark = false;
    std::uint64_t last_watermark = 0;
    std::byte watermark_payload[8]{};

    std::uint64_t next_rescan = 0;
    std::uint64_t rescan_interval = 0;
    // Reads since the producers' bits were last taken: a channel that always has data would
    // otherwise keep the gate from ever looking at them (kLookEvery below).
    std::uint32_t reads_since_look = 0;
    std::string last_error;

    // event_fd(): the watcher thread signals `event` when the gate may have data, then waits to be
    // re-armed by a try_read that found nothing (process-local words, private futexes).
    int event = -1;
    std::thread watcher;
    std::atomic<std::uint32_t> armed{1};
    std::atomic<bool> stopping{false};

    ~State() { stop_watcher(); }

    void stop_watcher() {
        if (!watcher.joinable()) return;
        stopping.store(true);
        armed.store(1);
        armed.notify_all();
        detail::wake_all(gate->sleeping);  // wake it from the gate's word too
        watcher.join();
        ::close(event);
        event = -1;
    }

    void watch() {
        const std::uint64_t one = 1;
        while (!stopping.load()) {
            armed.wait(0);  // until a try_read found nothing (or we stop)
            if (stopping.load()) break;
            // Rule 5 on the gate's word, exactly as read() parks: producers see no difference.
            detail::park(gate->sleeping, gate->parks, [&] { return shared_pending(); }, detail::kWaitForever,
                         rescan_interval);
            if (stopping.load()) break;
            armed.store(0);
            [[maybe_unused]] ssize_t written = ::write(event, &one, sizeof one);
        }
    }

    void mark(std::uint32_t i) { available[i / 64] |= std::uint64_t{1} << (i % 64); }
    void unmark(std::uint32_t i) { available[i / 64] &= ~(std::uint64_t{1} << (i % 64)); }

    // The next channel in the local set at or after the cursor, wrapping (round-robin).
    bool pick(std::uint32_t& out) {
        const std::uint32_t words = static_cast<std::uint32_t>(available.size());
        const std::uint32_t first_word = cursor / 64, first_bit = cursor % 64;
        auto found = [&](std::uint32_t word, std::uint64_t bits) {
            std::uint32_t i = word * 64 + static_cast<std::uint32_t>(__builtin_ctzll(bits));
            if (i >= count) {  // a bit past the channels: a hostile producer's; drop it
                available[word] &= (std::uint64_t{1} << (count % 64)) - 1;
                return false;
            }
            out = i;
            return true;
        };
        std::uint64_t bits = available[first_word] & (~std::uint64_t{0} << first_bit);
        if (bits && found(first_word, bits)) return true;
        for (std::uint32_t k = 1; k < words; ++k) {
            std::uint32_t word = (first_word + k) % words;
            if (available[word] && found(word, available[word])) return true;
        }
        bits = first_bit ? available[first_word] & ((std::uint64_t{1} << first_bit) - 1) : 0;
        return bits && found(first_word, bits);
    }

    // Priority lanes announced in the gate's priority bitmap: a barrier that overtakes queued
    // data. Unaligned mode delivers it at once (true: `id` set) with every channel's queued
    // records in flight; otherwise the lane is only acknowledged (the in-band copy counts).
    bool take_priority(std::uint64_t& id) {
        const std::uint32_t words = (count + 63) / 64;
        bool deliver = false;
        for (std::uint32_t w = 0; w < words; ++w) {
            if (L::load_relaxed(gate->priority[w]) == 0) continue;
            std::uint64_t bits = L::atomic(gate->priority[w]).exchange(0, std::memory_order_seq_cst);
            while (bits) {
                std::uint32_t i = w * 64 + static_cast<std::uint32_t>(__builtin_ctzll(bits));
                bits &= bits - 1;
                std::uint64_t checkpoint_id = 0;
                if (i >= count || !detail::ConsumerHooks(readers[i].consumer()).take_priority(checkpoint_id)) continue;
                if (!options.unaligned || is_ended[i] || checkpoint_id <= last_started || deliver) continue;
                if (overtaking) std::fill(in_flight.begin(), in_flight.end(), 0);  // older one abandoned
                for (std::uint32_t j = 0; j < count; ++j) in_flight[j] = !is_ended[j];
                overtake(checkpoint_id);
                id = checkpoint_id;
                deliver = true;
            }
        }
        return deliver;
    }

    // Takes the producers' bits (one exchange per 64 channels). True if any was set.
    bool take_shared() {
        bool any = false;
        const std::uint32_t words = (count + 63) / 64;
        for (std::uint32_t w = 0; w < words; ++w) {
            if (L::load_relaxed(gate->ready[w]) == 0) continue;
            std::uint64_t bits = L::atomic(gate->ready[w]).exchange(0, std::memory_order_seq_cst);
            if (w == words - 1 && count % 64) bits &= (std::uint64_t{1} << (count % 64)) - 1;
            if (bits) {
                available[w] |= bits;
                any = true;
            }
        }
        return any;
    }

    bool shared_pending() const {
        const std::uint32_t words = (count + 63) / 64;
        for (std::uint32_t w = 0; w < words; ++w) {
            if (L::atomic(gate->ready[w]).load(std::memory_order_seq_cst) != 0) return true;
        }
        return false;
    }

    void mark_all_open() {
        for (std::uint32_t i = 0; i < count; ++i) {
            if (!is_ended[i] && !blocked[i]) mark(i);
        }
    }

    // A producer that attached once and whose lock is free, not reported for that attach yet.
    bool find_dead_producer(std::uint32_t& channel) {
        for (std::uint32_t i = 0; i < count; ++i) {
            if (is_ended[i]) continue;
            Consumer& consumer = readers[i].consumer();
            // The attach count before the lock test: a producer takes its lock before it counts
            // itself, so one that attaches in between is seen alive or not counted (never taken
            // for a dead one).
            const std::uint64_t attaches = consumer.info().producer.attach_count;
            if (consumer.producer_alive()) continue;
            // The end of the stream after it: a producer that ended its stream and left is not
            // dead, its end is still to be read (the channel may be held by barrier alignment).
            if (consumer.info().end_of_stream) continue;
            if (attaches == 0 || attaches == dead_reported[i]) continue;
            dead_reported[i] = attaches;
            channel = i;
            return true;
        }
        return false;
    }

    void unblock_all() {
        for (std::uint32_t i = 0; i < count; ++i) blocked[i] = 0;
        arrived = 0;
        aligning = false;
        alignment_deadline = 0;
        mark_all_open();
    }

    void barrier_record(Record& out, RecordKind kind, std::uint64_t id) {
        out = Record{};
        out.kind = kind;
        out.checkpoint_id = id;
    }

    enum class Action { none, deliver_barrier, deliver_in_flight_end };

    // Starts an unaligned checkpoint `id` whose barrier arrived on the channels that are not
    // in_flight: the others' queued records are in flight until their barrier arrives.
    Action overtake(std::uint64_t id) {
        overtaking = true;
        overtaken = id;
        last_started = id;
        in_flight_open = 0;
        for (std::uint32_t j = 0; j < count; ++j) in_flight_open += in_flight[j];
        if (in_flight_open == 0) overtaking = false;
        return Action::deliver_barrier;
    }

    Action close_in_flight(std::uint32_t channel) {
        if (!overtaking || !in_flight[channel]) return Action::none;
        in_flight[channel] = 0;
        if (--in_flight_open > 0) return Action::none;
        overtaking = false;
        return Action::deliver_in_flight_end;
    }

    Action on_barrier(std::uint32_t channel, std::uint64_t id) {
        if (!options.align_barriers && !options.unaligned) return Action::deliver_barrier;
        if (overtaking) {
            if (id == overtaken) return close_in_flight(channel);
            if (id < overtaken) return Action::none;
            // A newer checkpoint before the older one's in-flight data completed: the older one
            // is abandoned (as a newer barrier aborts an older alignment).
            std::fill(in_flight.begin(), in_flight.end(), 0);
            overtaking = false;
        }
        if (id <= last_started && !(aligning && id == checkpoint)) return Action::none;  // stale
        if (options.unaligned) {
            for (std::uint32_t j = 0; j < count; ++j) in_flight[j] = j != channel && !is_ended[j];
            return overtake(id);
        }
        // Aligned.
        if (aligning && id < checkpoint) return Action::none;  // of an aborted checkpoint
        if (!aligning || id > checkpoint) {
            if (aligning) unblock_all();  // a newer checkpoint aborts the older one
            aligning = true;
            checkpoint = id;
            last_started = id;
            arrived = 0;
            alignment_deadline = options.alignment_timeout.count() > 0
                                     ? shm::monotonic_ns() + static_cast<std::uint64_t>(options.alignment_timeout.count())
                                     : 0;
        }
        if (!blocked[channel]) {
            blocked[channel] = 1;
            ++arrived;
            unmark(channel);
        }
        return alignment_complete() ? Action::deliver_barrier : Action::none;
    }

    // Aligned mode: the alignment timed out; checkpoint `checkpoint` goes on unaligned.
    Action alignment_timed_out() {
        for (std::uint32_t j = 0; j < count; ++j) in_flight[j] = !blocked[j] && !is_ended[j];
        unblock_all();
        return overtake(checkpoint);
    }

    bool alignment_complete() {
        if (!aligning || arrived + ended_count < count) return false;
        unblock_all();
        return true;
    }

    // Watermarks: true when the minimum over the live channels rose (payload set).
    bool on_watermark(std::uint32_t channel, std::span<const std::byte> bytes) {
        std::uint64_t value = 0;
        std::memcpy(&value, bytes.data(), sizeof value);
        watermark[channel] = has_watermark[channel] ? std::max(watermark[channel], value) : value;
        has_watermark[channel] = 1;
        std::uint64_t minimum = std::numeric_limits<std::uint64_t>::max();
        for (std::uint32_t i = 0; i < count; ++i) {
            if (is_ended[i]) continue;
            if (!has_watermark[i]) return false;
            minimum = std::min(minimum, watermark[i]);
        }
        if (emitted_watermark && minimum <= last_watermark) return false;
        emitted_watermark = true;
        last_watermark = minimum;
        std::memcpy(watermark_payload, &minimum, sizeof minimum);
        return true;
    }

    // The periodic pass: every open channel is looked at again (a record committed without a
    // notification is found), and a dead producer is reported (peer_died, `channel` set).
    Status rescan(std::uint64_t now, std::uint32_t& channel) {
        next_rescan = now + rescan_interval;
        mark_all_open();
        std::uint32_t dead = 0;
        if (!find_dead_producer(dead)) return Status::ok;
        channel = dead;
        last_error = "producer of channel '" + readers[dead].consumer().name() + "' of gate '" + name + "' died";
        return Status::peer_died;
    }

    // Fairness: the gate reads round-robin over the channels it knows to have data, and learns
    // of the others from the producers' bits. It takes them when it runs out, and also every
    // kLookEvery reads (a relaxed load when none is set, one clock reading), so that a channel
    // that always has data cannot starve the others, nor keep a dead producer from being seen.
    static constexpr std::uint32_t kLookEvery = 64;

    Status read(Record& out, std::uint32_t& channel, bool may_wait, std::uint64_t deadline) {
        if (ended_count == count) return Status::end_of_stream;
        const std::uint64_t spin_budget = static_cast<std::uint64_t>(options.channel.spin_budget.count());
        while (true) {
            if (reads_since_look >= kLookEvery) {
                reads_since_look = 0;
                take_shared();
                const std::uint64_t now = shm::monotonic_ns();
                if (now >= next_rescan && rescan(now, channel) == Status::peer_died) return Status::peer_died;
            }
            std::uint64_t priority_id = 0;
            if (options.unaligned && take_priority(priority_id)) {
                barrier_record(out, RecordKind::barrier, priority_id);
                channel = 0;
                return Status::ok;
            }
            if (alignment_deadline != 0 && shm::monotonic_ns() >= alignment_deadline) {
                std::uint64_t id = checkpoint;
                alignment_timed_out();
                barrier_record(out, RecordKind::barrier, id);
                channel = 0;
                return Status::ok;
            }
            std::uint32_t i = 0;
            if (pick(i)) {
                ++reads_since_look;
                if (blocked[i] || is_ended[i]) {
                    unmark(i);
                    continue;
                }
                Record record;
                Status status = readers[i].try_read(record);
                switch (status) {
                    case Status::would_block:
                        unmark(i);
                        continue;
                    case Status::ok:
                        cursor = i + 1 == count ? 0 : i + 1;
                        if (record.kind == RecordKind::barrier) {
                            Action action = on_barrier(i, record.checkpoint_id);
                            if (action == Action::none) continue;
                            if (action == Action::deliver_in_flight_end) {
                                barrier_record(out, RecordKind::in_flight_end, record.checkpoint_id);
                                channel = i;
                                return Status::ok;
                            }
                        } else if (record.kind == RecordKind::user_event && options.combine_watermarks &&
                                   record.event_type == options.watermark_event_type && record.bytes.size() == 8) {
                            if (!on_watermark(i, record.bytes)) continue;
                            record.bytes = std::span<const std::byte>(watermark_payload, sizeof watermark_payload);
                        }
                        if (record.kind == RecordKind::record && overtaking && in_flight[i]) {
                            record.in_flight_of = overtaken;
                        }
                        out = record;
                        channel = i;
                        return Status::ok;
                    case Status::end_of_stream:
                        is_ended[i] = 1;
                        ++ended_count;
                        unmark(i);
                        if (close_in_flight(i) == Action::deliver_in_flight_end) {
                            barrier_record(out, RecordKind::in_flight_end, overtaken);
                            channel = i;
                            return Status::ok;
                        }
                        if (ended_count == count) {
                            channel = i;
                            return Status::end_of_stream;
                        }
                        if (alignment_complete()) {
                            barrier_record(out, RecordKind::barrier, checkpoint);
                            channel = i;
                            return Status::ok;
                        }
                        continue;
                    case Status::record_lost:
                        out = record;
                        channel = i;
                        return status;
                    default:
                        unmark(i);
                        last_error = readers[i].last_error();
                        channel = i;
                        return status;
                }
            }
            if (take_shared()) continue;

            std::uint64_t now = shm::monotonic_ns();
            if (now >= next_rescan) {
                if (rescan(now, channel) == Status::peer_died) return Status::peer_died;
                // Records committed without a notification are found by this pass.
                bool any = false;
                for (auto word : available) any = any || word != 0;
                if (any) continue;
            }
            if (!may_wait) {
                if (watcher.joinable() && armed.load(std::memory_order_relaxed) == 0) {
                    armed.store(1);
                    armed.notify_one();
                }
                return Status::would_block;
            }
            if (now >= deadline) return Status::timed_out;

            // Spin (hybrid, spin), then park on the gate's word (rule 5).
            auto pending = [&] { return shared_pending(); };
            if (options.channel.wait != WaitStrategy::park) {
                const std::uint64_t spin_until =
                    std::min({deadline, next_rescan, detail::spin_until(options.channel.wait, now, spin_budget)});
                bool woke = detail::spin(pending, [&](std::uint64_t at, std::uint32_t) { return at >= spin_until; }) != 0;
                if (woke || options.channel.wait == WaitStrategy::spin) continue;
            }
            std::uint64_t until = std::min(deadline, next_rescan);
            if (alignment_deadline != 0) until = std::min(until, alignment_deadline);
            detail::park(gate->sleeping, gate->parks, pending, until);
        }
    }
};

InputGate InputGate::attach(std::string_view name, const std::vector<std::string>& channels, const GateOptions& options) {
    std::string gate_name(name);
    if (gate_name.size() > L::kMaxGateNameLength) {
        throw Error(Errc::bad_name, "gate name '" + gate_name + "' is longer than 100 characters");
    }
    if (channels.empty() || channels.size() > L::kMaxGateChannels) {
        throw Error(Errc::bad_options, "gate '" + gate_name + "' needs 1 to 4096 channels, not " + std::to_string(channels.size()));
    }
    auto state = std::make_unique<State>();
    State& s = *state;
    s.name = gate_name;
    s.options = options;
    s.options.channel.framing = Framing::records;
    s.count = static_cast<std::uint32_t>(channels.size());
    const std::string path = shm::region_path(gate_name, L::kGateFilePrefix);
    shm::AccessPolicy policy{options.channel.mode, options.channel.allowed_owner};
    for (int attempt = 0;; ++attempt) {
        try {
            s.region = shm::Region::create(path, L::kGateBytes, policy, L::kGateLockByte);
            break;
        } catch (const Error& error) {
            if (error.code() != std::errc::file_exists || attempt >= 10) throw;
        }
        // A gate file exists: refuse a live gate, replace a stale one.
        shm::Region old = shm::Region::open(path, policy, /*writable=*/true);
        if (old.lock_held_by_other(L::kGateLockByte, shm::LockKind::shared)) {
            throw Error(Errc::side_taken, "gate '" + gate_name + "' is held by a live process");
        }
        old.unlink_if_same_file();
    }
    s.gate = static_cast<L::GateHeader*>(s.region.data());
    s.gate->magic = L::kGateMagic;
    s.gate->channel_count = s.count;
    s.gate->created_realtime_ns = shm::realtime_ns();
    L::store_release(s.gate->abi_version, L::kAbiVersion);

    s.readers.reserve(channels.size());
    for (std::uint32_t i = 0; i < s.count; ++i) {
        s.readers.push_back(RecordReader::attach(channels[i], s.options.channel));
        detail::ConsumerHooks(s.readers.back().consumer()).set_gate_link(gate_name, i);
    }
    s.available.assign((s.count + 63) / 64, 0);
    s.is_ended.assign(s.count, 0);
    s.blocked.assign(s.count, 0);
    s.dead_reported.assign(s.count, 0);
    s.watermark.assign(s.count, 0);
    s.has_watermark.assign(s.count, 0);
    s.in_flight.assign(s.count, 0);
    s.mark_all_open();  // anything published before the links were set
    std::chrono::nanoseconds interval = s.options.channel.liveness_interval;
    if (s.options.channel.buffer_timeout.count() > 0) interval = std::min(interval, s.options.channel.buffer_timeout);
    s.rescan_interval = static_cast<std::uint64_t>(std::max<std::int64_t>(interval.count(), 1'000'000));
    s.next_rescan = shm::monotonic_ns() + s.rescan_interval;
    return InputGate(std::move(state));
}

InputGate::InputGate(std::unique_ptr<State> state) : state_(std::move(state)) {}
InputGate::InputGate(InputGate&&) noexcept = default;
InputGate& InputGate::operator=(InputGate&&) noexcept = default;
InputGate::~InputGate() {
    if (!state_) return;
    state_->stop_watcher();
    for (auto& reader : state_->readers) detail::ConsumerHooks(reader.consumer()).clear_gate_link();
    state_->region.unlink_if_same_file();
}

Status InputGate::read(Record& out, std::uint32_t& channel) { return state_->read(out, channel, true, kNoDeadline); }
Status InputGate::try_read(Record& out, std::uint32_t& channel) { return state_->read(out, channel, false, 0); }
Status InputGate::read_for(Record& out, std::uint32_t& channel, std::chrono::nanoseconds timeout) {
    std::uint64_t deadline = shm::monotonic_ns() + static_cast<std::uint64_t>(std::max<std::int64_t>(0, timeout.count()));
    return state_->read(out, channel, true, deadline);
}
int InputGate::event_fd() {
    State& s = *state_;
    if (s.event >= 0) return s.event;
    s.event = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s.event < 0) throw Error::from_errno(errno, "eventfd for gate '" + s.name + "'");
    s.armed.store(1);
    s.watcher = std::thread([&s] { s.watch(); });
    return s.event;
}

std::uint32_t InputGate::size() const noexcept { return state_->count; }
bool InputGate::ended(std::uint32_t channel) const { return channel < state_->count && state_->is_ended[channel]; }
RecordReader& InputGate::channel(std::uint32_t index) { return state_->readers.at(index); }
const std::string& InputGate::last_error() const noexcept { return state_->last_error; }
std::uint64_t InputGate::wake_syscalls() const noexcept { return L::load_relaxed(state_->gate->wake_syscalls); }
std::uint64_t InputGate::parks() const noexcept { return L::load_relaxed(state_->gate->parks); }

// ---- OutputPartition ---------------------------------------------------------------------------------

struct OutputPartition::State {
    std::vector<RecordWriter> writers;
    PartitionMode mode = PartitionMode::round_robin;
    std::uint32_t next = 0;
    std::string last_error;

    // Runs `call` on every channel; the first failure is returned (the others still run).
    template <class Call>
    Status all(Call&& call) {
        Status result = Status::ok;
        for (auto& writer : writers) {
            Status status = call(writer);
            if (status != Status::ok && result == Status::ok) {
                result = status;
                last_error = writer.last_error();
            }
        }
        return result;
    }
    Status one(RecordWriter& writer, Status status) {
        if (status != Status::ok) last_error = writer.last_error();
        return status;
    }
};

OutputPartition OutputPartition::attach(const std::vector<std::string>& channels, PartitionMode mode,
                                        const ChannelOptions& options) {
    if (channels.empty()) throw Error(Errc::bad_options, "a partition needs at least one channel");
    auto state = std::make_unique<State>();
    state->mode = mode;
    state->writers.reserve(channels.size());
    for (const auto& name : channels) state->writers.push_back(RecordWriter::attach(name, options));
    return OutputPartition(std::move(state));
}

OutputPartition::OutputPartition(std::unique_ptr<State> state) : state_(std::move(state)) {}
OutputPartition::OutputPartition(OutputPartition&&) noexcept = default;
OutputPartition& OutputPartition::operator=(OutputPartition&&) noexcept = default;
OutputPartition::~OutputPartition() = default;

std::uint32_t OutputPartition::channel_for_key(std::span<const std::byte> key) const noexcept {
    return static_cast<std::uint32_t>(hash_bytes(key) % state_->writers.size());
}

Status OutputPartition::write_keyed(std::span<const std::byte> key, std::span<const std::byte> record) {
    if (state_->mode != PartitionMode::by_key) {
        state_->last_error = "write_keyed on a partition that is not by key";
        return Status::invalid_call;
    }
    RecordWriter& writer = state_->writers[channel_for_key(key)];
    return state_->one(writer, writer.write(record));
}

Status OutputPartition::write(std::span<const std::byte> record) {
    State& s = *state_;
    switch (s.mode) {
        case PartitionMode::round_robin: {
            RecordWriter& writer = s.writers[s.next];
            s.next = s.next + 1 == s.writers.size() ? 0 : s.next + 1;
            return s.one(writer, writer.write(record));
        }
        case PartitionMode::broadcast:
            return s.all([&](RecordWriter& writer) { return writer.write(record); });
        case PartitionMode::by_key:
            break;
    }
    s.last_error = "write without a key on a partition by key";
    return Status::invalid_call;
}

Status OutputPartition::write_barrier(std::uint64_t checkpoint_id, bool priority) {
    return state_->all([&](RecordWriter& writer) { return writer.write_barrier(checkpoint_id, priority); });
}
Status OutputPartition::write_watermark(std::uint64_t watermark, std::uint16_t event_type) {
    std::byte payload[8];
    std::memcpy(payload, &watermark, sizeof payload);
    return state_->all([&](RecordWriter& writer) { return writer.write_event(event_type, payload); });
}
Status OutputPartition::flush() {
    return state_->all([](RecordWriter& writer) { return writer.flush(); });
}
Status OutputPartition::end_stream() {
    return state_->all([](RecordWriter& writer) { return writer.end_stream(); });
}
std::uint32_t OutputPartition::size() const noexcept { return static_cast<std::uint32_t>(state_->writers.size()); }
RecordWriter& OutputPartition::channel(std::uint32_t index) { return state_->writers.at(index); }
const std::string& OutputPartition::last_error() const noexcept { return state_->last_error; }

}  // namespace shmchan
