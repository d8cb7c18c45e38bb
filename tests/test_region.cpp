// SPDX-License-Identifier: Apache-2.0
// Named regions as channels see them: names, file modes, unsafe files, reserved size, and races
// between processes that create, open and remove one name.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "shm/region.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using shmchan::Consumer;
using shmchan::Errc;
using shmchan::Producer;
namespace test = shmchan::test;

TEST_SUITE("region") {

TEST_CASE("channel names are validated") {
    for (std::string good : {std::string("a"), std::string("Ticks-2024_v1.0"), std::string("..a"),
                             std::string("a..b"), std::string(200, 'x')}) {
        CHECK_MESSAGE(shmchan::shm::is_valid_name(good), good);
    }
    const std::string bad_names[] = {"", ".", "..", "a/b", "a b", std::string(201, 'x'), "../x",
                                     "/abs", "tab\tname", "é", "a\nb"};
    for (const std::string& bad : bad_names) {
        CAPTURE(bad);
        CHECK_FALSE(shmchan::shm::is_valid_name(bad));
        SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(bad), Errc::bad_name);
        SHMCHAN_CHECK_THROWS_CODE(Producer::attach(bad), Errc::bad_name);
        SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(bad), Errc::bad_name);
        SHMCHAN_CHECK_THROWS_CODE(shmchan::remove_channel(bad), Errc::bad_name);
    }
    // A valid name of the maximum length works end to end.
    std::string longest = test::unique_name("n");
    longest += std::string(200 - longest.size(), 'z');
    {
        auto consumer = Consumer::attach(longest, test::geometry(4096, 2));
        CHECK(test::file_exists(test::path_of(longest)));
    }
    CHECK(shmchan::remove_channel(longest) == shmchan::RemoveResult::removed);
}

TEST_CASE("files are created 0600 by default and with the mode asked for, whatever the umask") {
    const std::string name = test::unique_name("mode");
    {
        auto producer = Producer::attach(name, test::geometry(4096, 2));
        struct stat st {};
        REQUIRE(::stat(test::path_of(name).c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(S_ISREG(st.st_mode));
        CHECK(st.st_uid == ::geteuid());
    }
    CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::removed);

    const std::string shared = test::unique_name("mode660");
    mode_t old_mask = ::umask(077);  // would strip the group bits if the library relied on open's mode
    {
        shmchan::ChannelOptions options = test::geometry(4096, 2);
        options.mode = 0660;
        auto producer = Producer::attach(shared, options);
        struct stat st {};
        REQUIRE(::stat(test::path_of(shared).c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0660);
    }
    ::umask(old_mask);
    CHECK(shmchan::remove_channel(shared) == shmchan::RemoveResult::removed);
}

TEST_CASE("a symbolic link is refused, dangling or not") {
    const std::string target = test::unique_name("target");
    { auto producer = Producer::attach(target, test::geometry(4096, 2)); }
    const std::string link = test::unique_name("link");
    REQUIRE(::symlink(test::path_of(target).c_str(), test::path_of(link).c_str()) == 0);
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(link), Errc::unsafe_file);
    SHMCHAN_CHECK_THROWS_CODE(Producer::attach(link), Errc::unsafe_file);
    SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(link), Errc::unsafe_file);
    // The target was not touched through the link.
    auto info = shmchan::inspect(target);
    CHECK_FALSE(info.consumer.attached);
    CHECK(info.consumer.attach_count == 0);

    const std::string dangling = test::unique_name("dangling");
    const std::string nowhere = test::channel_directory() + "/nowhere-" + dangling;
    REQUIRE(::symlink(nowhere.c_str(), test::path_of(dangling).c_str()) == 0);
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(dangling), Errc::unsafe_file);
    CHECK_FALSE(test::file_exists(nowhere));  // nothing created through the link
    ::unlink(test::path_of(link).c_str());
    ::unlink(test::path_of(dangling).c_str());
}

TEST_CASE("a world-writable file is refused") {
    const std::string name = test::unique_name("worldw");
    { auto producer = Producer::attach(name, test::geometry(4096, 2)); }
    REQUIRE(::chmod(test::path_of(name).c_str(), 0666) == 0);
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name), Errc::unsafe_file);
    SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name), Errc::unsafe_file);
    SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(name), Errc::unsafe_file);
    REQUIRE(::chmod(test::path_of(name).c_str(), 0600) == 0);
    CHECK_NOTHROW(Consumer::attach(name));
}

