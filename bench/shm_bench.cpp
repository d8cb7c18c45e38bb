// SPDX-License-Identifier: Apache-2.0
// shm-bench: shmchan side by side with the transports a user would pick instead, and with the
// limits of the machine, in one run. See bench/README.md for the method, bench/results/ for the runs.
//
//   shm-bench [--quick] [--json FILE] [--markdown FILE] [--plot FILE.png] [--filter SUBSTRING]
//             [--cores A,B]
//
// Every row runs in two fresh processes (fork; each attaches after the fork), the producer (or
// pinger) pinned to core A and the consumer (or ponger) to core B, started together on a barrier
// in a MAP_SHARED | MAP_ANONYMOUS block, through which they also report their checksums, times
// and the latency histogram. Patterns:
//   stream    the producer writes records for a fixed time (then ends the stream); the consumer
//             reads every byte; throughput = records / (consumer's end - start).
//   pingpong  the pinger sends record i, the ponger reads it and sends back an echo of the same
//             size; each round trip is timed into a log-linear histogram (p50/p99/p99.9).
// Optional peers (ZeroMQ, iceoryx, Aeron IPC) are compiled in when found (bench/CMakeLists.txt);
// without them their rows say why they are empty.
// The producer's and consumer's checksums must agree (both directions for pingpong): a
// mismatch, or a side that fails, fails the run (exit 1).
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>

#include <CLI/CLI.hpp>

#include "bench/bench_common.hpp"
#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"

