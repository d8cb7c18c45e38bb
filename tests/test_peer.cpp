// SPDX-License-Identifier: Apache-2.0
// wait_for_peer across real processes: after peer_died a side waits, bounded, for a replacement
// peer, which then resumes the stream; nobody coming is timed_out; a signal handler that runs
// while it waits gives interrupted.
//
// The waiters run with a 10 s liveness interval and wait at most 8 s; a replacement stays attached
// at most 4 s unless the waiter saw it. So only the attaching side's wake (not the periodic
// backstop, nor the last look at the deadline) gives ok: the verdict is the status.
#include <signal.h>

#include "channel_support.hpp"

namespace {

using namespace std::chrono_literals;
using namespace shmchan;
using namespace shmchan::test;

volatile sig_atomic_t g_handled = 0;
extern "C" void on_usr1_peer(int) { g_handled = g_handled + 1; }

ChannelOptions slow_backstop() {
    ChannelOptions options = geometry(4096, 4);
    options.wait = WaitStrategy::park;
    options.liveness_interval = 10s;
    return options;
}

// Publishes `count` segments whose first word is `first`, first + 1, ...
int publish_numbers(Producer& producer, std::uint64_t first, int count) {
    for (int i = 0; i < count; ++i) {
        WritableSegment out;
        if (producer.acquire_for(out, 20s) != Status::ok) return 1;
        std::uint64_t value = first + static_cast<std::uint64_t>(i);
        std::memcpy(out.payload.data(), &value, sizeof value);
        if (producer.publish(sizeof value) != Status::ok) return 2;
    }
    return 0;
}

std::uint64_t number_of(const ReadableSegment& in) {
    std::uint64_t value = 0;
    if (in.payload.size() == sizeof value) std::memcpy(&value, in.payload.data(), sizeof value);
    return value;
}

}  // namespace

