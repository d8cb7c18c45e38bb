// SPDX-License-Identifier: Apache-2.0
// Raw segments: a producer process fills segments in place and publishes them; a consumer
// process reads each one in place and releases it. No copy, no syscall while both are busy.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <shmchan/shmchan.hpp>

int main() {
    using shmchan::Status;
    if (::fork() == 0) {  // the producer (attach after fork, never before)
        auto producer = shmchan::Producer::attach("example-segments");
        for (int i = 0; i < 1000; ++i) {
            shmchan::WritableSegment out;
            if (producer.acquire(out) != Status::ok) return 1;  // waits while no segment is free
            auto* text = reinterpret_cast<char*>(out.payload.data());
            int n = std::snprintf(text, out.payload.size(), "segment %d", i);
            if (producer.publish(static_cast<std::uint32_t>(n)) != Status::ok) return 1;
        }
        return producer.end_stream() == Status::ok ? 0 : 1;
    }
    auto consumer = shmchan::Consumer::attach("example-segments");
    shmchan::ReadableSegment in;
    Status status;
    std::size_t segments = 0, bytes = 0;
    while ((status = consumer.read(in)) == Status::ok) {  // in.payload: a view into shared memory
        ++segments;
        bytes += in.payload.size();
        if (consumer.release() != Status::ok) break;  // hands it back: a credit for the producer
    }
    int child = 0;
    ::wait(&child);
    std::printf("%zu segments, %zu bytes, then %s\n", segments, bytes, shmchan::to_string(status));
    consumer.remove_channel();
    return status == Status::end_of_stream && segments == 1000 ? 0 : 1;
}
