// SPDX-License-Identifier: Apache-2.0
// shm-bench: what every transport of the benchmark shares. The work (a pattern the producer
// writes and a checksum the consumer reads), the latency histogram, the block the processes of
// one row share, and the context a child process runs in.
//
// The work. Record i is a run of 64-bit words base(i), base(i) + 1, ... (base(i) depends on the
// record index). The producer writes every word of every record; the consumer reads every word
// of every record into that record's sum, and folds the sums, in order, into a checksum. The
// producer computes the same checksum in closed form (it knows what it wrote). The parent
// compares the two through the shared block: a lost, repeated, reordered or corrupted record
// changes the consumer's checksum. Record sizes are multiples of 8 bytes.
#pragma once

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace bench {

// A step of a benchmark's process that must succeed (a status enum with `ok`): anything else ends
// the process with a message, so a failed step shows as a failed run, never as a short fast one.
template <class Status>
inline void expect_ok(Status status, const char* what) {
    if (status == Status::ok) return;
    std::fprintf(stderr, "bench: %s failed (status %d)\n", what, static_cast<int>(status));
    std::_Exit(1);
}

inline std::int64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);  // one clock for all processes of the run
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline void cpu_relax() { __builtin_ia32_pause(); }

// The median of a row's rounds (the upper one of an even count; 0 for none).
inline double median(std::vector<double> values) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
}

// Pins the calling process to one CPU; false (errno set) if the kernel refuses.
inline bool pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

// ---- The pattern and the checksum --------------------------------------------------------------

inline std::uint64_t record_base(std::uint64_t index) { return index * 0x9E3779B97F4A7C15ull; }

// Order-sensitive fold of one record's sum into the checksum.
inline std::uint64_t fold(std::uint64_t checksum, std::uint64_t record_sum) {
    return ((checksum ^ record_sum) * 0x100000001B3ull) + 0x632BE59BD9B4E019ull;
}

// Writes the words v, v + 1, ..., v + n - 1 (the loop vectorizes: about the cost of a memset).
inline void fill_words(std::byte* p, std::size_t n, std::uint64_t v) {
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t w = v + i;
        std::memcpy(p + 8 * i, &w, 8);
    }
}
// Their sum, in closed form.
inline std::uint64_t words_sum(std::size_t n, std::uint64_t v) {
    const std::uint64_t m = n;
    return m * v + (m * (m - 1)) / 2;
}
// Reads n words and sums them (a vectorized reduction).
inline std::uint64_t sum_words(const std::byte* p, std::size_t n) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t w;
        std::memcpy(&w, p + 8 * i, 8);
        sum += w;
    }
    return sum;
}

// Fixed-size variants for the common record sizes (whole records, W words each): unrolled and
// vectorized by the compiler, so that the bench's own work per record stays a few nanoseconds.
template <std::size_t W>
inline void fill_fixed(std::byte* p, std::uint64_t v) {
    for (std::size_t i = 0; i < W; ++i) {
        const std::uint64_t w = v + i;
        std::memcpy(p + 8 * i, &w, 8);
    }
}
template <std::size_t W>
inline std::uint64_t sum_fixed(const std::byte* p) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < W; ++i) {
        std::uint64_t w;
        std::memcpy(&w, p + 8 * i, 8);
        sum += w;
    }
    return sum;
}

// Producer side: writes the stream of records of `record_bytes` each, in pieces of any multiple
// of 8 bytes (a piece may hold many records, or a part of one).
struct Filler {
    std::uint64_t record_bytes;
    std::uint64_t index = 0;   // records completed
    std::uint64_t offset = 0;  // bytes of the current record written
    std::uint64_t record_sum = 0, checksum = 0;
    explicit Filler(std::uint64_t rb) : record_bytes(rb) {}

    template <std::size_t W>
    void whole(std::byte*& p, std::size_t& n) {
        constexpr std::size_t rb = W * 8;
        std::uint64_t i = index, c = checksum;
        for (; n >= rb; p += rb, n -= rb, ++i) {
            const std::uint64_t v = record_base(i);
            fill_fixed<W>(p, v);
            c = fold(c, words_sum(W, v));
        }
        index = i;
        checksum = c;
    }

