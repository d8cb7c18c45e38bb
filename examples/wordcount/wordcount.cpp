// SPDX-License-Identifier: Apache-2.0
// shm-wordcount: a keyed word count over separate processes, checkpointed with aligned barriers,
// that survives a killed mapper by restarting from the last completed checkpoint.
//
//   source --round-robin--> mapper 0 --by key--+
//          +------------->  mapper 1 --by key--+--> gate -> reducer
//
// Every second the source writes checkpoint barrier n into both of its channels and saves its
// offset (state of checkpoint n). Mappers forward barriers in order with their output. The
// reducer's input gate aligns barrier n across both mappers, so when it delivers it the counts
// hold exactly the words of the lines before the source's offset n: the reducer saves them and
// marks checkpoint n complete. The coordinator (this process) kills mapper 1 once (--kill-after),
// sees the job fail, kills what is left, and restarts every process from the last completed
// checkpoint (Flink's global failover): the source replays from its saved offset, the reducer
// starts from its saved counts. At the end the counts are compared with a direct count.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <shmchan/shmchan.hpp>

namespace {

using namespace shmchan;
using Counts = std::unordered_map<std::string, std::uint64_t>;

// CLOCK_MONOTONIC (libstdc++'s steady_clock), the clock the channels' counters use.
std::uint64_t monotonic_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

// Where channel and gate files live: $SHMCHAN_DIR, or /dev/shm.
std::string channel_directory() {
    const char* dir = std::getenv("SHMCHAN_DIR");
    return dir && *dir ? dir : "/dev/shm";
}

struct Config {
    std::uint64_t lines = 6'000'000;
    double kill_after = 2.5;
    std::string state_dir;
    std::string prefix;
};

std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

// Line k of the corpus: 4 to 11 words from a skewed vocabulary of 5000.
std::string make_line(std::uint64_t k) {
    std::uint64_t r = mix(k + 1);
    int words = 4 + static_cast<int>(r % 8);
    std::string line;
    for (int w = 0; w < words; ++w) {
        std::uint64_t x = mix(r + static_cast<std::uint64_t>(w) * 7919);
        std::uint64_t word = (x % 5000) * (x % 5000) / 5000;  // skewed toward small numbers
        if (!line.empty()) line += ' ';
        line += "w" + std::to_string(word);
    }
    return line;
}

std::string channel(const Config& c, int attempt, const std::string& what) {
    return c.prefix + "-" + std::to_string(attempt) + "-" + what;
}

std::string state_file(const Config& c, const std::string& what, std::uint64_t checkpoint) {
    return c.state_dir + "/" + what + "-" + std::to_string(checkpoint);
}

// Writes a file atomically (temp + rename), so a half-written snapshot never counts.
void write_atomically(const std::string& path, const std::string& content) {
    std::string temp = path + ".tmp";
    {
        std::ofstream out(temp, std::ios::binary | std::ios::trunc);
        out << content;
    }
    std::filesystem::rename(temp, path);
}

std::uint64_t last_completed(const Config& c) {
    std::ifstream in(c.state_dir + "/completed");
    std::uint64_t n = 0;
    in >> n;
    return n;
}

int run_source(const Config& c, int attempt, std::uint64_t restored) {
    std::uint64_t offset = 0;
    if (restored) std::ifstream(state_file(c, "source", restored)) >> offset;
    ChannelOptions options;
    options.framing = Framing::records;
    auto partition = OutputPartition::attach({channel(c, attempt, "m0"), channel(c, attempt, "m1")},
                                             PartitionMode::round_robin, options);
    std::uint64_t checkpoint = restored;
    std::uint64_t next_barrier = monotonic_ns() + 1'000'000'000;
    for (std::uint64_t k = offset; k < c.lines; ++k) {
        std::string line = make_line(k);
        if (partition.write(std::as_bytes(std::span(line.data(), line.size()))) != Status::ok) return 1;
        if ((k & 1023) == 0 && monotonic_ns() >= next_barrier) {
            ++checkpoint;
            write_atomically(state_file(c, "source", checkpoint), std::to_string(k + 1));
            if (partition.write_barrier(checkpoint) != Status::ok) return 1;
            next_barrier += 1'000'000'000;
        }
    }
    return partition.end_stream() == Status::ok ? 0 : 1;
}

int run_mapper(const Config& c, int attempt, int index) {
    ChannelOptions options;
    options.framing = Framing::records;
    auto input = RecordReader::attach(channel(c, attempt, "m" + std::to_string(index)), options);
    auto output = OutputPartition::attach({channel(c, attempt, "r" + std::to_string(index))}, PartitionMode::by_key, options);
    Record record;
    Status status;
    while ((status = input.read(record)) == Status::ok) {
        if (record.kind == RecordKind::barrier) {
            if (output.write_barrier(record.checkpoint_id) != Status::ok) return 1;  // forwarded in order
            continue;
        }
        std::string_view text = record.text();
        while (!text.empty()) {
            std::size_t space = text.find(' ');
            std::string_view word = text.substr(0, space);
            if (output.write_keyed(word, std::as_bytes(std::span(word.data(), word.size()))) != Status::ok) return 1;
            if (space == std::string_view::npos) break;
            text.remove_prefix(space + 1);
        }
    }
    if (status != Status::end_of_stream) return 2;
    input.remove_channel();
    return output.end_stream() == Status::ok ? 0 : 1;
}

int run_reducer(const Config& c, int attempt, std::uint64_t restored) {
    Counts counts;
    if (restored) {
        std::ifstream in(state_file(c, "reducer", restored));
        std::string word;
        std::uint64_t count;
        while (in >> word >> count) counts[word] = count;
    }
    GateOptions options;
    options.channel.framing = Framing::records;
    auto gate = InputGate::attach(channel(c, attempt, "gate"), {channel(c, attempt, "r0"), channel(c, attempt, "r1")}, options);
    Record record;
    std::uint32_t from = 0;
    while (true) {
        Status status = gate.read(record, from);
        if (status == Status::end_of_stream) break;
        if (status == Status::peer_died) return 3;  // a mapper died: the job fails over
        if (status != Status::ok) return 1;
        if (record.kind == RecordKind::barrier) {
            // Aligned: the counts hold exactly the lines before the source's offset of this checkpoint.
            std::string snapshot;
            for (const auto& [word, count] : counts) snapshot += word + " " + std::to_string(count) + "\n";
            write_atomically(state_file(c, "reducer", record.checkpoint_id), snapshot);
            write_atomically(c.state_dir + "/completed", std::to_string(record.checkpoint_id));
            continue;
        }
        ++counts[std::string(record.text())];
    }
    std::string result;
    for (const auto& [word, count] : counts) result += word + " " + std::to_string(count) + "\n";
    write_atomically(c.state_dir + "/result", result);
    for (std::uint32_t i = 0; i < gate.size(); ++i) gate.channel(i).remove_channel();
    return 0;
}

pid_t spawn(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0) {
        int code = 1;
        try {
            code = body();
        } catch (const std::exception& error) {
            std::fprintf(stderr, "shm-wordcount: %s\n", error.what());
        }
        std::fflush(nullptr);
        ::_exit(code);
    }
    return pid;
}

}  // namespace

