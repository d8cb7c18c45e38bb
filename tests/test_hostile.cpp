// SPDX-License-Identifier: Apache-2.0
// Hostile files and damaged headers, across real processes: files planted under channel names
// (a FIFO, a hard link to somebody's file, another owner's channel), stray bytes in a header,
// closed standard descriptors, and damage that must end a wait instead of prolonging it. Each
// case failed before the fix it names.
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>

#include "channel_support.hpp"
#include "channels/records.hpp"

#ifndef SHMCHAN_SHM_INSPECT_PATH
#error "SHMCHAN_SHM_INSPECT_PATH must name the shm-inspect binary"
#endif
#ifndef SHMCHAN_SHM_PIPE_PATH
#error "SHMCHAN_SHM_PIPE_PATH must name the shm-pipe binary"
#endif

namespace {

using namespace std::chrono_literals;
using namespace shmchan;
using namespace shmchan::test;

using Run = ProgramRun;

Run run_tool(std::vector<std::string> args, const std::string& input = "/dev/null", int closed = -1,
             std::chrono::milliseconds deadline = 20s) {
    return run_program(std::move(args), input, closed, deadline);
}

std::string slurp(const std::string& path) { return read_whole_file(path); }

Run inspect_tool(std::vector<std::string> args) {
    args.insert(args.begin(), SHMCHAN_SHM_INSPECT_PATH);
    return run_tool(std::move(args));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string write_input(const std::string& text) {
    static int counter = 0;
    std::string path = channel_directory() + "/input-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

// A channel with `text` published and the stream ended, left by a process that exited.
void make_ended_channel(const std::string& name, const std::string& text) {
    Child maker([name, text] {
        auto producer = Producer::attach(name, geometry(4096, 4));
        WritableSegment out;
        CHILD_EXPECT(producer.acquire(out) == Status::ok);
        std::memcpy(out.payload.data(), text.data(), text.size());
        CHILD_EXPECT(producer.publish(static_cast<std::uint32_t>(text.size())) == Status::ok);
        CHILD_EXPECT(producer.end_stream() == Status::ok);
        return 0;
    });
    REQUIRE(maker.exit_code() == 0);
}

constexpr std::size_t kRemovedOffset = offsetof(layout::ChannelHeader, control) + offsetof(layout::Control, removed);
static_assert(kRemovedOffset == 64);

}  // namespace

TEST_SUITE("hostile") {

TEST_CASE("a FIFO under a channel name blocks no command and is listed as not a regular file") {
    const std::string name = unique_name("fifo");
    REQUIRE(::mkfifo(path_of(name).c_str(), 0600) == 0);
    Run list = inspect_tool({"list"});
    REQUIRE_MESSAGE(list.code == 0, "list: " << list.code << " " << list.err);
    CHECK(contains(list.out, name + "  corrupt"));
    CHECK(contains(list.out, "not a regular file"));
    Run json = inspect_tool({"list", "--json"});
    CHECK(json.code == 0);
    Run show = inspect_tool({"show", name});
    CHECK(show.code == 1);
    CHECK(contains(show.err, "not a regular file"));
    Run metrics = inspect_tool({"metrics"});
    CHECK(metrics.code == 0);
    Run peek = inspect_tool({"peek", name});
    CHECK(peek.code == 1);
    Run gc = inspect_tool({"gc"});
    CHECK(gc.code == 0);
    // The library refuses it without opening it (a child, so a hang fails the deadline).
    Child attacher([name] {
        CHILD_EXPECT(error_of([&] { (void)Consumer::attach(name); }) == make_error_code(Errc::unsafe_file));
        CHILD_EXPECT(error_of([&] { (void)Producer::attach(name); }) == make_error_code(Errc::unsafe_file));
        return 0;
    });
    CHECK(attacher.exit_code(20s) == 0);
    ::unlink(path_of(name).c_str());
}

TEST_CASE("gc unlinks a hard link under a channel name and never writes into its file") {
    const std::string name = unique_name("hardlink");
    const std::string victim = channel_directory() + "/victim-" + std::to_string(::getpid());
    std::string bytes(3 * 4096, '\0');
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>('a' + i % 26);
    std::ofstream(victim, std::ios::binary) << bytes;
    REQUIRE(::link(victim.c_str(), path_of(name).c_str()) == 0);
    // Attach refuses a file with two names; inspect calls it corrupt (not our magic).
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name), Errc::unsafe_file);
    Run gc = inspect_tool({"gc"});
    CHECK_MESSAGE(gc.code == 0, gc.err);
    CHECK(contains(gc.out, "removed " + name + " (corrupt: "));
    CHECK_FALSE(file_exists(path_of(name)));
    CHECK(slurp(victim) == bytes);  // bytes 64..67 once became the removal mark
    ::unlink(victim.c_str());

    // A valid channel with a second name: nobody writes a mark into it either.
    const std::string real = unique_name("linked");
    make_ended_channel(real, "kept");
    const std::string alias = unique_name("alias");
    REQUIRE(::link(path_of(real).c_str(), path_of(alias).c_str()) == 0);
    SHMCHAN_CHECK_THROWS_CODE(remove_channel(alias), Errc::unsafe_file);
    {
        MappedFile file(path_of(real));
        REQUIRE(file.ok());
        CHECK(file.peek32(kRemovedOffset) == 0);
    }
    ::unlink(path_of(alias).c_str());
    ::unlink(path_of(real).c_str());
}

TEST_CASE("another user's channel is foreign, not corrupt; gc keeps it unless --all") {
    if (::geteuid() != 0) {
        MESSAGE("not root: cannot give a file to another user; skipped");
        return;
    }
    const std::string name = unique_name("foreign");
    make_ended_channel(name, "theirs");
    constexpr uid_t kOther = 54321;
    REQUIRE(::chown(path_of(name).c_str(), kOther, kOther) == 0);
    Run list = inspect_tool({"list"});
    CHECK(contains(list.out, name + "  foreign"));
    CHECK(contains(list.out, "owned by uid 54321"));
    Run show = inspect_tool({"show", name});
    CHECK(show.code == 1);
    Run gc = inspect_tool({"gc"});
    CHECK(gc.code == 0);
    CHECK(contains(gc.err, "kept " + name + ": owned by uid 54321"));
    CHECK(file_exists(path_of(name)));
    Run allowed = inspect_tool({"--allow-owner", "54321", "show", name, "--json"});
    CHECK_MESSAGE(allowed.code == 0, allowed.err);
    CHECK(contains(allowed.out, "\"state\": \"ended\""));
    Run metrics = inspect_tool({"metrics"});
    CHECK(contains(metrics.out, "state=\"foreign\""));
    Run all = inspect_tool({"gc", "--all"});
    CHECK_MESSAGE(all.code == 0, all.err);
    CHECK(contains(all.out, "removed " + name + " (foreign: "));
    CHECK_FALSE(file_exists(path_of(name)));
}

TEST_CASE("a removal that another user may not make is an error, not not_found") {
    if (::geteuid() != 0) {
        MESSAGE("not root: cannot act as another user; skipped");
        return;
    }
    const std::string name = unique_name("theirs");
    make_ended_channel(name, "root's");
    // A shared, sticky directory as /tmp is: only a file's owner may unlink it.
    struct stat before {};
    REQUIRE(::stat(channel_directory().c_str(), &before) == 0);
    REQUIRE(::chmod(channel_directory().c_str(), 01777) == 0);
    Child other([name] {
        if (::setgid(54321) != 0 || ::setuid(54321) != 0) return 4;
        try {
            (void)remove_channel(name, /*force=*/true);
        } catch (const Error& error) {
            CHILD_EXPECT(error.code() == std::errc::operation_not_permitted);
            return 0;
        }
        return 5;  // reported removed or not_found
    });
    CHECK(other.exit_code() == 0);
    CHECK(file_exists(path_of(name)));
    ::chmod(channel_directory().c_str(), before.st_mode & 07777);
}

TEST_CASE("a stray value in the removal word is corrupt: the channel and its data stay") {
    const std::string name = unique_name("stray");
    make_ended_channel(name, "unread data");
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        file.poke32(kRemovedOffset, 1);  // one stray byte at offset 64
    }
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name), Errc::corrupt);
    SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name), Errc::corrupt);
    SHMCHAN_CHECK_THROWS_CODE(shmchan::inspect(name), Errc::corrupt);
    REQUIRE(file_exists(path_of(name)));
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        file.poke32(kRemovedOffset, 0);
    }
    auto consumer = Consumer::attach(name);
    ReadableSegment in;
    REQUIRE(consumer.read(in) == Status::ok);
    CHECK(std::string(reinterpret_cast<const char*>(in.payload.data()), in.payload.size()) == "unread data");
}

