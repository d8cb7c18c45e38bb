// SPDX-License-Identifier: Apache-2.0
// The channel protocol: open-or-create, attach, the segment ring, waiting and liveness.
//
// Synchronization is the protocol written at the top of channels/layout.hpp (rules 1-6); each
// atomic access below names the rule it implements. Every value read from shared memory is
// copied into a local once, checked, and only the local is used.
//
// Open-or-create and removal (why no opener ever uses a half-made or removed file):
//  - A creator makes the file with O_EXCL, locks kCreatingLockByte (exclusive) and
//    kInUseLockByte (shared), reserves the size, writes the identity and stores the ready mark
//    last (rule 1). Openers wait, bounded, for the ready mark.
//  - Every handle holds kInUseLockByte shared while attached. A remover that must not remove a
//    channel in use takes kInUseLockByte exclusively (possible only when no handle holds it), sets
//    Control::removed, unlinks, and lets go. A handle checks `removed` and the link count only
//    after it holds its shared lock, so either the remover saw the lock (and did not remove), or
//    the handle sees the removal and starts over on a fresh file.
#include "channels/channel.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <thread>
#include <utility>

#include "channels/detail/framing_refusal.hpp"
#include "channels/detail/leftover.hpp"
#include "channels/detail/waiter.hpp"
#include "shm/process.hpp"
#include "shm/region.hpp"

// The per-segment counters of the hot path (bytes, records, segments, last publish/release time)
// are always on in a normal build. SHMCHAN_HOT_COUNTERS=0 exists only so that
// bench/shm-counters-cost can measure what they cost; the tools show zeros with it.
#ifndef SHMCHAN_HOT_COUNTERS
#define SHMCHAN_HOT_COUNTERS 1
#endif

namespace shmchan {

using namespace std::chrono_literals;
namespace L = layout;
constexpr bool kHotCounters = SHMCHAN_HOT_COUNTERS != 0;

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

enum class Side { producer, consumer };

constexpr std::uint64_t kNoDeadline = std::numeric_limits<std::uint64_t>::max();
constexpr int kMaxRestarts = 1000;  // open attempts that found a removed file

struct Geometry {
    std::uint32_t segment_size = 0;
    std::uint32_t segment_count = 0;
    std::uint32_t framing = 0;
    std::uint32_t flags = 0;
    std::uint32_t consumer_slots = 0;
    std::uint64_t max_record_bytes = 0;
    std::uint64_t total_bytes = 0;
    std::uint64_t created_realtime_ns = 0;
};

std::string describe_channel(const std::string& name) { return "channel '" + name + "'"; }

std::string hex32(std::uint32_t value) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%08x", value);
    return text;
}

void validate_options(const std::string& name, const ChannelOptions& options) {
    auto fail = [&](const std::string& why) {
        throw Error(Errc::bad_options, describe_channel(name) + ": " + why);
    };
    if (options.segment_size) {
        std::uint32_t size = *options.segment_size;
        if (size < L::kMinSegmentSize || size > L::kMaxSegmentSize || size % L::kSegmentSizeUnit != 0) {
            fail("segment size " + std::to_string(size) +
                 " must be a multiple of 4096 between 4096 and 1073741824 bytes");
        }
    }
    if (options.segment_count) {
        std::uint32_t count = *options.segment_count;
        if (count < L::kMinSegmentCount || count > L::kMaxSegmentCount) {
            fail("segment count " + std::to_string(count) + " must be between 1 and 1048576");
        }
    }
    std::uint64_t total = L::region_bytes(options.segment_size.value_or(L::kDefaultSegmentSize),
                                          options.segment_count.value_or(L::kDefaultSegmentCount));
    if (total > L::kMaxTotalBytes) fail("channel of " + std::to_string(total) + " bytes exceeds 1 TiB");
    if (options.framing != Framing::raw_bytes && options.framing != Framing::records) fail("unknown framing");
    if (options.consumers && (*options.consumers < 1 || *options.consumers > L::kMaxConsumers)) {
        fail("consumer slots must be between 1 and " + std::to_string(L::kMaxConsumers));
    }
    if (options.consumer_slot && *options.consumer_slot >= L::kMaxConsumers) fail("consumer slot out of range");
    if (options.max_record_bytes == 0 || options.max_record_bytes > (1ull << 40)) {
        fail("max record bytes must be between 1 and 2^40");
    }
    if (options.framing == Framing::records && options.max_record_bytes > L::kMaxRecordsFramingRecord) {
        fail("records are limited to 4 GiB - 1 bytes");
    }
    if (options.buffer_timeout.count() < 0) fail("negative buffer timeout");
    if (options.spin_budget.count() < 0) fail("negative spin budget");
    if (options.liveness_interval < 1ms || options.liveness_interval > 10s) {
        fail("liveness interval must be between 1 ms and 10 s");
    }
    if (options.ready_timeout.count() < 0) fail("negative ready timeout");
    if (options.mode & ~0777u) fail("mode must be permission bits only");
    if (options.mode & S_IWOTH) fail("a channel file must not be world-writable");
}

// Reads the identity once into locals (after the ready mark's acquire) and checks every field
// against the limits and the mapped size. Returns an error message, or empty when valid.
std::string check_identity(const L::ChannelHeader& header, std::size_t mapped_bytes, Geometry& out) {
    if (mapped_bytes < L::kHeaderBytes) {
        return "file is " + std::to_string(mapped_bytes) + " bytes, smaller than a header (" + std::to_string(L::kHeaderBytes) + ")";
    }
    // Rule 1: the acquire of the ready mark makes the creator's identity stores visible.
    std::uint32_t version = L::load_acquire(header.identity.abi_version);
    L::Identity identity;
    std::memcpy(static_cast<void*>(&identity), &header.identity, sizeof identity);
    if (identity.magic != L::kMagic) return "bad magic: not a shmchan channel";
    if (version != L::kAbiVersion) {
        return "ABI version " + std::to_string(version) + ", this build reads version " +
               std::to_string(L::kAbiVersion);
    }
    if (identity.header_bytes != L::kHeaderBytes) {
        return "header size " + std::to_string(identity.header_bytes) + " is not " + std::to_string(L::kHeaderBytes);
    }
    std::uint32_t size = identity.segment_size, count = identity.segment_count;
    if (size < L::kMinSegmentSize || size > L::kMaxSegmentSize || size % L::kSegmentSizeUnit != 0) {
        return "segment size " + std::to_string(size) + " out of range";
    }
    if (count < L::kMinSegmentCount || count > L::kMaxSegmentCount) {
        return "segment count " + std::to_string(count) + " out of range";
    }
    if (identity.framing != static_cast<std::uint32_t>(Framing::raw_bytes) &&
        identity.framing != static_cast<std::uint32_t>(Framing::records)) {
        return "unknown framing " + std::to_string(identity.framing);
    }
    if (identity.flags & ~L::kFlagChecksums) return "unknown flags " + std::to_string(identity.flags);
    const std::uint32_t removed = L::load_relaxed(header.control.removed);
    if (removed != 0 && removed != L::kRemovedMark) {
        return "removal mark holds " + hex32(removed) + " (neither 0 nor the mark)";
    }
    if (identity.consumer_slots < 1 || identity.consumer_slots > L::kMaxConsumers) {
        return "consumer slots " + std::to_string(identity.consumer_slots) + " out of range";
    }
    if (identity.max_record_bytes == 0 || identity.max_record_bytes > (1ull << 40)) {
        return "max record bytes " + std::to_string(identity.max_record_bytes) + " out of range";
    }
    std::uint64_t expected_total = L::region_bytes(size, count);
    if (identity.total_bytes != expected_total) {
        return "total size " + std::to_string(identity.total_bytes) + " disagrees with geometry " +
               std::to_string(count) + " x " + std::to_string(size);
    }
    if (expected_total > mapped_bytes) {
        return "geometry " + std::to_string(count) + " x " + std::to_string(size) + " needs " +
               std::to_string(expected_total) + " bytes but the file has " + std::to_string(mapped_bytes);
    }
    out.segment_size = size;
    out.segment_count = count;
    out.framing = identity.framing;
    out.flags = identity.flags;
    out.consumer_slots = identity.consumer_slots;
    out.max_record_bytes = identity.max_record_bytes;
    out.total_bytes = expected_total;
    out.created_realtime_ns = identity.created_realtime_ns;
    return {};
}

Errc classify_identity_error(const L::ChannelHeader& header, std::size_t mapped_bytes) {
    if (mapped_bytes < L::kHeaderBytes) return Errc::corrupt;
    std::uint64_t magic = L::load_relaxed(header.identity.magic);
    if (magic != L::kMagic) return Errc::bad_magic;
    if (L::load_relaxed(header.identity.abi_version) != L::kAbiVersion) return Errc::bad_version;
    return Errc::corrupt;
}

void initialize_header(L::ChannelHeader& header, const ChannelOptions& options) {
    // The file is fresh from posix_fallocate: all zeros. Nobody reads past the ready mark yet.
    auto identity_self = shm::self_identity();
    std::uint32_t size = options.segment_size.value_or(L::kDefaultSegmentSize);
    std::uint32_t count = options.segment_count.value_or(L::kDefaultSegmentCount);
    header.identity.magic = L::kMagic;
    header.identity.header_bytes = L::kHeaderBytes;
    header.identity.segment_size = size;
    header.identity.segment_count = count;
    header.identity.framing = static_cast<std::uint32_t>(options.framing);
    header.identity.flags = options.checksums ? L::kFlagChecksums : 0;
    header.identity.max_record_bytes = options.max_record_bytes;
    header.identity.total_bytes = L::region_bytes(size, count);
    header.identity.created_realtime_ns = shm::realtime_ns();
    header.identity.consumer_slots = options.consumers.value_or(1);
    header.control.creator_pid = identity_self.pid;
    header.control.creator_start_time = identity_self.start_time;
    // Rule 1: the ready mark, last, with release.
    L::store_release(header.identity.abi_version, L::kAbiVersion);
}

// Takes kInUseLockByte shared; a remover holds it exclusively only for an instant.
void lock_in_use(shm::Region& region, const std::string& name, std::chrono::nanoseconds patience) {
    auto deadline = std::chrono::steady_clock::now() + std::max<std::chrono::nanoseconds>(patience, 100ms);
    while (!region.try_lock(L::kInUseLockByte, shm::LockKind::shared)) {
        if (std::chrono::steady_clock::now() >= deadline) {
            throw Error(Errc::not_ready, describe_channel(name) + " stays locked by a remover");
        }
        std::this_thread::sleep_for(1ms);  // setup path: bounded wait for another process
    }
}

