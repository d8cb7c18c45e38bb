// SPDX-License-Identifier: Apache-2.0
// The shm-pipe contract end to end (the brief, "Interfaces that scripts rely on"): the real
// binary, started with posix_spawn, in both start orders, with empty input, a tiny ring, a closed
// standard output, SIGINT and SIGKILL of the producer, SIGKILL of a back-pressured consumer, an
// ended channel, bad usage and --timeout.
//
// No sleep decides a verdict: the tests wait for conditions (a channel file exists, the ring is
// full, output has arrived) and give every process a generous deadline. The delays the contract
// bounds (2 s to notice a dead peer) are measured and reported with MESSAGE, and asserted only
// against a looser deadline, so that sanitizer builds pass.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <utility>  // before support.hpp, which uses std::exchange without including it
#include <vector>

#include "channels/channel.hpp"
#include "shmchan/version.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using shmchan::test::channel_directory;
using shmchan::test::eventually;
using shmchan::test::unique_name;

const std::string kShmPipe = SHMCHAN_SHM_PIPE_PATH;

// A scratch directory for input and output files (not the channel directory: tools that list
// channels look there).
class Scratch {
public:
    Scratch() {
        char pattern[] = "/tmp/shmchan-pipe-test-XXXXXX";
        const char* made = ::mkdtemp(pattern);
        REQUIRE(made != nullptr);
        path_ = made;
    }
    ~Scratch() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    std::string file(const std::string& leaf) const { return path_ + "/" + leaf; }

private:
    std::string path_;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Deterministic pseudo-random bytes (incompressible, position-dependent).
std::string random_bytes(std::size_t size, std::uint64_t seed) {
    std::string data(size, '\0');
    std::size_t i = 0;
    for (std::uint64_t word = 0; i < size; ++word) {
        std::uint64_t value = shmchan::test::mix(seed * 0x9e3779b97f4a7c15ull + word);
        for (int b = 0; b < 8 && i < size; ++b, ++i) data[i] = static_cast<char>(value >> (8 * b));
    }
    return data;
}

void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    REQUIRE(out.good());
}

std::string channel_path(const std::string& name) { return channel_directory() + "/shmchan-" + name; }

bool channel_exists(const std::string& name) {
    struct stat info {};
    return ::lstat(channel_path(name).c_str(), &info) == 0;
}

std::optional<shmchan::ChannelInfo> try_inspect(const std::string& name) {
    try {
        return shmchan::inspect(name);
    } catch (const shmchan::Error&) {
        return std::nullopt;  // not there yet, or still being created
    }
}

int open_or_die(const std::string& path, int flags) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
    REQUIRE_MESSAGE(fd >= 0, path << ": " << std::strerror(errno));
    return fd;
}

// A spawned shm-pipe (or any program) with its standard streams on the given descriptors. The
// parent's descriptors stay the parent's (close them yourself); the child gets copies on 0, 1, 2.
// The destructor kills and reaps a child that was not waited for (a failed REQUIRE mid-test).
class Process {
public:
    Process(const std::vector<std::string>& argv, int in_fd, int out_fd, int err_fd) {
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
        posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
        posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
        // The child starts with default signal dispositions and an empty mask, whatever the
        // test runner has set (an ignored SIGPIPE or SIGINT would be inherited across exec).
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t defaults, empty;
        sigemptyset(&defaults);
        for (int number : {SIGPIPE, SIGINT, SIGTERM}) sigaddset(&defaults, number);
        sigemptyset(&empty);
        posix_spawnattr_setsigdefault(&attributes, &defaults);
        posix_spawnattr_setsigmask(&attributes, &empty);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        int rc = ::posix_spawn(&pid_, args[0], &actions, &attributes, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        REQUIRE_MESSAGE(rc == 0, "posix_spawn " << args[0] << ": " << std::strerror(rc));
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }
    void signal(int number) { ::kill(pid_, number); }
    bool running() {
        if (pid_ <= 0) return false;
        int status = 0;
        pid_t done = ::waitpid(pid_, &status, WNOHANG);
        if (done == pid_) {
            pid_ = -1;
            code_ = decode(status);
            return false;
        }
        return true;
    }
    // Exit code; -1 if still running at the deadline (then killed), -(100+signal) if signalled.
    int exit_code(std::chrono::milliseconds deadline = 60s) {
        if (pid_ > 0) {
            code_ = shmchan::test::wait_exit(pid_, deadline);
            pid_ = -1;
        }
        return code_;
    }

private:
    static int decode(int status) {
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        if (WIFSIGNALED(status)) return -(100 + WTERMSIG(status));
        return -2;
    }
    pid_t pid_ = -1;
    int code_ = -1;
};

// shm-pipe with stdin, stdout and stderr redirected to files (stderr kept for the assertions).
struct PipeRun {
    std::string err_path;
    std::optional<Process> process;

