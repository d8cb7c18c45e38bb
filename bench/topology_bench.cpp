// SPDX-License-Identifier: Apache-2.0
// shm-topology-bench: input gates and one-ring broadcast against a single channel, same run.
//
//  - gate stream: one producer process writes 64-byte records round-robin over M channels, one
//    consumer process reads them through an InputGate (M = 1, 4, 16, 64); the baseline is one
//    channel read by a plain RecordReader. Records per second; every byte is checksummed.
//  - gate wake-up: ping-pong where the ping goes out on channel (i % M) of the gate and the pong
//    comes back on one channel; round-trip p50/p99 with the default (hybrid) strategy, against
//    the same ping-pong over one plain channel each way.
//  - broadcast: one producer, N consumer processes reading one ring with N slots (N = 1, 2, 4,
//    8); records per second per consumer, against one plain channel. N > 1 oversubscribes two
//    cores: this shows the cost of sharing, not a parallel speed-up.
// Producer and consumers are separate processes; each row runs --rounds times interleaved and
// the median is printed.
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "channels/topology.hpp"
#include "shm/process.hpp"
#include "shm/region.hpp"

namespace {

using bench::median;

using namespace shmchan;

struct Shared {
    std::atomic<std::uint64_t> checksum[8];
    std::atomic<std::uint64_t> rtt[1 << 16];
    std::atomic<std::uint32_t> rtt_count;
};

Shared* shared_block() {
    void* memory = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return new (memory) Shared{};
}

void pin(int core) {
    unsigned cores = std::thread::hardware_concurrency();
    if (cores < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<unsigned>(core) % cores, &set);
    sched_setaffinity(0, sizeof set, &set);
}

// A hash of each record, summed: independent of the order (a gate interleaves its channels).
std::uint64_t fold(std::uint64_t sum, std::span<const std::byte> bytes) {
    std::uint64_t hash = 1469598103934665603ull, word;
    for (std::size_t i = 0; i + 8 <= bytes.size(); i += 8) {
        std::memcpy(&word, bytes.data() + i, 8);
        hash = (hash ^ word) * 0x100000001b3ull;
    }
    return sum + hash;
}

ChannelOptions records_options() {
    ChannelOptions options;
    options.framing = Framing::records;
    return options;
}

std::vector<std::string> names(const std::string& stem, std::uint32_t count) {
    std::vector<std::string> out;
    for (std::uint32_t i = 0; i < count; ++i) out.push_back(stem + "-" + std::to_string(i));
    return out;
}

void cleanup(const std::vector<std::string>& channels, const std::string& gate) {
    for (const auto& name : channels) remove_channel(name, true);
    if (!gate.empty()) ::unlink((shm::region_directory() + "/shmgate-" + gate).c_str());
}

// Records per second from a producer (this process) to a consumer process.
double gate_stream(std::uint32_t channels, std::uint64_t count) {
    Shared* shared = shared_block();
    const std::string stem = "topo-gate-" + std::to_string(::getpid()) + "-" + std::to_string(channels);
    auto list = names(stem, channels);
    pid_t child = ::fork();
    if (child == 0) {
        pin(1);
        std::uint64_t sum = 0;
        Record record;
        if (channels == 0) {
            auto reader = RecordReader::attach(stem + "-0", records_options());
            while (reader.read(record) == Status::ok) sum = fold(sum, record.bytes);
        } else {
            GateOptions options;
            options.channel = records_options();
            auto gate = InputGate::attach(stem, list, options);
            std::uint32_t from = 0;
            while (gate.read(record, from) == Status::ok) sum = fold(sum, record.bytes);
        }
        shared->checksum[0] = sum;
        ::_exit(0);
    }
    pin(0);
    std::vector<std::string> targets = channels == 0 ? std::vector<std::string>{stem + "-0"} : list;
    if (channels == 0) list = targets;
    auto partition = OutputPartition::attach(targets, PartitionMode::round_robin, records_options());
    std::byte record[64];
    std::uint64_t sum = 0;
    auto start = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
        for (std::size_t k = 0; k < 64; k += 8) {
            std::uint64_t word = i * 64 + k;
            std::memcpy(record + k, &word, 8);
        }
        sum = fold(sum, record);
        if (partition.write(record) != Status::ok) std::abort();
    }
    bench::expect_ok(partition.end_stream(), "end_stream");
    ::waitpid(child, nullptr, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bool ok = shared->checksum[0] == sum;
    ::munmap(shared, sizeof(Shared));
    cleanup(list, channels ? stem : "");
    if (!ok) {
        std::fprintf(stderr, "gate stream checksum mismatch\n");
        std::exit(1);
    }
    return static_cast<double>(count) / seconds;
}

// Ping over channel (i % M) of a gate (M = 0: one plain channel), pong back on one channel.
std::pair<double, double> gate_pingpong(std::uint32_t channels, std::uint32_t round_trips) {
    Shared* shared = shared_block();
    const std::string stem = "topo-pp-" + std::to_string(::getpid()) + "-" + std::to_string(channels);
    auto list = names(stem, std::max<std::uint32_t>(channels, 1));
    const std::string back = stem + "-back";
    ChannelOptions latency = records_options();
    latency.buffer_timeout = std::chrono::nanoseconds(0);  // wake the reader for every record
    pid_t child = ::fork();
    if (child == 0) {  // ponger
        pin(1);
        auto writer = RecordWriter::attach(back, latency);
        Record record;
        std::uint32_t from = 0;
        if (channels == 0) {
            auto reader = RecordReader::attach(list[0], latency);
            while (reader.read(record) == Status::ok) bench::expect_ok(writer.write(record.bytes), "write");
        } else {
            GateOptions options;
            options.channel = latency;
            auto gate = InputGate::attach(stem, list, options);
            while (gate.read(record, from) == Status::ok) bench::expect_ok(writer.write(record.bytes), "write");
        }
        bench::expect_ok(writer.end_stream(), "end_stream");
        ::_exit(0);
    }
    pin(0);
    auto reader = RecordReader::attach(back, latency);
    std::vector<RecordWriter> writers;
    for (const auto& name : list) writers.push_back(RecordWriter::attach(name, latency));
    std::vector<std::uint64_t> rtts;
    rtts.reserve(round_trips);
    Record record;
    std::byte ping[64]{};
    for (std::uint32_t i = 0; i < round_trips + 100; ++i) {
        std::uint64_t start = shm::monotonic_ns();
        std::memcpy(ping, &i, sizeof i);
        if (writers[i % writers.size()].write(ping) != Status::ok) std::abort();
        if (reader.read(record) != Status::ok) std::abort();
        if (i >= 100) rtts.push_back(shm::monotonic_ns() - start);  // 100 warm-up trips
    }
    for (auto& writer : writers) bench::expect_ok(writer.end_stream(), "end_stream");
    while (reader.read(record) == Status::ok) {
    }
    ::waitpid(child, nullptr, 0);
    ::munmap(shared, sizeof(Shared));
    reader.remove_channel();
    cleanup(list, channels ? stem : "");
    std::sort(rtts.begin(), rtts.end());
    return {static_cast<double>(rtts[rtts.size() / 2]), static_cast<double>(rtts[rtts.size() * 99 / 100])};
}

// Records per second delivered to each of N consumers of one ring (N = 0: a plain channel).
double broadcast(std::uint32_t consumers, std::uint64_t count) {
    Shared* shared = shared_block();
    const std::string name = "topo-bc-" + std::to_string(::getpid()) + "-" + std::to_string(consumers);
    ChannelOptions options = records_options();
    if (consumers > 0) options.consumers = consumers;
    const std::uint32_t readers = std::max<std::uint32_t>(consumers, 1);
    std::vector<pid_t> children;
    for (std::uint32_t c = 0; c < readers; ++c) {
        pid_t child = ::fork();
        if (child == 0) {
            pin(1 + static_cast<int>(c));
            auto reader = RecordReader::attach(name, options);
            Record record;
            std::uint64_t sum = 0;
            while (reader.read(record) == Status::ok) sum = fold(sum, record.bytes);
            shared->checksum[c] = sum;
            ::_exit(0);
        }
        children.push_back(child);
    }
    pin(0);
    auto writer = RecordWriter::attach(name, options);
    std::byte record[64];
    std::uint64_t sum = 0;
    auto start = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
        for (std::size_t k = 0; k < 64; k += 8) {
            std::uint64_t word = i * 64 + k;
            std::memcpy(record + k, &word, 8);
        }
        sum = fold(sum, record);
        if (writer.write(record) != Status::ok) std::abort();
    }
    bench::expect_ok(writer.end_stream(), "end_stream");
    for (pid_t child : children) ::waitpid(child, nullptr, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bool ok = true;
    for (std::uint32_t c = 0; c < readers; ++c) ok = ok && shared->checksum[c] == sum;
    ::munmap(shared, sizeof(Shared));
    remove_channel(name, true);
    if (!ok) {
        std::fprintf(stderr, "broadcast checksum mismatch\n");
        std::exit(1);
    }
    return static_cast<double>(count) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-topology-bench: gates and broadcast against a single channel, same run"};
    int rounds = 3;
    std::uint64_t records = 4'000'000;
    std::uint32_t round_trips = 20'000;
    app.add_option("--rounds", rounds, "interleaved rounds (median)")->check(CLI::Range(1, 99));
    app.add_option("--records", records, "records per stream run");
    app.add_option("--round-trips", round_trips, "round trips per ping-pong run")->check(CLI::Range(1000u, 1u << 20));
    CLI11_PARSE(app, argc, argv);

    std::printf("gate stream, 64 B records, round-robin over M channels (M = 0: one plain channel, no gate)\n");
    const std::uint32_t gate_sizes[] = {0, 1, 4, 16, 64};
    std::vector<std::vector<double>> stream(std::size(gate_sizes));
    std::vector<std::vector<double>> p50(std::size(gate_sizes)), p99(std::size(gate_sizes));
    for (int round = 0; round < rounds; ++round) {
        for (std::size_t k = 0; k < std::size(gate_sizes); ++k) {
            stream[k].push_back(gate_stream(gate_sizes[k], records));
            auto [median_rtt, tail] = gate_pingpong(gate_sizes[k], round_trips);
            p50[k].push_back(median_rtt);
            p99[k].push_back(tail);
        }
    }
    double base_stream = median(stream[0]), base_rtt = median(p50[0]);
    std::printf("%6s %14s %12s %14s %12s %12s\n", "M", "rec/s", "vs plain", "rtt p50 (us)", "p99 (us)", "vs plain");
    for (std::size_t k = 0; k < std::size(gate_sizes); ++k) {
        std::printf("%6s %12.2f M %11.2fx %14.2f %12.2f %11.2fx\n",
                    gate_sizes[k] ? std::to_string(gate_sizes[k]).c_str() : "plain", median(stream[k]) / 1e6,
                    median(stream[k]) / base_stream, median(p50[k]) / 1e3, median(p99[k]) / 1e3, median(p50[k]) / base_rtt);
    }

    std::printf("\nbroadcast over one ring, 64 B records, N consumer processes (N = 0: one plain channel)\n");
    const std::uint32_t fanouts[] = {0, 1, 2, 4, 8};
    std::vector<std::vector<double>> rates(std::size(fanouts));
    for (int round = 0; round < rounds; ++round) {
        for (std::size_t k = 0; k < std::size(fanouts); ++k) rates[k].push_back(broadcast(fanouts[k], records));
    }
    double base = median(rates[0]);
    std::printf("%6s %22s %12s %24s\n", "N", "rec/s to each", "vs plain", "records delivered/s");
    for (std::size_t k = 0; k < std::size(fanouts); ++k) {
        double rate = median(rates[k]);
        std::printf("%6s %20.2f M %11.2fx %22.2f M\n", fanouts[k] ? std::to_string(fanouts[k]).c_str() : "plain", rate / 1e6,
                    rate / base, rate * std::max<std::uint32_t>(fanouts[k], 1) / 1e6);
    }
    return 0;
}
