// SPDX-License-Identifier: Apache-2.0
// Gates and partitions across real processes: every producer is a child process that attaches
// after the fork; the gate reads in the test process.
#include <doctest/doctest.h>

#include <poll.h>

#include <array>
#include <csignal>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "channels/topology.hpp"
#include "channel_support.hpp"
#include "support.hpp"

using namespace shmchan;
using namespace std::chrono_literals;
namespace test = shmchan::test;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::uint64_t kScale = 8;
#else
constexpr std::uint64_t kScale = 1;
#endif

// A record of the tests: which channel wrote it, its sequence there, and the checkpoint epoch
// (barriers written before it on that channel).
struct Tagged {
    std::uint32_t channel;
    std::uint32_t epoch;
    std::uint64_t sequence;
};

std::vector<std::string> channel_names(const std::string& stem, std::uint32_t count) {
    std::vector<std::string> names;
    for (std::uint32_t i = 0; i < count; ++i) names.push_back(stem + "-" + std::to_string(i));
    return names;
}

ChannelOptions small_ring() {
    ChannelOptions options;
    options.framing = Framing::records;
    options.segment_size = 4096;
    options.segment_count = 4;
    return options;
}

std::span<const std::byte> bytes_of(const Tagged& tagged) {
    return {reinterpret_cast<const std::byte*>(&tagged), sizeof tagged};
}

}  // namespace

TEST_SUITE("topology") {

TEST_CASE("aligned barriers: every record arrives between the barriers its channel wrote around it") {
    const std::uint32_t channels = 4, checkpoints = 20;
    const std::uint64_t per_checkpoint = 2000 / kScale;
    const std::string stem = test::unique_name("aligned");
    auto names = channel_names(stem, channels);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);

    std::vector<test::Child> producers;
    for (std::uint32_t c = 0; c < channels; ++c) {
        producers.emplace_back([&, c] {
            auto writer = RecordWriter::attach(names[c], small_ring());
            std::uint64_t sequence = 0;
            for (std::uint32_t epoch = 0; epoch < checkpoints; ++epoch) {
                // Channels write different amounts, so alignment really holds some back.
                for (std::uint64_t i = 0; i < per_checkpoint * (c + 1); ++i) {
                    Tagged tagged{c, epoch, sequence++};
                    if (writer.write(bytes_of(tagged)) != Status::ok) return 1;
                }
                if (writer.write_barrier(epoch + 1) != Status::ok) return 2;
            }
            return writer.end_stream() == Status::ok ? 0 : 3;
        });
    }

    std::vector<std::uint64_t> next_sequence(channels, 0);
    std::uint32_t delivered_epoch = 0;
    std::uint64_t records = 0, violations = 0;
    std::vector<std::uint64_t> barriers;
    Record record;
    std::uint32_t channel = 0;
    Status status;
    while ((status = gate.read_for(record, channel, 60s)) == Status::ok) {
        if (record.kind == RecordKind::barrier) {
            barriers.push_back(record.checkpoint_id);
            delivered_epoch = static_cast<std::uint32_t>(record.checkpoint_id);
            continue;
        }
        REQUIRE(record.bytes.size() == sizeof(Tagged));
        Tagged tagged;
        std::memcpy(&tagged, record.bytes.data(), sizeof tagged);
        CHECK(tagged.channel == channel);
        if (tagged.epoch != delivered_epoch) ++violations;
        if (tagged.sequence != next_sequence[channel]) ++violations;
        next_sequence[channel] = tagged.sequence + 1;
        ++records;
    }
    CHECK_MESSAGE(status == Status::end_of_stream, to_string(status) << " after " << records << " records, "
                                                     << barriers.size() << " barriers: " << gate.last_error());
    CHECK(violations == 0);
    std::vector<std::uint64_t> expected;
    for (std::uint64_t i = 1; i <= checkpoints; ++i) expected.push_back(i);
    CHECK(barriers == expected);  // each barrier once, in order
    std::uint64_t total = 0;
    for (std::uint32_t c = 0; c < channels; ++c) total += per_checkpoint * (c + 1) * checkpoints;
    CHECK(records == total);
    for (auto& producer : producers) {
        int code = producer.exit_code(status == Status::end_of_stream ? 120s : 1s);
        CHECK_MESSAGE(code == 0, "producer exit " << code);
    }
    // Wake syscalls never exceed the gate's parks.
    CHECK(gate.wake_syscalls() <= gate.parks());
    MESSAGE("gate parks " << gate.parks() << ", producer wakes of the gate " << gate.wake_syscalls());
}

TEST_CASE("keyed partition: every key always reaches the same channel, and every record arrives") {
    const std::uint32_t channels = 3;
    const std::uint64_t count = 30000 / kScale;
    const std::string stem = test::unique_name("keyed");
    auto names = channel_names(stem, channels);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);

    test::Child producer([&] {
        auto partition = OutputPartition::attach(names, PartitionMode::by_key, small_ring());
        for (std::uint64_t i = 0; i < count; ++i) {
            std::string key = "key-" + std::to_string(i % 97);
            std::string value = key + ":" + std::to_string(i);
            if (partition.write_keyed(key, std::as_bytes(std::span(value.data(), value.size()))) != Status::ok) return 1;
        }
        return partition.end_stream() == Status::ok ? 0 : 2;
    });

    std::map<std::string, std::set<std::uint32_t>> channels_of_key;
    std::uint64_t received = 0;
    Record record;
    std::uint32_t channel = 0;
    Status status;
    while ((status = gate.read_for(record, channel, 60s)) == Status::ok) {
        std::string_view text = record.text();
        channels_of_key[std::string(text.substr(0, text.find(':')))].insert(channel);
        ++received;
    }
    CHECK(status == Status::end_of_stream);
    CHECK(received == count);
    CHECK(channels_of_key.size() == 97);
    std::set<std::uint32_t> used;
    for (auto& [key, set] : channels_of_key) {
        CHECK_MESSAGE(set.size() == 1, key);
        used.insert(*set.begin());
    }
    CHECK(used.size() == channels);  // 97 keys spread over all three channels
    CHECK(producer.exit_code() == 0);
}