TEST_CASE("a file of another owner is refused unless that owner is allowed") {
    if (::geteuid() != 0) {
        MESSAGE("not root: cannot chown a file to another user; skipped");
        return;
    }
    const std::string name = test::unique_name("owner");
    { auto producer = Producer::attach(name, test::geometry(4096, 2)); }
    REQUIRE(::chown(test::path_of(name).c_str(), 12345, 12345) == 0);
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name), Errc::unsafe_file);
    SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name), Errc::unsafe_file);
    SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(name), Errc::unsafe_file);
    shmchan::ChannelOptions other = test::geometry(4096, 2);
    other.allowed_owner = 54321;  // allowing somebody else does not help
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, other), Errc::unsafe_file);

    shmchan::ChannelOptions allowed;
    allowed.allowed_owner = 12345;
    CHECK_NOTHROW(shmchan::inspect(name, allowed));
    {
        auto consumer = Consumer::attach(name, allowed);
        CHECK(consumer.info().segment_size == 4096);
    }
}

TEST_CASE("a size larger than the free space is a clear ENOSPC error and leaves no file") {
    struct statvfs fs {};
    REQUIRE(::statvfs(test::channel_directory().c_str(), &fs) == 0);
    // Ask for more than the whole file system (so more than its free space): tmpfs refuses such a
    // fallocate at once, without first allocating (and then freeing) gigabytes of memory.
    const std::uint64_t total = std::uint64_t{fs.f_blocks} * fs.f_frsize;
    const std::uint64_t free_bytes = std::uint64_t{fs.f_bavail} * fs.f_frsize;
    const std::uint32_t segment_size = 1u << 30;
    const std::uint64_t count = total / segment_size + 2;
    MESSAGE("directory " << test::channel_directory() << ": " << (free_bytes >> 20) << " MiB free of "
                         << (total >> 20) << " MiB; asking for " << count << " x 1 GiB");
    REQUIRE(count <= shmchan::layout::kMaxSegmentCount);
    REQUIRE(count * segment_size <= shmchan::layout::kMaxTotalBytes);
    const std::string name = test::unique_name("huge");
    shmchan::ChannelOptions options = test::geometry(segment_size, static_cast<std::uint32_t>(count));
    std::string message;
    auto code = test::error_of([&] {
        try {
            Producer::attach(name, options);
        } catch (const shmchan::Error& error) {
            message = error.what();
            throw;
        }
    });
    CHECK_MESSAGE((code && *code == std::errc::no_space_on_device), test::describe(code));
    MESSAGE("error: " << message);
    CHECK(message.find(name) != std::string::npos);  // names the channel (its path)
    CHECK_FALSE(test::file_exists(test::path_of(name)));
    // The name is usable afterwards.
    CHECK_NOTHROW(Consumer::attach(name, test::geometry(4096, 2)));
}

TEST_CASE("create-or-open raced by 8 processes: one initializes, nobody sees a half-made header") {
    constexpr int kProcesses = 8;
    const int rounds = test::kSanitized ? 8 : 30;
    struct Shared {
        test::Barrier start;
        std::atomic<int> done{0};
        std::atomic<int> attached_producers{0};
        std::atomic<int> attached_consumers{0};
        std::atomic<int> side_taken{0};
        std::atomic<int> other_errors{0};
        std::atomic<int> wrong_geometry_seen{0};
        std::atomic<int> last_errc{0};
    };
    for (int round = 0; round < rounds; ++round) {
        CAPTURE(round);
        const std::string name = test::unique_name("race");
        // Even rounds: 8 producers. Odd rounds: 4 producers and 4 consumers.
        const bool mixed = round % 2 == 1;
        test::SharedBlock<Shared> shared;
        std::vector<test::Child> children;
        for (int i = 0; i < kProcesses; ++i) {
            const bool as_producer = !mixed || i < kProcesses / 2;
            children.emplace_back([&, as_producer] {
                shmchan::ChannelOptions options = test::geometry(8192, 8);
                shared->start.arrive_and_wait(kProcesses);
                std::optional<Producer> producer;
                std::optional<Consumer> consumer;
                try {
                    if (as_producer) {
                        producer.emplace(Producer::attach(name, options));
                        shared->attached_producers.fetch_add(1);
                    } else {
                        consumer.emplace(Consumer::attach(name, options));
                        shared->attached_consumers.fetch_add(1);
                    }
                } catch (const shmchan::Error& error) {
                    if (error.code() == Errc::side_taken) {
                        shared->side_taken.fetch_add(1);
                    } else {
                        shared->other_errors.fetch_add(1);
                        shared->last_errc.store(error.code().value());
                        std::fprintf(stderr, "racer %d: %s\n", (int)::getpid(), error.what());
                    }
                }
                // Whoever won keeps its side until everybody has tried.
                shared->done.fetch_add(1);
                CHILD_EXPECT(test::wait_for_flag(shared->done, kProcesses));
                auto info = shmchan::inspect(name);
                if (info.segment_size != 8192 || info.segment_count != 8 || info.abi_version != shmchan::layout::kAbiVersion) {
                    shared->wrong_geometry_seen.fetch_add(1);
                }
                // Keep holding until every process has inspected.
                shared->done.fetch_add(1);
                CHILD_EXPECT(test::wait_for_flag(shared->done, 2 * kProcesses));
                return 0;
            });
        }
        for (auto& child : children) CHECK(child.exit_code(60s) == 0);
        CHECK(shared->attached_producers.load() == 1);
        CHECK(shared->attached_consumers.load() == (mixed ? 1 : 0));
        CHECK(shared->side_taken.load() == kProcesses - 1 - (mixed ? 1 : 0));
        CHECK_MESSAGE(shared->other_errors.load() == 0, "last error code " << shared->last_errc.load());
        CHECK(shared->wrong_geometry_seen.load() == 0);
        auto info = shmchan::inspect(name);
        CHECK(info.segment_size == 8192);
        CHECK(info.segment_count == 8);
        CHECK(info.producer.attach_count == 1);
        CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::removed);
    }
}

