// SPDX-License-Identifier: Apache-2.0
// shm-pipeline: the README's main job. Three processes, source -> transform -> sink, over two
// records channels, the way a Flink job chains operators across task slots:
//
//   source     generates trades (typed, 40 bytes) and, every --large-every records, a report
//              record far larger than a segment (it spans segments), and a checkpoint barrier
//              every second;
//   transform  enriches each trade (notional, a running VWAP per symbol) and forwards reports
//              and barriers;
//   sink       checks every record against the same deterministic generator and folds it into a
//              checksum; at the end it prints the count and the checksum it verified.
//
// The parent prints, once a second, each channel's records/s, MB/s, fill and the Flink figures
// backPressuredTimeMsPerSecond / idleTimeMsPerSecond, read from the counters in shared memory
// (what shm-inspect watch shows too).
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <thread>
#include <vector>

#include <shmchan/shmchan.hpp>

namespace {

using namespace shmchan;

// CLOCK_MONOTONIC (libstdc++'s steady_clock), the clock the channels' counters use.
std::uint64_t monotonic_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

struct Trade {
    std::uint64_t id;
    std::uint64_t timestamp_ns;
    char symbol[8];
    double price;
    std::uint32_t quantity;
    std::uint32_t side;  // 0 buy, 1 sell
};
static_assert(sizeof(Trade) == 40);

struct EnrichedTrade {
    Trade trade;
    double notional;
    double vwap;  // running volume-weighted average price of the symbol
};

constexpr std::array<const char*, 8> kSymbols = {"AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL"};

std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

Trade make_trade(std::uint64_t id) {
    std::uint64_t r = mix(id);
    Trade t{};
    t.id = id;
    t.timestamp_ns = id * 1000;
    const char* symbol = kSymbols[r % kSymbols.size()];
    std::memcpy(t.symbol, symbol, std::strlen(symbol));  // the rest stays zero
    t.price = 100.0 + static_cast<double>((r >> 8) % 10000) / 100.0;
    t.quantity = 1 + static_cast<std::uint32_t>((r >> 24) % 500);
    t.side = static_cast<std::uint32_t>((r >> 40) & 1);
    return t;
}

// The large "report" record number k: deterministic bytes.
void fill_report(std::vector<std::byte>& out, std::uint64_t k, std::size_t size) {
    out.resize(size);
    for (std::size_t i = 0; i < size; i += 8) {
        std::uint64_t word = mix(k * 1'000'003 + i);
        std::memcpy(out.data() + i, &word, std::min<std::size_t>(8, size - i));
    }
}

struct Config {
    std::uint64_t records = 60'000'000;
    std::uint64_t large_every = 100'000;
    std::size_t large_bytes = 256 * 1024;
    double transform_cost_ns = 0;
    WaitStrategy wait = WaitStrategy::hybrid;  // every side's (the default)
    std::string prefix;
};

// Results the children hand back to the parent.
struct Shared {
    std::atomic<std::uint64_t> source_done{0};
    std::atomic<std::uint64_t> sink_records{0};
    std::atomic<std::uint64_t> sink_reports{0};
    std::atomic<std::uint64_t> sink_barriers{0};
    std::atomic<std::uint64_t> sink_checksum{0};
    std::atomic<std::uint64_t> expected_checksum{0};
    std::atomic<std::uint64_t> mismatches{0};
    std::atomic<int> failed{0};
    char error[256];
};

void pin(int core) {
    if (std::thread::hardware_concurrency() < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core % static_cast<int>(std::thread::hardware_concurrency()), &set);
    sched_setaffinity(0, sizeof set, &set);
}

void report_failure(Shared& shared, const std::string& what) {
    shared.failed = 1;
    std::snprintf(shared.error, sizeof shared.error, "%s", what.c_str());
}

int run_source(const Config& config, Shared& shared) {
    auto writer = RecordWriter::attach(config.prefix + "-trades", [&] {
        ChannelOptions o;
        o.framing = Framing::records;
        o.wait = config.wait;
        return o;
    }());
    std::vector<std::byte> report;
    std::uint64_t next_barrier = monotonic_ns() + 1'000'000'000;
    std::uint64_t checkpoint = 0;
    for (std::uint64_t id = 0; id < config.records; ++id) {
        Status status = writer.write_value(make_trade(id));
        if (status == Status::ok && config.large_every && id % config.large_every == config.large_every - 1) {
            fill_report(report, id / config.large_every, config.large_bytes);
            status = writer.write(std::span<const std::byte>(report));
        }
        if (status == Status::ok && (id & 4095) == 0 && monotonic_ns() >= next_barrier) {
            status = writer.write_barrier(++checkpoint);
            next_barrier += 1'000'000'000;
        }
        if (status != Status::ok) {
            report_failure(shared, "source: " + std::string(to_string(status)) + " " + writer.last_error());
            return 1;
        }
    }
    if (Status status = writer.end_stream(); status != Status::ok) {
        report_failure(shared, "source: end of stream: " + std::string(to_string(status)) + " " + writer.last_error());
        return 1;
    }
    shared.source_done = 1;
    return 0;
}

int run_transform(const Config& config, Shared& shared) {
    ChannelOptions options;
    options.framing = Framing::records;
    options.wait = config.wait;
    auto reader = RecordReader::attach(config.prefix + "-trades", options);
    auto writer = RecordWriter::attach(config.prefix + "-enriched", options);
    std::array<double, kSymbols.size()> volume{}, value{};
    Record record;
    while (true) {
        Status status = reader.read(record);
        if (status == Status::end_of_stream) break;
        if (status != Status::ok) {
            report_failure(shared, "transform: " + std::string(to_string(status)) + " " + reader.last_error());
            return 1;
        }
        if (record.kind == RecordKind::barrier) {
            status = writer.write_barrier(record.checkpoint_id);  // forward the checkpoint
        } else if (record.bytes.size() == sizeof(Trade)) {
            Trade trade;
            std::memcpy(&trade, record.bytes.data(), sizeof trade);
            std::size_t symbol = 0;
            while (symbol < kSymbols.size() && std::strncmp(trade.symbol, kSymbols[symbol], 8) != 0) ++symbol;
            if (symbol == kSymbols.size()) symbol = 0;
            volume[symbol] += trade.quantity;
            value[symbol] += trade.price * trade.quantity;
            if (config.transform_cost_ns > 0) {
                std::uint64_t until = monotonic_ns() + static_cast<std::uint64_t>(config.transform_cost_ns);
                while (monotonic_ns() < until) {
                }
            }
            // Zero-copy write: build the enriched record in place in the segment.
            std::span<std::byte> room;
            status = writer.reserve(sizeof(EnrichedTrade), room);
            if (status == Status::ok) {
                EnrichedTrade enriched{trade, trade.price * trade.quantity, value[symbol] / volume[symbol]};
                std::memcpy(room.data(), &enriched, sizeof enriched);
                status = writer.commit(sizeof enriched);
            }
        } else {
            status = writer.write(record.bytes);  // a report: forwarded as it is (it spans segments)
        }
        if (status != Status::ok) {
            report_failure(shared, "transform: " + std::string(to_string(status)) + " " + writer.last_error());
            return 1;
        }
    }
    if (Status status = writer.end_stream(); status != Status::ok) {
        report_failure(shared, "transform: end of stream: " + std::string(to_string(status)) + " " + writer.last_error());
        return 1;
    }
    reader.remove_channel();
    return 0;
}

int run_sink(const Config& config, Shared& shared) {
    ChannelOptions options;
    options.framing = Framing::records;
    options.wait = config.wait;
    auto reader = RecordReader::attach(config.prefix + "-enriched", options);
    std::uint64_t next_id = 0, reports = 0, barriers = 0, checksum = 1469598103934665603ull, mismatches = 0;
    std::vector<std::byte> expected_report;
    Record record;
    while (true) {
        Status status = reader.read(record);
        if (status == Status::end_of_stream) break;
        if (status != Status::ok) {
            report_failure(shared, "sink: " + std::string(to_string(status)) + " " + reader.last_error());
            return 1;
        }
        if (record.kind == RecordKind::barrier) {
            ++barriers;
            continue;
        }
        if (record.bytes.size() == sizeof(EnrichedTrade)) {
            EnrichedTrade enriched;
            std::memcpy(&enriched, record.bytes.data(), sizeof enriched);
            Trade want = make_trade(next_id);
            if (std::memcmp(&enriched.trade, &want, sizeof want) != 0 ||
                std::fabs(enriched.notional - want.price * want.quantity) > 1e-6) {
                ++mismatches;
            }
            checksum = (checksum ^ mix(enriched.trade.id ^ enriched.trade.quantity)) * 1099511628211ull;
            ++next_id;
        } else {
            fill_report(expected_report, reports, config.large_bytes);
            if (record.bytes.size() != expected_report.size() ||
                std::memcmp(record.bytes.data(), expected_report.data(), expected_report.size()) != 0) {
                ++mismatches;
            }
            ++reports;
            checksum = (checksum ^ mix(~reports)) * 1099511628211ull;
        }
        if ((next_id & 65535) == 0) shared.sink_records.store(next_id, std::memory_order_relaxed);
    }
    shared.sink_records = next_id;
    shared.sink_reports = reports;
    shared.sink_barriers = barriers;
    shared.sink_checksum = checksum;
    shared.mismatches = mismatches;
    reader.remove_channel();
    return 0;
}

std::uint64_t expected_checksum(const Config& config) {
    std::uint64_t checksum = 1469598103934665603ull, reports = 0;
    for (std::uint64_t id = 0; id < config.records; ++id) {
        Trade t = make_trade(id);
        checksum = (checksum ^ mix(t.id ^ t.quantity)) * 1099511628211ull;
        if (config.large_every && id % config.large_every == config.large_every - 1) {
            ++reports;
            checksum = (checksum ^ mix(~reports)) * 1099511628211ull;
        }
    }
    return checksum;
}

struct Sample {
    ChannelInfo info;
    std::uint64_t at_ns = 0;
    bool ok = false;
};

Sample sample(const std::string& name) {
    Sample s;
    try {
        s.info = inspect(name);
        s.ok = s.info.abi_version != 0;
    } catch (const Error&) {
    }
    s.at_ns = monotonic_ns();
    return s;
}

// Waited time in the interval, counting a wait still in progress.
double waited_ms(const ChannelInfo::Counters& now, const ChannelInfo::Counters& before, std::uint64_t now_ns,
                 std::uint64_t before_ns) {
    auto in_progress = [](const ChannelInfo::Counters& c, std::uint64_t at) -> double {
        return c.waiting_since_ns && at > c.waiting_since_ns ? static_cast<double>(at - c.waiting_since_ns) : 0.0;
    };
    double ns = static_cast<double>(now.waited_ns) - static_cast<double>(before.waited_ns) + in_progress(now, now_ns) -
                in_progress(before, before_ns);
    return std::max(0.0, ns / 1e6);
}

void print_channel(const char* label, const Sample& now, const Sample& before) {
    if (!now.ok) {
        std::printf("  %-9s (not created yet, or already removed)\n", label);
        return;
    }
    if (!before.ok || now.at_ns <= before.at_ns) {
        std::printf("  %-9s (first sample)\n", label);
        return;
    }
    double seconds = static_cast<double>(now.at_ns - before.at_ns) / 1e9;
    const auto& p = now.info.producer_counters;
    const auto& pb = before.info.producer_counters;
    double records = static_cast<double>(now.info.consumer_counters.records - before.info.consumer_counters.records) / seconds;
    double bytes = static_cast<double>(p.bytes - pb.bytes) / seconds;
    double fill = now.info.segment_count ? static_cast<double>(now.info.published - now.info.released) / now.info.segment_count : 0;
    double back = waited_ms(p, pb, now.at_ns, before.at_ns) / seconds;
    double idle = waited_ms(now.info.consumer_counters, before.info.consumer_counters, now.at_ns, before.at_ns) / seconds;
    char bar[17];
    int filled = static_cast<int>(std::lround(fill * 16));
    for (int i = 0; i < 16; ++i) bar[i] = i < filled ? '#' : '.';
    bar[16] = '\0';
    std::printf("  %-9s %8.2f M rec/s %8.1f MB/s  fill [%s] %3.0f%%  backPressured %4.0f ms/s  idle %4.0f ms/s\n",
                label, records / 1e6, bytes / 1e6, bar, fill * 100, std::min(back, 1000.0), std::min(idle, 1000.0));
}

}  // namespace