    PipeRun(const std::vector<std::string>& args, const std::string& in_path, const std::string& out_path,
            const std::string& error_path)
        : err_path(error_path) {
        int in = open_or_die(in_path, O_RDONLY);
        int out = open_or_die(out_path, O_WRONLY | O_CREAT | O_TRUNC);
        int err = open_or_die(err_path, O_WRONLY | O_CREAT | O_TRUNC);
        std::vector<std::string> argv{kShmPipe};
        argv.insert(argv.end(), args.begin(), args.end());
        process.emplace(argv, in, out, err);
        ::close(in);
        ::close(out);
        ::close(err);
    }
    int exit_code(std::chrono::milliseconds deadline = 60s) { return process->exit_code(deadline); }
    std::string errors() const { return read_file(err_path); }
};

std::vector<std::string> args(std::initializer_list<std::string> list) { return list; }

// One shared 64 MiB input for the two round trips.
const std::string& big_input() {
    static const std::string data = random_bytes(64ull << 20, 42);
    return data;
}

void check_round_trip(bool send_first) {
    Scratch scratch;
    const std::string name = unique_name(send_first ? "pipe-send-first" : "pipe-recv-first");
    const std::string input = scratch.file("input"), output = scratch.file("output");
    write_file(input, big_input());

    std::optional<PipeRun> send, recv;
    if (send_first) {
        send.emplace(args({"send", name}), input, "/dev/null", scratch.file("send.err"));
        // The producer has filled the default ring (16 segments) with no consumer: it waits.
        REQUIRE(eventually([&] {
            auto info = try_inspect(name);
            return info && info->published == 16;
        }));
        CHECK(send->process->running());
        recv.emplace(args({"recv", name}), "/dev/null", output, scratch.file("recv.err"));
    } else {
        recv.emplace(args({"recv", name}), "/dev/null", output, scratch.file("recv.err"));
        REQUIRE(eventually([&] {
            auto info = try_inspect(name);
            return info && info->consumer.alive;
        }));
        send.emplace(args({"send", name}), input, "/dev/null", scratch.file("send.err"));
    }
    CHECK_MESSAGE(send->exit_code() == 0, send->errors());
    CHECK_MESSAGE(recv->exit_code() == 0, recv->errors());
    const std::string received = read_file(output);
    CHECK(received.size() == big_input().size());
    CHECK(received == big_input());
    CHECK_FALSE(channel_exists(name));
    CHECK(send->errors().empty());
    CHECK(recv->errors().empty());
}

// A pipe whose descriptors are close-on-exec in the parent (the child gets its copy by dup2).
struct PipeFds {
    int read_end = -1, write_end = -1;
    PipeFds() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        read_end = fds[0];
        write_end = fds[1];
    }
    ~PipeFds() {
        close_read();
        close_write();
    }
    void close_read() {
        if (read_end >= 0) ::close(read_end);
        read_end = -1;
    }
    void close_write() {
        if (write_end >= 0) ::close(write_end);
        write_end = -1;
    }
};

// SIGPIPE ignored in the test runner while it lives (a write to a pipe whose reader died must
// fail a check, not kill the runner).
class IgnoreSigpipe {
public:
    IgnoreSigpipe() {
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        ::sigaction(SIGPIPE, &ignore, &previous_);
    }
    ~IgnoreSigpipe() { ::sigaction(SIGPIPE, &previous_, nullptr); }

private:
    struct sigaction previous_ {};
};

