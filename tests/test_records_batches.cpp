// SPDX-License-Identifier: Apache-2.0
// The records layer across real processes: zero-copy reserve/commit, the limits on record sizes,
// batches (write_batch, read_batch), runs (reserve_run, read_run, read_values) and their misuse.
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include "records_support.hpp"

TEST_SUITE("records") {

// ---- 4. Zero-copy and limits ------------------------------------------------------------------------

TEST_CASE("zero-copy reserve/commit across processes") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-zc");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        // (reserved, used) pairs; the record is the first `used` bytes.
        std::vector<std::pair<std::size_t, std::size_t>> plan = {
            {0, 0}, {1, 1}, {100, 10}, {100, 0}, {kPayload - 8, kPayload - 8}, {kPayload - 8, 1}, {64, 64}};
        std::mt19937_64 rng(99);
        for (int i = 0; i < 2000; ++i) {
            std::size_t reserved = rng() % 4 == 0 ? rng() % (kPayload - 7) : rng() % 300;
            plan.push_back({reserved, reserved ? rng() % (reserved + 1) : 0});
        }
        test::Child producer([&] {
            auto writer = RecordWriter::attach(name, options);
            CHILD_EXPECT(writer.max_inline_record() == kPayload - 8);
            for (std::size_t i = 0; i < plan.size(); ++i) {
                std::span<std::byte> room;
                CHILD_EXPECT(writer.reserve(plan[i].first, room) == Status::ok);
                CHILD_EXPECT(room.size() == plan[i].first);
                fill_record(room.data(), plan[i].second, i);
                CHILD_EXPECT(writer.commit(plan[i].second) == Status::ok);
            }
            CHILD_EXPECT(writer.end_stream() == Status::ok);
            return 0;
        });
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < plan.size(); ++i) {
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, i << ": " << describe(status) << " " << reader.last_error());
            REQUIRE(check_record(record.bytes, i, plan[i].second) == "");
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
        CHECK(producer.exit_code() == 0);
    }
}

TEST_CASE("reserve/commit misuse and records over the maximum are refused, nothing written") {
    const std::string name = test::unique_name("rec-limits");
    auto options = records_options(kSmallSegment, kSmallCount);
    options.max_record_bytes = 10000;
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    CHECK(writer.max_record_bytes() == 10000);
    std::span<std::byte> room;

    CHECK(writer.commit(0) == Status::invalid_call);  // commit without reserve
    CHECK_FALSE(writer.last_error().empty());
    CHECK(writer.reserve(writer.max_inline_record() + 1, room) == Status::too_large);
    CHECK(writer.try_reserve(writer.max_inline_record() + 1, room) == Status::too_large);
    CHECK(writer.commit(1) == Status::invalid_call);  // the refused reserve reserved nothing

    auto over = make_record(10001, 0);
    CHECK(writer.write(over) == Status::too_large);
    CHECK_FALSE(writer.last_error().empty());
    CHECK(writer.try_write(over) == Status::too_large);
    CHECK(writer.write_for(over, 10ms) == Status::too_large);
    std::string too_long(10001, 'x');
    CHECK(writer.write_value(too_long) == Status::too_large);

    REQUIRE(writer.reserve(50, room) == Status::ok);
    CHECK(writer.commit(51) == Status::invalid_call);  // more than reserved
    REQUIRE(writer.reserve(50, room) == Status::ok);   // a second reserve drops the first
    fill_record(room.data(), 20, 1);
    CHECK(writer.commit(20) == Status::ok);
    CHECK(writer.commit(0) == Status::invalid_call);  // commit twice
    auto exact = make_record(10000, 2);
    CHECK(writer.write(exact) == Status::ok);          // exactly the maximum is fine
    CHECK(writer.end_stream() == Status::ok);

    Record record;
    REQUIRE(reader.try_read(record) == Status::ok);
    CHECK(check_record(record.bytes, 1, 20) == "");
    REQUIRE(reader.try_read(record) == Status::ok);
    CHECK(check_record(record.bytes, 2, 10000) == "");
    CHECK(reader.try_read(record) == Status::end_of_stream);
}

// ---- 4b. Batches ----------------------------------------------------------------------------------

