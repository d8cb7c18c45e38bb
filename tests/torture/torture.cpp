// SPDX-License-Identifier: Apache-2.0
// shmchan_torture: fault injection across real processes. Each trial runs a records channel
// between a producer process and a consumer process and hits one of them (the victim) with a
// fault: SIGKILL at a random moment (from the parent, so it can land inside create, attach, a
// spanning write, a wait...), SIGKILL raised by the victim itself at a chosen point (before
// attach, between reserve and commit, after a spanning write, after a read it did not finish),
// or SIGSTOP for a while, then SIGCONT. A killed victim is replaced by a new process that resumes
// (and, in some trials, that replacement is killed too: a fault during restart).
//
// Checked in every trial:
//   - every delivered record is whole: its size, sequence number and checksum, and its bytes
//     regenerated from its number;
//   - nothing is lost: the consumer ends at end of stream having seen every number in order;
//   - duplicates only where the library documents at-least-once: after a consumer was killed
//     (a record it read but had not finished comes again); a producer restart is exactly-once
//     (the replacement resumes at RecordWriter::completed_records());
//   - a stopped peer is never reported dead;
//   - no process hangs: each trial has a deadline (then everything is killed: a hang);
//   - the survivor of a kill reports peer_died; the delay from the kill to that report is
//     collected and printed (p50, p99, max) with the count over 1 s.
//
//   shmchan_torture [--trials N] [--seed S] [--from K] [--side producer|consumer|both] [--max-delay-ms M]
//
// --from K runs trials K, K+1, ... of the seed (a failed trial again, alone).
//
// Exit 0 when no trial failed (--max-delay-ms also fails a trial whose report came later).
// Channel files go to $SHMCHAN_DIR, or to a directory of its own under /dev/shm.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <optional>
#include <string>
#include <sys/mman.h>
#include <vector>

#include "channels/channel.hpp"
#include "channels/records.hpp"
#include "shm/process.hpp"

namespace {

using namespace std::chrono_literals;
using namespace shmchan;

std::uint64_t now_ns() { return shm::monotonic_ns(); }

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct Rng {
    std::uint64_t state;
    std::uint64_t next() { return state = mix(state); }
    std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : next() % n; }
    bool chance(unsigned percent) { return below(100) < percent; }
};

// ---- records: [u64 number][u32 size][u32 checksum][bytes derived from the number] ----------------

constexpr std::size_t kRecordHeader = 16;

std::uint32_t fnv32(const std::byte* data, std::size_t size) {
    std::uint32_t hash = 2166136261u;
    for (std::size_t i = 0; i < size; ++i) hash = (hash ^ static_cast<std::uint8_t>(data[i])) * 16777619u;
    return hash;
}

void fill_body(std::byte* body, std::size_t size, std::uint64_t number) {
    std::uint64_t word = mix(number);
    for (std::size_t i = 0; i < size; ++i) {
        if (i % 8 == 0) word = mix(word + i);
        body[i] = static_cast<std::byte>(word >> (8 * (i % 8)));
    }
}

void make_record(std::byte* out, std::size_t size, std::uint64_t number) {
    fill_body(out + kRecordHeader, size - kRecordHeader, number);
    std::uint32_t size32 = static_cast<std::uint32_t>(size), sum = fnv32(out + kRecordHeader, size - kRecordHeader);
    std::memcpy(out, &number, 8);
    std::memcpy(out + 8, &size32, 4);
    std::memcpy(out + 12, &sum, 4);
}

// The record's number, or -1 if it is not whole (size, checksum or bytes differ).
std::int64_t check_record(std::span<const std::byte> bytes, std::vector<std::byte>& scratch) {
    if (bytes.size() < kRecordHeader) return -1;
    std::uint64_t number = 0;
    std::uint32_t size = 0, sum = 0;
    std::memcpy(&number, bytes.data(), 8);
    std::memcpy(&size, bytes.data() + 8, 4);
    std::memcpy(&sum, bytes.data() + 12, 4);
    if (size != bytes.size() || fnv32(bytes.data() + kRecordHeader, size - kRecordHeader) != sum) return -1;
    scratch.resize(size);
    fill_body(scratch.data(), size - kRecordHeader, number);
    if (std::memcmp(scratch.data(), bytes.data() + kRecordHeader, size - kRecordHeader) != 0) return -1;
    return static_cast<std::int64_t>(number);
}