    // The per-record fast path with the state in a local copy: a loop that also calls into a
    // transport (stores through pointers the compiler cannot tell apart from this object) keeps
    // index and checksum in registers instead of loading and storing them around every record.
    // The same words and checksum as fill(); whole records of 64 or 8 bytes, at a boundary.
    struct Whole {
        std::uint64_t record_bytes, index, checksum;
        void fill(std::byte* p) {
            const std::uint64_t v = record_base(index++);
            if (record_bytes == 64) {
                fill_fixed<8>(p, v);
                checksum = fold(checksum, words_sum(8, v));
            } else {
                fill_fixed<1>(p, v);
                checksum = fold(checksum, v);
            }
        }
    };
    bool has_whole() const { return offset == 0 && (record_bytes == 64 || record_bytes == 8); }
    Whole whole_records() const { return {record_bytes, index, checksum}; }
    void take(const Whole& w) {
        index = w.index;
        checksum = w.checksum;
    }

    // One whole record of 64 or 8 bytes, the common per-record call: inline, the same work as
    // whole<W> (every word written, the checksum folded), without the general path's dispatch,
    // so that a per-record transport pays for its own calls, not for the bench's.
    void fill(std::byte* p, std::size_t n) {
        if (has_whole() && n == record_bytes) [[likely]] {
            Whole w = whole_records();
            w.fill(p);
            take(w);
            return;
        }
        fill_pieces(p, n);
    }

    [[gnu::noinline]] void fill_pieces(std::byte* p, std::size_t n) {
        if (offset == 0) {
            switch (record_bytes) {
                case 8: whole<1>(p, n); break;
                case 64: whole<8>(p, n); break;
                case 512: whole<64>(p, n); break;
                case 4096: whole<512>(p, n); break;
                default: break;
            }
        }
        while (n != 0) {
            const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, record_bytes - offset));
            const std::size_t words = take / 8;
            const std::uint64_t v = record_base(index) + offset / 8;
            fill_words(p, words, v);
            record_sum += words_sum(words, v);
            offset += take;
            p += take;
            n -= take;
            if (offset == record_bytes) {
                checksum = fold(checksum, record_sum);
                ++index;
                offset = 0;
                record_sum = 0;
            }
        }
    }
    bool at_boundary() const { return offset == 0; }

};

// Consumer side: reads the stream in pieces of any multiple of 8 bytes.
struct Summer {
    std::uint64_t record_bytes;
    std::uint64_t index = 0;
    std::uint64_t offset = 0;
    std::uint64_t record_sum = 0, checksum = 0;
    explicit Summer(std::uint64_t rb) : record_bytes(rb) {}

    template <std::size_t W>
    void whole(const std::byte*& p, std::size_t& n) {
        constexpr std::size_t rb = W * 8;
        std::uint64_t i = index, c = checksum;
        for (; n >= rb; p += rb, n -= rb, ++i) c = fold(c, sum_fixed<W>(p));
        index = i;
        checksum = c;
    }

    // As Filler::Whole: the per-record sum with the state in a local copy.
    struct Whole {
        std::uint64_t record_bytes, index, checksum;
        void feed(const std::byte* p) {
            checksum = fold(checksum, record_bytes == 64 ? sum_fixed<8>(p) : sum_fixed<1>(p));
            ++index;
        }
    };
    bool has_whole() const { return offset == 0 && (record_bytes == 64 || record_bytes == 8); }
    Whole whole_records() const { return {record_bytes, index, checksum}; }
    void take(const Whole& w) {
        index = w.index;
        checksum = w.checksum;
    }

    // One whole record of 64 or 8 bytes inline (see Filler::fill).
    void feed(const std::byte* p, std::size_t n) {
        if (has_whole() && n == record_bytes) [[likely]] {
            Whole w = whole_records();
            w.feed(p);
            take(w);
            return;
        }
        feed_pieces(p, n);
    }

