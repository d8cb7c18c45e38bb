// SPDX-License-Identifier: Apache-2.0
// shm-store-paths: how fast one core can hand 32 KiB blocks to a reader on another core,
// depending only on how the producer stores them. No channel, no library: a 16-slot ring in
// shared memory (as shm-bench's cross-core limit), the consumer summing every word in place and
// checking each block's sum, and three ways for the producer to write a block:
//   in-place     plain stores into the slot (what a zero-copy writer does, and shmchan's
//                copying write() of small records);
//   memcpy       the block written in a private buffer, then glibc memcpy into the slot (what the
//                ring's producer and a copying write() of a large record do; on this CPU glibc
//                copies 32 KiB with `rep movsb`);
//   nontemporal  non-temporal stores into the slot, then sfence before the release.
// The variants run in turn, in phases of 2,000 blocks, round after round, and each round starts
// with a cache-line ping-pong that tells where the hypervisor put the two vCPUs (same core
// complex: ~100 ns; across dies: ~500 ns). The summary gives each variant's median per placement.
// Why it exists: on this VM the in-place rows of shm-bench swing by 3-4 x with the placement,
// while the ring does not; this program shows the store path is the cause (see docs/PERFORMANCE.md).
#include <CLI/CLI.hpp>

#include "bench_common.hpp"

#include <immintrin.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace {

constexpr std::size_t kSlots = 16, kBlockBytes = 32768, kWords = kBlockBytes / 8;
constexpr std::uint64_t kBlocksPerPhase = 2000, kPingPongs = 2000;
constexpr int kVariants = 3;
const char* const kVariantNames[kVariants] = {"in-place", "memcpy", "nontemporal"};

struct alignas(64) Ring {
    alignas(64) std::atomic<std::uint64_t> head;  // blocks published (producer)
    alignas(64) std::atomic<std::uint64_t> tail;  // blocks consumed (consumer)
    alignas(64) std::atomic<std::uint64_t> ping;  // producer's ping-pong counter
    alignas(64) std::atomic<std::uint64_t> pong;  // consumer's answer
    alignas(4096) std::byte slots[kSlots][kBlockBytes];
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

using bench::median;
using bench::now_ns;

void pin(int cpu) {
    if (!bench::pin_to(cpu)) {
        std::perror("sched_setaffinity");
        std::exit(1);
    }
}

// Block b holds the words b, b + 1, ..., b + kWords - 1.
std::uint64_t block_sum(std::uint64_t b) { return kWords * b + kWords * (kWords - 1) / 2; }

void write_block(int variant, std::uint64_t b, std::byte* slot, std::uint64_t* scratch) {
    auto* words = reinterpret_cast<std::uint64_t*>(slot);
    switch (variant) {
        case 0:
            for (std::size_t i = 0; i < kWords; ++i) words[i] = b + i;
            break;
        case 1:
            for (std::size_t i = 0; i < kWords; ++i) scratch[i] = b + i;
            std::memcpy(slot, scratch, kBlockBytes);
            break;
        default:
            for (std::size_t i = 0; i < kWords; i += 2)
                _mm_stream_si128(reinterpret_cast<__m128i*>(words + i),
                                 _mm_set_epi64x(static_cast<long long>(b + i + 1), static_cast<long long>(b + i)));
            _mm_sfence();  // the non-temporal stores are not ordered by the release below
            break;
    }
}

void producer(Ring* ring, int rounds) {
    auto* scratch = static_cast<std::uint64_t*>(std::aligned_alloc(64, kBlockBytes));
    std::uint64_t head = 0, tail_seen = 0;
    for (int round = 0; round < rounds; ++round) {
        // Ping-pong: the consumer is idle here (it has consumed every block published).
        for (std::uint64_t k = 1; k <= kPingPongs; ++k) {
            const std::uint64_t id = round * kPingPongs + k;
            ring->ping.store(id, std::memory_order_release);
            while (ring->pong.load(std::memory_order_acquire) != id) _mm_pause();
        }
        for (int variant = 0; variant < kVariants; ++variant) {
            for (std::uint64_t n = 0; n < kBlocksPerPhase; ++n) {
                while (head - tail_seen >= kSlots) tail_seen = ring->tail.load(std::memory_order_acquire);
                write_block(variant, head, ring->slots[head % kSlots], scratch);
                ring->head.store(++head, std::memory_order_release);  // publishes the block
            }
        }
        while (ring->tail.load(std::memory_order_acquire) != head) _mm_pause();  // drained: round over
    }
    std::free(scratch);
}

struct Round {
    std::int64_t rtt_p50_ns;
    double gbytes_per_s[kVariants];
};

void consumer(Ring* ring, int rounds, Round* out, std::uint64_t* bad_blocks) {
    std::uint64_t tail = 0, head_seen = 0, bad = 0;
    std::vector<std::int64_t> rtts(kPingPongs);
    for (int round = 0; round < rounds; ++round) {
        std::int64_t last = 0;
        for (std::uint64_t k = 1; k <= kPingPongs; ++k) {
            const std::uint64_t id = round * kPingPongs + k;
            while (ring->ping.load(std::memory_order_acquire) != id) _mm_pause();
            const std::int64_t t = now_ns();
            ring->pong.store(id, std::memory_order_release);
            if (k > 1) rtts[k - 2] = t - last;
            last = t;
        }
        std::nth_element(rtts.begin(), rtts.begin() + (kPingPongs - 1) / 2, rtts.begin() + (kPingPongs - 1));
        out[round].rtt_p50_ns = rtts[(kPingPongs - 1) / 2];
        for (int variant = 0; variant < kVariants; ++variant) {
            std::int64_t start = 0;
            for (std::uint64_t n = 0; n < kBlocksPerPhase; ++n) {
                while (head_seen == tail) head_seen = ring->head.load(std::memory_order_acquire);
                if (n == 0) start = now_ns();  // from the first block in view to the last read
                const auto* words = reinterpret_cast<const std::uint64_t*>(ring->slots[tail % kSlots]);
                std::uint64_t sum = 0;
                for (std::size_t i = 0; i < kWords; ++i) sum += words[i];
                bad += sum != block_sum(tail);
                ring->tail.store(++tail, std::memory_order_release);  // hands the slot back
            }
            out[round].gbytes_per_s[variant] =
                static_cast<double>((kBlocksPerPhase - 1) * kBlockBytes) / static_cast<double>(now_ns() - start);
        }
    }
    *bad_blocks = bad;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"shm-store-paths: cross-core hand-over of 32 KiB blocks by store path (in place, memcpy, non-temporal)"};
    int rounds = 30;
    std::vector<int> cores{0, 1};
    app.add_option("--rounds", rounds, "rounds of every variant")->check(CLI::Range(1, 1000));
    app.add_option("--cores", cores, "the two CPUs for producer and consumer")->expected(2)->delimiter(',');
    CLI11_PARSE(app, argc, argv);