namespace {
// A batch plan: runs of fixed-size records (write_batch), single writes and barriers between
// them. Record sizes cover the inline path's fixed-size copies (8 .. 128), odd sizes, the largest
// inline record and records that span segments; counts from 1 to past a segment.
struct BatchItem {
    enum Kind { batch, single, barrier } kind;
    std::size_t size;
    std::size_t count;
};
std::vector<BatchItem> batch_plan(std::uint32_t segment_size, std::size_t items, std::uint64_t seed) {
    const std::size_t inline_max = segment_size - L::kSegmentHeaderBytes - L::kFrameHeaderBytes;
    const std::size_t sizes[] = {8, 16, 24, 32, 64, 100, 128, 1000, inline_max - 8, inline_max, inline_max + 8,
                                 std::size_t{3} * segment_size};
    std::mt19937_64 rng(seed);
    std::vector<BatchItem> plan;
    for (std::size_t i = 0; i < items; ++i) {
        const std::uint64_t dice = rng() % 10;
        const std::size_t size = sizes[rng() % std::size(sizes)];
        if (dice < 7) {
            const std::size_t most = std::max<std::size_t>(1, std::min<std::size_t>(600, 6 * segment_size / size));
            plan.push_back({BatchItem::batch, size, 1 + rng() % most});
        } else if (dice < 9) {
            plan.push_back({BatchItem::single, size, 1});
        } else {
            plan.push_back({BatchItem::barrier, 0, 1});
        }
    }
    return plan;
}
// A plan's stream, flattened: a record (size, index) or a barrier (checkpoint id = the index of
// the record after it).
struct Expected {
    bool barrier;
    std::size_t size;
    std::uint64_t index;
};
std::vector<Expected> flatten(const std::vector<BatchItem>& plan) {
    std::vector<Expected> expected;
    std::uint64_t index = 0;
    for (const BatchItem& item : plan) {
        if (item.kind == BatchItem::barrier) {
            expected.push_back({true, 0, index});
        } else {
            for (std::size_t k = 0; k < item.count; ++k) expected.push_back({false, item.size, index + k});
            index += item.count;
        }
    }
    return expected;
}
// Producer body for a plan: barriers (checkpoint id = the next record's index), records filled
// with their indices into `records`, each item written by write_item(writer, item, records, rng);
// now and then a flush; then end of stream. 0 on success.
template <class WriteItem>
int write_plan(const std::string& name, const ChannelOptions& options, const std::vector<BatchItem>& plan,
               std::uint64_t seed, WriteItem write_item) {
    ::alarm(120);
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::byte> records;
    std::uint64_t index = 0;
    std::mt19937_64 rng(seed);
    for (const BatchItem& item : plan) {
        Status status;
        if (item.kind == BatchItem::barrier) {
            status = writer.write_barrier(index);
        } else {
            records.resize(item.size * item.count);
            for (std::size_t k = 0; k < item.count; ++k) fill_record(records.data() + k * item.size, item.size, index + k);
            status = write_item(writer, item, std::span<const std::byte>(records), rng);
            index += item.count;
        }
        if (status != Status::ok) {
            std::fprintf(stderr, "producer: %s %s\n", describe(status).c_str(), writer.last_error().c_str());
            return 3;
        }
        if (rng() % 8 == 0) CHILD_EXPECT(writer.flush() == Status::ok);
    }
    CHILD_EXPECT(writer.end_stream() == Status::ok);
    return 0;
}
}  // namespace

