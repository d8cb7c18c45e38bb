// SPDX-License-Identifier: Apache-2.0
// An attached side of a channel: the open file (detail/channel_file), its ring core
// (detail/producer_ring, detail/consumer_ring), waiting (detail/waiter: spin, then park on our
// `sleeping` word, layout.hpp rule 5), waking the peer, liveness, and the public Producer and
// Consumer that forward to it.
//
// Who does what on the hot path: the ring loads and stores the positions and segment headers; this
// file wakes the peer after a store that can end its wait (a fence and a load, a syscall only when
// the peer sleeps) and, while waiting, re-checks the peer's liveness and the header every
// liveness_interval.
#include "channels/channel.hpp"

#include <algorithm>
#include <limits>
#include <type_traits>
#include <utility>

#include "channels/detail/channel_file.hpp"
#include "channels/detail/consumer_ring.hpp"
#include "channels/detail/debloater.hpp"
#include "channels/detail/framing_refusal.hpp"
#include "channels/detail/hooks.hpp"
#include "channels/detail/notifier.hpp"
#include "channels/detail/producer_ring.hpp"
#include "channels/detail/waiter.hpp"
#include "shm/process.hpp"
#include "shm/region.hpp"

namespace shmchan {

namespace L = layout;

const char* to_string(WaitStrategy strategy) noexcept {
    switch (strategy) {
        case WaitStrategy::spin: return "spin";
        case WaitStrategy::hybrid: return "hybrid";
        case WaitStrategy::park: return "park";
    }
    return "?";
}

std::optional<WaitStrategy> wait_strategy_from_string(std::string_view text) noexcept {
    if (text == "spin") return WaitStrategy::spin;
    if (text == "hybrid") return WaitStrategy::hybrid;
    if (text == "park") return WaitStrategy::park;
    return std::nullopt;
}

const char* to_string(Status status) noexcept {
    switch (status) {
        case Status::ok: return "ok";
        case Status::would_block: return "would_block";
        case Status::timed_out: return "timed_out";
        case Status::end_of_stream: return "end_of_stream";
        case Status::peer_died: return "peer_died";
        case Status::corrupt: return "corrupt";
        case Status::invalid_call: return "invalid_call";
        case Status::interrupted: return "interrupted";
        case Status::event: return "event";
        case Status::record_lost: return "record_lost";
        case Status::decode_error: return "decode_error";
        case Status::too_large: return "too_large";
        case Status::incompatible: return "incompatible";
    }
    return "?";
}

namespace detail {
namespace {
constexpr std::uint64_t kNoDeadline = std::numeric_limits<std::uint64_t>::max();
}  // namespace

// What both sides hold: the open channel file, the ring's memory, the diagnostics, and the wait
// loops. `Side` (CRTP) supplies kProducer, wait_words(), peer_alive(), peer_attaches(),
// check_peer(), check_positions() and wake_peer().
template <class Side>
class Endpoint {
public:
    Endpoint(std::string name, const ChannelOptions& options)
        : name_(std::move(name)), options_(options), open_(open_or_create(name_, options_, Side::kProducer)) {
        header_ = static_cast<L::ChannelHeader*>(open_.region.data());
        memory_ = RingMemory{header_, static_cast<std::byte*>(open_.region.data()) + L::kHeaderBytes,
                             open_.geometry.segment_size, open_.geometry.segment_count, open_.geometry.consumer_slots};
        diagnostics_.subject = describe_channel(name_);
    }
    Endpoint(const Endpoint&) = delete;
    Endpoint& operator=(const Endpoint&) = delete;

    std::uint32_t capacity() const noexcept { return memory_.capacity(); }
    std::uint32_t segment_count() const noexcept { return open_.geometry.segment_count; }
    std::uint32_t channel_flags() const noexcept { return open_.geometry.flags; }
    std::uint64_t max_record_bytes() const noexcept { return open_.geometry.max_record_bytes; }
    const std::string& record_type() const noexcept { return open_.geometry.record_type; }
    const std::string& name() const noexcept { return name_; }
    const std::string& last_error() const noexcept { return diagnostics_.last_error; }
    const shm::Region& region() const noexcept { return open_.region; }
    const std::string& discarded_leftover() const noexcept { return open_.discarded_leftover; }
    std::uint64_t timeout_ns(std::chrono::nanoseconds timeout) const {
        return timeout.count() <= 0 ? 0 : static_cast<std::uint64_t>(timeout.count());
    }

