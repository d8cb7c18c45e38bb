// SPDX-License-Identifier: Apache-2.0
// shm-demo: streams N GiB from a producer process to a consumer process through a shmchan
// channel, then does the same work through a plain pipe, and prints both throughputs side by side.
//
//   shm-demo [--gib N] [--no-pipe] [--no-pin]
//
// Both transports do the same work. The producer writes every byte of the stream (a cheap pattern
// of 64-bit words) and folds what it wrote into a checksum; the consumer reads every byte into
// the same checksum; the parent compares the two after both children exited.
//   - shmchan: the raw segment API with default options (16 x 32 KiB, hybrid wait): acquire a
//     segment, fill its whole payload, publish; read, checksum, release; end_stream() at the end.
//   - pipe: the producer fills a 64 KiB buffer and write(2)s it; the consumer read(2)s full
//     64 KiB chunks and checksums them.
// Producer and consumer are separate processes (fork without exec: each attaches after the fork,
// so no lock of the channel is inherited), pinned to the first two CPUs the process may use when
// there are at least two. A third process, the parent, only watches: once a second it prints the
// bytes moved, the rate, the ring's fill and the wake syscalls (read from the channel's header
// with shmchan::inspect, which takes no lock and wakes nobody).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <shmchan/shmchan.hpp>

namespace {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC: one clock for all processes

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr std::size_t kPipeChunk = 64 * 1024;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

// --- The work: a pattern of 64-bit words, and a checksum of them ------------------------------

// Writes the words base, base + 1, ... into p[0, n) (the last word cut to what fits) and returns
// the sum of what was written. The loop vectorizes: the fill costs about a memset.
std::uint64_t fill_block(std::byte* p, std::size_t n, std::uint64_t base) {
    const std::size_t words = n / 8;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < words; ++i) {
        const std::uint64_t w = base + i;
        std::memcpy(p + 8 * i, &w, 8);
        sum += w;
    }
    if (const std::size_t tail = n % 8) {
        const std::uint64_t w = base + words;
        std::memcpy(p + 8 * words, &w, tail);
        sum += w & ((std::uint64_t{1} << (8 * tail)) - 1);
    }
    return sum;
}

// Reads every byte of p[0, n) as little-endian words (the last one zero-extended) into a sum.
std::uint64_t sum_block(const std::byte* p, std::size_t n) {
    const std::size_t words = n / 8;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < words; ++i) {
        std::uint64_t w;
        std::memcpy(&w, p + 8 * i, 8);
        sum += w;
    }
    if (const std::size_t tail = n % 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, p + 8 * words, tail);
        sum += w;
    }
    return sum;
}

// The pattern's first word for block k (a segment or a pipe chunk).
std::uint64_t block_base(std::uint64_t k) { return k * 0x9E3779B97F4A7C15ull; }

// Folds block k's sum into the running checksum: order-sensitive, so a lost, repeated or
// reordered block changes the result.
std::uint64_t fold(std::uint64_t checksum, std::uint64_t k, std::uint64_t block_sum) {
    checksum ^= block_sum + k * 0xC2B2AE3D27D4EB4Full;
    checksum *= 0x100000001B3ull;
    return (checksum << 29) | (checksum >> 35);
}

// --- What the processes share: one MAP_SHARED | MAP_ANONYMOUS block per run ---------------------

