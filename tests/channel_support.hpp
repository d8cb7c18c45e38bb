// SPDX-License-Identifier: Apache-2.0
// Helpers for the library tests (region, futex, liveness, core, stream, faults): checking error
// codes, a separate mapping of a channel file for corrupting it, the self-checking segment
// pattern of the stream tests, and flags in shared memory with deadlines.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include <doctest/doctest.h>

#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "shm/error.hpp"
#include "support.hpp"

namespace shmchan::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
// Volumes shrink by this factor under sanitizers (slower by 5-15x).
inline constexpr std::uint64_t kScale = kSanitized ? 8 : 1;

// The file of channel `name` in this test process's directory.
inline std::string path_of(const std::string& name) { return channel_directory() + "/shmchan-" + name; }

inline bool file_exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

// The error code a call throws as shmchan::Error, or nullopt if it does not throw. Any other
// exception escapes (doctest reports it).
template <class F>
std::optional<std::error_code> error_of(F&& call) {
    try {
        call();
    } catch (const shmchan::Error& error) {
        return error.code();
    }
    return std::nullopt;
}

inline std::string describe(const std::optional<std::error_code>& code) {
    if (!code) return "no exception";
    return code->category().name() + std::string(":") + std::to_string(code->value()) + " (" +
           code->message() + ")";
}

// CHECK that `expr` throws shmchan::Error with code `errc` (an Errc or a std::errc).
#define SHMCHAN_CHECK_THROWS_CODE(expr, errc)                                                    \
    do {                                                                                          \
        auto shmchan_code_ = ::shmchan::test::error_of([&] { (void)(expr); });                   \
        CHECK_MESSAGE((shmchan_code_.has_value() && *shmchan_code_ == (errc)),                   \
                      #expr " expected " #errc ", got " << ::shmchan::test::describe(shmchan_code_)); \
    } while (0)

// In a child process: report a failed expectation on stderr and exit non-zero.
#define CHILD_EXPECT(cond)                                                                        \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            std::fprintf(stderr, "child %d: %s:%d: expectation failed: %s\n", (int)::getpid(),   \
                         __FILE__, __LINE__, #cond);                                              \
            return 3;                                                                             \
        }                                                                                         \
    } while (0)

// Waits until `flag` reaches at least `value` (yielding), up to the deadline.
inline bool wait_for_flag(const std::atomic<int>& flag, int value,
                          std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    auto until = std::chrono::steady_clock::now() + deadline;
    while (flag.load() < value) {
        if (std::chrono::steady_clock::now() >= until) return false;
        ::sched_yield();
    }
    return true;
}

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

inline ChannelOptions geometry(std::uint32_t segment_size, std::uint32_t segment_count) {
    ChannelOptions options;
    options.segment_size = segment_size;
    options.segment_count = segment_count;
    return options;
}

// --- The self-checking segment pattern ----------------------------------------------------------
// Words of the payload: [0] sequence, [1] checksum of words 2.., [2..] a stream derived from the
// sequence. Every byte of the payload is written; the consumer recomputes the checksum.
inline std::uint64_t pattern_checksum(const std::byte* data, std::size_t words) {
    std::uint64_t hash = 0xcbf29ce484222325ull;
    for (std::size_t i = 0; i < words; ++i) {
        std::uint64_t word;
        std::memcpy(&word, data + 8 * i, 8);
        hash ^= word;
        hash *= 0x100000001b3ull;
        hash ^= hash >> 29;
    }
    return hash;
}

inline void fill_segment(std::span<std::byte> payload, std::uint64_t sequence) {
    const std::size_t words = payload.size() / 8;
    std::byte* data = payload.data();
    std::uint64_t x = mix(sequence + 1);
    for (std::size_t i = 2; i < words; ++i) {
        x += 0x9e3779b97f4a7c15ull;
        std::uint64_t word = x ^ (x >> 31);
        std::memcpy(data + 8 * i, &word, 8);
    }
    std::uint64_t checksum = pattern_checksum(data + 16, words - 2);
    std::memcpy(data, &sequence, 8);
    std::memcpy(data + 8, &checksum, 8);
}