    // Runs `attempt` until it returns something other than would_block: spinning, then sleeping
    // on our `sleeping` word, as the strategy says (detail/waiter.hpp); checks the peer's liveness
    // and the header every liveness_interval while waiting.
    template <class Attempt>
    Status wait_for(Attempt&& try_once, std::uint64_t timeout_ns, std::uint64_t park_limit_ns = 0) {
        // An attempt that takes a bool is told whether to look eagerly (rule 2b): it may look
        // lazily while we spin, never after a sleep or at a periodic check.
        bool eager = false;
        auto attempt = [&] {
            if constexpr (std::is_invocable_v<Attempt, bool>) {
                return try_once(eager);
            } else {
                return try_once();
            }
        };
        Status status = attempt();
        if (status != Status::would_block) return status;
        if (timeout_ns == 0) return Status::timed_out;
        // A peer known dead answers at once, until a new one attaches.
        if (peer_known_dead_) {
            Status peer = side().check_peer();
            if (peer != Status::would_block) {
                eager = true;
                status = attempt();  // anything published before the death comes first
                return status == Status::would_block ? peer : status;
            }
        }
        const std::uint64_t start = shm::monotonic_ns();
        const std::uint64_t deadline = timeout_ns == kNoDeadline ? kNoDeadline : start + timeout_ns;
        const std::uint64_t interval = static_cast<std::uint64_t>(options_.liveness_interval.count());
        // The interval runs from our last check, not from this wait's start: a wait that ends with
        // data and the next one must not push the check of a dead peer out by another interval
        // each (a producer that dies after an unflushed commit was reported after two).
        const WaitPlan plan{options_.wait, static_cast<std::uint64_t>(options_.spin_budget.count()), interval,
                            park_limit_ns, std::max<std::uint64_t>(last_liveness_check_ns_ + interval, 1)};
        // At each backstop: the peer's liveness and the header; a full last look before reporting.
        auto backstop = [&] {
            last_liveness_check_ns_ = shm::monotonic_ns();
            Status peer = check_peer_and_header();
            if (peer == Status::would_block) return peer;
            eager = true;
            Status last = attempt();
            return last == Status::would_block ? peer : last;
        };
        return spin_then_park(side().wait_words(), plan, spin_rate_, start, deadline,
                              [&](bool look_eagerly) {
                                  eager = look_eagerly;
                                  return attempt();
                              },
                              backstop);
    }

    // Waits until a live peer is attached (a live consumer in every slot, for a producer): after
    // peer_died, or before the first one came. Parks on our own `sleeping` word, which a side
    // that attaches wakes (finish_attach(): its lock is taken before that wake, so a waiter that
    // found no lock holder after arming its word is woken); the backstop re-checks the header
    // every liveness interval. ok; timed_out; interrupted (a signal handler ran while we slept);
    // peer_died (a peer attached and went away again before we saw it alive: its attach count
    // moved, which it stores after taking its lock); corrupt (the header failed validation);
    // end_of_stream (consumer: the stream has ended, so no producer can attach; read what is left).
    Status wait_for_peer(std::uint64_t timeout_ns) {
        const std::uint64_t attaches_before = side().peer_attaches();
        auto attempt = [&] {
            if (side().no_peer_can_come()) return Status::end_of_stream;
            if (side().peer_alive()) {
                peer_known_dead_ = false;
                return Status::ok;
            }
            if (side().peer_attaches() == attaches_before) return Status::would_block;
            peer_known_dead_ = true;
            diagnostics_.last_error = std::string(Side::kProducer ? "a consumer" : "the producer") + " of " +
                                      diagnostics_.subject + " attached and went away again while we waited";
            return Status::peer_died;
        };
        if (Status first = attempt(); first != Status::would_block) return first;
        if (timeout_ns == 0) return Status::timed_out;
        const std::uint64_t start = shm::monotonic_ns();
        const std::uint64_t deadline = timeout_ns == kNoDeadline ? kNoDeadline : start + timeout_ns;
        const std::uint64_t interval = static_cast<std::uint64_t>(options_.liveness_interval.count());
        // Park at once: a peer attaching is a process starting, not a cache line to spin for.
        const WaitPlan plan{WaitStrategy::park, 0, interval, 0, 0};
        auto backstop = [&] {
            Geometry now;
            std::string problem = check_identity(*header_, open_.region.size(), now);
            if (!problem.empty()) return diagnostics_.fail(Status::corrupt, "header: " + problem);
            return attempt();
        };
        return spin_then_park(side().wait_words(), plan, spin_rate_, start, deadline, [&](bool) { return attempt(); },
                              backstop);
    }