struct alignas(64) RunBlock {
    // Start barrier: each child increments `ready` once it is set up, then waits for `go`.
    std::atomic<int> ready{0};
    std::atomic<int> go{0};
    std::atomic<std::int64_t> go_ns{0};
    // Progress, one writer each, for the live line (relaxed: figures only).
    alignas(64) std::atomic<std::uint64_t> produced{0};
    alignas(64) std::atomic<std::uint64_t> consumed{0};
    // Results, written by each child before it exits; the parent reads them after waitpid.
    alignas(64) std::uint64_t producer_bytes = 0;
    std::uint64_t producer_checksum = 0;
    std::int64_t producer_end_ns = 0;
    std::uint64_t consumer_bytes = 0;
    std::uint64_t consumer_checksum = 0;
    std::int64_t consumer_end_ns = 0;
    // The channel's counters, as the consumer saw them at the end of the stream.
    bool have_counters = false;
    std::uint64_t producer_wakes = 0, consumer_wakes = 0, producer_parks = 0, consumer_parks = 0;
    std::uint64_t backpressured_ns = 0, idle_ns = 0;
    char producer_error[256] = {};
    char consumer_error[256] = {};
};
static_assert(std::atomic<int>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

RunBlock* map_run_block() {
    void* p = ::mmap(nullptr, sizeof(RunBlock), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
    if (p == MAP_FAILED) {
        std::perror("shm-demo: mmap");
        std::exit(1);
    }
    return new (p) RunBlock{};
}

void set_error(char (&buffer)[256], const std::string& message) {
    std::snprintf(buffer, sizeof buffer, "%s", message.c_str());
}

// Child side of the barrier: announce readiness, then wait for the parent's go.
void wait_for_go(RunBlock& block) {
    block.ready.fetch_add(1, std::memory_order_acq_rel);
    while (block.go.load(std::memory_order_acquire) == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
}

// --- Pinning ----------------------------------------------------------------------------------

// The first two CPUs this process may run on, when there are at least two.
std::optional<std::pair<int, int>> pick_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return std::nullopt;
    std::vector<int> cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
        if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
    if (cpus.size() < 2) return std::nullopt;
    return std::make_pair(cpus[0], cpus[1]);
}

void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) {
        std::fprintf(stderr, "shm-demo: sched_setaffinity(%d): %s (running unpinned)\n", cpu,
                     std::strerror(errno));
    }
}

// --- The shmchan run --------------------------------------------------------------------------

int shmchan_producer(const std::string& name, std::uint64_t total, RunBlock& block) {
    auto producer = shmchan::Producer::attach(name);
    wait_for_go(block);
    shmchan::WritableSegment out;
    std::uint64_t sent = 0, checksum = 0, k = 0;
    while (sent < total) {
        const shmchan::Status status = producer.acquire(out);
        if (status != shmchan::Status::ok) {
            set_error(block.producer_error, std::string("acquire: ") + shmchan::to_string(status) +
                                                " " + producer.last_error());
            return 1;
        }
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(out.payload.size(), total - sent));
        checksum = fold(checksum, k, fill_block(out.payload.data(), n, block_base(k)));
        const shmchan::Status published = producer.publish(static_cast<std::uint32_t>(n));
        if (published != shmchan::Status::ok) {
            set_error(block.producer_error, std::string("publish: ") +
                                                shmchan::to_string(published) + " " +
                                                producer.last_error());
            return 1;
        }
        sent += n;
        ++k;
        block.produced.store(sent, std::memory_order_relaxed);
    }
    block.producer_bytes = sent;
    block.producer_checksum = checksum;
    const shmchan::Status ended = producer.end_stream();
    block.producer_end_ns = now_ns();
    if (ended != shmchan::Status::ok) {
        set_error(block.producer_error,
                  std::string("end_stream: ") + shmchan::to_string(ended) + " " + producer.last_error());
        return 1;
    }
    return 0;
}