namespace {

using namespace bench;
using shmchan::Status;

constexpr std::uint32_t kSegment = shmchan::layout::kDefaultSegmentSize;
constexpr std::uint64_t kRawMax = shmchan::layout::segment_payload_capacity(kSegment);             // 32704
constexpr std::uint64_t kRecordMax = kRawMax - shmchan::layout::kFrameHeaderBytes;                 // 32696
// The largest record that write() and write_batch() place cache-line-aligned in one segment (a
// run frame of one: records.hpp, kAlignedRecordMin): the copy rows' 32 KiB record.
constexpr std::uint64_t kAlignedRecordMax = kRawMax - shmchan::layout::run_data_offset(0);        // 32640
constexpr std::uint64_t kMiB = 1024 * 1024;

[[noreturn]] void die(const std::string& message) {
    std::fprintf(stderr, "shm-bench: %s\n", message.c_str());
    std::exit(1);
}

std::string status_text(Status s, const std::string& detail) {
    return std::string(shmchan::to_string(s)) + (detail.empty() ? "" : ": " + detail);
}

// ---- fd helpers (pipe, unix socket) -------------------------------------------------------------

bool write_all(int fd, const std::byte* p, std::size_t n) {
    while (n != 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}
// 1: read n bytes; 0: end of file before the first byte; -1: error or a cut record.
int read_exact(int fd, std::byte* p, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const ssize_t r = ::read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return got == 0 ? 0 : -1;
        got += static_cast<std::size_t>(r);
    }
    return 1;
}

// Stream over a byte fd: one write(2) per record; the consumer reads 64 KiB at a time.
void fd_stream(Ctx& ctx, int fd) {
    const Spec& s = *ctx.spec;
    if (ctx.is_a) {
        std::vector<std::byte> buf(s.record_bytes);
        Filler f(s.record_bytes);
        const std::int64_t deadline = ctx.ready_and_wait() + s.stream_ns;
        for (;;) {
            for (int k = 0; k < 64; ++k) {
                f.fill(buf.data(), buf.size());
                if (!write_all(fd, buf.data(), buf.size())) return ctx.fail(std::string("write: ") + std::strerror(errno));
            }
            if (now_ns() >= deadline) break;
        }
        ::close(fd);
        ctx.finish();
        ctx.me->sent_checksum = f.checksum;
        ctx.me->sent_records = f.index;
    } else {
        std::vector<std::byte> buf(64 * 1024);
        Summer sum(s.record_bytes);
        std::size_t pending = 0;  // bytes (< 8) carried over to the next read
        ctx.ready_and_wait();
        for (;;) {
            const ssize_t r = ::read(fd, buf.data() + pending, buf.size() - pending);
            if (r < 0) {
                if (errno == EINTR) continue;
                return ctx.fail(std::string("read: ") + std::strerror(errno));
            }
            if (r == 0) break;
            const std::size_t have = pending + static_cast<std::size_t>(r);
            const std::size_t whole = have & ~std::size_t{7};
            sum.feed(buf.data(), whole);
            pending = have - whole;
            if (pending) std::memmove(buf.data(), buf.data() + whole, pending);
        }
        ctx.finish();
        if (pending != 0 || !sum.at_boundary()) return ctx.fail("stream ended inside a record");
        ctx.me->recv_checksum = sum.checksum;
        ctx.me->recv_records = sum.index;
    }
}

void fd_pingpong(Ctx& ctx, int out_fd, int in_fd) {
    const Spec& s = *ctx.spec;
    std::vector<std::byte> buf(s.record_bytes);
    Filler f(s.record_bytes);
    Summer sum(s.record_bytes);
    if (ctx.is_a) {
        ctx.ready_and_wait();
        const bool ok = run_pings(ctx, [&](std::uint64_t) {
            f.fill(buf.data(), buf.size());
            if (!write_all(out_fd, buf.data(), buf.size())) return ctx.fail(std::string("write: ") + std::strerror(errno)), false;
            if (read_exact(in_fd, buf.data(), buf.size()) != 1) return ctx.fail("read of the echo failed"), false;
            sum.feed(buf.data(), buf.size());
            return true;
        });
        ::close(out_fd);
        ctx.finish();
        if (!ok) return;
    } else {
        ctx.ready_and_wait();
        for (;;) {
            const int r = read_exact(in_fd, buf.data(), buf.size());
            if (r == 0) break;
            if (r < 0) return ctx.fail("read failed or cut a record");
            sum.feed(buf.data(), buf.size());
            f.fill(buf.data(), buf.size());
            if (!write_all(out_fd, buf.data(), buf.size())) return ctx.fail(std::string("write: ") + std::strerror(errno));
        }
        ctx.finish();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = sum.checksum;
    ctx.me->recv_records = sum.index;
}

// ---- shmchan ----------------------------------------------------------------------------------

void add_counters(Shared* sh, const shmchan::ChannelInfo& info) {
    sh->have_counters = true;
    sh->wake_syscalls += info.producer_counters.wake_syscalls + info.consumer_counters.wake_syscalls;
    sh->parks += info.producer_counters.parks + info.consumer_counters.parks;
    sh->segments += info.published;
    sh->channel_file_bytes = info.file_bytes;
}

shmchan::ChannelOptions channel_options(const Spec& s) {
    shmchan::ChannelOptions o;  // the defaults a user gets: 16 x 32 KiB, counters and liveness on
    o.wait = *shmchan::wait_strategy_from_string(s.mode);
    return o;
}

// Raw segments: records packed back to back (as many whole records as fit a segment); a record
// larger than a segment continues in the next ones.
bool send_segments(Ctx& ctx, shmchan::Producer& p, Filler& f, std::size_t per_segment) {
    const std::size_t cap = p.payload_capacity();
    do {
        shmchan::WritableSegment out;
        Status st = p.acquire(out);
        if (st != Status::ok) return ctx.fail("acquire: " + status_text(st, p.last_error())), false;
        const std::size_t n = f.record_bytes <= cap ? per_segment
                                                     : static_cast<std::size_t>(std::min<std::uint64_t>(cap, f.record_bytes - f.offset));
        f.fill(out.payload.data(), n);
        st = p.publish(static_cast<std::uint32_t>(n));
        if (st != Status::ok) return ctx.fail("publish: " + status_text(st, p.last_error())), false;
    } while (!f.at_boundary());
    return true;
}

void shmchan_segments(Ctx& ctx) {
    const Spec& s = *ctx.spec;
    const shmchan::ChannelOptions o = channel_options(s);
    if (s.pattern == Pattern::stream) {
        if (ctx.is_a) {
            auto p = shmchan::Producer::attach(s.name, o);
            const std::size_t cap = p.payload_capacity();
            const std::size_t per = s.record_bytes <= cap ? (cap / s.record_bytes) * s.record_bytes : cap;
            Filler f(s.record_bytes);
            const std::int64_t deadline = ctx.ready_and_wait() + s.stream_ns;
            for (;;) {
                if (!send_segments(ctx, p, f, per)) return;
                if (now_ns() >= deadline) break;
            }
            const Status st = p.end_stream();
            ctx.finish();
            if (st != Status::ok) return ctx.fail("end_stream: " + status_text(st, p.last_error()));
            ctx.me->sent_checksum = f.checksum;
            ctx.me->sent_records = f.index;
        } else {
            auto c = shmchan::Consumer::attach(s.name, o);
            Summer sum(s.record_bytes);
            ctx.ready_and_wait();
            shmchan::ReadableSegment in;
            Status st;
            while ((st = c.read(in)) == Status::ok) {
                sum.feed(in.payload.data(), in.payload.size());
                bench::expect_ok(c.release(), "release");
            }
            ctx.finish();
            if (st != Status::end_of_stream) return ctx.fail("read: " + status_text(st, c.last_error()));
            ctx.me->recv_checksum = sum.checksum;
            ctx.me->recv_records = sum.index;
            add_counters(ctx.sh, c.info());
            c.remove_channel();
        }
        return;
    }
    // pingpong: channel NAME-f (a -> b) and NAME-b (b -> a).
    auto p = shmchan::Producer::attach(s.name + (ctx.is_a ? "-f" : "-b"), o);
    auto c = shmchan::Consumer::attach(s.name + (ctx.is_a ? "-b" : "-f"), o);
    Filler f(s.record_bytes);
    Summer sum(s.record_bytes);
    auto receive = [&]() -> Status {
        do {
            shmchan::ReadableSegment in;
            const Status st = c.read(in);
            if (st != Status::ok) return st;
            sum.feed(in.payload.data(), in.payload.size());
            bench::expect_ok(c.release(), "release");
        } while (!sum.at_boundary());
        return Status::ok;
    };
    const std::size_t per = s.record_bytes;  // one record per segment
    ctx.ready_and_wait();
    if (ctx.is_a) {
        const bool ok = run_pings(ctx, [&](std::uint64_t) {
            if (!send_segments(ctx, p, f, per)) return false;
            const Status st = receive();
            if (st != Status::ok) return ctx.fail("read echo: " + status_text(st, c.last_error())), false;
            return true;
        });
        ctx.finish();
        if (!ok) return;
        bench::expect_ok(p.end_stream(), "end_stream");
        add_counters(ctx.sh, p.info());
        add_counters(ctx.sh, c.info());
    } else {
        for (;;) {
            const Status st = receive();
            if (st == Status::end_of_stream) break;
            if (st != Status::ok) return ctx.fail("read: " + status_text(st, c.last_error()));
            if (!send_segments(ctx, p, f, per)) return;
        }
        ctx.finish();
        bench::expect_ok(p.end_stream(), "end_stream");
        c.remove_channel();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = sum.checksum;
    ctx.me->recv_records = sum.index;
}

// Records layer: copy = write(span) of a record the producer filled in its own buffer;
// zero-copy = reserve + fill in place + commit. The consumer reads views (read()). Streams:
// copy and zero-copy are the batch calls (below); per-record is one write() and one read() per
// record.
void shmchan_records(Ctx& ctx) {
    const Spec& s = *ctx.spec;
    const shmchan::ChannelOptions o = channel_options(s);
    const bool per_record = s.api == "per-record";
    const bool copy = s.api == "copy" || per_record;
    std::vector<std::byte> buf(copy ? s.record_bytes : 0);
    auto send = [&](shmchan::RecordWriter& w, Filler& f) -> bool {
        Status st;
        if (copy) {
            f.fill(buf.data(), buf.size());
            st = w.write(std::span<const std::byte>(buf.data(), buf.size()));
        } else {
            std::span<std::byte> room;
            st = w.reserve(s.record_bytes, room);
            if (st == Status::ok) {
                f.fill(room.data(), s.record_bytes);
                st = w.commit(s.record_bytes);
            }
        }
        if (st != Status::ok) return ctx.fail(std::string(copy ? "write: " : "reserve/commit: ") + status_text(st, w.last_error())), false;
        return true;
    };
    auto receive = [&](shmchan::RecordReader& r, Summer& sum) -> Status {
        shmchan::Record rec;
        for (;;) {
            const Status st = r.read(rec);
            if (st != Status::ok) return st;
            if (rec.kind != shmchan::RecordKind::record) continue;
            if (rec.bytes.size() != s.record_bytes) {
                ctx.fail("a record of " + std::to_string(rec.bytes.size()) + " bytes");
                return Status::corrupt;
            }
            sum.feed(rec.bytes.data(), rec.bytes.size());
            return Status::ok;
        }
    };
    if (s.pattern == Pattern::stream) {
        // Copying calls stream in batches, as the ring does: the producer fills a local buffer
        // of up to 32 KiB of records (at least one) and hands it to write_batch(); the consumer
        // takes them with read_run() (a view of many records). Per-record: one write() of each
        // record (filled in a private buffer, as a user with one record at a time does) and one
        // read() of each.
        const std::size_t batch = std::max<std::size_t>(1, 32768 / s.record_bytes);
        // Zero-copy batches: reserve_run() room for up to `batch` records in place, filled there,
        // commit_run(); a record too large for two per segment goes one by one (reserve/commit).
        const bool zero_copy_runs = !copy && batch >= 2;
        if (ctx.is_a) {
            auto w = shmchan::RecordWriter::attach(s.name, o);
            Filler f(s.record_bytes);
            // The records' buffer on a cache line, as the cross-core limit's and the ring's are
            // (a vector's 16-byte alignment made the copy out of it ~10 % slower, one core, L2).
            std::unique_ptr<std::byte[], decltype(&std::free)> buffer(
                static_cast<std::byte*>(std::aligned_alloc(64, (batch * s.record_bytes + 63) / 64 * 64)), &std::free);
            const std::span<std::byte> records(buffer.get(), batch * s.record_bytes);
            const std::span<const std::byte> one(buffer.get(), s.record_bytes);
            const std::int64_t deadline = ctx.ready_and_wait() + s.stream_ns;
            for (;;) {
                if (per_record) {
                    Status st = Status::ok;
                    if (f.has_whole()) {
                        Filler::Whole local = f.whole_records();  // the fill's state in registers
                        for (int k = 0; k < 64 && st == Status::ok; ++k) {
                            local.fill(buffer.get());
                            st = w.write(one);
                        }
                        f.take(local);
                    } else {
                        for (int k = 0; k < 64 && st == Status::ok; ++k) {
                            f.fill(buffer.get(), s.record_bytes);
                            st = w.write(one);
                        }
                    }
                    if (st != Status::ok) return ctx.fail("write: " + status_text(st, w.last_error()));
                } else if (copy) {
                    f.fill(records.data(), records.size());
                    std::size_t written = 0;
                    const Status st = w.write_batch(records, s.record_bytes, written);
                    if (st != Status::ok) return ctx.fail("write_batch: " + status_text(st, w.last_error()));
                } else if (zero_copy_runs) {
                    std::span<std::byte> room;
                    std::size_t count = 0;
                    Status st = w.reserve_run(s.record_bytes, batch, room, count);
                    if (st == Status::ok) {
                        f.fill(room.data(), room.size());
                        st = w.commit_run(count);
                    }
                    if (st != Status::ok) return ctx.fail("reserve_run/commit_run: " + status_text(st, w.last_error()));
                } else if (f.has_whole()) {
                    Filler::Whole local = f.whole_records();  // the fill's state in registers
                    for (int k = 0; k < 64; ++k) {
                        std::span<std::byte> room;
                        Status st = w.reserve(s.record_bytes, room);
                        if (st == Status::ok) {
                            local.fill(room.data());
                            st = w.commit(s.record_bytes);
                        }
                        if (st != Status::ok) return ctx.fail("reserve/commit: " + status_text(st, w.last_error()));
                    }
                    f.take(local);
                } else {
                    for (int k = 0; k < 64; ++k) {
                        if (!send(w, f)) return;
                    }
                }
                if (now_ns() >= deadline) break;
            }
            const Status st = w.end_stream();
            ctx.finish();
            if (st != Status::ok) return ctx.fail("end_stream: " + status_text(st, w.last_error()));
            ctx.me->sent_checksum = f.checksum;
            ctx.me->sent_records = f.index;
        } else {
            auto r = shmchan::RecordReader::attach(s.name, o);
            Summer sum(s.record_bytes);
            ctx.ready_and_wait();
            Status st;
            bool bad_size = false;
            if (!per_record && (copy || zero_copy_runs)) {
                // One view per run of records (read_run: the records of one write_batch or
                // commit_run call that lie side by side in a segment), checksummed in place, as
                // the ring's consumer checksums its slot.
                shmchan::RecordRun run;
                while ((st = r.read_run(run, batch)) == Status::ok || st == Status::event) {
                    if (st == Status::event) continue;
                    if (run.record_size != s.record_bytes) {
                        bad_size = true;
                        break;
                    }
                    sum.feed(run.bytes.data(), run.bytes.size());
                }
            } else if (sum.has_whole()) {
                Summer::Whole local = sum.whole_records();
                shmchan::Record rec;
                while ((st = r.read(rec)) == Status::ok) {
                    if (rec.kind != shmchan::RecordKind::record) continue;
                    if (rec.bytes.size() != s.record_bytes) {
                        bad_size = true;
                        break;
                    }
                    local.feed(rec.bytes.data());
                }
                sum.take(local);
            } else {
                while ((st = receive(r, sum)) == Status::ok) {
                }
            }
            if (bad_size) return ctx.fail("a record of the wrong size");
            ctx.finish();
            if (st != Status::end_of_stream) {
                if (ctx.me->error[0] == 0) ctx.fail("read: " + status_text(st, r.last_error()));
                return;
            }
            ctx.me->recv_checksum = sum.checksum;
            ctx.me->recv_records = sum.index;
            add_counters(ctx.sh, r.consumer().info());
            r.remove_channel();
        }
        return;
    }
    // pingpong; the writer flushes after each record so that a parked reader is woken at once
    // (what a request/response user does; a spinning reader sees the commit anyway).
    auto w = shmchan::RecordWriter::attach(s.name + (ctx.is_a ? "-f" : "-b"), o);
    auto r = shmchan::RecordReader::attach(s.name + (ctx.is_a ? "-b" : "-f"), o);
    Filler f(s.record_bytes);
    Summer sum(s.record_bytes);
    ctx.ready_and_wait();
    if (ctx.is_a) {
        const bool ok = run_pings(ctx, [&](std::uint64_t) {
            if (!send(w, f)) return false;
            bench::expect_ok(w.flush(), "flush");
            const Status st = receive(r, sum);
            if (st != Status::ok) return ctx.fail("read echo: " + status_text(st, r.last_error())), false;
            return true;
        });
        ctx.finish();
        if (!ok) return;
        bench::expect_ok(w.end_stream(), "end_stream");
        add_counters(ctx.sh, w.producer().info());
        add_counters(ctx.sh, r.consumer().info());
    } else {
        for (;;) {
            const Status st = receive(r, sum);
            if (st == Status::end_of_stream) break;
            if (st != Status::ok) return ctx.fail("read: " + status_text(st, r.last_error()));
            if (!send(w, f)) return;
            bench::expect_ok(w.flush(), "flush");
        }
        ctx.finish();
        bench::expect_ok(w.end_stream(), "end_stream");
        r.remove_channel();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = sum.checksum;
    ctx.me->recv_records = sum.index;
}

// ---- ring: Boost.Lockfree spsc_queue of 32 KiB slots in shared memory ------------------------

struct Slot {
    std::uint32_t used;
    std::uint32_t end;
    std::byte data[32768];
};
using Ring = boost::lockfree::spsc_queue<Slot, boost::lockfree::capacity<16>>;
// Address-free: with a compile-time capacity the queue holds its buffer inline (aligned_storage
// member) and two atomic indices, no pointer, so it works at any address in any process.
static_assert(sizeof(Ring) >= 16 * sizeof(Slot));

void ring_stream(Ctx& ctx, Ring* q) {
    const Spec& s = *ctx.spec;
    Slot* local = static_cast<Slot*>(std::aligned_alloc(64, sizeof(Slot)));
    constexpr std::size_t cap = sizeof(Slot::data);
    if (ctx.is_a) {
        Filler f(s.record_bytes);
        const std::size_t per = s.record_bytes <= cap ? (cap / s.record_bytes) * s.record_bytes : cap;
        const std::int64_t deadline = ctx.ready_and_wait() + s.stream_ns;
        local->end = 0;
        for (;;) {
            do {
                const std::size_t n = s.record_bytes <= cap ? per : static_cast<std::size_t>(std::min<std::uint64_t>(cap, s.record_bytes - f.offset));
                f.fill(local->data, n);  // fill a local slot, then one copy in
                local->used = static_cast<std::uint32_t>(n);
                while (!q->push(*local)) cpu_relax();
            } while (!f.at_boundary());
            if (now_ns() >= deadline) break;
        }
        local->end = 1;
        local->used = 0;
        while (!q->push(*local)) cpu_relax();
        ctx.finish();
        ctx.me->sent_checksum = f.checksum;
        ctx.me->sent_records = f.index;
    } else {
        Summer sum(s.record_bytes);
        ctx.ready_and_wait();
        for (;;) {
            while (!q->pop(*local)) cpu_relax();  // one copy out
            if (local->end) break;
            sum.feed(local->data, local->used);
        }
        ctx.finish();
        ctx.me->recv_checksum = sum.checksum;
        ctx.me->recv_records = sum.index;
    }
    std::free(local);
}

// ---- boost::interprocess::message_queue ------------------------------------------------------

namespace bip = boost::interprocess;

void mq_side(Ctx& ctx) {
    const Spec& s = *ctx.spec;
    std::vector<std::byte> buf(s.record_bytes);
    Filler f(s.record_bytes);
    Summer sum(s.record_bytes);
    if (s.pattern == Pattern::stream) {
        bip::message_queue q(bip::open_only, s.name.c_str());
        if (ctx.is_a) {
            const std::int64_t deadline = ctx.ready_and_wait() + s.stream_ns;
            for (;;) {
                for (int k = 0; k < 64; ++k) {
                    f.fill(buf.data(), buf.size());
                    q.send(buf.data(), buf.size(), 0);
                }
                if (now_ns() >= deadline) break;
            }
            q.send(buf.data(), 0, 0);  // end marker: an empty message
            ctx.finish();
            ctx.me->sent_checksum = f.checksum;
            ctx.me->sent_records = f.index;
        } else {
            ctx.ready_and_wait();
            for (;;) {
                bip::message_queue::size_type got = 0;
                unsigned prio = 0;
                q.receive(buf.data(), buf.size(), got, prio);
                if (got == 0) break;
                if (got != buf.size()) return ctx.fail("a message of " + std::to_string(got) + " bytes");
                sum.feed(buf.data(), got);
            }
            ctx.finish();
            ctx.me->recv_checksum = sum.checksum;
            ctx.me->recv_records = sum.index;
        }
        return;
    }
    bip::message_queue out(bip::open_only, (s.name + (ctx.is_a ? "-f" : "-b")).c_str());
    bip::message_queue in(bip::open_only, (s.name + (ctx.is_a ? "-b" : "-f")).c_str());
    ctx.ready_and_wait();
    if (ctx.is_a) {
        const bool ok = run_pings(ctx, [&](std::uint64_t) {
            f.fill(buf.data(), buf.size());
            out.send(buf.data(), buf.size(), 0);
            bip::message_queue::size_type got = 0;
            unsigned prio = 0;
            in.receive(buf.data(), buf.size(), got, prio);
            if (got != buf.size()) return ctx.fail("echo of " + std::to_string(got) + " bytes"), false;
            sum.feed(buf.data(), got);
            return true;
        });
        out.send(buf.data(), 0, 0);
        ctx.finish();
        if (!ok) return;
    } else {
        for (;;) {
            bip::message_queue::size_type got = 0;
            unsigned prio = 0;
            in.receive(buf.data(), buf.size(), got, prio);
            if (got == 0) break;
            sum.feed(buf.data(), got);
            f.fill(buf.data(), buf.size());
            out.send(buf.data(), buf.size(), 0);
        }
        ctx.finish();
    }
    ctx.me->sent_checksum = f.checksum;
    ctx.me->sent_records = f.index;
    ctx.me->recv_checksum = sum.checksum;
    ctx.me->recv_records = sum.index;
}

// ---- limits: cache-line and futex ping-pong; memcpy -----------------------------------------

// The limits of a round trip between the two cores. Each direction has its own 64-byte line
// holding one 64-bit sequence word (round trip i + 1; ~0 ends): the pinger stores it, the ponger
// sees it and stores the same value into the other line. Only that word moves: this is the raw
// cost of a line crossing the cores and back (a record's payload would add line transfers). The
// futex variant sleeps on a 32-bit futex word beside it and always wakes the peer (FUTEX_WAKE),
// which always sleeps (FUTEX_WAIT) without spinning first. The checksums fold the sequence values.
struct alignas(64) Line {
    std::uint64_t seq;
    std::uint32_t futex;
};
struct Lines {
    Line fwd, back;
};
static_assert(sizeof(Line) == 64);

long futex(std::uint32_t* word, int op, std::uint32_t value) {
    return ::syscall(SYS_futex, word, op, value, nullptr, nullptr, 0);
}

void lines_pingpong(Ctx& ctx, Lines* L, bool use_futex) {
    Line& out = ctx.is_a ? L->fwd : L->back;
    Line& in = ctx.is_a ? L->back : L->fwd;
    std::uint64_t sent = 0, sent_n = 0, recv = 0, recv_n = 0;
    auto send = [&](std::uint64_t seq) {
        std::atomic_ref<std::uint64_t>(out.seq).store(seq, std::memory_order_release);
        if (use_futex) {
            std::atomic_ref<std::uint32_t>(out.futex).store(static_cast<std::uint32_t>(seq), std::memory_order_seq_cst);
            futex(&out.futex, FUTEX_WAKE, 1);
        }
        if (seq != ~std::uint64_t{0}) sent = fold(sent, seq), ++sent_n;
    };
    // Waits until the incoming sequence is `seq` (true) or the end mark (false).
    auto await = [&](std::uint64_t seq) -> bool {
        for (;;) {
            const std::uint64_t got = std::atomic_ref<std::uint64_t>(in.seq).load(std::memory_order_acquire);
            if (got == seq) {
                recv = fold(recv, got), ++recv_n;
                return true;
            }
            if (got == ~std::uint64_t{0}) return false;
            if (use_futex) {
                const std::uint32_t word = std::atomic_ref<std::uint32_t>(in.futex).load(std::memory_order_seq_cst);
                if (word == static_cast<std::uint32_t>(seq) || word == 0xFFFFFFFFu) continue;
                futex(&in.futex, FUTEX_WAIT, word);
            } else {
                cpu_relax();
            }
        }
    };
    ctx.ready_and_wait();
    if (ctx.is_a) {
        run_pings(ctx, [&](std::uint64_t i) {
            send(i + 1);
            await(i + 1);
            return true;
        });
        send(~std::uint64_t{0});
    } else {
        for (std::uint64_t i = 0;; ++i) {
            if (!await(i + 1)) break;
            send(i + 1);
        }
    }
    ctx.finish();
    ctx.me->sent_checksum = sent;
    ctx.me->sent_records = sent_n;
    ctx.me->recv_checksum = recv;
    ctx.me->recv_records = recv_n;
}

// The limit of a one-way stream between the cores: 16 slots of 32 KiB in shared memory, a
// head and a tail index on their own lines, spinning; the producer writes the records in place
// (packed as in shmchan's raw segments), the consumer reads them in place, each side publishes its
// index once per slot. No copy, no library: what any shared-memory design must pay to move the
// bytes from one core's cache to the other's.
struct alignas(64) CrossCore {
    static constexpr std::size_t kSlots = 16, kSlotBytes = 32768;
    alignas(64) std::uint64_t head;  // slots published (producer)
    alignas(64) std::uint64_t tail;  // slots consumed (consumer)
    alignas(64) std::uint32_t used[kSlots];
    alignas(4096) std::byte slots[kSlots][kSlotBytes];
};

// mode "spin": records written in place; mode "copy": filled in a private buffer and copied into
// the slot with one memcpy (the ceiling of a copying call: one copy, read in place).
void cross_core_stream(Ctx& ctx, CrossCore* r) {
    const Spec& s = *ctx.spec;
    constexpr std::size_t cap = CrossCore::kSlotBytes;
    if (ctx.is_a) {
        const bool copy = s.mode == "copy";
        std::byte* local = copy ? static_cast<std::byte*>(std::aligned_alloc(64, cap)) : nullptr;
        Filler f(s.record_bytes);
        const std::size_t per = s.record_bytes <= cap ? (cap / s.record_bytes) * s.record_bytes : cap;
        const std::int64_t deadline = ctx.ready_and_wait() + s.stream_ns;
        std::uint64_t head = 0, tail_seen = 0;
        bool last = false;
        while (!last) {
            do {
                while (head - tail_seen >= CrossCore::kSlots) {
                    tail_seen = std::atomic_ref<std::uint64_t>(r->tail).load(std::memory_order_acquire);
                    if (head - tail_seen >= CrossCore::kSlots) cpu_relax();
                }
                const std::size_t slot = head % CrossCore::kSlots;
                const std::size_t n = s.record_bytes <= cap ? per : static_cast<std::size_t>(std::min<std::uint64_t>(cap, s.record_bytes - f.offset));
                if (copy) {
                    f.fill(local, n);
                    std::memcpy(r->slots[slot], local, n);
                } else {
                    f.fill(r->slots[slot], n);
                }
                last = f.at_boundary() && now_ns() >= deadline;
                r->used[slot] = static_cast<std::uint32_t>(n) | (last ? 0x80000000u : 0u);
                std::atomic_ref<std::uint64_t>(r->head).store(++head, std::memory_order_release);
            } while (!f.at_boundary());
        }
        ctx.finish();
        std::free(local);
        ctx.me->sent_checksum = f.checksum;
        ctx.me->sent_records = f.index;
    } else {
        Summer sum(s.record_bytes);
        ctx.ready_and_wait();
        std::uint64_t tail = 0, head_seen = 0;
        for (bool last = false; !last;) {
            while (head_seen == tail) {
                head_seen = std::atomic_ref<std::uint64_t>(r->head).load(std::memory_order_acquire);
                if (head_seen == tail) cpu_relax();
            }
            const std::size_t slot = tail % CrossCore::kSlots;
            const std::uint32_t used = r->used[slot];
            last = (used & 0x80000000u) != 0;
            sum.feed(r->slots[slot], used & 0x7FFFFFFFu);
            std::atomic_ref<std::uint64_t>(r->tail).store(++tail, std::memory_order_release);
        }
        ctx.finish();
        ctx.me->recv_checksum = sum.checksum;
        ctx.me->recv_records = sum.index;
    }
}

// Single core: copies 32 KiB blocks. l2: between two 32 KiB buffers (64 KiB: in L2, beyond L1);
// dram: through two 256 MiB buffers (out of cache).
void memcpy_run(Ctx& ctx) {
    const Spec& s = *ctx.spec;
    const bool l2 = s.mode == "l2";
    const std::size_t bytes = l2 ? 32768 : 256 * kMiB;
    auto* src = static_cast<std::byte*>(std::aligned_alloc(4096, bytes));
    auto* dst = static_cast<std::byte*>(std::aligned_alloc(4096, bytes));
    std::memset(src, 1, bytes);
    std::memset(dst, 2, bytes);
    const std::int64_t start = ctx.ready_and_wait();
    std::uint64_t blocks = 0;
    std::size_t at = 0;
    for (;;) {
        for (int k = 0; k < 256; ++k) {
            std::memcpy(dst + at, src + at, 32768);
            asm volatile("" : : "r"(dst) : "memory");
            at = l2 ? 0 : (at + 32768) % bytes;
            ++blocks;
        }
        if (now_ns() - start >= s.stream_ns) break;
    }
    ctx.finish();
    ctx.me->sent_records = ctx.me->recv_records = blocks;
    std::free(src);
    std::free(dst);
}

// ---- The parent: one row = fork, barrier, wait, collect ---------------------------------------

struct Row {
    Spec spec;
    bool ok = false;
    std::string error, note;
    std::optional<double> records_per_s, bytes_per_s, p50, p99, p999;
    std::uint64_t round_trips = 0, records = 0;
    bool peer_stalled = false;  // zeromq / iceoryx stalled twice: an empty row, not a failed run
    std::optional<double> wakes_per_segment;
    std::optional<std::uint64_t> allocations, channel_file_bytes;
    std::map<std::string, double> ratios;
    std::string key() const {
        return spec.transport + "/" + spec.mode + "/" + spec.api + (spec.load.empty() ? "" : "/" + spec.load);
    }
    // transport[/mode][/api][ +load], for people
    std::string label() const {
        std::string l = spec.transport;
        if (!spec.mode.empty()) l += "/" + spec.mode;
        if (!spec.api.empty()) l += "/" + spec.api;
        if (!spec.load.empty()) l += " +" + spec.load;
        return l;
    }
};

struct Config {
    bool quick = false;
    int core_a = 0, core_b = 1;
    std::int64_t stream_ns = 0;
    int reps = 5;  // rounds: stream rows take the median (this VM's rates are often bimodal)
    std::string dir;
};

Shared* g_shared = nullptr;

using SideFn = std::function<void(Ctx&)>;

pid_t spawn(const Spec& spec, bool is_a, const Config& cfg, const SideFn& fn) {
    const int core = is_a ? cfg.core_a : cfg.core_b;
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) die(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        if (!pin_to(core)) std::fprintf(stderr, "shm-bench: sched_setaffinity(%d): %s\n", core, std::strerror(errno));
        Ctx ctx{g_shared, is_a ? &g_shared->a : &g_shared->b, &spec, is_a, cfg.core_a, cfg.core_b};
        try {
            fn(ctx);
        } catch (const std::exception& e) {
            ctx.fail(e.what());
        } catch (...) {
            ctx.fail("unknown exception");
        }
        ctx.me->done = ctx.me->error[0] ? 2 : 1;
        std::fflush(stdout);
        std::exit(ctx.me->error[0] ? 1 : 0);  // static destructors run (iceoryx unregisters)
    }
    return pid;
}

// Runs fn_a (and fn_b, if any) in child processes; returns false with `error` on a failure.
bool run_children(const Spec& spec, const Config& cfg, const SideFn& fn_a, const SideFn& fn_b,
                  const std::function<void()>& after_fork, std::string& error) {
    g_shared->~Shared();
    new (g_shared) Shared{};
    const int sides = fn_b ? 2 : 1;
    // The row's background load: a busy loop on the consumer's core until the row ends.
    struct BusyLoop {
        pid_t pid = -1;
        ~BusyLoop() {
            if (pid > 0) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, nullptr, 0);
            }
        }
    } busy;
    if (spec.load == kBusyConsumerCore) {
        std::fflush(nullptr);
        busy.pid = ::fork();
        if (busy.pid < 0) die(std::string("fork: ") + std::strerror(errno));
        if (busy.pid == 0) {
            ::close_range(3, ~0u, 0);  // hold no end of the row's pipes or sockets open
            pin_to(cfg.core_b);
            for (;;) __asm__ volatile("" ::: "memory");  // runnable, never sleeps
        }
    }
    std::vector<pid_t> pids;
    pids.push_back(spawn(spec, true, cfg, fn_a));
    if (fn_b) pids.push_back(spawn(spec, false, cfg, fn_b));
    if (after_fork) after_fork();  // the parent closes its copies of fds
    std::vector<int> codes(pids.size(), -1);
    auto reap = [&](bool block) {
        for (std::size_t k = 0; k < pids.size(); ++k) {
            if (codes[k] != -1) continue;
            int status = 0;
            const pid_t r = ::waitpid(pids[k], &status, block ? 0 : WNOHANG);
            if (r == pids[k]) codes[k] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
    };
    auto kill_all = [&]() {
        for (std::size_t k = 0; k < pids.size(); ++k) {
            if (codes[k] == -1) ::kill(pids[k], SIGKILL);
        }
        reap(true);
    };
    auto side_error = [&]() {
        std::string e;
        if (g_shared->a.error[0]) e += std::string("producer/pinger: ") + g_shared->a.error;
        if (g_shared->b.error[0]) e += std::string(e.empty() ? "" : "; ") + "consumer/ponger: " + g_shared->b.error;
        return e;
    };
    auto sleep_ms = [](int ms) {
        timespec ts{0, ms * 1'000'000L};
        ::nanosleep(&ts, nullptr);
    };
    // Set-up: both sides ready within 30 s (iceoryx waits for its subscription through RouDi).
    const std::int64_t setup_deadline = now_ns() + 30'000'000'000;
    while (g_shared->ready.load(std::memory_order_acquire) < sides) {
        reap(false);
        const bool died = std::any_of(codes.begin(), codes.end(), [](int c) { return c != -1; });
        if (died || now_ns() > setup_deadline) {
            kill_all();
            error = side_error();
            if (error.empty()) error = died ? "a side exited during set-up" : "set-up timed out";
            return false;
        }
        sleep_ms(1);
    }
    g_shared->go.store(1, std::memory_order_release);
    const std::int64_t deadline = now_ns() + spec.stream_ns + spec.cap_ns + 20'000'000'000;
    std::int64_t first_exit = 0;
    for (;;) {
        reap(false);
        const auto finished = std::count_if(codes.begin(), codes.end(), [](int c) { return c != -1; });
        if (finished == static_cast<long>(codes.size())) break;
        const bool failed = std::any_of(codes.begin(), codes.end(), [](int c) { return c > 0; });
        if (failed && first_exit == 0) first_exit = now_ns();
        if ((first_exit != 0 && now_ns() - first_exit > 3'000'000'000) || now_ns() > deadline) {
            kill_all();
            error = side_error();
            if (error.empty()) error = "timed out (killed)";
            return false;
        }
        // Sleep until a child exits (SIGCHLD is blocked in the parent), at most 100 ms: no
        // polling that would steal the children's cores.
        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        timespec wait_at_most{0, 100'000'000};
        ::sigtimedwait(&chld, nullptr, &wait_at_most);
    }
    for (int c : codes) {
        if (c != 0) {
            error = side_error();
            if (error.empty()) error = "a side exited with status " + std::to_string(c);
            return false;
        }
    }
    return true;
}

// Fills a row from the shared block after a successful run; verifies the checksums.
void collect(Row& row) {
    const Spec& s = row.spec;
    const Shared& sh = *g_shared;
    if (sh.note[0]) row.note += std::string(row.note.empty() ? "" : "; ") + sh.note;
    if (s.transport == "memcpy") {
        const double secs = static_cast<double>(sh.a.t_end - sh.a.t_begin) / 1e9;
        row.records_per_s = static_cast<double>(sh.a.sent_records) / secs;
        row.bytes_per_s = *row.records_per_s * 32768.0;
        row.records = sh.a.sent_records;
        row.ok = true;
        return;
    }
    if (std::getenv("SHM_BENCH_DEBUG")) {
        std::fprintf(stderr, "debug %s: producer %.3f ms, consumer end after producer end %.3f ms, records %llu\n", row.key().c_str(),
                     (sh.a.t_end - sh.a.t_begin) / 1e6, (sh.b.t_end - sh.a.t_end) / 1e6, (unsigned long long)sh.b.recv_records);
    }
    if (s.pattern == Pattern::stream) {
        if (sh.a.sent_records != sh.b.recv_records || sh.a.sent_checksum != sh.b.recv_checksum) {
            row.error = "CHECKSUM MISMATCH: producer " + std::to_string(sh.a.sent_records) + " records, consumer " +
                        std::to_string(sh.b.recv_records);
            return;
        }
        const double secs = static_cast<double>(sh.b.t_end - sh.a.t_begin) / 1e9;
        row.records = sh.b.recv_records;
        row.records_per_s = static_cast<double>(row.records) / secs;
        row.bytes_per_s = *row.records_per_s * static_cast<double>(s.record_bytes);
    } else {
        if (sh.a.sent_records != sh.b.recv_records || sh.a.sent_checksum != sh.b.recv_checksum ||
            sh.b.sent_records != sh.a.recv_records || sh.b.sent_checksum != sh.a.recv_checksum) {
            row.error = "CHECKSUM MISMATCH in a direction of the ping-pong";
            return;
        }
        row.round_trips = sh.round_trips;
        row.records = sh.a.sent_records;
        row.p50 = sh.hist.percentile(0.50);
        row.p99 = sh.hist.percentile(0.99);
        row.p999 = sh.hist.percentile(0.999);
    }
    if (s.transport == "shmchan") {
        row.allocations = sh.a.allocations + sh.b.allocations;
        if (sh.have_counters) {
            row.channel_file_bytes = sh.channel_file_bytes;
            if (sh.segments) row.wakes_per_segment = static_cast<double>(sh.wake_syscalls) / static_cast<double>(sh.segments);
        }
    }
    row.ok = true;
}

void unlink_dir(const std::string& dir) {
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "shm-bench: could not remove %s\n", dir.c_str());
}

// ---- iceoryx: RouDi, started and stopped by the bench ------------------------------------------

#ifdef SHMCHAN_BENCH_ICEORYX
struct Roudi {
    pid_t pid = -1;
    std::string why;  // empty: running
};

Roudi start_roudi(const std::string& dir) {
    Roudi r;
    const std::string config = dir + "/roudi.toml";
    {
        std::ofstream out(config);
        // Chunk sizes cover every record size (payload + chunk header), counts the queues of
        // both directions and the samples in flight.
        out << "[general]\nversion = 1\n\n[[segment]]\n\n"
               "[[segment.mempool]]\nsize = 128\ncount = 4096\n\n"
               "[[segment.mempool]]\nsize = 1024\ncount = 1024\n\n"
               "[[segment.mempool]]\nsize = 8192\ncount = 512\n\n"
               "[[segment.mempool]]\nsize = 33792\ncount = 320\n\n"
               "[[segment.mempool]]\nsize = 1049600\ncount = 64\n";
    }
    int fds[2];
    if (::pipe(fds) != 0) return r.why = "pipe failed", r;
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // RouDi goes when the bench goes, however it ends
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the bench blocks SIGCHLD; RouDi must not inherit that
        ::dup2(fds[1], 1);
        ::dup2(fds[1], 2);
        ::close(fds[0]);
        ::execlp("iox-roudi", "iox-roudi", "-c", config.c_str(), "-l", "warning", static_cast<char*>(nullptr));
        std::fprintf(stderr, "exec iox-roudi: %s\n", std::strerror(errno));
        std::_Exit(127);
    }
    ::close(fds[1]);
    r.pid = pid;
    // Wait (at most 10 s) for "RouDi is ready for clients".
    std::string seen;
    const std::int64_t deadline = now_ns() + 10'000'000'000;
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    while (now_ns() < deadline) {
        char buf[512];
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n > 0) seen.append(buf, static_cast<std::size_t>(n));
        if (seen.find("RouDi is ready") != std::string::npos) break;
        int status;
        if (n == 0 || ::waitpid(pid, &status, WNOHANG) == pid) {
            r.pid = -1;
            std::string last = seen.substr(seen.size() > 300 ? seen.size() - 300 : 0);
            std::replace(last.begin(), last.end(), '\n', ' ');
            r.why = "iox-roudi exited: " + last;
            ::close(fds[0]);
            return r;
        }
        timespec ts{0, 5'000'000};
        ::nanosleep(&ts, nullptr);
    }
    if (seen.find("RouDi is ready") == std::string::npos) {
        // Leave the pipe open: RouDi keeps writing warnings; a closed pipe would kill it.
        r.why = "iox-roudi did not report ready within 10 s";
        ::kill(pid, SIGTERM);
        ::waitpid(pid, nullptr, 0);
        r.pid = -1;
        return r;
    }
    // Drain RouDi's output into /dev/null from here on: redirect by leaving the read end to a
    // tiny reaper is overkill; RouDi logs little at level warning, so a 64 KiB pipe suffices.
    return r;
}