TEST_CASE("an open racing a removal never ends on an unlinked file") {
    const int iterations = test::kSanitized ? 300 : 2000;
    const std::string name = test::unique_name("rmrace");
    struct Shared {
        test::Barrier start;
        std::atomic<int> attacher_done{0};
        std::atomic<int> attaches{0};
        std::atomic<int> removed{0}, in_use{0}, not_found{0};
        std::atomic<int> orphaned{0};
    };
    test::SharedBlock<Shared> shared;
    test::Child attacher([&] {
        shared->start.arrive_and_wait(2);
        for (int i = 0; i < iterations; ++i) {
            auto consumer = Consumer::attach(name, test::geometry(4096, 2));
            // While we hold the channel, a non-forced remover must leave it alone, so the file at
            // the path must be the one we attached to: inspecting by name sees us attached.
            auto by_name = shmchan::inspect(name);
            auto mine = consumer.info();
            bool same = by_name.consumer.alive && by_name.consumer.pid == ::getpid() &&
                        by_name.consumer.attach_count == mine.consumer.attach_count &&
                        by_name.created_realtime_ns == mine.created_realtime_ns && !mine.removed &&
                        test::file_exists(mine.path);
            if (!same) {
                shared->orphaned.fetch_add(1);
                std::fprintf(stderr, "iteration %d: attached consumer is not on the named file\n", i);
            }
            shared->attaches.fetch_add(1);
        }
        shared->attacher_done.store(1);
        return 0;
    });
    test::Child remover([&] {
        shared->start.arrive_and_wait(2);
        while (shared->attacher_done.load() == 0) {
            switch (shmchan::remove_channel(name)) {
                case shmchan::RemoveResult::removed: shared->removed.fetch_add(1); break;
                case shmchan::RemoveResult::in_use: shared->in_use.fetch_add(1); break;
                case shmchan::RemoveResult::not_found: shared->not_found.fetch_add(1); break;
            }
        }
        return 0;
    });
    CHECK(attacher.exit_code(240s) == 0);
    CHECK(remover.exit_code(60s) == 0);
    CHECK(shared->attaches.load() == iterations);
    CHECK(shared->orphaned.load() == 0);
    MESSAGE("removals: removed " << shared->removed.load() << ", in_use " << shared->in_use.load()
                                 << ", not_found " << shared->not_found.load());
}

TEST_CASE("a forced removal leaves the attached process working and later openers get a fresh file") {
    const std::string name = test::unique_name("force");
    auto consumer = Consumer::attach(name, test::geometry(4096, 2));
    CHECK(shmchan::remove_channel(name) == shmchan::RemoveResult::in_use);
    CHECK(test::file_exists(test::path_of(name)));
    CHECK(shmchan::remove_channel(name, true) == shmchan::RemoveResult::removed);
    CHECK_FALSE(test::file_exists(test::path_of(name)));
    CHECK_NOTHROW(consumer.info());
    shmchan::ReadableSegment segment;
    CHECK(consumer.try_read(segment) == shmchan::Status::would_block);
    auto producer = Producer::attach(name);  // a fresh channel with the default geometry
    CHECK(producer.info().segment_size == shmchan::layout::kDefaultSegmentSize);
    CHECK(producer.info().consumer.attach_count == 0);
}

}  // TEST_SUITE
