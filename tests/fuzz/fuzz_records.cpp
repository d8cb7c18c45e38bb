// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the records reader (channels/records.cpp): the fuzz input becomes the
// shared memory of a records channel, and a RecordReader reads it with try_read (try_read_run
// when the base position is odd) until the first status that is not ok. It must never crash, read out of bounds (ASan), hit undefined behaviour
// (UBSan) or loop; every non-ok status must be a documented one, and corrupt must come with a
// message. Build and run: tests/fuzz/README.md.
//
// Input layout (missing bytes read as zero):
//   byte 0      flags: bit 0 checksums, bit 1 keep the segments' sequences valid (so parsing gets
//               past the segment headers), bit 2 end of stream, bit 3 fix up committed_bytes
//               to at most the capacity, bits 4-5 the number of segments - 1 (1..4)
//   byte 1      segments published beyond the consumer's position (mod count + 1)
//   byte 2      the base position (laps already run) of the consumer
//   bytes 3-10  the consumer's resume offset (little endian; masked to 12 bits and tagged with
//               the base position, unless bit 6 of byte 0 is set: then the raw resume word)
//   bytes 11-14 the in-flight record size (0 unless bit 7 of byte 0)
//   bytes 15..  the segments, 4096 bytes each (header and payload), in ring order from the
//               consumer's position
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "shm/error.hpp"

namespace L = shmchan::layout;