int shmchan_consumer(const std::string& name, RunBlock& block) {
    auto consumer = shmchan::Consumer::attach(name);
    wait_for_go(block);
    shmchan::ReadableSegment in;
    std::uint64_t received = 0, checksum = 0, k = 0;
    shmchan::Status status;
    while ((status = consumer.read(in)) == shmchan::Status::ok) {
        if (in.sequence != k) {
            set_error(block.consumer_error, "segment " + std::to_string(k) + " arrived with sequence " +
                                                std::to_string(in.sequence));
            return 1;
        }
        checksum = fold(checksum, k, sum_block(in.payload.data(), in.payload.size()));
        received += in.payload.size();
        ++k;
        block.consumed.store(received, std::memory_order_relaxed);
        const shmchan::Status released = consumer.release();
        if (released != shmchan::Status::ok) {
            set_error(block.consumer_error, std::string("release: ") + shmchan::to_string(released) +
                                                " " + consumer.last_error());
            return 1;
        }
    }
    block.consumer_end_ns = now_ns();
    block.consumer_bytes = received;
    block.consumer_checksum = checksum;
    if (status != shmchan::Status::end_of_stream) {
        set_error(block.consumer_error,
                  std::string("read: ") + shmchan::to_string(status) + " " + consumer.last_error());
        return 1;
    }
    const shmchan::ChannelInfo info = consumer.info();
    block.producer_wakes = info.producer_counters.wake_syscalls;
    block.consumer_wakes = info.consumer_counters.wake_syscalls;
    block.producer_parks = info.producer_counters.parks;
    block.consumer_parks = info.consumer_counters.parks;
    block.backpressured_ns = info.producer_counters.waited_ns;
    block.idle_ns = info.consumer_counters.waited_ns;
    block.have_counters = true;
    consumer.remove_channel();
    return 0;
}

// --- The pipe run -----------------------------------------------------------------------------

int pipe_producer(int fd, std::uint64_t total, RunBlock& block) {
    std::vector<std::byte> buffer(kPipeChunk);
    wait_for_go(block);
    std::uint64_t sent = 0, checksum = 0, k = 0;
    while (sent < total) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kPipeChunk, total - sent));
        checksum = fold(checksum, k, fill_block(buffer.data(), n, block_base(k)));
        for (std::size_t done = 0; done < n;) {
            const ssize_t w = ::write(fd, buffer.data() + done, n - done);
            if (w < 0) {
                if (errno == EINTR) continue;
                set_error(block.producer_error, std::string("write: ") + std::strerror(errno));
                return 1;
            }
            done += static_cast<std::size_t>(w);
        }
        sent += n;
        ++k;
        block.produced.store(sent, std::memory_order_relaxed);
    }
    block.producer_bytes = sent;
    block.producer_checksum = checksum;
    ::close(fd);
    block.producer_end_ns = now_ns();
    return 0;
}

int pipe_consumer(int fd, RunBlock& block) {
    std::vector<std::byte> buffer(kPipeChunk);
    wait_for_go(block);
    std::uint64_t received = 0, checksum = 0, k = 0;
    for (;;) {
        // Gather one whole chunk (the producer's unit), then checksum it.
        std::size_t have = 0;
        while (have < kPipeChunk) {
            const ssize_t r = ::read(fd, buffer.data() + have, kPipeChunk - have);
            if (r < 0) {
                if (errno == EINTR) continue;
                set_error(block.consumer_error, std::string("read: ") + std::strerror(errno));
                return 1;
            }
            if (r == 0) break;
            have += static_cast<std::size_t>(r);
        }
        if (have == 0) break;
        checksum = fold(checksum, k, sum_block(buffer.data(), have));
        received += have;
        ++k;
        block.consumed.store(received, std::memory_order_relaxed);
        if (have < kPipeChunk) break;  // end of file inside a chunk: the last one
    }
    block.consumer_end_ns = now_ns();
    block.consumer_bytes = received;
    block.consumer_checksum = checksum;
    return 0;
}

// --- The parent: fork, barrier, live line, results ---------------------------------------------

volatile sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

struct RunResult {
    bool ok = false;
    double seconds = 0;
    std::uint64_t bytes = 0;
    double gib_per_s() const { return seconds > 0 ? static_cast<double>(bytes) / kGiB / seconds : 0; }
};