// ---- one trial's plan and shared results ---------------------------------------------------------

enum class Role { producer, consumer };
enum class Fault { kill_timed, kill_point, stop };
// Points a victim raises SIGKILL at itself.
enum class Point { before_attach, after_attach, in_reserve, after_spanning_write, after_read, count };
const char* point_name(Point p) {
    switch (p) {
        case Point::before_attach: return "before-attach";
        case Point::after_attach: return "after-attach";
        case Point::in_reserve: return "in-reserve";
        case Point::after_spanning_write: return "after-spanning-write";
        case Point::after_read: return "after-read";
        default: return "?";
    }
}

struct Plan {
    std::uint32_t segment_size = 4096, segment_count = 4;
    bool checksums = false;
    WaitStrategy wait = WaitStrategy::hybrid;
    std::uint64_t records = 1000;
    std::size_t max_record = 4096;
    std::uint64_t sizes_seed = 1;
};

// In MAP_SHARED memory: written by the children, read by the parent.
struct Shared {
    std::atomic<std::uint64_t> next_expected{0};  // consumer: the next number (kept across restarts)
    std::atomic<std::uint64_t> delivered{0}, duplicates{0}, torn{0}, gaps{0}, record_lost{0};
    std::atomic<std::uint64_t> kill_ns{0};    // when the victim was killed
    std::atomic<std::uint64_t> report_ns{0};  // the survivor's first peer_died after it
    std::atomic<int> victim_attached{0};
    std::atomic<int> stopped{0};      // the victim is SIGSTOPped now
    std::atomic<int> false_death{0};  // peer_died while the peer was only stopped
    std::atomic<int> ended{0};        // the consumer saw end of stream
    std::atomic<int> errors{0};
    char error[512];
    void note_error(const std::string& text) {
        if (errors.fetch_add(1) == 0) std::snprintf(error, sizeof error, "%s", text.c_str());
    }
};

std::size_t record_size(const Plan& plan, std::uint64_t number) {
    Rng rng{mix(plan.sizes_seed ^ number)};
    if (rng.chance(12)) return kRecordHeader + rng.below(plan.max_record - kRecordHeader + 1);  // may span
    return kRecordHeader + rng.below(240);
}

ChannelOptions channel_options(const Plan& plan) {
    ChannelOptions options;
    options.segment_size = plan.segment_size;
    options.segment_count = plan.segment_count;
    options.checksums = plan.checksums;
    options.wait = plan.wait;
    options.framing = Framing::records;
    return options;
}

struct VictimFault {
    bool active = false;
    Point point = Point::count;
    std::uint64_t at = 0;  // the operation (record number) at which the point fires
};

[[noreturn]] void die_here(Shared& shared) {
    shared.kill_ns.store(now_ns());
    ::raise(SIGKILL);
    ::_exit(97);
}

// After peer_died: note the report (the first after a kill; a stopped peer is never dead), then
// wait for a replacement. A replacement that is killed before we see it alive is reported by
// wait_for_peer itself (peer_died): noted the same way, then we wait on.
template <class Handle>
bool survive(Shared& shared, Handle& handle) {
    auto note_report = [&] {
        if (shared.stopped.load() != 0 && shared.kill_ns.load() == 0) shared.false_death.fetch_add(1);
        std::uint64_t expected = 0;
        if (shared.kill_ns.load() != 0) shared.report_ns.compare_exchange_strong(expected, now_ns());
    };
    note_report();
    while (true) {
        // Back to the stream after each second: a replacement may have ended the stream and left
        // before we saw it alive (then no producer can come any more, and the read says so), and
        // the parent's deadline bounds the whole trial.
        Status status = handle.wait_for_peer(1s);
        if (status == Status::ok || status == Status::timed_out || status == Status::interrupted) return true;
        if (status == Status::peer_died) {
            note_report();
            return true;
        }
        shared.note_error(std::string("wait_for_peer: ") + to_string(status) + ": " + handle.last_error());
        return false;
    }
}

