// SPDX-License-Identifier: Apache-2.0
// The channel file: create-or-open, validation, inspection and removal (see channel_file.hpp).
#include "channels/detail/channel_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <thread>

#include "channels/detail/framing_refusal.hpp"
#include "channels/detail/leftover.hpp"
#include "shm/process.hpp"

namespace shmchan {

using namespace std::chrono_literals;
namespace L = layout;

namespace detail {
namespace {

constexpr int kMaxRestarts = 1000;  // open attempts that found a removed file

std::string hex32(std::uint32_t value) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%08x", value);
    return text;
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

}  // namespace

std::string describe_channel(const std::string& name) { return "channel '" + name + "'"; }

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
    if (options.record_type.size() > L::kMaxRecordTypeLength) {
        fail("record type '" + escaped(options.record_type) + "' is longer than " +
             std::to_string(L::kMaxRecordTypeLength) + " bytes");
    }
    for (char c : options.record_type) {
        if (!L::valid_record_type_char(c)) {
            fail("record type '" + escaped(options.record_type) + "' must be printable ASCII without spaces");
        }
    }
}

std::string read_record_type(const L::RecordType& field, std::string& out) {
    out.clear();
    L::RecordType local;  // read once; only the local is checked and used
    std::memcpy(static_cast<void*>(&local), &field, sizeof local);
    if (local.length > L::kMaxRecordTypeLength) {
        return "record type length " + std::to_string(local.length) + " exceeds " +
               std::to_string(L::kMaxRecordTypeLength);
    }
    for (std::uint32_t i = 0; i < local.length; ++i) {
        if (!L::valid_record_type_char(local.name[i])) {
            return "record type holds byte " + std::to_string(static_cast<unsigned char>(local.name[i])) +
                   " at " + std::to_string(i) + " (not printable ASCII)";
        }
    }
    for (std::size_t i = local.length; i < sizeof local.name; ++i) {
        if (local.name[i] != 0) return "record type has bytes after its length " + std::to_string(local.length);
    }
    out.assign(local.name, local.length);
    return {};
}

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
    std::string record_type;
    if (std::string problem = read_record_type(header.record_type, record_type); !problem.empty()) return problem;
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
    out.record_type = std::move(record_type);
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
    header.record_type.length = static_cast<std::uint32_t>(options.record_type.size());  // validated: <= 47
    std::memcpy(header.record_type.name, options.record_type.data(), options.record_type.size());
    header.control.creator_pid = identity_self.pid;
    header.control.creator_start_time = identity_self.start_time;
    // Rule 1: the ready mark, last, with release.
    L::store_release(header.identity.abi_version, L::kAbiVersion);
}

OpenChannel open_or_create(const std::string& name, const ChannelOptions& options, bool as_producer) {
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
            mark_framing_refusal(region, as_producer, static_cast<std::uint32_t>(options.framing));
            auto framing_name = [](std::uint32_t f) { return f == 1 ? "raw bytes" : "records"; };
            throw Error(Errc::framing_mismatch,
                        describe_channel(name) + " carries " + framing_name(geometry.framing) + ", not " +
                            framing_name(static_cast<std::uint32_t>(options.framing)));
        }
        if (!options.record_type.empty() && options.record_type != geometry.record_type) {
            throw Error(Errc::type_mismatch,
                        describe_channel(name) + " carries records of type " +
                            (geometry.record_type.empty() ? std::string("(none declared: the channel was created without one)")
                                                          : "'" + geometry.record_type + "'") +
                            ", not '" + options.record_type + "'");
        }
        return OpenChannel{std::move(region), std::move(geometry), std::move(discarded)};
    }
    throw Error(Errc::not_ready, describe_channel(name) + ": removed again on every one of " +
                                     std::to_string(kMaxRestarts) + " attempts to open it");
}

ChannelInfo read_info(const std::string& name, const shm::Region& region, Self self) {
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
    (void)read_record_type(header.record_type, info.record_type);  // damaged: left empty (check_identity names it)
    info.buffer_timeout_ns = layout::load_relaxed(header.producer.buffer_timeout_ns);
    info.flush_word = layout::load_relaxed(header.producer.flushed);
    info.resume_word = layout::load_relaxed(header.consumers[0].position.resume_point);
    info.in_flight_record_bytes = layout::load_relaxed(header.consumers[0].position.in_flight_record_bytes);
    // Rule 7: the limit the producer obeys, clamped as it clamps it.
    std::uint32_t limit_slot = 0;
    for (std::uint32_t i = 0; i < slots && i < layout::kMaxConsumers; ++i) {
        const std::uint32_t wanted = layout::load_relaxed(header.consumers[i].wake.credit_limit);
        if (wanted == 0 || info.segment_count == 0) continue;
        const std::uint32_t limit =
            std::clamp(wanted, std::min<std::uint32_t>(2, info.segment_count), info.segment_count);
        if (info.credit_limit == 0 || limit < info.credit_limit) {
            info.credit_limit = limit;
            limit_slot = i;
        }
    }
    info.throughput_bytes_per_s = layout::load_relaxed(header.consumers[limit_slot].wake.throughput_bytes_per_s);
    info.debloat_target_ns = layout::load_relaxed(header.consumers[limit_slot].wake.debloat_target_ns);
    info.segments_per_ks = layout::load_relaxed(header.consumers[limit_slot].wake.segments_per_ks);
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

}  // namespace detail

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
    return detail::read_info(channel, region);
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