TEST_SUITE("peer") {

TEST_CASE("a consumer waits for a replacement producer, which resumes the stream") {
    const std::string name = unique_name("peer-producer");
    auto consumer = Consumer::attach(name, slow_backstop());
    ReadableSegment in;

    // No producer yet: nobody comes within a short bound.
    CHECK(consumer.wait_for_peer(0ms) == Status::timed_out);
    CHECK(consumer.wait_for_peer(20ms) == Status::timed_out);

    Child first([name] {
        auto producer = Producer::attach(name, geometry(4096, 4));
        int code = publish_numbers(producer, 0, 2);
        ::_exit(code == 0 ? 0 : 10 + code);  // dies without ending the stream
        return 0;
    });
    REQUIRE(first.exit_code(30s) == 0);
    for (std::uint64_t expected = 0; expected < 2; ++expected) {
        REQUIRE(consumer.read_for(in, 20s) == Status::ok);
        CHECK(number_of(in) == expected);
    }
    // (A read would report peer_died at its next liveness check, 10 s here: not waited for.)
    CHECK(consumer.try_read(in) == Status::would_block);
    CHECK_FALSE(consumer.producer_alive());
    CHECK(consumer.wait_for_peer(20ms) == Status::timed_out);

    SharedBlock<std::atomic<int>> go;
    Child second([name, &go] {
        auto producer = Producer::attach(name, geometry(4096, 4));
        if (!wait_for_flag(*go, 1, 4s)) return 4;  // attached until the consumer saw it, at most 4 s
        int code = publish_numbers(producer, 2, 3);
        if (code != 0) return 10 + code;
        return producer.end_stream() == Status::ok ? 0 : 5;
    });
    CHECK(consumer.wait_for_peer(8s) == Status::ok);
    CHECK(consumer.producer_alive());
    go->store(1);
    for (std::uint64_t expected = 2; expected < 5; ++expected) {
        REQUIRE(consumer.read_for(in, 20s) == Status::ok);
        CHECK(number_of(in) == expected);
    }
    CHECK(consumer.read_for(in, 20s) == Status::end_of_stream);
    CHECK(second.exit_code(30s) == 0);
    // The stream ended: no producer can attach again, and waiting says so at once rather than
    // at its deadline.
    CHECK(consumer.wait_for_peer(8s) == Status::end_of_stream);
    CHECK(consumer.wait_for_peer(-1ns) == Status::end_of_stream);
}

TEST_CASE("a producer waits for a replacement consumer, which resumes where the last released") {
    const std::string name = unique_name("peer-consumer");
    auto producer = Producer::attach(name, slow_backstop());
    CHECK(producer.wait_for_peer(10ms) == Status::timed_out);

    Child first([name] {
        auto consumer = Consumer::attach(name);
        ReadableSegment in;
        if (consumer.read_for(in, 20s) != Status::ok || number_of(in) != 0) return 1;
        if (consumer.release() != Status::ok) return 2;
        ::_exit(0);  // dies without a clean detach; it released segment 0
        return 0;
    });
    REQUIRE(publish_numbers(producer, 0, 1) == 0);
    REQUIRE(first.exit_code(30s) == 0);
    // Fill the ring (3 free after the release): the producer needs a new consumer now.
    REQUIRE(publish_numbers(producer, 1, 4) == 0);
    WritableSegment out;
    CHECK(producer.try_acquire(out) == Status::would_block);
    CHECK_FALSE(producer.consumer_alive());
    CHECK(producer.wait_for_peer(20ms) == Status::timed_out);

    SharedBlock<std::atomic<int>> go;
    Child second([name, &go] {
        auto consumer = Consumer::attach(name);
        if (!wait_for_flag(*go, 1, 4s)) return 4;  // attached until the producer saw it, at most 4 s
        ReadableSegment in;
        for (std::uint64_t expected = 1; expected < 8; ++expected) {
            if (consumer.read_for(in, 20s) != Status::ok) return 5;
            if (number_of(in) != expected) return 6;
        }
        return consumer.read_for(in, 20s) == Status::end_of_stream ? 0 : 7;
    });
    CHECK(producer.wait_for_peer(8s) == Status::ok);
    CHECK(producer.consumer_alive());
    go->store(1);
    REQUIRE(publish_numbers(producer, 5, 3) == 0);
    CHECK(producer.end_stream() == Status::ok);
    CHECK(second.exit_code(30s) == 0);
}

TEST_CASE("a peer that attaches and goes away before the waiter looks is reported, not missed") {
    const std::string name = unique_name("peer-came-and-went");
    SharedBlock<std::atomic<int>> waiting;
    Child waiter([name, &waiting] {
        auto consumer = Consumer::attach(name, slow_backstop());
        waiting->store(1);
        Status status = consumer.wait_for_peer(8s);
        CHILD_EXPECT(status == Status::peer_died);
        CHILD_EXPECT(consumer.last_error().find("attached and went away again") != std::string::npos);
        return 0;
    });
    REQUIRE(wait_for_flag(*waiting, 1));
    // Stop the waiter once it sleeps; a producer attaches (waking it) and dies while it is
    // stopped, so that when it runs again the producer is gone: only its attach count tells.
    REQUIRE(eventually([&] { return inspect(name).consumer.sleeping; }));
    waiter.kill(SIGSTOP);
    Child producer([name] {
        auto p = Producer::attach(name, geometry(4096, 4));
        ::_exit(0);
        return 0;
    });
    CHECK(producer.exit_code(30s) == 0);
    waiter.kill(SIGCONT);
    CHECK(waiter.exit_code(30s) == 0);
    remove_channel(name, true);
}

TEST_CASE("wait_for_peer returns interrupted when a signal handler runs") {
    const std::string name = unique_name("peer-signal");
    SharedBlock<std::atomic<int>> waiting;
    Child waiter([name, &waiting] {
        struct sigaction action {};
        action.sa_handler = on_usr1_peer;
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0;  // no SA_RESTART: the futex wait returns EINTR
        ::sigaction(SIGUSR1, &action, nullptr);
        auto consumer = Consumer::attach(name, slow_backstop());
        waiting->store(1);
        Status status = consumer.wait_for_peer(-1ns);  // no producer ever comes
        CHILD_EXPECT(status == Status::interrupted);
        CHILD_EXPECT(g_handled > 0);
        return 0;
    });
    REQUIRE(wait_for_flag(*waiting, 1));
    // A signal that lands before the child sleeps is missed (its wait goes on): re-send until it
    // exits. The verdict is its exit code.
    int code = -1;
    for (int i = 0; i < 4000 && code == -1; ++i) {
        waiter.kill(SIGUSR1);
        auto status = waiter.wait(5ms);
        if (status) code = WIFEXITED(*status) ? WEXITSTATUS(*status) : -(100 + WTERMSIG(*status));
    }
    CHECK(code == 0);
    remove_channel(name, true);
}

}  // TEST_SUITE("peer")