    // Removes the file now (the mappings stay valid); later openers get a fresh channel.
    void remove_file() {
        L::store_relaxed(header_->control.removed, L::kRemovedMark);  // read after the in-use lock
        open_.region.unlink_if_same_file();
    }

protected:
    // would_block: keep waiting; corrupt: the header or the positions we wait on are damaged;
    // peer_died.
    Status check_peer_and_header() {
        Geometry now;
        std::string problem = check_identity(*header_, open_.region.size(), now);
        if (problem.empty() && (now.segment_size != open_.geometry.segment_size ||
                                now.segment_count != open_.geometry.segment_count ||
                                now.framing != open_.geometry.framing)) {
            problem = "geometry changed under us";
        }
        if (!problem.empty()) return diagnostics_.fail(Status::corrupt, "header: " + problem);
        if (Status status = side().check_positions(); status != Status::ok) return status;
        if (Status refused = check_framing_refusal(); refused != Status::would_block) return refused;
        return side().check_peer();
    }

    // A would-be peer refused since we last looked, because it asked for the other framing
    // (framing_refusal.hpp): it will not come. incompatible, once per refusal; would_block if none.
    Status check_framing_refusal() {
        // Acquire: pairs with the refused opener's release add; refused_framing is its store.
        const std::uint32_t refusals = L::load_acquire(header_->control.framing_refusals);
        if (refusals == framing_refusals_seen_) return Status::would_block;
        framing_refusals_seen_ = refusals;
        const std::uint32_t refused = L::load_relaxed(header_->control.refused_framing);
        const bool as_producer = (refused & kRefusedAsProducer) != 0;
        if (as_producer == Side::kProducer) return Status::would_block;  // our own side: not our peer
        auto framing_name = [](std::uint32_t f) { return f == 1 ? "raw bytes" : f == 2 ? "records" : "an unknown framing"; };
        return diagnostics_.fail(Status::incompatible, std::string("a ") + (as_producer ? "producer" : "consumer") +
                                                           " was refused: it asked for " + framing_name(refused & 0xff) +
                                                           ", the channel carries " + framing_name(open_.geometry.framing));
    }

    // The end of a side's attach: only refusals from now on count, and a peer parked waiting for
    // us (wait_for_peer, or any wait) re-checks now: our lock is held, so it finds us alive.
    void finish_attach() noexcept {
        framing_refusals_seen_ = L::load_acquire(header_->control.framing_refusals);
        side().wake_peer();
    }

    // Writes our attachment (we hold the side's lock: its only writer from here on); returns our
    // epoch, the side's attach count.
    std::uint64_t write_attachment(L::Attachment& mine) {
        const auto identity = shm::self_identity();
        L::store_relaxed(mine.pid, identity.pid);
        L::store_relaxed(mine.start_time, identity.start_time);
        L::store_relaxed(mine.attach_realtime_ns, shm::realtime_ns());
        const std::uint64_t epoch = L::load_relaxed(mine.attach_count) + 1;
        L::store_relaxed(mine.attach_count, epoch);
        L::store_relaxed(mine.attached, 1u);
        return epoch;
    }

    // The one peer of a side (`who`): would_block while it lives or before it ever attached (wait
    // for one); peer_died once it is gone.
    Status check_attachment(const L::Attachment& peer, const char* who) {
        const std::uint64_t attaches = L::load_relaxed(peer.attach_count);  // loaded before the lock test
        if (side().peer_alive()) {
            peer_known_dead_ = false;
            return Status::would_block;
        }
        if (attaches == 0) return Status::would_block;
        return peer_gone(peer, who);
    }

