// SPDX-License-Identifier: Apache-2.0
// Typed records: a producer process writes Tick values into a small ring, so it waits whenever
// the consumer is behind (backpressure: memory stays bounded); the consumer reads them in order
// until end of stream, or learns that the producer died.   example-records [--crash]
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <shmchan/shmchan.hpp>
#include <string_view>

struct Tick {
    std::uint64_t sequence;
    double price;
};

int main(int argc, char** argv) {
    using shmchan::Status;
    const bool crash = argc > 1 && std::string_view(argv[1]) == "--crash";
    shmchan::ChannelOptions options;
    options.segment_size = 4096;  // 2 x 4 KiB: about 200 ticks in flight, then the producer waits
    options.segment_count = 2;
    pid_t producer = ::fork();
    if (producer == 0) {
        auto writer = shmchan::RecordWriter::attach("example-records", options);
        for (std::uint64_t i = 0; i < 100'000; ++i) {
            if (crash && i == 50'000) ::_exit(3);  // dies without ending the stream
            Status status = writer.write_value(Tick{i, 100.0 + static_cast<double>(i % 7)});
            if (status == Status::peer_died) std::fprintf(stderr, "producer: the consumer died\n");
            if (status != Status::ok) return 1;
        }
        return writer.end_stream() == Status::ok ? 0 : 1;
    }
    auto reader = shmchan::RecordReader::attach("example-records", options);
    Tick tick{};
    std::uint64_t count = 0;
    Status status;
    while ((status = reader.read_value(tick)) == Status::ok) {
        if (tick.sequence != count++) return 1;  // in order, none lost
    }
    ::waitpid(producer, nullptr, 0);
    if (status == Status::end_of_stream) std::printf("%llu ticks, then end of stream\n", (unsigned long long)count);
    if (status == Status::peer_died) std::printf("producer died after %llu ticks\n", (unsigned long long)count);
    if (status == Status::corrupt) std::printf("corrupt channel: %s\n", reader.last_error().c_str());
    reader.remove_channel();
    return status == (crash ? Status::peer_died : Status::end_of_stream) ? 0 : 1;
}