// An open, validated, in-use-locked mapping of a channel.
struct OpenChannel {
    shm::Region region;
    Geometry geometry;
    std::string discarded_leftover;  // on_leftover = fresh: what the removed leftover held
};

OpenChannel open_or_create(const std::string& name, const ChannelOptions& options, Side side) {
    validate_options(name, options);
    const std::string path = shm::region_path(name, L::kChannelFilePrefix);
    shm::AccessPolicy policy{options.mode, options.allowed_owner};
    const std::uint64_t size = L::region_bytes(options.segment_size.value_or(L::kDefaultSegmentSize),
                                               options.segment_count.value_or(L::kDefaultSegmentCount));

    std::string discarded;
    // A leftover that stays busy (held by openers only) this long is opened as it is.
    const std::uint64_t leftover_deadline =
        shm::monotonic_ns() + static_cast<std::uint64_t>(std::max<std::int64_t>(options.ready_timeout.count(), 0));
    for (int attempt = 0; attempt < kMaxRestarts; ++attempt) {
        shm::Region region;
        bool created = false;
        try {
            region = shm::Region::open(path, policy, /*writable=*/true);
        } catch (const Error& error) {
            if (error.code() != std::errc::no_such_file_or_directory) throw;
            // A complete channel, then its name: nobody ever opens a half-made one.
            region = shm::Region::create_unnamed(path, size, policy);
            initialize_header(*static_cast<L::ChannelHeader*>(region.data()), options);
            if (!region.try_lock(L::kInUseLockByte, shm::LockKind::shared)) {
                throw Error::from_errno(EAGAIN, "lock the in-use mark of a new " + describe_channel(name));
            }
            if (!region.link_name()) continue;  // another creator named it first: open theirs
            created = true;
        }

        if (!created) {
            // A channel made by create_unnamed() is ready before it has a name; a file made
            // under its name by other means (an older build, a tool) may not be yet.
            // Wait, bounded, for the creator's ready mark (rule 1). Until the creator has reserved
            // the size the file may be shorter than a header: re-map as it grows.
            auto deadline = std::chrono::steady_clock::now() + options.ready_timeout;
            while (true) {
                if (region.size() < region.file_size()) region.remap_whole_file();
                if (region.size() > 0 && region.size() < L::kHeaderBytes) {
                    // A creator reserves the whole size in one step: a short file is damaged.
                    throw Error(Errc::corrupt, describe_channel(name) + " at " + path + ": file of " +
                                                   std::to_string(region.size()) +
                                                   " bytes is smaller than a header (" + std::to_string(L::kHeaderBytes) + ")");
                }
                if (region.size() >= L::kHeaderBytes) {
                    auto* header = static_cast<const L::ChannelHeader*>(region.data());
                    if (L::load_acquire(header->identity.abi_version) != 0) break;
                }
                if (std::chrono::steady_clock::now() >= deadline) {
                    bool creator_alive = region.lock_held_by_other(L::kCreatingLockByte, shm::LockKind::shared);
                    throw Error(Errc::not_ready,
                                describe_channel(name) + " at " + path +
                                    (creator_alive ? " is still being created by a live process after the "
                                                     "ready timeout"
                                                   : " was left half-created (no ready mark, no live creator); "
                                                     "remove it with 'shm-inspect gc'"));
                }
                std::this_thread::sleep_for(1ms);  // setup path: bounded wait for another process
            }
            lock_in_use(region, name, options.ready_timeout);
            region.remap_whole_file();
        }

        auto* header = static_cast<L::ChannelHeader*>(region.data());
        Geometry geometry;
        std::string problem = check_identity(*header, region.size(), geometry);
        if (!problem.empty()) {
            throw Error(classify_identity_error(*header, region.size()),
                        describe_channel(name) + " at " + path + ": " + problem);
        }
        // Removed while we opened it? Start over on a fresh file (see the file comment). A
        // removal mark on a file still linked is a remover that died before its unlink: finish
        // its job, then start over. Any other value is damage, never a reason to drop the data.
        // (check_identity refused any other non-zero value.)
        if (L::load_relaxed(header->control.removed) == L::kRemovedMark) {
            region.unlink_if_same_file();
            continue;
        }
        if (region.unlinked_or_replaced()) continue;
        // Before the geometry checks: a leftover of another geometry or framing is replaced too.
        if (!created && options.on_leftover == OnLeftover::fresh) {
            LeftoverCheck leftover = discard_if_leftover(region);
            if (leftover.outcome == LeftoverCheck::Outcome::discarded) {
                discarded = std::move(leftover.what);
                continue;  // removed: create a fresh one (or open a racing creator's)
            }
            if (leftover.outcome == LeftoverCheck::Outcome::busy && shm::monotonic_ns() < leftover_deadline) {
                // Another opener holds it and no side does yet: let go, look again. Staggered by
                // pid so that two openers deciding the same thing do not keep colliding.
                std::this_thread::sleep_for(std::chrono::microseconds(500 + ::getpid() % 1000));  // setup path
                --attempt;  // bounded by the deadline, not by kMaxRestarts
                continue;
            }
        }

        if (options.segment_size && *options.segment_size != geometry.segment_size) {
            throw Error(Errc::geometry_mismatch,
                        describe_channel(name) + " exists with segment size " +
                            std::to_string(geometry.segment_size) + ", not " + std::to_string(*options.segment_size));
        }
        if (options.segment_count && *options.segment_count != geometry.segment_count) {
            throw Error(Errc::geometry_mismatch,
                        describe_channel(name) + " exists with " + std::to_string(geometry.segment_count) +
                            " segments, not " + std::to_string(*options.segment_count));
        }
        if (options.consumers && *options.consumers != geometry.consumer_slots) {
            throw Error(Errc::geometry_mismatch,
                        describe_channel(name) + " exists with " + std::to_string(geometry.consumer_slots) +
                            " consumer slots, not " + std::to_string(*options.consumers));
        }
        if (static_cast<std::uint32_t>(options.framing) != geometry.framing) {
            // Tell a peer that waits for this side that it will not come (framing_refusal.hpp).
            mark_framing_refusal(region, side == Side::producer, static_cast<std::uint32_t>(options.framing));
            auto framing_name = [](std::uint32_t f) { return f == 1 ? "raw bytes" : "records"; };
            throw Error(Errc::framing_mismatch,
                        describe_channel(name) + " carries " + framing_name(geometry.framing) + ", not " +
                            framing_name(static_cast<std::uint32_t>(options.framing)));
        }
        return OpenChannel{std::move(region), geometry, std::move(discarded)};
    }
    throw Error(Errc::not_ready, describe_channel(name) + ": removed again on every one of " +
                                     std::to_string(kMaxRestarts) + " attempts to open it");
}

// Producer: a gate file mapped because a consumer slot's link names it (notify_consumer).
struct MappedGate {
    std::unique_ptr<shm::Region> region;
    L::GateHeader* gate = nullptr;  // null: not mapped (no link, or it failed validation)
    std::uint32_t index = 0;        // the channel's bit in the gate
    std::uint64_t generation = 0;   // of the link it was mapped for (links start at 2)
};
// A generation no writer leaves behind (odd and past any count of links): map again next time.
constexpr std::uint64_t kRetryMap = ~std::uint64_t{0};

}  // namespace

class Attached {
public:
    Attached(std::string name, const ChannelOptions& options, Side side)
        : name_(std::move(name)), options_(options), side_(side) {
        OpenChannel open = open_or_create(name_, options_, side_);
        region_ = std::move(open.region);
        geometry_ = open.geometry;
        discarded_leftover_ = std::move(open.discarded_leftover);
        header_ = static_cast<L::ChannelHeader*>(region_.data());
        segments_ = static_cast<std::byte*>(region_.data()) + L::kHeaderBytes;
        capacity_ = L::segment_payload_capacity(geometry_.segment_size);
        attach();
        framing_refusals_seen_ = L::load_acquire(header_->control.framing_refusals);  // only later ones count
    }

    ~Attached() { detach(); }

    // ---- producer ------------------------------------------------------------------------------

    Status try_acquire(WritableSegment& out) {
        if (ended_) return fail(Status::invalid_call, "the stream has ended");
        if (!holding_) {
            if (position_ - cached_peer_ >= geometry_.segment_count) {
                std::uint64_t released = 0;
                if (Status status = load_slowest_release(released); status != Status::ok) return status;
                if (position_ - released >= geometry_.segment_count) return Status::would_block;
            }
            L::SegmentHeader& segment = segment_header(position_);
            holding_ = true;
            if (std::exchange(first_acquire_, false) && resume_segment(segment)) {
                // A segment a dead producer had started: keep its committed records.
            } else {
                // Rule 2 (partial reads): a reader that acquires `sequence` == position sees
                // this lap's reset metadata and committed_bytes.
                L::store_relaxed(segment.committed_bytes, 0u);
                L::store_relaxed(segment.flags, 0u);
                L::store_relaxed(segment.record_count, 0u);
                L::store_relaxed(segment.first_record_offset, 0u);
                L::store_relaxed(segment.checksum, 0u);
                L::store_relaxed(segment.producer_epoch, static_cast<std::uint32_t>(epoch_));
                // Read only by a successor that finds `sequence` == this position (resume_view).
                L::store_relaxed(segment.first_record_ordinal, record_ordinal_);
                L::store_release(segment.sequence, position_);
                // Rule 2b: no flush of this position yet, so that a stale word can never match
                // it (its 32-bit tag would again after 2^32 segments). From our own copy: a load
                // of the producer line here would wait for the consumer that polls it.
                if (flushed_word_ != 0) {
                    flushed_word_ = 0;
                    L::store_release(header_->producer.flushed, std::uint64_t{0});
                }
            }
        }
        const L::SegmentHeader& segment = segment_header(position_);
        out.payload = std::span<std::byte>(segment_payload(position_), capacity_);
        out.sequence = position_;
        // Our own stores (or, after resume_segment, checked values).
        out.committed = L::load_relaxed(segment.committed_bytes);
        out.record_count = L::load_relaxed(segment.record_count);
        out.flags = L::load_relaxed(segment.flags);
        out.first_record_offset = L::load_relaxed(segment.first_record_offset);
        return Status::ok;
    }