    // A peer that died (its lock gone) after it had attached at least once.
    Status peer_gone(const L::Attachment& peer, const std::string& who) {
        peer_known_dead_ = true;
        const bool detached = L::load_relaxed(peer.attached) == 0;
        diagnostics_.last_error = who + " of " + diagnostics_.subject + (detached ? " detached" : " died");
        return Status::peer_died;
    }

    Side& side() noexcept { return static_cast<Side&>(*this); }

    std::string name_;
    ChannelOptions options_;
    OpenChannel open_;
    L::ChannelHeader* header_ = nullptr;
    RingMemory memory_;
    Diagnostics diagnostics_;
    bool peer_known_dead_ = false;
    std::uint32_t framing_refusals_seen_ = 0;  // Control::framing_refusals as last checked
    std::uint64_t last_liveness_check_ns_ = shm::monotonic_ns();  // the last backstop of a wait
    SpinRate spin_rate_;                                          // wait_for: one spin's time, as measured
};

class ProducerSide : public Endpoint<ProducerSide> {
public:
    static constexpr bool kProducer = true;

    ProducerSide(std::string name, const ChannelOptions& options)
        : Endpoint(std::move(name), options),
          ring_(memory_, diagnostics_),
          notifier_(*header_, memory_.consumer_slots, options_.mode, options_.allowed_owner) {
        shm::Region& region = open_.region;
        if (!region.try_lock(L::kProducerLockByte, shm::LockKind::exclusive)) {
            const std::int32_t pid = L::load_relaxed(header_->producer_attachment.pid);
            throw Error(Errc::side_taken,
                        diagnostics_.subject + " already has a live producer (pid " + std::to_string(pid) + ")");
        }
        // Rule 4: an ended stream stays ended (acquire: nothing after it is published).
        if (L::load_acquire(header_->producer.end_of_stream) != 0) {
            region.unlock(L::kProducerLockByte);
            throw Error(Errc::stream_ended, diagnostics_.subject + " has already ended its stream: receive or remove it first");
        }
        const std::uint64_t epoch = write_attachment(header_->producer_attachment);
        if (ring_.adopt(epoch) != Status::ok) {
            region.unlock(L::kProducerLockByte);
            throw Error(Errc::corrupt, diagnostics_.last_error);
        }
        L::store_relaxed(header_->producer.sleeping, 0u);  // a dead predecessor's, nobody waits on it
        attached_ = true;
        finish_attach();
    }

    ~ProducerSide() {
        if (!attached_) return;
        // A clean detach: the consumer will report "detached" rather than "died". The lock goes
        // when the Region closes its descriptor; the consumer is woken so that it notices at once.
        L::store_relaxed(header_->producer_attachment.attached, 0u);
        notifier_.notify();
        try {
            open_.region.unlock(L::kProducerLockByte);
        } catch (...) {
        }
    }

    ProducerRing& ring() noexcept { return ring_; }

    Status publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                   std::uint32_t first_record_offset, std::uint32_t checksum) {
        Status status = ring_.publish(bytes, flags, record_count, first_record_offset, checksum);
        if (status == Status::ok) notifier_.notify();
        return status;
    }
    Status end_stream() {
        if (ring_.ended()) return Status::ok;
        Status status = ring_.end_stream();
        if (status == Status::ok) notifier_.notify();
        return status;
    }
    // A flush: the flush word (rule 2b), then a wake of a sleeping consumer.
    void wake_consumer() {
        ring_.flush();
        notifier_.notify();
    }
    bool publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset) {
        if (!ring_.publish_priority(checkpoint_id, segment, offset)) return false;
        notifier_.notify(/*priority=*/true);
        return true;
    }

    // A producer waits for a consumer even after its end of stream: the data is still to be read.
    bool no_peer_can_come() const noexcept { return false; }

    // Every consumer slot's lock is held.
    bool peer_alive() const {
        for (std::uint32_t i = 0; i < memory_.consumer_slots; ++i) {
            if (!open_.region.lock_held_by_other(L::kConsumerLockByte + i, shm::LockKind::shared)) return false;
        }
        return true;
    }

