// SPDX-License-Identifier: Apache-2.0
// shm-bench's barrier rows: a source -> transform -> sink pipeline of three processes over two
// records channels (A: source to transform, B: transform to sink), the sink slower than the
// source. The source writes a checkpoint barrier every 100 ms; the time from its write_barrier to
// the barrier's arrival at the sink is the barrier latency. Every row runs with the ring sizes and
// debloating targets of the grid; the "bursty" rows have a source that writes bursts at four times
// the sink's rate and then pauses, and a sink whose cost per record jitters and that stalls now
// and then.
//
// Figures per row: barrier latency p50/p99 over the barriers written after the warm-up; records
// per second at the sink over the measured window; the source's back-pressured time and the sink's
// idle time per second (the channels' own counters: producer of A, consumer of B).
#include "bench/barrier_bench.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <span>
#include <vector>

#include "bench/bench_common.hpp"
#include "channels/channel.hpp"
#include "channels/records.hpp"

namespace bench {
namespace {

using shmchan::ChannelInfo;
using shmchan::ChannelOptions;
using shmchan::Record;
using shmchan::RecordKind;
using shmchan::RecordReader;
using shmchan::RecordWriter;
using shmchan::Status;

constexpr std::uint32_t kRecordBytes = 256;
constexpr std::int64_t kBarrierEveryNs = 100'000'000;
constexpr std::int64_t kSinkNsPerRecord = 12'800;  // 256 B / 12.8 us: the sink reads 20 MB/s
constexpr std::uint32_t kMaxBarriers = 4096;
// Bursty source: 50 ms at 4 x the sink's rate, then 250 ms of pause (0.67 x the sink on average).
constexpr std::int64_t kBurstNs = 50'000'000, kPauseNs = 250'000'000;
// Jittery sink: a cost per record of 0.5 .. 1.5 x, and a 5 ms stall every 2000 records.
constexpr std::uint64_t kStallEvery = 2000;
constexpr std::int64_t kStallNs = 5'000'000;

struct RowSpec {
    std::uint32_t segments = 16;
    std::int64_t target_ms = 0;  // 0: debloating off
    bool bursty = false;
};

// Between the parent and its three children (anonymous shared memory, made before the forks).
// The arrays have one writer each and are read by the parent after the children exited.
struct PipelineShared {
    std::atomic<int> attached{0}, go{0}, stop{0}, failed{0};
    std::atomic<std::uint64_t> sink_records{0};
    std::int64_t written_ns[kMaxBarriers];  // source: when write_barrier(id) was called
    std::int64_t arrived_ns[kMaxBarriers];  // sink: when barrier id arrived
    char message[256];
};

PipelineShared* g_shared = nullptr;

[[noreturn]] void child_fail(const std::string& what) {
    if (g_shared->failed.exchange(1) == 0) {
        std::snprintf(g_shared->message, sizeof g_shared->message, "%s", what.c_str());
    }
    std::_Exit(1);
}

void check(Status status, const char* what) {
    if (status != Status::ok) child_fail(std::string(what) + ": " + shmchan::to_string(status));
}

void spin_until(std::int64_t deadline) {
    while (now_ns() < deadline) cpu_relax();
}

ChannelOptions channel_options(const RowSpec& spec, bool consumer) {
    ChannelOptions options;
    options.framing = shmchan::Framing::records;
    options.segment_count = spec.segments;
    options.buffer_timeout = std::chrono::milliseconds(1);
    if (consumer && spec.target_ms > 0) options.debloat_target = std::chrono::milliseconds(spec.target_ms);
    return options;
}

void wait_for_go() {
    g_shared->attached.fetch_add(1);
    while (g_shared->go.load() == 0) ::usleep(100);
}

void run_source(const RowSpec& spec, const std::string& a) {
    auto writer = RecordWriter::attach(a, channel_options(spec, false));
    wait_for_go();
    alignas(64) std::byte record[kRecordBytes];
    std::uint64_t sequence = 0, barrier = 0;
    std::int64_t next_barrier = now_ns() + kBarrierEveryNs;
    auto barrier_if_due = [&](std::int64_t now) {
        if (now < next_barrier || barrier + 1 >= kMaxBarriers) return;
        ++barrier;
        g_shared->written_ns[barrier] = now_ns();
        check(writer.write_barrier(barrier), "source write_barrier");
        next_barrier += kBarrierEveryNs;
    };
    const std::int64_t interval = kSinkNsPerRecord / 4;
    std::int64_t burst_start = now_ns(), next_record = burst_start;
    while (g_shared->stop.load(std::memory_order_relaxed) == 0) {
        std::int64_t now = now_ns();
        if (spec.bursty) {
            if (now - burst_start >= kBurstNs) {  // the pause, with the barriers that fall due in it
                const std::int64_t resume = burst_start + kBurstNs + kPauseNs;
                while ((now = now_ns()) < resume && g_shared->stop.load(std::memory_order_relaxed) == 0) {
                    barrier_if_due(now);
                    ::usleep(500);
                }
                burst_start = next_record = now;
            }
            spin_until(next_record);
            next_record += interval;
        }
        barrier_if_due(now);
        fill_words(record, kRecordBytes / 8, record_base(sequence));
        check(writer.write(std::span<const std::byte>(record, kRecordBytes)), "source write");
        ++sequence;
    }
    check(writer.end_stream(), "source end_stream");
}

void run_transform(const RowSpec& spec, const std::string& a, const std::string& b) {
    auto writer = RecordWriter::attach(b, channel_options(spec, false));
    auto reader = RecordReader::attach(a, channel_options(spec, true));
    wait_for_go();
    Record in;
    while (true) {
        const Status status = reader.read(in);
        if (status == Status::end_of_stream) break;
        if (status != Status::ok && status != Status::event) child_fail(std::string("transform read: ") + shmchan::to_string(status));
        if (in.kind == RecordKind::record) {
            check(writer.write(in.bytes), "transform write");
        } else if (in.kind == RecordKind::barrier) {
            check(writer.write_barrier(in.checkpoint_id), "transform write_barrier");
        }
    }
    check(writer.end_stream(), "transform end_stream");
}

void run_sink(const RowSpec& spec, const std::string& b) {
    auto reader = RecordReader::attach(b, channel_options(spec, true));
    wait_for_go();
    Record in;
    std::uint64_t sequence = 0, jitter = 0x9E3779B97F4A7C15ull;
    while (true) {
        const Status status = reader.read(in);
        if (status == Status::end_of_stream) break;
        if (status != Status::ok && status != Status::event) child_fail(std::string("sink read: ") + shmchan::to_string(status));
        if (in.kind == RecordKind::barrier) {
            if (in.checkpoint_id < kMaxBarriers) g_shared->arrived_ns[in.checkpoint_id] = now_ns();
            continue;
        }
        if (in.kind != RecordKind::record) continue;
        if (in.bytes.size() != kRecordBytes) child_fail("sink: a record of " + std::to_string(in.bytes.size()) + " bytes");
        std::uint64_t first;
        std::memcpy(&first, in.bytes.data(), 8);
        if (first != record_base(sequence)) child_fail("sink: record " + std::to_string(sequence) + " out of order or lost");
        // Every byte read: the words' sum is the pattern's.
        if (sum_words(in.bytes.data(), kRecordBytes / 8) != words_sum(kRecordBytes / 8, record_base(sequence))) {
            child_fail("sink: record " + std::to_string(sequence) + " damaged");
        }
        std::int64_t cost = kSinkNsPerRecord;
        if (spec.bursty) {
            jitter = jitter * 6364136223846793005ull + 1442695040888963407ull;
            cost = kSinkNsPerRecord / 2 + static_cast<std::int64_t>((jitter >> 33) % static_cast<std::uint64_t>(kSinkNsPerRecord));
            if (sequence % kStallEvery == kStallEvery - 1) cost += kStallNs;
        }
        spin_until(now_ns() + cost);
        ++sequence;
        g_shared->sink_records.store(sequence, std::memory_order_relaxed);
    }
}

pid_t fork_child(int cpu, const std::function<void()>& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(1);
    }
    if (pid == 0) {
        if (cpu >= 0) pin_to(cpu);
        try {
            body();
        } catch (const std::exception& error) {
            child_fail(error.what());
        }
        std::fflush(nullptr);
        std::_Exit(0);
    }
    return pid;
}

struct WindowCounters {
    std::uint64_t backpressured_ns = 0, idle_ns = 0, sink_records = 0;
    std::int64_t at = 0;
};

WindowCounters sample(const std::string& a, const std::string& b) {
    WindowCounters c;
    c.at = now_ns();
    const ChannelInfo ia = shmchan::inspect(a), ib = shmchan::inspect(b);
    // The counters grow when a wait ends; a wait in progress counts up to now (waiting_since).
    auto waited = [&](const ChannelInfo::Counters& counters) {
        const std::uint64_t since = counters.waiting_since_ns;
        const std::uint64_t now = static_cast<std::uint64_t>(now_ns());
        return counters.waited_ns + (since != 0 && since < now ? now - since : 0);
    };
    c.backpressured_ns = waited(ia.producer_counters);
    c.idle_ns = waited(ib.consumer_counters);
    c.sink_records = g_shared->sink_records.load();
    return c;
}

struct RowResult {
    RowSpec spec;
    bool ok = false;
    std::string error;
    std::optional<double> p50, p99, records_per_s, backpressured_ms_per_s, idle_ms_per_s;
    std::uint32_t barriers = 0, limit_a = 0, limit_b = 0;
};

double percentile(std::vector<double> values, double q) {
    std::sort(values.begin(), values.end());
    const std::size_t index = std::min(values.size() - 1, static_cast<std::size_t>(q * static_cast<double>(values.size())));
    return values[index];
}

RowResult run_row(const RowSpec& spec, const BarrierOptions& options, int row) {
    RowResult result;
    result.spec = spec;
    new (g_shared) PipelineShared{};
    const std::string stem = "barrier-" + std::to_string(::getpid()) + "-" + std::to_string(row);
    const std::string a = stem + "-a", b = stem + "-b";
    const std::int64_t warm_ns = options.quick ? 500'000'000 : 2'000'000'000;
    const std::int64_t measure_ns = options.quick ? 1'000'000'000 : 6'000'000'000;
    std::vector<pid_t> children;
    children.push_back(fork_child(options.core_a, [&] { run_source(spec, a); }));
    children.push_back(fork_child(-1, [&] { run_transform(spec, a, b); }));
    children.push_back(fork_child(options.core_b, [&] { run_sink(spec, b); }));
    const std::int64_t attach_deadline = now_ns() + 10'000'000'000;
    while (g_shared->attached.load() < 3 && g_shared->failed.load() == 0 && now_ns() < attach_deadline) ::usleep(1000);
    const std::int64_t start = now_ns();
    g_shared->go.store(1);
    std::optional<WindowCounters> first, last;
    ChannelInfo end_a, end_b;
    if (g_shared->attached.load() == 3) {
        while (now_ns() < start + warm_ns && g_shared->failed.load() == 0) ::usleep(10'000);
        first = sample(a, b);
        while (now_ns() < start + warm_ns + measure_ns && g_shared->failed.load() == 0) ::usleep(10'000);
        last = sample(a, b);
        end_a = shmchan::inspect(a);
        end_b = shmchan::inspect(b);
    }
    const std::int64_t stop_at = now_ns();
    g_shared->stop.store(1);
    bool all_exited = true;
    for (pid_t pid : children) {
        const std::int64_t deadline = now_ns() + 60'000'000'000;
        int status = 0;
        pid_t done = 0;
        while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && now_ns() < deadline) ::usleep(1000);
        if (done != pid) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            all_exited = false;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            all_exited = false;
        }
    }
    shmchan::remove_channel(a, true);
    shmchan::remove_channel(b, true);
    if (g_shared->failed.load() != 0 || !all_exited || !first || !last) {
        result.error = g_shared->failed.load() ? std::string(g_shared->message) : "a process did not finish";
        return result;
    }
    std::vector<double> latencies;
    for (std::uint32_t id = 1; id < kMaxBarriers; ++id) {
        const std::int64_t written = g_shared->written_ns[id], arrived = g_shared->arrived_ns[id];
        if (written == 0) break;
        if (written < first->at || written > stop_at) continue;
        if (arrived == 0) {
            result.error = "barrier " + std::to_string(id) + " never arrived";
            return result;
        }
        latencies.push_back(static_cast<double>(arrived - written));
    }
    const double window_s = static_cast<double>(last->at - first->at) / 1e9;
    if (latencies.empty() || window_s <= 0) {
        result.error = "no barrier in the measured window";
        return result;
    }
    result.ok = true;
    result.barriers = static_cast<std::uint32_t>(latencies.size());
    result.p50 = percentile(latencies, 0.50);
    result.p99 = percentile(latencies, 0.99);
    result.records_per_s = static_cast<double>(last->sink_records - first->sink_records) / window_s;
    result.backpressured_ms_per_s = static_cast<double>(last->backpressured_ns - first->backpressured_ns) / 1e6 / window_s;
    result.idle_ms_per_s = static_cast<double>(last->idle_ns - first->idle_ns) / 1e6 / window_s;
    result.limit_a = end_a.credit_limit;
    result.limit_b = end_b.credit_limit;
    return result;
}

std::string num(const std::optional<double>& value) {
    if (!value) return "null";
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.6g", *value);
    return buffer;
}

std::string variant(const RowSpec& spec) { return spec.bursty ? "bursty" : "sustained"; }

void write_json(const std::vector<RowResult>& results, const std::string& path) {
    std::ofstream out(path);
    if (!out) {
        std::fprintf(stderr, "shm-bench: cannot write %s\n", path.c_str());
        return;
    }
    out << "{\"results\": [\n";
    for (std::size_t k = 0; k < results.size(); ++k) {
        const RowResult& r = results[k];
        const RowSpec& s = r.spec;
        out << (k ? ",\n" : "") << "  {\"transport\": \"shmchan\", \"mode\": \"hybrid\", \"api\": \"copy\", \"pattern\": \"barrier\""
            << ", \"load\": null, \"record_bytes\": " << kRecordBytes << ", \"records_per_s\": " << num(r.records_per_s)
            << ", \"bytes_per_s\": " << num(r.records_per_s ? std::optional<double>(*r.records_per_s * kRecordBytes) : std::nullopt)
            << ", \"rtt_ns_p50\": null, \"rtt_ns_p99\": null, \"rtt_ns_p999\": null"
            << ", \"variant\": \"" << variant(s) << "\", \"segments\": " << s.segments
            << ", \"debloat_target_ms\": " << (s.target_ms ? std::to_string(s.target_ms) : std::string("null"))
            << ", \"barrier_latency_ns_p50\": " << num(r.p50) << ", \"barrier_latency_ns_p99\": " << num(r.p99)
            << ", \"backpressured_ms_per_s\": " << num(r.backpressured_ms_per_s)
            << ", \"idle_ms_per_s\": " << num(r.idle_ms_per_s) << ", \"barriers\": " << r.barriers
            << ", \"sink_ns_per_record\": " << kSinkNsPerRecord
            << ", \"credit_limit_segments\": [" << r.limit_a << ", " << r.limit_b << "]";
        if (!r.ok) out << ", \"note\": \"FAILED: " << r.error << "\"";
        out << "}";
    }
    out << "\n]}\n";
}

void print_table(const std::vector<RowResult>& results, std::FILE* out, bool markdown) {
    const char* head = markdown ? "| variant | segments | debloat | barrier p50 ms | barrier p99 ms | records/s | bp ms/s | idle ms/s | limits A, B |\n"
                                  "|---|---:|---:|---:|---:|---:|---:|---:|---|\n"
                                : "variant    segs  debloat  barrier p50 ms  p99 ms    records/s  bp ms/s  idle ms/s  limits A,B\n";
    std::fputs(head, out);
    for (const RowResult& r : results) {
        const std::string target = r.spec.target_ms ? std::to_string(r.spec.target_ms) + " ms" : "off";
        if (!r.ok) {
            std::fprintf(out, markdown ? "| %s | %u | %s | FAILED: %s |||||\n" : "%-10s %4u  %-7s  FAILED: %s\n", variant(r.spec).c_str(),
                         r.spec.segments, target.c_str(), r.error.c_str());
            continue;
        }
        std::fprintf(out, markdown ? "| %s | %u | %s | %.1f | %.1f | %.0f | %.0f | %.0f | %u, %u |\n"
                                   : "%-10s %4u  %-7s  %14.1f  %6.1f  %11.0f  %7.0f  %9.0f  %u,%u\n",
                     variant(r.spec).c_str(), r.spec.segments, target.c_str(), *r.p50 / 1e6, *r.p99 / 1e6, *r.records_per_s,
                     *r.backpressured_ms_per_s, *r.idle_ms_per_s, r.limit_a, r.limit_b);
    }
}

}  // namespace