TEST_CASE("fairness: a channel that always has data does not starve the others") {
    const std::string stem = test::unique_name("fair");
    auto names = channel_names(stem, 2);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);
    // Channel 0: a firehose that never stops (its ring stays full). Channel 1: 900 records and
    // the end, all queued (they fit its ring) before the gate reads anything. Whatever the
    // scheduling, round-robin must then alternate while channel 1 has records.
    const std::uint64_t trickle_records = 900;
    test::Child firehose([&] {
        auto writer = RecordWriter::attach(names[0], small_ring());
        std::uint64_t value = 0;
        while (writer.write_for(std::as_bytes(std::span(&value, 1)), 10s) == Status::ok) ++value;
        return 0;
    });
    test::Child trickle([&] {
        auto writer = RecordWriter::attach(names[1], small_ring());
        for (std::uint64_t i = 0; i < trickle_records; ++i) {
            if (writer.try_write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;  // never waits
        }
        return writer.end_stream() == Status::ok ? 0 : 2;
    });
    REQUIRE(trickle.exit_code() == 0);
    REQUIRE(test::eventually([&] {
        ChannelInfo info = inspect(names[0]);
        return info.published - info.released == info.segment_count;
    }));
    std::uint64_t from_firehose = 0, from_trickle = 0;
    Record record;
    std::uint32_t channel = 0;
    while (!gate.ended(1)) {
        Status status = gate.read_for(record, channel, 30s);
        REQUIRE(status == Status::ok);
        (channel == 0 ? from_firehose : from_trickle) += 1;
        REQUIRE(from_firehose < 10'000'000);
    }
    CHECK(from_trickle == trickle_records);
    MESSAGE("firehose records read while the trickle had " << trickle_records << ": " << from_firehose);
    CHECK(from_firehose + 2 >= trickle_records);  // the firehose was not starved either
    CHECK(from_firehose <= trickle_records + 2);  // one record per ready channel per turn
    firehose.kill();
}

TEST_CASE("fairness: a channel that gets data while another always has some is read within a turn") {
    const std::string stem = test::unique_name("fair-late");
    auto names = channel_names(stem, 2);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);
    struct Flags {
        std::atomic<int> go{0};         // the gate found channel 1 empty: write now
        std::atomic<int> published{0};  // channel 1's record is flushed (its producer's bit set)
    };
    test::SharedBlock<Flags> flags;
    test::Child firehose([&] {
        auto writer = RecordWriter::attach(names[0], small_ring());
        std::uint64_t value = 0;
        while (writer.write_for(std::as_bytes(std::span(&value, 1)), 10s) == Status::ok) ++value;
        return 0;
    });
    test::Child late([&] {
        auto writer = RecordWriter::attach(names[1], small_ring());
        if (!test::eventually([&] { return flags->go.load() == 1; })) return 1;
        const std::uint64_t value = 7;
        if (writer.write(std::as_bytes(std::span(&value, 1))) != Status::ok || writer.flush() != Status::ok) return 2;
        flags->published.store(1);
        return writer.end_stream() == Status::ok ? 0 : 3;
    });
    Record record;
    std::uint32_t channel = 0;
    // Channel 0 always has data from here on; channel 1 has none, so the gate has found it empty
    // (round-robin looks at it after each record of channel 0).
    for (int i = 0; i < 1000; ++i) {
        REQUIRE(gate.read_for(record, channel, 30s) == Status::ok);
        REQUIRE(channel == 0);
    }
    flags->go.store(1);
    REQUIRE(test::eventually([&] { return flags->published.load() == 1; }));
    // Published now: the gate must take channel 1's record within a turn over the notifications
    // (a bounded number of channel 0's records), not only when channel 0 runs dry.
    std::uint64_t after = 0;
    while (true) {
        REQUIRE(gate.read_for(record, channel, 30s) == Status::ok);
        if (channel == 1) break;
        REQUIRE(++after < 100'000);  // starved: the firehose never runs dry
    }
    MESSAGE("channel 0 records read after channel 1's was published: " << after);
    CHECK(after <= 2 * 64 + 2);
    CHECK(late.exit_code() == 0);
    firehose.kill();
}

TEST_CASE("watermarks combine as the minimum over the live channels") {
    const std::string stem = test::unique_name("watermark");
    auto names = channel_names(stem, 2);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);
    auto write_watermarks = [&](std::uint32_t channel, std::vector<std::uint64_t> values) {
        return test::Child([&, channel, values] {
            auto writer = RecordWriter::attach(names[channel], small_ring());
            for (std::uint64_t value : values) {
                std::byte payload[8];
                std::memcpy(payload, &value, 8);
                if (writer.write_event(1, payload) != Status::ok) return 1;
            }
            return writer.end_stream() == Status::ok ? 0 : 2;
        });
    };
    // Channel 0 runs ahead; channel 1 holds the minimum back.
    test::Child ahead = write_watermarks(0, {10, 20, 30, 40});
    REQUIRE(ahead.exit_code() == 0);
    test::Child behind = write_watermarks(1, {5, 15, 25});
    REQUIRE(behind.exit_code() == 0);
    std::vector<std::uint64_t> emitted;
    Record record;
    std::uint32_t channel = 0;
    Status status;
    while ((status = gate.read_for(record, channel, 30s)) == Status::ok) {
        REQUIRE(record.kind == RecordKind::user_event);
        REQUIRE(record.bytes.size() == 8);
        std::uint64_t value;
        std::memcpy(&value, record.bytes.data(), 8);
        emitted.push_back(value);
    }
    CHECK(status == Status::end_of_stream);
    REQUIRE_FALSE(emitted.empty());
    for (std::size_t i = 1; i < emitted.size(); ++i) CHECK(emitted[i] > emitted[i - 1]);
    for (std::uint64_t value : emitted) CHECK(value <= 25);  // never past the slower channel
    CHECK(emitted.back() == 25);
}

