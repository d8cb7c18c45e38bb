// SPDX-License-Identifier: Apache-2.0
// Test support: a private channel directory per test process, child processes (fork) with
// deadlines instead of sleeps, and a start barrier in shared memory.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace shmchan::test {

// Makes a fresh directory under /dev/shm (a tmpfs, as in production), points SHMCHAN_DIR at it
// for this process and every child, and removes it with its contents at exit.
class TestDirectory {
public:
    TestDirectory() {
        char pattern[] = "/dev/shm/shmchan-test-XXXXXX";
        const char* made = ::mkdtemp(pattern);
        if (!made) {
            std::perror("mkdtemp");
            std::abort();
        }
        path_ = made;
        ::setenv("SHMCHAN_DIR", path_.c_str(), 1);
        owner_ = ::getpid();
    }
    ~TestDirectory() {
        if (::getpid() != owner_) return;  // a forked child that returned from main
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    pid_t owner_ = 0;
};

inline std::string channel_directory() { return std::getenv("SHMCHAN_DIR"); }

// A unique channel name per call, so test cases never see each other's channels.
inline std::string unique_name(const char* stem) {
    static int counter = 0;
    return std::string(stem) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// Anonymous shared memory that survives fork: for barriers and results between test processes.
template <class T>
class SharedBlock {
public:
    SharedBlock() {
        void* memory = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) std::abort();
        value_ = new (memory) T{};
    }
    ~SharedBlock() { ::munmap(value_, sizeof(T)); }
    SharedBlock(const SharedBlock&) = delete;
    SharedBlock& operator=(const SharedBlock&) = delete;
    T* operator->() { return value_; }
    T& operator*() { return *value_; }

private:
    T* value_;
};

// A child process running `body`; its return value is the exit code. The child never returns
// into the test runner (it _exits), so doctest state stays with the parent.
class Child {
public:
    explicit Child(std::function<int()> body) {
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ < 0) {
            std::perror("fork");
            std::abort();
        }
        if (pid_ == 0) {
            int code = 99;
            try {
                code = body();
            } catch (const std::exception& error) {
                std::fprintf(stderr, "child %d: uncaught exception: %s\n", ::getpid(), error.what());
                code = 98;
            }
            std::fflush(nullptr);
            ::_exit(code);
        }
    }
    Child(Child&& other) noexcept : pid_(std::exchange(other.pid_, -1)), status_(other.status_) {}
    Child(const Child&) = delete;
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }

    void kill(int signal = SIGKILL) { ::kill(pid_, signal); }

    // Waits up to `deadline` for the child to exit. Returns its wait status, or nullopt (child
    // still running; it is killed by the destructor).
    std::optional<int> wait(std::chrono::milliseconds deadline = std::chrono::seconds(120)) {
        auto until = std::chrono::steady_clock::now() + deadline;
        while (true) {
            int status = 0;
            pid_t done = ::waitpid(pid_, &status, WNOHANG);
            if (done == pid_) {
                pid_ = -1;
                return status;
            }
            if (std::chrono::steady_clock::now() >= until) return std::nullopt;
            ::usleep(1000);  // polling for exit, not timing a verdict
        }
    }
    // Exit code of a child that exited normally, -1 if it did not exit in time, -(100+signal)
    // if a signal killed it.
    int exit_code(std::chrono::milliseconds deadline = std::chrono::seconds(120)) {
        auto status = wait(deadline);
        if (!status) return -1;
        if (WIFEXITED(*status)) return WEXITSTATUS(*status);
        if (WIFSIGNALED(*status)) return -(100 + WTERMSIG(*status));
        return -2;
    }

private:
    pid_t pid_ = -1;
    int status_ = 0;
};

// A start barrier for N processes in shared memory (spin then yield: tests only).
struct Barrier {
    std::atomic<std::uint32_t> arrived{0};
    void arrive_and_wait(std::uint32_t parties) {
        arrived.fetch_add(1);
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (arrived.load() < parties) {
            if (std::chrono::steady_clock::now() > until) std::abort();
            ::sched_yield();
        }
    }
};

// Polls `condition` until true or the deadline passes; returns whether it became true.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    auto until = std::chrono::steady_clock::now() + deadline;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= until) return false;
        ::usleep(1000);
    }
    return true;
}

// The byte pattern of a test stream: every byte is a function of (sequence, offset).
inline std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

// FNV-1a over bytes: the checksum the tests carry in each segment.
inline std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash = 1469598103934665603ull) {
    auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

// Runs a program with arguments, stdin from `input_path` (or /dev/null), stdout to
// `output_path` (or /dev/null), stderr to `error_path` (or inherited). Returns its pid.
inline pid_t spawn(const std::vector<std::string>& argv, const std::string& input_path = "/dev/null",
                   const std::string& output_path = "/dev/null", const std::string& error_path = "") {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, input_path.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!error_path.empty()) {
        posix_spawn_file_actions_addopen(&actions, 2, error_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        std::fprintf(stderr, "posix_spawn %s: %s\n", args[0], std::strerror(rc));
        return -1;
    }
    return pid;
}

// Waits for a spawned pid with a deadline; returns the exit code, -1 on timeout (then kills it),
// -(100+signal) when killed by a signal.
inline int wait_exit(pid_t pid, std::chrono::milliseconds deadline = std::chrono::seconds(120)) {
    auto until = std::chrono::steady_clock::now() + deadline;
    while (true) {
        int status = 0;
        pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            if (WIFSIGNALED(status)) return -(100 + WTERMSIG(status));
            return -2;
        }
        if (std::chrono::steady_clock::now() >= until) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            return -1;
        }
        ::usleep(1000);
    }
}

inline std::string read_whole_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

// What a program run by run_program() left: its exit code (as wait_exit) and its output.
struct ProgramRun {
    int code = -1;  // -1: still running at the deadline (then killed)
    std::string out, err;
};

// Runs argv with stdin from `input`, its stdout and stderr in files of the test's directory
// (names that are not channels), read back and removed. Descriptor `closed` (0 or 1) is closed
// in the program instead.
inline ProgramRun run_program(std::vector<std::string> argv, const std::string& input = "/dev/null", int closed = -1,
                              std::chrono::milliseconds deadline = std::chrono::seconds(60)) {
    static int counter = 0;
    const std::string base = channel_directory() + "/run-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (closed == 0) {
        posix_spawn_file_actions_addclose(&actions, 0);
    } else {
        posix_spawn_file_actions_addopen(&actions, 0, input.c_str(), O_RDONLY, 0);
    }
    if (closed == 1) {
        posix_spawn_file_actions_addclose(&actions, 1);
    } else {
        posix_spawn_file_actions_addopen(&actions, 1, (base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    }
    posix_spawn_file_actions_addopen(&actions, 2, (base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ProgramRun run;
    if (rc != 0) {
        std::fprintf(stderr, "posix_spawn %s: %s\n", args[0], std::strerror(rc));
        return run;
    }
    run.code = wait_exit(pid, deadline);
    run.out = read_whole_file(base + ".out");
    run.err = read_whole_file(base + ".err");
    ::unlink((base + ".out").c_str());
    ::unlink((base + ".err").c_str());
    return run;
}

}  // namespace shmchan::test
