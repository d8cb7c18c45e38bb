// SPDX-License-Identifier: Apache-2.0
// shm-inspect: looks at shmchan channels without disturbing them.
//
//   shm-inspect list [--json]            every channel of the directory, one line each
//   shm-inspect show NAME [--json]       header, counters and derived figures of one channel
//   shm-inspect watch [NAME] [--interval S]   live view: fill bars, rates, producer/consumer state
//   shm-inspect peek NAME [--count N]    unread data, decoded, without consuming it
//   shm-inspect gc [--dry-run]           removes channels that no live process holds
//   shm-inspect metrics                  Prometheus text exposition format
//
// The contract (the product brief, "Interfaces that scripts rely on"):
//   exit 0  success
//   exit 1  a runtime failure: one line "shm-inspect: <reason>" on stderr (show or peek of a
//           corrupt or missing channel, an unreadable directory, a failed removal)
//   exit 2  bad usage (arguments, channel name)
//
// JSON (show, list): the brief's keys and more; wall-clock times in milliseconds since the epoch
// (`created_unix_ms`, `last_publish_unix_ms`, `last_release_unix_ms`), durations in nanoseconds.
// Every integer is exact for a JSON reader: a number up to 2^53, its decimal string above
// (a counter that grew that large), never a number that a double would round.
//
// Never disturbing a channel: the tool maps files read-only (shmchan::inspect, or shm::Region
// opened without write access), reads shared fields with relaxed/acquire loads only, and asks
// about locks with F_OFD_GETLK (a query: it takes nothing). It never writes a futex word, so it
// wakes nobody. The one exception is `gc`, whose job is to remove: it goes through
// shmchan::remove_channel (exclusive in-use lock, `removed` mark, unlink), and only for files
// that no live process holds.
//
// Liveness is the lock bytes of docs/LAYOUT.md: a side is alive while its lock is held; the pid
// beside it is display only (alive, dead, or "pid reused" when it names another process now).
// A channel is `stale` when nobody holds any of its locks (creating, in-use, producer, consumer).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "channels/channel.hpp"
#include "channels/detail/frame_decoder.hpp"
#include "tools/cli.hpp"
#include "tools/sigbus.hpp"
#include "channels/layout.hpp"
#include "shm/error.hpp"
#include "shm/process.hpp"
#include "shm/region.hpp"
#include "tools/inspect_format.hpp"

namespace {

namespace L = shmchan::layout;
namespace fmt = shmchan::inspect_format;
using shmchan::ChannelInfo;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// A file without a ready mark and without a creator's lock is only half-created once it is
// older than this: a creator holds no lock for the instant between O_CREAT and its lock call.
constexpr double kCreationGraceSeconds = 2.0;

volatile sig_atomic_t g_signal = 0;
// --allow-owner: files of this user are inspected (and collected) as our own.
std::optional<uid_t> g_allowed_owner;

shmchan::ChannelOptions inspect_options() {
    shmchan::ChannelOptions options;
    options.allowed_owner = g_allowed_owner;
    return options;
}

// A file owned by somebody the library would refuse: not us, not root, not the allowed owner.
bool foreign_owner(uid_t owner) {
    return owner != ::geteuid() && owner != 0 && !(g_allowed_owner && *g_allowed_owner == owner);
}
extern "C" void on_signal(int signal_number) { g_signal = signal_number; }


int fail(const std::string& message, int code = kExitFailure) {
    std::fprintf(stderr, "shm-inspect: %s\n", message.c_str());
    return code;
}

// ---- Lock queries on a file, without taking anything ---------------------------------------------

// A read-only descriptor of a channel file, for lock queries (F_OFD_GETLK) and the file's age.
// Works on any regular file, including ones the library refuses to map (unsafe or corrupt).
class LockProbe {
public:
    explicit LockProbe(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd_ < 0) return;
        if (::fstat(fd_, &stat_) != 0 || !S_ISREG(stat_.st_mode)) {
            ::close(fd_);
            fd_ = -1;
        }
    }
    ~LockProbe() {
        if (fd_ >= 0) ::close(fd_);  // we hold no lock, so closing drops nothing
    }
    LockProbe(const LockProbe&) = delete;
    LockProbe& operator=(const LockProbe&) = delete;

    bool ok() const { return fd_ >= 0; }
    // True when anybody holds any lock on the byte (a query with a write lock conflicts with all).
    bool held(std::uint64_t offset) const {
        if (fd_ < 0) return false;
        struct flock lock {};
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;
        lock.l_start = static_cast<off_t>(offset);
        lock.l_len = 1;
        if (::fcntl(fd_, F_OFD_GETLK, &lock) != 0) return false;
        return lock.l_type != F_UNLCK;
    }
    bool any_held() const {
        if (held(L::kCreatingLockByte) || held(L::kInUseLockByte) || held(L::kProducerLockByte)) return true;
        for (std::uint64_t i = 0; i < L::kMaxConsumers; ++i) {
            if (held(L::kConsumerLockByte + i)) return true;
        }
        return false;
    }
    double age_seconds() const {
        if (fd_ < 0) return 1e9;
        timespec now {};
        ::clock_gettime(CLOCK_REALTIME, &now);
        double modified = static_cast<double>(stat_.st_mtim.tv_sec) + stat_.st_mtim.tv_nsec * 1e-9;
        double current = static_cast<double>(now.tv_sec) + now.tv_nsec * 1e-9;
        return current - modified;
    }
    const struct stat& stat() const { return stat_; }

private:
    int fd_ = -1;
    struct stat stat_ {};
};

// ---- A snapshot of one channel ---------------------------------------------------------------------

struct Snapshot {
    std::string name, path;
    bool found = true;      // false: no such file (reason says so)
    bool ready = false;     // the header validated and `info` is filled
    std::string state;      // creating, active, ended, broken, corrupt, foreign
    std::string reason;     // corrupt, foreign (or missing): why
    uid_t owner = 0;        // the file's owner (lstat)
    bool stale = false;     // no live process holds any of its locks
    bool creator_alive = false, in_use = false;
    bool young = false;     // not ready, no creator lock, younger than the grace period
    ChannelInfo info;
    std::string producer_state, consumer_state;  // alive, dead, pid reused, detached, none
    std::uint64_t unread = 0;
    double fill = 0;
    std::uint64_t sampled_ns = 0;  // CLOCK_MONOTONIC
    // Debloating (docs/LAYOUT.md): the data in flight (unread segments x payload capacity: an
    // upper bound when segments go over partly filled) and, when the consumer measures its rate,
    // how long it takes to read it (Flink's estimatedTimeToConsumeBuffersMs).
    std::uint64_t in_flight_bytes = 0;
    bool estimated = false;
    double estimated_ms = 0;
};

// What a side's pid says now: the lock decides alive; the pid and start time say what became of
// a side that is not alive.
std::string side_state(const ChannelInfo::Side& side) {
    if (side.alive) return "alive";
    if (side.attach_count == 0) return "none";
    if (!side.attached) return "detached";
    switch (shmchan::shm::pid_state(side.pid, side.start_time)) {
        case shmchan::shm::PidState::reused: return "pid reused";
        case shmchan::shm::PidState::alive:  // its pid lives on but it holds no lock: not alive
        case shmchan::shm::PidState::dead: break;
    }
    return "dead";
}

std::string channel_path(const std::string& name) {
    return shmchan::shm::region_directory() + "/" + std::string(L::kChannelFilePrefix) + name;
}

Snapshot take_snapshot(const std::string& name) {
    Snapshot s;
    s.name = name;
    s.path = channel_path(name);
    s.sampled_ns = shmchan::shm::monotonic_ns();
    ChannelInfo info;
    // `published` and `released` are two loads: a consumer that releases and a producer that
    // publishes between them can make a pair that never existed. Retry a few times before
    // calling an inconsistent pair corrupt.
    for (int attempt = 0;; ++attempt) {
        try {
            info = shmchan::inspect(name, inspect_options());
        } catch (const shmchan::Error& error) {
            if (error.code() == std::errc::no_such_file_or_directory) {
                s.found = false;
                s.state = "missing";
                s.reason = "no channel '" + name + "' in " + shmchan::shm::region_directory();
                return s;
            }
            s.state = "corrupt";
            s.reason = error.what();
        } catch (const std::exception& error) {
            s.state = "corrupt";
            s.reason = error.what();
        }
        if (!s.state.empty()) break;
        bool consistent = info.abi_version == 0 ||
                          (info.released <= info.published && info.published - info.released <= info.segment_count);
        if (consistent || attempt == 5) {
            if (!consistent) {
                s.state = "corrupt";
                s.reason = "channel '" + name + "' at " + s.path + ": positions published " +
                           std::to_string(info.published) + " and released " + std::to_string(info.released) +
                           " are inconsistent with " + std::to_string(info.segment_count) + " segments";
            }
            break;
        }
    }
    s.info = info;

    LockProbe probe(s.path);
    s.creator_alive = probe.held(L::kCreatingLockByte);
    s.in_use = probe.held(L::kInUseLockByte);
    struct stat named {};
    if (::lstat(s.path.c_str(), &named) == 0) s.owner = named.st_uid;
    if (s.state == "corrupt" && S_ISREG(named.st_mode) && foreign_owner(named.st_uid)) {
        // Another user's file is not damage: it is theirs (gc leaves it unless --all).
        s.state = "foreign";
        s.reason = "owned by uid " + std::to_string(named.st_uid) + ", not by us (--allow-owner to inspect it)";
    }
    if (s.state == "corrupt" || s.state == "foreign") {
        // Stale only if we can prove that nobody holds a lock: a file we cannot open for the
        // query (another user's, not a regular file) stays "held" for us.
        s.stale = probe.ok() && !probe.any_held();
        return s;
    }
    if (info.abi_version == 0) {
        // No ready mark: a live creator (its lock) or a fresh file is being created; otherwise
        // the creator died half-way.
        s.young = !s.creator_alive && probe.age_seconds() < kCreationGraceSeconds;
        if (s.creator_alive || s.young) {
            s.state = "creating";
            s.stale = false;
        } else {
            s.state = "corrupt";
            s.reason = "channel '" + name + "' at " + s.path +
                       ": half-created (no ready mark and no live creator)";
            s.stale = probe.ok() && !probe.any_held();
        }
        return s;
    }
    s.ready = true;
    s.producer_state = side_state(info.producer);
    s.consumer_state = side_state(info.consumer);
    s.unread = info.published - info.released;
    s.fill = info.segment_count ? static_cast<double>(s.unread) / info.segment_count : 0.0;
    s.in_flight_bytes = s.unread * L::segment_payload_capacity(info.segment_size);
    if (info.segments_per_ks != 0) {
        s.estimated = true;
        s.estimated_ms = static_cast<double>(s.unread) * 1e6 / static_cast<double>(info.segments_per_ks);
    }
    bool producer_lost = info.producer.attach_count > 0 && !info.producer.alive;
    bool consumer_lost = info.consumer.attach_count > 0 && !info.consumer.alive;
    if (info.end_of_stream) {
        s.state = "ended";
    } else if (producer_lost || consumer_lost) {
        s.state = "broken";
    } else {
        s.state = "active";
    }
    s.stale = !(info.producer.alive || info.consumer.alive || s.creator_alive || s.in_use) && probe.ok() &&
              !probe.any_held();
    return s;
}

