// SPDX-License-Identifier: Apache-2.0
// The consumer test's program: includes the installed umbrella header, checks that the library
// it runs with is the one it was compiled for, and moves records between two processes.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <shmchan/shmchan.hpp>
#include <string>

int main() {
    using shmchan::Status;
    if (std::strcmp(shmchan::version(), SHMCHAN_VERSION_STRING) != 0) {
        std::fprintf(stderr, "library %s, headers %s\n", shmchan::version(), SHMCHAN_VERSION_STRING);
        return 1;
    }
    const std::string name = "consumer-test-" + std::to_string(::getpid());
    pid_t child = ::fork();
    if (child == 0) {
        auto writer = shmchan::RecordWriter::attach(name);
        for (int i = 0; i < 1000; ++i) {
            if (writer.write("record " + std::to_string(i)) != Status::ok) return 1;
        }
        return writer.end_stream() == Status::ok ? 0 : 1;
    }
    try {
        auto reader = shmchan::RecordReader::attach(name);
        shmchan::Record record;
        int count = 0;
        Status status;
        while ((status = reader.read(record)) == Status::ok) {
            if (record.text() != "record " + std::to_string(count++)) return 1;
        }
        int child_status = 0;
        ::waitpid(child, &child_status, 0);
        reader.remove_channel();
        std::printf("shmchan %s (layout ABI %u): %d records, then %s\n", shmchan::version(),
                    static_cast<unsigned>(shmchan::layout::kAbiVersion), count, shmchan::to_string(status));
        return status == Status::end_of_stream && count == 1000 && child_status == 0 ? 0 : 1;
    } catch (const shmchan::Error& error) {  // setup errors: a bad name, an unsafe file, ...
        std::fprintf(stderr, "%s\n", error.what());
        return 1;
    }
}