TEST_CASE("a segment that continues a record with no bytes of it is corrupt, not an endless loss") {
    const std::string name = unique_name("lost");
    const std::uint32_t segment_size = 4096;
    {
        Child writer([name, segment_size] {
            auto w = RecordWriter::attach(name, geometry(segment_size, 4));
            std::vector<std::byte> big(6000, std::byte{7});  // spans into the second segment
            CHILD_EXPECT(w.write(big) == Status::ok);
            CHILD_EXPECT(w.write(std::span<const std::byte>(big.data(), 10)) == Status::ok);
            CHILD_EXPECT(w.end_stream() == Status::ok);
            return 0;
        });
        REQUIRE(writer.exit_code() == 0);
    }
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        auto& second = file.segment(1, segment_size);
        REQUIRE((second.flags & layout::kSegmentContinuesRecord) != 0);
        // The damage: a resume point at the second segment's start, and its continuation gone.
        file.poke64(offsetof(layout::ChannelHeader, consumers) + offsetof(layout::ConsumerSlot, position) +
                        offsetof(layout::ConsumerLine, resume_point),
                    layout::make_tagged_word(1, 0));
        file.poke64(offsets::released, 1);
        std::atomic_ref<std::uint32_t>(second.first_record_offset).store(0);
    }
    auto reader = RecordReader::attach(name);
    Record record;
    int losses = 0;
    Status status = Status::ok;
    for (int i = 0; i < 100; ++i) {
        status = reader.try_read(record);
        if (status != Status::record_lost) break;
        ++losses;
    }
    CHECK(losses <= 1);
    CHECK(status == Status::corrupt);
}