// Channel names of the directory, sorted. Skips directories (tests keep theirs in /dev/shm with
// the same prefix), other files, and names the library would refuse.
std::vector<std::string> channel_names(std::string* error) {
    std::vector<std::string> names;
    const std::string directory = shmchan::shm::region_directory();
    DIR* dir = ::opendir(directory.c_str());
    if (!dir) {
        if (error) *error = "cannot read directory " + directory + ": " + std::strerror(errno);
        return names;
    }
    const std::string_view prefix = L::kChannelFilePrefix;
    while (dirent* entry = ::readdir(dir)) {
        std::string_view file = entry->d_name;
        if (file.size() <= prefix.size() || file.substr(0, prefix.size()) != prefix) continue;
        std::string name(file.substr(prefix.size()));
        if (!shmchan::shm::is_valid_name(name)) continue;
        unsigned char type = entry->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st {};
            std::string path = directory + "/" + std::string(file);
            if (::lstat(path.c_str(), &st) != 0) continue;
            if (S_ISDIR(st.st_mode)) type = DT_DIR;
        }
        if (type == DT_DIR) continue;
        names.push_back(std::move(name));
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<Snapshot> snapshot_all(std::string* error) {
    std::vector<Snapshot> all;
    for (const auto& name : channel_names(error)) {
        Snapshot s = take_snapshot(name);
        if (s.found) all.push_back(std::move(s));  // vanished between readdir and open
    }
    return all;
}

// ---- Formatting helpers ----------------------------------------------------------------------------

std::string framing_name(shmchan::Framing framing) {
    return framing == shmchan::Framing::records ? "records" : "raw_bytes";
}

std::string bytes_short(std::uint64_t bytes) {
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + "MiB";
    if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + "KiB";
    return std::to_string(bytes) + "B";
}

std::string percent(double ratio) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.0f%%", ratio * 100.0);
    return buffer;
}

std::string fixed(double value, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return buffer;
}

// A single-token form of a side state for one-line outputs ("pid reused" -> "pid-reused").
std::string token(std::string text) {
    std::replace(text.begin(), text.end(), ' ', '-');
    return text;
}

std::string iso_time(std::uint64_t realtime_ns) {
    if (realtime_ns == 0) return "never";
    time_t seconds = static_cast<time_t>(realtime_ns / 1'000'000'000u);
    struct tm parts {};
    ::localtime_r(&seconds, &parts);
    char buffer[64];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &parts);
    char fraction[16];
    std::snprintf(fraction, sizeof fraction, ".%03u", static_cast<unsigned>((realtime_ns / 1'000'000u) % 1000u));
    return std::string(buffer) + fraction;
}

// ---- JSON ------------------------------------------------------------------------------------------

constexpr std::uint64_t kJsonExactInteger = 1ull << 53;

// Wall-clock nanoseconds as milliseconds since the epoch (exact in JSON until the year 287,396).
std::uint64_t unix_ms(std::uint64_t realtime_ns) { return realtime_ns / 1'000'000u; }

class JsonObject {
public:
    JsonObject& raw(std::string_view key, const std::string& value) {
        out_ += first_ ? "{" : ", ";
        first_ = false;
        out_ += fmt::json_string(key);
        out_ += ": ";
        out_ += value;
        return *this;
    }
    JsonObject& str(std::string_view key, std::string_view value) { return raw(key, fmt::json_string(value)); }
    // An integer a JSON reader holds exactly (at most 2^53, a double's integers) is a number; a
    // larger one (a counter of bytes or nanoseconds after months) is its decimal string, so that
    // no reader rounds it.
    JsonObject& num(std::string_view key, std::uint64_t value) {
        return raw(key, value <= kJsonExactInteger ? std::to_string(value) : fmt::json_string(std::to_string(value)));
    }
    JsonObject& inum(std::string_view key, std::int64_t value) { return raw(key, std::to_string(value)); }
    JsonObject& real(std::string_view key, double value) { return raw(key, fmt::number(value, true)); }
    JsonObject& boolean(std::string_view key, bool value) { return raw(key, value ? "true" : "false"); }
    JsonObject& null(std::string_view key) { return raw(key, "null"); }
    std::string done() { return first_ ? "{}" : out_ + "}"; }

private:
    std::string out_;
    bool first_ = true;
};

std::string side_json(const ChannelInfo::Side& side, const std::string& state) {
    JsonObject o;
    o.inum("pid", side.pid).boolean("alive", side.alive).str("state", state).boolean("attached", side.attached);
    o.num("attach_count", side.attach_count).num("start_time", side.start_time).boolean("sleeping", side.sleeping);
    return o.done();
}
// The records layer's words, decoded against the positions (layout.hpp): the flush word's
// segment is the published or filling one whose tag it carries; the resume word's is in
// [released, published].
struct RecordsPoints {
    bool flushed = false, resume = false;
    std::uint64_t flushed_segment = 0, flushed_bytes = 0, resume_segment = 0, resume_offset = 0;
};
RecordsPoints records_points(const ChannelInfo& i) {
    RecordsPoints p;
    p.flushed_bytes = i.flush_word & 0xffff'ffffull;
    if (i.released <= i.published) {
        std::uint64_t position = 0, bytes = 0;
        // A flush word names the segment being filled: published, at most, and not before released.
        if (p.flushed_bytes != 0 && L::decode_tagged_word(i.flush_word, i.released, i.published, position, bytes)) {
            p.flushed = true;
            p.flushed_segment = position;
        }
        if (L::decode_tagged_word(i.resume_word, i.released, i.published, position, bytes)) {
            p.resume = true;
            p.resume_segment = position;
            p.resume_offset = bytes;
        }
    }
    return p;
}


// Every channel gets the same keys; figures that a channel in creation or a corrupt one does
// not have are null.
std::string snapshot_json(const Snapshot& s) {
    JsonObject o;
    o.str("name", s.name).str("path", s.path).str("state", s.state);
    if (s.reason.empty()) {
        o.null("reason");
    } else {
        o.str("reason", s.reason);
    }
    o.boolean("stale", s.stale).boolean("creator_alive", s.creator_alive).boolean("in_use", s.in_use);
    const ChannelInfo& i = s.info;
    if (!s.ready) {
        for (const char* key :
             {"abi_version", "segment_size", "segments", "payload_capacity", "total_bytes", "framing", "checksums",
              "record_type", "max_record_bytes", "created_unix_ms", "end_of_stream", "removed", "producer", "consumer",
              "published_segments", "released_segments", "unread_segments", "fill",
              "bytes_written", "records_written", "events_written", "bytes_read",
              "records_read", "events_read", "wakeups", "producer_wake_syscalls",
              "consumer_wake_syscalls", "parks", "producer_parks", "consumer_parks", "backpressured_ns", "idle_ns",
              "last_publish_unix_ms", "last_release_unix_ms", "buffer_timeout_ns", "flushed_segment",
              "flushed_bytes", "resume_segment", "resume_offset", "in_flight_record_bytes", "in_flight_bytes",
              "estimated_time_to_consume_ms", "debloat_target_ms", "credit_limit_segments", "debloated_in_flight_bytes",
              "throughput_bytes_per_s", "throughput_segments_per_s"}) {
            o.null(key);
        }
        return o.done();
    }
    const auto& p = i.producer_counters;
    const auto& c = i.consumer_counters;
    o.num("abi_version", i.abi_version).num("segment_size", i.segment_size).num("segments", i.segment_count);
    o.num("payload_capacity", L::segment_payload_capacity(i.segment_size)).num("total_bytes", i.total_bytes);
    o.str("framing", framing_name(i.framing)).boolean("checksums", (i.flags & L::kFlagChecksums) != 0);
    if (i.record_type.empty()) o.null("record_type");
    else o.str("record_type", i.record_type);
    o.num("max_record_bytes", i.max_record_bytes).num("created_unix_ms", unix_ms(i.created_realtime_ns));
    o.boolean("end_of_stream", i.end_of_stream).boolean("removed", i.removed);
    o.raw("producer", side_json(i.producer, s.producer_state));
    o.raw("consumer", side_json(i.consumer, s.consumer_state));
    o.num("published_segments", i.published).num("released_segments", i.released).num("unread_segments", s.unread);
    o.real("fill", s.fill);  // Flink's outPoolUsage
    o.num("bytes_written", p.bytes).num("records_written", p.records).num("events_written", p.events);
    o.num("bytes_read", c.bytes).num("records_read", c.records).num("events_read", c.events);
    o.num("wakeups", p.wake_syscalls + c.wake_syscalls);
    o.num("producer_wake_syscalls", p.wake_syscalls).num("consumer_wake_syscalls", c.wake_syscalls);
    o.num("parks", p.parks + c.parks).num("producer_parks", p.parks).num("consumer_parks", c.parks);
    o.num("backpressured_ns", p.waited_ns).num("idle_ns", c.waited_ns);
    o.num("last_publish_unix_ms", unix_ms(p.last_realtime_ns)).num("last_release_unix_ms", unix_ms(c.last_realtime_ns));
    // Records layer: where the flush word and the resume point stand (null: they name no
    // segment in the ring, e.g. nothing flushed yet).
    const RecordsPoints points = records_points(i);
    o.num("buffer_timeout_ns", i.buffer_timeout_ns);
    if (points.flushed) o.num("flushed_segment", points.flushed_segment); else o.null("flushed_segment");
    o.num("flushed_bytes", points.flushed_bytes);
    if (points.resume) o.num("resume_segment", points.resume_segment).num("resume_offset", points.resume_offset);
    else o.null("resume_segment").null("resume_offset");
    o.num("in_flight_record_bytes", i.in_flight_record_bytes);
    // Debloating: the data in flight and the time to read it; the consumer's target, the credit
    // limit the producer obeys and what it allows (Flink's debloatedBufferSize, here for the whole
    // ring), and the consumer's measured rates. null: off, or nothing measured yet.
    o.num("in_flight_bytes", s.in_flight_bytes);
    if (s.estimated) o.real("estimated_time_to_consume_ms", s.estimated_ms); else o.null("estimated_time_to_consume_ms");
    if (i.debloat_target_ns) o.real("debloat_target_ms", static_cast<double>(i.debloat_target_ns) / 1e6);
    else o.null("debloat_target_ms");
    if (i.credit_limit) {
        o.num("credit_limit_segments", i.credit_limit);
        o.num("debloated_in_flight_bytes", std::uint64_t{i.credit_limit} * L::segment_payload_capacity(i.segment_size));
    } else {
        o.null("credit_limit_segments").null("debloated_in_flight_bytes");
    }
    if (i.segments_per_ks) {
        o.num("throughput_bytes_per_s", i.throughput_bytes_per_s);
        o.real("throughput_segments_per_s", static_cast<double>(i.segments_per_ks) / 1000.0);
    } else {
        o.null("throughput_bytes_per_s").null("throughput_segments_per_s");
    }
    return o.done();
}

