// SPDX-License-Identifier: Apache-2.0
// shm-counters-cost: what the always-on counters of the hot path cost.
//
// This one source is built twice: `shm-counters-cost` against the normal library and
// `shm-counters-off` against a variant compiled with SHMCHAN_HOT_COUNTERS=0 (the per-segment
// counter updates removed). Run without --single, it runs both binaries interleaved, N rounds of
// on / off / on, and reports per workload the median ratio off/on (the cost) beside the median
// ratio on/on of the same rounds (the A/A noise of this machine).
//
// Workloads, producer and consumer in separate processes pinned to two cores, default wait
// strategy: records of 64 bytes through the records layer (default geometry), and raw segments of
// 4 KiB (the most counter updates per byte), every byte written and read into a checksum.
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
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "channels/records.hpp"
#include "bench_common.hpp"

namespace {

using namespace shmchan;

struct Shared {
    std::atomic<std::uint64_t> checksum{0};
    std::atomic<int> ok{0};
};

void pin(int core) {
    if (std::thread::hardware_concurrency() < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    sched_setaffinity(0, sizeof set, &set);
}

double run_records(std::uint64_t count) {
    auto* shared = new (::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)) Shared{};
    const std::string name = "counters-cost-" + std::to_string(::getpid());
    ChannelOptions options;
    options.framing = Framing::records;
    pid_t child = ::fork();
    if (child == 0) {
        pin(1);
        auto reader = RecordReader::attach(name, options);
        Record record;
        std::uint64_t sum = 0;
        while (reader.read(record) == Status::ok) {
            for (std::byte b : record.bytes) sum = sum * 31 + static_cast<std::uint8_t>(b);
        }
        shared->checksum = sum;
        reader.remove_channel();
        ::_exit(0);
    }
    pin(0);
    auto writer = RecordWriter::attach(name, options);
    auto start = std::chrono::steady_clock::now();
    std::uint64_t sum = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        std::span<std::byte> room;
        if (writer.reserve(64, room) != Status::ok) std::abort();
        for (std::size_t k = 0; k < 64; ++k) {
            auto byte = static_cast<std::uint8_t>(i + k);
            room[k] = std::byte{byte};
            sum = sum * 31 + byte;
        }
        bench::expect_ok(writer.commit(64), "commit");
    }
    bench::expect_ok(writer.end_stream(), "end_stream");
    ::waitpid(child, nullptr, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (shared->checksum != sum) {
        std::fprintf(stderr, "checksum mismatch\n");
        std::exit(1);
    }
    ::munmap(shared, sizeof(Shared));
    return static_cast<double>(count) / seconds;
}

double run_segments(std::uint64_t count) {
    auto* shared = new (::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)) Shared{};
    const std::string name = "counters-cost-seg-" + std::to_string(::getpid());
    ChannelOptions options;
    options.segment_size = 4096;
    options.segment_count = 64;
    pid_t child = ::fork();
    if (child == 0) {
        pin(1);
        auto consumer = Consumer::attach(name, options);
        ReadableSegment segment;
        std::uint64_t sum = 0;
        while (consumer.read(segment) == Status::ok) {
            const auto* words = reinterpret_cast<const std::uint64_t*>(segment.payload.data());
            for (std::size_t k = 0; k < segment.payload.size() / 8; ++k) sum += words[k];
        }
        shared->checksum = sum;
        consumer.remove_channel();
        ::_exit(0);
    }
    pin(0);
    auto producer = Producer::attach(name, options);
    auto start = std::chrono::steady_clock::now();
    std::uint64_t sum = 0;
    WritableSegment segment;
    for (std::uint64_t i = 0; i < count; ++i) {
        if (producer.acquire(segment) != Status::ok) std::abort();
        auto* words = reinterpret_cast<std::uint64_t*>(segment.payload.data());
        for (std::size_t k = 0; k < segment.payload.size() / 8; ++k) {
            words[k] = i + k;
            sum += i + k;
        }
        bench::expect_ok(producer.publish(static_cast<std::uint32_t>(segment.payload.size())), "publish");
    }
    bench::expect_ok(producer.end_stream(), "end_stream");
    ::waitpid(child, nullptr, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (shared->checksum != sum) {
        std::fprintf(stderr, "checksum mismatch\n");
        std::exit(1);
    }
    ::munmap(shared, sizeof(Shared));
    return static_cast<double>(count) / seconds;
}

// Runs `binary --single WORKLOAD --count N` and returns the rate it prints.
double run_binary(const std::string& binary, const std::string& workload, std::uint64_t count) {
    std::string command = binary + " --single " + workload + " --count " + std::to_string(count);
    FILE* pipe = ::popen(command.c_str(), "r");
    if (!pipe) std::exit(1);
    double rate = 0;
    if (std::fscanf(pipe, "%lf", &rate) != 1) rate = 0;
    if (::pclose(pipe) != 0 || rate <= 0) {
        std::fprintf(stderr, "%s failed\n", command.c_str());
        std::exit(1);
    }
    return rate;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    std::size_t n = values.size();
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-counters-cost: the cost of the always-on counters, interleaved against a build without them"};
    std::string single, off_binary;
    std::uint64_t count = 0;
    int rounds = 11;
    app.add_option("--single", single, "run one workload (records|segments) and print its rate")->check(CLI::IsMember({"records", "segments"}));
    app.add_option("--count", count, "records or segments per run");
    app.add_option("--rounds", rounds, "interleaved rounds (on, off, on)")->check(CLI::Range(3, 101));
    app.add_option("--off-binary", off_binary, "the build without hot-path counters (default: shm-counters-off beside this one)");
    CLI11_PARSE(app, argc, argv);
    if (!single.empty()) {
        double rate = single == "records" ? run_records(count ? count : 20'000'000) : run_segments(count ? count : 500'000);
        std::printf("%.0f\n", rate);
        return 0;
    }
    std::string self = std::filesystem::canonical("/proc/self/exe").string();
    if (off_binary.empty()) off_binary = std::filesystem::path(self).parent_path() / "shm-counters-off";
    std::printf("counters on: %s\ncounters off: %s\n%d rounds of on / off / on per workload, interleaved\n\n", self.c_str(),
                off_binary.c_str(), rounds);
    std::printf("%-9s %14s %14s %16s %16s\n", "workload", "on (per s)", "off (per s)", "cost off/on-1", "A/A on/on-1");
    for (const std::string workload : {"records", "segments"}) {
        std::uint64_t n = workload == "records" ? 10'000'000 : 400'000;
        std::vector<double> cost, noise, on_rates, off_rates;
        for (int round = 0; round < rounds; ++round) {
            double on1 = run_binary(self, workload, n);
            double off = run_binary(off_binary, workload, n);
            double on2 = run_binary(self, workload, n);
            double on = (on1 + on2) / 2;
            on_rates.push_back(on);
            off_rates.push_back(off);
            cost.push_back(off / on - 1);       // > 0: the counters slow the stream down
            noise.push_back(on2 / on1 - 1);     // what the same build differs from itself
        }
        std::printf("%-9s %14.3g %14.3g %+15.1f%% %+15.1f%%\n", workload.c_str(), median(on_rates), median(off_rates),
                    100 * median(cost), 100 * median(noise));
        std::fflush(stdout);
    }
    return 0;
}
