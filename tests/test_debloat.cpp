// SPDX-License-Identifier: Apache-2.0
// Debloating (layout.hpp rule 7): the consumer's estimate and limit with a made-up clock, the
// producer ring's obedience to the credit limit at the byte level (every value of the shared word,
// the waiver for a spanning record, broadcast), and across processes: the limit follows a consumer
// that slows down and speeds up, a corrupt limit is harmless, broadcast and gates. Verdicts are on
// the published limit and the positions, never on a duration.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "channel_support.hpp"
#include "channels/channel.hpp"
#include "channels/detail/channel_file.hpp"
#include "channels/detail/consumer_ring.hpp"
#include "channels/detail/debloater.hpp"
#include "channels/detail/producer_ring.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "channels/topology.hpp"
#include "support.hpp"

using namespace shmchan;
using namespace std::chrono_literals;
namespace test = shmchan::test;
namespace L = shmchan::layout;
using shmchan::detail::Debloater;
using shmchan::detail::DebloatSettings;

namespace {

constexpr std::uint32_t kSegmentSize = 4096;
constexpr std::uint32_t kCapacity = kSegmentSize - L::kSegmentHeaderBytes;

// --- The consumer's arithmetic, with a made-up clock ----------------------------------------------

// Drives a Debloater as ConsumerSide does: one segment per release, the clock when it asks.
struct Simulated {
    explicit Simulated(DebloatSettings settings) : debloater(settings) {}
    Debloater debloater;
    std::uint64_t now = 1'000'000'000, idle = 0, bytes = 0, position = 0;
    std::uint32_t limit = 0;  // as stored in the wake line
    std::uint64_t throughput = 0;

    // `segments` releases, each after `busy_ns` of work and `idle_ns` of waiting.
    void run(std::uint64_t segments, std::uint64_t busy_ns, std::uint64_t idle_ns = 0) {
        for (std::uint64_t i = 0; i < segments; ++i) {
            now += busy_ns + idle_ns;
            idle += idle_ns;
            bytes += kCapacity;
            ++position;
            if (!debloater.released(1)) continue;
            Debloater::Published out;
            if (debloater.sample(now, idle, bytes, position, out)) {
                throughput = out.throughput_bytes_per_s;
                if (out.credit_limit != 0) limit = out.credit_limit;
            }
        }
    }
};

DebloatSettings settings(std::uint64_t target_ns, std::uint32_t segments) {
    DebloatSettings s;
    s.target_ns = target_ns;
    s.period_ns = 200'000'000;
    s.segment_count = segments;
    s.segment_payload = kCapacity;
    return s;
}

// --- Byte level: the producer ring over a plain buffer --------------------------------------------

class RingBuffer {
public:
    explicit RingBuffer(std::uint32_t segments, std::uint32_t consumers = 1) {
        ChannelOptions options;
        options.segment_size = kSegmentSize;
        options.segment_count = segments;
        options.consumers = consumers;
        bytes_ = L::region_bytes(kSegmentSize, segments);
        memory_.reset(static_cast<std::byte*>(std::aligned_alloc(4096, bytes_)));
        std::memset(memory_.get(), 0, bytes_);
        shmchan::detail::initialize_header(header(), options);
        ring_ = shmchan::detail::RingMemory{&header(), memory_.get() + L::kHeaderBytes, kSegmentSize, segments, consumers};
    }
    L::ChannelHeader& header() { return *reinterpret_cast<L::ChannelHeader*>(memory_.get()); }
    const shmchan::detail::RingMemory& ring() const { return ring_; }
    void set_limit(std::uint32_t slot, std::uint32_t limit) { L::store_relaxed(header().consumers[slot].wake.credit_limit, limit); }
    void release(std::uint32_t slot, std::uint64_t position) { L::store_release(header().consumers[slot].position.released, position); }

private:
    struct Free {
        void operator()(std::byte* p) const { std::free(p); }
    };
    std::unique_ptr<std::byte, Free> memory_;
    std::size_t bytes_ = 0;
    shmchan::detail::RingMemory ring_;
};

struct Producing {
    explicit Producing(RingBuffer& buffer) : ring(buffer.ring(), errors) { REQUIRE(ring.adopt(1) == Status::ok); }
    shmchan::detail::Diagnostics errors;
    shmchan::detail::ProducerRing ring;