// Empty string if the payload is the pattern of `sequence`, otherwise what is wrong.
inline std::string check_segment(std::span<const std::byte> payload, std::uint64_t sequence,
                                 std::size_t expected_size) {
    if (payload.size() != expected_size) {
        return "payload size " + std::to_string(payload.size()) + ", expected " + std::to_string(expected_size);
    }
    if (payload.size() < 16 || payload.size() % 8 != 0) return "payload size not usable";
    std::uint64_t stored_sequence, stored_checksum;
    std::memcpy(&stored_sequence, payload.data(), 8);
    std::memcpy(&stored_checksum, payload.data() + 8, 8);
    if (stored_sequence != sequence) {
        return "sequence in payload " + std::to_string(stored_sequence) + ", expected " + std::to_string(sequence);
    }
    if (pattern_checksum(payload.data() + 16, payload.size() / 8 - 2) != stored_checksum) {
        return "checksum mismatch in segment " + std::to_string(sequence);
    }
    return {};
}

// --- A separate read-write mapping of a channel file, to corrupt it -----------------------------
class MappedFile {
public:
    explicit MappedFile(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        if (fd_ < 0) return;
        struct stat st {};
        if (::fstat(fd_, &st) != 0 || st.st_size == 0) return;
        size_ = static_cast<std::size_t>(st.st_size);
        void* data = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (data == MAP_FAILED) {
            size_ = 0;
            return;
        }
        data_ = static_cast<std::byte*>(data);
    }
    ~MappedFile() {
        if (data_) ::munmap(data_, size_);
        if (fd_ >= 0) ::close(fd_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    bool ok() const { return data_ != nullptr; }
    std::size_t size() const { return size_; }
    int fd() const { return fd_; }
    layout::ChannelHeader& header() { return *reinterpret_cast<layout::ChannelHeader*>(data_); }
    layout::SegmentHeader& segment(std::uint32_t slot, std::uint32_t segment_size) {
        return *reinterpret_cast<layout::SegmentHeader*>(data_ + layout::kHeaderBytes +
                                                         std::uint64_t{slot} * segment_size);
    }
    // Atomic stores and loads at a byte offset (another process may be reading the bytes).
    void poke32(std::size_t offset, std::uint32_t value) {
        std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(data_ + offset))
            .store(value, std::memory_order_relaxed);
    }
    void poke64(std::size_t offset, std::uint64_t value) {
        std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset))
            .store(value, std::memory_order_relaxed);
    }
    std::uint32_t peek32(std::size_t offset) {
        return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(data_ + offset))
            .load(std::memory_order_relaxed);
    }
    std::uint64_t peek64(std::size_t offset) {
        return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset))
            .load(std::memory_order_relaxed);
    }

private:
    int fd_ = -1;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

// Offsets of the fields the fault tests touch.
namespace offsets {
inline constexpr std::size_t magic = offsetof(layout::ChannelHeader, identity) + offsetof(layout::Identity, magic);
inline constexpr std::size_t abi_version = offsetof(layout::Identity, abi_version);
inline constexpr std::size_t header_bytes = offsetof(layout::Identity, header_bytes);
inline constexpr std::size_t segment_size = offsetof(layout::Identity, segment_size);
inline constexpr std::size_t segment_count = offsetof(layout::Identity, segment_count);
inline constexpr std::size_t framing = offsetof(layout::Identity, framing);
inline constexpr std::size_t flags = offsetof(layout::Identity, flags);
inline constexpr std::size_t max_record_bytes = offsetof(layout::Identity, max_record_bytes);
inline constexpr std::size_t total_bytes = offsetof(layout::Identity, total_bytes);
inline constexpr std::size_t consumer_slots = offsetof(layout::Identity, consumer_slots);
inline constexpr std::size_t published =
    offsetof(layout::ChannelHeader, producer) + offsetof(layout::ProducerLine, published);
inline constexpr std::size_t end_of_stream =
    offsetof(layout::ChannelHeader, producer) + offsetof(layout::ProducerLine, end_of_stream);
inline constexpr std::size_t producer_pid =
    offsetof(layout::ChannelHeader, producer_attachment) + offsetof(layout::Attachment, pid);
inline constexpr std::size_t producer_start_time =
    offsetof(layout::ChannelHeader, producer_attachment) + offsetof(layout::Attachment, start_time);
inline constexpr std::size_t producer_attached =
    offsetof(layout::ChannelHeader, producer_attachment) + offsetof(layout::Attachment, attached);
inline constexpr std::size_t flushed =
    offsetof(layout::ChannelHeader, producer) + offsetof(layout::ProducerLine, flushed);
inline constexpr std::size_t released =
    offsetof(layout::ChannelHeader, consumers) + offsetof(layout::ConsumerSlot, position) +
    offsetof(layout::ConsumerLine, released);
}  // namespace offsets

}  // namespace shmchan::test