TEST_CASE("an in-flight record size beyond the maximum is corrupt at attach") {
    const std::string name = unique_name("inflight");
    { auto writer = RecordWriter::attach(name, geometry(4096, 4)); }
    {
        MappedFile file(path_of(name));
        REQUIRE(file.ok());
        file.poke64(offsetof(layout::ChannelHeader, consumers) + offsetof(layout::ConsumerSlot, position) +
                        offsetof(layout::ConsumerLine, in_flight_record_bytes),
                    ~std::uint64_t{0});
    }
    SHMCHAN_CHECK_THROWS_CODE(RecordReader::attach(name), Errc::corrupt);
}

TEST_CASE("damage to the positions a side waits on ends its wait as corrupt") {
    SUBCASE("the sequence of the segment a records reader is reading while it fills") {
        const std::string name = unique_name("seqwait");
        auto writer = RecordWriter::attach(name, geometry(4096, 4));
        const std::string first = "first record";
        REQUIRE(writer.write(std::as_bytes(std::span(first.data(), first.size()))) == Status::ok);
        REQUIRE(writer.flush() == Status::ok);
        SharedBlock<std::atomic<int>> got_first;
        Child reader([name, &got_first] {
            auto r = RecordReader::attach(name);
            Record record;
            CHILD_EXPECT(r.read(record) == Status::ok);
            got_first->store(1);
            Status status = r.read(record);  // untimed, the producer idle: only the damage ends it
            CHILD_EXPECT(status == Status::corrupt);
            return 0;
        });
        REQUIRE(wait_for_flag(*got_first, 1));
        {
            MappedFile file(path_of(name));
            REQUIRE(file.ok());
            file.poke64(offsetof(layout::SegmentHeader, sequence) + layout::kHeaderBytes, 77);
        }
        CHECK(reader.exit_code(20s) == 0);
    }
    SUBCASE("a consumer release that goes backwards under a waiting producer") {
        const std::string name = unique_name("relwait");
        Child writer([name] {
            auto producer = Producer::attach(name, geometry(4096, 2));
            WritableSegment out;
            for (int i = 0; i < 4; ++i) {
                Status status = producer.acquire(out);  // the third waits for a credit
                if (status != Status::ok) {
                    CHILD_EXPECT(status == Status::corrupt);
                    return 0;
                }
                CHILD_EXPECT(producer.publish(8) == Status::ok);
            }
            return 4;  // never: nobody reads past the second segment
        });
        auto consumer = Consumer::attach(name, geometry(4096, 2));  // either side may create it
        ReadableSegment in;
        REQUIRE(consumer.read_for(in, 20s) == Status::ok);
        REQUIRE(consumer.release() == Status::ok);
        // The producer now waits for the fourth segment's credit; the damage takes one back.
        REQUIRE(eventually([&] { return consumer.info().published == 3; }));
        {
            MappedFile file(path_of(name));
            REQUIRE(file.ok());
            file.poke64(offsets::released, 0);
        }
        CHECK(writer.exit_code(20s) == 0);
    }
}