int run_producer(const std::string& name, const Plan& plan, Shared& shared, VictimFault fault) {
    if (fault.active && fault.point == Point::before_attach) die_here(shared);
    std::optional<RecordWriter> attached;
    try {
        attached.emplace(RecordWriter::attach(name, channel_options(plan)));
    } catch (const Error& error) {
        // The producer it replaces was killed after it had ended the stream: nothing left to do.
        if (error.code() == Errc::stream_ended) return 0;
        throw;
    }
    RecordWriter& writer = *attached;
    if (fault.active) shared.victim_attached.store(1);
    if (fault.active && fault.point == Point::after_attach) die_here(shared);
    std::vector<std::byte> record(plan.max_record);
    for (std::uint64_t number = writer.completed_records(); number < plan.records;) {
        const std::size_t size = record_size(plan, number);
        const bool use_reserve = size <= writer.max_inline_record() && mix(number) % 3 == 0;
        Status status;
        if (use_reserve) {
            std::span<std::byte> out;
            status = writer.reserve(size, out);
            if (status == Status::ok) {
                make_record(out.data(), size, number);
                if (fault.active && fault.point == Point::in_reserve && number >= fault.at) die_here(shared);
                status = writer.commit(size);
            }
        } else {
            make_record(record.data(), size, number);
            status = writer.write(std::span<const std::byte>(record.data(), size));
            if (status == Status::ok && fault.active && fault.point == Point::after_spanning_write && number >= fault.at &&
                size > plan.segment_size) {
                die_here(shared);
            }
        }
        if (status == Status::ok) {
            ++number;
            continue;
        }
        if (status == Status::peer_died) {
            if (!survive(shared, writer.producer())) return 2;
            number = writer.completed_records();  // a record cut short by the wait is written again
            continue;
        }
        shared.note_error(std::string("producer write: ") + to_string(status) + ": " + writer.last_error());
        return 3;
    }
    while (true) {
        Status status = writer.end_stream();
        if (status == Status::ok) return 0;
        if (status == Status::peer_died) {
            if (!survive(shared, writer.producer())) return 2;
            continue;
        }
        shared.note_error(std::string("end_stream: ") + to_string(status) + ": " + writer.last_error());
        return 3;
    }
}

int run_consumer(const std::string& name, const Plan& plan, Shared& shared, VictimFault fault) {
    if (fault.active && fault.point == Point::before_attach) die_here(shared);
    RecordReader reader = RecordReader::attach(name, channel_options(plan));
    if (fault.active) shared.victim_attached.store(1);
    if (fault.active && fault.point == Point::after_attach) die_here(shared);
    std::vector<std::byte> scratch;
    Record record;
    while (true) {
        Status status = reader.read_for(record, 30s);
        switch (status) {
            case Status::ok: {
                if (record.kind != RecordKind::record) break;
                std::int64_t number = check_record(record.bytes, scratch);
                if (number < 0) {
                    shared.torn.fetch_add(1);
                    break;
                }
                std::uint64_t expected = shared.next_expected.load();
                if (static_cast<std::uint64_t>(number) == expected) {
                    shared.next_expected.store(expected + 1);
                    shared.delivered.fetch_add(1);
                } else if (static_cast<std::uint64_t>(number) < expected) {
                    shared.duplicates.fetch_add(1);
                } else {
                    shared.gaps.fetch_add(1);
                    shared.next_expected.store(static_cast<std::uint64_t>(number) + 1);
                }
                // Read, not finished (the next read finishes it): a restart delivers it again.
                if (fault.active && fault.point == Point::after_read && static_cast<std::uint64_t>(number) >= fault.at) {
                    die_here(shared);
                }
                break;
            }
            case Status::end_of_stream:
                // The parent removes the channel at the end of the trial: a consumer killed after
                // this point is replaced by one that reads the same ended channel (and a killed
                // producer's replacement finds it ended), never by one on a fresh channel.
                shared.ended.store(1);
                return 0;
            case Status::peer_died:
                if (!survive(shared, reader.consumer())) return 2;
                break;
            case Status::record_lost:
                shared.record_lost.fetch_add(1);
                break;
            default: {
                // What the channel looked like, for the report of a failed trial.
                ChannelInfo info = reader.consumer().info();
                shared.note_error(std::string("consumer read: ") + to_string(status) + ": " + reader.last_error() +
                                  " [published " + std::to_string(info.published) + ", released " +
                                  std::to_string(info.released) + ", producer alive " +
                                  std::to_string(info.producer.alive) + " attaches " +
                                  std::to_string(info.producer.attach_count) + " sleeping " +
                                  std::to_string(info.producer.sleeping) + ", consumer attaches " +
                                  std::to_string(info.consumer.attach_count) + ", flush word " +
                                  std::to_string(info.flush_word) + ", resume word " + std::to_string(info.resume_word) +
                                  ", next expected " + std::to_string(shared.next_expected.load()) + "]");
                return 3;
            }
        }
    }
}