    // would_block: keep waiting (consumer alive, or never had one); peer_died.
    Status check_peer() {
        if (memory_.consumer_slots > 1) return check_slowest_consumers();
        return check_attachment(header_->consumers[0].attachment, "consumer");
    }
    Status check_positions() { return ring_.check_positions(); }
    void wake_peer() noexcept { notifier_.notify(); }
    // How many times a consumer attached, over every slot: relaxed loads, compared only with an
    // earlier value of ours.
    std::uint64_t peer_attaches() const noexcept {
        std::uint64_t sum = 0;
        for (std::uint32_t i = 0; i < memory_.consumer_slots; ++i) sum += L::load_relaxed(header_->consumers[i].attachment.attach_count);
        return sum;
    }
    WaitWords wait_words() noexcept {
        auto& counters = header_->producer_counters;
        return WaitWords{header_->producer.sleeping, counters.parks, counters.waiting_since_ns, counters.backpressured_ns};
    }

private:
    // Broadcast: the producer waits on the slowest slots. One that never had a consumer is waited
    // for; one whose consumer died is reported.
    Status check_slowest_consumers() {
        std::uint64_t slowest = 0;
        if (Status status = ring_.load_slowest_release(slowest); status != Status::ok) return status;
        for (std::uint32_t i = 0; i < memory_.consumer_slots; ++i) {
            const L::ConsumerSlot& slot = header_->consumers[i];
            if (L::load_acquire(slot.position.released) != slowest) continue;
            if (L::load_relaxed(slot.attachment.attach_count) == 0) continue;
            if (open_.region.lock_held_by_other(L::kConsumerLockByte + i, shm::LockKind::shared)) continue;
            return peer_gone(slot.attachment, "consumer in slot " + std::to_string(i));
        }
        peer_known_dead_ = false;
        return Status::would_block;
    }

    ProducerRing ring_;
    ConsumerNotifier notifier_;
    bool attached_ = false;
};

class ConsumerSide : public Endpoint<ConsumerSide> {
public:
    static constexpr bool kProducer = false;

    ConsumerSide(std::string name, const ChannelOptions& options)
        : Endpoint(std::move(name), options), ring_(memory_, diagnostics_), debloater_(debloat_settings()) {
        shm::Region& region = open_.region;
        // A consumer slot: the one asked for, or the first free one.
        const std::uint32_t slots = memory_.consumer_slots;
        if (options_.consumer_slot && *options_.consumer_slot >= slots) {
            throw Error(Errc::bad_options, diagnostics_.subject + " has " + std::to_string(slots) + " consumer slots; slot " +
                                               std::to_string(*options_.consumer_slot) + " does not exist");
        }
        bool taken = false;
        for (std::uint32_t i = options_.consumer_slot.value_or(0); i < slots && !taken; ++i) {
            if (region.try_lock(L::kConsumerLockByte + i, shm::LockKind::exclusive)) {
                slot_ = i;
                taken = true;
            }
            if (options_.consumer_slot) break;
        }
        if (!taken) {
            const std::int32_t pid = L::load_relaxed(header_->consumers[options_.consumer_slot.value_or(0)].attachment.pid);
            throw Error(Errc::side_taken, diagnostics_.subject + " already has a live consumer" +
                                              (slots > 1 && !options_.consumer_slot
                                                   ? " in each of its " + std::to_string(slots) + " slots"
                                                   : " (pid " + std::to_string(pid) + ")"));
        }
        write_attachment(slot().attachment);
        L::store_relaxed(slot().wake.sleeping, 0u);  // a dead predecessor's, nobody waits on it
        // Rule 7: no limit until our first sample (a predecessor's is not ours). Relaxed: hints.
        L::store_relaxed(slot().wake.credit_limit, 0u);
        L::store_relaxed(slot().wake.throughput_bytes_per_s, std::uint64_t{0});
        L::store_relaxed(slot().wake.segments_per_ks, std::uint64_t{0});
        L::store_relaxed(slot().wake.debloat_target_ns, debloater_.target_ns());
        // A gate that held this slot and died left its link behind: producers would wake that gate
        // instead of us. We hold the slot's lock, so its previous holder is gone.
        clear_gate_link(*header_, slot_);
        if (ring_.adopt(slot_) != Status::ok) {
            region.unlock(L::kConsumerLockByte + slot_);
            throw Error(Errc::corrupt, diagnostics_.last_error);
        }
        attached_ = true;
        finish_attach();
    }