TEST_CASE("closed standard descriptors: shm-pipe refuses them and leaves nothing behind") {
    const std::string name = unique_name("closedfd");
    const std::string input = write_input("x\n");
    Run sent = run_tool({SHMCHAN_SHM_PIPE_PATH, "send", name}, input);
    REQUIRE(sent.code == 0);
    // recv with standard output closed: exit 1, the channel and its data untouched.
    Run recv_closed = run_tool({SHMCHAN_SHM_PIPE_PATH, "recv", name}, "/dev/null", 1);
    CHECK(recv_closed.code == 1);
    CHECK(contains(recv_closed.err, "standard output is closed"));
    Run recv = run_tool({SHMCHAN_SHM_PIPE_PATH, "recv", name});
    CHECK(recv.code == 0);
    CHECK(recv.out == "x\n");
    // send with standard input closed: exit 1 at once, no channel file made.
    const std::string other = unique_name("closedin");
    Run send_closed = run_tool({SHMCHAN_SHM_PIPE_PATH, "send", other}, "/dev/null", 0, 10s);
    CHECK(send_closed.code == 1);
    CHECK(contains(send_closed.err, "standard input is closed"));
    CHECK_FALSE(file_exists(path_of(other)));
    ::unlink(input.c_str());
}

TEST_CASE("the library never opens a channel file as descriptor 0, 1 or 2") {
    const std::string name = unique_name("lowfd");
    Child child([name] {
        ::close(STDIN_FILENO);
        ::close(STDOUT_FILENO);
        auto producer = Producer::attach(name, geometry(4096, 2));
        auto consumer = Consumer::attach(name);
        CHILD_EXPECT(::fcntl(STDIN_FILENO, F_GETFD) == -1);
        CHILD_EXPECT(::fcntl(STDOUT_FILENO, F_GETFD) == -1);
        return 0;
    });
    CHECK(child.exit_code() == 0);
}

TEST_CASE("small tool errors: watch of a missing channel, usage, escaped names") {
    Run watch = inspect_tool({"watch", "no-such-channel", "--count", "1"});
    CHECK(watch.code == 1);
    CHECK(contains(watch.err, "no channel 'no-such-channel'"));
    CHECK(inspect_tool({"peek", "x", "--max-bytes", "-1"}).code == 2);
    Run bad = inspect_tool({"show", "a\x1b[31mb"});
    CHECK(bad.code == 2);
    CHECK(contains(bad.err, "a\\x1b[31mb"));
    CHECK_FALSE(contains(bad.err, "\x1b"));
    Run pipe_bad = run_tool({SHMCHAN_SHM_PIPE_PATH, "recv", "a\nb"});
    CHECK(pipe_bad.code == 2);
    CHECK(contains(pipe_bad.err, "a\\x0ab"));
}

}  // TEST_SUITE