TEST_CASE("batches: write_batch and read_batch across processes, every record once, in order, intact") {
    const std::size_t items = test::kSanitized ? 150 : 600;
    for (bool checksums : {false, true}) {
        for (std::uint32_t segment_size : {kSmallSegment, L::kDefaultSegmentSize}) {
            CAPTURE(checksums);
            CAPTURE(segment_size);
            const std::string name = test::unique_name("rec-batch");
            auto options = records_options(segment_size, 4, checksums);
            const auto plan = batch_plan(segment_size, items, segment_size + checksums);
            test::Child producer([&] {
                return write_plan(name, options, plan, 7,
                                  [](RecordWriter& writer, const BatchItem& item, std::span<const std::byte> records,
                                     std::mt19937_64& rng) {
                                      if (item.kind == BatchItem::single) return writer.write(records);
                                      std::size_t written = ~std::size_t{0};
                                      const Status status = rng() % 4 == 0
                                                                ? writer.write_batch_for(records, item.size, written, kDeadline)
                                                                : writer.write_batch(records, item.size, written);
                                      // A wrong count fails the producer (write_plan prints it).
                                      if (status == Status::ok && written != item.count) return Status::invalid_call;
                                      return status;
                                  });
            });
            const std::vector<Expected> expected = flatten(plan);
            auto reader = RecordReader::attach(name, options);
            std::size_t next = 0, bad = 0, calls = 0, events_not_first = 0;
            std::mt19937_64 rng(3);
            for (;;) {
                std::size_t in_call = 0;
                auto check = [&](const Record& record) {
                    if (record.kind != RecordKind::record && in_call != 0) ++events_not_first;
                    ++in_call;
                    if (next >= expected.size()) {
                        ++bad;
                        return;
                    }
                    const Expected& want = expected[next++];
                    if (want.barrier) {
                        if (record.kind != RecordKind::barrier || record.checkpoint_id != want.index) ++bad;
                    } else if (record.kind != RecordKind::record) {
                        ++bad;
                    } else {
                        std::string problem = check_record(record.bytes, want.index, want.size);
                        if (!problem.empty() && ++bad <= 5) FAIL_CHECK(problem);
                    }
                };
                const std::size_t limit = rng() % 3 == 0 ? 1 + rng() % 5 : 1 + rng() % 2000;
                std::size_t delivered = ~std::size_t{0};
                Status status;
                const std::uint64_t how = rng() % 4;
                if (how == 0) {
                    // A try does not watch the producer's liveness: bounded by the deadline.
                    const auto until = std::chrono::steady_clock::now() + kDeadline;
                    while ((status = reader.try_read_batch(check, limit, delivered)) == Status::would_block) {
                        CHECK(delivered == 0);
                        REQUIRE(std::chrono::steady_clock::now() < until);
                        ::sched_yield();
                    }
                } else if (how == 1) {
                    status = reader.read_batch_for(check, limit, delivered, kDeadline);
                } else {
                    status = reader.read_batch(check, limit, delivered);
                }
                ++calls;
                if (status == Status::end_of_stream) {
                    CHECK(delivered == 0);
                    break;
                }
                REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
                CHECK(delivered == in_call);
                CHECK(delivered >= 1);
                CHECK(delivered <= limit);
            }
            CHECK(bad == 0);
            CHECK(next == expected.size());
            CHECK(events_not_first == 0);
            CHECK(calls < expected.size());  // batches did carry more than one record
            CHECK(producer.exit_code() == 0);
            reader.remove_channel();
        }
    }
}

TEST_CASE("write_batch refuses what it cannot frame, writing nothing; after end of stream too") {
    const std::string name = test::unique_name("rec-batch-misuse");
    auto options = records_options(kSmallSegment, kSmallCount);
    options.max_record_bytes = 20000;
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::byte> bytes(64);
    std::size_t written = 99;
    CHECK(writer.write_batch(bytes, 0, written) == Status::invalid_call);
    CHECK(written == 0);
    written = 99;
    CHECK(writer.write_batch(bytes, 24, written) == Status::invalid_call);  // 24 does not divide 64
    CHECK(written == 0);
    CHECK(writer.last_error().find("divide") != std::string::npos);
    std::vector<std::byte> large(20008);
    CHECK(writer.write_batch(large, 20008, written) == Status::too_large);
    CHECK(written == 0);
    CHECK(writer.write_batch(std::span<const std::byte>(), 8, written) == Status::ok);  // nothing to do
    CHECK(written == 0);
    fill_record(bytes.data(), 32, 0);
    fill_record(bytes.data() + 32, 32, 1);
    CHECK(writer.write_batch(bytes, 32, written) == Status::ok);
    CHECK(written == 2);
    CHECK(writer.end_stream() == Status::ok);
    CHECK(writer.write_batch(bytes, 32, written) == Status::invalid_call);
    CHECK(written == 0);

    auto reader = RecordReader::attach(name, options);
    std::vector<std::uint64_t> seen;
    std::size_t delivered = 0;
    auto take = [&](const Record& record) {
        CHECK(check_record(record.bytes, seen.size(), 32) == "");
        seen.push_back(index_of(record.bytes));
    };
    CHECK(reader.read_batch(take, 10, delivered) == Status::ok);
    CHECK(delivered == 2);
    CHECK(reader.read_batch(take, 10, delivered) == Status::end_of_stream);
    CHECK(delivered == 0);
    CHECK(seen == std::vector<std::uint64_t>{0, 1});
    reader.remove_channel();
}

