// SPDX-License-Identifier: Apache-2.0
// No heap allocation in the records layer's steady state: an operator new hook defined in this
// file (the one replacement in the test binary) counts each thread's allocations.
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include <new>

#include "records_support.hpp"

// ---- Allocation counting ---------------------------------------------------------------------
// The one replacement of the global allocation functions in the test binary (no other test file
// defines one). Each thread counts its own allocations; everything is forwarded to malloc/free.
namespace {
thread_local std::uint64_t t_allocations = 0;

void* counted_alloc(std::size_t size) {
    ++t_allocations;
    return std::malloc(size ? size : 1);
}
void* counted_aligned_alloc(std::size_t size, std::align_val_t alignment) {
    ++t_allocations;
    void* memory = nullptr;
    std::size_t align = std::max(static_cast<std::size_t>(alignment), sizeof(void*));
    if (::posix_memalign(&memory, align, size ? size : 1) != 0) return nullptr;
    return memory;
}
}  // namespace

void* operator new(std::size_t size) {
    if (void* memory = counted_alloc(size)) return memory;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
    if (void* memory = counted_alloc(size)) return memory;
    throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new(std::size_t size, std::align_val_t alignment) {
    if (void* memory = counted_aligned_alloc(size, alignment)) return memory;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
    if (void* memory = counted_aligned_alloc(size, alignment)) return memory;
    throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    return counted_aligned_alloc(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
    return counted_aligned_alloc(size, alignment);
}
// GCC sees free() of memory from operator new once the two are inlined together; that is the
// point of this replacement.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete[](void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::size_t) noexcept { std::free(memory); }
void operator delete(void* memory, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete[](void* memory, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete(void* memory, std::align_val_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::align_val_t) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t, std::align_val_t) noexcept { std::free(memory); }
void operator delete[](void* memory, std::size_t, std::align_val_t) noexcept { std::free(memory); }
void operator delete(void* memory, std::align_val_t, const std::nothrow_t&) noexcept { std::free(memory); }
void operator delete[](void* memory, std::align_val_t, const std::nothrow_t&) noexcept { std::free(memory); }

TEST_SUITE("records") {

// ---- 9. No allocation in steady state ---------------------------------------------------------------

TEST_CASE("steady-state writes and reads make no heap allocation") {
    const std::string name = test::unique_name("rec-alloc");
    auto options = records_options();  // default geometry
    constexpr std::uint64_t kWarmup = 5000, kMeasured = 100000;
    struct Pod {
        std::uint64_t index;
        std::uint64_t check;
        double value;
    };
    std::atomic<std::uint64_t> writer_allocations{~0ull}, reader_allocations{~0ull};
    std::atomic<int> writer_failures{0}, reader_failures{0};
    std::atomic<std::uint64_t> reader_checked{0};
    std::atomic<bool> writer_attached{false};

    std::thread writer_thread([&] {
        auto writer = RecordWriter::attach(name, options);
        writer_attached.store(true);
        std::byte bytes[64];
        std::uint64_t before = 0;
        for (std::uint64_t i = 0; i < kWarmup + kMeasured; ++i) {
            if (i == kWarmup) before = t_allocations;
            Status status;
            switch (i % 3) {
                case 0:
                    fill_record(bytes, sizeof bytes, i);
                    status = writer.write(std::span<const std::byte>(bytes, sizeof bytes));
                    break;
                case 1: {
                    std::span<std::byte> room;
                    status = writer.reserve(48, room);
                    if (status == Status::ok) {
                        fill_record(room.data(), 40, i);
                        status = writer.commit(40);
                    }
                    break;
                }
                default: status = writer.write_value(Pod{i, test::mix(i), 0.5 * static_cast<double>(i)}); break;
            }
            if (status != Status::ok) {
                ++writer_failures;
                break;
            }
        }
        writer_allocations.store(t_allocations - before);
        if (writer.end_stream() != Status::ok) ++writer_failures;
    });
    std::thread reader_thread([&] {
        while (!writer_attached.load()) std::this_thread::yield();
        auto reader = RecordReader::attach(name, options);
        std::uint64_t before = 0;
        for (std::uint64_t i = 0; i < kWarmup + kMeasured; ++i) {
            if (i == kWarmup) before = t_allocations;
            bool good;
            if (i % 3 == 2) {
                Pod pod{};
                good = reader.read_value(pod) == Status::ok && pod.index == i && pod.check == test::mix(i);
            } else {
                Record record;
                good = reader.read(record) == Status::ok &&
                       check_record(record.bytes, i, i % 3 == 0 ? 64 : 40).empty();
            }
            if (!good) {
                ++reader_failures;
                break;
            }
            reader_checked.fetch_add(1, std::memory_order_relaxed);
        }
        reader_allocations.store(t_allocations - before);
        Record record;
        if (reader.read(record) != Status::end_of_stream) ++reader_failures;
        reader.remove_channel();
    });
    writer_thread.join();
    reader_thread.join();
    CHECK(writer_failures.load() == 0);
    CHECK(reader_failures.load() == 0);
    CHECK(reader_checked.load() == kWarmup + kMeasured);
    CHECK(writer_allocations.load() == 0);
    CHECK(reader_allocations.load() == 0);
}

TEST_CASE("steady-state write_batch and read_batch make no heap allocation") {
    const std::string name = test::unique_name("rec-alloc-batch");
    auto options = records_options();
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    constexpr std::size_t kSize = 64, kCount = 600;  // a long run: framed in the writer's stage buffer
    std::vector<std::byte> bytes(kSize * kCount);
    std::uint64_t next = 0, bad = 0;
    auto take = [&](const Record& record) {
        if (index_of(record.bytes) != next++) ++bad;
    };
    std::uint64_t before = 0;
    for (int round = 0; round < 200; ++round) {
        if (round == 10) before = t_allocations;  // the stage buffer is allocated in the warm-up
        for (std::size_t k = 0; k < kCount; ++k) {
            const std::uint64_t index = static_cast<std::uint64_t>(round) * kCount + k;
            std::memcpy(bytes.data() + k * kSize, &index, sizeof index);
        }
        std::size_t written = 0, got = 0, delivered = 0;
        REQUIRE(writer.write_batch(bytes, kSize, written) == Status::ok);
        while (got < kCount) {
            REQUIRE(reader.read_batch(take, kCount, delivered) == Status::ok);
            got += delivered;
        }
    }
    CHECK(t_allocations - before == 0);
    CHECK(bad == 0);
    CHECK(next == 200 * kCount);
    CHECK(writer.end_stream() == Status::ok);
    reader.remove_channel();
}

TEST_CASE("the allocation hook counts (so the zero above can fail)") {
    std::uint64_t before = t_allocations;
    auto* p = new std::uint64_t(5);
    std::vector<int> v(100);
    delete p;
    CHECK(t_allocations - before >= 2);
}

}  // TEST_SUITE