TEST_CASE("a producer of a gate that dies is reported once, and the other channels go on") {
    const std::string stem = test::unique_name("gatedeath");
    auto names = channel_names(stem, 3);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);
    test::SharedBlock<std::atomic<int>> written;
    test::Child victim([&] {
        auto writer = RecordWriter::attach(names[1], small_ring());
        std::uint64_t value = 7;
        CHILD_EXPECT(writer.write(std::as_bytes(std::span(&value, 1))) == Status::ok);
        CHILD_EXPECT(writer.flush() == Status::ok);
        written->store(1);
        ::pause();  // killed by the test
        return 0;
    });
    std::vector<test::Child> others;
    for (std::uint32_t c : {0u, 2u}) {
        others.emplace_back([&, c] {
            auto writer = RecordWriter::attach(names[c], small_ring());
            for (std::uint64_t i = 0; i < 1000; ++i) {
                if (writer.write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;
            }
            return writer.end_stream() == Status::ok ? 0 : 2;
        });
    }
    REQUIRE(test::eventually([&] { return written->load() == 1; }));
    victim.kill();
    REQUIRE(victim.wait(30s).has_value());
    std::uint64_t records = 0, deaths = 0;
    Record record;
    std::uint32_t channel = 0;
    auto start = std::chrono::steady_clock::now();
    while (records < 2001 || deaths == 0) {
        Status status = gate.read_for(record, channel, 30s);
        if (status == Status::peer_died) {
            CHECK(channel == 1);
            ++deaths;
            continue;
        }
        REQUIRE(status == Status::ok);
        ++records;
    }
    MESSAGE("death reported after " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count() << " ms");
    CHECK(deaths == 1);
    CHECK(records == 2001);
    // Nothing more: the dead channel is not reported again, the others ended.
    CHECK(gate.read_for(record, channel, 300ms) == Status::timed_out);
    for (auto& other : others) CHECK(other.exit_code() == 0);
}