    // A segment a previous producer took at our position and committed bytes to: what we
    // continue. Each field read once; false if there is none, or it is garbage (started afresh).
    struct Continued {
        std::uint64_t sequence = 0;
        std::uint32_t committed = 0, flags = 0, first_record_offset = 0;
        bool garbage = false;  // taken at our position with committed bytes, but a bad header
    };
    bool continuable(const L::SegmentHeader& segment, Continued& out) const {
        out.sequence = L::load_acquire(segment.sequence);
        out.committed = L::load_acquire(segment.committed_bytes);
        out.flags = L::load_relaxed(segment.flags);
        out.first_record_offset = L::load_relaxed(segment.first_record_offset);
        if (out.sequence != position_ || out.committed == 0) return false;
        out.garbage = out.committed > capacity_ || (out.flags & ~L::kSegmentKnownFlags) ||
                      out.first_record_offset > out.committed;
        return !out.garbage;
    }

    // The first acquire after attach: if the slot holds this position's segment started by a
    // previous producer with committed bytes (a consumer may have read them), continue it.
    bool resume_segment(L::SegmentHeader& segment) {
        Continued continued;
        if (!continuable(segment, continued)) return false;
        // A record that goes on past a full segment ("last record continues") stays flagged: the
        // segment we start next does not continue it, and that is how a reader drops it. On a
        // segment that is not full the flag is damage: cleared, so that no frame is taken for one.
        if (continued.committed != capacity_) {
            L::store_relaxed(segment.flags, continued.flags & ~L::kSegmentRecordContinues);
        }
        L::store_relaxed(segment.producer_epoch, static_cast<std::uint32_t>(epoch_));
        return true;
    }

    // Before the first acquire: the records completed before the segment we will continue (its
    // committed bytes in `out`) or start afresh (`out` empty). See layout.hpp SegmentHeader.
    Status resume_view(SegmentView& out, std::uint64_t& ordinal) {
        out = SegmentView{};
        out.sequence = position_;
        ordinal = 0;
        if (!first_acquire_) return fail(Status::invalid_call, "resume_view after the first acquire");
        const L::SegmentHeader& segment = segment_header(position_);
        Continued continued;
        if (continuable(segment, continued)) {
            out.payload = std::span<const std::byte>(segment_payload(position_), continued.committed);
            out.flags = continued.flags;
            out.first_record_offset = continued.first_record_offset;
        } else if (continued.garbage) {
            return fail(Status::corrupt, "segment " + std::to_string(position_) +
                                             " left by the previous producer has a bad header: its records cannot be counted");
        }
        if (continued.sequence == position_) {
            // Taken by the previous producer (or never, at position 0 of a fresh file: zeros). Its
            // first ordinal was stored before the sequence we acquired.
            ordinal = L::load_relaxed(segment.first_record_ordinal);
            if (position_ == 0 || geometry_.segment_count == 1) return Status::ok;
            // The segment before it is still in its slot (we have not taken this one): they agree.
            const L::SegmentHeader& previous = segment_header(position_ - 1);
            std::uint64_t end = L::load_relaxed(previous.end_record_ordinal);
            if (L::load_relaxed(previous.sequence) == position_ - 1 && end == ordinal) return Status::ok;
            return fail(Status::corrupt, "segment " + std::to_string(position_) + " starts at record " + std::to_string(ordinal) +
                                             ", segment " + std::to_string(position_ - 1) + " ends at record " + std::to_string(end));
        }
        if (position_ == 0) return Status::ok;
        // Not taken yet: the published segment before it still holds its end ordinal (stored
        // before `published`, which we acquired at attach), also when it shares the slot (one
        // segment) and the previous producer died resetting it, which leaves that field alone.
        const L::SegmentHeader& previous = segment_header(position_ - 1);
        std::uint64_t sequence = L::load_acquire(previous.sequence);
        std::uint64_t first = L::load_relaxed(previous.first_record_ordinal);
        ordinal = L::load_relaxed(previous.end_record_ordinal);
        if (sequence == position_ - 1 && (geometry_.segment_count == 1 || first <= ordinal)) return Status::ok;
        return fail(Status::corrupt, "published segment " + std::to_string(position_ - 1) + " carries sequence " +
                                         std::to_string(sequence) + " and records " + std::to_string(first) + " to " +
                                         std::to_string(ordinal));
    }

    void set_record_ordinal(std::uint64_t completed) noexcept { record_ordinal_ = completed; }

    Status commit(std::uint32_t bytes) {
        if (!holding_) return fail(Status::invalid_call, "commit without an acquired segment");
        if (bytes > capacity_) return fail(Status::invalid_call, "commit beyond the segment's capacity");
        // Rule 2: release the payload bytes written so far to a partial reader.
        L::store_release(segment_header(position_).committed_bytes, bytes);
        return Status::ok;
    }

    Status commit(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                  std::uint32_t first_record_offset) {
        if (!holding_) return fail(Status::invalid_call, "commit without an acquired segment");
        if (bytes > capacity_ || first_record_offset > bytes || (flags & ~L::kSegmentKnownFlags)) {
            return fail(Status::invalid_call, "commit with out-of-range metadata");
        }
        L::SegmentHeader& segment = segment_header(position_);
        L::store_relaxed(segment.flags, flags);
        L::store_relaxed(segment.record_count, record_count);
        L::store_relaxed(segment.first_record_offset, first_record_offset);
        // Rule 2: the release of committed_bytes publishes the metadata above with the bytes.
        L::store_release(segment.committed_bytes, bytes);
        return Status::ok;
    }

    // Rule 3: acquire every consumer slot's release before reusing segments; the slowest slot
    // bounds the producer. Each value is checked against our own position.
    Status load_slowest_release(std::uint64_t& slowest) {
        slowest = position_;
        for (std::uint32_t i = 0; i < geometry_.consumer_slots; ++i) {
            std::uint64_t released = L::load_acquire(header_->consumers[i].position.released);
            if (released > position_ || position_ - released > geometry_.segment_count) {
                return fail(Status::corrupt, "consumer slot " + std::to_string(i) + " position " + std::to_string(released) +
                                                 " is outside [" + std::to_string(position_ - std::min<std::uint64_t>(position_, geometry_.segment_count)) +
                                                 ", " + std::to_string(position_) + "]");
            }
            slowest = std::min(slowest, released);
        }
        // Every slot's release only grows, so the slowest does too: a smaller one is damage, and
        // trusting it would have us wait for credits that were already given.
        if (slowest < cached_peer_) {
            return fail(Status::corrupt, "consumer release went back from " + std::to_string(cached_peer_) + " to " +
                                             std::to_string(slowest));
        }
        cached_peer_ = slowest;
        return Status::ok;
    }

    std::uint32_t free_segments() {
        std::uint64_t released = 0;
        if (load_slowest_release(released) != Status::ok) return 0;
        std::uint64_t used = position_ - released + (holding_ ? 1 : 0);
        return used >= geometry_.segment_count ? 0 : static_cast<std::uint32_t>(geometry_.segment_count - used);
    }

    // A flush: hands the committed bytes of the held segment to a waiting consumer through the
    // flush word (rule 2b), then wakes it if it sleeps.
    void wake_consumer() {
        if (holding_) {
            std::uint32_t committed = L::load_relaxed(segment_header(position_).committed_bytes);  // our own store
            std::uint64_t word = L::make_tagged_word(position_, committed);
            // Release: pairs with the consumer's acquire in poll_view; the payload and the
            // committed_bytes store before it are visible to a consumer that sees the word.
            if (committed != 0 && flushed_word_ != word) {
                flushed_word_ = word;
                L::store_release(header_->producer.flushed, word);
            }
        }
        notify_consumer();
    }