// Runs `body` in a child process pinned to `cpu` (if any); the child exits with its return code.
pid_t spawn(std::optional<int> cpu, char (&error)[256], const std::function<int()>& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        std::perror("shm-demo: fork");
        std::exit(1);
    }
    if (pid > 0) return pid;
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    if (cpu) pin_to(*cpu);
    int code = 1;
    try {
        code = body();
    } catch (const std::exception& e) {
        set_error(error, e.what());
    } catch (...) {
        set_error(error, "unknown exception");
    }
    std::fflush(nullptr);
    ::_exit(code);
}

std::string live_extra_for(const std::optional<std::string>& channel) {
    if (!channel) return {};
    try {
        const shmchan::ChannelInfo info = shmchan::inspect(*channel);
        const std::uint64_t fill = info.published - std::min(info.published, info.released);
        char text[160];
        std::snprintf(text, sizeof text, "  fill %2llu/%u  wake syscalls %llu (producer %llu, consumer %llu)",
                      static_cast<unsigned long long>(fill), info.segment_count,
                      static_cast<unsigned long long>(info.producer_counters.wake_syscalls +
                                                      info.consumer_counters.wake_syscalls),
                      static_cast<unsigned long long>(info.producer_counters.wake_syscalls),
                      static_cast<unsigned long long>(info.consumer_counters.wake_syscalls));
        return text;
    } catch (const std::exception&) {
        return "  (channel header not readable now)";
    }
}

// Waits for both children, runs the start barrier and prints the live line once a second.
// `channel` names the channel to inspect for the live line (none for the pipe).
RunResult supervise(const char* label, RunBlock& block, pid_t producer, pid_t consumer,
                    const std::optional<std::string>& channel) {
    int producer_status = -1, consumer_status = -1;
    bool producer_done = false, consumer_done = false, killed = false;
    const std::int64_t ready_deadline = now_ns() + 10'000'000'000;
    std::int64_t next_line = 0;
    std::uint64_t last_bytes = 0;
    std::int64_t last_ns = 0;

    auto kill_both = [&](const char* why) {
        if (killed) return;
        killed = true;
        std::fprintf(stderr, "shm-demo: %s: %s; stopping\n", label, why);
        if (!producer_done) ::kill(producer, SIGKILL);
        if (!consumer_done) ::kill(consumer, SIGKILL);
    };

    while (!(producer_done && consumer_done)) {
        int status = 0;
        if (!producer_done && ::waitpid(producer, &status, WNOHANG) == producer) {
            producer_done = true;
            producer_status = status;
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) kill_both("the producer failed");
        }
        if (!consumer_done && ::waitpid(consumer, &status, WNOHANG) == consumer) {
            consumer_done = true;
            consumer_status = status;
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) kill_both("the consumer failed");
        }
        if (g_interrupted) kill_both("interrupted");

        const std::int64_t now = now_ns();
        if (block.go.load(std::memory_order_relaxed) == 0) {
            if (block.ready.load(std::memory_order_acquire) == 2) {
                block.go_ns.store(now, std::memory_order_relaxed);
                block.go.store(1, std::memory_order_release);
                next_line = now + 1'000'000'000;
                last_ns = now;
            } else if (now > ready_deadline) {
                kill_both("the children did not get ready within 10 s");
            }
        } else if (now >= next_line && !consumer_done) {
            const std::uint64_t bytes = block.consumed.load(std::memory_order_relaxed);
            const double rate = static_cast<double>(bytes - last_bytes) / kGiB /
                                (static_cast<double>(now - last_ns) / 1e9);
            std::printf("  %-8s %7.2f GiB moved  %6.2f GiB/s%s\n", label,
                        static_cast<double>(bytes) / kGiB, rate, live_extra_for(channel).c_str());
            std::fflush(stdout);
            last_bytes = bytes;
            last_ns = now;
            next_line += 1'000'000'000;
        }
        if (!(producer_done && consumer_done)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    RunResult result;
    auto report = [&](const char* side, int status, const char* error) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
        if (WIFSIGNALED(status)) {
            std::fprintf(stderr, "shm-demo: %s %s killed by signal %d%s%s\n", label, side,
                         WTERMSIG(status), *error ? ": " : "", error);
        } else {
            std::fprintf(stderr, "shm-demo: %s %s failed%s%s\n", label, side, *error ? ": " : "",
                         error);
        }
        return false;
    };
    const bool producer_ok = report("producer", producer_status, block.producer_error);
    const bool consumer_ok = report("consumer", consumer_status, block.consumer_error);
    if (!producer_ok || !consumer_ok) return result;

    if (block.consumer_bytes != block.producer_bytes ||
        block.consumer_checksum != block.producer_checksum) {
        std::fprintf(stderr,
                     "shm-demo: %s: CHECKSUM MISMATCH: producer sent %llu bytes (checksum %016llx), "
                     "consumer got %llu bytes (checksum %016llx)\n",
                     label, static_cast<unsigned long long>(block.producer_bytes),
                     static_cast<unsigned long long>(block.producer_checksum),
                     static_cast<unsigned long long>(block.consumer_bytes),
                     static_cast<unsigned long long>(block.consumer_checksum));
        return result;
    }
    result.ok = true;
    result.bytes = block.consumer_bytes;
    result.seconds = static_cast<double>(block.consumer_end_ns - block.go_ns.load()) / 1e9;
    return result;
}