// ---- list ------------------------------------------------------------------------------------------

std::string side_summary(const char* role, const ChannelInfo::Side& side, const std::string& state) {
    if (state == "none") return std::string(role) + " none";
    return std::string(role) + " " + std::to_string(side.pid) + " " + token(state);
}

std::string list_line(const Snapshot& s) {
    std::string line = s.name + "  " + s.state;
    if (s.ready) {
        const ChannelInfo& i = s.info;
        line += "  " + std::to_string(i.segment_count) + "x" + bytes_short(i.segment_size);
        line += i.framing == shmchan::Framing::records ? "  records" : "  raw";
        line += "  " + side_summary("producer", i.producer, s.producer_state);
        line += "  " + side_summary("consumer", i.consumer, s.consumer_state);
        line += "  fill " + percent(s.fill) + " (" + std::to_string(s.unread) + "/" + std::to_string(i.segment_count) + ")";
        if (i.credit_limit) line += "  limit " + std::to_string(i.credit_limit);
        if (s.estimated) line += "  drain ~" + fixed(s.estimated_ms, 0) + " ms";
    }
    if (s.stale) line += "  stale";
    if (!s.reason.empty()) line += "  reason: " + s.reason;
    return line;
}

int run_list(bool json) {
    std::string error;
    auto all = snapshot_all(&error);
    if (!error.empty()) return fail(error);
    std::string out;
    if (json) {
        out = "[";
        for (std::size_t k = 0; k < all.size(); ++k) {
            out += k ? ",\n " : "\n ";
            out += snapshot_json(all[k]);
        }
        out += all.empty() ? "]\n" : "\n]\n";
    } else {
        for (const auto& s : all) out += list_line(s) + "\n";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return kExitOk;
}

// ---- show ------------------------------------------------------------------------------------------

std::string side_text(const ChannelInfo::Side& side, const std::string& state) {
    if (state == "none") return "none (never attached)";
    std::string text = "pid " + std::to_string(side.pid) + " " + state;
    text += ", attach #" + std::to_string(side.attach_count);
    if (side.alive && side.sleeping) text += ", parked";
    return text;
}

std::string seconds_text(std::uint64_t ns) { return fixed(static_cast<double>(ns) / 1e9, 3) + " s"; }

int run_show(const std::string& name, bool json) {
    Snapshot s = take_snapshot(name);
    if (!s.found || s.state == "corrupt" || s.state == "foreign") return fail(s.reason);
    if (json) {
        std::string out = snapshot_json(s) + "\n";
        std::fwrite(out.data(), 1, out.size(), stdout);
        return kExitOk;
    }
    std::string out;
    auto row = [&](const char* key, const std::string& value) {
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "%-20s", key);
        out += buffer;
        out += value;
        out += '\n';
    };
    row("channel", s.name);
    row("path", s.path);
    row("state", s.state + (s.stale ? " (stale: no live process holds it)" : ""));
    if (!s.ready) {
        row("creator", s.creator_alive ? "alive (holds the creation lock)" : "no lock yet (file just made)");
        std::fwrite(out.data(), 1, out.size(), stdout);
        return kExitOk;
    }
    const ChannelInfo& i = s.info;
    const auto& p = i.producer_counters;
    const auto& c = i.consumer_counters;
    row("abi version", std::to_string(i.abi_version));
    row("geometry", std::to_string(i.segment_count) + " segments x " + std::to_string(i.segment_size) +
                        " bytes (payload " + std::to_string(L::segment_payload_capacity(i.segment_size)) +
                        "), " + std::to_string(i.total_bytes) + " bytes in all");
    row("framing", framing_name(i.framing) + ((i.flags & L::kFlagChecksums) ? ", CRC-32C per segment" : "") +
                       ", records up to " + std::to_string(i.max_record_bytes) + " bytes");
    row("record type", i.record_type.empty() ? "none declared" : i.record_type);
    row("created", iso_time(i.created_realtime_ns));
    row("end of stream", i.end_of_stream ? "yes" : "no");
    if (i.removed) row("removed", "yes (marked removed by a remover)");
    row("producer", side_text(i.producer, s.producer_state));
    row("consumer", side_text(i.consumer, s.consumer_state));
    row("positions", "published " + std::to_string(i.published) + ", released " + std::to_string(i.released) +
                         ", unread " + std::to_string(s.unread));
    row("fill (outPoolUsage)", percent(s.fill) + " (" + fixed(s.fill, 4) + ")");
    row("in flight", std::to_string(s.in_flight_bytes) + " bytes at most" +
                         (s.estimated ? ", ~" + fixed(s.estimated_ms, 1) + " ms to consume (estimatedTimeToConsumeBuffersMs)"
                                      : std::string()));
    if (i.debloat_target_ns || i.credit_limit) {
        std::string text = "target " + (i.debloat_target_ns ? fixed(static_cast<double>(i.debloat_target_ns) / 1e6, 1) + " ms"
                                                            : std::string("off"));
        text += ", credit limit " + (i.credit_limit ? std::to_string(i.credit_limit) + " of " + std::to_string(i.segment_count) +
                                                          " segments (" +
                                                          std::to_string(std::uint64_t{i.credit_limit} *
                                                                         L::segment_payload_capacity(i.segment_size)) +
                                                          " bytes)"
                                                    : std::string("none yet"));
        if (i.segments_per_ks) {
            text += ", consumer reads " + fixed(static_cast<double>(i.throughput_bytes_per_s) / 1e6, 2) + " MB/s, " +
                    fixed(static_cast<double>(i.segments_per_ks) / 1000.0, 1) + " segments/s when busy";
        }
        row("debloating", text);
    }
    {
        const RecordsPoints points = records_points(i);
        std::string text = "resume at " + (points.resume ? "segment " + std::to_string(points.resume_segment) + " offset " +
                                                               std::to_string(points.resume_offset)
                                                         : std::string("(no segment in the ring)"));
        if (points.flushed) {
            text += ", flushed " + std::to_string(points.flushed_bytes) + " bytes of segment " +
                    std::to_string(points.flushed_segment);
        }
        if (i.in_flight_record_bytes) text += ", a record of " + std::to_string(i.in_flight_record_bytes) + " bytes in flight";
        text += ", buffer timeout " + std::to_string(i.buffer_timeout_ns / 1'000'000) + " ms";
        row("records layer", text);
    }
    row("written", std::to_string(p.bytes) + " bytes, " + std::to_string(p.records) + " records, " +
                       std::to_string(p.segments) + " segments, " + std::to_string(p.events) + " events");
    row("read", std::to_string(c.bytes) + " bytes, " + std::to_string(c.records) + " records, " +
                    std::to_string(c.segments) + " segments, " + std::to_string(c.events) + " events");
    row("wake-ups", std::to_string(p.wake_syscalls + c.wake_syscalls) + " syscalls (producer " +
                        std::to_string(p.wake_syscalls) + ", consumer " + std::to_string(c.wake_syscalls) + ")");
    row("parks", "producer " + std::to_string(p.parks) + ", consumer " + std::to_string(c.parks));
    // Totals: a rate needs two samples (watch gives backPressuredTimeMsPerSecond and
    // idleTimeMsPerSecond per interval). The average since creation is a rough guide.
    double lifetime_s = 0;
    std::uint64_t now = shmchan::shm::realtime_ns();
    if (i.created_realtime_ns && now > i.created_realtime_ns) lifetime_s = (now - i.created_realtime_ns) / 1e9;
    auto per_second = [&](std::uint64_t ns) {
        if (lifetime_s <= 0) return std::string();
        return ", " + fixed(static_cast<double>(ns) / 1e6 / lifetime_s, 1) + " ms/s on average since creation";
    };
    row("back-pressured", seconds_text(p.waited_ns) + " in all" + per_second(p.waited_ns));
    row("idle", seconds_text(c.waited_ns) + " in all" + per_second(c.waited_ns));
    row("last publish", iso_time(p.last_realtime_ns));
    row("last release", iso_time(c.last_realtime_ns));
    std::fwrite(out.data(), 1, out.size(), stdout);
    return kExitOk;
}

// ---- watch -----------------------------------------------------------------------------------------

struct Rates {
    bool known = false;
    double mb_per_s = 0, records_per_s = 0, segments_per_s = 0, read_mb_per_s = 0;
    double backpressured_ms_per_s = 0, idle_ms_per_s = 0;
};

std::uint64_t delta(std::uint64_t now, std::uint64_t before) { return now >= before ? now - before : 0; }

Rates rates_between(const Snapshot& before, const Snapshot& now) {
    Rates r;
    if (!before.ready || !now.ready || before.info.created_realtime_ns != now.info.created_realtime_ns) return r;
    double seconds = static_cast<double>(delta(now.sampled_ns, before.sampled_ns)) / 1e9;
    if (seconds <= 0) return r;
    const auto& p0 = before.info.producer_counters;
    const auto& p1 = now.info.producer_counters;
    const auto& c0 = before.info.consumer_counters;
    const auto& c1 = now.info.consumer_counters;
    r.known = true;
    r.mb_per_s = static_cast<double>(delta(p1.bytes, p0.bytes)) / 1e6 / seconds;
    r.read_mb_per_s = static_cast<double>(delta(c1.bytes, c0.bytes)) / 1e6 / seconds;
    r.records_per_s = static_cast<double>(delta(p1.records, p0.records)) / seconds;
    r.segments_per_s = static_cast<double>(delta(p1.segments, p0.segments)) / seconds;
    r.backpressured_ms_per_s = std::min(1000.0, static_cast<double>(delta(p1.waited_ns, p0.waited_ns)) / 1e6 / seconds);
    r.idle_ms_per_s = std::min(1000.0, static_cast<double>(delta(c1.waited_ns, c0.waited_ns)) / 1e6 / seconds);
    return r;
}

// Producer: back-pressured when it waited for credits during the interval, is parked (it parks
// only to wait for a free segment), or the ring is full. Consumer: idle when it waited for data,
// is parked, or there is nothing to read.
std::string producer_activity(const Snapshot& s, const Rates& r, const Snapshot* before) {
    const auto& side = s.info.producer;
    if (!side.alive) return s.producer_state == "none" ? "none" : token(s.producer_state);
    bool waited = before && before->ready && s.info.producer_counters.waited_ns > before->info.producer_counters.waited_ns;
    if (waited || side.sleeping || s.unread >= s.info.segment_count) return "back-pressured";
    (void)r;
    return "running";
}

std::string consumer_activity(const Snapshot& s, const Snapshot* before) {
    const auto& side = s.info.consumer;
    if (!side.alive) return s.consumer_state == "none" ? "none" : token(s.consumer_state);
    bool waited = before && before->ready && s.info.consumer_counters.waited_ns > before->info.consumer_counters.waited_ns;
    if (waited || side.sleeping || s.unread == 0) return "idle";
    return "running";
}

