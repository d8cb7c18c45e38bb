// SPDX-License-Identifier: Apache-2.0
// shm/futex: wait and wake on a 32-bit word, across processes on a MAP_SHARED file mapping.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "shm/futex.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using shmchan::shm::FutexResult;
using shmchan::shm::futex_wait;
using shmchan::shm::futex_wake;
namespace test = shmchan::test;

namespace {

// A file-backed shared mapping of one page (not anonymous memory: the futex must key on the file's
// page so that independent mappings in two processes meet).
struct FileWord {
    int fd = -1;
    void* page = nullptr;
    explicit FileWord(const std::string& path, bool create) {
        fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
        if (fd < 0) return;
        if (create && ::ftruncate(fd, 4096) != 0) return;
        void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) page = p;
    }
    ~FileWord() {
        if (page) ::munmap(page, 4096);
        if (fd >= 0) ::close(fd);
    }
    std::uint32_t& word(std::size_t index) { return static_cast<std::uint32_t*>(page)[index]; }
};

}  // namespace

TEST_SUITE("futex") {

TEST_CASE("futex_wait returns value_changed when the word differs") {
    std::uint32_t word = 5;
    FutexResult result = futex_wait(word, 4, 1s);
    CHECK(result == FutexResult::value_changed);
}

TEST_CASE("futex_wait times out when nobody wakes it") {
    std::uint32_t word = 0;
    FutexResult result = FutexResult::interrupted;
    auto start = std::chrono::steady_clock::now();
    for (int attempt = 0; attempt < 100 && (result == FutexResult::interrupted || result == FutexResult::woken); ++attempt) {
        result = futex_wait(word, 0, 20ms);
    }
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(result == FutexResult::timed_out);
    MESSAGE("20 ms futex wait took " << std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count() << " us");
    // A zero timeout does not sleep either.
    CHECK(futex_wait(word, 0, 0ns) == FutexResult::timed_out);
}

TEST_CASE("futex_wake with no waiter wakes nobody") {
    std::uint32_t word = 0;
    CHECK(futex_wake(word, 1) == 0);
}

TEST_CASE("a wake from another process reaches a waiter on a MAP_SHARED file mapping") {
    const std::string path = test::channel_directory() + "/futex-" + test::unique_name("word");
    FileWord parent_map(path, true);
    REQUIRE(parent_map.page != nullptr);
    std::atomic_ref<std::uint32_t>(parent_map.word(0)).store(0);

    test::SharedBlock<std::atomic<int>> result_code;
    result_code->store(-1);
    // The child maps the file itself (its own mapping, at its own address) and sleeps on word 0.
    test::Child child([&] {
        FileWord mine(path, false);
        CHILD_EXPECT(mine.page != nullptr);
        FutexResult result = FutexResult::interrupted;
        while (result == FutexResult::interrupted) result = futex_wait(mine.word(0), 0, 30s);
        result_code->store(static_cast<int>(result));
        return 0;
    });
    // futex_wake returns the number of waiters it woke: 1 proves that the child was asleep on
    // the same futex key (the file page), reached through a different mapping. The word is not
    // changed, so the child can only have returned because of this wake (or its 30 s timeout).
    int woken = 0;
    bool reached = test::eventually([&] {
        woken = futex_wake(parent_map.word(0), 1);
        return woken != 0;
    }, 20s);
    CHECK(reached);
    CHECK(woken == 1);
    CHECK(child.exit_code(30s) == 0);
    CHECK(result_code->load() == static_cast<int>(FutexResult::woken));
    ::unlink(path.c_str());
}

}  // TEST_SUITE