    ~ConsumerSide() {
        if (!attached_) return;
        // A clean detach (see ~ProducerSide); a producer waiting for credits notices at once.
        L::store_relaxed(slot().attachment.attached, 0u);
        L::store_relaxed(slot().wake.credit_limit, 0u);  // rule 7: nobody measures any more
        wake_producer();
        try {
            open_.region.unlock(L::kConsumerLockByte + slot_);
        } catch (...) {
        }
    }

    ConsumerRing& ring() noexcept { return ring_; }

    // The ring calls that can release segments, each followed by a wake of a sleeping producer
    // when a release happened (rule 5: after the release store).
    Status try_read(ReadableSegment& out) { return releasing([&] { return ring_.try_read(out); }); }
    Status release() { return releasing([&] { return ring_.release(); }); }
    Status release_until(std::uint64_t position, std::uint64_t resume_offset, std::uint64_t in_flight,
                         const ReadProgress& progress) {
        return releasing([&] { return ring_.release_until(position, resume_offset, in_flight, progress); });
    }

    void set_gate_link(std::string_view gate_name, std::uint32_t index) {
        write_gate_link(*header_, slot_, gate_name, index);
    }
    void clear_link() { clear_gate_link(*header_, slot_); }

    // Park limit of a records reader: the producer's buffer timeout, within [1 ms, liveness].
    std::uint64_t buffer_timeout_park_limit() const {
        const std::uint64_t timeout = ring_.buffer_timeout_ns();
        const std::uint64_t interval = static_cast<std::uint64_t>(options_.liveness_interval.count());
        if (timeout == 0 || timeout > interval) return interval;
        return std::max<std::uint64_t>(timeout, 1'000'000);
    }

    bool peer_alive() const { return open_.region.lock_held_by_other(L::kProducerLockByte, shm::LockKind::shared); }
    // An ended stream refuses every producer (rule 4). Acquire: pairs with end_stream's release,
    // though only the flag itself is used here.
    bool no_peer_can_come() const noexcept { return L::load_acquire(header_->producer.end_of_stream) != 0; }

    // would_block: keep waiting (producer alive, or never had one); peer_died.
    Status check_peer() { return check_attachment(header_->producer_attachment, "producer"); }
    Status check_positions() { return ring_.check_positions(); }
    void wake_peer() noexcept { wake_producer(); }
    std::uint64_t peer_attaches() const noexcept { return L::load_relaxed(header_->producer_attachment.attach_count); }
    WaitWords wait_words() noexcept {
        auto& counters = slot().counters;
        return WaitWords{slot().wake.sleeping, counters.parks, counters.waiting_since_ns, counters.idle_ns};
    }

private:
    template <class Call>
    Status releasing(Call&& call) {
        const std::uint64_t before = ring_.position();
        Status status = call();
        if (ring_.position() != before) {
            wake_producer();
            if (debloater_.enabled()) debloat(ring_.position() - before);  // off: this branch only
        }
        return status;
    }
    // Rule 7: the clock at most once per stride of released segments; a new limit once a period.
    void debloat(std::uint64_t segments) noexcept {
        if (!debloater_.released(segments)) return;
        const auto& counters = slot().counters;
        Debloater::Published out;
        // Our own counters (relaxed loads of fields only we write).
        if (!debloater_.sample(shm::monotonic_ns(), L::load_relaxed(counters.idle_ns), L::load_relaxed(counters.bytes_read),
                               ring_.position(), out)) {
            return;
        }
        // Relaxed: hints for the producer (rule 7) and figures for tools.
        L::store_relaxed(slot().wake.throughput_bytes_per_s, out.throughput_bytes_per_s);
        L::store_relaxed(slot().wake.segments_per_ks, out.segments_per_ks);
        if (out.credit_limit != 0) L::store_relaxed(slot().wake.credit_limit, out.credit_limit);
    }
    DebloatSettings debloat_settings() const {
        if (options_.debloat_target.count() > 0 && options_.debloat_period.count() <= 0) {
            throw Error(Errc::bad_options, diagnostics_.subject + ": debloat_period must be positive");
        }
        DebloatSettings settings;
        settings.target_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, options_.debloat_target.count()));
        settings.period_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(1, options_.debloat_period.count()));
        settings.segment_count = memory_.segment_count;
        settings.segment_payload = memory_.capacity();
        return settings;
    }
    // Rule 5, the waker's half: our release store is done; a syscall only if the producer sleeps.
    void wake_producer() noexcept {
        if (wake_if_sleeping(header_->producer.sleeping)) L::counter_add(slot().counters.wake_syscalls, std::uint64_t{1});
    }
    L::ConsumerSlot& slot() const noexcept { return header_->consumers[slot_]; }

    ConsumerRing ring_;
    Debloater debloater_;
    std::uint32_t slot_ = 0;
    bool attached_ = false;
};

}  // namespace detail

