// shm-records-rate: records per second through the records layer (copying write, in-place read;
// one call per record, and write_batch/read_batch) next to raw segment streaming of the same
// records packed back to back, in the same run.
// Producer and consumer are separate processes pinned to two cores, default options; the
// producer writes every byte, the consumer reads every byte into a checksum that is verified.
// Each (size, api) runs --rounds times interleaved; the median is printed.
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

#include "channels/records.hpp"

namespace {

using namespace shmchan;

void pin(int core) {
    if (std::thread::hardware_concurrency() < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    sched_setaffinity(0, sizeof set, &set);
}

std::uint64_t fold(std::uint64_t sum, const std::byte* data, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) sum = sum * 31 + static_cast<std::uint8_t>(data[i]);
    return sum;
}

void fill(std::byte* data, std::size_t size, std::uint64_t index) {
    for (std::size_t i = 0; i < size; ++i) data[i] = std::byte(static_cast<std::uint8_t>(index + i));
}

// Runs consumer `consume` in a child process and producer `produce` here; returns records/s.
template <class Produce, class Consume>
double run(std::uint64_t count, Produce&& produce, Consume&& consume) {
    auto* checksum = static_cast<std::atomic<std::uint64_t>*>(
        ::mmap(nullptr, sizeof(std::atomic<std::uint64_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (checksum) std::atomic<std::uint64_t>(0);
    const std::string name = "records-rate-" + std::to_string(::getpid());
    pid_t child = ::fork();
    if (child == 0) {
        pin(1);
        checksum->store(consume(name));
        ::_exit(0);
    }
    pin(0);
    auto start = std::chrono::steady_clock::now();
    std::uint64_t expected = produce(name, count);
    ::waitpid(child, nullptr, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    bool ok = checksum->load() == expected;
    ::munmap(checksum, sizeof(std::atomic<std::uint64_t>));
    remove_channel(name, true);
    if (!ok) {
        std::fprintf(stderr, "checksum mismatch\n");
        std::exit(1);
    }
    return static_cast<double>(count) / seconds;
}

double records_layer(std::size_t size, std::uint64_t count) {
    ChannelOptions options;
    options.framing = Framing::records;
    return run(
        count,
        [&](const std::string& name, std::uint64_t n) {
            auto writer = RecordWriter::attach(name, options);
            std::vector<std::byte> record(size);
            std::uint64_t sum = 0;
            for (std::uint64_t i = 0; i < n; ++i) {
                fill(record.data(), size, i);
                sum = fold(sum, record.data(), size);
                if (writer.write(std::span<const std::byte>(record)) != Status::ok) std::abort();
            }
            writer.end_stream();
            return sum;
        },
        [&](const std::string& name) {
            auto reader = RecordReader::attach(name, options);
            Record record;
            std::uint64_t sum = 0;
            while (reader.read(record) == Status::ok) sum = fold(sum, record.bytes.data(), record.bytes.size());
            reader.remove_channel();
            return sum;
        });
}

// The same records through write_batch (up to 32 KiB of records per call, filled in the
// producer's buffer) and read_batch.
double records_batched(std::size_t size, std::uint64_t count) {
    ChannelOptions options;
    options.framing = Framing::records;
    const std::uint64_t kBatch = std::max<std::uint64_t>(1, 32768 / size);
    return run(
        count,
        [&](const std::string& name, std::uint64_t n) {
            auto writer = RecordWriter::attach(name, options);
            std::vector<std::byte> records(kBatch * size);
            std::uint64_t sum = 0;
            for (std::uint64_t i = 0; i < n;) {
                const std::uint64_t k = std::min(kBatch, n - i);
                for (std::uint64_t j = 0; j < k; ++j) {
                    std::byte* at = records.data() + j * size;
                    fill(at, size, i + j);
                    sum = fold(sum, at, size);
                }
                std::size_t written = 0;
                if (writer.write_batch(std::span<const std::byte>(records.data(), k * size), size, written) != Status::ok) {
                    std::abort();
                }
                i += k;
            }
            writer.end_stream();
            return sum;
        },
        [&](const std::string& name) {
            auto reader = RecordReader::attach(name, options);
            std::uint64_t sum = 0;
            std::size_t delivered = 0;
            auto take = [&](const Record& record) { sum = fold(sum, record.bytes.data(), record.bytes.size()); };
            while (reader.read_batch(take, kBatch, delivered) == Status::ok) {
            }
            reader.remove_channel();
            return sum;
        });
}

double raw_segments(std::size_t size, std::uint64_t count) {
    ChannelOptions options;
    return run(
        count,
        [&](const std::string& name, std::uint64_t n) {
            auto producer = Producer::attach(name, options);
            const std::size_t per_segment = producer.payload_capacity() / size;
            WritableSegment segment;
            std::uint64_t sum = 0;
            for (std::uint64_t i = 0; i < n;) {
                if (producer.acquire(segment) != Status::ok) std::abort();
                std::size_t k = 0;
                for (; k < per_segment && i < n; ++k, ++i) {
                    std::byte* at = segment.payload.data() + k * size;
                    fill(at, size, i);
                    sum = fold(sum, at, size);
                }
                producer.publish(static_cast<std::uint32_t>(k * size));
            }
            producer.end_stream();
            return sum;
        },
        [&](const std::string& name) {
            auto consumer = Consumer::attach(name, options);
            ReadableSegment segment;
            std::uint64_t sum = 0;
            while (consumer.read(segment) == Status::ok) {
                for (std::size_t at = 0; at + size <= segment.payload.size(); at += size) {
                    sum = fold(sum, segment.payload.data() + at, size);
                }
            }
            consumer.remove_channel();
            return sum;
        });
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-records-rate: the records layer next to raw segments, records per second"};
    int rounds = 5;
    double seconds = 0.5;
    app.add_option("--rounds", rounds, "interleaved rounds per row (median)")->check(CLI::Range(1, 99));
    app.add_option("--seconds", seconds, "about how long a run lasts");
    CLI11_PARSE(app, argc, argv);
    std::printf("%8s %22s %22s %22s %12s %12s\n", "bytes", "records layer (rec/s)", "batched (rec/s)",
                "raw segments (rec/s)", "records/raw", "batched/raw");
    for (std::size_t size : {16, 64, 4096}) {
        // Size the runs from a first short measurement of raw segments.
        double probe = raw_segments(size, 200'000);
        auto count = static_cast<std::uint64_t>(std::max(100'000.0, probe * seconds));
        std::vector<double> layer, batched, raw;
        for (int round = 0; round < rounds; ++round) {
            layer.push_back(records_layer(size, count));
            batched.push_back(records_batched(size, count));
            raw.push_back(raw_segments(size, count));
        }
        std::sort(layer.begin(), layer.end());
        std::sort(batched.begin(), batched.end());
        std::sort(raw.begin(), raw.end());
        double l = layer[layer.size() / 2], b = batched[batched.size() / 2], r = raw[raw.size() / 2];
        std::printf("%8zu %20.2f M %20.2f M %20.2f M %11.2fx %11.2fx\n", size, l / 1e6, b / 1e6, r / 1e6, l / r, b / r);
        std::fflush(stdout);
    }
    return 0;
}
