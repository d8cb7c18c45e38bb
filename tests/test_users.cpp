// SPDX-License-Identifier: Apache-2.0
// Security as a second local user, and resource limits, across real processes.
//
// Users: as root, the suite makes (if missing) the group `shmchan-share` and two users in it,
// `shmchan-a` and `shmchan-b` (useradd, no home), and runs each side in a child that dropped to
// one of them (setgroups, setgid, setuid). The channels live in a world-writable sticky directory
// of the test (mode 1777, as /tmp and /dev/shm). Not root, or useradd missing: those cases say so
// and are skipped. What is checked there: a name is never followed (no symlink) nor overwritten
// (the kernel's link without replace decides a create), a file under a name must be ours, root's
// or an allowed owner's and not world-writable, and a world-writable directory without the
// sticky bit is refused outright (anyone could swap our files there).
//
// Resources: a 64 KiB tmpfs as SHMCHAN_DIR (root: mount; otherwise skipped), and a process that
// attaches channels until its descriptor limit (RLIMIT_NOFILE, lowered in a child).
#include <grp.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "channel_support.hpp"

#ifndef SHMCHAN_SHM_INSPECT_PATH
#error "SHMCHAN_SHM_INSPECT_PATH must name the shm-inspect binary"
#endif

namespace {

using namespace std::chrono_literals;
using namespace shmchan;
using namespace shmchan::test;

struct Users {
    bool ready = false;
    std::string why;  // when not ready
    uid_t a = 0, b = 0;
    gid_t group = 0;
};

// The two test users and their shared group, made once per process.
const Users& users() {
    static const Users made = [] {
        Users u;
        if (::geteuid() != 0) {
            u.why = "not root: cannot add or become another user";
            return u;
        }
        if (std::system("getent group shmchan-share >/dev/null || groupadd shmchan-share >/dev/null 2>&1") != 0) {
            u.why = "groupadd shmchan-share failed";
            return u;
        }
        for (const char* name : {"shmchan-a", "shmchan-b"}) {
            std::string command = std::string("id -u ") + name + " >/dev/null 2>&1 || useradd -M -N -g shmchan-share -s /usr/sbin/nologin " +
                                  name + " >/dev/null 2>&1";
            if (std::system(command.c_str()) != 0) {
                u.why = std::string("useradd ") + name + " failed";
                return u;
            }
        }
        // getpwnam returns static storage: copy each answer before the next call.
        const passwd* a = ::getpwnam("shmchan-a");
        if (a) u.a = a->pw_uid;
        const passwd* b = ::getpwnam("shmchan-b");
        if (b) u.b = b->pw_uid;
        const group* g = ::getgrnam("shmchan-share");
        if (g) u.group = g->gr_gid;
        if (!a || !b || !g || u.a == u.b || u.a == 0 || u.b == 0) {
            u.why = "the test users are not in the user database";
            return u;
        }
        u.ready = true;
        return u;
    }();
    return made;
}

#define REQUIRE_USERS()                                          \
    do {                                                         \
        if (!users().ready) {                                    \
            MESSAGE("skipped: " << users().why);                 \
            return;                                              \
        }                                                        \
    } while (0)

// A directory for channels, SHMCHAN_DIR while it lives (restored after), removed at the end.
class ChannelDirectory {
public:
    explicit ChannelDirectory(mode_t mode) {
        char pattern[] = "/dev/shm/shmchan-users-XXXXXX";
        const char* made = ::mkdtemp(pattern);
        REQUIRE(made != nullptr);
        path_ = made;
        REQUIRE(::chmod(path_.c_str(), mode) == 0);
        previous_ = channel_directory();
        ::setenv("SHMCHAN_DIR", path_.c_str(), 1);
    }
    ~ChannelDirectory() {
        ::setenv("SHMCHAN_DIR", previous_.c_str(), 1);
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    std::string file(const std::string& leaf) const { return path_ + "/" + leaf; }
    std::string channel(const std::string& name) const { return file("shmchan-" + name); }
    const std::string& path() const { return path_; }
    std::size_t entries() const {
        return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(path_), {}));
    }

private:
    std::string path_, previous_;
};