    bool publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset) {
        L::PriorityLane& lane = header_->priority_lane;
        std::uint64_t sequence = L::load_relaxed(lane.event.sequence);  // our own field
        if (L::load_acquire(lane.acknowledged) != sequence) return false;  // not taken yet
        // The consumer reads these only after acquiring the new sequence, and we write them only
        // after it acknowledged the last one: no concurrent access.
        lane.event.kind = static_cast<std::uint32_t>(L::FrameKind::barrier);
        lane.event.checkpoint_id = checkpoint_id;
        lane.event.segment = segment;
        lane.event.offset = offset;
        L::store_release(lane.event.sequence, sequence + 1);
        priority_pending_ = true;
        notify_consumer();
        priority_pending_ = false;
        return true;
    }

    bool take_priority(std::uint64_t& checkpoint_id) {
        L::PriorityLane& lane = header_->priority_lane;
        std::uint64_t sequence = L::load_acquire(lane.event.sequence);
        std::uint64_t acknowledged = L::load_relaxed(lane.acknowledged);  // our own field
        if (sequence == acknowledged) return false;
        std::uint32_t kind = lane.event.kind;
        std::uint64_t id = lane.event.checkpoint_id;
        L::store_release(lane.acknowledged, sequence);
        if (kind != static_cast<std::uint32_t>(L::FrameKind::barrier)) return false;  // unknown: ignored
        checkpoint_id = id;
        return true;
    }

    // After a publish (or a flush): wake each slot's consumer if it sleeps. A slot that a gate
    // consumes gets its bit set in that gate, and the gate's consumer is woken instead.
    void notify_consumer() {
        for (std::uint32_t i = 0; i < geometry_.consumer_slots; ++i) {
            const L::GateLink& link = header_->gate_links[i];
            MappedGate& mapped = gates_[i];
            if (L::load_acquire(link.linked) != 0) {
                // Acquire: pairs with the link writer's release of an even generation (set_gate_link).
                std::uint64_t generation = L::load_acquire(link.generation);
                if (generation != mapped.generation) map_gate(i, generation);
                if (mapped.gate) {
                    notify_gate(mapped);
                    continue;
                }
            } else if (mapped.gate) {
                mapped = MappedGate{};  // unlinked: drop the gate's mapping (once per unlink)
            }
            wake_if_sleeping(header_->consumers[i].wake.sleeping, header_->producer_counters.wake_syscalls);
        }
    }

    // Rule 5 with a gate's futex word: our bit, then the sleeping word.
    void notify_gate(const MappedGate& mapped) {
        L::GateHeader& gate = *mapped.gate;
        const std::uint64_t bit = std::uint64_t{1} << (mapped.index % 64);
        // Release: a gate consumer that takes the bit (acquire exchange) sees our publish.
        L::atomic(gate.ready[mapped.index / 64]).fetch_or(bit, std::memory_order_seq_cst);
        if (priority_pending_) L::atomic(gate.priority[mapped.index / 64]).fetch_or(bit, std::memory_order_seq_cst);
        if (detail::wake_if_sleeping(gate.sleeping)) {  // rule 5 with the gate's word
            L::atomic(gate.wake_syscalls).fetch_add(1, std::memory_order_relaxed);
            L::counter_add(header_->producer_counters.wake_syscalls, std::uint64_t{1});
        }
    }

    // Maps the gate that slot `slot`'s link names (once per link generation). Every field comes
    // from shared memory: the link is a seqlock (set_gate_link), so an odd generation (a link
    // being written, or its writer died mid-write) maps nothing and one that changed while we
    // copied is retried at the next notify; the name is validated, the gate file checked like a
    // channel's. On any problem we notify the slot's own word instead (the gate then sees the
    // data at its periodic rescan).
    void map_gate(std::uint32_t slot, std::uint64_t generation) {
        MappedGate& mapped = gates_[slot];
        mapped = MappedGate{};
        mapped.generation = generation;
        if (generation % 2 != 0) return;
        const L::GateLink& link = header_->gate_links[slot];
        std::uint64_t words[L::kGateNameWords];
        for (std::size_t w = 0; w < std::size(words); ++w) words[w] = L::load_relaxed(link.gate_name[w]);
        std::uint32_t index = L::load_relaxed(link.index);
        // Acquire fence: if the copy above read any byte of a newer link, the load below sees
        // that link's odd generation (its writer's release fence precedes those bytes).
        std::atomic_thread_fence(std::memory_order_acquire);
        if (L::load_relaxed(link.generation) != generation) {
            mapped.generation = kRetryMap;
            return;
        }
        char name[sizeof words];
        std::memcpy(name, words, sizeof name);
        name[sizeof name - 1] = '\0';
        std::string_view gate_name(name);
        if (gate_name.size() > L::kMaxGateNameLength || !shm::is_valid_name(gate_name)) return;
        try {
            auto region = std::make_unique<shm::Region>(shm::Region::open(
                shm::region_path(gate_name, L::kGateFilePrefix), {options_.mode, options_.allowed_owner}, /*writable=*/true));
            if (region->size() < L::kGateBytes) return;
            auto* gate = static_cast<L::GateHeader*>(region->data());
            if (L::load_acquire(gate->abi_version) != L::kAbiVersion || L::load_relaxed(gate->magic) != L::kGateMagic) return;
            std::uint32_t count = L::load_relaxed(gate->channel_count);
            if (count > L::kMaxGateChannels || index >= count) return;
            mapped.index = index;
            mapped.gate = gate;
            mapped.region = std::move(region);
        } catch (...) {  // no exception leaves the hot path: the slot's own word is woken instead
        }
    }

    void set_buffer_timeout(std::chrono::nanoseconds timeout) {
        L::store_relaxed(header_->producer.buffer_timeout_ns,
                         static_cast<std::uint64_t>(std::max<std::int64_t>(0, timeout.count())));
    }

    void add_written(std::uint64_t records, std::uint64_t events) {
        if constexpr (!kHotCounters) return;
        auto& counters = header_->producer_counters;
        if (records) L::counter_add(counters.records_written, records);
        if (events) L::counter_add(counters.events_written, events);
    }

    Status publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                   std::uint32_t first_record_offset, std::uint32_t checksum) {
        if (!holding_) return fail(Status::invalid_call, "publish without an acquired segment");
        if (bytes > capacity_) {
            return fail(Status::invalid_call, "publish of " + std::to_string(bytes) + " bytes exceeds the payload capacity " +
                                                  std::to_string(capacity_));
        }
        if (flags & ~L::kSegmentKnownFlags) return fail(Status::invalid_call, "unknown segment flags");
        L::SegmentHeader& segment = segment_header(position_);
        // Relaxed stores (a partial reader may load them concurrently); rule 2's release of
        // committed_bytes and of `published` below publishes them.
        L::store_relaxed(segment.record_count, record_count);
        L::store_relaxed(segment.flags, flags);
        L::store_relaxed(segment.checksum, checksum);
        L::store_relaxed(segment.first_record_offset, first_record_offset);
        // Read only by a successor that acquires `published` past this segment (resume_view).
        L::store_relaxed(segment.end_record_ordinal, record_ordinal_);
        L::store_release(segment.committed_bytes, bytes);
        ++position_;
        holding_ = false;
        // Rule 2: hand the segment over.
        L::store_release(header_->producer.published, position_);
        if constexpr (kHotCounters) {
            auto& counters = header_->producer_counters;
            L::counter_add(counters.segments_published, std::uint64_t{1});
            L::counter_add(counters.bytes_written, std::uint64_t{bytes});
            L::store_relaxed(counters.last_publish_realtime_ns, shm::realtime_coarse_ns());  // display: coarse is enough
        }
        notify_consumer();
        return Status::ok;
    }

    Status end_stream() {
        if (ended_) return Status::ok;
        if (holding_) {
            // A held segment with committed bytes is published; an empty one is dropped.
            const L::SegmentHeader& segment = segment_header(position_);
            std::uint32_t committed = L::load_relaxed(segment.committed_bytes);
            if (committed > 0) {
                Status status = publish(committed, L::load_relaxed(segment.flags), L::load_relaxed(segment.record_count),
                                        L::load_relaxed(segment.first_record_offset), 0);
                if (status != Status::ok) return status;
            } else {
                holding_ = false;
            }
        }
        // Rule 4: after the last publish.
        L::store_release(header_->producer.end_of_stream, 1u);
        ended_ = true;
        notify_consumer();
        return Status::ok;
    }

    // ---- consumer ------------------------------------------------------------------------------

    Status try_read(ReadableSegment& out) {
        if (holding_) {
            Status status = release();
            if (status != Status::ok) return status;
        }
        if (position_ == cached_peer_) {
            Status status = refresh_published();
            if (status != Status::ok) return status;
            if (position_ == cached_peer_) {
                // Rule 4: end of stream makes `published` final; re-load it after the acquire.
                if (L::load_acquire(header_->producer.end_of_stream) != 0) {
                    status = refresh_published();
                    if (status != Status::ok) return status;
                    if (position_ == cached_peer_) return Status::end_of_stream;
                } else {
                    // Nothing yet: fetch the next segment's header and first payload line while
                    // we wait. The producer writes them before `published`, so by the time we see
                    // `published` they are usually here: one cache-line transfer on the critical
                    // path instead of two in a row (64 B ping-pong p50 0.27 -> 0.23 us). A
                    // prefetch is only a hint: nothing is read from it before the acquire. It
                    // takes those two lines from a producer filling that segment (two transfers
                    // per segment at most; the 64 B and 32 KiB streams measured no change).
                    __builtin_prefetch(&segment_header(position_));
                    __builtin_prefetch(segment_payload(position_));
                    return Status::would_block;
                }
            }
        }
        const L::SegmentHeader& segment = segment_header(position_);
        // One read of each field into a local; only the locals are checked and used.
        std::uint32_t committed = L::load_acquire(segment.committed_bytes);
        std::uint64_t sequence = L::load_relaxed(segment.sequence);
        std::uint32_t flags = L::load_relaxed(segment.flags);
        std::uint32_t record_count = L::load_relaxed(segment.record_count);
        std::uint32_t first_record_offset = L::load_relaxed(segment.first_record_offset);
        std::uint32_t checksum = L::load_relaxed(segment.checksum);
        if (sequence != position_) {
            return fail(Status::corrupt, "segment " + std::to_string(position_) + " (slot " +
                                             std::to_string(position_ % geometry_.segment_count) +
                                             ") carries sequence " + std::to_string(sequence));
        }
        if (committed > capacity_) {
            return fail(Status::corrupt, "segment " + std::to_string(position_) + " claims " +
                                             std::to_string(committed) + " bytes, capacity is " +
                                             std::to_string(capacity_));
        }
        if (flags & ~L::kSegmentKnownFlags) {
            return fail(Status::corrupt, "segment " + std::to_string(position_) + " has unknown flags " +
                                             std::to_string(flags));
        }
        if (first_record_offset > committed) {
            return fail(Status::corrupt, "segment " + std::to_string(position_) + " first record offset " +
                                             std::to_string(first_record_offset) + " beyond its " +
                                             std::to_string(committed) + " bytes");
        }
        out.payload = std::span<const std::byte>(segment_payload(position_), committed);
        out.sequence = position_;
        out.flags = flags;
        out.record_count = record_count;
        out.checksum = checksum;
        out.first_record_offset = first_record_offset;
        held_bytes_ = committed;
        holding_ = true;
        return Status::ok;
    }

    Status release() {
        if (!holding_) return fail(Status::invalid_call, "release without a read segment");
        holding_ = false;
        // The segment read last is position_ < published: within release_until's range.
        return release_until(position_ + 1, 0, 0, ReadProgress{held_bytes_, 0, 0});
    }

    // ---- consumer: records-layer hooks -----------------------------------------------------------

    std::uint64_t* resume_point_field() noexcept { return &consumer_line().resume_point; }

    ResumePoint resume_point() const { return resume_; }

    Status try_view(std::uint64_t position, SegmentView& out) {
        if (position < position_ || position - position_ >= geometry_.segment_count) {
            return fail(Status::invalid_call, "view of segment " + std::to_string(position) + " outside the ring");
        }
        if (position >= cached_peer_) {
            Status status = refresh_published();
            if (status != Status::ok) return status;
        }
        const L::SegmentHeader& segment = segment_header(position);
        bool sealed = position < cached_peer_;
        if (!sealed) {
            // The segment being filled (rule 2, partial reads): trust committed_bytes only
            // after acquiring this lap's sequence.
            const std::uint64_t lap = L::load_acquire(segment.sequence);
            if (lap != position) {
                // Not taken for this lap yet: the slot still holds the last lap's sequence (or 0,
                // never used). Anything else is damage that would have us wait forever.
                const std::uint64_t count = geometry_.segment_count;
                const bool last_lap = position >= count ? lap == position - count : lap == 0;
                if (!last_lap) {
                    return fail(Status::corrupt, "segment " + std::to_string(position) + " being filled carries sequence " +
                                                     std::to_string(lap));
                }
                if (L::load_acquire(header_->producer.end_of_stream) != 0) {
                    Status status = refresh_published();
                    if (status != Status::ok) return status;
                    if (position >= cached_peer_) return Status::end_of_stream;
                    sealed = true;
                } else {
                    return Status::would_block;
                }
            }
        }
        std::uint32_t committed = L::load_acquire(segment.committed_bytes);
        std::uint64_t sequence = L::load_relaxed(segment.sequence);
        std::uint32_t flags = L::load_relaxed(segment.flags);
        std::uint32_t record_count = L::load_relaxed(segment.record_count);
        std::uint32_t first_record_offset = L::load_relaxed(segment.first_record_offset);
        std::uint32_t checksum = L::load_relaxed(segment.checksum);
        std::uint32_t epoch = L::load_relaxed(segment.producer_epoch);
        if (sequence != position) {
            if (!sealed) return Status::would_block;  // the producer moved on to a new lap: impossible
                                                      // without our release, so treat as not there yet
            return fail(Status::corrupt, "segment " + std::to_string(position) + " carries sequence " +
                                             std::to_string(sequence));
        }
        if (!sealed && (committed == 0 || first_record_offset > committed)) {
            // Being filled: nothing committed yet, or metadata stored for a commit whose release
            // of committed_bytes we have not seen yet. Not there yet, not corrupt.
            return Status::would_block;
        }
        if (committed > capacity_ || (flags & ~L::kSegmentKnownFlags) || first_record_offset > committed) {
            return fail(Status::corrupt, "segment " + std::to_string(position) + " (slot " +
                                             std::to_string(position % geometry_.segment_count) +
                                             ") has committed " + std::to_string(committed) + ", flags " +
                                             std::to_string(flags) + ", first record at " +
                                             std::to_string(first_record_offset) + ": out of range");
        }
        out.payload = std::span<const std::byte>(segment_payload(position), committed);
        out.sequence = position;
        out.sealed = sealed;
        out.flags = flags;
        out.record_count = record_count;
        out.first_record_offset = first_record_offset;
        out.checksum = checksum;
        out.producer_epoch = epoch;
        return Status::ok;
    }

    // Rule 2b: what a waiting records reader polls. A newly published segment, or any look when
    // `eager`, reads the segment header (try_view); otherwise only the producer line is loaded:
    // `published`, then the flush word, which extends an unsealed view we already hold.
    Status poll_view(std::uint64_t position, SegmentView& out, bool eager) {
        if (eager || position < cached_peer_) return try_view(position, out);
        std::uint64_t published = L::load_acquire(header_->producer.published);
        if (published != cached_peer_ || L::load_relaxed(header_->producer.end_of_stream) != 0) {
            return try_view(position, out);  // try_view validates and caches the new position
        }
        // Acquire: pairs with the release in wake_consumer (the payload and header before it).
        std::uint64_t word = L::load_acquire(header_->producer.flushed);
        std::uint64_t tagged = 0, committed = 0;
        if (!L::decode_tagged_word(word, position, position, tagged, committed)) return Status::would_block;
        if (committed > capacity_) {
            return fail(Status::corrupt, "flush word of segment " + std::to_string(position) + " claims " +
                                             std::to_string(committed) + " bytes, capacity is " +
                                             std::to_string(capacity_));
        }
        // A segment we have no view of yet: read its header once (the flush says there is data).
        if (out.sequence != position || out.payload.empty() || out.sealed) return try_view(position, out);
        if (committed <= out.payload.size()) return Status::would_block;
        // The metadata of an unsealed segment does not change until it is published, so the
        // view's flags and offsets stay valid; only the count grows.
        out.payload = std::span<const std::byte>(segment_payload(position), committed);
        return Status::ok;
    }

    Status release_until(std::uint64_t position, std::uint64_t resume_offset, std::uint64_t in_flight,
                         const ReadProgress& progress) {
        if (position < position_ || position > cached_peer_) {
            return fail(Status::invalid_call, "release up to " + std::to_string(position) + " outside [" +
                                                  std::to_string(position_) + ", " + std::to_string(cached_peer_) + "]");
        }
        L::ConsumerLine& line = consumer_line();
        // The resume point first, tagged with its position: a consumer that dies between these
        // stores and `released` leaves them describing `position`, and the next one resumes
        // there (layout.hpp, make_tagged_word); the in-flight size goes with it.
        L::store_relaxed(line.resume_point, L::make_tagged_word(position, resume_offset));
        L::store_relaxed(line.in_flight_record_bytes, in_flight);
        auto& counters = consumer_slot().counters;
        if constexpr (kHotCounters) {
            if (progress.bytes) L::counter_add(counters.bytes_read, progress.bytes);
            if (progress.records) L::counter_add(counters.records_read, progress.records);
            if (progress.events) L::counter_add(counters.events_read, progress.events);
        }
        if (position == position_) return Status::ok;
        if constexpr (kHotCounters) L::counter_add(counters.segments_released, position - position_);
        position_ = position;
        // Rule 3.
        L::store_release(line.released, position_);
        if constexpr (kHotCounters) L::store_relaxed(counters.last_release_realtime_ns, shm::realtime_coarse_ns());
        wake_if_sleeping(header_->producer.sleeping, counters.wake_syscalls);
        return Status::ok;
    }

    // Gates: the consumer side writes its slot's link (we hold the slot's lock: one writer).
    // A seqlock over the name and index: the generation is odd while they change, even (and new)
    // once they are complete; producers map a gate only for an even generation that did not
    // change while they copied (map_gate).
    void set_gate_link(std::string_view gate_name, std::uint32_t index) {
        L::GateLink& link = header_->gate_links[slot_];
        std::uint64_t generation = L::load_relaxed(link.generation);  // our own field
        generation += generation % 2 == 0 ? 1 : 2;                    // odd: being written
        L::store_relaxed(link.generation, generation);
        // Release fence: a producer that reads any byte stored below sees the odd generation
        // after its acquire fence.
        std::atomic_thread_fence(std::memory_order_release);
        std::uint64_t words[L::kGateNameWords] = {};
        std::memcpy(words, gate_name.data(), std::min(gate_name.size(), sizeof words - 1));
        for (std::size_t w = 0; w < std::size(words); ++w) L::store_relaxed(link.gate_name[w], words[w]);
        L::store_relaxed(link.index, index);
        // Release: the name and index above are complete for a producer that acquires the even
        // generation.
        L::store_release(link.generation, generation + 1);
        L::store_release(link.linked, 1u);
    }
    void clear_gate_link() { L::store_release(header_->gate_links[slot_].linked, 0u); }

    // Park limit of a records reader: the producer's buffer timeout, within [1 ms, liveness].
    std::uint64_t buffer_timeout_park_limit() const {
        std::uint64_t timeout = L::load_relaxed(header_->producer.buffer_timeout_ns);
        std::uint64_t interval = static_cast<std::uint64_t>(options_.liveness_interval.count());
        if (timeout == 0 || timeout > interval) return interval;
        return std::max<std::uint64_t>(timeout, 1'000'000);
    }

    // ---- waiting -------------------------------------------------------------------------------

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
            Status peer = check_peer();
            if (peer != Status::would_block) {
                eager = true;
                status = attempt();  // anything published before the death comes first
                return status == Status::would_block ? peer : status;
            }
        }
        const std::uint64_t start = shm::monotonic_ns();
        const std::uint64_t deadline = timeout_ns == kNoDeadline ? kNoDeadline : start + timeout_ns;
        const detail::WaitWords words =
            side_ == Side::producer
                ? detail::WaitWords{header_->producer.sleeping, header_->producer_counters.parks,
                                    header_->producer_counters.waiting_since_ns, header_->producer_counters.backpressured_ns}
                : detail::WaitWords{consumer_slot().wake.sleeping, consumer_slot().counters.parks,
                                    consumer_slot().counters.waiting_since_ns, consumer_slot().counters.idle_ns};
        const std::uint64_t interval = static_cast<std::uint64_t>(options_.liveness_interval.count());
        // The interval runs from our last check, not from this wait's start: a wait that ends
        // with data and the next one must not push the check of a dead peer out by another
        // interval each (a producer that dies after an unflushed commit was reported after two).
        const detail::WaitPlan plan{options_.wait, static_cast<std::uint64_t>(options_.spin_budget.count()), interval,
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
        return detail::spin_then_park(words, plan, spin_rate_, start, deadline,
                                      [&](bool look_eagerly) {
                                          eager = look_eagerly;
                                          return attempt();
                                      },
                                      backstop);
    }

    std::uint64_t timeout_ns(std::chrono::nanoseconds timeout) const {
        if (timeout.count() <= 0) return 0;
        return static_cast<std::uint64_t>(timeout.count());
    }

    // ---- liveness ------------------------------------------------------------------------------

    // Consumer side: the producer's lock is held. Producer side: every consumer slot's is.
    bool peer_alive() const {
        if (side_ == Side::consumer) return region_.lock_held_by_other(L::kProducerLockByte, shm::LockKind::shared);
        for (std::uint32_t i = 0; i < geometry_.consumer_slots; ++i) {
            if (!region_.lock_held_by_other(L::kConsumerLockByte + i, shm::LockKind::shared)) return false;
        }
        return true;
    }

    // would_block: keep waiting (peer alive, or never had one); peer_died; corrupt.
    Status check_peer() {
        if (side_ == Side::producer && geometry_.consumer_slots > 1) return check_slowest_consumers();
        const L::Attachment& peer = side_ == Side::producer ? consumer_slot().attachment : header_->producer_attachment;
        std::uint64_t attaches = L::load_relaxed(peer.attach_count);
        if (peer_alive()) {
            peer_known_dead_ = false;
            return Status::would_block;
        }
        if (attaches == 0) return Status::would_block;  // never had a peer: wait for one
        peer_known_dead_ = true;
        bool detached = L::load_relaxed(peer.attached) == 0;
        last_error_ = std::string(side_ == Side::producer ? "consumer" : "producer") + " of " +
                      describe_channel(name_) + (detached ? " detached" : " died");
        return Status::peer_died;
    }

    // Broadcast: the producer waits on the slowest slots. One that never had a consumer is
    // waited for; one whose consumer died is reported.
    Status check_slowest_consumers() {
        for (std::uint32_t i = 0; i < geometry_.consumer_slots; ++i) {
            const L::ConsumerSlot& slot = header_->consumers[i];
            if (L::load_acquire(slot.position.released) != cached_peer_) continue;
            if (L::load_relaxed(slot.attachment.attach_count) == 0) continue;
            if (region_.lock_held_by_other(L::kConsumerLockByte + i, shm::LockKind::shared)) continue;
            peer_known_dead_ = true;
            last_error_ = "consumer in slot " + std::to_string(i) + " of " + describe_channel(name_) +
                          (L::load_relaxed(slot.attachment.attached) == 0 ? " detached" : " died");
            return Status::peer_died;
        }
        peer_known_dead_ = false;
        return Status::would_block;
    }

    Status check_peer_and_header() {
        Geometry now;
        std::string problem = check_identity(*header_, region_.size(), now);
        if (problem.empty() && (now.segment_size != geometry_.segment_size ||
                                now.segment_count != geometry_.segment_count || now.framing != geometry_.framing)) {
            problem = "geometry changed under us";
        }
        if (!problem.empty()) return fail(Status::corrupt, "header: " + problem);
        // The positions we wait on: damage there must end the wait, not prolong it.
        if (side_ == Side::consumer) {
            const std::uint64_t published = L::load_acquire(header_->producer.published);
            if (published < cached_peer_ || published - position_ > geometry_.segment_count) {
                return fail(Status::corrupt, "producer position " + std::to_string(published) + " is outside [" +
                                                 std::to_string(cached_peer_) + ", " +
                                                 std::to_string(position_ + geometry_.segment_count) + "]");
            }
        } else if (!ended_) {
            std::uint64_t released = 0;
            if (Status status = load_slowest_release(released); status != Status::ok) return status;
        }
        if (Status refused = check_framing_refusal(); refused != Status::would_block) return refused;
        return check_peer();
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
        if (as_producer == (side_ == Side::producer)) return Status::would_block;  // our own side: not our peer
        auto framing_name = [](std::uint32_t f) { return f == 1 ? "raw bytes" : f == 2 ? "records" : "an unknown framing"; };
        return fail(Status::incompatible, std::string("a ") + (as_producer ? "producer" : "consumer") +
                                              " was refused: it asked for " + framing_name(refused & 0xff) +
                                              ", the channel carries " + framing_name(geometry_.framing));
    }

    // Waits until a live peer is attached (a live consumer in every slot, for a producer): after
    // peer_died, or before the first one came. Parks on our own `sleeping` word, which a side
    // that attaches wakes (attach(): its lock is taken before that wake, so a waiter that found
    // no lock holder after arming its word is woken); the backstop re-checks the header every
    // liveness interval. ok; timed_out; interrupted (a signal handler ran while we slept);
    // peer_died (a peer attached and went away again before we saw it alive: its attach count
    // moved, which it stores after taking its lock); corrupt (the header failed validation).
    Status wait_for_peer(std::uint64_t timeout_ns) {
        const std::uint64_t attaches_before = peer_attaches();
        auto attempt = [&] {
            if (peer_alive()) {
                peer_known_dead_ = false;
                return Status::ok;
            }
            if (peer_attaches() == attaches_before) return Status::would_block;
            peer_known_dead_ = true;
            last_error_ = std::string(side_ == Side::producer ? "a consumer" : "the producer") + " of " +
                          describe_channel(name_) + " attached and went away again while we waited";
            return Status::peer_died;
        };
        if (attempt() == Status::ok) return Status::ok;
        if (timeout_ns == 0) return Status::timed_out;
        const std::uint64_t start = shm::monotonic_ns();
        const std::uint64_t deadline = timeout_ns == kNoDeadline ? kNoDeadline : start + timeout_ns;
        const detail::WaitWords words =
            side_ == Side::producer
                ? detail::WaitWords{header_->producer.sleeping, header_->producer_counters.parks,
                                    header_->producer_counters.waiting_since_ns, header_->producer_counters.backpressured_ns}
                : detail::WaitWords{consumer_slot().wake.sleeping, consumer_slot().counters.parks,
                                    consumer_slot().counters.waiting_since_ns, consumer_slot().counters.idle_ns};
        const std::uint64_t interval = static_cast<std::uint64_t>(options_.liveness_interval.count());
        // Park at once: a peer attaching is a process starting, not a cache line to spin for.
        const detail::WaitPlan plan{WaitStrategy::park, 0, interval, 0, 0};
        auto backstop = [&] {
            Geometry now;
            std::string problem = check_identity(*header_, region_.size(), now);
            if (!problem.empty()) return fail(Status::corrupt, "header: " + problem);
            return attempt();
        };
        return detail::spin_then_park(words, plan, spin_rate_, start, deadline, [&](bool) { return attempt(); },
                                      backstop);
    }

    // How many times the peer side was attached (every slot's, for a producer): relaxed loads,
    // compared only with an earlier value of ours.
    std::uint64_t peer_attaches() const {
        if (side_ == Side::consumer) return L::load_relaxed(header_->producer_attachment.attach_count);
        std::uint64_t sum = 0;
        for (std::uint32_t i = 0; i < geometry_.consumer_slots; ++i) {
            sum += L::load_relaxed(header_->consumers[i].attachment.attach_count);
        }
        return sum;
    }

    // ---- info ----------------------------------------------------------------------------------

    std::uint32_t capacity() const noexcept { return capacity_; }
    std::uint32_t segment_count() const noexcept { return geometry_.segment_count; }
    std::uint32_t channel_flags() const noexcept { return geometry_.flags; }
    std::uint64_t max_record_bytes() const noexcept { return geometry_.max_record_bytes; }
    const std::string& name() const noexcept { return name_; }
    const std::string& last_error() const noexcept { return last_error_; }
    const std::string& discarded_leftover() const noexcept { return discarded_leftover_; }
    const shm::Region& region() const noexcept { return region_; }
    void remove_file() {
        L::store_relaxed(header_->control.removed, L::kRemovedMark);
        region_.unlink_if_same_file();
    }