namespace {

constexpr std::uint32_t kSegmentSize = 4096;
constexpr std::uint32_t kCapacity = kSegmentSize - L::kSegmentHeaderBytes;
char g_directory[] = "/dev/shm/shmchan-fuzz-XXXXXX";
std::uint64_t g_iteration = 0;

void remove_directory() {
    std::string command = std::string("rm -rf ") + g_directory;
    if (std::system(command.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", g_directory);
}

std::uint64_t load_le(const std::uint8_t* data, std::size_t size, std::size_t at, std::size_t bytes) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < bytes; ++i) {
        std::uint64_t byte = at + i < size ? data[at + i] : 0;
        value |= byte << (8 * i);
    }
    return value;
}

bool documented(shmchan::Status status) {
    using shmchan::Status;
    switch (status) {
        case Status::would_block:
        case Status::timed_out:
        case Status::end_of_stream:
        case Status::record_lost:
        case Status::peer_died:
        case Status::corrupt: return true;
        default: return false;
    }
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
    const std::uint8_t flags = size > 0 ? data[0] : 0;
    const bool checksums = flags & 1;
    const bool valid_sequences = flags & 2;
    const bool end_of_stream = flags & 4;
    const bool fix_committed = flags & 8;
    const std::uint32_t count = 1 + ((flags >> 4) & 3);
    const std::uint64_t published_ahead = load_le(data, size, 1, 1) % (count + 1);
    const std::uint64_t base = load_le(data, size, 2, 1);
    std::uint64_t resume_offset = load_le(data, size, 3, 8);
    if (!(flags & 0x40)) resume_offset &= 0xFFF;
    const std::uint64_t in_flight = (flags & 0x80) ? load_le(data, size, 11, 4) : 0;
    const std::size_t segments_at = 15;

    // A fresh, valid channel file (created by attaching as producer, then detaching).
    const std::string name = "fz" + std::to_string(++g_iteration);
    shmchan::ChannelOptions options;
    options.segment_size = kSegmentSize;
    options.segment_count = count;
    options.framing = L::Framing::records;
    options.checksums = checksums;
    options.ready_timeout = std::chrono::milliseconds(10);
    options.liveness_interval = std::chrono::milliseconds(10);
    try {
        shmchan::RecordWriter::attach(name, options);  // creates the file; detaches at once
    } catch (const shmchan::Error& error) {
        std::fprintf(stderr, "cannot create the channel: %s\n", error.what());
        std::abort();
    }

    // Write the image: positions, the consumer line, then the segments from the input.
    const std::string path = std::string(g_directory) + "/shmchan-" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) std::abort();
    const std::size_t file_bytes = L::region_bytes(kSegmentSize, count);
    void* mapped = ::mmap(nullptr, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (mapped == MAP_FAILED) std::abort();
    auto* base_bytes = static_cast<std::uint8_t*>(mapped);
    auto& header = *static_cast<L::ChannelHeader*>(mapped);
    L::store_relaxed(header.producer.published, base + published_ahead);
    L::store_relaxed(header.producer.end_of_stream, end_of_stream ? 1u : 0u);
    L::ConsumerLine& line = header.consumers[0].position;
    L::store_relaxed(line.released, base);
    // The resume point: tagged with the released position (layout.hpp, make_tagged_word), or
    // with flag 0x40 the input's raw 64-bit word.
    L::store_relaxed(line.resume_point, (flags & 0x40) ? resume_offset : L::make_tagged_word(base, resume_offset));
    L::store_relaxed(line.in_flight_record_bytes, in_flight);
    for (std::uint32_t i = 0; i < count; ++i) {
        const std::uint64_t position = base + i;
        std::uint8_t* segment = base_bytes + L::kHeaderBytes + (position % count) * std::uint64_t{kSegmentSize};
        const std::size_t from = segments_at + std::size_t{i} * kSegmentSize;
        for (std::uint32_t b = 0; b < kSegmentSize; ++b) segment[b] = from + b < size ? data[from + b] : 0;
        auto& segment_header = *reinterpret_cast<L::SegmentHeader*>(segment);
        if (valid_sequences) L::store_relaxed(segment_header.sequence, position);
        if (fix_committed) {
            L::store_relaxed(segment_header.committed_bytes, L::load_relaxed(segment_header.committed_bytes) % (kCapacity + 1));
            L::store_relaxed(segment_header.flags, L::load_relaxed(segment_header.flags) & L::kSegmentKnownFlags);
            std::uint32_t committed = L::load_relaxed(segment_header.committed_bytes);
            L::store_relaxed(segment_header.first_record_offset,
                             L::load_relaxed(segment_header.first_record_offset) % (committed + 1));
        }
    }
    ::munmap(mapped, file_bytes);

    // Read it to the first status that is not ok.
    {
        std::optional<shmchan::RecordReader> reader;
        try {
            reader.emplace(shmchan::RecordReader::attach(name, options));
        } catch (const shmchan::Error&) {
            // Refused at attach (a bad resume point, say): a clear error, fine.
        }
        if (reader) {
            shmchan::Status status = shmchan::Status::ok;
            std::uint64_t sum = 0;
            int reads = 0;
            // Odd base positions read with try_read_run (runs as one view; an event is
            // Status::event), even ones with try_read.
            const bool runs = (base & 1) != 0;
            for (; reads < 100000; ++reads) {
                if (runs) {
                    shmchan::RecordRun run;
                    status = reader->try_read_run(run, 1 + static_cast<std::size_t>(reads % 600));
                    if (status == shmchan::Status::event) continue;
                    if (status != shmchan::Status::ok) break;
                    if (run.bytes.size() != run.count * run.record_size) std::abort();
                    for (std::byte b : run.bytes) sum += static_cast<unsigned>(b);  // touch every byte
                    continue;
                }
                shmchan::Record record;
                status = reader->try_read(record);
                if (status != shmchan::Status::ok) break;
                for (std::byte b : record.bytes) sum += static_cast<unsigned>(b);  // touch every byte
            }
            if (reads == 100000) {
                std::fprintf(stderr, "100000 reads without an end\n");
                std::abort();
            }
            if (!documented(status)) {
                std::fprintf(stderr, "read returned %s: %s\n", shmchan::to_string(status), reader->last_error().c_str());
                std::abort();
            }
            if (status == shmchan::Status::corrupt && reader->last_error().empty()) {
                std::fprintf(stderr, "corrupt without a message\n");
                std::abort();
            }
            shmchan::Record record;
            shmchan::Status again = reader->try_read(record);  // once more after the failure
            if (again != shmchan::Status::ok && !documented(again)) {
                std::fprintf(stderr, "second read returned %s\n", shmchan::to_string(again));
                std::abort();
            }
            if (sum == 0x123456789abcdefull) std::fprintf(stderr, "\n");  // keep the sum
        }
    }
    shmchan::remove_channel(name, true);
    return 0;
}