TEST_CASE("write_values: an array of trivially copyable values, one record each, read back typed") {
    const std::string name = test::unique_name("rec-batch-values");
    auto options = records_options(kSmallSegment, kSmallCount);
    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        std::vector<recordtest::Trade> trades(500);  // 32-byte frames: spread over several segments
        for (std::size_t i = 0; i < trades.size(); ++i) {
            trades[i] = recordtest::Trade{static_cast<std::int64_t>(i), 0.25 * static_cast<double>(i), "XNAS"};
        }
        std::size_t written = 0;
        CHILD_EXPECT(writer.write_values(std::span<const recordtest::Trade>(trades), written) == Status::ok);
        CHILD_EXPECT(written == trades.size());
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    auto reader = RecordReader::attach(name, options);
    std::int64_t next = 0;
    recordtest::Trade trade{};
    Status status;
    while ((status = reader.read_value(trade)) == Status::ok) {
        CHECK(trade.id == next);
        CHECK(trade.price == 0.25 * static_cast<double>(next));
        CHECK(std::string(trade.venue) == "XNAS");
        ++next;
    }
    CHECK(status == Status::end_of_stream);
    CHECK(next == 500);
    CHECK(producer.exit_code() == 0);
    reader.remove_channel();
}

TEST_CASE("runs: write_batch and reserve_run/commit_run in, read_run and read_values out, across processes") {
    // Runs of equal records (one run frame per segment they fill), single records, events and
    // spanning records interleaved; the reader takes runs with random limits and checks every
    // record once, in order, with the position of each.
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-runs");
        auto options = records_options(kSmallSegment, 4, checksums);
        const auto plan = batch_plan(kSmallSegment, test::kSanitized ? 150 : 500, 77 + checksums);
        test::Child producer([&] {
            return write_plan(name, options, plan, 5,
                              [](RecordWriter& writer, const BatchItem& item, std::span<const std::byte> records,
                                 std::mt19937_64& rng) {
                                  if (item.kind == BatchItem::batch && item.size <= 1000 && rng() % 2 == 0) {
                                      // In place: as many as each reservation gives, copied there.
                                      Status status = Status::ok;
                                      std::size_t done = 0;
                                      while (done < item.count && status == Status::ok) {
                                          std::span<std::byte> room;
                                          std::size_t count = 0;
                                          status = rng() % 3 == 0
                                                       ? writer.reserve_run_for(item.size, item.count - done, room, count, kDeadline)
                                                       : writer.reserve_run(item.size, item.count - done, room, count);
                                          if (status != Status::ok) break;
                                          if (count < 1 || count > item.count - done || room.size() != count * item.size) {
                                              return Status::invalid_call;  // fails the producer
                                          }
                                          // Sometimes commit fewer than reserved: the rest is not written.
                                          const std::size_t used = count > 1 && rng() % 4 == 0 ? count - 1 : count;
                                          std::memcpy(room.data(), records.data() + done * item.size, used * item.size);
                                          status = writer.commit_run(used);
                                          done += used;
                                      }
                                      return status;
                                  }
                                  std::size_t written = 0;
                                  return item.kind == BatchItem::single ? writer.write(records)
                                                                        : writer.write_batch(records, item.size, written);
                              });
        });
        const std::vector<Expected> expected = flatten(plan);
        auto reader = RecordReader::attach(name, options);
        std::size_t next = 0, bad = 0, runs = 0, longest = 0;
        RecordPosition previous{};
        std::mt19937_64 rng(9);
        for (;;) {
            const std::size_t limit = rng() % 3 == 0 ? 1 + rng() % 5 : 1 + rng() % 2000;
            RecordRun run;
            Status status;
            const std::uint64_t how = rng() % 4;
            if (how == 0) {
                const auto until = std::chrono::steady_clock::now() + kDeadline;
                while ((status = reader.try_read_run(run, limit)) == Status::would_block) {
                    REQUIRE(std::chrono::steady_clock::now() < until);
                    ::sched_yield();
                }
            } else if (how == 1) {
                status = reader.read_run_for(run, limit, kDeadline);
            } else {
                status = reader.read_run(run, limit);
            }
            if (status == Status::end_of_stream) break;
            REQUIRE(next < expected.size());
            if (status == Status::event) {
                CHECK(run.count == 0);
                const Expected& want = expected[next++];
                CHECK(want.barrier);
                CHECK(reader.last().kind == RecordKind::barrier);
                CHECK(reader.last().checkpoint_id == want.index);
                continue;
            }
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            REQUIRE(run.count >= 1);
            CHECK(run.count <= limit);
            CHECK(run.bytes.size() == run.count * run.record_size);
            if (runs > 0) CHECK(previous < run.position);
            previous = run.position;
            ++runs;
            longest = std::max(longest, run.count);
            for (std::size_t k = 0; k < run.count; ++k) {
                REQUIRE(next < expected.size());
                const Expected& want = expected[next++];
                CHECK_FALSE(want.barrier);
                std::string problem = check_record(run.record(k), want.index, want.size);
                if (!problem.empty() && ++bad <= 5) FAIL_CHECK(problem);
            }
        }
        CHECK(bad == 0);
        CHECK(next == expected.size());
        if (!checksums) CHECK(longest > 100);  // runs did carry many records per call
        CHECK(runs < expected.size());
        CHECK(producer.exit_code() == 0);
        reader.remove_channel();
    }
}

