// SPDX-License-Identifier: Apache-2.0
// shm-records-rate: records per second through each way of using the records layer, next to raw
// segments carrying the same records packed back to back, in the same run:
//   write/read             one copying call per record on each side (write(), read());
//   reserve/read           one zero-copy call per record (reserve()/commit(), read());
//   write_batch/read_run   a copying call per batch of up to 32 KiB of records, a view per run;
//   reserve_run/read_run   runs filled in place (reserve_run()/commit_run()), a view per run;
//   raw segments           acquire(), records packed in place, publish(); read(), release().
// Producer and consumer are separate processes pinned to two cores, default options (hybrid
// wait, counters and liveness on). The producer writes every word of every record and the
// consumer reads every word into a checksum that is verified (bench_common.hpp: the same
// vectorized fill and sum as shm-bench, so that the bench's own work stays a few ns per record).
// Each (size, api) runs --rounds times, interleaved; the median is printed.
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
#include "channels/records.hpp"

namespace {

using namespace shmchan;
using bench::Filler;
using bench::Summer;

void pin(int core) {
    if (std::thread::hardware_concurrency() >= 2) bench::pin_to(core);
}

struct Shared {
    std::atomic<std::uint64_t> checksum{0}, records{0};
};

// Runs `consume` in a child process and `produce` here; returns records/s (or exits on a
// checksum mismatch or a failed call).
template <class Produce, class Consume>
double run(std::uint64_t record_bytes, std::uint64_t count, Produce&& produce, Consume&& consume) {
    auto* shared = static_cast<Shared*>(
        ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (shared == MAP_FAILED) std::abort();
    new (shared) Shared{};
    const std::string name = "records-rate-" + std::to_string(::getpid());
    ChannelOptions options;
    options.framing = Framing::records;
    pid_t child = ::fork();
    if (child == 0) {
        pin(1);
        Summer sum(record_bytes);
        consume(name, options, sum);
        shared->checksum.store(sum.checksum);
        shared->records.store(sum.index);
        ::_exit(0);
    }
    pin(0);
    Filler fill(record_bytes);
    auto start = std::chrono::steady_clock::now();
    produce(name, options, fill, count);
    int status = 0;
    ::waitpid(child, &status, 0);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && shared->checksum.load() == fill.checksum &&
                    shared->records.load() == count;
    ::munmap(shared, sizeof(Shared));
    remove_channel(name, true);
    if (!ok) {
        std::fprintf(stderr, "shm-records-rate: a row failed (checksum or record count differs)\n");
        std::exit(1);
    }
    return static_cast<double>(count) / seconds;
}

[[noreturn]] void failed(const char* call, Status status) {
    std::fprintf(stderr, "shm-records-rate: %s returned status %d\n", call, static_cast<int>(status));
    std::_Exit(1);
}

void read_records(const std::string& name, const ChannelOptions& options, Summer& sum) {
    auto reader = RecordReader::attach(name, options);
    Record record;
    Status status;
    while ((status = reader.read(record)) == Status::ok) sum.feed(record.bytes.data(), record.bytes.size());
    if (status != Status::end_of_stream) failed("read", status);
    reader.remove_channel();
}

void read_runs(const std::string& name, const ChannelOptions& options, Summer& sum) {
    auto reader = RecordReader::attach(name, options);
    RecordRun run;
    Status status;
    while ((status = reader.read_run(run, 32768)) == Status::ok) sum.feed_pieces(run.bytes.data(), run.bytes.size());
    if (status != Status::end_of_stream) failed("read_run", status);
    reader.remove_channel();
}

double write_read(std::size_t size, std::uint64_t count) {
    return run(
        size, count,
        [&](const std::string& name, const ChannelOptions& options, Filler& fill, std::uint64_t n) {
            auto writer = RecordWriter::attach(name, options);
            alignas(64) std::byte record[4096];
            for (std::uint64_t i = 0; i < n; ++i) {
                fill.fill(record, size);
                if (Status s = writer.write(std::span<const std::byte>(record, size)); s != Status::ok) failed("write", s);
            }
            bench::expect_ok(writer.end_stream(), "end_stream");
        },
        read_records);
}

double reserve_read(std::size_t size, std::uint64_t count) {
    return run(
        size, count,
        [&](const std::string& name, const ChannelOptions& options, Filler& fill, std::uint64_t n) {
            auto writer = RecordWriter::attach(name, options);
            std::span<std::byte> room;
            for (std::uint64_t i = 0; i < n; ++i) {
                if (Status s = writer.reserve(size, room); s != Status::ok) failed("reserve", s);
                fill.fill(room.data(), size);
                if (Status s = writer.commit(size); s != Status::ok) failed("commit", s);
            }
            bench::expect_ok(writer.end_stream(), "end_stream");
        },
        read_records);
}

double batch_run(std::size_t size, std::uint64_t count) {
    const std::uint64_t batch = std::max<std::uint64_t>(1, 32768 / size);
    return run(
        size, count,
        [&](const std::string& name, const ChannelOptions& options, Filler& fill, std::uint64_t n) {
            auto writer = RecordWriter::attach(name, options);
            std::vector<std::byte> records(batch * size);
            for (std::uint64_t i = 0; i < n;) {
                const std::uint64_t k = std::min(batch, n - i);
                fill.fill_pieces(records.data(), k * size);
                std::size_t written = 0;
                if (Status s = writer.write_batch(std::span<const std::byte>(records.data(), k * size), size, written);
                    s != Status::ok) {
                    failed("write_batch", s);
                }
                i += k;
            }
            bench::expect_ok(writer.end_stream(), "end_stream");
        },
        read_runs);
}

double reserve_run_read_run(std::size_t size, std::uint64_t count) {
    return run(
        size, count,
        [&](const std::string& name, const ChannelOptions& options, Filler& fill, std::uint64_t n) {
            auto writer = RecordWriter::attach(name, options);
            std::span<std::byte> room;
            for (std::uint64_t i = 0; i < n;) {
                std::size_t k = 0;
                if (Status s = writer.reserve_run(size, static_cast<std::size_t>(n - i), room, k); s != Status::ok) {
                    failed("reserve_run", s);
                }
                fill.fill_pieces(room.data(), k * size);
                if (Status s = writer.commit_run(k); s != Status::ok) failed("commit_run", s);
                i += k;
            }
            bench::expect_ok(writer.end_stream(), "end_stream");
        },
        read_runs);
}

double raw_segments(std::size_t size, std::uint64_t count) {
    return run(
        size, count,
        [&](const std::string& name, const ChannelOptions&, Filler& fill, std::uint64_t n) {
            auto producer = Producer::attach(name, ChannelOptions{});
            const std::size_t per_segment = producer.payload_capacity() / size;
            WritableSegment segment;
            for (std::uint64_t i = 0; i < n;) {
                if (Status s = producer.acquire(segment); s != Status::ok) failed("acquire", s);
                const std::uint64_t k = std::min<std::uint64_t>(per_segment, n - i);
                fill.fill_pieces(segment.payload.data(), k * size);
                i += k;
                if (Status s = producer.publish(static_cast<std::uint32_t>(k * size)); s != Status::ok) failed("publish", s);
            }
            bench::expect_ok(producer.end_stream(), "end_stream");
        },
        [&](const std::string& name, const ChannelOptions&, Summer& sum) {
            auto consumer = Consumer::attach(name, ChannelOptions{});
            ReadableSegment segment;
            Status status;
            while ((status = consumer.read(segment)) == Status::ok) {
                sum.feed_pieces(segment.payload.data(), segment.payload.size());
                bench::expect_ok(consumer.release(), "release");
            }
            if (status != Status::end_of_stream) failed("read", status);
            consumer.remove_channel();
        });
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-records-rate: each way of using the records layer next to raw segments, records per second"};
    int rounds = 5;
    double seconds = 0.3;
    app.add_option("--rounds", rounds, "interleaved rounds per row (median)")->check(CLI::Range(1, 99));
    app.add_option("--seconds", seconds, "about how long a row's run lasts")->check(CLI::Range(0.01, 60.0));
    CLI11_PARSE(app, argc, argv);
    struct Api {
        const char* name;
        double (*measure)(std::size_t, std::uint64_t);
    };
    const Api apis[] = {{"write/read", write_read},
                        {"reserve/read", reserve_read},
                        {"write_batch/read_run", batch_run},
                        {"reserve_run/read_run", reserve_run_read_run},
                        {"raw segments", raw_segments}};
    std::printf("records per second (median of %d interleaved rounds), and the ratio to raw segments\n", rounds);
    std::printf("%6s", "bytes");
    for (const Api& api : apis) std::printf(" %22s", api.name);
    std::printf("\n");
    for (std::size_t size : {8, 64, 4096}) {
        // Size the runs from a short measurement of raw segments.
        const double probe = raw_segments(size, 200'000);
        const auto count = static_cast<std::uint64_t>(std::max(100'000.0, probe * seconds));
        std::vector<std::vector<double>> rates(std::size(apis));
        for (int round = 0; round < rounds; ++round) {
            for (std::size_t a = 0; a < std::size(apis); ++a) rates[a].push_back(apis[a].measure(size, count));
        }
        std::vector<double> median;
        for (auto& r : rates) {
            std::sort(r.begin(), r.end());
            median.push_back(r[r.size() / 2]);
        }
        std::printf("%6zu", size);
        for (double m : median) std::printf(" %20.1f M", m / 1e6);
        std::printf("\n%6s", "");
        for (double m : median) std::printf(" %21.2fx", m / median.back());
        std::printf("\n");
        std::fflush(stdout);
    }
    return 0;
}