struct ChannelFigures {
    bool valid = false;
    std::uint64_t producer_wakes = 0, consumer_wakes = 0, producer_parks = 0, consumer_parks = 0;
    double backpressured_s = 0, idle_s = 0;
    std::uint64_t segments = 0;
};

RunResult run_shmchan(std::uint64_t total, std::optional<std::pair<int, int>> cpus,
                      ChannelFigures& figures) {
    const std::string name = "demo-" + std::to_string(::getpid());
    try {
        shmchan::remove_channel(name, true);  // a leftover of a crashed run with a reused pid
    } catch (const std::exception&) {
    }
    RunBlock* block = map_run_block();
    const pid_t consumer = spawn(cpus ? std::optional<int>(cpus->second) : std::nullopt,
                                 block->consumer_error, [&] { return shmchan_consumer(name, *block); });
    const pid_t producer =
        spawn(cpus ? std::optional<int>(cpus->first) : std::nullopt, block->producer_error,
              [&] { return shmchan_producer(name, total, *block); });
    RunResult result = supervise("shmchan", *block, producer, consumer, name);
    if (block->have_counters) {
        figures.valid = true;
        figures.producer_wakes = block->producer_wakes;
        figures.consumer_wakes = block->consumer_wakes;
        figures.producer_parks = block->producer_parks;
        figures.consumer_parks = block->consumer_parks;
        figures.backpressured_s = static_cast<double>(block->backpressured_ns) / 1e9;
        figures.idle_s = static_cast<double>(block->idle_ns) / 1e9;
    }
    try {
        shmchan::remove_channel(name, true);  // normally the consumer removed it already
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shm-demo: removing channel %s: %s\n", name.c_str(), e.what());
    }
    ::munmap(block, sizeof(RunBlock));
    return result;
}