int run_barrier_rows(const BarrierOptions& options) {
    void* memory = ::mmap(nullptr, sizeof(PipelineShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        std::perror("mmap");
        return 1;
    }
    g_shared = static_cast<PipelineShared*>(memory);
    // Our own channel directory, so that nothing else's channels are touched.
    char pattern[] = "/dev/shm/shm-bench-barrier-XXXXXX";
    if (!::mkdtemp(pattern)) {
        std::perror("mkdtemp");
        return 1;
    }
    ::setenv("SHMCHAN_DIR", pattern, 1);
    const std::vector<std::uint32_t> sizes = options.quick ? std::vector<std::uint32_t>{16, 256} : std::vector<std::uint32_t>{16, 64, 256};
    const std::vector<std::int64_t> targets = options.quick ? std::vector<std::int64_t>{0, 10} : std::vector<std::int64_t>{0, 10, 100};
    std::vector<RowSpec> specs;
    for (bool bursty : {false, true}) {
        for (std::uint32_t segments : sizes) {
            for (std::int64_t target : targets) specs.push_back(RowSpec{segments, target, bursty});
        }
    }
    std::printf("shm-bench barrier rows%s: source -> transform -> sink, %u-byte records, sink %.0f MB/s, a barrier every %lld ms\n",
                options.quick ? " (--quick)" : "", kRecordBytes, kRecordBytes / (kSinkNsPerRecord / 1e3),
                static_cast<long long>(kBarrierEveryNs / 1'000'000));
    std::vector<RowResult> results;
    bool failed = false;
    int row = 0;
    for (const RowSpec& spec : specs) {
        RowResult r = run_row(spec, options, row++);
        std::printf("  %-10s %4u segments, debloat %-6s %s\n", variant(spec).c_str(), spec.segments,
                    spec.target_ms ? (std::to_string(spec.target_ms) + " ms").c_str() : "off",
                    r.ok ? ("barrier p50 " + num(*r.p50 / 1e6) + " ms, p99 " + num(*r.p99 / 1e6) + " ms, " + num(r.records_per_s) +
                            " records/s")
                               .c_str()
                         : ("FAILED: " + r.error).c_str());
        std::fflush(stdout);
        failed = failed || !r.ok;
        results.push_back(std::move(r));
    }
    std::printf("\n");
    print_table(results, stdout, false);
    if (!options.json_path.empty()) write_json(results, options.json_path);
    if (!options.markdown_path.empty()) {
        if (std::FILE* md = std::fopen(options.markdown_path.c_str(), "w")) {
            print_table(results, md, true);
            std::fclose(md);
        }
    }
    std::error_code ignored;
    std::filesystem::remove_all(pattern, ignored);
    ::munmap(memory, sizeof(PipelineShared));
    return failed ? 1 : 0;
}

}  // namespace bench