    // Acquires and publishes segments until the ring says would_block; how many it got.
    std::uint32_t publish_all(std::uint32_t flags = 0) {
        std::uint32_t count = 0;
        WritableSegment out;
        Status status;
        while ((status = ring.try_acquire(out)) == Status::ok) {
            REQUIRE(ring.publish(8, flags, 0, 0, 0) == Status::ok);
            if (++count > 1000) break;
        }
        CHECK(status == Status::would_block);
        return count;
    }
};

// The wake line of consumer slot 0 in a mapped channel file.
std::size_t wake_offset(std::uint32_t slot = 0) {
    return offsetof(L::ChannelHeader, consumers) + slot * sizeof(L::ConsumerSlot) + offsetof(L::ConsumerSlot, wake);
}
std::size_t limit_offset(std::uint32_t slot = 0) { return wake_offset(slot) + offsetof(L::ConsumerWake, credit_limit); }

ChannelOptions debloated(std::uint32_t segments, std::chrono::nanoseconds target) {
    ChannelOptions options = test::geometry(kSegmentSize, segments);
    options.debloat_target = target;
    options.debloat_period = 20ms;  // 10 x Flink's rate: the averages settle in about a second
    return options;
}

// A producer child: the test pattern in every segment until `stop`, then end of stream.
int produce_until(const std::string& name, const ChannelOptions& options, const std::atomic<int>& stop,
                  std::atomic<std::uint64_t>& written) {
    auto producer = Producer::attach(name, options);
    WritableSegment out;
    std::uint64_t sequence = 0;
    while (stop.load() == 0) {
        Status status = producer.acquire_for(out, 100ms);
        if (status == Status::timed_out) continue;
        if (status != Status::ok) return 1;
        test::fill_segment(out.payload, sequence++);
        if (producer.publish(static_cast<std::uint32_t>(out.payload.size())) != Status::ok) return 2;
        written.store(sequence);
    }
    return producer.end_stream() == Status::ok ? 0 : 3;
}

// A consumer child: checks every segment in order; sleeps `slow_us` per segment while `slow` is set.
int consume_all(const std::string& name, const ChannelOptions& options, const std::atomic<int>& slow, std::uint32_t slow_us,
                std::atomic<std::uint64_t>& received) {
    auto consumer = Consumer::attach(name, options);
    ReadableSegment in;
    std::uint64_t sequence = 0;
    Status status;
    while ((status = consumer.read(in)) == Status::ok) {
        if (!test::check_segment(in.payload, sequence, kCapacity).empty()) return 1;
        ++sequence;
        received.store(sequence);
        if (slow.load() != 0) ::usleep(slow_us);  // the work of a slow consumer (not a verdict)
        if (consumer.release() != Status::ok) return 2;
    }
    return status == Status::end_of_stream ? 0 : 3;
}

struct Flags {
    std::atomic<int> stop{0};
    std::array<std::atomic<int>, 4> slow{};
    std::atomic<std::uint64_t> written{0};
    std::array<std::atomic<std::uint64_t>, 4> received{};
};

// `condition` holds at each of `samples` looks, each after the consumer read `step` more segments
// (so the verdict is on the positions at many moments, not on one lucky snapshot).
bool holds_as_it_reads(const std::function<bool()>& condition, const std::atomic<std::uint64_t>& received,
                       std::uint64_t step, int samples, std::chrono::milliseconds deadline) {
    for (int i = 0; i < samples; ++i) {
        const std::uint64_t from = received.load();
        if (!test::eventually([&] { return received.load() >= from + step; }, deadline)) return false;
        if (!condition()) return false;
    }
    return true;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr auto kSettle = 240s;
#else
constexpr auto kSettle = 60s;
#endif

}  // namespace

TEST_SUITE("debloat") {

TEST_CASE("the estimate: the limit follows a consumer that slows down and speeds up") {
    Simulated sim(settings(10'000'000, 64));  // 10 ms, 64 segments
    sim.run(10'000, 50'000);                  // 20,000 segments/s: 200 wanted, 64 allowed
    CHECK(sim.limit == 64);
    CHECK(sim.throughput > 70'000'000);  // ~80 MB/s
    sim.run(6'000, 2'000'000);           // 500 segments/s for 12 s: 5 wanted
    CHECK(sim.limit >= 5);
    CHECK(sim.limit <= 7);  // within the 25 % threshold of 5
    sim.run(1'000, 10'000'000);  // 100 segments/s for 10 s: 1 wanted, 2 at least
    CHECK(sim.limit == 2);
    sim.run(20'000, 50'000);  // fast again
    CHECK(sim.limit == 64);
}

TEST_CASE("the estimate: time spent waiting for data is not counted, so a starved consumer keeps its limit") {
    Simulated sim(settings(10'000'000, 64));
    sim.run(10'000, 50'000);
    CHECK(sim.limit == 64);
    // The producer sends slowly: the consumer waits 10 ms per segment, works 50 us.
    sim.run(1'000, 50'000, 10'000'000);
    CHECK(sim.limit == 64);
}

TEST_CASE("the estimate: changes under 25 % are not published; the clock is read once per stride") {
    Simulated sim(settings(10'000'000, 1000));
    sim.run(4'000, 100'000);  // 10,000 segments/s: 100 wanted
    CHECK(sim.limit == 100);
    sim.run(4'000, 111'111);  // 9,000 segments/s: 90 wanted, a change of 10 %
    CHECK(sim.limit == 100);
    sim.run(30'000, 200'000);  // 5,000 segments/s for 6 s: 50 wanted
    CHECK(sim.limit <= 60);
    // ~1000 segments per 200 ms period: the clock is read about 8 times a period.
    CHECK(sim.debloater.stride() >= 64);
    Simulated slow(settings(10'000'000, 64));
    slow.run(100, 10'000'000);
    CHECK(slow.debloater.stride() == 2);
}

TEST_CASE("the estimate: the limit stays within [min(2, N), N] whatever the rate") {
    Debloater one(settings(1'000'000'000, 1));
    CHECK(one.limit_for(0) == 1);
    CHECK(one.limit_for(1e12) == 1);
    Debloater many(settings(1'000'000'000, 16));
    CHECK(many.limit_for(0) == 2);
    CHECK(many.limit_for(3.5) == 4);
    CHECK(many.limit_for(1e300) == 16);
    CHECK(many.limit_for(std::numeric_limits<double>::quiet_NaN()) == 16);
    CHECK(many.limit_for(std::numeric_limits<double>::infinity()) == 16);
}

TEST_CASE("options: a debloating consumer needs a positive period; a producer ignores the target") {
    const std::string name = test::unique_name("debloat-options");
    ChannelOptions options = debloated(8, 10ms);
    options.debloat_period = 0ns;
    SHMCHAN_CHECK_THROWS_CODE(Consumer::attach(name, options), Errc::bad_options);
    auto producer = Producer::attach(name, options);  // the producer has nothing to measure
    options.debloat_period = 50ms;
    auto consumer = Consumer::attach(name, options);
    const ChannelInfo info = inspect(name);
    CHECK(info.debloat_target_ns == 10'000'000);
    CHECK(info.credit_limit == 0);  // nothing measured yet: no limit
}

TEST_CASE("ring: the producer obeys the credit limit once it reaches its own, and reads it no earlier") {
    RingBuffer buffer(8);
    Producing producer(buffer);
    buffer.set_limit(0, 3);
    // The first lap: the limit is read when the producer reaches the one it has (the ring).
    CHECK(producer.publish_all() == 8);
    CHECK(producer.ring.credit_limit() == 8);
    buffer.release(0, 1);  // 7 in flight: under the ring, over the limit
    CHECK(producer.publish_all() == 0);
    CHECK(producer.ring.credit_limit() == 3);
    buffer.release(0, 5);  // 3 in flight
    CHECK(producer.publish_all() == 0);
    buffer.release(0, 6);  // 2 in flight: one more
    CHECK(producer.publish_all() == 1);
    buffer.release(0, 9);  // none: up to the limit
    CHECK(producer.publish_all() == 3);
    // The limit is withdrawn (0): the whole ring again.
    buffer.set_limit(0, 0);
    buffer.release(0, 12);
    CHECK(producer.publish_all() == 8);
    CHECK(producer.ring.credit_limit() == 8);
}

TEST_CASE("ring: every value of the shared limit gives a limit within [2, N]: no hang, no overrun") {
    const std::uint32_t values[] = {1, 2, 3, 7, 8, 9, 1000, 0x7fffffffu, 0x80000000u, 0xffffffffu};
    for (std::uint32_t value : values) {
        CAPTURE(value);
        RingBuffer buffer(8);
        Producing producer(buffer);
        CHECK(producer.publish_all() == 8);
        buffer.set_limit(0, value);
        buffer.release(0, 8);  // everything released
        const std::uint32_t expected = value < 2 ? 2 : value > 8 ? 8 : value;
        CHECK(producer.publish_all() == expected);
        CHECK(producer.ring.credit_limit() == expected);
    }
    // A ring of one segment: a limit of one is the ring.
    RingBuffer single(1);
    Producing producer(single);
    single.set_limit(0, 0xffffffffu);
    CHECK(producer.publish_all() == 1);
    single.release(0, 1);
    CHECK(producer.publish_all() == 1);
}

TEST_CASE("ring: the limit is waived while a record spans segments") {
    RingBuffer buffer(8);
    Producing producer(buffer);
    CHECK(producer.publish_all() == 8);
    buffer.set_limit(0, 2);
    buffer.release(0, 8);
    CHECK(producer.publish_all() == 2);
    CHECK(producer.ring.credit_limit() == 2);
    // Segments whose last record continues: the reader may hold them until the record ends.
    buffer.release(0, 10);
    CHECK(producer.publish_all(L::kSegmentRecordContinues) == 8);
}

TEST_CASE("ring: broadcast obeys the smallest limit of the slots; a slot without one imposes none") {
    RingBuffer buffer(16, 3);
    Producing producer(buffer);
    CHECK(producer.publish_all() == 16);
    buffer.set_limit(0, 9);
    buffer.set_limit(1, 0);
    buffer.set_limit(2, 5);
    for (std::uint32_t slot = 0; slot < 3; ++slot) buffer.release(slot, 16);
    CHECK(producer.publish_all() == 5);
    buffer.set_limit(2, 0);
    for (std::uint32_t slot = 0; slot < 3; ++slot) buffer.release(slot, 21);
    CHECK(producer.publish_all() == 9);
}

TEST_CASE("across processes: the limit follows a consumer that slows down and speeds up; nothing lost") {
    const std::string name = test::unique_name("debloat-follow");
    const ChannelOptions options = debloated(64, 20ms);  // 2 ms per segment when slow: at most 10
    test::SharedBlock<Flags> flags;
    test::Child consumer([&] { return consume_all(name, options, flags->slow[0], 2000, flags->received[0]); });
    test::Child producer([&] { return produce_until(name, options, flags->stop, flags->written); });
    test::MappedFile* file = nullptr;
    std::unique_ptr<test::MappedFile> mapped;
    REQUIRE(test::eventually([&] {
        if (!test::file_exists(test::path_of(name))) return false;
        mapped = std::make_unique<test::MappedFile>(test::path_of(name));
        return mapped->ok();
    }));
    file = mapped.get();
    auto limit = [&] { return file->peek32(limit_offset()); };
    auto in_flight = [&] {
        ChannelInfo info = inspect(name);
        return info.published - info.released;
    };
    // Fast: the consumer reads far more than 64 segments in 20 ms.
    CHECK(test::eventually([&] { return limit() >= 32; }, kSettle));
    CHECK(inspect(name).debloat_target_ns == 20'000'000);
    flags->slow[0].store(1);
    // Slow: at most 500 segments/s, so at most 10 segments in 20 ms; the producer keeps to it
    // once it has reached the limit it had (the first lap of 64 after the change).
    CHECK(test::eventually([&] { return limit() <= 16 && limit() >= 2; }, kSettle));
    CHECK(test::eventually([&] { return in_flight() <= 16; }, kSettle));
    CHECK(holds_as_it_reads([&] { return limit() <= 16 && in_flight() <= 16; }, flags->received[0], 4, 20, kSettle));
    ChannelInfo slow = inspect(name);
    CHECK(slow.credit_limit == limit());
    // shm-inspect shows it: JSON keys, the text of show and list, the metrics.
    const test::ProgramRun json = test::run_program({SHMCHAN_SHM_INSPECT_PATH, "show", name, "--json"});
    CHECK(json.code == 0);
    CHECK_MESSAGE(json.out.find("\"credit_limit_segments\": ") != std::string::npos, json.out);
    CHECK_MESSAGE(json.out.find("\"debloat_target_ms\": 20") != std::string::npos, json.out);
    CHECK_MESSAGE(json.out.find("\"estimated_time_to_consume_ms\": null") == std::string::npos, json.out);
    CHECK_MESSAGE(json.out.find("\"in_flight_bytes\": ") != std::string::npos, json.out);
    CHECK_MESSAGE(json.out.find("\"throughput_bytes_per_s\": null") == std::string::npos, json.out);
    const test::ProgramRun text = test::run_program({SHMCHAN_SHM_INSPECT_PATH, "show", name});
    CHECK_MESSAGE(text.out.find("debloating") != std::string::npos, text.out);
    CHECK_MESSAGE(text.out.find("estimatedTimeToConsumeBuffersMs") != std::string::npos, text.out);
    const test::ProgramRun list = test::run_program({SHMCHAN_SHM_INSPECT_PATH, "list"});
    CHECK_MESSAGE(list.out.find("  limit ") != std::string::npos, list.out);
    const test::ProgramRun metrics = test::run_program({SHMCHAN_SHM_INSPECT_PATH, "metrics"});
    CHECK_MESSAGE(metrics.out.find("shmchan_credit_limit_segments{channel=\"" + name + "\"}") != std::string::npos, metrics.out);
    CHECK_MESSAGE(metrics.out.find("shmchan_estimated_time_to_consume_ms{channel=\"" + name + "\"}") != std::string::npos,
                  metrics.out);
    CHECK(slow.throughput_bytes_per_s > 0);
    CHECK(slow.throughput_bytes_per_s < 4'000'000);  // 500 x 4 KiB per second at most
    flags->slow[0].store(0);
    CHECK(test::eventually([&] { return limit() >= 32; }, kSettle));
    flags->stop.store(1);
    CHECK(producer.exit_code() == 0);
    CHECK(consumer.exit_code() == 0);
    CHECK(flags->received[0].load() == flags->written.load());
}

TEST_CASE("across processes: a corrupt limit is harmless: every segment arrives, in order, no hang") {
    const std::string name = test::unique_name("debloat-corrupt");
    const ChannelOptions options = test::geometry(kSegmentSize, 8);
    test::SharedBlock<Flags> flags;
    test::Child consumer([&] { return consume_all(name, options, flags->slow[0], 200, flags->received[0]); });
    test::Child producer([&] { return produce_until(name, options, flags->stop, flags->written); });
    std::unique_ptr<test::MappedFile> file;
    REQUIRE(test::eventually([&] {
        if (!test::file_exists(test::path_of(name))) return false;
        file = std::make_unique<test::MappedFile>(test::path_of(name));
        return file->ok();
    }));
    const std::uint32_t values[] = {1, 0xffffffffu, 2, 0x80000000u, 3, 9, 0, 1};
    std::uint64_t rounds = 0;
    for (std::uint32_t value : values) {
        // Each value while the consumer crawls (200 us a segment: the ring fills) and then reads freely.
        for (int slow = 1; slow >= 0; --slow) {
            flags->slow[0].store(slow);
            file->poke32(limit_offset(), value);
            file->poke64(wake_offset() + offsetof(L::ConsumerWake, throughput_bytes_per_s), ~std::uint64_t{0});
            const std::uint64_t from = flags->received[0].load();
            CHECK(test::eventually([&] { return flags->received[0].load() >= from + 64; }, kSettle));
            ChannelInfo info = inspect(name);
            CHECK(info.published - info.released <= 8);
            CHECK(info.credit_limit <= 8);
            ++rounds;
        }
    }
    flags->stop.store(1);
    CHECK(producer.exit_code() == 0);
    CHECK(consumer.exit_code() == 0);
    CHECK(flags->received[0].load() == flags->written.load());
    CHECK(rounds == 16);
    // The tools show a clamped limit and survive a wild rate figure.
    file->poke32(limit_offset(), 0xffffffffu);
    file->poke64(wake_offset() + offsetof(L::ConsumerWake, segments_per_ks), 1);
    CHECK(inspect(name).credit_limit == 8);
    const test::ProgramRun json = test::run_program({SHMCHAN_SHM_INSPECT_PATH, "show", name, "--json"});
    CHECK(json.code == 0);
    CHECK_MESSAGE(json.out.find("\"credit_limit_segments\": 8") != std::string::npos, json.out);
}

TEST_CASE("across processes: a consumer that dies with a small limit: the producer still learns of it") {
    const std::string name = test::unique_name("debloat-dead");
    ChannelOptions options = test::geometry(kSegmentSize, 8);
    options.liveness_interval = 20ms;
    test::SharedBlock<Flags> flags;
    test::Child consumer([&] {
        auto c = Consumer::attach(name, options);
        ::pause();  // holds the slot, reads nothing, until killed
        return 0;
    });
    REQUIRE(test::eventually([&] { return test::file_exists(test::path_of(name)) && inspect(name).consumer.alive; }));
    {
        test::MappedFile file(test::path_of(name));
        REQUIRE(file.ok());
        file.poke32(limit_offset(), 1);
    }
    test::Child producer([&] {
        auto p = Producer::attach(name, options);
        WritableSegment out;
        Status status;
        std::uint64_t sequence = 0;
        while ((status = p.acquire(out)) == Status::ok) {
            test::fill_segment(out.payload, sequence++);
            if (p.publish(kCapacity) != Status::ok) return 1;
            flags->written.store(sequence);
        }
        return status == Status::peer_died ? 0 : 2;
    });
    REQUIRE(test::eventually([&] { return flags->written.load() == 8; }));  // the first lap
    consumer.kill();
    CHECK(producer.exit_code() == 0);
}

TEST_CASE("across processes: broadcast obeys the slowest consumer's limit") {
    const std::string name = test::unique_name("debloat-broadcast");
    ChannelOptions options = debloated(64, 20ms);
    options.consumers = 2;
    test::SharedBlock<Flags> flags;
    flags->slow[1].store(1);
    test::Child fast([&] {
        ChannelOptions mine = options;
        mine.consumer_slot = 0;
        return consume_all(name, mine, flags->slow[0], 0, flags->received[0]);
    });
    test::Child slow([&] {
        ChannelOptions mine = options;
        mine.consumer_slot = 1;
        return consume_all(name, mine, flags->slow[1], 2000, flags->received[1]);
    });
    test::Child producer([&] { return produce_until(name, options, flags->stop, flags->written); });
    std::unique_ptr<test::MappedFile> file;
    REQUIRE(test::eventually([&] {
        if (!test::file_exists(test::path_of(name))) return false;
        file = std::make_unique<test::MappedFile>(test::path_of(name));
        return file->ok();
    }));
    // The fast slot measures its busy time only: its limit stays high while the slow one holds
    // the producer; the producer keeps to the slow slot's limit.
    auto obeyed = [&] {
        const std::uint32_t fast_limit = file->peek32(limit_offset(0)), slow_limit = file->peek32(limit_offset(1));
        ChannelInfo info = inspect(name);
        return slow_limit >= 2 && slow_limit <= 16 && fast_limit >= 32 && info.credit_limit == slow_limit &&
               info.published - info.released <= 16;
    };
    CHECK(test::eventually(obeyed, kSettle));
    CHECK(holds_as_it_reads(obeyed, flags->received[1], 4, 20, kSettle));
    flags->stop.store(1);
    flags->slow[1].store(0);
    CHECK(producer.exit_code() == 0);
    CHECK(fast.exit_code() == 0);
    CHECK(slow.exit_code() == 0);
    CHECK(flags->received[0].load() == flags->written.load());
    CHECK(flags->received[1].load() == flags->written.load());
}

TEST_CASE("across processes: a gate's channels each publish and obey their own limit") {
    const std::string stem = test::unique_name("debloat-gate");
    const std::vector<std::string> names = {stem + "-0", stem + "-1"};
    GateOptions gate_options;
    gate_options.channel = debloated(32, 20ms);
    gate_options.channel.framing = Framing::records;
    gate_options.channel.buffer_timeout = 1ms;
    test::SharedBlock<Flags> flags;
    std::vector<test::Child> producers;
    for (std::uint32_t c = 0; c < 2; ++c) {
        producers.emplace_back([&, c] {
            auto writer = RecordWriter::attach(names[c], gate_options.channel);
            std::array<std::uint64_t, 64> record{};  // 512 bytes: 7 records a segment
            std::uint64_t sequence = 0;
            while (flags->stop.load() == 0) {
                record[0] = sequence++;
                record[1] = c;
                if (writer.write(std::as_bytes(std::span(record))) != Status::ok) return 1;
                if (c == 1) ::usleep(5000);  // channel 1 is sparse: 200 records/s at most
            }
            flags->written.fetch_add(sequence);
            return writer.end_stream() == Status::ok ? 0 : 2;
        });
    }
    auto gate = InputGate::attach(stem, names, gate_options);
    std::array<std::uint64_t, 2> expected{};
    std::array<std::unique_ptr<test::MappedFile>, 2> files;
    bool settled = false;
    std::array<std::array<std::uint64_t, 3>, 2> last{};  // limit, in flight, throughput: for a failure's message
    Record record;
    std::uint32_t channel = 0;
    Status status;
    std::uint64_t read = 0;
    const auto until = std::chrono::steady_clock::now() + kSettle;
    while ((status = gate.read(record, channel)) == Status::ok || status == Status::event) {
        if (status != Status::ok) continue;
        REQUIRE(channel < 2);
        std::uint64_t head[2];
        REQUIRE(record.bytes.size() == 512);
        std::memcpy(head, record.bytes.data(), sizeof head);
        REQUIRE(head[0] == expected[channel]);
        REQUIRE(head[1] == channel);
        ++expected[channel];
        ++read;
        ::usleep(200);  // a slow gate: 5,000 records/s at most, so channel 0 needs at most 15 segments
        if (settled || (read & 63) != 0) continue;
        bool all = true;
        for (std::uint32_t c = 0; c < 2; ++c) {
            if (!files[c]) files[c] = std::make_unique<test::MappedFile>(test::path_of(names[c]));
            const std::uint32_t limit = files[c]->peek32(limit_offset());
            const ChannelInfo info = inspect(names[c]);
            all = all && limit >= 2 && limit <= 32 && info.published - info.released <= limit + 1;
            last[c] = {limit, info.published - info.released, info.throughput_bytes_per_s};
        }
        // Channel 0, always full: held to its own limit, well under the ring.
        all = all && files[0]->peek32(limit_offset()) <= 24;
        if (all) {
            settled = true;
            flags->stop.store(1);
        }
        if (std::chrono::steady_clock::now() > until) flags->stop.store(1);
    }
    CHECK(status == Status::end_of_stream);
    CHECK_MESSAGE(settled, "limits " << last[0][0] << ", " << last[1][0] << "; in flight " << last[0][1] << ", "
                                     << last[1][1] << "; throughput " << last[0][2] << ", " << last[1][2]);
    for (auto& p : producers) CHECK(p.exit_code() == 0);
    CHECK(expected[0] + expected[1] == flags->written.load());
}

}  // TEST_SUITE