// Writes everything to a non-blocking pipe within a deadline (false: the reader is gone or
// stopped reading).
bool write_all(int fd, const char* data, std::size_t size, std::chrono::milliseconds deadline = 30s) {
    IgnoreSigpipe no_sigpipe;
    auto until = std::chrono::steady_clock::now() + deadline;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (size > 0) {
        ssize_t wrote = ::write(fd, data, size);
        if (wrote < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return false;
            if (std::chrono::steady_clock::now() >= until) return false;
            pollfd room{fd, POLLOUT, 0};
            ::poll(&room, 1, 100);  // waiting for room, not timing a verdict
            continue;
        }
        data += wrote;
        size -= static_cast<std::size_t>(wrote);
    }
    return true;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The producer is stopped by `signal_number` while a consumer receives: the consumer writes a
// prefix of the input, then reports the producer's death.
void check_producer_stopped(int signal_number) {
    Scratch scratch;
    const std::string name = unique_name("pipe-producer-signal");
    const std::string output = scratch.file("output");

    PipeFds input;  // the test holds the write end open: send never sees end of input
    int err = open_or_die(scratch.file("send.err"), O_WRONLY | O_CREAT | O_TRUNC);
    int null_out = open_or_die("/dev/null", O_WRONLY);
    Process send({kShmPipe, "send", name}, input.read_end, null_out, err);
    ::close(err);
    ::close(null_out);
    input.close_read();
    PipeRun recv(args({"recv", name}), "/dev/null", output, scratch.file("recv.err"));

    // Feed 1 MiB, then wait until some of it came out of recv (the write end stays open).
    const std::string data = random_bytes(1 << 20, 7);
    REQUIRE(write_all(input.write_end, data.data(), data.size()));
    REQUIRE(eventually([&] { return std::filesystem::file_size(output) > 0; }));

    send.signal(signal_number);
    auto killed_at = std::chrono::steady_clock::now();
    int send_code = send.exit_code(10s);
    if (signal_number == SIGKILL) {
        CHECK(send_code == -(100 + SIGKILL));
    } else {
        CHECK(send_code == 128 + signal_number);  // 130 for SIGINT, 143 for SIGTERM
        CHECK(read_file(scratch.file("send.err")).find("interrupted") != std::string::npos);
        auto info = try_inspect(name);
        REQUIRE(info);
        CHECK_FALSE(info->end_of_stream);  // an abnormal end, not end of stream
    }
    int recv_code = recv.exit_code(10s);
    double delay = seconds_since(killed_at);
    MESSAGE("recv noticed the producer's end (signal " << signal_number << ") after " << delay << " s");
    CHECK(recv_code == 1);
    CHECK(recv.errors().find("producer of channel " + name + " died before end of stream") != std::string::npos);
    CHECK(delay < 5.0);

    const std::string received = read_file(output);
    CHECK(received.size() > 0);
    CHECK(received.size() <= data.size());
    CHECK(data.compare(0, received.size(), received) == 0);  // a prefix of what was written
    input.close_write();
    shmchan::remove_channel(name, true);
}

}  // namespace