private:
    void attach() {
        std::uint64_t lock_byte = L::kProducerLockByte;
        if (side_ == Side::consumer) {
            // A consumer slot: the one asked for, or the first free one.
            const std::uint32_t slots = geometry_.consumer_slots;
            if (options_.consumer_slot && *options_.consumer_slot >= slots) {
                throw Error(Errc::bad_options, describe_channel(name_) + " has " + std::to_string(slots) +
                                                   " consumer slots; slot " + std::to_string(*options_.consumer_slot) +
                                                   " does not exist");
            }
            bool taken = false;
            for (std::uint32_t i = options_.consumer_slot.value_or(0); i < slots && !taken; ++i) {
                if (region_.try_lock(L::kConsumerLockByte + i, shm::LockKind::exclusive)) {
                    slot_ = i;
                    taken = true;
                }
                if (options_.consumer_slot) break;
            }
            if (!taken) {
                std::int32_t pid = L::load_relaxed(header_->consumers[options_.consumer_slot.value_or(0)].attachment.pid);
                throw Error(Errc::side_taken,
                            describe_channel(name_) + " already has a live consumer" +
                                (slots > 1 && !options_.consumer_slot ? " in each of its " + std::to_string(slots) + " slots"
                                                                      : " (pid " + std::to_string(pid) + ")"));
            }
            lock_byte = L::kConsumerLockByte + slot_;
        } else if (!region_.try_lock(lock_byte, shm::LockKind::exclusive)) {
            std::int32_t pid = L::load_relaxed(header_->producer_attachment.pid);
            throw Error(Errc::side_taken, describe_channel(name_) + " already has a live producer (pid " +
                                              std::to_string(pid) + ")");
        }
        L::Attachment& mine = side_ == Side::producer ? header_->producer_attachment : consumer_slot().attachment;
        if (side_ == Side::producer && L::load_acquire(header_->producer.end_of_stream) != 0) {
            region_.unlock(lock_byte);
            throw Error(Errc::stream_ended, describe_channel(name_) +
                                                " has already ended its stream: receive or remove it first");
        }
        // We hold the side's lock: we are the only writer of its fields from here on.
        auto identity = shm::self_identity();
        L::store_relaxed(mine.pid, identity.pid);
        L::store_relaxed(mine.start_time, identity.start_time);
        L::store_relaxed(mine.attach_realtime_ns, shm::realtime_ns());
        epoch_ = L::load_relaxed(mine.attach_count) + 1;
        L::store_relaxed(mine.attach_count, epoch_);
        L::store_relaxed(mine.attached, 1u);

        // Positions: resume where the previous holder of this side left off; check them.
        std::uint64_t published = L::load_acquire(header_->producer.published);
        std::uint64_t released = published;
        for (std::uint32_t i = 0; i < geometry_.consumer_slots; ++i) {
            if (side_ == Side::consumer && i != slot_) continue;
            std::uint64_t slot_released = L::load_acquire(header_->consumers[i].position.released);
            if (slot_released > published || published - slot_released > geometry_.segment_count) {
                region_.unlock(lock_byte);
                throw Error(Errc::corrupt, describe_channel(name_) + ": positions published " + std::to_string(published) +
                                               " and released " + std::to_string(slot_released) + " (slot " +
                                               std::to_string(i) + ") are inconsistent");
            }
            released = std::min(released, slot_released);
        }
        if (side_ == Side::producer) {
            position_ = published;
            cached_peer_ = released;
            L::store_relaxed(header_->producer.sleeping, 0u);
            // A predecessor's flush word stays valid for a segment we continue; a fresh one resets it.
            flushed_word_ = L::load_relaxed(header_->producer.flushed);
        } else {
            position_ = released;
            cached_peer_ = released;  // forces a load of `published` at the first read
            L::store_relaxed(consumer_slot().wake.sleeping, 0u);
            // A gate that held this slot and died left its link behind: producers would wake that
            // gate instead of us. We hold the slot's lock, so its previous holder is gone.
            L::store_release(header_->gate_links[slot_].linked, 0u);
            // The records layer's resume point (layout.hpp, make_tagged_word): in segment
            // `released`, or one release ahead if our predecessor died between its two stores.
            const L::ConsumerLine& line = consumer_line();
            std::uint64_t word = L::load_relaxed(line.resume_point);
            std::uint64_t limit = std::min(published, released + geometry_.segment_count);
            if (!L::decode_tagged_word(word, released, limit, resume_.position, resume_.offset)) {
                region_.unlock(lock_byte);
                throw Error(Errc::corrupt, describe_channel(name_) + ": resume point " + std::to_string(word >> 32) + ":" +
                                               std::to_string(word & 0xffff'ffffull) + " names no segment in [" +
                                               std::to_string(released) + ", " + std::to_string(limit) + "]");
            }
            resume_.in_flight_record_bytes = L::load_relaxed(line.in_flight_record_bytes);
            if (resume_.position != released) cached_peer_ = published;  // release_until may go there
        }
        attached_ = true;
        wake_waiting_peer();
    }

    // A peer parked in wait_for_peer (or any wait) re-checks now: our lock is held, so it finds
    // us alive. Rule 5's waker half; a peer that is not asleep costs a fence and a load.
    void wake_waiting_peer() noexcept {
        if (side_ == Side::producer) {
            notify_consumer();
        } else {
            wake_if_sleeping(header_->producer.sleeping, consumer_slot().counters.wake_syscalls);
        }
    }

    void detach() noexcept {
        if (!attached_) return;
        attached_ = false;
        L::Attachment& mine = side_ == Side::producer ? header_->producer_attachment : consumer_slot().attachment;
        // A clean detach: the peer will report "detached" rather than "died". The lock itself
        // goes when the Region closes its descriptor.
        L::store_relaxed(mine.attached, 0u);
        if (side_ == Side::consumer) {
            // The consumer leaving wakes a producer waiting for credits, so it notices at once.
            wake_if_sleeping(header_->producer.sleeping, consumer_slot().counters.wake_syscalls);
        } else {
            notify_consumer();
        }
        try {
            region_.unlock(side_ == Side::producer ? L::kProducerLockByte : L::kConsumerLockByte + slot_);
        } catch (...) {
        }
    }

    Status refresh_published() {
        // Rule 2: acquire the producer's publication before reading the segments.
        std::uint64_t published = L::load_acquire(header_->producer.published);
        if (published < position_ || published - position_ > geometry_.segment_count) {
            return fail(Status::corrupt, "producer position " + std::to_string(published) + " is outside [" +
                                             std::to_string(position_) + ", " +
                                             std::to_string(position_ + geometry_.segment_count) + "]");
        }
        cached_peer_ = published;
        return Status::ok;
    }

    // Rule 5, the waker's half: our position store is done; wake the peer only if it sleeps.
    void wake_if_sleeping(L::SharedU32& peer_sleeping, L::SharedU64& wake_counter) noexcept {
        if (detail::wake_if_sleeping(peer_sleeping)) L::counter_add(wake_counter, std::uint64_t{1});
    }

    Status fail(Status status, std::string message) {
        last_error_ = describe_channel(name_) + ": " + std::move(message);
        return status;
    }

    L::ConsumerSlot& consumer_slot() const noexcept { return header_->consumers[slot_]; }
    L::ConsumerLine& consumer_line() const noexcept { return header_->consumers[slot_].position; }
    // position is any 64-bit value: the modulo keeps the slot inside the ring.
    L::SegmentHeader& segment_header(std::uint64_t position) const noexcept {
        std::uint64_t slot = position % geometry_.segment_count;
        return *reinterpret_cast<L::SegmentHeader*>(segments_ + slot * geometry_.segment_size);
    }
    std::byte* segment_payload(std::uint64_t position) const noexcept {
        return reinterpret_cast<std::byte*>(&segment_header(position)) + L::kSegmentHeaderBytes;
    }

    std::string name_;
    ChannelOptions options_;
    Side side_;
    shm::Region region_;
    Geometry geometry_;
    L::ChannelHeader* header_ = nullptr;
    std::byte* segments_ = nullptr;
    std::uint32_t capacity_ = 0;
    std::uint64_t position_ = 0;     // producer: next to publish; consumer: next to read
    std::uint64_t last_liveness_check_ns_ = shm::monotonic_ns();  // the last backstop of a wait
    std::uint64_t cached_peer_ = 0;  // producer: last seen released; consumer: last seen published
    detail::SpinRate spin_rate_;      // wait_for: time of one spin, as last measured
    std::uint64_t epoch_ = 0;
    std::uint64_t flushed_word_ = 0;  // producer: the flush word we stored last (rule 2b)
    std::uint64_t record_ordinal_ = 0;  // producer, records layer: records completed (set_record_ordinal)
    ResumePoint resume_;              // consumer: the resume point found at attach
    std::uint32_t held_bytes_ = 0;
    bool first_acquire_ = true;
    std::uint32_t slot_ = 0;  // consumer: our slot
    bool holding_ = false;
    bool ended_ = false;
    bool attached_ = false;
    bool peer_known_dead_ = false;
    std::string last_error_;
    std::string discarded_leftover_;  // attach() removed a leftover (on_leftover = fresh): what it held
    std::uint32_t framing_refusals_seen_ = 0;  // Control::framing_refusals as last checked
    // Producer: per consumer slot, the gate that consumes it, if any (see notify_consumer).
    std::array<MappedGate, L::kMaxConsumers> gates_;
    bool priority_pending_ = false;  // notify_consumer() is announcing a priority event
};

}  // namespace detail