TEST_CASE("read_values copies a run of T; decode_error for records of another size; events say so") {
    const std::string name = test::unique_name("rec-read-values");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    std::vector<std::uint64_t> values(300);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = i * 7 + 1;
    std::size_t written = 0;
    REQUIRE(writer.write_values(std::span<const std::uint64_t>(values), written) == Status::ok);
    REQUIRE(writer.write_barrier(5) == Status::ok);
    const std::uint32_t odd[3] = {1, 2, 3};
    REQUIRE(writer.write_values(std::span<const std::uint32_t>(odd), written) == Status::ok);
    REQUIRE(writer.write_value(std::uint64_t{99}) == Status::ok);
    REQUIRE(writer.end_stream() == Status::ok);

    auto reader = RecordReader::attach(name, options);
    std::vector<std::uint64_t> got;
    std::uint64_t out[64];
    std::size_t n = 99;
    CHECK(reader.read_values(std::span<std::uint64_t>(out, 0), n) == Status::invalid_call);
    CHECK(n == 0);
    Status status;
    while ((status = reader.read_values(std::span<std::uint64_t>(out), n)) == Status::ok) {
        CHECK(n >= 1);
        CHECK(n <= 64);
        got.insert(got.end(), out, out + n);
    }
    CHECK(got == values);
    CHECK(n == 0);
    REQUIRE(status == Status::event);
    CHECK(reader.last().kind == RecordKind::barrier);
    CHECK(reader.last().checkpoint_id == 5);
    CHECK(reader.read_values(std::span<std::uint64_t>(out), n) == Status::decode_error);  // 4-byte records
    CHECK(n == 0);
    CHECK(reader.last().bytes.size() == 4);
    CHECK(reader.read_values(std::span<std::uint64_t>(out), n) == Status::ok);  // all three were consumed
    CHECK(n == 1);
    CHECK(out[0] == 99);
    CHECK(reader.read_values(std::span<std::uint64_t>(out), n) == Status::end_of_stream);
    reader.remove_channel();
}

