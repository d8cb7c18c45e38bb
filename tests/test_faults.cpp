// SPDX-License-Identifier: Apache-2.0
// Bad shared-memory contents: every header field checked against the file, every segment checked
// before use, a truncated file, and a writer that mutates the header while others read it. A
// fault is a clear error (an Error at attach, Status::corrupt on the hot path), never a crash.
// The calls that could crash run in child processes, so that a signal fails the test instead of
// killing the test runner.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include <doctest/doctest.h>

#include <optional>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using shmchan::ChannelOptions;
using shmchan::Consumer;
using shmchan::Errc;
using shmchan::Producer;
using shmchan::ReadableSegment;
using shmchan::Status;
using shmchan::WritableSegment;
namespace test = shmchan::test;

namespace {

constexpr std::uint32_t kSize = 4096;
constexpr std::uint32_t kCount = 4;

// A channel with `published` segments of the pattern and nobody attached.
std::string make_channel(const char* stem, int published = 0) {
    std::string name = test::unique_name(stem);
    auto producer = Producer::attach(name, test::geometry(kSize, kCount));
    for (int i = 0; i < published; ++i) {
        WritableSegment out;
        REQUIRE(producer.acquire(out) == Status::ok);
        test::fill_segment(out.payload, static_cast<std::uint64_t>(i));
        REQUIRE(producer.publish(producer.payload_capacity()) == Status::ok);
    }
    return name;
}

// Runs every opening call on the channel in a child and returns a bit set of what happened:
// each call must throw an Error with `expected` (or one of `also`), and no signal may occur.
// Returns the child's exit code (0: all as expected).
int expect_open_errors(const std::string& name, std::error_code expected,
                       std::error_code also = {}) {
    test::Child child([&] {
        ChannelOptions options;
        options.ready_timeout = 200ms;
        auto matches = [&](const std::optional<std::error_code>& code) {
            bool ok = code && (*code == expected || (also && *code == also));
            if (!ok) std::fprintf(stderr, "%s: got %s, expected %s\n", name.c_str(),
                                  test::describe(code).c_str(), test::describe(expected).c_str());
            return ok;
        };
        CHILD_EXPECT(matches(test::error_of([&] { Consumer::attach(name, options); })));
        CHILD_EXPECT(matches(test::error_of([&] { Producer::attach(name, options); })));
        CHILD_EXPECT(matches(test::error_of([&] { shmchan::inspect(name, options); })));
        return 0;
    });
    return child.exit_code(60s);
}

std::error_code code(Errc e) { return make_error_code(e); }

}  // namespace

TEST_SUITE("faults") {

TEST_CASE("a wrong magic is bad_magic") {
    std::string name = make_channel("magic");
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    file.poke64(test::offsets::magic, 0x0123456789abcdefull);
    CHECK(expect_open_errors(name, code(Errc::bad_magic)) == 0);
    // The message names the channel.
    std::string message;
    try {
        Consumer::attach(name);
    } catch (const shmchan::Error& error) {
        message = error.what();
    }
    CHECK(message.find(name) != std::string::npos);
    MESSAGE("bad magic: " << message);
    // A file that is all zeros past its creator (no creator alive) is not a channel either; it
    // must give an error, not a hang (ready_timeout bounds it).
}

TEST_CASE("a wrong ABI version is bad_version") {
    std::string name = make_channel("version");
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    file.poke32(test::offsets::abi_version, shmchan::layout::kAbiVersion + 1);
    CHECK(expect_open_errors(name, code(Errc::bad_version)) == 0);
    file.poke32(test::offsets::abi_version, 0xffffffffu);
    CHECK(expect_open_errors(name, code(Errc::bad_version)) == 0);
}

TEST_CASE("identity fields that disagree with the file are corrupt") {
    struct Case {
        const char* what;
        std::size_t offset;
        int width;
        std::uint64_t value;
    };
    const Case cases[] = {
        {"segment_count enlarged (geometry bigger than the file)", test::offsets::segment_count, 32, kCount + 1},
        {"segment_count huge", test::offsets::segment_count, 32, 1u << 20},
        {"segment_count zero", test::offsets::segment_count, 32, 0},
        {"segment_size enlarged", test::offsets::segment_size, 32, 2 * kSize},
        {"segment_size not a multiple of 4096", test::offsets::segment_size, 32, kSize + 8},
        {"segment_size smaller than a segment header", test::offsets::segment_size, 32, 32},
        {"header_bytes wrong", test::offsets::header_bytes, 32, shmchan::layout::kHeaderBytes + 4096},
        {"header_bytes zero", test::offsets::header_bytes, 32, 0},
        {"total_bytes wrong", test::offsets::total_bytes, 64, shmchan::layout::region_bytes(kSize, kCount) + 4096},
        {"total_bytes huge", test::offsets::total_bytes, 64, ~0ull},
        {"consumer_slots beyond the maximum", test::offsets::consumer_slots, 32, 1000},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        std::string name = make_channel("identity");
        {
            test::MappedFile file(test::path_of(name));
            REQUIRE(file.ok());
            if (c.width == 32) file.poke32(c.offset, static_cast<std::uint32_t>(c.value));
            else file.poke64(c.offset, c.value);
        }
        CHECK(expect_open_errors(name, code(Errc::corrupt)) == 0);
    }
    // An unknown framing value: corrupt (framing_mismatch is accepted too, with a note).
    std::string name = make_channel("framing");
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke32(test::offsets::framing, 7);
    }
    CHECK(expect_open_errors(name, code(Errc::corrupt), code(Errc::framing_mismatch)) == 0);
}