namespace {
constexpr std::uint64_t kForever = std::numeric_limits<std::uint64_t>::max();
}  // namespace

// ---- Producer ------------------------------------------------------------------------------------

Producer Producer::attach(std::string_view name, const ChannelOptions& options) {
    return Producer(std::make_unique<detail::ProducerSide>(std::string(name), options));
}
Producer::Producer(std::unique_ptr<detail::ProducerSide> side) : side_(std::move(side)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

Status Producer::try_acquire(WritableSegment& out) { return side_->ring().try_acquire(out); }
Status Producer::acquire(WritableSegment& out) {
    return side_->wait_for([&] { return side_->ring().try_acquire(out); }, kForever);
}
Status Producer::acquire_for(WritableSegment& out, std::chrono::nanoseconds timeout) {
    return side_->wait_for([&] { return side_->ring().try_acquire(out); }, side_->timeout_ns(timeout));
}
Status Producer::commit(std::uint32_t bytes) { return side_->ring().commit(bytes); }
Status Producer::publish(std::uint32_t bytes) { return side_->publish(bytes, 0, 0, 0, 0); }
Status detail::ProducerHooks::publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                                      std::uint32_t first_record_offset, std::uint32_t checksum) {
    return side_->publish(bytes, flags, record_count, first_record_offset, checksum);
}
Status Producer::end_stream() { return side_->end_stream(); }
Status Producer::wait_for_peer(std::chrono::nanoseconds timeout) {
    return side_->wait_for_peer(timeout.count() < 0 ? kForever : side_->timeout_ns(timeout));
}
bool Producer::consumer_alive() const { return side_->peer_alive(); }
std::uint32_t Producer::payload_capacity() const noexcept { return side_->capacity(); }
std::uint32_t Producer::segment_count() const noexcept { return side_->segment_count(); }
std::uint32_t Producer::channel_flags() const noexcept { return side_->channel_flags(); }
std::uint64_t Producer::max_record_bytes() const noexcept { return side_->max_record_bytes(); }
const std::string& Producer::record_type() const noexcept { return side_->record_type(); }
Status detail::ProducerHooks::commit(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                        std::uint32_t first_record_offset) {
    return side_->ring().commit(bytes, flags, record_count, first_record_offset);
}
std::uint32_t detail::ProducerHooks::free_segments() { return side_->ring().free_segments(); }
void detail::ProducerHooks::wake_consumer() { side_->wake_consumer(); }
void detail::ProducerHooks::set_record_ordinal(std::uint64_t completed) noexcept { side_->ring().set_record_ordinal(completed); }
Status detail::ProducerHooks::resume_view(SegmentView& out, std::uint64_t& ordinal) { return side_->ring().resume_view(out, ordinal); }
bool detail::ProducerHooks::publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset) {
    return side_->publish_priority(checkpoint_id, segment, offset);
}
Status detail::ProducerHooks::wait_for_free(std::uint32_t count, std::chrono::nanoseconds timeout) {
    if (count > side_->segment_count()) return Status::invalid_call;
    auto attempt = [&] { return side_->ring().free_segments() >= count ? Status::ok : Status::would_block; };
    return side_->wait_for(attempt, timeout.count() < 0 ? kForever : side_->timeout_ns(timeout));
}
void detail::ProducerHooks::set_buffer_timeout(std::chrono::nanoseconds timeout) {
    side_->ring().set_buffer_timeout(static_cast<std::uint64_t>(std::max<std::int64_t>(0, timeout.count())));
}
void detail::ProducerHooks::add_written(std::uint64_t records, std::uint64_t events) { side_->ring().add_written(records, events); }
const std::string& Producer::name() const noexcept { return side_->name(); }
const std::string& Producer::last_error() const noexcept { return side_->last_error(); }
const std::string& Producer::discarded_leftover() const noexcept { return side_->discarded_leftover(); }
ChannelInfo Producer::info() const { return detail::read_info(side_->name(), side_->region(), detail::Self::producer); }