TEST_CASE("a record of 1 KiB or more written alone starts on a cache line, wherever the last one ended") {
    // Every way of writing one record: write, write_for, reserve/commit (whole, or fewer bytes
    // than reserved), write_value. From kAlignedRecordMin bytes on, the record's bytes start on a
    // cache line wherever that fits one segment; a larger one is a plain frame.
    const std::string name = test::unique_name("rec-aligned");
    auto options = records_options();  // 32 KiB segments
    const std::size_t largest = L::kDefaultSegmentSize - L::kSegmentHeaderBytes - L::run_data_offset(0);  // 32640
    enum class Way { write, write_for, reserve, reserve_more, write_value };
    struct Case {
        std::size_t size;
        Way way;
    };
    const std::vector<Case> cases = {
        {100, Way::write},          {shmchan::detail::kAlignedRecordMin, Way::write_for}, {3000, Way::reserve},
        {24, Way::write},           {largest, Way::reserve},                            {5000, Way::reserve_more},
        {largest + 8, Way::reserve}, {2000, Way::write_value},                           {1500, Way::reserve_more},
        {0, Way::reserve_more},     {largest, Way::write},                              {largest + 8, Way::write}};
    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        for (std::size_t i = 0; i < cases.size(); ++i) {
            const std::size_t size = cases[i].size;
            const auto bytes = make_record(size, i);
            std::span<std::byte> room;
            switch (cases[i].way) {
            case Way::write: CHILD_EXPECT(writer.write(bytes) == Status::ok); break;
            case Way::write_for: CHILD_EXPECT(writer.write_for(bytes, kDeadline) == Status::ok); break;
            case Way::reserve:
            case Way::reserve_more: {
                const std::size_t reserve = cases[i].way == Way::reserve ? size : size + 2048;
                CHILD_EXPECT(writer.reserve(reserve, room) == Status::ok);
                CHILD_EXPECT(room.size() == reserve);
                if (size) std::memcpy(room.data(), bytes.data(), size);
                CHILD_EXPECT(writer.commit(size) == Status::ok);
                break;
            }
            case Way::write_value:
                CHILD_EXPECT(writer.write_value(std::string(reinterpret_cast<const char*>(bytes.data()), size)) == Status::ok);
                break;
            }
        }
        // A write between a large reserve and its commit drops the reservation, as for a small one.
        std::span<std::byte> room;
        CHILD_EXPECT(writer.reserve(4096, room) == Status::ok);
        CHILD_EXPECT(writer.write(make_record(10, cases.size())) == Status::ok);
        CHILD_EXPECT(writer.commit(4096) == Status::invalid_call);
        CHILD_EXPECT(writer.commit(10) == Status::invalid_call);
        // So does a second reserve; its commit frames the second.
        CHILD_EXPECT(writer.reserve(4096, room) == Status::ok);
        CHILD_EXPECT(writer.reserve(12, room) == Status::ok);
        fill_record(room.data(), 12, cases.size() + 1);
        CHILD_EXPECT(writer.commit(12) == Status::ok);
        CHILD_EXPECT(writer.commit(12) == Status::invalid_call);
        CHILD_EXPECT(writer.end_stream() == Status::ok);
        return 0;
    });
    auto reader = RecordReader::attach(name, options);
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const std::size_t size = cases[i].size;
        CAPTURE(i);
        CAPTURE(size);
        Record record;
        REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
        CHECK(check_record(record.bytes, i, size) == "");
        const auto address = reinterpret_cast<std::uintptr_t>(record.bytes.data());
        if (size >= shmchan::detail::kAlignedRecordMin && size <= largest) CHECK(address % 64 == 0);
    }
    Record record;
    REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
    CHECK(check_record(record.bytes, cases.size(), 10) == "");
    REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
    CHECK(check_record(record.bytes, cases.size() + 1, 12) == "");
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
    reader.remove_channel();
}

TEST_CASE("reserve_run after a producer restart, where the continued segment has too little room for a run") {
    // The first producer leaves 56 committed bytes (one 48-byte record) in a segment it never
    // published; the second continues it. A run there starts at payload offset 128 (72 bytes of
    // headers and padding), so a record of 3908 bytes fits a fresh segment (64 + 3908 <= 4032)
    // but not this one: the segment is handed over and the run goes into a fresh one.
    const std::string name = test::unique_name("rec-run-continued");
    auto options = records_options(kSmallSegment, kSmallCount);
    options.buffer_timeout = std::chrono::hours(1);
    {
        auto first = RecordWriter::attach(name, options);
        REQUIRE(first.write(make_record(48, 0)) == Status::ok);
    }  // detached holding the segment: its 56 committed bytes stay, unpublished
    auto second = RecordWriter::attach(name, options);
    const std::size_t record_size = kPayload - 56 - 68;  // 3908
    std::span<std::byte> room;
    std::size_t count = 0;
    REQUIRE_MESSAGE(second.reserve_run(record_size, 1, room, count) == Status::ok, second.last_error());
    REQUIRE(count == 1);
    fill_record(room.data(), record_size, 1);
    REQUIRE(second.commit_run(count) == Status::ok);
    REQUIRE(second.end_stream() == Status::ok);
    auto reader = RecordReader::attach(name, options);
    Record record;
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(check_record(record.bytes, 0, 48) == "");
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(check_record(record.bytes, 1, record_size) == "");
    CHECK(reader.read(record) == Status::end_of_stream);
    reader.remove_channel();
}