int main(int argc, char** argv) {
    Config c;
    CLI::App app{"shm-wordcount: keyed word count over processes, aligned checkpoints, restart of a killed mapper"};
    app.add_option("--lines", c.lines, "lines of the corpus")->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 32));
    app.add_option("--kill-after", c.kill_after, "seconds before mapper 1 is killed (once; 0: never)");
    CLI11_PARSE(app, argc, argv);
    c.prefix = "wordcount-" + std::to_string(::getpid());
    c.state_dir = std::filesystem::temp_directory_path() / (c.prefix + "-state");
    std::filesystem::create_directories(c.state_dir);

    std::printf("shm-wordcount: %" PRIu64 " lines, source -> 2 mappers -> gate -> reducer, a checkpoint every second\n", c.lines);
    std::printf("counting directly for the final check... ");
    std::fflush(stdout);
    Counts expected;
    std::uint64_t total_words = 0;
    for (std::uint64_t k = 0; k < c.lines; ++k) {
        std::string line = make_line(k);
        std::size_t start = 0;
        while (start <= line.size()) {
            std::size_t space = line.find(' ', start);
            if (space == std::string::npos) space = line.size();
            ++expected[line.substr(start, space - start)];
            ++total_words;
            start = space + 1;
        }
    }
    std::printf("%" PRIu64 " words, %zu distinct\n", total_words, expected.size());

    const auto begin = std::chrono::steady_clock::now();
    bool killed = false;
    for (int attempt = 0; attempt < 5; ++attempt) {
        std::uint64_t restored = last_completed(c);
        std::printf("attempt %d: starting %s\n", attempt,
                    restored ? ("from checkpoint " + std::to_string(restored)).c_str() : "from the beginning");
        std::fflush(stdout);
        std::vector<pid_t> pids = {
            spawn([&] { return run_reducer(c, attempt, restored); }),
            spawn([&] { return run_mapper(c, attempt, 0); }),
            spawn([&] { return run_mapper(c, attempt, 1); }),
            spawn([&] { return run_source(c, attempt, restored); }),
        };
        const auto started = std::chrono::steady_clock::now();
        bool failed = false;
        int running = static_cast<int>(pids.size());
        while (running > 0 && !failed) {
            if (!killed && c.kill_after > 0 &&
                std::chrono::steady_clock::now() - started >= std::chrono::duration<double>(c.kill_after)) {
                std::printf("  killing mapper 1 (pid %d) with SIGKILL; last completed checkpoint: %" PRIu64 "\n", pids[2],
                            last_completed(c));
                std::fflush(stdout);
                ::kill(pids[2], SIGKILL);
                killed = true;
            }
            int status = 0;
            pid_t done = ::waitpid(-1, &status, WNOHANG);
            if (done <= 0) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling children, display only
                continue;
            }
            for (pid_t& pid : pids) {
                if (pid != done) continue;
                pid = -1;
                --running;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
            }
        }
        if (!failed) break;
        std::printf("  the job failed: stopping every process, removing the channels\n");
        for (pid_t pid : pids) {
            if (pid > 0) ::kill(pid, SIGKILL);
        }
        for (pid_t pid : pids) {
            if (pid > 0) ::waitpid(pid, nullptr, 0);
        }
        for (const char* what : {"m0", "m1", "r0", "r1"}) remove_channel(channel(c, attempt, what), true);
        std::error_code ignored;
        std::filesystem::remove(channel_directory() + "/shmgate-" + channel(c, attempt, "gate"), ignored);
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();

    Counts result;
    {
        std::ifstream in(c.state_dir + "/result");
        std::string word;
        std::uint64_t count;
        while (in >> word >> count) result[word] = count;
    }
    bool exact = result == expected;
    std::printf("done in %.1f s (restarts included); checkpoints completed: %" PRIu64 "; final counts %s (%zu distinct words)\n",
                seconds, last_completed(c), exact ? "exact" : "WRONG", result.size());
    std::filesystem::remove_all(c.state_dir);
    return exact ? 0 : 1;
}