    [[gnu::noinline]] void feed_pieces(const std::byte* p, std::size_t n) {
        if (offset == 0) {
            switch (record_bytes) {
                case 8: whole<1>(p, n); break;
                case 64: whole<8>(p, n); break;
                case 512: whole<64>(p, n); break;
                case 4096: whole<512>(p, n); break;
                default: break;
            }
        }
        while (n != 0) {
            const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, record_bytes - offset));
            record_sum += sum_words(p, take / 8);
            offset += take;
            p += take;
            n -= take;
            if (offset == record_bytes) {
                checksum = fold(checksum, record_sum);
                ++index;
                offset = 0;
                record_sum = 0;
            }
        }
    }
    bool at_boundary() const { return offset == 0; }

};

// ---- Latency histogram ------------------------------------------------------------------------
// Log-linear buckets (HdrHistogram's scheme): values below 256 ns exactly; above, 128 buckets per
// power of two, so a bucket is at most 1/128 (0.8 %) of its value wide. Fixed size, no allocation:
// it lives in the shared block.
struct Histogram {
    static constexpr int kSubBits = 8;                  // 256 exact values, then 128 per octave
    static constexpr int kHalf = 1 << (kSubBits - 1);   // 128
    static constexpr int kBuckets = (1 << kSubBits) + (64 - kSubBits) * kHalf;
    std::uint64_t counts[kBuckets];
    std::uint64_t total;
    std::uint64_t max_value;

    void clear() {
        std::memset(counts, 0, sizeof counts);
        total = 0;
        max_value = 0;
    }
    static int index_of(std::uint64_t v) {
        if (v < (1u << kSubBits)) return static_cast<int>(v);
        const int e = 63 - __builtin_clzll(v);  // >= kSubBits
        const int shift = e - (kSubBits - 1);
        const std::uint64_t top = v >> shift;  // in [kHalf, 2 kHalf)
        return (1 << kSubBits) + (e - kSubBits) * kHalf + static_cast<int>(top - kHalf);
    }
    // The middle of bucket i.
    static double value_of(int i) {
        if (i < (1 << kSubBits)) return i;
        const int k = i - (1 << kSubBits);
        const int e = kSubBits + k / kHalf;
        const int shift = e - (kSubBits - 1);
        const std::uint64_t top = static_cast<std::uint64_t>(kHalf + k % kHalf);
        return static_cast<double>(top << shift) + static_cast<double>(std::uint64_t{1} << shift) / 2.0;
    }
    void add(std::uint64_t v) {
        ++counts[index_of(v)];
        ++total;
        if (v > max_value) max_value = v;
    }
    double percentile(double p) const {
        if (total == 0) return 0;
        std::uint64_t rank = static_cast<std::uint64_t>(p * static_cast<double>(total) + 0.999999);
        if (rank < 1) rank = 1;
        std::uint64_t seen = 0;
        for (int i = 0; i < kBuckets; ++i) {
            seen += counts[i];
            if (seen >= rank) return value_of(i);
        }
        return static_cast<double>(max_value);
    }
};

// ---- What the processes of one row share (a MAP_SHARED | MAP_ANONYMOUS block) ----------------

struct SideResult {
    std::uint64_t sent_checksum = 0, sent_records = 0;
    std::uint64_t recv_checksum = 0, recv_records = 0;
    std::int64_t t_begin = 0, t_end = 0;  // CLOCK_MONOTONIC
    std::uint64_t allocations = 0;        // operator new calls inside the timed loop
    int done = 0;
    char error[512] = {};
};

struct Shared {
    alignas(64) std::atomic<int> ready{0};
    alignas(64) std::atomic<int> go{0};
    alignas(64) SideResult a, b;  // a: producer / pinger; b: consumer / ponger
    std::uint64_t round_trips = 0;
    // shmchan: the channel's counters, read by the consumer at the end (all channels of the row).
    bool have_counters = false;
    std::uint64_t wake_syscalls = 0, parks = 0, segments = 0, channel_file_bytes = 0;
    char note[256] = {};
    Histogram hist;
};
static_assert(std::atomic<int>::is_always_lock_free);

enum class Pattern { stream, pingpong };