TEST_CASE("a truncated file is an attach error, never a SIGBUS") {
    const std::uint64_t truncations[] = {
        0, 64, 2048, shmchan::layout::kHeaderBytes, shmchan::layout::kHeaderBytes + kSize,
        shmchan::layout::region_bytes(kSize, kCount) - 1,
    };
    for (std::uint64_t size : truncations) {
        CAPTURE(size);
        std::string name = make_channel("trunc", 2);
        REQUIRE(::truncate(test::path_of(name).c_str(), static_cast<off_t>(size)) == 0);
        // Exit code bits: 1 consumer attach did not throw, 2 producer attach did not throw,
        // 4 inspect did not throw; a signal shows as a negative code.
        test::Child child([&] {
            ChannelOptions options;
            options.ready_timeout = 200ms;
            int result = 0;
            auto c = test::error_of([&] { Consumer::attach(name, options); });
            if (!c) result |= 1;
            auto p = test::error_of([&] { Producer::attach(name, options); });
            if (!p) result |= 2;
            // An empty file is what a creator's file looks like before it reserves the size:
            // inspect() reports it as not ready (abi_version 0, no live creator) for the tool to
            // judge; any other truncation fails validation.
            std::optional<shmchan::ChannelInfo> info;
            auto i = test::error_of([&] { info = shmchan::inspect(name, options); });
            bool reported_not_ready = size == 0 && info && info->abi_version == 0 && !info->creator_alive;
            if (!i && !reported_not_ready) result |= 4;
            std::fprintf(stderr, "truncated to %llu: consumer %s, producer %s, inspect %s\n",
                         (unsigned long long)size, test::describe(c).c_str(), test::describe(p).c_str(),
                         test::describe(i).c_str());
            return result;
        });
        int exit_code = child.exit_code(60s);
        CHECK_MESSAGE(exit_code >= 0, "exit " << exit_code << " (-107 is SIGBUS, -111 SIGSEGV, -1 hung)");
        CHECK_MESSAGE((exit_code < 0 || (exit_code & 1) == 0), "Consumer::attach accepted a truncated file");
        CHECK_MESSAGE((exit_code < 0 || (exit_code & 2) == 0), "Producer::attach accepted a truncated file");
        // inspect() throws for a file shorter than its geometry; an empty one it reports as
        // not ready with no live creator.
        CHECK_MESSAGE((exit_code < 0 || (exit_code & 4) == 0), "inspect() accepted a truncated file");
    }
}

TEST_CASE("a published position beyond released + segment_count is corrupt") {
    std::string name = make_channel("ahead", 1);
    auto consumer = Consumer::attach(name);
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke64(test::offsets::published, file.peek64(test::offsets::released) + kCount + 5);
    }
    ReadableSegment in;
    Status status = consumer.try_read(in);
    CHECK(status == Status::corrupt);
    CHECK_FALSE(consumer.last_error().empty());
    MESSAGE("last_error: " << consumer.last_error());
    // The blocking calls do not hang on it either.
    CHECK(consumer.read_for(in, 2s) == Status::corrupt);
    CHECK(consumer.read(in) == Status::corrupt);
}