std::string fill_bar(double fill, int width) {
    int filled = static_cast<int>(std::lround(std::clamp(fill, 0.0, 1.0) * width));
    return "[" + std::string(static_cast<std::size_t>(filled), '#') +
           std::string(static_cast<std::size_t>(width - filled), '.') + "]";
}

std::string pad(std::string text, std::size_t width, bool right = false) {
    if (text.size() >= width) return text;
    std::string spaces(width - text.size(), ' ');
    return right ? spaces + text : text + spaces;
}

// How watch draws: on a terminal, rows fit its width (columns are dropped, the fill bar and the
// names shortened, then every row cut) and colour is used unless NO_COLOR is set; otherwise plain
// full rows, the same every time, for logs and scripts.
struct Screen {
    bool terminal = false;
    bool colour = false;
    std::size_t width = 0;  // 0: unbounded
};

Screen screen_of_stdout() {
    Screen screen;
    screen.terminal = ::isatty(STDOUT_FILENO) == 1;
    if (!screen.terminal) return screen;
    const char* no_colour = std::getenv("NO_COLOR");  // https://no-color.org: set and not empty
    screen.colour = !(no_colour && *no_colour);
    winsize size{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
        screen.width = size.ws_col;
    } else if (const char* columns = std::getenv("COLUMNS"); columns && std::atoi(columns) > 0) {
        screen.width = static_cast<std::size_t>(std::atoi(columns));
    } else {
        screen.width = 80;
    }
    return screen;
}

// ANSI colours (SGR) of the watch view.
constexpr const char* kRed = "\x1b[31m";
constexpr const char* kGreen = "\x1b[32m";
constexpr const char* kYellow = "\x1b[33m";
constexpr const char* kDim = "\x1b[2m";
constexpr const char* kBold = "\x1b[1m";
constexpr const char* kReset = "\x1b[0m";

const char* state_colour(const std::string& state) {
    if (state == "active") return kGreen;
    if (state == "broken" || state == "corrupt" || state == "missing") return kRed;
    if (state == "creating") return kYellow;
    return kDim;  // ended, foreign
}
const char* fill_colour(double fill) { return fill >= 0.9 ? kRed : fill >= 0.5 ? kYellow : kGreen; }
const char* activity_colour(const std::string& activity) {
    if (activity.find("back-pressured") != std::string::npos) return kYellow;
    if (activity.find("dead") != std::string::npos || activity.find("reused") != std::string::npos) return kRed;
    if (activity.find("idle") != std::string::npos || activity.find("none") != std::string::npos) return kDim;
    return "";
}

// One cell: its text (printable ASCII, so one byte is one column) and its colour, if any.
struct Cell {
    std::string text;
    const char* colour = "";
};

// The columns of a watch row, in order, with the order they are dropped in when the terminal is
// too narrow (drop 1 first; 0: never dropped).
enum Column : std::size_t { kName, kState, kFill, kMbps, kRecps, kSegps, kBp, kIdle, kLimit, kDrain, kProducer, kConsumer, kColumns };
struct ColumnSpec {
    const char* title;
    std::size_t width;  // 0: as wide as its widest cell
    bool right;
    int drop_order;
};
constexpr ColumnSpec kColumnSpecs[kColumns] = {
    {"NAME", 0, false, 0},      {"STATE", 8, false, 0},      {"FILL", 27, false, 0},
    {"MB/s", 9, true, 0},       {"rec/s", 10, true, 2},      {"seg/s", 8, true, 1},
    {"bp ms/s", 7, true, 4},    {"idle ms/s", 9, true, 3},   {"limit", 5, true, 2},
    {"drain ms", 8, true, 2},   {"PRODUCER", 22, false, 5},
    {"CONSUMER", 0, false, 6},
};

// A row cut to the screen's width; a cell's colour ends with the cell. `used`: the columns it
// takes on the screen.
std::string render_row(const std::vector<Cell>& cells, const std::vector<std::size_t>& widths,
                       const std::vector<bool>& shown, const Screen& screen, std::size_t& used) {
    std::string out;
    used = 0;
    for (std::size_t column = 0; column < cells.size(); ++column) {
        if (!shown[column]) continue;
        bool last = true;  // the last cell shown: not padded
        for (std::size_t next = column + 1; next < cells.size(); ++next) last = last && !shown[next];
        std::string text = cells[column].text;
        if (widths[column] && text.size() > widths[column]) text = text.substr(0, widths[column] - 1) + "~";
        if (!last && widths[column]) text = pad(text, widths[column], kColumnSpecs[column].right);
        std::string separator = used == 0 ? "" : (column == kFill || column == kMbps || column >= kProducer) ? "  " : " ";
        if (screen.width) {
            if (used + separator.size() >= screen.width) break;
            text = text.substr(0, screen.width - used - separator.size());
        }
        used += separator.size() + text.size();
        const char* colour = cells[column].colour;
        out += separator;
        out += screen.colour && *colour ? colour + text + kReset : text;
    }
    return out;
}

// A line of free text (the title, an error, a reason) cut to the screen.
std::string cut(std::string text, const Screen& screen) {
    if (screen.width && text.size() > screen.width) text = text.substr(0, screen.width - 1) + "~";
    return text;
}

std::string watch_frame(const std::vector<Snapshot>& now, const std::map<std::string, Snapshot>& before,
                        double interval, const Screen& screen, const std::string& error) {
    std::string out;
    const bool terminal = screen.terminal;
    std::string eol = terminal ? "\x1b[K\n" : "\n";
    std::string title = "shm-inspect watch  " + shmchan::shm::region_directory() + "  " +
                        iso_time(shmchan::shm::realtime_ns()) + "  every " + fixed(interval, 1) + " s  channels " +
                        std::to_string(now.size()) + (terminal ? "  (Ctrl-C quits)" : "");
    out += (screen.colour ? std::string(kBold) + cut(title, screen) + kReset : cut(title, screen)) + eol;
    if (!error.empty()) {
        out += (screen.colour ? std::string(kRed) + cut("error: " + error, screen) + kReset : cut("error: " + error, screen)) + eol;
    }

    // The cells of every row first, then the widths that fit.
    std::vector<std::vector<Cell>> rows;
    std::vector<std::string> notes;  // a row of a channel that is not ready: its reason
    std::size_t fill_bar_width = 20;
    for (const auto& s : now) {
        std::vector<Cell> cells(kColumns);
        cells[kName] = {s.name, ""};
        cells[kState] = {s.state, state_colour(s.state)};
        if (!s.ready) {
            cells.resize(kState + 1);
            std::string note = s.reason;
            if (s.stale) note += note.empty() ? "(stale)" : " (stale)";
            notes.push_back(note);
            rows.push_back(std::move(cells));
            continue;
        }
        notes.emplace_back();
        auto found = before.find(s.name);
        const Snapshot* previous = found == before.end() ? nullptr : &found->second;
        Rates r = previous ? rates_between(*previous, s) : Rates{};
        cells[kFill] = {"", fill_colour(s.fill)};  // drawn once the bar's width is known
        auto rate = [&](double value, int decimals) { return r.known ? fixed(value, decimals) : std::string("-"); };
        cells[kMbps] = {rate(r.mb_per_s, 1)};
        cells[kRecps] = {rate(r.records_per_s, 0)};
        cells[kSegps] = {rate(r.segments_per_s, 0)};
        cells[kBp] = {rate(r.backpressured_ms_per_s, 0), r.known && r.backpressured_ms_per_s >= 1 ? kYellow : ""};
        cells[kIdle] = {rate(r.idle_ms_per_s, 0)};
        cells[kLimit] = {s.info.credit_limit ? std::to_string(s.info.credit_limit) : std::string("-")};
        cells[kDrain] = {s.estimated ? fixed(s.estimated_ms, 0) : std::string("-")};
        const ChannelInfo& i = s.info;
        std::string producer = producer_activity(s, r, previous);
        std::string consumer = consumer_activity(s, previous);
        cells[kProducer] = {(i.producer.attach_count ? std::to_string(i.producer.pid) + " " : std::string()) + producer,
                            activity_colour(producer)};
        cells[kConsumer] = {(i.consumer.attach_count ? std::to_string(i.consumer.pid) + " " : std::string()) + consumer +
                                (s.stale ? "  stale" : ""),
                            activity_colour(consumer)};
        rows.push_back(std::move(cells));
    }

    std::vector<std::size_t> widths(kColumns);
    std::vector<bool> shown(kColumns, true);
    for (std::size_t column = 0; column < kColumns; ++column) {
        widths[column] = std::max(std::strlen(kColumnSpecs[column].title), kColumnSpecs[column].width);
    }
    for (const auto& cells : rows) widths[kName] = std::max(widths[kName], cells[kName].text.size());
    if (terminal) widths[kName] = std::min<std::size_t>(widths[kName], 32);
    widths[kConsumer] = 0;  // the last column: not padded
    auto total = [&] {
        std::size_t sum = 0;
        for (std::size_t column = 0; column < kColumns; ++column) {
            if (!shown[column]) continue;
            sum += (column == kConsumer ? 16 : widths[column]) + 2;
        }
        return sum;
    };
    if (screen.width) {
        // Narrow terminal: drop the rates but MB/s, then shorten the fill bar (to 8) and the names
        // (to 12), then drop the sides, then shorten the names to 8; render_row cuts what is still
        // too long.
        auto drop = [&](int first, int last) {
            for (int order = first; order <= last && total() > screen.width; ++order) {
                for (std::size_t column = 0; column < kColumns; ++column) {
                    if (kColumnSpecs[column].drop_order == order) shown[column] = false;
                }
            }
        };
        drop(1, 4);
        for (; total() > screen.width && fill_bar_width > 8; --fill_bar_width) --widths[kFill];
        while (total() > screen.width && widths[kName] > 12) --widths[kName];
        drop(5, 6);
        while (total() > screen.width && widths[kName] > 8) --widths[kName];
    }
    for (std::size_t k = 0; k < rows.size(); ++k) {
        if (rows[k].size() == kColumns) rows[k][kFill].text = fill_bar(now[k].fill, static_cast<int>(fill_bar_width)) +
                                                              " " + pad(percent(now[k].fill), 4, true);
    }

    std::vector<Cell> header(kColumns);
    for (std::size_t column = 0; column < kColumns; ++column) header[column] = {kColumnSpecs[column].title, ""};
    std::size_t used = 0;
    out += render_row(header, widths, shown, screen, used) + eol;
    for (std::size_t k = 0; k < rows.size(); ++k) {
        std::string line = render_row(rows[k], widths, shown, screen, used);
        if (!notes[k].empty()) {
            Screen rest = screen;
            if (screen.width) rest.width = screen.width > used + 2 ? screen.width - used - 2 : 1;
            line += "  " + cut(notes[k], rest);
        }
        out += line + eol;
    }
    return out;
}