// Runs `body` in a child process as user `uid` (group: the shared one); its exit code.
int as_user(uid_t uid, const std::function<int()>& body) {
    Child child([uid, &body] {
        if (::setgroups(0, nullptr) != 0 || ::setgid(users().group) != 0 || ::setuid(uid) != 0) return 90;
        return body();
    });
    return child.exit_code(60s);
}

// In a child: the Error code attach throws (0 if it does not throw), as an exit code.
constexpr int kNoThrow = 0, kThrewUnsafe = 10, kThrewDenied = 11, kThrewOther = 12;
template <class F>
int throw_code(F&& attach) {
    try {
        attach();
    } catch (const Error& error) {
        if (error.code() == Errc::unsafe_file) return kThrewUnsafe;
        if (error.code() == std::errc::permission_denied) return kThrewDenied;
        std::fprintf(stderr, "child: %s\n", error.what());
        return kThrewOther;
    }
    return kNoThrow;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// As user `uid`: a channel with three segments published and the stream ended.
int make_ended_channel(const std::string& name, ChannelOptions options) {
    auto producer = Producer::attach(name, options);
    for (std::uint32_t i = 0; i < 3; ++i) {
        WritableSegment out;
        if (producer.acquire_for(out, 10s) != Status::ok) return 1;
        std::memcpy(out.payload.data(), &i, sizeof i);
        if (producer.publish(sizeof i) != Status::ok) return 2;
    }
    return producer.end_stream() == Status::ok ? 0 : 3;
}

}  // namespace