// --- a peer refused for its framing (raw bytes / records) ----------------------------------------

TEST_SUITE("peer") {

TEST_CASE("a producer waiting for credits learns that its consumer was refused for its framing") {
    const std::string name = unique_name("peer-framing-consumer");
    auto producer = Producer::attach(name, geometry(4096, 4));  // raw bytes
    WritableSegment out;
    for (int i = 0; i < 4; ++i) {
        REQUIRE(producer.try_acquire(out) == Status::ok);
        REQUIRE(producer.publish(8) == Status::ok);
    }
    Child refused([name] {
        ChannelOptions records;
        records.framing = Framing::records;
        try {
            auto consumer = Consumer::attach(name, records);
        } catch (const Error& error) {
            return error.code() == Errc::framing_mismatch ? 0 : 2;
        }
        return 1;
    });
    CHECK(refused.exit_code(30s) == 0);
    CHECK(producer.info().framing_refusals == 1);
    // The wait ends at its next liveness check (100 ms) with the reason, not at its deadline.
    CHECK(producer.acquire_for(out, 25s) == Status::incompatible);
    CHECK_MESSAGE(producer.last_error().find("a consumer was refused: it asked for records, the channel carries raw bytes") !=
                      std::string::npos,
                  producer.last_error());
    // Reported once: a consumer of the right framing may still come.
    CHECK(producer.try_acquire(out) == Status::would_block);
    remove_channel(name, true);
}

TEST_CASE("a consumer waiting for data learns that its producer was refused for its framing") {
    const std::string name = unique_name("peer-framing-producer");
    ChannelOptions options = geometry(4096, 4);
    options.framing = Framing::records;
    auto consumer = Consumer::attach(name, options);
    Child refused([name] {
        try {
            auto producer = Producer::attach(name);  // raw bytes
        } catch (const Error& error) {
            return error.code() == Errc::framing_mismatch ? 0 : 2;
        }
        return 1;
    });
    CHECK(refused.exit_code(30s) == 0);
    ReadableSegment in;
    CHECK(consumer.read_for(in, 25s) == Status::incompatible);
    CHECK_MESSAGE(consumer.last_error().find("a producer was refused: it asked for raw bytes, the channel carries records") !=
                      std::string::npos,
                  consumer.last_error());
    remove_channel(name, true);
}

TEST_CASE("a side refused while a live process holds it leaves no mark") {
    const std::string name = unique_name("peer-framing-held");
    auto producer = Producer::attach(name, geometry(4096, 4));
    auto consumer = Consumer::attach(name);
    Child refused([name] {
        ChannelOptions records;
        records.framing = Framing::records;
        try {
            auto second = Consumer::attach(name, records);
        } catch (const Error& error) {
            return error.code() == Errc::framing_mismatch ? 0 : 2;
        }
        return 1;
    });
    CHECK(refused.exit_code(30s) == 0);
    CHECK(producer.info().framing_refusals == 0);  // the live consumer is not told to go
}

}  // TEST_SUITE("peer")