TEST_CASE("a published position that goes backwards is corrupt") {
    std::string name = make_channel("backwards", 3);
    auto consumer = Consumer::attach(name);
    ReadableSegment in;
    for (int i = 0; i < 3; ++i) {
        REQUIRE(consumer.try_read(in) == Status::ok);
        REQUIRE(consumer.release() == Status::ok);
    }
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke64(test::offsets::published, 1);  // released is 3
    }
    Status status = consumer.try_read(in);
    CHECK(status == Status::corrupt);
    CHECK_FALSE(consumer.last_error().empty());
}

TEST_CASE("a segment whose committed_bytes exceed its capacity is corrupt") {
    std::string name = make_channel("committed", 1);
    auto consumer = Consumer::attach(name);
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.segment(0, kSize).committed_bytes = kSize;  // capacity is kSize - 64
    }
    ReadableSegment in;
    CHECK(consumer.try_read(in) == Status::corrupt);
    CHECK_FALSE(consumer.last_error().empty());
    MESSAGE("last_error: " << consumer.last_error());
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.segment(0, kSize).committed_bytes = 0xffffffffu;
    }
    CHECK(consumer.try_read(in) == Status::corrupt);
}

TEST_CASE("a segment with the wrong sequence is corrupt") {
    std::string name = make_channel("sequence", 2);
    auto consumer = Consumer::attach(name);
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.segment(1, kSize).sequence = 77;
    }
    ReadableSegment in;
    REQUIRE(consumer.try_read(in) == Status::ok);  // segment 0 is fine
    CHECK(in.sequence == 0);
    REQUIRE(consumer.release() == Status::ok);
    CHECK(consumer.try_read(in) == Status::corrupt);
    CHECK_FALSE(consumer.last_error().empty());
    MESSAGE("last_error: " << consumer.last_error());
}

TEST_CASE("unknown segment flags are corrupt") {
    std::string name = make_channel("segflags", 1);
    auto consumer = Consumer::attach(name);
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.segment(0, kSize).flags = 0x80000000u;
    }
    ReadableSegment in;
    Status status = consumer.try_read(in);
    CHECK(status == Status::corrupt);
}