// ---- Consumer ------------------------------------------------------------------------------------

Consumer Consumer::attach(std::string_view name, const ChannelOptions& options) {
    return Consumer(std::make_unique<detail::ConsumerSide>(std::string(name), options));
}
Consumer::Consumer(std::unique_ptr<detail::ConsumerSide> side) : side_(std::move(side)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() = default;

Status Consumer::try_read(ReadableSegment& out) { return side_->try_read(out); }
Status Consumer::read(ReadableSegment& out) {
    return side_->wait_for([&] { return side_->try_read(out); }, kForever);
}
Status Consumer::read_for(ReadableSegment& out, std::chrono::nanoseconds timeout) {
    return side_->wait_for([&] { return side_->try_read(out); }, side_->timeout_ns(timeout));
}
Status Consumer::release() { return side_->release(); }
Status Consumer::wait_for_peer(std::chrono::nanoseconds timeout) {
    return side_->wait_for_peer(timeout.count() < 0 ? kForever : side_->timeout_ns(timeout));
}
bool Consumer::producer_alive() const { return side_->peer_alive(); }
void Consumer::remove_channel() { side_->remove_file(); }
std::uint32_t Consumer::payload_capacity() const noexcept { return side_->capacity(); }
std::uint32_t Consumer::segment_count() const noexcept { return side_->segment_count(); }
std::uint32_t Consumer::channel_flags() const noexcept { return side_->channel_flags(); }
std::uint64_t Consumer::max_record_bytes() const noexcept { return side_->max_record_bytes(); }
const std::string& Consumer::record_type() const noexcept { return side_->record_type(); }
detail::ResumePoint detail::ConsumerHooks::resume_point() const { return side_->ring().resume_point(); }
std::uint64_t* detail::ConsumerHooks::resume_point_field() noexcept { return side_->ring().resume_point_field(); }
bool detail::ConsumerHooks::take_priority(std::uint64_t& checkpoint_id) { return side_->ring().take_priority(checkpoint_id); }
void detail::ConsumerHooks::set_gate_link(std::string_view gate_name, std::uint32_t index) { side_->set_gate_link(gate_name, index); }
void detail::ConsumerHooks::clear_gate_link() { side_->clear_link(); }
Status detail::ConsumerHooks::try_view(std::uint64_t position, SegmentView& out) { return side_->ring().try_view(position, out); }
Status detail::ConsumerHooks::poll_view(std::uint64_t position, SegmentView& out) {
    return side_->ring().poll_view(position, out, /*eager=*/false);
}
Status detail::ConsumerHooks::wait_view(std::uint64_t position, std::uint32_t committed, SegmentView& out,
                           std::chrono::nanoseconds timeout) {
    // Rule 2b: while spinning, the segment header is read every kHeaderPollInterval-th look
    // (about a microsecond); the producer line at every look.
    constexpr std::uint32_t kHeaderPollInterval = 32;
    std::uint32_t looks = 0;
    auto attempt = [&](bool eager) {
        eager = eager || ++looks % kHeaderPollInterval == 0;
        Status status = side_->ring().poll_view(position, out, eager);
        if (status == Status::ok && !out.sealed && out.payload.size() <= committed) return Status::would_block;
        return status;
    };
    std::uint64_t limit = timeout.count() < 0 ? kForever : side_->timeout_ns(timeout);
    return side_->wait_for(attempt, limit, side_->buffer_timeout_park_limit());
}
Status detail::ConsumerHooks::release_until(std::uint64_t position, std::uint64_t resume_offset,
                               std::uint64_t in_flight_record_bytes, const ReadProgress& progress) {
    return side_->release_until(position, resume_offset, in_flight_record_bytes, progress);
}
const std::string& Consumer::name() const noexcept { return side_->name(); }
const std::string& Consumer::last_error() const noexcept { return side_->last_error(); }
const std::string& Consumer::discarded_leftover() const noexcept { return side_->discarded_leftover(); }
ChannelInfo Consumer::info() const { return detail::read_info(side_->name(), side_->region(), detail::Self::consumer); }

}  // namespace shmchan