RunResult run_pipe(std::uint64_t total, std::optional<std::pair<int, int>> cpus) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        std::perror("shm-demo: pipe2");
        std::exit(1);
    }
    RunBlock* block = map_run_block();
    const pid_t consumer = spawn(cpus ? std::optional<int>(cpus->second) : std::nullopt,
                                 block->consumer_error, [&] {
                                     ::close(fds[1]);
                                     return pipe_consumer(fds[0], *block);
                                 });
    const pid_t producer = spawn(cpus ? std::optional<int>(cpus->first) : std::nullopt,
                                 block->producer_error, [&] {
                                     ::close(fds[0]);
                                     return pipe_producer(fds[1], total, *block);
                                 });
    ::close(fds[0]);
    ::close(fds[1]);
    RunResult result = supervise("pipe", *block, producer, consumer, std::nullopt);
    ::munmap(block, sizeof(RunBlock));
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-demo: stream GiB between two processes through a shmchan channel and a pipe"};
    double gib = 4.0;
    bool no_pipe = false, no_pin = false;
    app.add_option("--gib", gib, "GiB to stream through each transport")
        ->capture_default_str()
        ->check(CLI::Range(1.0 / 1024, 1024.0));
    app.add_flag("--no-pipe", no_pipe, "skip the pipe run");
    app.add_flag("--no-pin", no_pin, "do not pin producer and consumer to CPUs");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    const auto total = static_cast<std::uint64_t>(std::llround(gib * kGiB));
    const std::optional<std::pair<int, int>> cpus = no_pin ? std::nullopt : pick_cpus();

    struct sigaction action{};
    action.sa_handler = on_signal;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);

    std::printf("shm-demo: %.2f GiB from a producer process to a consumer process", gib);
    if (cpus) {
        std::printf(" (pinned to CPUs %d and %d)\n", cpus->first, cpus->second);
    } else {
        std::printf(" (not pinned)\n");
    }
    std::printf("  shmchan: channel demo-%d in %s, default options (%u x %u KiB segments, hybrid wait)\n",
                static_cast<int>(::getpid()),
                std::getenv("SHMCHAN_DIR") ? std::getenv("SHMCHAN_DIR") : "/dev/shm",
                shmchan::layout::kDefaultSegmentCount, shmchan::layout::kDefaultSegmentSize / 1024);
    std::printf("  pipe:    write(2) of 64 KiB chunks, read(2) into 64 KiB\n");
    std::printf("  both:    the producer writes every byte, the consumer checksums every byte\n\n");
    std::fflush(stdout);

    ChannelFigures figures;
    const RunResult shm = run_shmchan(total, cpus, figures);
    if (!shm.ok || g_interrupted) return 1;
    std::printf("  shmchan  done: %.2f GiB in %.3f s, checksum verified\n",
                static_cast<double>(shm.bytes) / kGiB, shm.seconds);
    std::fflush(stdout);

    RunResult pipe;
    if (!no_pipe) {
        pipe = run_pipe(total, cpus);
        if (!pipe.ok || g_interrupted) return 1;
        std::printf("  pipe     done: %.2f GiB in %.3f s, checksum verified\n",
                    static_cast<double>(pipe.bytes) / kGiB, pipe.seconds);
    }

    std::printf("\n  %-10s %8s %10s %8s\n", "transport", "GiB", "seconds", "GiB/s");
    std::printf("  %-10s %8.2f %10.3f %8.2f\n", "shmchan", static_cast<double>(shm.bytes) / kGiB,
                shm.seconds, shm.gib_per_s());
    if (!no_pipe) {
        std::printf("  %-10s %8.2f %10.3f %8.2f\n", "pipe", static_cast<double>(pipe.bytes) / kGiB,
                    pipe.seconds, pipe.gib_per_s());
        std::printf("  shmchan / pipe: %.1f x\n", pipe.gib_per_s() > 0 ? shm.gib_per_s() / pipe.gib_per_s() : 0.0);
    }
    if (figures.valid) {
        std::printf("\n  shmchan wake syscalls: %llu by the producer (consumer parked %llu times), "
                    "%llu by the consumer (producer parked %llu times)\n",
                    static_cast<unsigned long long>(figures.producer_wakes),
                    static_cast<unsigned long long>(figures.consumer_parks),
                    static_cast<unsigned long long>(figures.consumer_wakes),
                    static_cast<unsigned long long>(figures.producer_parks));
        std::printf("  producer back-pressured %.3f s, consumer idle %.3f s\n", figures.backpressured_s,
                    figures.idle_s);
    }
    return 0;
}
