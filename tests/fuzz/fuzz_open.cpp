// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for header validation on open: the fuzz input becomes a whole channel file
// (header and segments), which is then inspected and attached to as it is, the way a process
// meets a file a crash, a bug or a hostile user left under a channel name. inspect(), attach of
// either side and the records reader must never crash, read out of bounds (ASan), hit undefined
// behaviour (UBSan) or hang: a bad file is an Error at attach or a non-ok status, nothing else.
// Build and run: tests/fuzz/README.md.
//
// Input layout (missing bytes read as zero):
//   byte 0      what to repair before use, so that parsing gets past the first checks: bit 0 the
//               magic, bit 1 the ABI version (the ready mark), bit 2 header_bytes, bit 3 the
//               geometry (segment size 4096, byte 1's count, total_bytes to match, one consumer
//               slot, a valid max record size, byte 1's framing); bit 4 size the file to the
//               geometry its identity claims (at most 1 MiB); bit 5 attach as producer too;
//               bit 6 attach a RecordReader too; bit 7 clear the removal word
//   byte 1      bits 0-1: segment count - 1 (bit 3 of byte 0); bit 2: records framing
//   bytes 2..   the file: header (8192 bytes) and segments, as many bytes as given
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "shm/error.hpp"

namespace L = shmchan::layout;

namespace {

char g_directory[] = "/dev/shm/shmchan-fuzz-open-XXXXXX";
constexpr std::size_t kMaxFile = 1 << 20;

void remove_directory() {
    std::string command = std::string("rm -rf ") + g_directory;
    if (std::system(command.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", g_directory);
}

template <class T>
void put(std::vector<std::uint8_t>& file, std::size_t at, T value) {
    if (at + sizeof value <= file.size()) std::memcpy(file.data() + at, &value, sizeof value);
}

template <class T>
T get(const std::vector<std::uint8_t>& file, std::size_t at) {
    T value{};
    if (at + sizeof value <= file.size()) std::memcpy(&value, file.data() + at, sizeof value);
    return value;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (!::mkdtemp(g_directory)) {
        std::perror("mkdtemp");
        std::abort();
    }
    ::setenv("SHMCHAN_DIR", g_directory, 1);
    std::atexit(remove_directory);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::uint8_t repair = size > 0 ? data[0] : 0;
    const std::uint8_t choice = size > 1 ? data[1] : 0;
    std::vector<std::uint8_t> file(data + std::min<std::size_t>(size, 2), data + size);

    constexpr std::size_t identity = offsetof(L::ChannelHeader, identity);
    auto at = [](std::size_t field) { return identity + field; };
    if (repair & 1) put(file, at(offsetof(L::Identity, magic)), L::kMagic);
    if (repair & 2) put(file, at(offsetof(L::Identity, abi_version)), L::kAbiVersion);
    if (repair & 4) put(file, at(offsetof(L::Identity, header_bytes)), static_cast<std::uint32_t>(L::kHeaderBytes));
    if (repair & 8) {
        const std::uint32_t count = 1 + (choice & 3);
        put(file, at(offsetof(L::Identity, segment_size)), std::uint32_t{4096});
        put(file, at(offsetof(L::Identity, segment_count)), count);
        put(file, at(offsetof(L::Identity, total_bytes)), static_cast<std::uint64_t>(L::region_bytes(4096, count)));
        put(file, at(offsetof(L::Identity, consumer_slots)), std::uint32_t{1});
        put(file, at(offsetof(L::Identity, max_record_bytes)), std::uint64_t{1} << 20);
        put(file, at(offsetof(L::Identity, framing)),
            static_cast<std::uint32_t>((choice & 4) ? L::Framing::records : L::Framing::raw_bytes));
        put(file, at(offsetof(L::Identity, flags)), std::uint32_t{0});
    }
    if (repair & 0x80) put(file, offsetof(L::ChannelHeader, control) + offsetof(L::Control, removed), std::uint32_t{0});
    if (repair & 0x10) {
        // The size the identity claims, when it is plausible: the file as its header describes it.
        const std::uint64_t claimed = get<std::uint64_t>(file, at(offsetof(L::Identity, total_bytes)));
        if (claimed >= L::kHeaderBytes && claimed <= kMaxFile) file.resize(static_cast<std::size_t>(claimed));
    }

    // The file under a channel name, as a crash or another process would leave it.
    const std::string name = "fz";
    const std::string path = std::string(g_directory) + "/shmchan-" + name;
    ::unlink(path.c_str());
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) std::abort();
    std::size_t written = 0;
    while (written < file.size()) {
        ssize_t n = ::write(fd, file.data() + written, file.size() - written);
        if (n <= 0) std::abort();
        written += static_cast<std::size_t>(n);
    }
    ::close(fd);

    shmchan::ChannelOptions options;
    options.ready_timeout = std::chrono::milliseconds(1);
    options.liveness_interval = std::chrono::milliseconds(1);
    options.framing = (choice & 4) ? L::Framing::records : L::Framing::raw_bytes;
    try {
        (void)shmchan::inspect(name);
    } catch (const shmchan::Error&) {
    }
    try {
        auto consumer = shmchan::Consumer::attach(name, options);
        shmchan::ReadableSegment in;
        for (int i = 0; i < 8; ++i) {
            if (consumer.try_read(in) != shmchan::Status::ok) break;
            volatile std::uint8_t sink = 0;
            for (std::byte b : in.payload) sink = sink ^ static_cast<std::uint8_t>(b);
            (void)sink;
        }
    } catch (const shmchan::Error&) {
    }
    if (repair & 0x20) {
        try {
            auto producer = shmchan::Producer::attach(name, options);
            shmchan::WritableSegment out;
            if (producer.try_acquire(out) == shmchan::Status::ok) (void)producer.publish(0);
        } catch (const shmchan::Error&) {
        }
    }
    if (repair & 0x40) {
        try {
            auto reader = shmchan::RecordReader::attach(name, options);
            shmchan::Record record;
            for (int i = 0; i < 16; ++i) {
                if (reader.try_read(record) != shmchan::Status::ok) break;
            }
        } catch (const shmchan::Error&) {
        }
    }
    ::unlink(path.c_str());
    return 0;
}
