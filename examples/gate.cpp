// SPDX-License-Identifier: Apache-2.0
// A gate over two channels with a checkpoint barrier: two producer processes write records into
// their own channel, with barrier 1 after their first 1000; one consumer reads both channels
// through an InputGate, which aligns the barrier: it delivers barrier 1 once, when it has
// arrived on both channels, after every record written before it and before any written after.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <shmchan/shmchan.hpp>
#include <string>
#include <vector>

int main() {
    using shmchan::Status;
    const std::vector<std::string> channels = {"example-gate-0", "example-gate-1"};
    for (const std::string& name : channels) {
        if (::fork() == 0) {  // a producer per channel
            auto writer = shmchan::RecordWriter::attach(name);
            for (int i = 0; i < 2000; ++i) {
                if (i == 1000 && writer.write_barrier(1) != Status::ok) return 1;
                if (writer.write(name + ": record " + std::to_string(i)) != Status::ok) return 1;
            }
            return writer.end_stream() == Status::ok ? 0 : 1;
        }
    }
    auto gate = shmchan::InputGate::attach("example-gate", channels);  // aligned barriers
    shmchan::Record record;
    std::uint32_t channel = 0;
    unsigned records = 0, at_barrier = 0;
    Status status;
    while ((status = gate.read(record, channel)) == Status::ok) {
        if (record.kind == shmchan::RecordKind::barrier) {
            at_barrier = records;  // every record before the barrier, from both channels
            std::printf("checkpoint %llu after %u records\n", (unsigned long long)record.checkpoint_id, records);
        } else if (record.kind == shmchan::RecordKind::record) {
            ++records;
        }
    }
    while (::wait(nullptr) > 0) {
    }
    std::printf("%u records from %u channels, then %s\n", records, gate.size(), shmchan::to_string(status));
    for (std::uint32_t c = 0; c < gate.size(); ++c) gate.channel(c).remove_channel();  // read: done
    return status == Status::end_of_stream && at_barrier == 2000 && records == 4000 ? 0 : 1;
}