TEST_SUITE("pipe") {

TEST_CASE("round trip of 64 MiB, send started first") { check_round_trip(true); }

TEST_CASE("round trip of 64 MiB, recv started first") { check_round_trip(false); }

TEST_CASE("empty input gives empty output") {
    Scratch scratch;
    const std::string name = unique_name("pipe-empty");
    const std::string output = scratch.file("output");
    write_file(output, "stale bytes that recv must truncate");
    PipeRun send(args({"send", name}), "/dev/null", "/dev/null", scratch.file("send.err"));
    PipeRun recv(args({"recv", name}), "/dev/null", output, scratch.file("recv.err"));
    CHECK_MESSAGE(send.exit_code() == 0, send.errors());
    CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
    CHECK(read_file(output).empty());
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("tiny geometry: 2 segments of 4 KiB carry 10 MiB") {
    Scratch scratch;
    const std::string name = unique_name("pipe-tiny");
    const std::string input = scratch.file("input"), output = scratch.file("output");
    const std::string data = random_bytes(10 << 20, 3);
    write_file(input, data);
    PipeRun recv(args({"recv", name, "--segment-size", "4096", "--segments", "2", "--wait", "spin"}), "/dev/null",
                 output, scratch.file("recv.err"));
    PipeRun send(args({"send", name, "--segment-size", "4096", "--segments", "2", "--wait", "park"}), input,
                 "/dev/null", scratch.file("send.err"));
    CHECK_MESSAGE(send.exit_code() == 0, send.errors());
    CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
    CHECK(read_file(output) == data);
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("a closed standard output stops recv, and send is told") {
    Scratch scratch;
    const std::string name = unique_name("pipe-closed-stdout");
    const std::string input = scratch.file("input");
    write_file(input, random_bytes(8 << 20, 11));  // 16 x the default ring

    PipeFds output;
    int err = open_or_die(scratch.file("recv.err"), O_WRONLY | O_CREAT | O_TRUNC);
    int null_in = open_or_die("/dev/null", O_RDONLY);
    Process recv({kShmPipe, "recv", name}, null_in, output.write_end, err);
    ::close(err);
    ::close(null_in);
    output.close_write();
    output.close_read();  // nobody reads recv's standard output any more

    PipeRun send(args({"send", name}), input, "/dev/null", scratch.file("send.err"));
    CHECK(recv.exit_code(30s) == 1);
    auto recv_exit = std::chrono::steady_clock::now();
    const std::string recv_errors = read_file(scratch.file("recv.err"));
    CHECK_MESSAGE(recv_errors.find("standard output closed") != std::string::npos, recv_errors);
    CHECK(recv_errors.rfind("shm-pipe: ", 0) == 0);

    CHECK(send.exit_code(10s) == 1);
    double delay = seconds_since(recv_exit);
    MESSAGE("send noticed the consumer's exit after " << delay << " s");
    CHECK(delay < 5.0);
    CHECK(send.errors().find("consumer of channel " + name + " died or went away") != std::string::npos);
    shmchan::remove_channel(name, true);
}

TEST_CASE("SIGINT on the producer mid-stream: no end of stream, recv writes a prefix and fails") {
    check_producer_stopped(SIGINT);
}

TEST_CASE("SIGTERM on the producer mid-stream: no end of stream, recv writes a prefix and fails") {
    check_producer_stopped(SIGTERM);
}

TEST_CASE("SIGKILL of the producer mid-stream: recv writes a prefix and fails") {
    check_producer_stopped(SIGKILL);
}

TEST_CASE("SIGKILL of a consumer while send is back-pressured: send fails") {
    Scratch scratch;
    const std::string name = unique_name("pipe-consumer-killed");
    const std::string input = scratch.file("input");
    write_file(input, random_bytes(8 << 20, 13));

    PipeRun send(args({"send", name}), input, "/dev/null", scratch.file("send.err"));
    REQUIRE(eventually([&] {
        auto info = try_inspect(name);
        return info && info->published == 16;
    }));

    // The consumer's standard output is a pipe that nobody reads: it blocks in write(2) after
    // 64 KiB, so the producer fills the ring again and waits for credits.
    PipeFds stuck;
    int err = open_or_die(scratch.file("recv.err"), O_WRONLY | O_CREAT | O_TRUNC);
    int null_in = open_or_die("/dev/null", O_RDONLY);
    Process recv({kShmPipe, "recv", name}, null_in, stuck.write_end, err);
    ::close(err);
    ::close(null_in);
    stuck.close_write();
    REQUIRE(eventually([&] {
        auto info = try_inspect(name);
        return info && info->consumer.alive && info->released > 0 && info->published - info->released == 16;
    }));
    CHECK(send.process->running());

    recv.signal(SIGKILL);
    CHECK(recv.exit_code(10s) == -(100 + SIGKILL));
    auto killed_at = std::chrono::steady_clock::now();
    CHECK(send.exit_code(10s) == 1);
    double delay = seconds_since(killed_at);
    MESSAGE("send noticed the consumer's death after " << delay << " s");
    CHECK(delay < 5.0);
    CHECK(send.errors().find("consumer of channel " + name + " died or went away") != std::string::npos);
    shmchan::remove_channel(name, true);
}

TEST_CASE("a channel whose stream has ended is refused") {
    Scratch scratch;
    const std::string name = unique_name("pipe-ended");
    const std::string input = scratch.file("input"), output = scratch.file("output");
    const std::string data = random_bytes(100 << 10, 17);  // fits the default ring (16 x 32 KiB)
    write_file(input, data);

    PipeRun first(args({"send", name}), input, "/dev/null", scratch.file("first.err"));
    CHECK_MESSAGE(first.exit_code() == 0, first.errors());  // handed over, not yet consumed

    PipeRun second(args({"send", name}), input, "/dev/null", scratch.file("second.err"));
    CHECK(second.exit_code() == 1);
    const std::string errors = second.errors();
    CHECK_MESSAGE(errors.find("channel " + name + " has already ended") != std::string::npos, errors);
    CHECK(errors.find("receive or remove it first") != std::string::npos);

    // The first stream is intact: receiving it ends the channel.
    PipeRun recv(args({"recv", name}), "/dev/null", output, scratch.file("recv.err"));
    CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
    CHECK(read_file(output) == data);
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("bad usage exits 2") {
    Scratch scratch;
    const std::string name = unique_name("pipe-usage");
    auto run = [&](std::vector<std::string> arguments) {
        PipeRun usage(arguments, "/dev/null", "/dev/null", scratch.file("usage.err"));
        int code = usage.exit_code(10s);
        return std::make_pair(code, usage.errors());
    };
    SUBCASE("no arguments") { CHECK(run({}).first == 2); }
    SUBCASE("no channel name") { CHECK(run({"send"}).first == 2); }
    SUBCASE("no arguments: the commands are listed") {
        auto [code, errors] = run({});
        CHECK(code == 2);
        CHECK_MESSAGE(errors.find("shm-pipe: no command given; the commands are: send, recv") == 0, errors);
    }
    SUBCASE("unknown command: named, and the valid ones listed") {
        auto [code, errors] = run({"push", name});
        CHECK(code == 2);
        CHECK_MESSAGE(errors.find("shm-pipe: unknown command 'push'; the commands are: send, recv") == 0, errors);
    }
    SUBCASE("a name with a slash") {
        auto [code, errors] = run({"send", "a/b"});
        CHECK(code == 2);
        CHECK(errors.rfind("shm-pipe: ", 0) == 0);
        auto [recv_code, recv_errors] = run({"recv", "a/b"});
        CHECK(recv_code == 2);
    }
    SUBCASE("a bad wait strategy") { CHECK(run({"recv", name, "--wait", "snooze"}).first == 2); }
    SUBCASE("a segment size that is not a multiple of 4096") {
        CHECK(run({"send", name, "--segment-size", "5000"}).first == 2);
    }
    SUBCASE("a negative segment count") { CHECK(run({"send", name, "--segments", "-1"}).first == 2); }
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("--version names the tool and the library's version") {
    shmchan::test::ProgramRun run = shmchan::test::run_program({SHMCHAN_SHM_PIPE_PATH, "--version"});
    CHECK(run.code == 0);
    CHECK(run.out == "shm-pipe (shmchan) " SHMCHAN_VERSION_STRING "\n");
}

TEST_CASE("--timeout bounds send's wait for a consumer") {
    Scratch scratch;
    const std::string name = unique_name("pipe-timeout");
    const std::string input = scratch.file("input");
    write_file(input, random_bytes(1 << 20, 19));  // twice the default ring
    auto start = std::chrono::steady_clock::now();
    PipeRun send(args({"send", name, "--timeout", "0.5"}), input, "/dev/null", scratch.file("send.err"));
    CHECK(send.exit_code(20s) == 1);
    MESSAGE("send --timeout 0.5 gave up after " << seconds_since(start) << " s");
    const std::string errors = send.errors();
    CHECK_MESSAGE(errors.find("timed out") != std::string::npos, errors);
    CHECK(errors.find("waiting for a consumer of channel " + name) != std::string::npos);
    auto info = try_inspect(name);
    REQUIRE(info);
    CHECK_FALSE(info->end_of_stream);  // gave up without ending the stream
    shmchan::remove_channel(name, true);
}

}  // TEST_SUITE("pipe")

// --- --lines ----------------------------------------------------------------------------------------

namespace {

// Lines of every awkward length for 4 KiB segments (payload 4032, inline record up to 4024),
// including empty lines and lines longer than the whole ring, never containing '\n'.
std::string lines_input(bool final_newline) {
    std::string text;
    std::uint64_t state = 7;
    auto next = [&] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return state >> 33;
    };
    const std::size_t sizes[] = {0, 1, 4023, 4024, 4025, 4032, 8064, 100, 0, 40000, 300000, 3};
    for (int round = 0; round < 40; ++round) {
        for (std::size_t size : sizes) {
            std::size_t length = round % 2 ? size : next() % 600;
            for (std::size_t i = 0; i < length; ++i) text.push_back(static_cast<char>('a' + next() % 26));
            text.push_back('\n');
        }
    }
    text += "the last line";
    if (final_newline) text.push_back('\n');
    return text;
}

void check_lines_round_trip(bool send_first, bool final_newline) {
    Scratch scratch;
    const std::string name = unique_name("pipe-lines");
    const std::string input = scratch.file("input"), output = scratch.file("output");
    const std::string text = lines_input(final_newline);
    write_file(input, text);
    std::optional<PipeRun> send, recv;
    auto geometry = [](std::initializer_list<std::string> more) {
        std::vector<std::string> all{"--lines", "--segment-size", "4096", "--segments", "8"};
        all.insert(all.begin(), more.begin(), more.end());
        return all;
    };
    if (send_first) {
        send.emplace(geometry({"send", name}), input, "/dev/null", scratch.file("send.err"));
        REQUIRE(eventually([&] { return try_inspect(name).has_value(); }));
        recv.emplace(geometry({"recv", name}), "/dev/null", output, scratch.file("recv.err"));
    } else {
        recv.emplace(geometry({"recv", name}), "/dev/null", output, scratch.file("recv.err"));
        REQUIRE(eventually([&] {
            auto info = try_inspect(name);
            return info && info->consumer.alive;
        }));
        send.emplace(geometry({"send", name}), input, "/dev/null", scratch.file("send.err"));
    }
    CHECK_MESSAGE(send->exit_code() == 0, send->errors());
    CHECK_MESSAGE(recv->exit_code() == 0, recv->errors());
    // recv writes every record followed by a newline: a last line without one gains it.
    const std::string expected = final_newline ? text : text + "\n";
    const std::string received = read_file(output);
    CHECK(received.size() == expected.size());
    CHECK(received == expected);
    CHECK_FALSE(channel_exists(name));
}

}  // namespace

TEST_SUITE("pipe") {

TEST_CASE("--lines: every line is one record, long lines span segments, send first") {
    check_lines_round_trip(true, true);
}

TEST_CASE("--lines: recv first, and a last line without a newline") { check_lines_round_trip(false, false); }

// The default geometry, where short lines go many to a segment: lines of every length from 0 to
// 150 (a newline at every offset of the 8-byte words send scans, before and after its first 64
// bytes), in an order that changes from pass to pass, so that lines also straddle every read of
// standard input and every write of standard output.
TEST_CASE("--lines: short lines of every length, many per segment, byte for byte") {
    Scratch scratch;
    const std::string name = unique_name("pipe-lines-short");
    std::string text;
    for (std::size_t pass = 0; pass < 200; ++pass) {
        for (std::size_t k = 0; k <= 150; ++k) {
            const std::size_t length = (k * (pass + 1) + pass) % 151;
            for (std::size_t i = 0; i < length; ++i) text.push_back(static_cast<char>('a' + (i + pass) % 26));
            text.push_back('\n');
        }
    }
    text += "no newline at the end";
    write_file(scratch.file("input"), text);
    PipeRun send(args({"send", name, "--lines"}), scratch.file("input"), "/dev/null", scratch.file("send.err"));
    PipeRun recv(args({"recv", name, "--lines"}), "/dev/null", scratch.file("output"), scratch.file("recv.err"));
    CHECK_MESSAGE(send.exit_code() == 0, send.errors());
    CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
    const std::string received = read_file(scratch.file("output"));
    CHECK(received.size() == text.size() + 1);
    CHECK(received == text + "\n");
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("--lines on one side only is refused with a message") {
    Scratch scratch;
    const std::string name = unique_name("pipe-framing");
    const std::string input = scratch.file("input");
    write_file(input, "one\ntwo\n");
    PipeRun send(args({"send", name, "--lines"}), input, "/dev/null", scratch.file("send.err"));
    REQUIRE(send.exit_code() == 0);
    PipeRun raw(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
    CHECK(raw.exit_code() == 1);
    CHECK(raw.errors().find("carries records, not raw bytes") != std::string::npos);
    PipeRun lines(args({"recv", name, "--lines"}), "/dev/null", scratch.file("out2"), scratch.file("recv2.err"));
    CHECK(lines.exit_code() == 0);
    CHECK(read_file(scratch.file("out2")) == "one\ntwo\n");
}

}  // TEST_SUITE("pipe")

// --- leftovers: a channel no live process holds whose stream did not end cleanly -----------------

namespace {

// Waits until channel `name` shows `bytes` written by its producer.
bool producer_wrote(const std::string& name, std::uint64_t bytes) {
    return eventually([&] {
        auto info = try_inspect(name);
        return info && info->producer_counters.bytes == bytes;
    });
}

// A sender fed `data` through a pipe the test holds open, SIGKILLed once all of it is published:
// the channel is left over with `data` unread.
void leave_killed_sender(const Scratch& scratch, const std::string& name, const std::string& data) {
    PipeFds input;
    int err = open_or_die(scratch.file("killed.err"), O_WRONLY | O_CREAT | O_TRUNC);
    int null_out = open_or_die("/dev/null", O_WRONLY);
    Process send({kShmPipe, "send", name}, input.read_end, null_out, err);
    ::close(err);
    ::close(null_out);
    input.close_read();
    REQUIRE(write_all(input.write_end, data.data(), data.size()));
    REQUIRE(producer_wrote(name, data.size()));
    send.signal(SIGKILL);
    REQUIRE(send.exit_code(10s) == -(100 + SIGKILL));
}

const char* const kStartingFresh = "starting fresh (--resume continues it)";

}  // namespace

TEST_SUITE("pipe") {

TEST_CASE("after `recv | head` left the channel over, the next run delivers only its own data") {
    Scratch scratch;
    const std::string name = unique_name("pipe-head");
    write_file(scratch.file("first"), random_bytes(8 << 20, 23));  // 16 x the default ring
    {
        // recv's standard output is a pipe that nobody reads (head exited): recv fails, then send.
        PipeFds output;
        int err = open_or_die(scratch.file("recv1.err"), O_WRONLY | O_CREAT | O_TRUNC);
        int null_in = open_or_die("/dev/null", O_RDONLY);
        Process recv({kShmPipe, "recv", name}, null_in, output.write_end, err);
        ::close(err);
        ::close(null_in);
        output.close_write();
        output.close_read();
        PipeRun send(args({"send", name}), scratch.file("first"), "/dev/null", scratch.file("send1.err"));
        CHECK(recv.exit_code(30s) == 1);
        CHECK(send.exit_code(30s) == 1);
    }
    REQUIRE(channel_exists(name));  // the leftover
    auto leftover = try_inspect(name);
    REQUIRE(leftover);
    CHECK_FALSE(leftover->end_of_stream);

    // The next run: its own 100 KiB, and nothing of the first run's.
    const std::string second = random_bytes(100 << 10, 29);
    write_file(scratch.file("second"), second);
    PipeRun send(args({"send", name}), scratch.file("second"), "/dev/null", scratch.file("send2.err"));
    CHECK_MESSAGE(send.exit_code() == 0, send.errors());
    CHECK_MESSAGE(send.errors().find(kStartingFresh) != std::string::npos, send.errors());
    CHECK(send.errors().find("channel " + name + " was left over by an earlier run") != std::string::npos);
    PipeRun recv(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv2.err"));
    CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
    CHECK(recv.errors().empty());
    CHECK(read_file(scratch.file("out")) == second);
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("after a killed sender, the next run starts fresh; --resume continues the stream") {
    Scratch scratch;
    const std::string name = unique_name("pipe-killed-sender");
    const std::string first = random_bytes(10000, 31), second = random_bytes(50000, 37);
    write_file(scratch.file("second"), second);
    leave_killed_sender(scratch, name, first);
    REQUIRE(channel_exists(name));

    SUBCASE("recv started first: only the second run's data") {
        PipeRun recv(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
        REQUIRE(eventually([&] {
            auto info = try_inspect(name);
            return info && info->consumer.alive && info->published == 0;
        }));
        PipeRun send(args({"send", name}), scratch.file("second"), "/dev/null", scratch.file("send.err"));
        CHECK_MESSAGE(send.exit_code() == 0, send.errors());
        CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
        CHECK_MESSAGE(recv.errors().find(kStartingFresh) != std::string::npos, recv.errors());
        CHECK(recv.errors().find("the producer died") != std::string::npos);
        CHECK(send.errors().empty());
        CHECK(read_file(scratch.file("out")) == second);
    }
    SUBCASE("send --resume continues the stream: the first run's bytes, then the second's") {
        PipeRun send(args({"send", name, "--resume"}), scratch.file("second"), "/dev/null", scratch.file("send.err"));
        CHECK_MESSAGE(send.exit_code() == 0, send.errors());
        CHECK(send.errors().empty());
        PipeRun recv(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
        CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
        CHECK(read_file(scratch.file("out")) == first + second);
    }
    SUBCASE("recv --resume reads what is left and waits for a new producer") {
        PipeRun recv(args({"recv", name, "--resume"}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
        REQUIRE(eventually([&] { return std::filesystem::file_size(scratch.file("out")) == first.size(); }));
        CHECK(recv.process->running());  // the dead producer is not reported: it waits for a new one
        PipeRun send(args({"send", name}), scratch.file("second"), "/dev/null", scratch.file("send.err"));
        CHECK_MESSAGE(send.exit_code() == 0, send.errors());
        CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
        CHECK(read_file(scratch.file("out")) == first + second);
        CHECK(recv.errors().empty());
    }
    CHECK_FALSE(channel_exists(name));
}

TEST_CASE("--lines: a killed sender's leftover is replaced by the next run") {
    Scratch scratch;
    const std::string name = unique_name("pipe-lines-leftover");
    {
        PipeFds input;
        int err = open_or_die(scratch.file("killed.err"), O_WRONLY | O_CREAT | O_TRUNC);
        int null_out = open_or_die("/dev/null", O_WRONLY);
        Process send({kShmPipe, "send", name, "--lines"}, input.read_end, null_out, err);
        ::close(err);
        ::close(null_out);
        input.close_read();
        const std::string old_lines = "old 1\nold 2\n";
        REQUIRE(write_all(input.write_end, old_lines.data(), old_lines.size()));
        REQUIRE(eventually([&] {
            auto info = try_inspect(name);
            return info && info->flush_word != 0;  // both lines committed and flushed (one read)
        }));
        send.signal(SIGKILL);
        REQUIRE(send.exit_code(10s) == -(100 + SIGKILL));
    }
    write_file(scratch.file("input"), "new 1\nnew 2\n");
    PipeRun send(args({"send", name, "--lines"}), scratch.file("input"), "/dev/null", scratch.file("send.err"));
    CHECK_MESSAGE(send.exit_code() == 0, send.errors());
    CHECK(send.errors().find(kStartingFresh) != std::string::npos);
    PipeRun recv(args({"recv", name, "--lines"}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
    CHECK_MESSAGE(recv.exit_code() == 0, recv.errors());
    CHECK(read_file(scratch.file("out")) == "new 1\nnew 2\n");
}

}  // TEST_SUITE("pipe")

// --- --lines on one side only: both sides exit 1 with the reason -----------------------------------

TEST_SUITE("pipe") {

TEST_CASE("--lines on one side only: send --lines first, waiting for a consumer, then a raw recv") {
    Scratch scratch;
    const std::string name = unique_name("pipe-lines-send-first");
    std::string text;
    for (int i = 0; i < 4000; ++i) text += std::string(300, static_cast<char>('a' + i % 26)) + "\n";  // > the ring
    write_file(scratch.file("input"), text);
    SUBCASE("send waits for a free segment") {
        PipeRun send(args({"send", name, "--lines"}), scratch.file("input"), "/dev/null", scratch.file("send.err"));
        REQUIRE(eventually([&] {
            auto info = try_inspect(name);
            return info && info->published == 16;
        }));
        PipeRun recv(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
        CHECK(recv.exit_code(30s) == 1);
        CHECK_MESSAGE(recv.errors().find("carries records, not raw bytes") != std::string::npos, recv.errors());
        CHECK(send.exit_code(30s) == 1);
        CHECK_MESSAGE(send.errors().find("a consumer was refused: it asked for raw bytes, the channel carries records") !=
                          std::string::npos,
                      send.errors());
        CHECK(send.errors().find("give --lines to both sides or to neither") != std::string::npos);
    }
    SUBCASE("send waits for input") {
        PipeFds input;  // held open, nothing written: send waits for input
        int err = open_or_die(scratch.file("send.err"), O_WRONLY | O_CREAT | O_TRUNC);
        int null_out = open_or_die("/dev/null", O_WRONLY);
        Process send({kShmPipe, "send", name, "--lines"}, input.read_end, null_out, err);
        ::close(err);
        ::close(null_out);
        input.close_read();
        REQUIRE(eventually([&] { return try_inspect(name).has_value(); }));
        PipeRun recv(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
        CHECK(recv.exit_code(30s) == 1);
        CHECK(send.exit_code(30s) == 1);
        const std::string errors = read_file(scratch.file("send.err"));
        CHECK_MESSAGE(errors.find("a consumer was refused: it asked for raw bytes") != std::string::npos, errors);
    }
    shmchan::remove_channel(name, true);
}

TEST_CASE("--lines on one side only: a raw recv first, waiting for data, then send --lines") {
    Scratch scratch;
    const std::string name = unique_name("pipe-lines-recv-first");
    write_file(scratch.file("input"), "one\ntwo\n");
    PipeRun recv(args({"recv", name}), "/dev/null", scratch.file("out"), scratch.file("recv.err"));
    REQUIRE(eventually([&] {
        auto info = try_inspect(name);
        return info && info->consumer.alive;
    }));
    PipeRun send(args({"send", name, "--lines"}), scratch.file("input"), "/dev/null", scratch.file("send.err"));
    CHECK(send.exit_code(30s) == 1);
    CHECK_MESSAGE(send.errors().find("carries raw bytes, not records") != std::string::npos, send.errors());
    CHECK(recv.exit_code(30s) == 1);
    CHECK_MESSAGE(recv.errors().find("a producer was refused: it asked for records, the channel carries raw bytes") !=
                      std::string::npos,
                  recv.errors());
    shmchan::remove_channel(name, true);
}

}  // TEST_SUITE("pipe")