void stop_roudi(Roudi& r) {
    if (r.pid <= 0) return;
    ::kill(r.pid, SIGTERM);
    const std::int64_t deadline = now_ns() + 5'000'000'000;
    while (now_ns() < deadline) {
        if (::waitpid(r.pid, nullptr, WNOHANG) == r.pid) {
            r.pid = -1;
            return;
        }
        timespec ts{0, 10'000'000};
        ::nanosleep(&ts, nullptr);
    }
    ::kill(r.pid, SIGKILL);
    ::waitpid(r.pid, nullptr, 0);
    r.pid = -1;
}
#endif

// ---- Aeron: the media driver, started and stopped by the bench -----------------------------------

#ifdef SHMCHAN_BENCH_AERON
struct AeronDriver {
    pid_t pid = -1;
    std::string dir;  // AERON_DIR: on tmpfs, as Aeron's default is
    std::string why;  // empty: running
};
AeronDriver g_aeron;

// aeronmd in threading mode SHARED (one thread for conductor, sender and receiver) with the
// backoff idle strategy, pinned to the producer's core (the writer's), in a directory of its own
// that it deletes on start and on shutdown.
AeronDriver start_aeron_driver(const Config& cfg) {
    AeronDriver d;
    d.dir = "/dev/shm/shm-bench-aeron-" + std::to_string(::getpid());
    const std::string log = cfg.dir + "/aeronmd.log";
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return d.why = std::string("fork: ") + std::strerror(errno), d;
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGINT);  // the driver goes (and cleans up) when the bench goes
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the bench blocks SIGCHLD; the driver must not inherit that
        pin_to(cfg.core_a);
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::close(fd);
        }
        ::setenv("AERON_DIR", d.dir.c_str(), 1);
        ::setenv("AERON_THREADING_MODE", "SHARED", 1);
        ::setenv("AERON_SHARED_IDLE_STRATEGY", "backoff", 1);
        ::setenv("AERON_DIR_DELETE_ON_START", "true", 1);
        ::setenv("AERON_DIR_DELETE_ON_SHUTDOWN", "true", 1);
        ::execl(SHMCHAN_AERON_DRIVER, "aeronmd", static_cast<char*>(nullptr));
        std::fprintf(stderr, "exec %s: %s\n", SHMCHAN_AERON_DRIVER, std::strerror(errno));
        std::_Exit(127);
    }
    d.pid = pid;
    // Ready when a client connects (the driver's CnC file is up and its heartbeat fresh).
    std::string why;
    const std::int64_t deadline = now_ns() + 10'000'000'000;
    for (;;) {
        int status;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            d.pid = -1;
            std::ifstream in(log);
            std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            text = text.substr(text.size() > 300 ? text.size() - 300 : 0);
            std::replace(text.begin(), text.end(), '\n', ' ');
            return d.why = "aeronmd exited: " + text, d;
        }
        if (::access((d.dir + "/cnc.dat").c_str(), R_OK) == 0 && (why = aeron_driver_check(d.dir, 2000)).empty()) return d;
        if (now_ns() > deadline) break;
        timespec ts{0, 10'000'000};
        ::nanosleep(&ts, nullptr);
    }
    d.why = "aeronmd did not accept a client within 10 s" + (why.empty() ? std::string() : ": " + why);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    d.pid = -1;
    unlink_dir(d.dir);
    return d;
}