// Sleeps `seconds` in slices, returning early when a signal arrived.
// watch takes SIGINT and SIGTERM synchronously: they are blocked, and its sleep between frames is
// a sigtimedwait that returns as soon as one is pending. No handler has to run (a sanitizer
// runtime may defer handlers), and a signal that arrives while a frame is drawn waits for the
// next sleep.
sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    return set;
}

void interruptible_sleep(double seconds) {
    const sigset_t set = stop_signals();
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
    while (!g_signal) {
        auto now = std::chrono::steady_clock::now();
        std::chrono::steady_clock::duration left = until > now ? until - now : std::chrono::steady_clock::duration::zero();
        timespec ts{};
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
        int taken = ::sigtimedwait(&set, nullptr, &ts);
        if (taken > 0) g_signal = taken;
        if (taken < 0 && errno != EINTR) return;  // EAGAIN: the time is up
    }
}

int run_watch(const std::optional<std::string>& name, double interval, std::optional<std::uint64_t> count) {
    const sigset_t set = stop_signals();
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    const Screen screen = screen_of_stdout();
    const bool terminal = screen.terminal;
    std::map<std::string, Snapshot> before;
    for (std::uint64_t frame = 0; !g_signal && (!count || frame < *count); ++frame) {
        if (frame > 0) {
            interruptible_sleep(interval);
            if (g_signal) break;
        }
        std::string error;
        std::vector<Snapshot> now;
        if (name) {
            Snapshot s = take_snapshot(*name);
            if (!s.found) {
                if (frame == 0) return fail(s.reason);  // nothing to watch (one removed later shows missing)
                s.state = "missing";
            }
            now.push_back(std::move(s));
        } else {
            now = snapshot_all(&error);
        }
        std::string out = watch_frame(now, before, interval, screen, error);
        if (terminal) {
            out = "\x1b[H" + out + "\x1b[J";  // home, the frame (each line clears its rest), clear below
            if (frame == 0) out = "\x1b[2J" + out;
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        before.clear();
        for (auto& s : now) before.emplace(s.name, std::move(s));
    }
    return kExitOk;
}

// ---- peek ------------------------------------------------------------------------------------------

// ---- peek: copies of segments, and the records decoder ---------------------------------------------

// A segment's committed bytes copied out of the mapping, after checking its header; the copy is
// kept only if the segment was still unread and unrecycled after it.
struct SegmentCopy {
    enum class Result { ok, not_started, consumed, bad } result = Result::ok;
    std::string problem;  // bad: what
    bool sealed = false;  // published (final); otherwise the producer is still filling it
    std::uint32_t committed = 0, flags = 0, first_record_offset = 0;
    std::vector<std::byte> bytes;
};

struct RingCopier {
    const std::byte* base;
    const L::ChannelHeader& header;
    std::uint32_t segment_size, segment_count, capacity;
    std::uint64_t published;  // the snapshot peek works from

    bool consumed(std::uint64_t position) const {
        return L::load_acquire(header.consumers[0].position.released) > position;
    }

    // Copies the segment at `position` (<= published: the one at `published` is being filled).
    SegmentCopy copy(std::uint64_t position) const {
        SegmentCopy out;
        const std::uint64_t slot = position % segment_count;
        const auto* segment =
            reinterpret_cast<const L::SegmentHeader*>(base + L::kHeaderBytes + slot * std::uint64_t{segment_size});
        const std::byte* payload = reinterpret_cast<const std::byte*>(segment) + L::kSegmentHeaderBytes;
        out.sealed = position < published;
        // Rule 2 (partial reads): sequence first, then committed_bytes, both with acquire.
        std::uint64_t sequence = L::load_acquire(segment->sequence);
        out.committed = L::load_acquire(segment->committed_bytes);
        out.flags = L::load_relaxed(segment->flags);
        out.first_record_offset = L::load_relaxed(segment->first_record_offset);
        if (sequence != position) {
            if (consumed(position)) {
                out.result = SegmentCopy::Result::consumed;
            } else if (!out.sealed) {
                out.result = SegmentCopy::Result::not_started;
            } else {
                out.result = SegmentCopy::Result::bad;
                out.problem = "carries sequence " + std::to_string(sequence) + ", expected " + std::to_string(position);
            }
            return out;
        }
        if (out.committed > capacity) {
            out.result = SegmentCopy::Result::bad;
            out.problem = "claims " + std::to_string(out.committed) + " bytes, capacity is " + std::to_string(capacity);
            return out;
        }
        if (out.flags & ~L::kSegmentKnownFlags) {
            out.result = SegmentCopy::Result::bad;
            out.problem = "has unknown flags " + std::to_string(out.flags);
            return out;
        }
        if (out.sealed && out.first_record_offset > out.committed) {
            out.result = SegmentCopy::Result::bad;
            out.problem = "first record offset " + std::to_string(out.first_record_offset) + " is beyond its " +
                          std::to_string(out.committed) + " bytes";
            return out;
        }
        out.bytes.assign(payload, payload + out.committed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (consumed(position) || L::load_acquire(segment->sequence) != position) {
            out.result = SegmentCopy::Result::consumed;
            out.bytes.clear();
        }
        return out;
    }
};

// Prints a record's or event's payload: one line for short single-line text, else a text block
// or a hex dump; at most `max_bytes` (0: all) of `total` bytes were kept in `shown`.
void print_payload(const std::string& head, std::span<const std::byte> shown, std::uint64_t total) {
    const bool truncated = shown.size() < total;
    const bool text = fmt::is_text(shown, truncated);
    std::string out = head;
    if (text && std::find(shown.begin(), shown.end(), std::byte{'\n'}) == shown.end()) {
        out += ": ";
        out.append(reinterpret_cast<const char*>(shown.data()), shown.size());
        out += '\n';
    } else if (text) {
        out += ", text:\n";
        out.append(reinterpret_cast<const char*>(shown.data()), shown.size());
        if (shown.empty() || shown.back() != std::byte{'\n'}) out += '\n';
    } else {
        out += ", binary:\n" + fmt::hex_dump(shown);
    }
    if (truncated) out += "... " + std::to_string(total - shown.size()) + " more bytes (--max-bytes 0 shows all)\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
}

// Decodes the unread frames of a records channel (layout.hpp, FrameHeader): from the consumer's
// resume point (segment `released`, payload offset `resume_offset`) through the published
// segments and the committed prefix of the one being filled. The records of a record_run frame
// are shown one by one, each at its own offset, and count one each against `count`; the resume
// point may be a record inside a run (a consumer that stopped in the middle of one). Returns a
// problem (corrupt data) or empty.
std::string peek_records(const std::string& name, const RingCopier& ring, std::uint64_t released,
                         std::uint64_t resume_offset, std::uint64_t max_record, bool ended, std::uint64_t count,
                         std::uint64_t max_bytes) {
    namespace detail = shmchan::detail;
    std::printf("%s: records, %llu unread segment%s, resuming at segment %llu offset %llu%s\n", name.c_str(),
                static_cast<unsigned long long>(ring.published - released), ring.published - released == 1 ? "" : "s",
                static_cast<unsigned long long>(released), static_cast<unsigned long long>(resume_offset),
                ended ? ", end of stream written" : "");
    std::uint64_t position = released;
    std::uint64_t shown = 0;
    auto where = [](std::uint64_t segment, std::uint64_t offset) {
        return "@" + std::to_string(segment) + ":" + std::to_string(offset);
    };
    auto load = [&](std::uint64_t at, SegmentCopy& out, std::string& problem) -> bool {
        if (at > ring.published) return false;
        out = ring.copy(at);
        switch (out.result) {
            case SegmentCopy::Result::ok: return true;
            case SegmentCopy::Result::not_started: return false;
            case SegmentCopy::Result::consumed:
                std::printf("segment %llu: consumed while peeking\n", static_cast<unsigned long long>(at));
                return false;
            case SegmentCopy::Result::bad:
                problem = "segment " + std::to_string(at) + " " + out.problem;
                std::printf("segment %llu: bad segment: %s\n", static_cast<unsigned long long>(at), out.problem.c_str());
                return false;
        }
        return false;
    };
    std::string problem;
    SegmentCopy segment;
    if (!load(position, segment, problem)) {
        if (problem.empty()) std::printf("no unread records\n");
        return problem;
    }
    std::uint64_t offset = resume_offset;
    if (offset > segment.committed) {
        return "resume offset " + std::to_string(offset) + " is beyond segment " + std::to_string(position) + "'s " +
               std::to_string(segment.committed) + " bytes";
    }
    // Inside a record_run frame: its records from `offset` up to `run_end` (0: not in a run), each
    // `run_record_size` bytes, all within the segment's copy (checked when the run was entered).
    std::uint64_t run_end = 0;
    std::uint64_t run_record_size = 0;
    std::string run_label;  // after each record's size: " (run of K)", or " (rest of a run)" when resumed inside
    const auto frames_of = [&](const SegmentCopy& copy) {
        return detail::SegmentFrames{copy.bytes, copy.flags, copy.first_record_offset, copy.sealed, ring.capacity,
                                     max_record};
    };
    if (offset != 0) {
        // A resume offset other than the segment's start must be a frame's start or a record's
        // start inside a run frame (then not 8-aligned, maybe): walk the segment's frames to it.
        // Its frames start after any continuation bytes of a record from an earlier segment.
        const detail::FramePlace place = detail::locate_frame(frames_of(segment), offset);
        if (!place.found) {
            return "resume offset " + std::to_string(offset) + " of segment " + std::to_string(position) +
                   " is neither a frame's start nor a record's start in a record run";
        }
        if (place.run_end != 0) {
            // locate_frame checked the run against these bytes: run_end <= size, and the resume
            // offset is one of its record starts.
            run_end = place.run_end;
            run_record_size = place.record_size;
            run_label = " (rest of a run)";
            const std::uint64_t left = (run_end - offset) / run_record_size;
            std::printf("resume point %s is inside a run: %llu record%s of %llu bytes left in it\n",
                        where(position, offset).c_str(), static_cast<unsigned long long>(left), left == 1 ? "" : "s",
                        static_cast<unsigned long long>(run_record_size));
        }
    }
    bool at_segment_start = true;
    while (shown < count) {
        const std::uint64_t size = segment.bytes.size();
        if (at_segment_start && offset == 0) {
            const detail::Frame first = detail::decode_frame(frames_of(segment), 0);
            if (first.step == detail::FrameStep::continuation) {
                // The rest of a record whose start was released (a consumer died inside a record
                // larger than the ring): not decodable from here.
                std::printf("segment %llu: continuation of a record that started in a released segment: skipped\n",
                            static_cast<unsigned long long>(position));
                offset = first.next;
                if (!segment.sealed && (segment.flags & L::kSegmentRecordContinues)) break;
            }
        }
        at_segment_start = false;
        if (offset >= size) {
            if (!segment.sealed) break;  // the producer is filling it: nothing more yet
            ++position;
            if (!load(position, segment, problem)) break;
            offset = 0;
            at_segment_start = true;
            continue;
        }
        if (run_end > offset) {
            // The next record of a run frame: no header of its own; it lies in the segment's copy
            // (run_end <= size) and a whole record is left before run_end (the run's size is a
            // multiple of run_record_size from every record start).
            const std::string start = where(position, offset);
            std::span<const std::byte> bytes(segment.bytes.data() + offset, run_record_size);
            offset += run_record_size;
            if (offset >= run_end) {
                offset = L::past_run(run_end, size);
                run_end = 0;
            }
            ++shown;
            auto kept = max_bytes == 0 ? bytes : bytes.first(std::min<std::uint64_t>(bytes.size(), max_bytes));
            print_payload("record " + start + ", " + std::to_string(run_record_size) + " bytes" + run_label, kept,
                          run_record_size);
            continue;
        }
        const detail::Frame frame = detail::decode_frame(frames_of(segment), offset);
        const std::string start = where(position, offset);
        const std::uint64_t length = frame.length;
        const unsigned kind_value = static_cast<std::uint16_t>(frame.kind);
        switch (frame.step) {
            case detail::FrameStep::corrupt:
                switch (frame.fault) {
                    case detail::FrameFault::truncated_header: return "truncated frame header at " + start;
                    case detail::FrameFault::bad_run:
                        std::printf("frame %s: record run of %llu bytes, %u records of %u bytes: not decoded\n", start.c_str(),
                                    static_cast<unsigned long long>(length), frame.run.header.count,
                                    frame.run.header.record_size);
                        return "record run at " + start + " of " + std::to_string(length) + " bytes (" +
                               std::to_string(frame.run.header.count) + " records of " +
                               std::to_string(frame.run.header.record_size) +
                               " bytes) does not fit its frame or the segment's " + std::to_string(size) + " committed bytes";
                    case detail::FrameFault::unknown_kind:
                        std::printf("frame %s: unknown kind %u: not decoded\n", start.c_str(), kind_value);
                        return "unknown frame kind " + std::to_string(kind_value) + " at " + start;
                    case detail::FrameFault::record_too_large:
                    case detail::FrameFault::bad_event_length:
                        std::printf("frame %s: kind %u with length %llu: not decoded\n", start.c_str(), kind_value,
                                    static_cast<unsigned long long>(length));
                        return "frame of kind " + std::to_string(kind_value) + " with bad length " + std::to_string(length) +
                               " at " + start;
                    case detail::FrameFault::past_committed:
                        return "frame of " + std::to_string(length) + " bytes at " + start + " runs past the segment's " +
                               std::to_string(size) + " committed bytes";
                    default: return std::string(detail::to_string(frame.fault)) + " at " + start;
                }
            case detail::FrameStep::run:
                // A run frame (layout.hpp, RunHeader): its header, padding to run_data_offset(),
                // then count records of record_size bytes, all in this copy (the decoder checked).
                run_end = frame.run.end;
                run_record_size = frame.run.header.record_size;
                run_label = " (run of " + std::to_string(frame.run.header.count) + ")";
                offset = frame.run.data;
                continue;  // the loop shows its records
            case detail::FrameStep::continuation:  // of no bytes, at offset 0: no writer makes one
                return "segment " + std::to_string(position) + " continues a record with no bytes";
            case detail::FrameStep::end: break;  // offset < size: not reached
            case detail::FrameStep::record:
            case detail::FrameStep::event:
            case detail::FrameStep::pending: break;
        }
        if (frame.step == detail::FrameStep::end) break;
        if (frame.step != detail::FrameStep::pending && !frame.spans) {
            const std::span<const std::byte> bytes = frame.bytes;
            offset = frame.next;
            ++shown;
            if (frame.kind == L::FrameKind::end_of_stream) {
                std::printf("event %s: end of stream\n", start.c_str());
                break;
            }
            if (frame.kind == L::FrameKind::barrier) {
                std::uint64_t id;
                std::memcpy(&id, bytes.data(), sizeof id);
                std::printf("event %s: checkpoint barrier %llu\n", start.c_str(), static_cast<unsigned long long>(id));
                continue;
            }
            auto kept = max_bytes == 0 ? bytes : bytes.first(std::min<std::uint64_t>(bytes.size(), max_bytes));
            if (frame.kind == L::FrameKind::user_event) {
                print_payload("event " + start + ": user event " + std::to_string(frame.event_type) + ", " +
                                  std::to_string(length) + " bytes",
                              kept, length);
            } else {
                print_payload("record " + start + ", " + std::to_string(length) + " bytes", kept, length);
            }
            continue;
        }
        // A record spanning segments (pending: its first segment is still being filled): its
        // first segment ends with it, the next ones carry continuation bytes from offset 0.
        std::vector<std::byte> kept;
        const std::uint64_t limit = max_bytes == 0 ? length : std::min<std::uint64_t>(length, max_bytes);
        auto keep = [&](std::span<const std::byte> from) {
            std::uint64_t room = limit - std::min<std::uint64_t>(limit, kept.size());
            kept.insert(kept.end(), from.begin(), from.begin() + std::min<std::uint64_t>(from.size(), room));
        };
        std::uint64_t copied = frame.bytes.size();
        keep(frame.bytes);
        const std::uint64_t first_segment = position;
        bool complete = frame.step != detail::FrameStep::pending;
        while (complete && copied < length) {
            ++position;
            if (!load(position, segment, problem)) {
                complete = false;
                break;
            }
            const detail::Frame part = detail::decode_continuation(frames_of(segment), length - copied);
            if (part.step == detail::FrameStep::pending) {
                complete = false;
                break;
            }
            if (part.step != detail::FrameStep::continuation) {
                if (part.fault == detail::FrameFault::not_a_continuation) {
                    return "segment " + std::to_string(position) + " should continue the record at " + start;
                }
                return "segment " + std::to_string(position) + " (continuing the record at " + start +
                       "): " + detail::to_string(part.fault);
            }
            keep(part.bytes);
            copied += part.bytes.size();
            if (!part.spans) offset = part.next;
        }
        if (!problem.empty()) return problem;
        if (!complete) {
            std::printf("record %s, %llu bytes: being written (%llu bytes so far)\n", start.c_str(),
                        static_cast<unsigned long long>(length), static_cast<unsigned long long>(copied));
            break;
        }
        ++shown;
        print_payload("record " + start + ", " + std::to_string(length) + " bytes, spanning segments " +
                          std::to_string(first_segment) + ".." + std::to_string(position),
                      std::span<const std::byte>(kept.data(), kept.size()), length);
    }
    if (shown == count) std::printf("... (--count %llu reached)\n", static_cast<unsigned long long>(count));
    return problem;
}

int run_peek(const std::string& name, std::uint64_t count, std::uint64_t max_bytes) {
    Snapshot s = take_snapshot(name);
    if (!s.found || s.state == "corrupt" || s.state == "foreign") return fail(s.reason);
    if (!s.ready) {
        std::printf("%s: still being created: nothing to read yet\n", name.c_str());
        return kExitOk;
    }

    // Our own read-only mapping; every value read from it is copied, checked, then used.
    shmchan::shm::Region region;
    try {
        region = shmchan::shm::Region::open(s.path, {}, /*writable=*/false);
    } catch (const std::exception& error) {
        return fail(error.what());
    }
    const std::string where = "channel '" + name + "' at " + s.path;
    if (region.size() < L::kHeaderBytes) return fail(where + ": file shrank below a header");
    const auto& header = *static_cast<const L::ChannelHeader*>(region.data());
    const auto* base = static_cast<const std::byte*>(region.data());
    std::uint64_t magic = L::load_relaxed(header.identity.magic);
    std::uint32_t version = L::load_acquire(header.identity.abi_version);
    std::uint32_t segment_size = L::load_relaxed(header.identity.segment_size);
    std::uint32_t segment_count = L::load_relaxed(header.identity.segment_count);
    if (magic != L::kMagic || version != L::kAbiVersion || segment_size < L::kMinSegmentSize ||
        segment_size > L::kMaxSegmentSize || segment_size % L::kSegmentSizeUnit != 0 ||
        segment_count < L::kMinSegmentCount || segment_count > L::kMaxSegmentCount ||
        L::region_bytes(segment_size, segment_count) > region.size()) {
        return fail(where + ": header changed or is invalid (magic, version or geometry)");
    }
    const std::uint32_t capacity = L::segment_payload_capacity(segment_size);

    // A consistent pair: released, then published, then released again unchanged.
    std::uint64_t released = 0, published = 0;
    for (int attempt = 0;; ++attempt) {
        released = L::load_acquire(header.consumers[0].position.released);
        published = L::load_acquire(header.producer.published);
        std::uint64_t again = L::load_acquire(header.consumers[0].position.released);
        if (again == released) break;
        if (attempt == 100) return fail(where + ": positions keep moving; try again");
    }
    if (published < released || published - released > segment_count) {
        return fail(where + ": positions published " + std::to_string(published) + " and released " +
                    std::to_string(released) + " are inconsistent with " + std::to_string(segment_count) + " segments");
    }
    bool ended = L::load_acquire(header.producer.end_of_stream) != 0;
    if (s.info.framing == shmchan::Framing::records) {
        RingCopier ring{base, header, segment_size, segment_count, capacity, published};
        // The resume word (layout.hpp): usually in segment `released`, one release ahead if the
        // consumer died between its two stores.
        std::uint64_t resume_word = L::load_relaxed(header.consumers[0].position.resume_point);
        std::uint64_t resume_position = released, resume_offset = 0;
        if (!L::decode_tagged_word(resume_word, released, published, resume_position, resume_offset)) {
            return fail(where + ": resume point " + std::to_string(resume_word >> 32) + ":" +
                        std::to_string(resume_word & 0xffff'ffffull) + " names no unreleased segment");
        }
        std::uint64_t max_record = L::load_relaxed(header.identity.max_record_bytes);
        std::string problem = peek_records(name, ring, resume_position, resume_offset, max_record, ended, count, max_bytes);
        std::fflush(stdout);
        if (!problem.empty()) return fail(where + ": " + problem);
        return kExitOk;
    }
    const std::uint64_t unread = published - released;
    std::string out = name + ": raw bytes, " + std::to_string(unread) + " unread segment" + (unread == 1 ? "" : "s");
    if (unread) out += " (positions " + std::to_string(released) + ".." + std::to_string(published - 1) + ")";
    out += ended ? ", end of stream written\n" : "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);

    std::string corrupt;
    std::vector<std::byte> buffer;
    const std::uint64_t shown_segments = std::min<std::uint64_t>(unread, count);
    for (std::uint64_t position = released; position < released + shown_segments; ++position) {
        const std::uint64_t slot = position % segment_count;
        const std::uint64_t offset = L::kHeaderBytes + slot * std::uint64_t{segment_size};
        const auto& segment = *reinterpret_cast<const L::SegmentHeader*>(base + offset);
        const std::byte* payload = base + offset + L::kSegmentHeaderBytes;
        auto consumed = [&] { return L::load_acquire(header.consumers[0].position.released) > position; };
        std::string label = "segment " + std::to_string(position) + " (slot " + std::to_string(slot) + ")";
        std::uint64_t sequence = L::load_acquire(segment.sequence);
        std::uint32_t committed = L::load_acquire(segment.committed_bytes);
        std::uint32_t flags = L::load_relaxed(segment.flags);
        if (sequence != position || committed > capacity) {
            if (consumed()) {
                std::printf("%s: consumed while peeking\n", label.c_str());
                continue;
            }
            std::string problem = sequence != position
                                      ? "carries sequence " + std::to_string(sequence) + ", expected " + std::to_string(position)
                                      : "claims " + std::to_string(committed) + " bytes, capacity is " + std::to_string(capacity);
            std::printf("%s: bad segment: %s: not decoded\n", label.c_str(), problem.c_str());
            if (corrupt.empty()) corrupt = where + ": " + label + " " + problem;
            continue;
        }
        const std::uint64_t shown = max_bytes == 0 ? committed : std::min<std::uint64_t>(committed, max_bytes);
        buffer.assign(payload, payload + shown);
        // The copy is good only if the segment was still unread (not recycled) after it.
        std::atomic_thread_fence(std::memory_order_acquire);
        if (consumed() || L::load_acquire(segment.sequence) != position) {
            std::printf("%s: consumed while peeking\n", label.c_str());
            continue;
        }
        std::span<const std::byte> bytes(buffer.data(), buffer.size());
        const bool truncated = shown < committed;
        const bool text = fmt::is_text(bytes, truncated);
        std::string head = label + ": " + std::to_string(committed) + " bytes";
        if (flags) head += ", flags " + std::to_string(flags);
        head += text ? ", text:\n" : ", binary:\n";
        std::fwrite(head.data(), 1, head.size(), stdout);
        if (text) {
            std::fwrite(buffer.data(), 1, buffer.size(), stdout);
            if (!buffer.empty() && buffer.back() != std::byte{'\n'}) std::fputc('\n', stdout);
        } else {
            std::string dump = fmt::hex_dump(bytes);
            std::fwrite(dump.data(), 1, dump.size(), stdout);
        }
        if (truncated) {
            std::printf("... %llu more bytes (--max-bytes 0 shows all)\n",
                        static_cast<unsigned long long>(committed - shown));
        }
    }
    if (unread > shown_segments) {
        std::printf("... %llu more unread segments (--count shows more)\n",
                    static_cast<unsigned long long>(unread - shown_segments));
    }
    std::fflush(stdout);
    if (!corrupt.empty()) return fail(corrupt);
    return kExitOk;
}

// ---- gc --------------------------------------------------------------------------------------------

std::string gc_reason(const Snapshot& s) {
    if (s.state == "corrupt") return "corrupt: " + s.reason;
    if (s.state == "foreign") return "foreign: " + s.reason;
    std::string reason = s.state + ", no live process";
    if (s.ready) reason += ": producer " + s.producer_state + ", consumer " + s.consumer_state;
    return reason;
}

// Seconds since anything happened on the channel (created, published, released); for a file
// that did not validate, since it was last modified.
double idle_seconds(const Snapshot& s) {
    std::uint64_t last = 0;
    if (s.ready) {
        last = std::max({s.info.created_realtime_ns, s.info.producer_counters.last_realtime_ns,
                         s.info.consumer_counters.last_realtime_ns});
    }
    if (last == 0) {
        struct stat st {};
        if (::lstat(s.path.c_str(), &st) != 0) return 0;
        last = static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(st.st_mtim.tv_nsec);
    }
    std::uint64_t now = shmchan::shm::realtime_ns();
    return now > last ? static_cast<double>(now - last) / 1e9 : 0.0;
}

// A stream that ended cleanly and that no consumer has read to its end: data handed over, like
// bytes written to a pipe. Not garbage.
bool holds_unread_stream(const Snapshot& s) {
    return s.ready && s.state == "ended" && (s.unread > 0 || s.info.consumer.attach_count == 0);
}

struct GcOptions {
    bool dry_run = false;
    bool all = false;                   // also foreign files and ended, unread streams
    std::optional<double> older_than;   // only channels idle at least this long; ended, unread ones too
    std::vector<std::string> names;     // only these channels
};

// Removes a corrupt regular file that the library cannot open (unsafe mode, for one), after
// proving nobody holds any of its locks; only if the name still names the file we checked.
bool unlink_unheld(const std::string& path, std::string& why) {
    LockProbe probe(path);
    if (!probe.ok()) {
        why = "not a regular file";
        return false;
    }
    if (probe.any_held()) {
        why = "a live process holds it";
        return false;
    }
    struct stat named {};
    if (::lstat(path.c_str(), &named) != 0 || named.st_ino != probe.stat().st_ino || named.st_dev != probe.stat().st_dev) {
        why = "replaced meanwhile";
        return false;
    }
    if (::unlink(path.c_str()) != 0) {
        why = std::strerror(errno);
        return false;
    }
    return true;
}

int run_gc(const GcOptions& options) {
    std::string error;
    std::vector<Snapshot> all;
    if (options.names.empty()) {
        all = snapshot_all(&error);
        if (!error.empty()) return fail(error);
    } else {
        for (const auto& name : options.names) {
            Snapshot s = take_snapshot(name);
            if (!s.found) return fail(s.reason);
            all.push_back(std::move(s));
        }
    }
    int status = kExitOk;
    auto keep = [&](const Snapshot& s, const std::string& why) {
        std::fflush(stdout);
        std::fprintf(stderr, "shm-inspect: kept %s: %s\n", s.name.c_str(), why.c_str());
    };
    for (const auto& s : all) {
        // Another user's file, whether or not we could look at its locks.
        if (s.state == "foreign" && !options.all) {
            keep(s, s.reason + "; --all removes it");
            continue;
        }
        if (!s.stale) {  // a live process holds it, or it is being created, or we cannot look
            if (s.state == "foreign") {
                keep(s, s.reason + "; whether a live process holds it cannot be checked");
            } else if (!options.names.empty()) {
                keep(s, "a live process holds it");
            }
            continue;
        }
        if (s.state != "foreign" && ::geteuid() != 0 && s.owner != ::geteuid()) {
            keep(s, "owned by uid " + std::to_string(s.owner) + ", not by us");
            continue;
        }
        const bool old_enough = options.older_than && idle_seconds(s) >= *options.older_than;
        if (options.older_than && !old_enough) continue;
        if (holds_unread_stream(s) && !options.all && !old_enough) {
            keep(s, "its stream ended and was not read yet; --all or --older-than removes it");
            continue;
        }
        std::string reason = gc_reason(s);
        if (options.dry_run) {
            std::printf("would remove %s (%s)\n", s.name.c_str(), reason.c_str());
            continue;
        }
        shmchan::RemoveResult result = shmchan::RemoveResult::not_found;
        bool removed = false;
        std::string why;
        if (s.state == "corrupt" || s.state == "foreign") {
            // Not a channel we can vouch for: unlink the name if nobody holds it, write nothing.
            removed = unlink_unheld(s.path, why);
        } else {
            try {
                result = shmchan::remove_channel(s.name, /*force=*/false);
                removed = result == shmchan::RemoveResult::removed;
                if (result == shmchan::RemoveResult::in_use) why = "a live process holds it now";
            } catch (const std::exception& caught) {
                why = caught.what();
            }
        }
        if (removed) {
            std::printf("removed %s (%s)\n", s.name.c_str(), reason.c_str());
        } else if (result != shmchan::RemoveResult::not_found || !why.empty()) {
            keep(s, why);
            if (result != shmchan::RemoveResult::in_use) status = kExitFailure;
        }
    }
    std::fflush(stdout);
    return status;
}

// ---- metrics ---------------------------------------------------------------------------------------

int run_metrics() {
    std::string error;
    auto all = snapshot_all(&error);
    if (!error.empty()) return fail(error);
    std::string out;
    auto label = [](const Snapshot& s) { return "channel=\"" + fmt::prometheus_label_value(s.name) + "\""; };
    auto family = [&](const std::string& metric, const char* type, const char* help) {
        out += "# HELP " + metric + " " + help + "\n";
        out += "# TYPE " + metric + " " + type + "\n";
    };
    auto sample = [&](const std::string& metric, const std::string& labels, const std::string& value) {
        out += metric + "{" + labels + "} " + value + "\n";
    };
    using Getter = std::uint64_t (*)(const ChannelInfo&);
    struct Counter {
        const char* name;
        const char* help;
        Getter get;
    };
    static const Counter counters[] = {
        {"shmchan_bytes_written_total", "Payload bytes published by the producer.",
         [](const ChannelInfo& i) { return i.producer_counters.bytes; }},
        {"shmchan_records_written_total", "Records written by the producer.",
         [](const ChannelInfo& i) { return i.producer_counters.records; }},
        {"shmchan_segments_published_total", "Segments published by the producer.",
         [](const ChannelInfo& i) { return i.producer_counters.segments; }},
        {"shmchan_events_written_total", "Events written by the producer.",
         [](const ChannelInfo& i) { return i.producer_counters.events; }},
        {"shmchan_bytes_read_total", "Payload bytes released by the consumer.",
         [](const ChannelInfo& i) { return i.consumer_counters.bytes; }},
        {"shmchan_records_read_total", "Records read by the consumer.",
         [](const ChannelInfo& i) { return i.consumer_counters.records; }},
        {"shmchan_segments_released_total", "Segments released by the consumer.",
         [](const ChannelInfo& i) { return i.consumer_counters.segments; }},
        {"shmchan_events_read_total", "Events read by the consumer.",
         [](const ChannelInfo& i) { return i.consumer_counters.events; }},
    };
    std::vector<const Snapshot*> ready;
    for (const auto& s : all) {
        if (s.ready) ready.push_back(&s);
    }

    family("shmchan_up", "gauge", "1 if the channel's header is valid and ready, 0 if corrupt or being created.");
    for (const auto& s : all) sample("shmchan_up", label(s), s.ready ? "1" : "0");
    family("shmchan_channel_corrupt", "gauge", "1 if the channel failed validation.");
    for (const auto& s : all) sample("shmchan_channel_corrupt", label(s), s.state == "corrupt" ? "1" : "0");
    family("shmchan_channel_state", "gauge", "1 for the channel's current state.");
    for (const auto& s : all) {
        for (const char* state : {"creating", "active", "ended", "broken", "corrupt", "foreign"}) {
            sample("shmchan_channel_state", label(s) + ",state=\"" + state + "\"", s.state == state ? "1" : "0");
        }
    }
    family("shmchan_stale", "gauge", "1 if no live process holds the channel.");
    for (const auto& s : all) sample("shmchan_stale", label(s), s.stale ? "1" : "0");

    for (const auto& counter : counters) {
        family(counter.name, "counter", counter.help);
        for (const auto* s : ready) sample(counter.name, label(*s), std::to_string(counter.get(s->info)));
    }
    family("shmchan_wake_syscalls_total", "counter", "futex wake syscalls made by a side to wake its peer.");
    for (const auto* s : ready) {
        sample("shmchan_wake_syscalls_total", label(*s) + ",side=\"producer\"",
               std::to_string(s->info.producer_counters.wake_syscalls));
        sample("shmchan_wake_syscalls_total", label(*s) + ",side=\"consumer\"",
               std::to_string(s->info.consumer_counters.wake_syscalls));
    }
    family("shmchan_parks_total", "counter", "Times a side went to sleep on its futex word.");
    for (const auto* s : ready) {
        sample("shmchan_parks_total", label(*s) + ",side=\"producer\"", std::to_string(s->info.producer_counters.parks));
        sample("shmchan_parks_total", label(*s) + ",side=\"consumer\"", std::to_string(s->info.consumer_counters.parks));
    }
    family("shmchan_backpressured_seconds_total", "counter",
           "Time the producer spent waiting for a free segment (counted when each wait ends).");
    for (const auto* s : ready) {
        sample("shmchan_backpressured_seconds_total", label(*s),
               fmt::number(static_cast<double>(s->info.producer_counters.waited_ns) / 1e9, false));
    }
    family("shmchan_idle_seconds_total", "counter",
           "Time the consumer spent waiting for data (counted when each wait ends).");
    for (const auto* s : ready) {
        sample("shmchan_idle_seconds_total", label(*s),
               fmt::number(static_cast<double>(s->info.consumer_counters.waited_ns) / 1e9, false));
    }
    family("shmchan_published_segments", "gauge", "Producer position: segments published (free-running).");
    for (const auto* s : ready) sample("shmchan_published_segments", label(*s), std::to_string(s->info.published));
    family("shmchan_released_segments", "gauge", "Consumer position: segments released (free-running).");
    for (const auto* s : ready) sample("shmchan_released_segments", label(*s), std::to_string(s->info.released));
    family("shmchan_fill_ratio", "gauge", "Published but unreleased segments over the ring size (outPoolUsage).");
    for (const auto* s : ready) sample("shmchan_fill_ratio", label(*s), fmt::number(s->fill, false));
    family("shmchan_in_flight_bytes", "gauge",
           "Data in flight: published, unreleased segments x payload capacity (an upper bound).");
    for (const auto* s : ready) sample("shmchan_in_flight_bytes", label(*s), std::to_string(s->in_flight_bytes));
    family("shmchan_estimated_time_to_consume_ms", "gauge",
           "Time the consumer takes to read the data in flight at its measured rate "
           "(estimatedTimeToConsumeBuffersMs; debloating consumers only).");
    for (const auto* s : ready) {
        if (s->estimated) sample("shmchan_estimated_time_to_consume_ms", label(*s), fmt::number(s->estimated_ms, false));
    }
    family("shmchan_credit_limit_segments", "gauge",
           "Debloating: segments the producer may have in flight (the slowest consumer's limit; absent: none).");
    for (const auto* s : ready) {
        if (s->info.credit_limit) sample("shmchan_credit_limit_segments", label(*s), std::to_string(s->info.credit_limit));
    }
    family("shmchan_debloated_in_flight_bytes", "gauge",
           "Debloating: the credit limit in bytes (debloatedBufferSize, for the whole ring).");
    for (const auto* s : ready) {
        if (s->info.credit_limit) {
            sample("shmchan_debloated_in_flight_bytes", label(*s),
                   std::to_string(std::uint64_t{s->info.credit_limit} * L::segment_payload_capacity(s->info.segment_size)));
        }
    }
    family("shmchan_debloat_target_ms", "gauge", "Debloating: the consumer's target time in flight (absent: off).");
    for (const auto* s : ready) {
        if (s->info.debloat_target_ns) {
            sample("shmchan_debloat_target_ms", label(*s), fmt::number(static_cast<double>(s->info.debloat_target_ns) / 1e6, false));
        }
    }
    family("shmchan_consumer_throughput_bytes_per_second", "gauge",
           "Debloating: the consumer's measured throughput over its busy time (absent: not measured).");
    for (const auto* s : ready) {
        if (s->info.segments_per_ks) {
            sample("shmchan_consumer_throughput_bytes_per_second", label(*s), std::to_string(s->info.throughput_bytes_per_s));
        }
    }
    family("shmchan_segments", "gauge", "Segments in the ring.");
    for (const auto* s : ready) sample("shmchan_segments", label(*s), std::to_string(s->info.segment_count));
    family("shmchan_segment_size_bytes", "gauge", "Bytes per segment, its 64-byte header included.");
    for (const auto* s : ready) sample("shmchan_segment_size_bytes", label(*s), std::to_string(s->info.segment_size));
    family("shmchan_end_of_stream", "gauge", "1 once the producer ended the stream.");
    for (const auto* s : ready) sample("shmchan_end_of_stream", label(*s), s->info.end_of_stream ? "1" : "0");
    family("shmchan_producer_alive", "gauge", "1 while a producer holds its lock.");
    for (const auto* s : ready) sample("shmchan_producer_alive", label(*s), s->info.producer.alive ? "1" : "0");
    family("shmchan_consumer_alive", "gauge", "1 while a consumer holds its lock.");
    for (const auto* s : ready) sample("shmchan_consumer_alive", label(*s), s->info.consumer.alive ? "1" : "0");
    family("shmchan_last_publish_timestamp_seconds", "gauge", "Wall-clock time of the last publish (0: never).");
    for (const auto* s : ready) {
        sample("shmchan_last_publish_timestamp_seconds", label(*s),
               fmt::number(static_cast<double>(s->info.producer_counters.last_realtime_ns) / 1e9, false));
    }
    family("shmchan_last_release_timestamp_seconds", "gauge", "Wall-clock time of the last release (0: never).");
    for (const auto* s : ready) {
        sample("shmchan_last_release_timestamp_seconds", label(*s),
               fmt::number(static_cast<double>(s->info.consumer_counters.last_realtime_ns) / 1e9, false));
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-inspect: looks at shmchan channels without disturbing them (read-only, takes no lock, "
                 "wakes nobody).\nChannels are the files shmchan-NAME in $SHMCHAN_DIR, or /dev/shm when it is unset."};
    app.name("shm-inspect");
    app.require_subcommand(1);
    app.failure_message([](const CLI::App* command, const CLI::Error& error) {
        return "shm-inspect: " + CLI::FailureMessage::simple(command, error);
    });
    std::optional<std::uint32_t> allow_owner;
    app.add_option("--allow-owner", allow_owner,
                   "treat files of this uid as our own (a group-shared channel); other users' files are "
                   "listed as 'foreign'");
    app.fallthrough();

    bool json = false;
    std::string name;
    double interval = 1.0;
    std::uint64_t count = 0, max_bytes = 4096;
    std::optional<std::uint64_t> watch_count;

    auto* list = app.add_subcommand("list", "every channel, one line each: name, state, geometry, framing, producer "
                                            "and consumer (pid and alive, dead, pid-reused, detached or none), fill, "
                                            "'stale' when no live process holds it, and the reason when corrupt");
    list->add_flag("--json", json, "one JSON array of objects with show's fields");

    auto* show = app.add_subcommand("show", "everything in one channel's header, its counters and derived figures");
    show->add_option("NAME", name, "channel name")->required();
    show->add_flag("--json", json, "one JSON object");

    auto* watch = app.add_subcommand("watch", "live view: a row per channel with fill bar, rates per second and "
                                              "producer/consumer state (running, back-pressured, idle, dead), "
                                              "until Ctrl-C; plain lines when output is not a terminal");
    watch->add_option("NAME", name, "only this channel");
    watch->add_option("--interval", interval, "seconds between refreshes (default 1)")
        ->check(CLI::Range(0.01, 3600.0));
    watch->add_option("--count", watch_count, "stop after this many refreshes")->check(CLI::Range(1ull, 1ull << 40));

    auto* peek = app.add_subcommand("peek", "decodes unread data without consuming it: printable text as text, "
                                            "otherwise a hex dump");
    peek->add_option("NAME", name, "channel name")->required();
    count = 16;
    peek->add_option("--count", count,
                     "at most this many unread segments (raw bytes) or records and events (records framing: "
                     "each record of a run counts as one); default 16")
        ->check(CLI::Range(1ull, 1ull << 40));
    peek->add_option("--max-bytes", max_bytes, "at most this many bytes per segment (default 4096; 0: all)")
        ->check(CLI::NonNegativeNumber);

    GcOptions gc_options;
    auto* gc = app.add_subcommand("gc", "removes channels that no live process holds (stale, corrupt ones "
                                        "included), one line each: 'removed NAME (reason)'; keeps another "
                                        "user's files and streams that ended but were not read yet");
    gc->add_option("NAME", gc_options.names, "only these channels");
    gc->add_flag("--dry-run", gc_options.dry_run, "only say which: 'would remove NAME (reason)'");
    gc->add_flag("--all", gc_options.all, "also another user's files and streams that ended but were not read");
    gc->add_option("--older-than", gc_options.older_than,
                   "only channels idle for at least this many seconds (streams that ended unread included)")
        ->check(CLI::Range(0.0, 1e12));

    auto* metrics = app.add_subcommand("metrics", "every channel in the Prometheus text exposition format");

    shmchan::tools::add_standard_flags(app);
    if (auto error = shmchan::tools::command_word_error(app, argc, argv, {"--allow-owner"})) {
        std::fprintf(stderr, "%s\n", error->c_str());
        return kExitUsage;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& error) {
        int code = app.exit(error);  // prints the message (or the help)
        return code == 0 ? kExitOk : kExitUsage;
    }

    if (allow_owner) g_allowed_owner = static_cast<uid_t>(*allow_owner);
    shmchan::tools::report_sigbus_and_exit("shm-inspect");
    bool named = show->parsed() || peek->parsed() || (watch->parsed() && !name.empty());
    if (named && !shmchan::shm::is_valid_name(name)) {
        return fail("invalid channel name '" + shmchan::escaped(name) + "': use 1 to 200 of A-Z a-z 0-9 . _ -", kExitUsage);
    }
    try {
        if (list->parsed()) return run_list(json);
        if (show->parsed()) return run_show(name, json);
        if (watch->parsed()) {
            return run_watch(name.empty() ? std::nullopt : std::optional<std::string>(name), interval, watch_count);
        }
        if (peek->parsed()) return run_peek(name, count, max_bytes);
        if (gc->parsed()) {
            for (const auto& gc_name : gc_options.names) {
                if (!shmchan::shm::is_valid_name(gc_name)) {
                    return fail("invalid channel name '" + shmchan::escaped(gc_name) + "': use 1 to 200 of A-Z a-z 0-9 . _ -", kExitUsage);
                }
            }
            return run_gc(gc_options);
        }
        if (metrics->parsed()) return run_metrics();
    } catch (const std::exception& error) {
        return fail(error.what());
    }
    return kExitUsage;
}