TEST_SUITE("users") {

TEST_CASE("a 0600 channel cannot be opened or inspected by another user") {
    REQUIRE_USERS();
    ChannelDirectory dir(01777);
    const std::string name = unique_name("users-private");
    REQUIRE(as_user(users().a, [&] { return make_ended_channel(name, geometry(4096, 4)); }) == 0);
    struct stat st {};
    REQUIRE(::stat(dir.channel(name).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(st.st_uid == users().a);
    // User b: neither side, nor inspect, even when it allows a as an owner (the mode forbids it).
    ChannelOptions allow_a;
    allow_a.allowed_owner = users().a;
    CHECK(as_user(users().b, [&] { return throw_code([&] { Consumer::attach(name, allow_a); }); }) == kThrewDenied);
    CHECK(as_user(users().b, [&] { return throw_code([&] { Producer::attach(name, allow_a); }); }) == kThrewDenied);
    CHECK(as_user(users().b, [&] { return throw_code([&] { inspect(name, allow_a); }); }) == kThrewDenied);
    // The owner still reads it whole.
    CHECK(as_user(users().a, [&] {
              auto consumer = Consumer::attach(name);
              ReadableSegment in;
              for (int i = 0; i < 3; ++i) {
                  if (consumer.read_for(in, 10s) != Status::ok) return 1;
              }
              return consumer.read_for(in, 10s) == Status::end_of_stream ? 0 : 2;
          }) == 0);
}

TEST_CASE("shm-inspect run by another user shows a 0600 channel as foreign and changes nothing") {
    REQUIRE_USERS();
    ChannelDirectory dir(01777);
    const std::string name = unique_name("users-inspect");
    REQUIRE(as_user(users().a, [&] { return make_ended_channel(name, geometry(4096, 4)); }) == 0);
    const std::string before = slurp(dir.channel(name));
    // Each run as user b: the exit code, and whether its output says what we expect.
    auto inspect_as_b = [&](std::vector<std::string> args, const std::string& expected_out,
                            const std::string& expected_err) {
        args.insert(args.begin(), SHMCHAN_SHM_INSPECT_PATH);
        return as_user(users().b, [&] {
            ProgramRun run = run_program(args);
            if (run.code < 0) return 80;  // hung or crashed
            if (run.out.find(expected_out) == std::string::npos) return 81;
            if (run.err.find(expected_err) == std::string::npos) return 82;
            return run.code;
        });
    };
    CHECK(inspect_as_b({"list"}, name, "") == 0);
    CHECK(inspect_as_b({"list", "--json"}, "\"foreign\"", "") == 0);
    CHECK(inspect_as_b({"metrics"}, "state=\"foreign\"", "") == 0);
    CHECK(inspect_as_b({"show", name}, "", "shm-inspect: ") == 1);
    CHECK(inspect_as_b({"peek", name}, "", "shm-inspect: ") == 1);
    CHECK(inspect_as_b({"gc"}, "", "kept " + name) == 0);
    // --all: b cannot look at the file's locks (nor unlink it from the sticky directory): kept.
    CHECK(inspect_as_b({"gc", "--all"}, "", "kept " + name) == 0);
    CHECK(slurp(dir.channel(name)) == before);
    // Its owner still reads the stream whole.
    CHECK(as_user(users().a, [&] {
              auto consumer = Consumer::attach(name);
              ReadableSegment in;
              for (int i = 0; i < 3; ++i) {
                  if (consumer.read_for(in, 10s) != Status::ok) return 1;
              }
              return consumer.read_for(in, 10s) == Status::end_of_stream ? 0 : 2;
          }) == 0);
}

TEST_CASE("a 0660 channel is shared with a user of its group who allows its owner") {
    REQUIRE_USERS();
    ChannelDirectory dir(01777);
    const std::string name = unique_name("users-group");
    ChannelOptions shared = geometry(4096, 4);
    shared.mode = 0660;
    REQUIRE(as_user(users().a, [&] { return make_ended_channel(name, shared); }) == 0);
    struct stat st {};
    REQUIRE(::stat(dir.channel(name).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0660);
    CHECK(st.st_gid == users().group);
    // Without allowing a, b is refused: another owner's file is never opened by default.
    CHECK(as_user(users().b, [&] { return throw_code([&] { Consumer::attach(name); }); }) == kThrewUnsafe);
    ChannelOptions allow_a;
    allow_a.allowed_owner = users().a;
    CHECK(as_user(users().b, [&] {
              auto consumer = Consumer::attach(name, allow_a);
              ReadableSegment in;
              for (std::uint32_t i = 0; i < 3; ++i) {
                  if (consumer.read_for(in, 10s) != Status::ok) return 1;
                  std::uint32_t value = 99;
                  std::memcpy(&value, in.payload.data(), sizeof value);
                  if (value != i) return 2;
              }
              if (consumer.read_for(in, 10s) != Status::end_of_stream) return 3;
              consumer.remove_channel();  // marks it removed; the sticky bit keeps b from unlinking it
              return 0;
          }) == 0);
    CHECK(file_exists(dir.channel(name)));
    // Its owner finishes the removal (any later opener would too, then start a fresh channel).
    CHECK(as_user(users().a, [&] { return remove_channel(name) == RemoveResult::removed ? 0 : 1; }) == 0);
    CHECK_FALSE(file_exists(dir.channel(name)));
}

TEST_CASE("files another user planted under a channel name are refused, and nothing is written through them") {
    REQUIRE_USERS();
    ChannelDirectory dir(01777);
    const std::string victim = dir.file("a-victim");
    const std::string original = "a's own file\n";
    REQUIRE(as_user(users().a, [&] {
                std::ofstream(victim) << original;
                return ::chmod(victim.c_str(), 0600) == 0 ? 0 : 1;
            }) == 0);
    const std::string owned = unique_name("users-planted-file"), linked = unique_name("users-planted-link"),
                      open_to_all = unique_name("users-planted-0666"), dangling = unique_name("users-dangling");
    const std::string dangling_target = dir.file("where-a-would-write");
    REQUIRE(as_user(users().b, [&] {
                std::ofstream(dir.channel(owned)) << "b's bytes";
                std::ofstream(dir.channel(open_to_all)) << "b's bytes";
                if (::chmod(dir.channel(open_to_all).c_str(), 0666) != 0) return 1;
                if (::symlink(victim.c_str(), dir.channel(linked).c_str()) != 0) return 2;
                if (::symlink(dangling_target.c_str(), dir.channel(dangling).c_str()) != 0) return 3;
                return 0;
            }) == 0);
    for (const std::string& name : {owned, linked, open_to_all, dangling}) {
        CAPTURE(name);
        // Refused as unsafe, or by the file's own mode (b's 0644 file cannot be opened for writing).
        for (int code : {as_user(users().a, [&] { return throw_code([&] { Producer::attach(name); }); }),
                         as_user(users().a, [&] { return throw_code([&] { Consumer::attach(name); }); })}) {
            CHECK((code == kThrewUnsafe || code == kThrewDenied));
        }
        // Root too: it may open anything, but takes only its own files (or an allowed owner's).
        SHMCHAN_CHECK_THROWS_CODE(Producer::attach(name), Errc::unsafe_file);
    }
    CHECK(slurp(victim) == original);                 // nothing written through the symlink
    CHECK(slurp(dir.channel(owned)) == "b's bytes");  // nor into b's files
    CHECK(slurp(dir.channel(open_to_all)) == "b's bytes");
    CHECK_FALSE(file_exists(dangling_target));  // a create never follows a planted link
}

TEST_CASE("a world-writable SHMCHAN_DIR without the sticky bit is refused") {
    ChannelDirectory dir(0777);  // anyone could rename or unlink our files here
    const std::string name = unique_name("users-no-sticky");
    auto code = error_of([&] { Producer::attach(name); });
    REQUIRE(code.has_value());
    CHECK(*code == Errc::unsafe_file);
    try {
        Consumer::attach(name);
    } catch (const Error& error) {
        CHECK(std::string(error.what()).find("world-writable without the sticky bit") != std::string::npos);
    }
    CHECK(dir.entries() == 0);
    // With the sticky bit (as /tmp has) the same directory is fine for our own channels.
    REQUIRE(::chmod(dir.path().c_str(), 01777) == 0);
    CHECK_FALSE(error_of([&] { Producer::attach(name); }).has_value());
}

TEST_CASE("a full tiny tmpfs gives a clear error at create and leaves no file") {
    if (::geteuid() != 0) {
        MESSAGE("skipped: not root, cannot mount a tmpfs");
        return;
    }
    ChannelDirectory dir(0700);
    if (::mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=64k,mode=0700") != 0) {
        MESSAGE("skipped: mount tmpfs: " << std::strerror(errno));
        return;
    }
    struct Unmount {
        std::string path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{dir.path()};
    const std::string name = unique_name("users-tiny");
    std::string message;
    try {
        Producer::attach(name);  // 16 x 32 KiB + 8 KiB: more than 64 KiB
    } catch (const Error& error) {
        message = error.what();
        CHECK(error.code() == std::errc::no_space_on_device);
    }
    CHECK_MESSAGE(message.find("no free space or no free inodes in " + dir.path()) != std::string::npos, message);
    CHECK(dir.entries() == 0);  // no file, no temporary name
    // A channel that fits is made in the same place.
    CHECK_FALSE(error_of([&] { Producer::attach(name, geometry(4096, 4)); }).has_value());
    CHECK(dir.entries() == 1);
}

TEST_CASE("channels past the descriptor limit fail clearly, and none is half attached") {
    ChannelDirectory dir(0700);
    // In a child: at most 1100 descriptors, channels of one 4 KiB segment until attach fails.
    SharedBlock<std::atomic<int>> attached;
    Child many([&] {
        rlimit limit{1100, 1100};
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 90;
        std::vector<Producer> producers;
        std::string message;
        for (int i = 0; i < 5000; ++i) {
            try {
                producers.push_back(Producer::attach("many-" + std::to_string(i), geometry(4096, 1)));
            } catch (const Error& error) {
                message = error.what();
                CHILD_EXPECT(error.code() == std::errc::too_many_files_open);
                break;
            }
        }
        attached->store(static_cast<int>(producers.size()));
        std::fprintf(stderr, "after %zu channels: %s\n", producers.size(), message.c_str());
        CHILD_EXPECT(message.find("descriptor limit, RLIMIT_NOFILE") != std::string::npos);
        CHILD_EXPECT(producers.size() > 1000);
        // Every channel made is whole and attached; the one that failed left nothing.
        for (auto& producer : producers) {
            ChannelInfo info = producer.info();
            CHILD_EXPECT(info.producer.alive && info.producer.attach_count == 1);
        }
        CHILD_EXPECT(!file_exists(path_of("many-" + std::to_string(producers.size()))));
        return 0;
    });
    CHECK(many.exit_code(120s) == 0);
    CHECK(attached->load() > 1000);
    CHECK(dir.entries() == static_cast<std::size_t>(attached->load()));
}

}  // TEST_SUITE("users")
