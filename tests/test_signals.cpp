// SPDX-License-Identifier: Apache-2.0
// Waits and signals, across real processes: a call blocked in its wait returns
// Status::interrupted when a signal handler runs while it sleeps, so that a program can shut
// down cleanly, and the channel stays usable after it.
#include <signal.h>

#include "channel_support.hpp"
#include "channels/records.hpp"

namespace {

using namespace std::chrono_literals;
using namespace shmchan;
using namespace shmchan::test;

volatile sig_atomic_t g_handled = 0;
extern "C" void on_usr1(int) { g_handled = g_handled + 1; }

void install_usr1_handler() {
    struct sigaction action {};
    action.sa_handler = on_usr1;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: the futex wait returns EINTR
    ::sigaction(SIGUSR1, &action, nullptr);
}

// Sends SIGUSR1 to `child` until it exits. A signal can land while the child is not yet asleep
// (then its wait goes on), so the next one, 5 ms later, is what it sees: the verdict is the
// child's exit code, never a time.
int signal_until_exit(Child& child) {
    for (int i = 0; i < 4000; ++i) {
        ::kill(child.pid(), SIGUSR1);
        auto status = child.wait(5ms);
        if (status) return WIFEXITED(*status) ? WEXITSTATUS(*status) : -(100 + WTERMSIG(*status));
    }
    return -1;
}

}  // namespace

TEST_SUITE("signals") {

TEST_CASE("a write blocked on a full ring returns interrupted when a handler runs") {
    for (WaitStrategy strategy : {WaitStrategy::park, WaitStrategy::hybrid}) {
        CAPTURE(to_string(strategy));
        const std::string name = unique_name("sigwrite");
        SharedBlock<std::atomic<int>> blocking;
        Child writer([name, strategy, &blocking] {
            install_usr1_handler();
            ChannelOptions options = geometry(4096, 2);
            options.wait = strategy;
            auto w = RecordWriter::attach(name, options);
            std::uint64_t value = 0;
            auto bytes_of = [](const std::uint64_t& v) { return std::as_bytes(std::span(&v, 1)); };
            while (w.try_write(bytes_of(value)) == Status::ok) ++value;  // fill the ring
            blocking->store(1);
            Status status = w.write_value(value);  // nobody reads: only a signal ends it
            CHILD_EXPECT(status == Status::interrupted);
            CHILD_EXPECT(g_handled > 0);
            // Still usable: a bounded try after the interruption says the ring is full.
            CHILD_EXPECT(w.try_write(bytes_of(value)) == Status::would_block);
            return 0;
        });
        REQUIRE(wait_for_flag(*blocking, 1));
        CHECK(signal_until_exit(writer) == 0);
    }
}

TEST_CASE("a read waiting for data returns interrupted when a handler runs") {
    const std::string name = unique_name("sigread");
    auto writer = RecordWriter::attach(name, geometry(4096, 4));
    SharedBlock<std::atomic<int>> blocking;
    Child reader([name, &blocking] {
        install_usr1_handler();
        auto r = RecordReader::attach(name);
        Record record;
        blocking->store(1);
        CHILD_EXPECT(r.read(record) == Status::interrupted);
        return 0;
    });
    REQUIRE(wait_for_flag(*blocking, 1));
    CHECK(signal_until_exit(reader) == 0);
}

}  // TEST_SUITE