pid_t start(Role role, const std::string& name, const Plan& plan, Shared& shared, VictimFault fault) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(2);
    }
    if (pid == 0) {
        int code = 99;
        try {
            code = role == Role::producer ? run_producer(name, plan, shared, fault) : run_consumer(name, plan, shared, fault);
        } catch (const std::exception& error) {
            shared.note_error(std::string(role == Role::producer ? "producer" : "consumer") + ": " + error.what());
            code = 98;
        }
        ::_exit(code);
    }
    return pid;
}

// ---- the parent ------------------------------------------------------------------------------------

struct Totals {
    std::uint64_t trials = 0, kills = 0, stops = 0, restarts_faulted = 0, records = 0, duplicates = 0;
    std::uint64_t hangs = 0, failed = 0, late = 0, unreported = 0, record_lost = 0, missed = 0;
    std::vector<double> delays_ms;
    std::uint64_t points[static_cast<int>(Point::count)] = {};
};

struct Options {
    std::uint64_t trials = 100, seed = 1, from = 0;
    int side = 2;  // 0 producer, 1 consumer, 2 both (alternating)
    double max_delay_ms = 0;  // 0: not a verdict
    bool verbose = false;
};

struct ChildState {
    pid_t pid = -1;
    int status = 0;
    bool done = false;
    bool poll() {
        if (done) return true;
        int s = 0;
        pid_t r = ::waitpid(pid, &s, WNOHANG);
        if (r == pid) {
            done = true;
            status = s;
        }
        return done;
    }
    bool exited_ok() const { return done && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
    bool killed() const { return done && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
    void kill_now() {
        if (!done && pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            done = true;
        }
    }
};

bool run_trial(std::uint64_t index, const Options& options, Totals& totals) {
    Rng rng{mix(options.seed * 1000003 + index)};
    Plan plan;
    const std::uint32_t sizes[] = {4096, 8192, 16384};
    plan.segment_size = sizes[rng.below(3)];
    plan.segment_count = 2 + static_cast<std::uint32_t>(rng.below(7));
    plan.checksums = rng.chance(30);
    const WaitStrategy waits[] = {WaitStrategy::spin, WaitStrategy::hybrid, WaitStrategy::park};
    plan.wait = waits[rng.below(3)];
    plan.records = 2000 + rng.below(18000);
    plan.max_record = std::min<std::size_t>(plan.segment_size * 3 / 2, plan.segment_size * plan.segment_count / 2);
    plan.sizes_seed = rng.next();

    const Role victim = options.side == 2 ? (index % 2 == 0 ? Role::producer : Role::consumer)
                                          : (options.side == 0 ? Role::producer : Role::consumer);
    const std::uint64_t roll = rng.below(100);
    const Fault fault = roll < 40 ? Fault::kill_timed : roll < 75 ? Fault::kill_point : Fault::stop;
    VictimFault point;
    if (fault == Fault::kill_point) {
        point.active = true;
        const Point producer_points[] = {Point::before_attach, Point::after_attach, Point::in_reserve, Point::after_spanning_write};
        const Point consumer_points[] = {Point::before_attach, Point::after_attach, Point::after_read};
        point.point = victim == Role::producer ? producer_points[rng.below(4)] : consumer_points[rng.below(3)];
        point.at = rng.below(plan.records);
        ++totals.points[static_cast<int>(point.point)];
    }
    const bool fault_restart = fault != Fault::stop && rng.chance(20);
    // Timed faults: often within the first 3 ms (create and attach), otherwise anywhere.
    const std::uint64_t delay_us = rng.chance(30) ? rng.below(3000) : rng.below(30000);
    const std::uint64_t stop_ms = rng.below(500);

    const std::string name = "torture-" + std::to_string(::getpid()) + "-" + std::to_string(index);
    void* memory = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        std::perror("mmap");
        std::exit(2);
    }
    Shared& shared = *new (memory) Shared{};

    ChildState producer, consumer;
    const bool producer_first = rng.chance(50);
    auto start_role = [&](Role role, VictimFault f) {
        ChildState& child = role == Role::producer ? producer : consumer;
        child = ChildState{};
        child.pid = start(role, name, plan, shared, f);
    };
    start_role(producer_first ? Role::producer : Role::consumer, victim == (producer_first ? Role::producer : Role::consumer) ? point : VictimFault{});
    start_role(producer_first ? Role::consumer : Role::producer, victim == (producer_first ? Role::consumer : Role::producer) ? point : VictimFault{});
    ChildState& victim_child = victim == Role::producer ? producer : consumer;
    ChildState& survivor = victim == Role::producer ? consumer : producer;

    const std::uint64_t deadline = now_ns() + 60'000'000'000ull;
    bool hang = false;
    auto sleep_until_or_done = [&](std::uint64_t until) {
        while (now_ns() < until) {
            producer.poll();
            consumer.poll();
            ::usleep(200);
        }
    };

    if (fault == Fault::kill_timed || fault == Fault::stop) {
        sleep_until_or_done(now_ns() + delay_us * 1000);
        if (!victim_child.poll()) {
            if (fault == Fault::stop) {
                shared.stopped.store(1);
                ::kill(victim_child.pid, SIGSTOP);
                sleep_until_or_done(now_ns() + stop_ms * 1'000'000);
                ::kill(victim_child.pid, SIGCONT);
                shared.stopped.store(0);
                ++totals.stops;
            } else {
                shared.kill_ns.store(now_ns());
                ::kill(victim_child.pid, SIGKILL);
            }
        } else {
            ++totals.missed;  // the victim had finished: a trial without a fault
        }
    }

    // Kills: wait for the victim's end, let the survivor report, then start a replacement (which
    // in some trials is killed too, and replaced again).
    int replacements = 0;
    bool counted_kill = false;
    std::uint64_t victim_attaches_before = 0;  // the victim side's attach count when it started
    while (true) {
        producer.poll();
        consumer.poll();
        if (now_ns() > deadline) {
            hang = true;
            break;
        }
        if (victim_child.done && victim_child.killed() && replacements < 2) {
            if (!counted_kill) {
                ++totals.kills;
                counted_kill = true;
            }
            // Did the victim attach before it died? (A point fault says so itself; for a timed
            // kill the channel's attach count of its side tells.) Then a survivor that is still
            // streaming must report its death: wait up to 3 s for that.
            bool attached = shared.victim_attached.load() != 0;
            if (fault != Fault::kill_point || replacements > 0) {
                try {
                    ChannelInfo info = inspect(name);
                    const auto& side = victim == Role::producer ? info.producer : info.consumer;
                    attached = side.attach_count > victim_attaches_before && !side.alive;
                } catch (const Error&) {
                    attached = false;  // no channel yet (killed while creating it) or already removed
                }
            }
            const std::uint64_t report_deadline = now_ns() + 3'000'000'000ull;
            while (attached && shared.report_ns.load() == 0 && !survivor.poll() && now_ns() < report_deadline) ::usleep(500);
            const std::uint64_t killed_at = shared.kill_ns.load(), reported = shared.report_ns.load();
            if (reported != 0 && reported >= killed_at) {
                double ms = static_cast<double>(reported - killed_at) / 1e6;
                totals.delays_ms.push_back(ms);
                if (ms > 1000) ++totals.late;
                if (options.max_delay_ms > 0 && ms > options.max_delay_ms) {
                    shared.note_error("peer death reported after " + std::to_string(ms) + " ms");
                }
            } else if (attached && !survivor.poll()) {
                ++totals.unreported;  // attached, killed, and the survivor still streaming said nothing
                shared.note_error("the survivor did not report the victim's death within 3 s");
            }
            shared.kill_ns.store(0);
            shared.report_ns.store(0);
            shared.victim_attached.store(0);
            ++replacements;
            const bool kill_again = fault_restart && replacements == 1;
            if (kill_again) ++totals.restarts_faulted;
            try {
                ChannelInfo info = inspect(name);
                victim_attaches_before = (victim == Role::producer ? info.producer : info.consumer).attach_count;
            } catch (const Error&) {
                victim_attaches_before = 0;
            }
            start_role(victim, VictimFault{});
            if (kill_again) {
                sleep_until_or_done(now_ns() + rng.below(20000) * 1000);
                if (!victim_child.poll()) {
                    shared.kill_ns.store(now_ns());
                    ::kill(victim_child.pid, SIGKILL);
                }
            }
            continue;
        }
        if (producer.done && consumer.done) break;
        ::usleep(500);
    }
    std::string hang_state;
    if (hang) {
        // Where each unfinished process is (its kernel wait channel) and where the channel stands,
        // for the report, before they are killed.
        auto where = [](const ChildState& child, const char* role) {
            if (child.done) return std::string(role) + " done";
            std::string wchan;
            if (FILE* f = std::fopen(("/proc/" + std::to_string(child.pid) + "/wchan").c_str(), "r")) {
                char text[128] = {};
                if (std::fgets(text, sizeof text, f)) wchan = text;
                std::fclose(f);
            }
            return std::string(role) + " " + std::to_string(child.pid) + " waits in " + (wchan.empty() ? "?" : wchan);
        };
        hang_state = " [" + where(producer, "producer") + "; " + where(consumer, "consumer");
        try {
            ChannelInfo info = inspect(name);
            hang_state += "; published " + std::to_string(info.published) + ", released " + std::to_string(info.released) +
                          ", producer alive " + std::to_string(info.producer.alive) + " attaches " +
                          std::to_string(info.producer.attach_count) + ", consumer alive " +
                          std::to_string(info.consumer.alive) + " attaches " + std::to_string(info.consumer.attach_count) +
                          ", next expected " + std::to_string(shared.next_expected.load()) + " of " +
                          std::to_string(plan.records);
        } catch (const Error& error) {
            hang_state += std::string("; ") + error.what();
        }
        hang_state += "]";
        producer.kill_now();
        consumer.kill_now();
    }

    std::string why;
    if (hang) why = "hang: a process did not finish within 60 s" + hang_state;
    else if (shared.errors.load() != 0) why = shared.error;
    else if (!producer.exited_ok()) why = "producer exit status " + std::to_string(producer.status);
    else if (!consumer.exited_ok()) why = "consumer exit status " + std::to_string(consumer.status);
    else if (shared.ended.load() == 0) why = "no end of stream";
    else if (shared.torn.load() != 0) why = std::to_string(shared.torn.load()) + " torn or corrupt records";
    else if (shared.gaps.load() != 0) why = std::to_string(shared.gaps.load()) + " records lost (gaps)";
    else if (shared.next_expected.load() != plan.records) {
        why = "delivered up to " + std::to_string(shared.next_expected.load()) + " of " + std::to_string(plan.records);
    } else if (shared.duplicates.load() != 0 && !(victim == Role::consumer && counted_kill)) {
        why = std::to_string(shared.duplicates.load()) + " duplicates without a consumer restart";
    } else if (shared.false_death.load() != 0) {
        why = "a stopped peer was reported dead";
    } else if (shared.record_lost.load() != 0) {
        why = "record_lost (records are smaller than the ring)";
    }
    ++totals.trials;
    totals.records += shared.delivered.load();
    totals.duplicates += shared.duplicates.load();
    totals.record_lost += shared.record_lost.load();
    if (hang) ++totals.hangs;
    const char* fault_name = fault == Fault::stop ? "stop" : fault == Fault::kill_timed ? "kill-timed" : point_name(point.point);
    if (!why.empty()) {
        ++totals.failed;
        std::printf("trial %llu FAILED (victim %s, fault %s, %u x %u%s, %llu records): %s\n",
                    static_cast<unsigned long long>(index), victim == Role::producer ? "producer" : "consumer", fault_name,
                    plan.segment_count, plan.segment_size, plan.checksums ? ", checksums" : "",
                    static_cast<unsigned long long>(plan.records), why.c_str());
    } else if (options.verbose) {
        std::printf("trial %llu ok (victim %s, fault %s)\n", static_cast<unsigned long long>(index),
                    victim == Role::producer ? "producer" : "consumer", fault_name);
    }
    try {
        remove_channel(name, true);
    } catch (...) {
    }
    ::munmap(memory, sizeof(Shared));
    return why.empty();
}

double percentile(std::vector<double> values, double p) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    std::size_t index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
}