namespace {

// `self`: the side the caller holds (its own lock does not conflict with itself), if any.
enum class Self { none, producer, consumer };

ChannelInfo read_info(const std::string& name, const shm::Region& region, Self self = Self::none) {
    ChannelInfo info;
    info.name = name;
    info.path = region.path();
    info.file_bytes = region.size();
    info.creator_alive = region.lock_held_by_other(layout::kCreatingLockByte, shm::LockKind::shared);
    info.in_use = region.lock_held_by_other(layout::kInUseLockByte, shm::LockKind::shared) ||
                  self != Self::none;
    if (region.size() < layout::kHeaderBytes) return info;
    const auto& header = *static_cast<const layout::ChannelHeader*>(region.data());
    info.abi_version = layout::load_acquire(header.identity.abi_version);
    if (info.abi_version == 0) return info;  // still being created
    info.segment_size = layout::load_relaxed(header.identity.segment_size);
    info.segment_count = layout::load_relaxed(header.identity.segment_count);
    info.flags = layout::load_relaxed(header.identity.flags);
    info.framing = static_cast<Framing>(layout::load_relaxed(header.identity.framing));
    info.max_record_bytes = layout::load_relaxed(header.identity.max_record_bytes);
    info.total_bytes = layout::load_relaxed(header.identity.total_bytes);
    info.created_realtime_ns = layout::load_relaxed(header.identity.created_realtime_ns);
    info.published = layout::load_relaxed(header.producer.published);
    std::uint32_t slots = layout::load_relaxed(header.identity.consumer_slots);
    info.consumer_slots = slots;
    info.released = layout::load_relaxed(header.consumers[0].position.released);
    for (std::uint32_t i = 1; i < slots && i < layout::kMaxConsumers; ++i) {
        info.released = std::min(info.released, layout::load_relaxed(header.consumers[i].position.released));
    }
    info.end_of_stream = layout::load_relaxed(header.producer.end_of_stream) != 0;
    info.removed = layout::load_relaxed(header.control.removed) != 0;
    info.framing_refusals = layout::load_relaxed(header.control.framing_refusals);
    info.refused_framing = layout::load_relaxed(header.control.refused_framing);
    info.buffer_timeout_ns = layout::load_relaxed(header.producer.buffer_timeout_ns);
    info.flush_word = layout::load_relaxed(header.producer.flushed);
    info.resume_word = layout::load_relaxed(header.consumers[0].position.resume_point);
    info.in_flight_record_bytes = layout::load_relaxed(header.consumers[0].position.in_flight_record_bytes);
    auto side = [&](const layout::Attachment& a, std::uint64_t lock_byte, const layout::SharedU32& sleeping) {
        ChannelInfo::Side s;
        s.attached = layout::load_relaxed(a.attached) != 0;
        s.pid = layout::load_relaxed(a.pid);
        s.start_time = layout::load_relaxed(a.start_time);
        s.attach_count = layout::load_relaxed(a.attach_count);
        s.alive = region.lock_held_by_other(lock_byte, shm::LockKind::shared);
        s.sleeping = layout::load_relaxed(sleeping) != 0;
        return s;
    };
    info.producer = side(header.producer_attachment, layout::kProducerLockByte, header.producer.sleeping);
    info.consumer = side(header.consumers[0].attachment, layout::kConsumerLockByte, header.consumers[0].wake.sleeping);
    if (self == Self::producer) info.producer.alive = true;
    if (self == Self::consumer) info.consumer.alive = true;
    const auto& pc = header.producer_counters;
    info.producer_counters = {layout::load_relaxed(pc.bytes_written),     layout::load_relaxed(pc.records_written),
                              layout::load_relaxed(pc.segments_published), layout::load_relaxed(pc.events_written),
                              layout::load_relaxed(pc.wake_syscalls),      layout::load_relaxed(pc.parks),
                              layout::load_relaxed(pc.backpressured_ns),   layout::load_relaxed(pc.last_publish_realtime_ns),
                              layout::load_relaxed(pc.waiting_since_ns)};
    const auto& cc = header.consumers[0].counters;
    info.consumer_counters = {layout::load_relaxed(cc.bytes_read),        layout::load_relaxed(cc.records_read),
                              layout::load_relaxed(cc.segments_released), layout::load_relaxed(cc.events_read),
                              layout::load_relaxed(cc.wake_syscalls),     layout::load_relaxed(cc.parks),
                              layout::load_relaxed(cc.idle_ns),           layout::load_relaxed(cc.last_release_realtime_ns),
                              layout::load_relaxed(cc.waiting_since_ns)};
    return info;
}

constexpr std::uint64_t kForever = std::numeric_limits<std::uint64_t>::max();

}  // namespace