TEST_CASE("reserve_run/commit_run misuse is refused; a write or reserve in between drops the run") {
    const std::string name = test::unique_name("rec-run-misuse");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    std::span<std::byte> room;
    std::size_t count = 99;
    CHECK(writer.commit_run(1) == Status::invalid_call);  // nothing reserved
    CHECK(writer.reserve_run(0, 10, room, count) == Status::invalid_call);
    CHECK(count == 0);
    CHECK(writer.reserve_run(8, 0, room, count) == Status::invalid_call);
    CHECK(writer.reserve_run(kPayload - 63, 2, room, count) == Status::too_large);  // no room for a run frame
    CHECK(writer.last_error().find("reserve_run") != std::string::npos);
    // A run frame of one record: headers and padding take 64 bytes of the payload.
    CHECK(writer.reserve_run(kPayload - 64, 2, room, count) == Status::ok);
    CHECK(count == 1);
    CHECK(writer.commit_run(2) == Status::invalid_call);  // more than reserved
    CHECK(writer.commit_run(1) == Status::invalid_call);  // the failed commit dropped it

    // A write, a reserve or an event between reserve_run and commit_run drops the reservation.
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    const std::byte one[16] = {};
    REQUIRE(writer.write(std::span<const std::byte>(one)) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    std::span<std::byte> single;
    REQUIRE(writer.reserve(16, single) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    REQUIRE(writer.write_barrier(3) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);
    // commit_run(0) writes nothing; a good run goes through.
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    CHECK(writer.commit_run(0) == Status::ok);
    REQUIRE(writer.reserve_run(16, 10, room, count) == Status::ok);
    REQUIRE(count == 10);
    for (std::size_t k = 0; k < count; ++k) fill_record(room.data() + k * 16, 16, k);
    REQUIRE(writer.commit_run(count) == Status::ok);
    CHECK(writer.commit_run(count) == Status::invalid_call);  // once
    REQUIRE(writer.end_stream() == Status::ok);
    CHECK(writer.reserve_run(16, 10, room, count) == Status::invalid_call);

    auto reader = RecordReader::attach(name, options);
    Record record;
    REQUIRE(reader.read(record) == Status::ok);  // the plain write
    CHECK(record.bytes.size() == 16);
    REQUIRE(reader.read(record) == Status::ok);  // the barrier (the single reserve was never committed)
    CHECK(record.kind == RecordKind::barrier);
    RecordRun run;
    REQUIRE(reader.read_run(run, 100) == Status::ok);
    CHECK(run.count == 10);
    CHECK(run.record_size == 16);
    for (std::size_t k = 0; k < run.count; ++k) CHECK(check_record(run.record(k), k, 16) == "");
    CHECK(reader.read_run(run, 100) == Status::end_of_stream);
    reader.remove_channel();
}

TEST_CASE("try_write_batch and write_batch_for stop where they would wait, saying how many went in") {
    // No consumer reads: the ring (4 x 4 KiB) fills, and nothing of the rest is written until a
    // reader frees segments. The verdicts depend on the ring being full, not on time.
    const std::string name = test::unique_name("rec-batch-partial");
    auto options = records_options(kSmallSegment, kSmallCount);
    auto writer = RecordWriter::attach(name, options);
    constexpr std::size_t kSize = 100, kCount = 1000;  // 144 in the ring framed one by one (112 B)
    std::vector<std::byte> bytes(kSize * kCount);
    for (std::size_t k = 0; k < kCount; ++k) fill_record(bytes.data() + k * kSize, kSize, k);
    std::size_t written = 0;
    CHECK(writer.try_write_batch(bytes, kSize, written) == Status::would_block);
    // At least what one frame per record would fit (runs pack more), and not all of it.
    const std::size_t framed_one_by_one = kSmallCount * (kPayload / L::frame_align(L::kFrameHeaderBytes + kSize));
    CHECK(written >= framed_one_by_one);
    CHECK(written < kCount);
    std::size_t more = 99;
    const auto rest = std::span<const std::byte>(bytes).subspan(written * kSize);
    CHECK(writer.write_batch_for(rest, kSize, more, 1ms) == Status::timed_out);
    CHECK(more == 0);
    CHECK(writer.try_write_batch(rest, kSize, more) == Status::would_block);
    CHECK(more == 0);

    // A consumer in another process reads everything; the blocking call writes the rest.
    test::Child consumer([&] {
        ::alarm(120);
        auto reader = RecordReader::attach(name, options);
        std::uint64_t next = 0;
        bool good = true;
        auto take = [&](const Record& record) {
            good = good && record.kind == RecordKind::record && check_record(record.bytes, next, kSize).empty();
            ++next;
        };
        std::size_t delivered = 0;
        Status status;
        while ((status = reader.read_batch(take, 64, delivered)) == Status::ok) {
        }
        CHILD_EXPECT(status == Status::end_of_stream);
        CHILD_EXPECT(good);
        CHILD_EXPECT(next == kCount);
        return 0;
    });
    CHECK(writer.write_batch(rest, kSize, more) == Status::ok);
    CHECK(written + more == kCount);
    CHECK(writer.end_stream() == Status::ok);
    CHECK(consumer.exit_code() == 0);
    shmchan::remove_channel(name, true);
}

TEST_CASE("read_batch: an event comes first in a call; a handler that throws leaves the reader after its record") {
    const std::string name = test::unique_name("rec-batch-events");
    auto options = records_options();
    auto writer = RecordWriter::attach(name, options);
    auto reader = RecordReader::attach(name, options);
    std::vector<std::byte> bytes(64 * 5);
    for (std::size_t k = 0; k < 5; ++k) fill_record(bytes.data() + k * 64, 64, k);
    std::size_t written = 0;
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(3 * 64), 64, written) == Status::ok);
    REQUIRE(writer.write_barrier(42) == Status::ok);
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).subspan(3 * 64), 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);

    std::vector<std::string> seen;
    auto take = [&](const Record& record) {
        seen.push_back(record.kind == RecordKind::barrier ? "barrier " + std::to_string(record.checkpoint_id)
                                                          : std::to_string(index_of(record.bytes)));
    };
    std::size_t delivered = 0;
    CHECK(reader.read_batch(take, 100, delivered) == Status::ok);
    CHECK(delivered == 3);  // stops before the barrier
    CHECK(reader.try_read_batch(take, 2, delivered) == Status::ok);
    CHECK(delivered == 2);  // the barrier first, then one record: the limit
    CHECK(seen == std::vector<std::string>{"0", "1", "2", "barrier 42", "3"});

    // A throwing handler: record 4 was handed over; the reader stands after it.
    auto throwing = [&](const Record&) { throw std::runtime_error("handler failed"); };
    CHECK_THROWS_AS(static_cast<void>(reader.read_batch(throwing, 100, delivered)), std::runtime_error);
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(64), 64, written) == Status::ok);  // record 0 again
    REQUIRE(writer.flush() == Status::ok);
    Record record;
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(index_of(record.bytes) == 0);
    // The same inside a run of equal frames (the stride loop): 5 records, the 3rd throws.
    REQUIRE(writer.write_batch(bytes, 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    std::size_t calls = 0;
    auto third_throws = [&](const Record&) {
        if (++calls == 3) throw std::runtime_error("third");
    };
    CHECK_THROWS_AS(static_cast<void>(reader.read_batch(third_throws, 100, delivered)), std::runtime_error);
    REQUIRE(reader.read(record) == Status::ok);
    CHECK(index_of(record.bytes) == 3);
    // Inside a handler the reader refuses reads: a read through the batch's cursor would hand
    // over records twice.
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(3 * 64), 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    std::vector<std::uint64_t> got;
    Status nested = Status::ok;
    auto reads_inside = [&](const Record& given) {
        got.push_back(index_of(given.bytes));
        Record inner;
        nested = reader.try_read(inner);  // refused: would otherwise hand over the next record here
        if (nested != Status::invalid_call) got.push_back(1000 + index_of(inner.bytes));
    };
    std::size_t total = 0, refused = 0;
    while (total < 4) {
        REQUIRE(reader.read_batch(reads_inside, 100, delivered) == Status::ok);
        total += delivered;
        if (nested == Status::invalid_call) ++refused;
    }
    CHECK(total == 4);
    CHECK(refused >= 1);
    CHECK(nested == Status::invalid_call);
    CHECK(reader.last_error().find("read_batch handler") != std::string::npos);
    REQUIRE(writer.write_batch(std::span<const std::byte>(bytes).first(64), 64, written) == Status::ok);
    REQUIRE(writer.flush() == Status::ok);
    CHECK(reader.read(record) == Status::ok);  // after the batch, reads work again
    got.push_back(index_of(record.bytes));
    CHECK(got == std::vector<std::uint64_t>{4, 0, 1, 2, 0});
    CHECK(writer.end_stream() == Status::ok);
    CHECK(reader.read(record) == Status::end_of_stream);
    reader.remove_channel();
}

}  // TEST_SUITE