int usage() {
    std::fprintf(stderr, "usage: shmchan_torture [--trials N] [--seed S] [--from K] [--side producer|consumer|both] "
                         "[--max-delay-ms M] [--verbose]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (arg == "--trials" || arg == "--seed" || arg == "--max-delay-ms" || arg == "--side" || arg == "--from") {
            const char* text = value();
            if (!text) return usage();
            if (arg == "--side") {
                std::string side = text;
                if (side == "producer") options.side = 0;
                else if (side == "consumer") options.side = 1;
                else if (side == "both") options.side = 2;
                else return usage();
            } else {
                char* end = nullptr;
                double number = std::strtod(text, &end);
                if (end == text || *end != '\0' || number < 0) return usage();
                if (arg == "--trials") options.trials = static_cast<std::uint64_t>(number);
                if (arg == "--seed") options.seed = static_cast<std::uint64_t>(number);
                if (arg == "--from") options.from = static_cast<std::uint64_t>(number);
                if (arg == "--max-delay-ms") options.max_delay_ms = number;
            }
        } else if (arg == "--verbose") {
            options.verbose = true;
        } else {
            return usage();
        }
    }
    std::string own_dir;
    if (std::getenv("SHMCHAN_DIR") == nullptr) {
        char pattern[] = "/dev/shm/shmchan-torture-XXXXXX";
        if (::mkdtemp(pattern) == nullptr) {
            std::perror("mkdtemp");
            return 2;
        }
        own_dir = pattern;
        ::setenv("SHMCHAN_DIR", pattern, 1);
    }
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, nullptr);

    Totals totals;
    const auto start = std::chrono::steady_clock::now();
    for (std::uint64_t i = options.from; i < options.from + options.trials; ++i) run_trial(i, options, totals);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    std::printf("shmchan_torture: %llu trials (seed %llu, %.1f s): %llu failed, %llu hangs\n",
                static_cast<unsigned long long>(totals.trials), static_cast<unsigned long long>(options.seed), seconds,
                static_cast<unsigned long long>(totals.failed), static_cast<unsigned long long>(totals.hangs));
    std::printf("  faults: %llu kills (%llu of them with the replacement killed too), %llu stop/cont, %llu timed "
                "faults came after the victim finished; points:",
                static_cast<unsigned long long>(totals.kills), static_cast<unsigned long long>(totals.restarts_faulted),
                static_cast<unsigned long long>(totals.stops), static_cast<unsigned long long>(totals.missed));
    for (int p = 0; p < static_cast<int>(Point::count); ++p) {
        std::printf(" %s %llu", point_name(static_cast<Point>(p)), static_cast<unsigned long long>(totals.points[p]));
    }
    std::printf("\n  records delivered %llu, duplicates %llu (after consumer kills only), record_lost %llu\n",
                static_cast<unsigned long long>(totals.records), static_cast<unsigned long long>(totals.duplicates),
                static_cast<unsigned long long>(totals.record_lost));
    std::printf("  dead peer reported: %zu times; delay p50 %.1f ms, p99 %.1f ms, max %.1f ms; over 1 s: %llu; "
                "unreported: %llu\n",
                totals.delays_ms.size(), percentile(totals.delays_ms, 0.5), percentile(totals.delays_ms, 0.99),
                totals.delays_ms.empty() ? 0.0 : *std::max_element(totals.delays_ms.begin(), totals.delays_ms.end()),
                static_cast<unsigned long long>(totals.late), static_cast<unsigned long long>(totals.unreported));
    if (!own_dir.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(own_dir, ignored);
    }
    return totals.failed == 0 && totals.unreported == 0 ? 0 : 1;
}