// What a row asks of its two processes.
struct Spec {
    std::string transport, mode, api;
    Pattern pattern = Pattern::stream;
    std::uint64_t record_bytes = 0;   // the payload size actually sent
    std::uint64_t nominal_bytes = 0;  // the size class of the row (64, 32768, ...)
    std::int64_t stream_ns = 0;       // stream: the producer stops starting records after this
    std::uint64_t round_trips = 0;    // pingpong: timed round trips (after the warm-up)
    std::uint64_t warmup = 0;
    std::int64_t cap_ns = 0;          // pingpong: stop early after this long
    std::string name;                 // a unique name for channels, queues, endpoints
    std::string dir;                  // a private temporary directory of the run
    // Background load of the row: "" none; kBusyConsumerCore: a busy loop pinned to the consumer's
    // core for the whole row (a machine whose cores are scarce: the consumer shares its core).
    std::string load;
};
inline const std::string kBusyConsumerCore = "busy-consumer-core";

std::uint64_t allocation_count();  // operator new calls so far in this process

// The context of one child process.
struct Ctx {
    Shared* sh;
    SideResult* me;
    const Spec* spec;
    bool is_a;
    int core_a, core_b;  // the two CPUs of the run

    // Announces this side is set up, then waits (spinning: both sides are pinned to their own
    // cores) for the parent's go. Returns the start time.
    std::int64_t ready_and_wait() {
        sh->ready.fetch_add(1, std::memory_order_acq_rel);
        while (sh->go.load(std::memory_order_acquire) == 0) cpu_relax();
        me->allocations = allocation_count();
        me->t_begin = now_ns();
        return me->t_begin;
    }
    void finish() {
        me->t_end = now_ns();
        me->allocations = allocation_count() - me->allocations;
    }
    void fail(const std::string& message) {
        std::snprintf(me->error, sizeof me->error, "%s", message.c_str());
    }
    void set_note(const std::string& message) { std::snprintf(sh->note, sizeof sh->note, "%s", message.c_str()); }
};

// Pingpong driver for the pinger: runs warm-up + timed round trips (or until cap_ns), recording
// each timed one in the histogram. `round_trip(i)` sends record i and receives its echo; false
// stops the run (error already set).
template <class RoundTrip>
bool run_pings(Ctx& ctx, RoundTrip&& round_trip) {
    const Spec& s = *ctx.spec;
    ctx.sh->hist.clear();
    std::uint64_t i = 0;
    // The warm-up stops after its count or a tenth of the cap, whichever comes first.
    const std::int64_t warm_start = now_ns();
    for (; i < s.warmup; ++i) {
        if (!round_trip(i)) return false;
        if (now_ns() - warm_start > s.cap_ns / 10) break;
    }
    const std::int64_t start = now_ns();
    std::uint64_t timed = 0;
    for (; timed < s.round_trips; ++i) {
        const std::int64_t t0 = now_ns();
        if (!round_trip(i)) return false;
        const std::int64_t t1 = now_ns();
        ctx.sh->hist.add(static_cast<std::uint64_t>(t1 - t0));
        ++timed;
        if (t1 - start > s.cap_ns) break;
    }
    ctx.sh->round_trips = timed;
    return true;
}

// Optional peers (compiled only when their library was found).
#ifdef SHMCHAN_BENCH_ZMQ
void zmq_side(Ctx& ctx);  // stream: a = PUSH producer, b = PULL consumer; pingpong: PAIR
#endif
#ifdef SHMCHAN_BENCH_ICEORYX
void iceoryx_side(Ctx& ctx);
#endif
#ifdef SHMCHAN_BENCH_AERON
// Stream: a = exclusive publication (try_claim), b = subscription; pingpong: one of each per side.
// aeron_dir: the media driver's directory.
void aeron_side(Ctx& ctx, const std::string& aeron_dir);
// Connects a client to the media driver in aeron_dir and closes it: "" when that works, else why.
// Waits at most timeout_ms for the driver. Starts no thread (safe before fork).
std::string aeron_driver_check(const std::string& aeron_dir, long timeout_ms);
#endif

}  // namespace bench