TEST_CASE("many channels, one gate: no lost wake-up") {
    const std::uint32_t channels = 64;
    const std::uint64_t per_channel = 200 / kScale + 10;
    const std::string stem = test::unique_name("many");
    auto names = channel_names(stem, channels);
    GateOptions options;
    options.channel = small_ring();
    options.channel.wait = WaitStrategy::park;  // every wait is a futex sleep
    auto gate = InputGate::attach(stem, names, options);
    // Two producer processes, 32 channels each, writing in bursts with flushes.
    std::vector<test::Child> producers;
    for (std::uint32_t half = 0; half < 2; ++half) {
        producers.emplace_back([&, half] {
            std::vector<RecordWriter> writers;
            for (std::uint32_t c = half * 32; c < half * 32 + 32; ++c) writers.push_back(RecordWriter::attach(names[c], small_ring()));
            for (std::uint64_t i = 0; i < per_channel; ++i) {
                for (auto& writer : writers) {
                    if (writer.write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;
                    CHILD_EXPECT(writer.flush() == Status::ok);
                }
            }
            for (auto& writer : writers) CHILD_EXPECT(writer.end_stream() == Status::ok);
            return 0;
        });
    }
    std::uint64_t records = 0;
    Record record;
    std::uint32_t channel = 0;
    Status status;
    while ((status = gate.read_for(record, channel, 60s)) == Status::ok) ++records;
    CHECK(status == Status::end_of_stream);
    CHECK(records == per_channel * channels);
    CHECK(gate.wake_syscalls() <= gate.parks());
    for (auto& producer : producers) CHECK(producer.exit_code() == 0);
}

TEST_CASE("round-robin and broadcast partitions") {
    const std::string stem = test::unique_name("rr");
    auto names = channel_names(stem, 3);
    GateOptions options;
    options.channel = small_ring();
    auto gate = InputGate::attach(stem, names, options);
    test::Child producer([&] {
        auto round_robin = OutputPartition::attach(names, PartitionMode::round_robin, small_ring());
        for (std::uint64_t i = 0; i < 300; ++i) {
            if (round_robin.write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;
        }
        return round_robin.end_stream() == Status::ok ? 0 : 2;
    });
    std::array<std::uint64_t, 3> per_channel{};
    Record record;
    std::uint32_t channel = 0;
    while (gate.read_for(record, channel, 30s) == Status::ok) {
        std::uint64_t value;
        std::memcpy(&value, record.bytes.data(), 8);
        CHECK(value % 3 == channel);
        ++per_channel[channel];
    }
    CHECK(per_channel == std::array<std::uint64_t, 3>{100, 100, 100});
    CHECK(producer.exit_code() == 0);

    const std::string broadcast_stem = test::unique_name("bc");
    auto broadcast_names = channel_names(broadcast_stem, 2);
    auto broadcast_gate = InputGate::attach(broadcast_stem, broadcast_names, options);
    test::Child broadcaster([&] {
        auto broadcast = OutputPartition::attach(broadcast_names, PartitionMode::broadcast, small_ring());
        for (std::uint64_t i = 0; i < 50; ++i) {
            if (broadcast.write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;
        }
        return broadcast.end_stream() == Status::ok ? 0 : 2;
    });
    std::array<std::uint64_t, 2> copies{};
    while (broadcast_gate.read_for(record, channel, 30s) == Status::ok) ++copies[channel];
    CHECK(copies == std::array<std::uint64_t, 2>{50, 50});
    CHECK(broadcaster.exit_code() == 0);
}

TEST_CASE("broadcast over one ring: every consumer reads every record, the slowest holds the producer") {
    const std::uint32_t consumers = 3;
    const std::uint64_t count = 20000 / kScale;
    const std::string name = test::unique_name("broadcast");
    ChannelOptions options = small_ring();
    options.consumers = consumers;
    test::SharedBlock<std::array<std::atomic<std::uint64_t>, consumers>> received;
    test::SharedBlock<std::atomic<std::uint64_t>> max_fill;
    std::vector<test::Child> readers;
    for (std::uint32_t c = 0; c < consumers; ++c) {
        readers.emplace_back([&, c] {
            auto reader = RecordReader::attach(name, options);
            Record record;
            std::uint64_t expected = 0;
            Status status;
            while ((status = reader.read(record)) == Status::ok) {
                std::uint64_t value;
                if (record.bytes.size() != 8) return 1;
                std::memcpy(&value, record.bytes.data(), 8);
                if (value != expected++) return 2;
                if (c == 0) {  // the slow one: busy work per record (no sleep)
                    for (int spin = 0; spin < 2000; ++spin) {
                        asm volatile("" ::: "memory");
                    }
                }
                (*received)[c].store(expected);
            }
            return status == Status::end_of_stream ? 0 : 3;
        });
    }
    test::Child writer_process([&] {
        auto writer = RecordWriter::attach(name, options);
        for (std::uint64_t i = 0; i < count; ++i) {
            if (writer.write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;
            if ((i & 255) == 0) {
                ChannelInfo info = writer.producer().info();
                std::uint64_t fill = info.published - info.released;
                if (fill > max_fill->load()) max_fill->store(fill);
            }
        }
        return writer.end_stream() == Status::ok ? 0 : 2;
    });
    CHECK(writer_process.exit_code() == 0);
    for (std::uint32_t c = 0; c < consumers; ++c) {
        CHECK(readers[c].exit_code() == 0);
        CHECK((*received)[c].load() == count);
    }
    CHECK(max_fill->load() <= 4);  // bounded by the ring, held by the slowest consumer
    ChannelInfo info = inspect(name);
    CHECK(info.consumer_slots == consumers);
}

TEST_CASE("broadcast: each consumer slot may be a different gate, and the producer wakes each one") {
    // Two gates, each over its own slot of one broadcast channel, parked between records (`park`:
    // every wait is a futex sleep) and with their timed backstop (the liveness interval, 10 s, the
    // longest allowed) beyond the reads' deadline (8 s): a gate the producer does not notify
    // does not wake in time. Each slot has its own gate link (layout.hpp: gate_links).
    const std::uint32_t gates = 2;
    const std::uint64_t bursts = 200 / kScale + 5, per_burst = 7;
    const std::string name = test::unique_name("bc-gates");
    ChannelOptions channel = small_ring();
    channel.consumers = gates;
    channel.buffer_timeout = 1h;
    channel.liveness_interval = 10s;
    test::SharedBlock<test::Barrier> start;
    test::SharedBlock<std::array<std::atomic<std::uint64_t>, gates>> received;
    std::vector<test::Child> readers;
    for (std::uint32_t g = 0; g < gates; ++g) {
        readers.emplace_back([&, g] {
            GateOptions options;
            options.channel = channel;
            options.channel.wait = WaitStrategy::park;
            auto gate = InputGate::attach(name + "-gate" + std::to_string(g), {name}, options);
            start->arrive_and_wait(gates + 1);
            Record record;
            std::uint32_t index = 0;
            std::uint64_t expected = 0;
            Status status;
            while ((status = gate.read_for(record, index, 8s)) == Status::ok) {
                std::uint64_t value;
                if (record.kind != RecordKind::record || record.bytes.size() != 8) return 1;
                std::memcpy(&value, record.bytes.data(), 8);
                if (value != expected++) return 2;
                (*received)[g].store(expected);
            }
            return status == Status::end_of_stream ? 0 : 10 + static_cast<int>(status);
        });
    }
    test::Child writer_process([&] {
        auto writer = RecordWriter::attach(name, channel);
        start->arrive_and_wait(gates + 1);
        std::uint64_t value = 0;
        for (std::uint64_t burst = 0; burst < bursts; ++burst) {
            for (std::uint64_t i = 0; i < per_burst; ++i, ++value) {
                if (writer.write(std::as_bytes(std::span(&value, 1))) != Status::ok) return 1;
            }
            if (writer.flush() != Status::ok) return 2;
        }
        return writer.end_stream() == Status::ok ? 0 : 3;
    });
    CHECK(writer_process.exit_code() == 0);
    for (std::uint32_t g = 0; g < gates; ++g) {
        CAPTURE(g);
        CHECK(readers[g].exit_code() == 0);
        CHECK((*received)[g].load() == bursts * per_burst);
    }
}

namespace {
// A reader of 8-byte counting records that fails on a gap, a wrong size or a wait past 8 s; on
// failure it sets `received` to kReaderFailed, so that a writer in lockstep does not wait for it.
constexpr std::uint64_t kReaderFailed = ~std::uint64_t{0};
int read_counting(const std::function<Status(Record&)>& read, std::atomic<std::uint64_t>& received) {
    Record record;
    std::uint64_t expected = 0;
    Status status;
    int code = 0;
    while ((status = read(record)) == Status::ok) {
        std::uint64_t value;
        std::memcpy(&value, record.bytes.data(), std::min<std::size_t>(8, record.bytes.size()));
        if (record.kind != RecordKind::record || record.bytes.size() != 8) {
            code = 1;
            break;
        }
        if (value != expected++) {
            code = 2;
            break;
        }
        received.store(expected);
    }
    if (code == 0 && status != Status::end_of_stream) code = 10 + static_cast<int>(status);
    if (code != 0) received.store(kReaderFailed);
    return code;
}

// Writes `bursts` bursts of `per_burst` counting records, flushing each, and waits until every
// reader has read a burst before the next: the readers (park) are asleep when a burst comes, so
// each burst needs the producer's wake.
template <std::size_t N>
int write_in_lockstep(RecordWriter& writer, std::uint64_t bursts, std::uint64_t per_burst,
                      const std::array<std::atomic<std::uint64_t>, N>& received) {
    std::uint64_t value = 0;
    // A hang guard: with the readers' wakes lost, each burst waits for a reader's 8 s deadline
    // (which it may pass with data); this stops such a run after 30 s (it takes milliseconds).
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (std::uint64_t burst = 0; burst < bursts; ++burst) {
        for (std::uint64_t i = 0; i < per_burst; ++i, ++value) {
            if (writer.write(std::as_bytes(std::span(&value, 1))) != Status::ok) return 1;
        }
        if (writer.flush() != Status::ok) return 2;
        for (const auto& r : received) {
            while (r.load() < value) {
                if (std::chrono::steady_clock::now() > deadline) return 3;
                ::sched_yield();
            }
        }
    }
    return writer.end_stream() == Status::ok ? 0 : 4;
}

// A channel whose readers park at once (no spinning) and whose timed backstop (the liveness
// interval, 10 s, the longest allowed) lies beyond the reads' deadline (8 s): a reader the
// producer does not wake does not read in time.
ChannelOptions parked_channel() {
    ChannelOptions channel = small_ring();
    channel.buffer_timeout = 1h;
    channel.liveness_interval = 10s;
    channel.wait = WaitStrategy::park;
    return channel;
}

// A plain reader counting into `received`, and the writer in lockstep with all the readers, each
// in its own process; they start on `start` with `parties` processes in all.
test::Child plain_reader(const std::string& name, const ChannelOptions& options, test::Barrier& start,
                         std::uint32_t parties, std::atomic<std::uint64_t>& received) {
    return test::Child([&, parties] {
        auto reader = RecordReader::attach(name, options);
        start.arrive_and_wait(parties);
        return read_counting([&](Record& r) { return reader.read_for(r, 8s); }, received);
    });
}
template <std::size_t N>
test::Child lockstep_writer(const std::string& name, const ChannelOptions& options, test::Barrier& start,
                            std::uint32_t parties, std::uint64_t bursts, std::uint64_t per_burst,
                            const std::array<std::atomic<std::uint64_t>, N>& received) {
    return test::Child([&, parties, bursts, per_burst] {
        auto writer = RecordWriter::attach(name, options);
        start.arrive_and_wait(parties);
        return write_in_lockstep(writer, bursts, per_burst, received);
    });
}
}  // namespace

TEST_CASE("broadcast: a gate on one slot and a plain consumer on the other are each woken") {
    // Both park between bursts (the writer waits for both before the next), with their timed
    // backstop (10 s) beyond their reads' deadline (8 s): each read in time needs the producer's
    // wake, the gate's through its link, the plain consumer's through its slot's own word.
    const std::uint64_t bursts = 20, per_burst = 5;
    const std::string name = test::unique_name("bc-mixed");
    ChannelOptions channel = parked_channel();
    channel.consumers = 2;
    test::SharedBlock<test::Barrier> start;
    test::SharedBlock<std::array<std::atomic<std::uint64_t>, 2>> received;
    test::Child gate_process([&] {
        GateOptions options;
        options.channel = channel;
        options.channel.consumer_slot = 0;
        auto gate = InputGate::attach(name + "-gate", {name}, options);
        start->arrive_and_wait(3);
        std::uint32_t index = 0;
        return read_counting([&](Record& r) { return gate.read_for(r, index, 8s); }, (*received)[0]);
    });
    ChannelOptions slot1 = channel;
    slot1.consumer_slot = 1;
    test::Child plain_process = plain_reader(name, slot1, *start, 3, (*received)[1]);
    test::Child writer_process = lockstep_writer(name, channel, *start, 3, bursts, per_burst, *received);
    CHECK(writer_process.exit_code() == 0);
    CHECK(gate_process.exit_code() == 0);
    CHECK(plain_process.exit_code() == 0);
    CHECK((*received)[0].load() == bursts * per_burst);
    CHECK((*received)[1].load() == bursts * per_burst);
}

TEST_CASE("a gate that died leaves its link behind: the next plain consumer of its slot is still woken") {
    // The gate is killed while linked (its link and its file stay). A plain consumer then takes
    // the slot and parks between bursts, its backstop (10 s) beyond its reads' deadline (8 s): it
    // reads in time only if the producer wakes its word, not the dead gate's.
    const std::uint64_t bursts = 20, per_burst = 5;
    const std::string name = test::unique_name("dead-gate");
    const ChannelOptions channel = parked_channel();
    {
        test::SharedBlock<test::Barrier> linked;
        test::Child gate_process([&] {
            GateOptions options;
            options.channel = channel;
            auto gate = InputGate::attach(name + "-gate", {name}, options);
            linked->arrive_and_wait(2);
            ::pause();  // killed by the test
            return 0;
        });
        linked->arrive_and_wait(2);
        gate_process.kill();
        REQUIRE(gate_process.exit_code() == -(100 + SIGKILL));
    }
    test::SharedBlock<test::Barrier> start;
    test::SharedBlock<std::array<std::atomic<std::uint64_t>, 1>> received;
    test::Child reader_process = plain_reader(name, channel, *start, 2, (*received)[0]);
    test::Child writer_process = lockstep_writer(name, channel, *start, 2, bursts, per_burst, *received);
    CHECK(writer_process.exit_code() == 0);
    CHECK(reader_process.exit_code() == 0);
    CHECK((*received)[0].load() == bursts * per_burst);
}

TEST_CASE("garbage in a gate link: the producer maps no gate, never crashes, and the gate still reads") {
    // The link is the gate's process's to write; here another writer puts garbage in it. The
    // producer validates what it copies (an even generation unchanged across the copy, a
    // NUL-terminated valid name, an index inside the gate) and otherwise wakes the slot's own word;
    // the gate finds the records at its periodic rescan.
    const std::string name = test::unique_name("bad-link");
    ChannelOptions channel = small_ring();
    GateOptions options;
    options.channel = channel;
    auto gate = InputGate::attach(name + "-gate", {name}, options);
    auto writer = RecordWriter::attach(name, channel);
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    const std::size_t link = offsetof(layout::ChannelHeader, gate_links);
    const std::size_t generation = link + offsetof(layout::GateLink, generation);
    const std::size_t words = link + offsetof(layout::GateLink, gate_name);
    auto set_name = [&](std::string_view text, char fill) {
        char bytes[layout::kGateNameWords * 8];
        std::memset(bytes, fill, sizeof bytes);
        std::memcpy(bytes, text.data(), std::min(text.size(), sizeof bytes));
        for (std::size_t w = 0; w < layout::kGateNameWords; ++w) {
            std::uint64_t word;
            std::memcpy(&word, bytes + 8 * w, 8);
            file.poke64(words + 8 * w, word);
        }
    };
    const std::string gate_name = name + "-gate";
    struct Case {
        const char* what;
        std::function<void()> poke;
    };
    const Case cases[] = {
        {"a name with no NUL in its 104 bytes", [&] { set_name("", 'a'); }},
        {"a name that is a path", [&] { set_name("../../etc/passwd", '\0'); }},
        {"a valid name of no gate", [&] { set_name("no-such-gate", '\0'); }},
        {"an index beyond the gate's channels",
         [&] {
             set_name(gate_name, '\0');
             file.poke32(link + offsetof(layout::GateLink, index), 4095);
         }},
        {"an odd generation (a writer that died mid-write)", [&] { file.poke64(generation, file.peek64(generation) + 1); }},
    };
    std::uint64_t value = 0;
    for (const Case& c : cases) {
        CAPTURE(c.what);
        c.poke();
        if (file.peek64(generation) % 2 == 0 || std::string_view(c.what).starts_with("an odd")) {
            file.poke64(generation, file.peek64(generation) + 2);  // a new link for the producer to map
        }
        REQUIRE(writer.write(std::as_bytes(std::span(&value, 1))) == Status::ok);
        REQUIRE(writer.flush() == Status::ok);
        Record record;
        std::uint32_t index = 99;
        REQUIRE(gate.read_for(record, index, 8s) == Status::ok);
        CHECK(index == 0);
        REQUIRE(record.bytes.size() == 8);
        std::uint64_t got;
        std::memcpy(&got, record.bytes.data(), 8);
        CHECK(got == value);
        ++value;
    }
}

TEST_CASE("broadcast: a slot no consumer has taken holds the producer; a dead slowest consumer is reported") {
    const std::string name = test::unique_name("broadcast-hold");
    ChannelOptions options;
    options.segment_size = 4096;
    options.segment_count = 4;
    options.consumers = 2;
    auto producer = Producer::attach(name, options);
    test::SharedBlock<std::atomic<int>> attached;
    // One consumer that reads everything; the second slot stays empty.
    test::Child fast([&] {
        auto consumer = Consumer::attach(name, options);
        attached->store(1);
        ReadableSegment segment;
        while (consumer.read(segment) == Status::ok) {
        }
        return 0;
    });
    REQUIRE(test::eventually([&] { return attached->load() == 1; }));
    WritableSegment out;
    for (int i = 0; i < 4; ++i) {
        REQUIRE(producer.acquire(out) == Status::ok);
        REQUIRE(producer.publish(8) == Status::ok);
    }
    // The empty slot still has all four segments to read: no credit, however fast slot 0 is.
    CHECK(producer.acquire_for(out, 300ms) == Status::timed_out);
    // A consumer in slot 1 that dies while it is the slowest: the producer is told.
    test::SharedBlock<std::atomic<int>> second;
    test::Child slow([&] {
        ChannelOptions slot = options;
        slot.consumer_slot = 1;
        auto consumer = Consumer::attach(name, slot);
        second->store(1);
        ::pause();
        return 0;
    });
    REQUIRE(test::eventually([&] { return second->load() == 1; }));
    slow.kill();
    REQUIRE(slow.wait(30s).has_value());
    auto start = std::chrono::steady_clock::now();
    Status status = producer.acquire_for(out, 10s);
    CHECK(status == Status::peer_died);
    MESSAGE("dead slowest consumer reported after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count() << " ms: "
            << producer.last_error());
    // A replacement in slot 1 reads from where the dead one was and frees the producer.
    test::SharedBlock<std::atomic<int>> replaced;
    test::Child replacement([&] {
        ChannelOptions slot = options;
        slot.consumer_slot = 1;
        auto consumer = Consumer::attach(name, slot);
        replaced->store(1);
        ReadableSegment segment;
        int read = 0;
        while (consumer.read(segment) == Status::ok) ++read;
        return read == 5 ? 0 : 10 + read;
    });
    // Until it has attached, waits answer peer_died at once (the documented rule).
    REQUIRE(test::eventually([&] { return replaced->load() == 1; }));
    REQUIRE(producer.acquire_for(out, 30s) == Status::ok);
    REQUIRE(producer.publish(8) == Status::ok);
    REQUIRE(producer.end_stream() == Status::ok);
    CHECK(replacement.exit_code() == 0);
    CHECK(fast.exit_code() == 0);
    // A third consumer finds both slots taken? Both exited now: the channel accepts one again.
    CHECK_NOTHROW(Consumer::attach(name, options));
}

TEST_CASE("unaligned checkpoints: the barrier overtakes the other channels' queued records, which come flagged") {
    const std::string stem = test::unique_name("unaligned");
    auto names = channel_names(stem, 2);
    GateOptions options;
    options.channel.framing = Framing::records;  // default rings: everything below fits
    options.unaligned = true;
    auto gate = InputGate::attach(stem, names, options);
    // Both producers write everything and end before the gate reads: channel 0 the barrier
    // first, channel 1 500 records ahead of it. Round-robin starts at channel 0.
    test::Child first([&] {
        auto writer = RecordWriter::attach(names[0], options.channel);
        CHILD_EXPECT(writer.write_barrier(1) == Status::ok);
        for (std::uint64_t i = 0; i < 100; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        return writer.end_stream() == Status::ok ? 0 : 1;
    });
    test::Child second([&] {
        auto writer = RecordWriter::attach(names[1], options.channel);
        for (std::uint64_t i = 0; i < 500; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(1) == Status::ok);
        for (std::uint64_t i = 500; i < 600; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        return writer.end_stream() == Status::ok ? 0 : 1;
    });
    REQUIRE(first.exit_code() == 0);
    REQUIRE(second.exit_code() == 0);
    std::uint64_t barriers = 0, ends = 0, flagged = 0, unflagged_before = 0, wrong = 0;
    bool barrier_seen = false, end_seen = false;
    Record record;
    std::uint32_t channel = 0;
    Status status;
    while ((status = gate.read_for(record, channel, 30s)) == Status::ok) {
        if (record.kind == RecordKind::barrier) {
            ++barriers;
            barrier_seen = true;
            continue;
        }
        if (record.kind == RecordKind::in_flight_end) {
            CHECK(record.checkpoint_id == 1);
            ++ends;
            end_seen = true;
            continue;
        }
        std::uint64_t value;
        std::memcpy(&value, record.bytes.data(), 8);
        bool before_barrier_on_its_channel = channel == 1 && value < 500;
        if (record.in_flight_of != 0) {
            ++flagged;
            if (!(before_barrier_on_its_channel && barrier_seen && !end_seen && record.in_flight_of == 1)) ++wrong;
        } else if (before_barrier_on_its_channel) {
            if (barrier_seen) ++wrong;  // after the barrier, channel 1's earlier records are in flight
            ++unflagged_before;
        }
    }
    CHECK(status == Status::end_of_stream);
    CHECK(barriers == 1);
    CHECK(ends == 1);
    CHECK(wrong == 0);
    CHECK(flagged + unflagged_before == 500);
    CHECK(flagged >= 499);  // the gate read channel 0's barrier first (at most one record before)
}

TEST_CASE("an alignment that times out goes on unaligned") {
    const std::string stem = test::unique_name("timeout");
    auto names = channel_names(stem, 2);
    GateOptions options;
    options.channel = small_ring();
    options.alignment_timeout = 200ms;
    auto gate = InputGate::attach(stem, names, options);
    test::SharedBlock<std::atomic<int>> go;
    test::Child first([&] {
        auto writer = RecordWriter::attach(names[0], small_ring());
        CHILD_EXPECT(writer.write_barrier(1) == Status::ok);
        CHILD_EXPECT(writer.flush() == Status::ok);
        for (std::uint64_t i = 0; i < 50; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        return writer.end_stream() == Status::ok ? 0 : 1;
    });
    test::Child second([&] {
        auto writer = RecordWriter::attach(names[1], small_ring());
        for (std::uint64_t i = 0; i < 50; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        CHILD_EXPECT(writer.flush() == Status::ok);
        // Its barrier comes only once the test has seen checkpoint 1 delivered without it.
        if (!test::eventually([&] { return go->load() == 1; }, 60s)) return 2;
        // Written after checkpoint 1 was delivered, ahead of this channel's barrier: in flight.
        for (std::uint64_t i = 100; i < 120; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(1) == Status::ok);
        for (std::uint64_t i = 50; i < 60; ++i) CHILD_EXPECT(writer.write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        return writer.end_stream() == Status::ok ? 0 : 1;
    });
    bool barrier = false, ended_in_flight = false;
    std::uint64_t flagged = 0, records = 0;
    Record record;
    std::uint32_t channel = 0;
    Status status;
    while ((status = gate.read_for(record, channel, 30s)) == Status::ok) {
        if (record.kind == RecordKind::barrier) {
            CHECK_FALSE(barrier);
            CHECK(record.checkpoint_id == 1);
            barrier = true;
            go->store(1);
            continue;
        }
        if (record.kind == RecordKind::in_flight_end) {
            CHECK(barrier);
            ended_in_flight = true;
            continue;
        }
        ++records;
        std::uint64_t value;
        std::memcpy(&value, record.bytes.data(), 8);
        if (record.in_flight_of == 1) {
            ++flagged;
            CHECK(channel == 1);
            CHECK(value < 120);
            CHECK_FALSE(ended_in_flight);
        } else if (channel == 1 && value >= 100 && value < 120) {
            CHECK_MESSAGE(false, "record " << value << " was written after the checkpoint, ahead of the barrier: in flight");
        }
    }
    CHECK(status == Status::end_of_stream);
    CHECK(barrier);
    CHECK(ended_in_flight);
    CHECK(records == 50 + 50 + 20 + 10);
    CHECK(flagged >= 20);
    MESSAGE(flagged << " of channel 1's records were in flight when the alignment timed out");
    CHECK(first.exit_code() == 0);
    CHECK(second.exit_code() == 0);
}

TEST_CASE("a gate's event fd: poll until readable, drain with try_read, every record arrives") {
    const std::string stem = test::unique_name("eventfd");
    auto names = channel_names(stem, 3);
    GateOptions options;
    options.channel = small_ring();
    options.channel.wait = WaitStrategy::park;
    auto gate = InputGate::attach(stem, names, options);
    int fd = gate.event_fd();
    REQUIRE(fd >= 0);
    CHECK(gate.event_fd() == fd);  // one per gate
    const std::uint64_t per_channel = 2000 / kScale;
    std::vector<test::Child> producers;
    for (std::uint32_t c = 0; c < 3; ++c) {
        producers.emplace_back([&, c] {
            auto writer = RecordWriter::attach(names[c], small_ring());
            for (std::uint64_t i = 0; i < per_channel; ++i) {
                if (writer.write(std::as_bytes(std::span(&i, 1))) != Status::ok) return 1;
                if (i % 100 == 0) CHILD_EXPECT(writer.flush() == Status::ok);
            }
            return writer.end_stream() == Status::ok ? 0 : 2;
        });
    }
    std::uint64_t records = 0, polls = 0;
    Record record;
    std::uint32_t channel = 0;
    bool ended = false;
    while (!ended) {
        pollfd wait_for{fd, POLLIN, 0};
        int ready = ::poll(&wait_for, 1, 30'000);
        REQUIRE_MESSAGE(ready == 1, "the event fd never became readable");
        ++polls;
        std::uint64_t counter;
        [[maybe_unused]] ssize_t got = ::read(fd, &counter, sizeof counter);
        Status status;
        while ((status = gate.try_read(record, channel)) == Status::ok) ++records;
        if (status == Status::end_of_stream) ended = true;
        else REQUIRE(status == Status::would_block);
    }
    CHECK(records == 3 * per_channel);
    MESSAGE(records << " records in " << polls << " wake-ups of the event fd");
    for (auto& producer : producers) CHECK(producer.exit_code() == 0);
}

TEST_CASE("a priority barrier overtakes the data queued in every channel, its own included") {
    const std::string stem = test::unique_name("priority");
    auto names = channel_names(stem, 2);
    GateOptions options;
    options.channel = small_ring();
    options.unaligned = true;
    auto gate = InputGate::attach(stem, names, options);
    // Everything is queued before the gate reads: channel 0 900 records, then priority barrier
    // 1, then 50 more; channel 1 300 records, barrier 1 in band only, then 20 more.
    test::Child first([&] {
        auto writer = RecordWriter::attach(names[0], small_ring());
        for (std::uint64_t i = 0; i < 900; ++i) CHILD_EXPECT(writer.try_write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(1, /*priority=*/true) == Status::ok);
        for (std::uint64_t i = 900; i < 950; ++i) CHILD_EXPECT(writer.try_write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        return writer.end_stream() == Status::ok ? 0 : 1;
    });
    test::Child second([&] {
        auto writer = RecordWriter::attach(names[1], small_ring());
        for (std::uint64_t i = 0; i < 300; ++i) CHILD_EXPECT(writer.try_write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        CHILD_EXPECT(writer.write_barrier(1) == Status::ok);
        for (std::uint64_t i = 300; i < 320; ++i) CHILD_EXPECT(writer.try_write(std::as_bytes(std::span(&i, 1))) == Status::ok);
        return writer.end_stream() == Status::ok ? 0 : 1;
    });
    REQUIRE(first.exit_code() == 0);
    REQUIRE(second.exit_code() == 0);
    Record record;
    std::uint32_t channel = 0;
    REQUIRE(gate.read_for(record, channel, 30s) == Status::ok);
    CHECK(record.kind == RecordKind::barrier);  // first of all: it overtook 1200 queued records
    CHECK(record.checkpoint_id == 1);
    std::uint64_t flagged = 0, unflagged = 0, wrong = 0, ends = 0, barriers = 0;
    bool end_seen = false;
    Status status;
    while ((status = gate.read_for(record, channel, 30s)) == Status::ok) {
        if (record.kind == RecordKind::barrier) {
            ++barriers;
            continue;
        }
        if (record.kind == RecordKind::in_flight_end) {
            ++ends;
            end_seen = true;
            continue;
        }
        std::uint64_t value;
        std::memcpy(&value, record.bytes.data(), 8);
        bool before = (channel == 0 && value < 900) || (channel == 1 && value < 300);
        if (record.in_flight_of == 1) {
            ++flagged;
            if (!before || end_seen) ++wrong;
        } else {
            ++unflagged;
            if (before) ++wrong;
        }
    }
    CHECK(status == Status::end_of_stream);
    CHECK(barriers == 0);  // delivered once, at the start
    CHECK(ends == 1);
    CHECK(wrong == 0);
    CHECK(flagged == 1200);
    CHECK(unflagged == 70);
}

}  // TEST_SUITE("topology")