int main(int argc, char** argv) {
    Config config;
    CLI::App app{"shm-pipeline: source -> transform -> sink over two shmchan records channels"};
    app.add_option("--records", config.records, "trades to send")->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40));
    app.add_option("--large-every", config.large_every, "a large report record every N trades (0: none)");
    app.add_option("--large-bytes", config.large_bytes, "size of a report record")
        ->check(CLI::Range(std::size_t{1}, std::size_t{32} << 20));
    app.add_option("--transform-cost-ns", config.transform_cost_ns, "busy work per trade in the transform (to see backpressure)");
    std::string wait = "hybrid";
    app.add_option("--wait", wait, "wait strategy of every side: spin, hybrid (the default) or park")
        ->check(CLI::IsMember({"spin", "hybrid", "park"}));
    CLI11_PARSE(app, argc, argv);
    config.wait = wait == "spin" ? WaitStrategy::spin : wait == "park" ? WaitStrategy::park : WaitStrategy::hybrid;

    config.prefix = "pipeline-" + std::to_string(::getpid());
    void* memory = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        std::perror("mmap");
        return 1;
    }
    Shared& shared = *new (memory) Shared{};
    std::printf("shm-pipeline: %" PRIu64 " trades (40 B typed records) + a %zu-byte report every %" PRIu64
                " trades, source -> transform -> sink, three processes\n",
                config.records, config.large_bytes, config.large_every);
    std::printf("channels: %s-trades, %s-enriched (16 x 32 KiB each, defaults); watch them with: shm-inspect watch\n\n",
                config.prefix.c_str(), config.prefix.c_str());
    std::fflush(stdout);

    auto start_child = [&](int (*body)(const Config&, Shared&), int core) {
        pid_t pid = ::fork();
        if (pid == 0) {
            pin(core);
            int code = 1;
            try {
                code = body(config, shared);
            } catch (const std::exception& error) {
                report_failure(shared, error.what());
            }
            std::fflush(nullptr);
            ::_exit(code);
        }
        return pid;
    };
    const std::uint64_t started = monotonic_ns();
    pid_t sink = start_child(run_sink, 1);
    pid_t transform = start_child(run_transform, 1);
    pid_t source = start_child(run_source, 0);
    const std::uint64_t expected = expected_checksum(config);

    Sample trades_before = sample(config.prefix + "-trades");
    Sample enriched_before = sample(config.prefix + "-enriched");
    int running = 3;
    int exit_code = 0;
    std::array<pid_t, 3> children = {source, transform, sink};
    while (running > 0) {
        for (int i = 0; i < 10 && running > 0; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));  // display cadence
            for (pid_t& child : children) {
                if (child <= 0) continue;
                int status = 0;
                if (::waitpid(child, &status, WNOHANG) == child) {
                    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) exit_code = 1;
                    child = -1;
                    --running;
                }
            }
            if (shared.failed) break;
        }
        if (shared.failed) {
            for (pid_t child : children) {
                if (child > 0) ::kill(child, SIGTERM);
            }
            break;
        }
        Sample trades = sample(config.prefix + "-trades");
        Sample enriched = sample(config.prefix + "-enriched");
        double elapsed = static_cast<double>(monotonic_ns() - started) / 1e9;
        std::printf("t=%5.1fs  sink verified %" PRIu64 " trades\n", elapsed, shared.sink_records.load());
        print_channel("trades", trades, trades_before);
        print_channel("enriched", enriched, enriched_before);
        std::fflush(stdout);
        if (trades.ok) trades_before = trades;
        if (enriched.ok) enriched_before = enriched;
    }
    for (pid_t child : children) {
        if (child > 0) ::waitpid(child, nullptr, 0);
    }
    double elapsed = static_cast<double>(monotonic_ns() - started) / 1e9;
    if (shared.failed || exit_code != 0) {
        std::printf("\nFAILED: %s\n", shared.failed ? shared.error : "a stage exited with an error");
        remove_channel(config.prefix + "-trades", true);
        remove_channel(config.prefix + "-enriched", true);
        return 1;
    }
    bool count_ok = shared.sink_records == config.records;
    bool sum_ok = shared.sink_checksum == expected;
    std::printf("\ndone in %.2f s: %" PRIu64 " trades (%.2f M/s end to end), %" PRIu64 " reports of %zu bytes, %" PRIu64
                " checkpoint barriers\n",
                elapsed, shared.sink_records.load(), static_cast<double>(shared.sink_records.load()) / elapsed / 1e6,
                shared.sink_reports.load(), config.large_bytes, shared.sink_barriers.load());
    std::printf("sink check: count %s, checksum %016" PRIx64 " %s, %" PRIu64 " mismatching records\n",
                count_ok ? "ok" : "WRONG", shared.sink_checksum.load(), sum_ok ? "ok" : "WRONG", shared.mismatches.load());
    return count_ok && sum_ok && shared.mismatches == 0 ? 0 : 1;
}