    void* mem = mmap(nullptr, sizeof(Ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    auto* results = static_cast<Round*>(
        mmap(nullptr, sizeof(Round) * rounds + 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    if (mem == MAP_FAILED || results == MAP_FAILED) {
        std::perror("mmap");
        return 1;
    }
    auto* ring = new (mem) Ring{};
    auto* bad_blocks = reinterpret_cast<std::uint64_t*>(results + rounds);

    const pid_t child = fork();
    if (child < 0) {
        std::perror("fork");
        return 1;
    }
    if (child == 0) {
        pin(cores[1]);
        consumer(ring, rounds, results, bad_blocks);
        _exit(0);
    }
    pin(cores[0]);
    producer(ring, rounds);
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "consumer failed\n");
        return 1;
    }

    std::printf("round  rtt_p50_ns  GB/s: %12s %12s %12s\n", kVariantNames[0], kVariantNames[1], kVariantNames[2]);
    std::vector<double> near[kVariants], far[kVariants];
    for (int r = 0; r < rounds; ++r) {
        const Round& x = results[r];
        std::printf("%5d  %10lld        %12.1f %12.1f %12.1f\n", r, static_cast<long long>(x.rtt_p50_ns),
                    x.gbytes_per_s[0], x.gbytes_per_s[1], x.gbytes_per_s[2]);
        for (int v = 0; v < kVariants; ++v) (x.rtt_p50_ns < 250 ? near : far)[v].push_back(x.gbytes_per_s[v]);
    }
    std::printf("\nmedian GB/s by placement (cache-line round trip < 250 ns: same core complex)\n");
    std::printf("%-28s %6s %12s %12s %12s\n", "placement", "rounds", kVariantNames[0], kVariantNames[1],
                kVariantNames[2]);
    auto line = [&](const char* what, std::vector<double>* v) {
        if (v[0].empty()) {
            std::printf("%-28s %6d  (not seen in this run)\n", what, 0);
            return;
        }
        std::printf("%-28s %6zu %12.1f %12.1f %12.1f\n", what, v[0].size(), median(v[0]), median(v[1]), median(v[2]));
    };
    line("same core complex", near);
    line("across dies (RTT >= 250 ns)", far);
    if (*bad_blocks != 0) {
        std::fprintf(stderr, "%llu blocks read with a wrong sum\n", static_cast<unsigned long long>(*bad_blocks));
        return 1;
    }
    return 0;
}