void stop_aeron_driver(AeronDriver& d) {
    if (d.pid <= 0) return;
    ::kill(d.pid, SIGINT);  // aeronmd shuts down cleanly on SIGINT (and deletes its directory)
    const std::int64_t deadline = now_ns() + 5'000'000'000;
    bool gone = false;
    while (!gone && now_ns() < deadline) {
        gone = ::waitpid(d.pid, nullptr, WNOHANG) == d.pid;
        if (!gone) {
            timespec ts{0, 10'000'000};
            ::nanosleep(&ts, nullptr);
        }
    }
    if (!gone) {
        ::kill(d.pid, SIGKILL);
        ::waitpid(d.pid, nullptr, 0);
    }
    d.pid = -1;
    unlink_dir(d.dir);
}
#endif

// ---- The rows of a run --------------------------------------------------------------------------

const char* kSleepers[] = {"park", "pipe", "unix-socket", "boost-message-queue", "zeromq-ipc", "futex"};

bool sleeps(const Spec& s) {
    for (const char* k : kSleepers) {
        if (s.transport == k || (s.transport == "shmchan" && s.mode == k)) return true;
    }
    return false;
}

std::vector<Spec> plan(const Config& cfg) {
    std::vector<std::uint64_t> sizes = cfg.quick ? std::vector<std::uint64_t>{64, 32768}
                                                 : std::vector<std::uint64_t>{8, 64, 512, 4096, 32768, kMiB};
    std::vector<Spec> specs;
    auto add = [&](std::string t, std::string m, std::string a, Pattern p, std::uint64_t nominal, std::uint64_t rb) {
        Spec s;
        s.transport = std::move(t);
        s.mode = std::move(m);
        s.api = std::move(a);
        s.pattern = p;
        s.nominal_bytes = nominal;
        s.record_bytes = rb;
        s.stream_ns = p == Pattern::stream ? cfg.stream_ns : 0;
        specs.push_back(s);
    };
    for (Pattern p : {Pattern::stream, Pattern::pingpong}) {
        if (p == Pattern::stream) {
            add("memcpy", "l2", "", p, 32768, 32768);
            add("memcpy", "dram", "", p, 32768, 32768);
        } else {
            add("cacheline", "spin", "", p, 64, 64);
            add("futex", "park", "", p, 64, 64);
        }
        for (std::uint64_t n : sizes) {
            add("pipe", "", "", p, n, n);
            add("unix-socket", "", "", p, n, n);
            add("boost-message-queue", "", "", p, n, n);
            add("zeromq-ipc", "", p == Pattern::stream ? "push-pull" : "pair", p, n, n);
            add("iceoryx", "poll", "loan", p, n, n);
            // Aeron: the stream sizes up to 32 KiB (one frame per record) and 64 B and 32 KiB
            // ping-pong.
            if (n <= 32768 && (p == Pattern::stream || n == 64 || n == 32768)) add("aeron-ipc", "spin", "try-claim", p, n, n);
            if (p == Pattern::stream) add("ring", "spin", "", p, n, n);
            if (p == Pattern::stream) add("cross-core", "spin", "", p, n, n);
            if (p == Pattern::stream) add("cross-core", "copy", "", p, n, n);
            for (const char* mode : {"spin", "hybrid", "park"}) {
                add("shmchan", mode, "segments", p, n, n == 32768 ? kRawMax : n);
                add("shmchan", mode, "copy", p, n, n == 32768 ? kAlignedRecordMax : n);
                add("shmchan", mode, "zero-copy", p, n, n == 32768 ? kRecordMax : n);
                if (p == Pattern::stream && n <= 32768) add("shmchan", mode, "per-record", p, n, n == 32768 ? kAlignedRecordMax : n);
            }
        }
    }
    // Scarce cores: the stream rows again with a busy loop on the consumer's core, for the pipe
    // and the copying records calls in each wait strategy.
    for (std::uint64_t n : {std::uint64_t{64}, std::uint64_t{32768}}) {
        add("pipe", "", "", Pattern::stream, n, n);
        for (const char* mode : {"spin", "hybrid", "park"}) add("shmchan", mode, "copy", Pattern::stream, n, n == 32768 ? kAlignedRecordMax : n);
        for (std::size_t i = specs.size() - 4; i < specs.size(); ++i) specs[i].load = kBusyConsumerCore;
    }
    std::uint64_t k = 0;
    for (Spec& s : specs) {
        s.name = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(k++);
        s.dir = cfg.dir;
        if (s.pattern == Pattern::pingpong) {
            const bool sleeper = sleeps(s);
            s.round_trips = sleeper ? (cfg.quick ? 10'000 : 100'000) : (cfg.quick ? 50'000 : 1'000'000);
            s.warmup = sleeper ? (cfg.quick ? 200 : 1'000) : (cfg.quick ? 2'000 : 20'000);
            s.cap_ns = cfg.quick ? 1'000'000'000 : 5'000'000'000;
            if (s.transport == "memcpy") s.cap_ns = 0;
        }
    }
    return specs;
}

std::string note_for(const Spec& s) {
    std::string n;
    if (s.transport == "shmchan" && s.nominal_bytes == 32768) {
        n = s.api == "segments" ? "32704 bytes: the whole payload of one default segment (32768 - 64 header)"
            : s.record_bytes == kAlignedRecordMax
                ? "32640 bytes: the largest record that write() places cache-line-aligned in one default segment (32768 - 64 segment header - 64 run frame header and padding)"
                : "32696 bytes: the largest record that fits one default segment (32768 - 64 segment header - 8 frame header)";
    }
    if (s.transport == "shmchan" && s.api == "segments" && s.pattern == Pattern::stream && s.record_bytes < kRawMax)
        n = "records packed back to back, " + std::to_string(kRawMax / s.record_bytes) + " per segment";
    if (s.transport == "shmchan" && s.record_bytes > kRawMax) n = "a record spans " + std::to_string((s.record_bytes + kRawMax - 1) / kRawMax) + " segments";
    if (s.transport == "pipe" || s.transport == "unix-socket") {
        n = s.pattern == Pattern::stream ? "one write(2) per record" : "one write(2) per message";
        if (s.pattern == Pattern::stream && s.record_bytes <= 4096) n += " (one syscall per record)";
        if (s.pattern == Pattern::stream) n += "; consumer reads 64 KiB per read(2)";
    }
    if (s.transport == "boost-message-queue") n = "16 messages deep, max message size = record size";
    if (s.transport == "aeron-ipc")
        n = std::string(s.record_bytes > 1376 ? "aeron:ipc?mtu=65504" : "aeron:ipc") +
            ", exclusive publication, try_claim() per record written in place, busy-polled fragment handler reads it in place; "
            "aeronmd SHARED (backoff idle) pinned with the producer; clients pre-touch the log buffers";
    if (s.transport == "shmchan" && s.api == "per-record")
        n += std::string(n.empty() ? "" : "; ") + "one write() and one read() per record";
    if (s.transport == "ring") n = s.record_bytes < 32768 ? "records batched into 32 KiB slots, " + std::to_string(32768 / s.record_bytes) + " per slot"
                                                       : "16 slots of 32 KiB; one copy in, one copy out";
    if (s.transport == "cacheline") n = "the limit: one 64-byte line each way, only its 8-byte sequence word is written and read";
    if (s.transport == "futex") n = "the limit: FUTEX_WAIT/FUTEX_WAKE on a shared word each way, both sides always sleeping";
    if (s.transport == "cross-core")
        n = s.mode == "copy"
                ? "the limit of a copying call: records filled in a private buffer and copied into the slot (one memcpy per slot) on one core, read in place on the other (16 x 32 KiB slots, spinning; no library)"
                : "the limit: records written in place on one core and read in place on the other (16 x 32 KiB slots, spinning, one index store per slot; no copy, no library)";
    if (s.transport == "memcpy") n = s.mode == "l2" ? "single core, 32 KiB blocks between two 32 KiB buffers (in L2)" : "single core, 32 KiB blocks through 2 x 256 MiB (out of cache)";
    if (s.transport == "shmchan" && (s.api == "copy" || s.api == "zero-copy") && s.pattern == Pattern::pingpong)
        n += std::string(n.empty() ? "" : "; ") + "writer flush()es after each record";
    if (s.transport == "shmchan" && s.pattern == Pattern::stream && s.api == "copy") {
        const std::uint64_t batch = std::max<std::uint64_t>(1, 32768 / s.record_bytes);
        n += std::string(n.empty() ? "" : "; ") + "write_batch() of " + std::to_string(batch) +
             (batch == 1 ? " record" : " records") + " per call, read_run() (a view of each run)";
    }
    if (s.transport == "shmchan" && s.pattern == Pattern::stream && s.api == "zero-copy") {
        const std::uint64_t batch = std::max<std::uint64_t>(1, 32768 / s.record_bytes);
        n += std::string(n.empty() ? "" : "; ") +
             (batch >= 2 ? "reserve_run() of up to " + std::to_string(batch) +
                               " records, filled in place, commit_run(); read_run() (a view of each run)"
                         : std::string("one reserve()/commit() and one read_run() (a view) per record"));
    }
    return n;
}

Row run_once(const Spec& spec, const Config& cfg
#ifdef SHMCHAN_BENCH_ICEORYX
             , Roudi* roudi
#endif
) {
    Row row;
    row.spec = spec;
    row.note = note_for(spec);
    std::string error;
    bool ran = false;
    const std::string& t = spec.transport;
    if (t == "shmchan") {
        if (spec.api == "zero-copy" && spec.record_bytes > kRecordMax) {
            row.note = "not applicable: reserve() holds at most one segment's record (32696 bytes); a larger record goes through write(), see the copy row";
            row.ok = true;
            return row;
        }
        SideFn fn = spec.api == "segments" ? SideFn(shmchan_segments) : SideFn(shmchan_records);
        for (const char* suffix : {"", "-f", "-b"}) shmchan::remove_channel(spec.name + suffix, true);
        ran = run_children(spec, cfg, fn, fn, nullptr, error);
        for (const char* suffix : {"", "-f", "-b"}) shmchan::remove_channel(spec.name + suffix, true);
    } else if (t == "pipe" || t == "unix-socket") {
        int f1[2], f2[2] = {-1, -1};
        const bool sock = t == "unix-socket";
        if (sock ? ::socketpair(AF_UNIX, SOCK_STREAM, 0, f1) != 0 : ::pipe(f1) != 0) die("pipe/socketpair failed");
        if (!sock && spec.pattern == Pattern::pingpong && ::pipe(f2) != 0) die("pipe failed");
        SideFn a, b;
        if (spec.pattern == Pattern::stream) {
            // pipe: f1[1] -> f1[0]; socket: f1[0] -> f1[1]
            const int wfd = sock ? f1[0] : f1[1], rfd = sock ? f1[1] : f1[0];
            a = [=](Ctx& c) { ::close(rfd); fd_stream(c, wfd); };
            b = [=](Ctx& c) { ::close(wfd); fd_stream(c, rfd); };
        } else if (sock) {
            a = [=](Ctx& c) { ::close(f1[1]); fd_pingpong(c, f1[0], f1[0]); };
            b = [=](Ctx& c) { ::close(f1[0]); fd_pingpong(c, f1[1], f1[1]); };
        } else {
            a = [=](Ctx& c) { ::close(f1[0]); ::close(f2[1]); fd_pingpong(c, f1[1], f2[0]); };
            b = [=](Ctx& c) { ::close(f1[1]); ::close(f2[0]); fd_pingpong(c, f2[1], f1[0]); };
        }
        ran = run_children(spec, cfg, a, b, [&] {
            for (int fd : {f1[0], f1[1], f2[0], f2[1]}) if (fd >= 0) ::close(fd);
        }, error);
    } else if (t == "boost-message-queue") {
        const std::vector<std::string> names = spec.pattern == Pattern::stream ? std::vector<std::string>{spec.name}
                                                                               : std::vector<std::string>{spec.name + "-f", spec.name + "-b"};
        try {
            for (const auto& n : names) {
                bip::message_queue::remove(n.c_str());
                bip::message_queue(bip::create_only, n.c_str(), 16, spec.record_bytes);
            }
            ran = run_children(spec, cfg, mq_side, mq_side, nullptr, error);
        } catch (const std::exception& e) {
            error = std::string("message_queue: ") + e.what();
        }
        for (const auto& n : names) bip::message_queue::remove(n.c_str());
    } else if (t == "ring") {
        void* mem = ::mmap(nullptr, sizeof(Ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) die("mmap ring");
        Ring* q = new (mem) Ring();
        ran = run_children(spec, cfg, [q](Ctx& c) { ring_stream(c, q); }, [q](Ctx& c) { ring_stream(c, q); }, nullptr, error);
        q->~Ring();
        ::munmap(mem, sizeof(Ring));
    } else if (t == "cacheline" || t == "futex") {
        void* mem = ::mmap(nullptr, sizeof(Lines), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) die("mmap lines");
        Lines* L = new (mem) Lines{};
        const bool fx = t == "futex";
        ran = run_children(spec, cfg, [=](Ctx& c) { lines_pingpong(c, L, fx); }, [=](Ctx& c) { lines_pingpong(c, L, fx); }, nullptr, error);
        ::munmap(mem, sizeof(Lines));
    } else if (t == "memcpy") {
        ran = run_children(spec, cfg, memcpy_run, nullptr, nullptr, error);
    } else if (t == "cross-core") {
        void* mem = ::mmap(nullptr, sizeof(CrossCore), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) die("mmap cross-core ring");
        auto* r = new (mem) CrossCore{};
        ran = run_children(spec, cfg, [r](Ctx& c) { cross_core_stream(c, r); }, [r](Ctx& c) { cross_core_stream(c, r); }, nullptr, error);
        ::munmap(mem, sizeof(CrossCore));
    } else if (t == "zeromq-ipc") {
#ifdef SHMCHAN_BENCH_ZMQ
        ran = run_children(spec, cfg, zmq_side, zmq_side, nullptr, error);
#else
        row.note = "not built: libzmq not found (scripts/bench_deps.sh installs it)";
        row.ok = true;
        return row;
#endif
    } else if (t == "aeron-ipc") {
#ifdef SHMCHAN_BENCH_AERON
        if (g_aeron.pid <= 0) {
            row.note = "not run: " + g_aeron.why;
            row.ok = true;
            return row;
        }
        const std::string dir = g_aeron.dir;
        ran = run_children(spec, cfg, [dir](Ctx& c) { aeron_side(c, dir); }, [dir](Ctx& c) { aeron_side(c, dir); }, nullptr, error);
#else
        row.note = "not built: configure with -DSHMCHAN_AERON_DIR=DIR, an Aeron build made by scripts/build_aeron.sh (bench/README.md)";
        row.ok = true;
        return row;
#endif
    } else if (t == "iceoryx") {
#ifdef SHMCHAN_BENCH_ICEORYX
        if (roudi->pid <= 0) {
            row.note = "not run: " + roudi->why;
            row.ok = true;
            return row;
        }
        ran = run_children(spec, cfg, iceoryx_side, iceoryx_side, nullptr, error);
#else
        row.note = "not built: iceoryx (libiceoryx-posh-dev) not found (scripts/bench_deps.sh installs it)";
        row.ok = true;
        return row;
#endif
    }
    if (!ran) {
        row.error = error;
        return row;
    }
    collect(row);
    return row;
}

// ---- Ratios, checks, output ----------------------------------------------------------------

const Row* find(const std::vector<Row>& rows, const std::string& t, const std::string& m, const std::string& a,
                Pattern p, std::uint64_t nominal, const std::string& load = "") {
    for (const Row& r : rows) {
        if (r.spec.transport == t && (m == "*" || r.spec.mode == m) && (a == "*" || r.spec.api == a) &&
            r.spec.pattern == p && r.spec.nominal_bytes == nominal && r.spec.load == load && r.ok && (r.bytes_per_s || r.p50))
            return &r;
    }
    return nullptr;
}

void compute_ratios(std::vector<Row>& rows) {
    for (Row& r : rows) {
        const Spec& s = r.spec;
        if (s.transport != "shmchan" || !r.ok) continue;
        if (s.pattern == Pattern::stream && r.bytes_per_s) {
            for (auto [t, key] : {std::pair{"pipe", "x_pipe"}, {"ring", "x_ring"}, {"unix-socket", "x_unix_socket"}}) {
                if (const Row* b = find(rows, t, "*", "*", s.pattern, s.nominal_bytes, s.load)) r.ratios[key] = *r.bytes_per_s / *b->bytes_per_s;
            }
            if (s.mode != "spin") {
                if (const Row* b = find(rows, "shmchan", "spin", s.api, s.pattern, s.nominal_bytes, s.load)) r.ratios["x_spin"] = *r.bytes_per_s / *b->bytes_per_s;
            }
            if (s.mode != "park") {
                if (const Row* b = find(rows, "shmchan", "park", s.api, s.pattern, s.nominal_bytes, s.load)) r.ratios["x_park"] = *r.bytes_per_s / *b->bytes_per_s;
            }
            if (const Row* b = find(rows, "memcpy", "l2", "*", s.pattern, 32768)) r.ratios["x_memcpy_l2"] = *r.bytes_per_s / *b->bytes_per_s;
            if (const Row* b = find(rows, "cross-core", "spin", "*", s.pattern, s.nominal_bytes)) r.ratios["x_cross_core"] = *r.bytes_per_s / *b->bytes_per_s;
            if (const Row* b = find(rows, "aeron-ipc", "*", "*", s.pattern, s.nominal_bytes, s.load)) r.ratios["x_aeron"] = *r.bytes_per_s / *b->bytes_per_s;
            if (s.api == "per-record") {
                if (const Row* b = find(rows, "shmchan", s.mode, "segments", s.pattern, s.nominal_bytes, s.load)) r.ratios["x_segments"] = *r.bytes_per_s / *b->bytes_per_s;
            }
        }
        if (s.pattern == Pattern::pingpong && r.p50) {
            // Spinning modes against the cache-line limit, park against the futex limit.
            if (const Row* b = find(rows, "cacheline", "*", "*", s.pattern, 64); b && s.nominal_bytes == 64 && s.mode != "park")
                r.ratios["rtt_over_cacheline"] = *r.p50 / *b->p50;
            if (const Row* b = find(rows, "futex", "*", "*", s.pattern, 64); b && s.nominal_bytes == 64 && s.mode == "park")
                r.ratios["rtt_over_futex"] = *r.p50 / *b->p50;
            if (const Row* b = find(rows, "pipe", "*", "*", s.pattern, s.nominal_bytes)) r.ratios["pipe_rtt_over_rtt"] = *b->p50 / *r.p50;
            if (const Row* b = find(rows, "aeron-ipc", "*", "*", s.pattern, s.nominal_bytes)) r.ratios["rtt_over_aeron"] = *r.p50 / *b->p50;
            if (s.mode != "spin") {
                if (const Row* b = find(rows, "shmchan", "spin", s.api, s.pattern, s.nominal_bytes)) r.ratios["rtt_over_spin"] = *r.p50 / *b->p50;
            }
        }
    }
}

std::string fmt(double v, int prec = 2) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}
std::string fmt_rate(std::optional<double> v) {
    if (!v) return "-";
    char b[64];
    if (*v >= 1e9) std::snprintf(b, sizeof b, "%.2f G", *v / 1e9);
    else if (*v >= 1e6) std::snprintf(b, sizeof b, "%.2f M", *v / 1e6);
    else if (*v >= 1e3) std::snprintf(b, sizeof b, "%.1f k", *v / 1e3);
    else std::snprintf(b, sizeof b, "%.0f", *v);
    return b;
}
std::string fmt_us(std::optional<double> ns) {
    if (!ns) return "-";
    return *ns < 10000 ? fmt(*ns / 1000.0, 3) : fmt(*ns / 1000.0, 1);
}
std::string ratio_text(const Row& r) {
    static const std::vector<std::pair<std::string, std::string>> names = {
        {"x_pipe", "x pipe"}, {"x_ring", "x ring"}, {"x_unix_socket", "x unix"}, {"x_spin", "x spin"}, {"x_park", "x park"}, {"x_cross_core", "x cross-core"},
        {"x_aeron", "x aeron"}, {"x_segments", "x segments"},
        {"rtt_over_cacheline", "/cacheline"}, {"rtt_over_futex", "/futex"}, {"rtt_over_spin", "/spin"}, {"rtt_over_aeron", "/aeron"},
        {"pipe_rtt_over_rtt", "pipe/rtt"}};
    std::string out;
    for (const auto& [key, label] : names) {
        auto it = r.ratios.find(key);
        if (it == r.ratios.end()) continue;
        if (!out.empty()) out += ", ";
        if (label[0] == '/') out += "rtt" + label + " " + fmt(it->second);
        else if (key == "pipe_rtt_over_rtt") out += label + " " + fmt(it->second, 1);
        else out += fmt(it->second) + label;
    }
    return out;
}

std::string bytes_label(std::uint64_t n) {
    if (n >= kMiB && n % kMiB == 0) return std::to_string(n / kMiB) + " MiB";
    return std::to_string(n);
}
std::string size_label(std::uint64_t n) {
    if (n >= kMiB && n % kMiB == 0) return std::to_string(n / kMiB) + " MiB";
    if (n >= 1024 && n % 1024 == 0) return std::to_string(n / 1024) + " KiB";
    return std::to_string(n) + " B";
}

std::vector<const Row*> sorted(const std::vector<Row>& rows) {
    std::vector<const Row*> out;
    for (const Row& r : rows) out.push_back(&r);
    auto order = [](const std::string& t) {
        static const std::vector<std::string> ts = {"memcpy", "cross-core", "cacheline", "futex", "ring", "pipe", "unix-socket",
                                                    "boost-message-queue", "zeromq-ipc", "iceoryx", "aeron-ipc", "shmchan"};
        return std::find(ts.begin(), ts.end(), t) - ts.begin();
    };
    std::stable_sort(out.begin(), out.end(), [&](const Row* x, const Row* y) {
        if (x->spec.pattern != y->spec.pattern) return x->spec.pattern < y->spec.pattern;
        if (x->spec.nominal_bytes != y->spec.nominal_bytes) return x->spec.nominal_bytes < y->spec.nominal_bytes;
        return order(x->spec.transport) < order(y->spec.transport);
    });
    return out;
}

void print_table(const std::vector<Row>& rows, std::FILE* out, bool markdown) {
    const char* head[] = {"transport", "mode", "api", "pattern", "bytes", "rec/s", "B/s", "p50 us", "p99 us", "p99.9 us", "vs baselines", "note"};
    if (markdown) {
        std::fprintf(out, "|");
        for (const char* h : head) std::fprintf(out, " %s |", h);
        std::fprintf(out, "\n|");
        for (std::size_t k = 0; k < std::size(head); ++k) std::fprintf(out, "%s", k >= 4 && k <= 9 ? "---:|" : "---|");
        std::fprintf(out, "\n");
    } else {
        std::fprintf(out, "%-20s %-6s %-9s %-8s %8s %10s %10s %9s %9s %9s  %s\n", head[0], head[1], head[2], head[3], head[4], head[5],
                     head[6], head[7], head[8], head[9], head[10]);
    }
    for (const Row* r : sorted(rows)) {
        const Spec& s = r->spec;
        std::string extra = r->ok ? ratio_text(*r) : "FAILED: " + r->error;
        std::string note = r->note;
        if (r->round_trips) note += std::string(note.empty() ? "" : "; ") + std::to_string(r->round_trips) + " round trips";
        if (r->wakes_per_segment && s.pattern == Pattern::stream)
            note += std::string(note.empty() ? "" : "; ") + fmt(*r->wakes_per_segment, 4) + " wake syscalls/segment";
        const char* pattern = s.pattern == Pattern::stream ? "stream" : "pingpong";
        if (markdown) {
            std::replace(note.begin(), note.end(), '|', '/');
            std::fprintf(out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.transport.c_str(), s.mode.c_str(),
                         s.api.c_str(), pattern, bytes_label(s.record_bytes).c_str(), fmt_rate(r->records_per_s).c_str(),
                         fmt_rate(r->bytes_per_s).c_str(), fmt_us(r->p50).c_str(), fmt_us(r->p99).c_str(), fmt_us(r->p999).c_str(),
                         extra.c_str(), note.c_str());
        } else {
            std::fprintf(out, "%-20s %-6s %-9s %-8s %8s %10s %10s %9s %9s %9s  %s\n", s.transport.c_str(), s.mode.c_str(),
                         s.api.c_str(), pattern, bytes_label(s.record_bytes).c_str(), fmt_rate(r->records_per_s).c_str(),
                         fmt_rate(r->bytes_per_s).c_str(), fmt_us(r->p50).c_str(), fmt_us(r->p99).c_str(), fmt_us(r->p999).c_str(),
                         extra.c_str());
        }
    }
}

struct Check {
    std::string figure, measured;
    std::optional<bool> pass;  // nullopt: not measured in this run
};

struct Idle {
    bool measured = false;
    double wakes_per_s = 0, cpu_fraction = 0;
};

std::vector<Check> checks(const std::vector<Row>& rows, const Idle& idle) {
    std::vector<Check> out;
    const std::vector<std::string> apis = {"segments", "copy", "zero-copy"};
    auto ratio = [&](const std::string& mode, const std::string& api, Pattern p, std::uint64_t n, const std::string& key) -> std::optional<double> {
        const Row* r = find(rows, "shmchan", mode, api, p, n);
        if (!r) return std::nullopt;
        auto it = r->ratios.find(key);
        if (it == r->ratios.end()) return std::nullopt;
        return it->second;
    };
    auto add = [&](const std::string& fig, std::optional<double> v, bool at_least, double target, const std::string& unit) {
        Check c;
        c.figure = fig;
        if (v) {
            c.measured = fmt(*v, unit.empty() ? 4 : 3) + unit;
            c.pass = at_least ? *v >= target : *v <= target;
        } else {
            c.measured = "not measured";
        }
        out.push_back(c);
    };
    for (const auto& api : apis) add("64 B stream, hybrid, " + api + ": >= 50 x pipe", ratio("hybrid", api, Pattern::stream, 64, "x_pipe"), true, 50, " x");
    for (const auto& api : apis) add("64 B stream, hybrid, " + api + ": >= 1 x ring", ratio("hybrid", api, Pattern::stream, 64, "x_ring"), true, 1, " x");
    add("32 KiB stream, hybrid, copy: >= 1 x ring", ratio("hybrid", "copy", Pattern::stream, 32768, "x_ring"), true, 1, " x");
    add("32 KiB stream, hybrid, zero-copy: >= 1.2 x ring", ratio("hybrid", "zero-copy", Pattern::stream, 32768, "x_ring"), true, 1.2, " x");
    add("32 KiB stream, hybrid, segments (info): >= 1 x ring", ratio("hybrid", "segments", Pattern::stream, 32768, "x_ring"), true, 1, " x");
    // Scarce cores (the rows with a busy loop on the consumer's core): the default wait at least
    // as fast as parking at once.
    for (std::uint64_t n : {std::uint64_t{64}, std::uint64_t{32768}}) {
        std::optional<double> v;
        if (const Row* r = find(rows, "shmchan", "hybrid", "copy", Pattern::stream, n, kBusyConsumerCore)) {
            if (auto it = r->ratios.find("x_park"); it != r->ratios.end()) v = it->second;
        }
        add(std::string(n == 64 ? "64 B" : "32 KiB") + " stream, consumer's core busy, hybrid, copy: >= 1 x park", v, true, 1, " x");
    }
    // Aeron IPC of the same run (where it ran).
    add("64 B stream, hybrid, per-record: >= 3 x aeron-ipc", ratio("hybrid", "per-record", Pattern::stream, 64, "x_aeron"), true, 3, " x");
    add("64 B stream, hybrid, per-record: >= 0.5 x segments", ratio("hybrid", "per-record", Pattern::stream, 64, "x_segments"), true, 0.5, " x");
    add("32 KiB stream, hybrid, copy: >= 1.5 x aeron-ipc", ratio("hybrid", "copy", Pattern::stream, 32768, "x_aeron"), true, 1.5, " x");
    add("32 KiB stream, hybrid, zero-copy: >= 1.5 x aeron-ipc", ratio("hybrid", "zero-copy", Pattern::stream, 32768, "x_aeron"), true, 1.5, " x");
    for (const auto& api : apis) add("64 B ping-pong, spin, " + api + ": p50 <= aeron-ipc p50", ratio("spin", api, Pattern::pingpong, 64, "rtt_over_aeron"), false, 1, " x");
    add("32 KiB stream, hybrid, copy: >= 3 x unix socket", ratio("hybrid", "copy", Pattern::stream, 32768, "x_unix_socket"), true, 3, " x");
    add("32 KiB stream, hybrid, zero-copy: >= 3 x unix socket", ratio("hybrid", "zero-copy", Pattern::stream, 32768, "x_unix_socket"), true, 3, " x");
    for (const auto& api : apis) add("64 B ping-pong, spin, " + api + ": <= 2 x cache-line RTT", ratio("spin", api, Pattern::pingpong, 64, "rtt_over_cacheline"), false, 2, " x");
    for (const auto& api : apis) add("64 B ping-pong, hybrid, " + api + ": <= 1.5 x spin RTT", ratio("hybrid", api, Pattern::pingpong, 64, "rtt_over_spin"), false, 1.5, " x");
    for (const auto& api : apis) add("64 B ping-pong, hybrid, " + api + ": >= 50 x faster than pipe", ratio("hybrid", api, Pattern::pingpong, 64, "pipe_rtt_over_rtt"), true, 50, " x");
    for (const auto& api : apis) add("64 B ping-pong, park, " + api + ": <= 1.3 x futex RTT", ratio("park", api, Pattern::pingpong, 64, "rtt_over_futex"), false, 1.3, " x");
    for (std::uint64_t n : {64ull, 32768ull}) {
        for (const auto& api : apis) add(size_label(n) + " stream, hybrid, " + api + ": >= 0.9 x spin", ratio("hybrid", api, Pattern::stream, n, "x_spin"), true, 0.9, " x");
    }
    // What the physical limit of the same run admits: the cross-core row (no copy, no library)
    // against each baseline. A figure above this ratio cannot hold on this machine.
    auto limit = [&](const std::string& fig, const std::string& base, std::uint64_t n, const char* mode = "spin") {
        Check c;
        c.figure = fig;
        const Row* x = find(rows, "cross-core", mode, "*", Pattern::stream, n);
        const Row* b = find(rows, base, "*", "*", Pattern::stream, n);
        c.measured = x && b ? fmt(*x->bytes_per_s / *b->bytes_per_s, 2) + " x (limit, for reference)" : "not measured";
        out.push_back(c);
    };
    limit("limit: 64 B cross-core (ideal zero-copy ring) / pipe: what '50 x pipe' can reach here", "pipe", 64);
    limit("limit: 64 B cross-core / ring", "ring", 64);
    limit("limit: 32 KiB cross-core / ring: what '1.2 x ring' can reach here", "ring", 32768);
    limit("limit: 32 KiB cross-core / unix socket: what '3 x unix socket' can reach here", "unix-socket", 32768);
    limit("limit: 32 KiB cross-core with one copy / unix socket: what '3 x unix socket' can reach for copying calls",
          "unix-socket", 32768, "copy");
    limit("limit: 64 B cross-core with one copy / ring: what '1 x ring' can reach for copying calls", "ring", 64, "copy");
    {
        // No syscall per segment while both sides are busy: wake syscalls per segment of the
        // hybrid streams (the worst of them).
        std::optional<double> worst;
        for (const Row& r : rows) {
            if (r.spec.transport == "shmchan" && r.spec.mode == "hybrid" && r.spec.pattern == Pattern::stream && r.wakes_per_segment)
                worst = std::max(worst.value_or(0.0), *r.wakes_per_segment);
        }
        add("hybrid streams: no syscall per segment while busy (worst wake syscalls per segment <= 0.01)", worst, false, 0.01, "");
    }
    {
        Check c;
        c.figure = "a parked side with nothing to do wakes <= 10 times/s and costs no CPU (< 1 %)";
        if (idle.measured) {
            c.measured = fmt(idle.wakes_per_s, 1) + " wakes/s, " + fmt(idle.cpu_fraction * 100, 3) + " % CPU";
            c.pass = idle.wakes_per_s <= 10.5 && idle.cpu_fraction < 0.01;
        } else {
            c.measured = "not measured";
        }
        out.push_back(c);
    }
    {
        Check c;
        c.figure = "memory: channel file = header + segments (" + std::to_string(shmchan::layout::kHeaderBytes) + " + 16 x " +
                   std::to_string(kSegment) + " = " + std::to_string(shmchan::layout::region_bytes(kSegment, 16)) +
                   " bytes); no allocation per record";
        std::optional<std::uint64_t> file;
        std::uint64_t worst_alloc = 0;
        std::uint64_t records = 0;
        bool any = false;
        for (const Row& r : rows) {
            if (r.spec.transport != "shmchan" || !r.ok || !r.allocations) continue;
            any = true;
            if (r.channel_file_bytes) file = r.channel_file_bytes;
            if (*r.allocations > worst_alloc) {
                worst_alloc = *r.allocations;
                records = r.records;
            }
        }
        if (any) {
            c.measured = "file " + (file ? std::to_string(*file) : std::string("?")) + " bytes; at most " + std::to_string(worst_alloc) +
                         " allocations in a timed loop" + (worst_alloc ? " (of " + std::to_string(records) + " records)" : "");
            c.pass = file && *file == shmchan::layout::region_bytes(kSegment, 16) && worst_alloc <= 2;
        } else {
            c.measured = "not measured";
        }
        out.push_back(c);
    }
    return out;
}

void print_checks(const std::vector<Check>& cs, std::FILE* out, bool markdown) {
    if (markdown) std::fprintf(out, "| figure (target) | measured | result |\n|---|---:|---|\n");
    for (const Check& c : cs) {
        const char* res = !c.pass ? "n/a" : *c.pass ? "pass" : "FAIL";
        if (markdown) std::fprintf(out, "| %s | %s | %s |\n", c.figure.c_str(), c.measured.c_str(), res);
        else std::fprintf(out, "  %-4s  %-90s %s\n", res, c.figure.c_str(), c.measured.c_str());
    }
}

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (char ch : s) {
        if (ch == '"' || ch == '\\') o += '\\', o += ch;
        else if (static_cast<unsigned char>(ch) < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", ch); o += b; }
        else o += ch;
    }
    return o + "\"";
}
std::string json_num(std::optional<double> v) {
    if (!v || !std::isfinite(*v)) return "null";
    char b[64];
    std::snprintf(b, sizeof b, "%.6g", *v);
    return b;
}

void write_json(const std::vector<Row>& rows, const std::vector<Check>& cs, const std::string& path, const std::string& machine) {
    std::ofstream out(path);
    if (!out) die("cannot write " + path);
    out << "{\"results\": [\n";
    bool first = true;
    for (const Row* r : sorted(rows)) {
        const Spec& s = r->spec;
        out << (first ? "" : ",\n") << "  {\"transport\": " << json_str(s.transport)
            << ", \"mode\": " << (s.mode.empty() ? "null" : json_str(s.mode))
            << ", \"api\": " << (s.api.empty() ? "null" : json_str(s.api))
            << ", \"pattern\": " << json_str(s.pattern == Pattern::stream ? "stream" : "pingpong")
            << ", \"load\": " << (s.load.empty() ? "null" : json_str(s.load))
            << ", \"record_bytes\": " << s.record_bytes
            << ", \"records_per_s\": " << json_num(r->records_per_s) << ", \"bytes_per_s\": " << json_num(r->bytes_per_s)
            << ", \"rtt_ns_p50\": " << json_num(r->p50) << ", \"rtt_ns_p99\": " << json_num(r->p99)
            << ", \"rtt_ns_p999\": " << json_num(r->p999);
        if (s.pattern == Pattern::pingpong && r->round_trips) out << ", \"round_trips\": " << r->round_trips;
        for (const auto& [k, v] : r->ratios) out << ", \"" << k << "\": " << json_num(v);
        if (r->wakes_per_segment) out << ", \"wake_syscalls_per_segment\": " << json_num(*r->wakes_per_segment);
        if (r->allocations) out << ", \"allocations_in_loop\": " << *r->allocations;
        std::string note = r->note;
        if (!r->ok) note = "FAILED: " + r->error;
        if (!note.empty()) out << ", \"note\": " << json_str(note);
        out << "}";
        first = false;
    }
    out << "\n],\n\"checks\": [\n";
    first = true;
    for (const Check& c : cs) {
        out << (first ? "" : ",\n") << "  {\"figure\": " << json_str(c.figure) << ", \"measured\": " << json_str(c.measured)
            << ", \"pass\": " << (!c.pass ? "null" : *c.pass ? "true" : "false") << "}";
        first = false;
    }
    out << "\n],\n\"machine\": " << json_str(machine) << "}\n";
}

// gnuplot: throughput vs record size (log-log) per series; p50/p99/p99.9 of the 64-byte
// ping-pong per series.
void plot(const std::vector<Row>& rows, const std::string& png, const std::string& dir) {
    if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
        std::printf("--plot: gnuplot is not installed (scripts/bench_deps.sh installs gnuplot-nox); no plot written\n");
        return;
    }
    std::map<std::string, std::vector<const Row*>> series;
    for (const Row* r : sorted(rows)) {
        if (r->ok && r->spec.pattern == Pattern::stream && r->bytes_per_s && r->spec.transport != "memcpy") series[r->label()].push_back(r);
    }
    const std::string tp = dir + "/throughput.dat", lat = dir + "/latency.dat", gp = dir + "/plot.gp";
    {
        std::ofstream o(tp);
        for (const auto& [k, rs] : series) {
            o << "\"" << k << "\"\n";
            for (const Row* r : rs) o << r->spec.record_bytes << " " << *r->bytes_per_s / 1e9 << "\n";
            o << "\n\n";
        }
    }
    std::uint64_t lat_size = 64;
    int nlat = 0;
    {
        std::ofstream o(lat);
        for (const Row* r : sorted(rows)) {
            if (r->ok && r->spec.pattern == Pattern::pingpong && r->p50 && r->spec.nominal_bytes == lat_size) {
                o << nlat++ << " \"" << r->label() << "\" " << *r->p50 / 1000 << " " << *r->p99 / 1000 << " " << *r->p999 / 1000 << "\n";
            }
        }
    }
    double memcpy_l2 = 0;
    if (const Row* m = find(rows, "memcpy", "l2", "*", Pattern::stream, 32768)) memcpy_l2 = *m->bytes_per_s / 1e9;
    {
        std::ofstream o(gp);
        o << "set terminal pngcairo size 1400,1800 font ',10'\nset output '" << png << "'\n"
          << "set multiplot layout 2,1\n"
          << "set title 'stream throughput vs record size (log-log)'\nset logscale xy\nset xlabel 'record bytes'\n"
          << "set ylabel 'GB/s'\nset key outside right\nset grid\n";
        o << "plot ";
        int i = 0;
        for (const auto& [k, rs] : series) {
            const bool ours = k.rfind("shmchan", 0) == 0;
            o << (i ? ", " : "") << "'" << tp << "' index " << i << " using 1:2 with linespoints lw " << (ours ? 2 : 1)
              << " dt " << (ours ? 1 : 2) << " title '" << k << "'";
            ++i;
        }
        if (memcpy_l2 > 0) o << ", " << memcpy_l2 << " with lines dt 2 lc rgb 'black' title 'memcpy (L2)'";
        o << "\nunset logscale x\nunset xlabel\nset logscale y\nset title 'ping-pong round trip, " << lat_size
          << "-byte records (p50, p99, p99.9)'\nset ylabel 'microseconds'\n"
          << "set xtics rotate by -60 font ',9'\nset xrange [-0.5:" << (nlat > 0 ? nlat - 0.5 : 0.5) << "]\n"
          << "plot '" << lat << "' using 1:3:xtic(2) with points pt 7 ps 1.5 title 'p50', '' using 1:4 with points pt 5 title 'p99', "
          << "'' using 1:5 with points pt 9 title 'p99.9'\nunset multiplot\n";
    }
    const std::string cmd = "gnuplot '" + gp + "' 2>&1";
    if (std::system(cmd.c_str()) != 0) std::printf("--plot: gnuplot failed (script %s)\n", gp.c_str());
    else std::printf("plot written to %s\n", png.c_str());
}

// A hybrid consumer with nothing to read for 1 s: how often does it wake, how much CPU?
Idle measure_idle(const Config& cfg) {
    Idle idle;
    Spec spec;
    spec.transport = "shmchan";
    spec.mode = "hybrid";
    spec.name = "bench-" + std::to_string(::getpid()) + "-idle";
    spec.stream_ns = 1'000'000'000;
    shmchan::remove_channel(spec.name, true);
    struct IdleOut {
        double wakes_per_s, cpu;
    };
    std::string error;
    const bool ok = run_children(
        spec, cfg,
        [](Ctx& ctx) {  // the producer: attached, writes nothing, waits until the consumer is done
            auto p = shmchan::Producer::attach(ctx.spec->name, channel_options(*ctx.spec));
            ctx.ready_and_wait();
            while (ctx.sh->b.done == 0) {
                timespec ts{0, 20'000'000};
                ::nanosleep(&ts, nullptr);
            }
            bench::expect_ok(p.end_stream(), "end_stream");
            ctx.finish();
        },
        [](Ctx& ctx) {
            auto c = shmchan::Consumer::attach(ctx.spec->name, channel_options(*ctx.spec));
            ctx.ready_and_wait();
            rusage r0, r1;
            ::getrusage(RUSAGE_SELF, &r0);
            const std::uint64_t parks0 = c.info().consumer_counters.parks;
            const std::int64_t t0 = now_ns();
            shmchan::ReadableSegment in;
            const Status st = c.read_for(in, std::chrono::nanoseconds(ctx.spec->stream_ns));
            const std::int64_t t1 = now_ns();
            ::getrusage(RUSAGE_SELF, &r1);
            const std::uint64_t parks1 = c.info().consumer_counters.parks;
            if (st != Status::timed_out) return ctx.fail(std::string("read_for: ") + shmchan::to_string(st));
            auto us = [](const rusage& r) {
                return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
            };
            const double secs = static_cast<double>(t1 - t0) / 1e9;
            ctx.me->recv_checksum = static_cast<std::uint64_t>(static_cast<double>(parks1 - parks0) / secs * 1000);
            ctx.me->recv_records = static_cast<std::uint64_t>((us(r1) - us(r0)) / (secs * 1e6) * 1e6);
            ctx.finish();
            ctx.me->done = 1;
            c.remove_channel();
        },
        nullptr, error);
    shmchan::remove_channel(spec.name, true);
    if (!ok) {
        std::printf("idle check failed: %s\n", error.c_str());
        return idle;
    }
    idle.measured = true;
    idle.wakes_per_s = static_cast<double>(g_shared->b.recv_checksum) / 1000.0;
    idle.cpu_fraction = static_cast<double>(g_shared->b.recv_records) / 1e6;
    return idle;
}

// A short cache-line ping-pong (p50, ns): where the hypervisor put the two vCPUs right now. On a
// shared VM it changes over minutes (the same core complex or not), and with it every cross-core
// figure; run at the start and at the end, it tells whether the run saw one placement.
double placement_probe(const Config& cfg) {
    Spec spec;
    spec.transport = "cacheline";
    spec.pattern = Pattern::pingpong;
    spec.round_trips = 20'000;
    spec.warmup = 2'000;
    spec.cap_ns = 500'000'000;
    void* mem = ::mmap(nullptr, sizeof(Lines), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 0;
    Lines* L = new (mem) Lines{};
    std::string error;
    const bool ok = run_children(spec, cfg, [=](Ctx& c) { lines_pingpong(c, L, false); }, [=](Ctx& c) { lines_pingpong(c, L, false); },
                                 nullptr, error);
    ::munmap(mem, sizeof(Lines));
    return ok ? g_shared->hist.percentile(0.5) : 0;
}

// Both pinned sides busy for 200 ms, each reading the clock in a loop: the share of the time
// each one actually ran (a gap > 20 us between two readings is time the vCPU did not run). On a
// VM whose two vCPUs share one physical CPU this is ~50 %, and every spinning wait then takes
// time from the side that has work.
double concurrency_probe(const Config& cfg) {
    Spec spec;
    spec.transport = "probe";
    spec.stream_ns = 200'000'000;
    auto busy = [](Ctx& ctx) {
        const std::int64_t start = ctx.ready_and_wait();
        std::int64_t last = start, lost = 0, t;
        while ((t = now_ns()) - start < ctx.spec->stream_ns) {
            if (t - last > 20'000) lost += t - last;
            last = t;
        }
        ctx.finish();
        ctx.me->recv_records = static_cast<std::uint64_t>(lost);
    };
    std::string error;
    if (!run_children(spec, cfg, busy, busy, nullptr, error)) return 0;
    const double lost = static_cast<double>(g_shared->a.recv_records + g_shared->b.recv_records) / 2.0;
    return 1.0 - lost / static_cast<double>(spec.stream_ns);
}

std::string machine_line() {
    std::string model = "unknown CPU";
    std::ifstream cpu("/proc/cpuinfo");
    for (std::string line; std::getline(cpu, line);) {
        if (line.rfind("model name", 0) == 0) {
            model = line.substr(line.find(':') + 2);
            break;
        }
    }
    double load[3] = {0, 0, 0};
    ::getloadavg(load, 3);
    return model + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, load average at start " + fmt(load[0]) + " " +
           fmt(load[1]) + " " + fmt(load[2]);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-bench: shmchan against pipes, sockets, message queues, ZeroMQ, iceoryx, Aeron IPC, a simple ring and the machine's limits"};
    bool quick = false;
    std::string json_path, plot_path, markdown_path, filter, cores = "0,1";
    app.add_flag("--quick", quick, "64 B and 32 KiB only, short streams, 10,000 round trips where a transport sleeps (< 1 min)");
    app.add_option("--json", json_path, "write the results as JSON ({\"results\": [...]})");
    app.add_option("--plot", plot_path, "draw throughput and latency into a PNG (needs gnuplot)");
    app.add_option("--markdown", markdown_path, "write the table and the checks against the target figures as markdown");
    app.add_option("--filter", filter, "run only rows whose transport/mode/api contains this");
    app.add_option("--cores", cores, "the two CPUs to pin producer and consumer to")->capture_default_str();
    int round_count = Config{}.reps;
    app.add_option("--rounds", round_count, "rounds of every row, interleaved (stream rows: the median)")
        ->capture_default_str()
        ->check(CLI::Range(1, 50));
    CLI11_PARSE(app, argc, argv);

    Config cfg;
    cfg.quick = quick;
    cfg.reps = round_count;
    cfg.stream_ns = quick ? 100'000'000 : 300'000'000;
    if (std::sscanf(cores.c_str(), "%d,%d", &cfg.core_a, &cfg.core_b) != 2 || cfg.core_a == cfg.core_b) {
        std::fprintf(stderr, "shm-bench: --cores wants two different CPUs, as A,B\n");
        return 2;
    }
    char tmpl[] = "/tmp/shm-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp failed");
    cfg.dir = tmpl;
    void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap shared block");
    g_shared = new (mem) Shared{};
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, nullptr);

    const std::string machine = machine_line();
    const auto start = now_ns();
    std::printf("shm-bench%s: %s; producer on CPU %d, consumer on CPU %d\n", quick ? " --quick" : "", machine.c_str(), cfg.core_a, cfg.core_b);

    const double probe_start = placement_probe(cfg);
    const double ran_start = concurrency_probe(cfg);
    std::vector<Spec> specs = plan(cfg);
    if (!filter.empty()) {
        std::erase_if(specs, [&](const Spec& s) {
            Row r;
            r.spec = s;
            return r.key().find(filter) == std::string::npos && r.label().find(filter) == std::string::npos;
        });
    }
#ifdef SHMCHAN_BENCH_ICEORYX
    Roudi roudi;
    const bool want_iceoryx = std::any_of(specs.begin(), specs.end(), [](const Spec& s) { return s.transport == "iceoryx"; });
    if (want_iceoryx) {
        roudi = start_roudi(cfg.dir);
        if (roudi.pid > 0) std::printf("iceoryx: started iox-roudi (pid %d) with its own config in %s\n", roudi.pid, cfg.dir.c_str());
        else std::printf("iceoryx: cannot run: %s\n", roudi.why.c_str());
    }
#endif
#ifdef SHMCHAN_BENCH_AERON
    if (std::any_of(specs.begin(), specs.end(), [](const Spec& s) { return s.transport == "aeron-ipc"; })) {
        g_aeron = start_aeron_driver(cfg);
        if (g_aeron.pid > 0) std::printf("aeron: started aeronmd (pid %d, SHARED, pinned to CPU %d) in %s\n", g_aeron.pid, cfg.core_a, g_aeron.dir.c_str());
        else std::printf("aeron: cannot run: %s\n", g_aeron.why.c_str());
    }
#endif
    // Rounds: every row runs once per round, the rows interleaved, so that a change of the VM's
    // state (another tenant, the vCPUs moved) falls on all rows alike rather than on a few.
    // Stream rows take the median of their rounds; ping-pong rows merge their rounds' histograms.
    struct Acc {
        Spec spec;
        std::vector<Row> tries;
        std::unique_ptr<Histogram> hist;
        std::uint64_t round_trips = 0;
        std::optional<Row> final_row;  // a failure, or a row without figures (not applicable)
    };
    std::vector<Acc> accs;
    for (const Spec& spec : specs) accs.push_back(Acc{spec, {}, nullptr, 0, std::nullopt});
    const int rounds = cfg.reps;
    for (int round = 0; round < rounds; ++round) {
        std::printf("round %d of %d\n", round + 1, rounds);
        for (Acc& acc : accs) {
            if (acc.final_row) continue;
            Spec one = acc.spec;
            one.name += "-r" + std::to_string(round);
            if (one.pattern == Pattern::pingpong) {
                one.round_trips = (acc.spec.round_trips + rounds - 1) / rounds;
                one.warmup = (acc.spec.warmup + rounds - 1) / rounds;
                one.cap_ns = acc.spec.cap_ns / rounds;
            }
            Row r = run_once(one, cfg
#ifdef SHMCHAN_BENCH_ICEORYX
                             , &roudi
#endif
            );
            const bool peer = one.transport == "zeromq-ipc" || one.transport == "iceoryx" || one.transport == "aeron-ipc";
            if (!r.ok && peer && r.error.find("CHECKSUM") == std::string::npos) {
                // A peer library that stalls gets one more try of this round.
                std::printf("  %-38s %-8s %8s  FAILED (%s), trying again\n", r.label().c_str(),
                            one.pattern == Pattern::stream ? "stream" : "pingpong", bytes_label(one.record_bytes).c_str(), r.error.c_str());
                one.name += "-again";
                r = run_once(one, cfg
#ifdef SHMCHAN_BENCH_ICEORYX
                             , &roudi
#endif
                );
                if (!r.ok && r.error.find("CHECKSUM") == std::string::npos) r.peer_stalled = true;
            }
            r.spec = acc.spec;
            std::printf("  %-38s %-8s %8s  %s\n", r.label().c_str(), one.pattern == Pattern::stream ? "stream" : "pingpong",
                        bytes_label(one.record_bytes).c_str(),
                        !r.ok ? ("FAILED: " + r.error).c_str()
                        : r.bytes_per_s ? (fmt_rate(r.records_per_s) + " rec/s, " + fmt_rate(r.bytes_per_s) + "B/s").c_str()
                        : r.p50 ? ("p50 " + fmt_us(r.p50) + " us, p99 " + fmt_us(r.p99) + " us").c_str()
                                : r.note.c_str());
            std::fflush(stdout);
            if (!r.ok || (!r.bytes_per_s && !r.p50)) {
                acc.final_row = r;
                continue;
            }
            if (r.p50) {
                if (!acc.hist) {
                    acc.hist = std::make_unique<Histogram>();
                    acc.hist->clear();
                }
                for (int b = 0; b < Histogram::kBuckets; ++b) acc.hist->counts[b] += g_shared->hist.counts[b];
                acc.hist->total += g_shared->hist.total;
                acc.hist->max_value = std::max(acc.hist->max_value, g_shared->hist.max_value);
                acc.round_trips += r.round_trips;
            }
            acc.tries.push_back(std::move(r));
        }
    }
    std::vector<Row> rows;
    bool failed = false;
    for (Acc& acc : accs) {
        Row row;
        if (acc.final_row) {
            row = *acc.final_row;
        } else if (acc.spec.pattern == Pattern::stream || !acc.hist) {
            std::sort(acc.tries.begin(), acc.tries.end(),
                      [](const Row& x, const Row& y) { return x.bytes_per_s.value_or(0) < y.bytes_per_s.value_or(0); });
            row = acc.tries[acc.tries.size() / 2];
            if (acc.tries.size() > 1) {
                row.note += std::string(row.note.empty() ? "" : "; ") + "median of " + std::to_string(acc.tries.size()) + " rounds (" +
                            fmt_rate(acc.tries.front().bytes_per_s) + "B/s .. " + fmt_rate(acc.tries.back().bytes_per_s) + "B/s)";
            }
        } else {
            row = acc.tries.front();
            row.p50 = acc.hist->percentile(0.50);
            row.p99 = acc.hist->percentile(0.99);
            row.p999 = acc.hist->percentile(0.999);
            row.round_trips = acc.round_trips;
            std::uint64_t allocs = 0;
            for (const Row& t : acc.tries) allocs = std::max<std::uint64_t>(allocs, t.allocations.value_or(0));
            if (row.allocations) row.allocations = allocs;
            if (acc.tries.size() > 1) row.note += std::string(row.note.empty() ? "" : "; ") + std::to_string(acc.tries.size()) + " rounds merged";
        }
        if (!row.ok && !row.peer_stalled) failed = true;
        if (row.peer_stalled) std::printf("warning: %s %s %s stalled twice (a peer library, not shmchan): row left empty\n",
                                          row.label().c_str(), row.spec.pattern == Pattern::stream ? "stream" : "pingpong",
                                          bytes_label(row.spec.record_bytes).c_str());
        rows.push_back(std::move(row));
    }
#ifdef SHMCHAN_BENCH_ICEORYX
    stop_roudi(roudi);
#endif
#ifdef SHMCHAN_BENCH_AERON
    stop_aeron_driver(g_aeron);
#endif
    Idle idle;
    if (filter.empty() || std::string("shmchan/hybrid/").find(filter) != std::string::npos || filter == "shmchan") idle = measure_idle(cfg);
    const double probe_end = placement_probe(cfg);
    const double ran_end = concurrency_probe(cfg);
    char placement[512];
    std::snprintf(placement, sizeof placement,
                  "cache-line round trip p50 %.0f ns at the start, %.0f ns at the end; with both sides busy each ran %.0f %% of the "
                  "time at the start, %.0f %% at the end%s",
                  probe_start, probe_end, ran_start * 100, ran_end * 100,
                  std::max(probe_start, probe_end) > 1.5 * std::min(probe_start, probe_end)
                      ? " (CHANGED during the run: the hypervisor moved the vCPUs; cross-core figures of early and late rows differ)"
                      : "");
    compute_ratios(rows);
    const std::vector<Check> cs = checks(rows, idle);

    std::printf("\n");
    print_table(rows, stdout, false);
    std::printf("\nAgainst the target figures:\n");
    print_checks(cs, stdout, false);
    const double total_s = static_cast<double>(now_ns() - start) / 1e9;
    std::printf("\nvCPU placement: %s\ntotal %.1f s\n", placement, total_s);

    if (!json_path.empty()) write_json(rows, cs, json_path, machine + "; " + placement);
    if (!markdown_path.empty()) {
        std::FILE* md = std::fopen(markdown_path.c_str(), "w");
        if (!md) die("cannot write " + markdown_path);
        std::fprintf(md, "Machine: %s. vCPU placement: %s. Run took %.1f s%s.\n\n", machine.c_str(), placement, total_s,
                     quick ? " (--quick)" : "");
        print_table(rows, md, true);
        std::fprintf(md, "\n### Against the target figures (computed by shm-bench from the rows above)\n\n");
        print_checks(cs, md, true);
        std::fclose(md);
    }
    if (!plot_path.empty()) plot(rows, plot_path, cfg.dir);
    unlink_dir(cfg.dir);
    if (failed) {
        std::fprintf(stderr, "shm-bench: a row failed (see FAILED above)\n");
        return 1;
    }
    return 0;
}