// ---- Producer ------------------------------------------------------------------------------------

Producer Producer::attach(std::string_view name, const ChannelOptions& options) {
    return Producer(std::make_unique<detail::Attached>(std::string(name), options, detail::Side::producer));
}
Producer::Producer(std::unique_ptr<detail::Attached> attached) : attached_(std::move(attached)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

Status Producer::try_acquire(WritableSegment& out) { return attached_->try_acquire(out); }
Status Producer::acquire(WritableSegment& out) {
    return attached_->wait_for([&] { return attached_->try_acquire(out); }, kForever);
}
Status Producer::acquire_for(WritableSegment& out, std::chrono::nanoseconds timeout) {
    return attached_->wait_for([&] { return attached_->try_acquire(out); }, attached_->timeout_ns(timeout));
}
Status Producer::commit(std::uint32_t bytes) { return attached_->commit(bytes); }
Status Producer::publish(std::uint32_t bytes) { return attached_->publish(bytes, 0, 0, 0, 0); }
Status Producer::publish(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                         std::uint32_t first_record_offset, std::uint32_t checksum) {
    return attached_->publish(bytes, flags, record_count, first_record_offset, checksum);
}
Status Producer::end_stream() { return attached_->end_stream(); }
Status Producer::wait_for_peer(std::chrono::nanoseconds timeout) {
    return attached_->wait_for_peer(timeout.count() < 0 ? kForever : attached_->timeout_ns(timeout));
}
bool Producer::consumer_alive() const { return attached_->peer_alive(); }
std::uint32_t Producer::payload_capacity() const noexcept { return attached_->capacity(); }
std::uint32_t Producer::segment_count() const noexcept { return attached_->segment_count(); }
std::uint32_t Producer::channel_flags() const noexcept { return attached_->channel_flags(); }
std::uint64_t Producer::max_record_bytes() const noexcept { return attached_->max_record_bytes(); }
Status Producer::commit(std::uint32_t bytes, std::uint32_t flags, std::uint32_t record_count,
                        std::uint32_t first_record_offset) {
    return attached_->commit(bytes, flags, record_count, first_record_offset);
}
std::uint32_t Producer::free_segments() { return attached_->free_segments(); }
void Producer::wake_consumer() { attached_->wake_consumer(); }
void Producer::set_record_ordinal(std::uint64_t completed) noexcept { attached_->set_record_ordinal(completed); }
Status Producer::resume_view(SegmentView& out, std::uint64_t& ordinal) { return attached_->resume_view(out, ordinal); }
bool Producer::publish_priority(std::uint64_t checkpoint_id, std::uint64_t segment, std::uint64_t offset) {
    return attached_->publish_priority(checkpoint_id, segment, offset);
}
bool Consumer::take_priority(std::uint64_t& checkpoint_id) { return attached_->take_priority(checkpoint_id); }
Status Producer::wait_for_free(std::uint32_t count, std::chrono::nanoseconds timeout) {
    if (count > attached_->segment_count()) return Status::invalid_call;
    auto attempt = [&] { return attached_->free_segments() >= count ? Status::ok : Status::would_block; };
    return attached_->wait_for(attempt, timeout.count() < 0 ? kForever : attached_->timeout_ns(timeout));
}
void Producer::set_buffer_timeout(std::chrono::nanoseconds timeout) { attached_->set_buffer_timeout(timeout); }
void Producer::add_written(std::uint64_t records, std::uint64_t events) { attached_->add_written(records, events); }
const std::string& Producer::name() const noexcept { return attached_->name(); }
const std::string& Producer::last_error() const noexcept { return attached_->last_error(); }
const std::string& Producer::discarded_leftover() const noexcept { return attached_->discarded_leftover(); }
ChannelInfo Producer::info() const { return read_info(attached_->name(), attached_->region(), Self::producer); }

// ---- Consumer ------------------------------------------------------------------------------------

Consumer Consumer::attach(std::string_view name, const ChannelOptions& options) {
    return Consumer(std::make_unique<detail::Attached>(std::string(name), options, detail::Side::consumer));
}
Consumer::Consumer(std::unique_ptr<detail::Attached> attached) : attached_(std::move(attached)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() = default;

Status Consumer::try_read(ReadableSegment& out) { return attached_->try_read(out); }
Status Consumer::read(ReadableSegment& out) {
    return attached_->wait_for([&] { return attached_->try_read(out); }, kForever);
}
Status Consumer::read_for(ReadableSegment& out, std::chrono::nanoseconds timeout) {
    return attached_->wait_for([&] { return attached_->try_read(out); }, attached_->timeout_ns(timeout));
}
Status Consumer::release() { return attached_->release(); }
Status Consumer::wait_for_peer(std::chrono::nanoseconds timeout) {
    return attached_->wait_for_peer(timeout.count() < 0 ? kForever : attached_->timeout_ns(timeout));
}
bool Consumer::producer_alive() const { return attached_->peer_alive(); }
void Consumer::remove_channel() { attached_->remove_file(); }
std::uint32_t Consumer::payload_capacity() const noexcept { return attached_->capacity(); }
std::uint32_t Consumer::segment_count() const noexcept { return attached_->segment_count(); }
std::uint32_t Consumer::channel_flags() const noexcept { return attached_->channel_flags(); }
std::uint64_t Consumer::max_record_bytes() const noexcept { return attached_->max_record_bytes(); }
ResumePoint Consumer::resume_point() const { return attached_->resume_point(); }
std::uint64_t* Consumer::resume_point_field() noexcept { return attached_->resume_point_field(); }
void Consumer::set_gate_link(std::string_view gate_name, std::uint32_t index) { attached_->set_gate_link(gate_name, index); }
void Consumer::clear_gate_link() { attached_->clear_gate_link(); }
Status Consumer::try_view(std::uint64_t position, SegmentView& out) { return attached_->try_view(position, out); }
Status Consumer::poll_view(std::uint64_t position, SegmentView& out) {
    return attached_->poll_view(position, out, /*eager=*/false);
}
Status Consumer::wait_view(std::uint64_t position, std::uint32_t committed, SegmentView& out,
                           std::chrono::nanoseconds timeout) {
    // Rule 2b: while spinning, the segment header is read every kHeaderPollInterval-th look
    // (about a microsecond); the producer line at every look.
    constexpr std::uint32_t kHeaderPollInterval = 32;
    std::uint32_t looks = 0;
    auto attempt = [&](bool eager) {
        eager = eager || ++looks % kHeaderPollInterval == 0;
        Status status = attached_->poll_view(position, out, eager);
        if (status == Status::ok && !out.sealed && out.payload.size() <= committed) return Status::would_block;
        return status;
    };
    std::uint64_t limit = timeout.count() < 0 ? kForever : attached_->timeout_ns(timeout);
    return attached_->wait_for(attempt, limit, attached_->buffer_timeout_park_limit());
}
Status Consumer::release_until(std::uint64_t position, std::uint64_t resume_offset,
                               std::uint64_t in_flight_record_bytes, const ReadProgress& progress) {
    return attached_->release_until(position, resume_offset, in_flight_record_bytes, progress);
}
const std::string& Consumer::name() const noexcept { return attached_->name(); }
const std::string& Consumer::last_error() const noexcept { return attached_->last_error(); }
const std::string& Consumer::discarded_leftover() const noexcept { return attached_->discarded_leftover(); }
ChannelInfo Consumer::info() const { return read_info(attached_->name(), attached_->region(), Self::consumer); }

// ---- Without attaching ---------------------------------------------------------------------------

ChannelInfo inspect(std::string_view name, const ChannelOptions& options) {
    std::string channel(name);
    shm::Region region = shm::Region::open(shm::region_path(channel, layout::kChannelFilePrefix), {options.mode, options.allowed_owner},
                                           /*writable=*/false);
    if (region.size() > 0 && region.size() < layout::kHeaderBytes) {
        // A creator reserves the whole size in one step: a short, non-empty file is damaged.
        throw Error(Errc::corrupt, "channel '" + channel + "' at " + region.path() + ": file of " +
                                       std::to_string(region.size()) + " bytes is smaller than a header (" + std::to_string(L::kHeaderBytes) + ")");
    }
    if (region.size() >= layout::kHeaderBytes) {
        const auto& header = *static_cast<const layout::ChannelHeader*>(region.data());
        if (layout::load_acquire(header.identity.abi_version) != 0) {
            detail::Geometry geometry;
            std::string problem = detail::check_identity(header, region.size(), geometry);
            if (!problem.empty()) {
                throw Error(detail::classify_identity_error(header, region.size()),
                            "channel '" + channel + "' at " + region.path() + ": " + problem);
            }
        }
    }
    return read_info(channel, region);
}

RemoveResult remove_channel(std::string_view name, bool force) {
    std::string channel(name);
    const std::string path = shm::region_path(channel, layout::kChannelFilePrefix);
    auto unlink_failed = [&](int error) {
        return Error::from_errno(error, "remove channel '" + channel + "' at " + path);
    };
    shm::Region region;
    try {
        region = shm::Region::open(path, {}, /*writable=*/true);
    } catch (const Error& error) {
        if (error.code() == std::errc::no_such_file_or_directory) return RemoveResult::not_found;
        if (!force) throw;
        // An unsafe or unreadable file: with force, unlink the name anyway (never its bytes).
        if (shm::unlink_path(path)) return RemoveResult::removed;
        if (errno == ENOENT) return RemoveResult::not_found;
        throw unlink_failed(errno);
    }
    // Exclusive on kInUseLockByte: only possible when no handle (and no creator) holds it.
    bool exclusive = region.try_lock(layout::kInUseLockByte, shm::LockKind::exclusive) &&
                     !region.lock_held_by_other(layout::kCreatingLockByte, shm::LockKind::shared);
    if (!exclusive && !force) return RemoveResult::in_use;
    // The removal mark goes only into a file that validates as a channel (Region::open checked
    // that it is a regular file of ours with one link): never a byte into anything else.
    if (region.size() >= layout::kHeaderBytes) {
        auto& header = *static_cast<layout::ChannelHeader*>(region.data());
        detail::Geometry geometry;
        if (layout::load_acquire(header.identity.abi_version) != 0 &&
            detail::check_identity(header, region.size(), geometry).empty()) {
            layout::store_relaxed(header.control.removed, layout::kRemovedMark);
        }
    }
    if (region.unlink_if_same_file()) return RemoveResult::removed;
    int error = errno;
    if (region.unlinked_or_replaced()) return RemoveResult::not_found;  // somebody else removed it
    throw unlink_failed(error);
}

}  // namespace shmchan