TEST_CASE("a writer that flips header bytes never crashes readers") {
    const std::string name = make_channel("flipper", 2);
    const auto run_for = test::kSanitized ? 3s : 3s;
    struct Shared {
        test::Barrier start;
        std::atomic<int> stop{0};
        std::atomic<std::uint64_t> flips{0};
        std::atomic<std::uint64_t> calls{0}, errors{0}, attached{0}, statuses{0}, bad_status{0};
        std::atomic<std::uint64_t> empty_messages{0};
    };
    test::SharedBlock<Shared> shared;
    // The writer: puts an interesting value into a header field, lets it be seen, restores it.
    test::Child writer([&] {
        std::mt19937_64 random(12345);
        struct Field {
            std::size_t offset;
            int width;
        };
        const Field fields[] = {
            {test::offsets::magic, 64},          {test::offsets::abi_version, 32},
            {test::offsets::header_bytes, 32},   {test::offsets::segment_size, 32},
            {test::offsets::segment_count, 32},  {test::offsets::framing, 32},
            {test::offsets::flags, 32},          {test::offsets::max_record_bytes, 64},
            {test::offsets::total_bytes, 64},    {test::offsets::consumer_slots, 32},
            {test::offsets::published, 64},      {test::offsets::end_of_stream, 32},
            {test::offsets::released, 64},       {test::offsets::producer_pid, 32},
            {test::offsets::producer_start_time, 64},
            {shmchan::layout::kHeaderBytes + 0, 32},  // segment 0: committed_bytes
            {shmchan::layout::kHeaderBytes + 16, 64}, // segment 0: sequence
            {shmchan::layout::kHeaderBytes + 8, 32},  // segment 0: flags
        };
        const std::uint64_t values[] = {0, 1, 2, 3, 4, 7, 63, 64, 4095, 4096, 4097, 8192, 1u << 20,
                                        (1u << 20) + 1, 1ull << 30, 0x7fffffffull, 0xffffffffull,
                                        1ull << 40, 0x8000000000000000ull, ~0ull};
        shared->start.arrive_and_wait(2);
        while (shared->stop.load() == 0) {
            // Re-map now and then: a reader may have replaced the file.
            test::MappedFile file(test::path_of(name));
            if (!file.ok()) {
                ::sched_yield();
                continue;
            }
            for (int i = 0; i < 2000 && shared->stop.load() == 0; ++i) {
                const Field& field = fields[random() % std::size(fields)];
                if (field.offset + field.width / 8 > file.size()) continue;
                std::uint64_t value = values[random() % std::size(values)];
                if (random() % 4 == 0) value = random();
                if (field.width == 32) {
                    std::uint32_t old = file.peek32(field.offset);
                    file.poke32(field.offset, static_cast<std::uint32_t>(value));
                    for (int spin = 0; spin < static_cast<int>(random() % 2000); ++spin) asm volatile("" ::: "memory");
                    file.poke32(field.offset, old);
                } else {
                    std::uint64_t old = file.peek64(field.offset);
                    file.poke64(field.offset, value);
                    for (int spin = 0; spin < static_cast<int>(random() % 2000); ++spin) asm volatile("" ::: "memory");
                    file.poke64(field.offset, old);
                }
                shared->flips.fetch_add(1, std::memory_order_relaxed);
            }
        }
        return 0;
    });
    // The reader: inspect, attach either side, try the hot-path calls; everything must return.
    test::Child reader([&] {
        ChannelOptions options;
        options.ready_timeout = 50ms;
        options.liveness_interval = 10ms;
        shared->start.arrive_and_wait(2);
        auto until = std::chrono::steady_clock::now() + run_for;
        auto note_error = [&](const shmchan::Error& error) {
            shared->errors.fetch_add(1);
            if (std::string(error.what()).empty()) shared->empty_messages.fetch_add(1);
        };
        auto check_status = [&](Status status) {
            shared->statuses.fetch_add(1);
            switch (status) {
                case Status::ok: case Status::would_block: case Status::timed_out:
                case Status::end_of_stream: case Status::peer_died: case Status::corrupt:
                case Status::invalid_call:
                    break;
                default: shared->bad_status.fetch_add(1);
            }
        };
        for (std::uint64_t iteration = 0; std::chrono::steady_clock::now() < until; ++iteration) {
            shared->calls.fetch_add(1);
            try {
                auto info = shmchan::inspect(name, options);
                (void)info;
            } catch (const shmchan::Error& error) {
                note_error(error);
            }
            try {
                auto consumer = Consumer::attach(name, options);
                shared->attached.fetch_add(1);
                for (int i = 0; i < 4; ++i) {
                    ReadableSegment in;
                    Status status = consumer.try_read(in);
                    check_status(status);
                    if (status == Status::ok) {
                        // Touch every byte of the view: it must be inside the mapping.
                        std::uint64_t sum = 0;
                        for (std::byte b : in.payload) sum += static_cast<unsigned>(b);
                        asm volatile("" ::"r"(sum));
                        check_status(consumer.release());
                    }
                }
                check_status(consumer.read_for(*std::make_unique<ReadableSegment>(), 1ms));
                (void)consumer.info();
            } catch (const shmchan::Error& error) {
                note_error(error);
            }
            if (iteration % 4 == 0) {
                try {
                    auto producer = Producer::attach(name, options);
                    shared->attached.fetch_add(1);
                    WritableSegment out;
                    Status status = producer.try_acquire(out);
                    check_status(status);
                    if (status == Status::ok) {
                        std::memset(out.payload.data(), 0x5a, out.payload.size());
                        check_status(producer.publish(static_cast<std::uint32_t>(out.payload.size())));
                    }
                } catch (const shmchan::Error& error) {
                    note_error(error);
                }
            }
        }
        return 0;
    });
    int reader_exit = reader.exit_code(120s);
    shared->stop.store(1);
    int writer_exit = writer.exit_code(30s);
    CHECK_MESSAGE(reader_exit == 0, "reader exit " << reader_exit << " (-1: hung; -107 SIGBUS; -111 SIGSEGV; -106 SIGABRT)");
    CHECK(writer_exit == 0);
    CHECK(shared->calls.load() > 0);
    CHECK(shared->bad_status.load() == 0);
    CHECK(shared->empty_messages.load() == 0);
    MESSAGE("flips " << shared->flips.load() << "; reader iterations " << shared->calls.load() << ", errors "
                     << shared->errors.load() << ", attaches " << shared->attached.load() << ", statuses "
                     << shared->statuses.load());
}

}  // TEST_SUITE
