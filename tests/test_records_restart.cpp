// SPDX-License-Identifier: Apache-2.0
// Restart across real processes: a killed consumer's successor (at-least-once, exactly-once with
// skip_through, resume points, a lost record larger than the ring) and a killed producer's
// successor (a half record never appears; committed records continued).
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include "records_support.hpp"

// ---- 6. Restart of a killed consumer ------------------------------------------------------------

namespace {

constexpr std::size_t kRestartRecords = 1500;

struct RestartShared {
    std::atomic<std::int64_t> in_progress{-1};  // last index read() returned to the first consumer
    std::atomic<std::int64_t> finished{-1};     // last index it finished processing
    std::atomic<std::int64_t> run_first{-1};    // read_run: the first index of the run in hand
    RecordPosition positions[kRestartRecords];  // position of each finished record (stored first)
    std::atomic<int> producer_status{0};
};

enum class KillMode {
    processing,  // raise(SIGKILL) after read() returned record K, before finishing it
    finished,    // raise(SIGKILL) after finishing record K, before the next read()
    external,    // the test kills it once it has passed record K, wherever it is
};

std::vector<std::size_t> restart_sizes(std::uint64_t seed) {
    std::vector<std::size_t> sizes;
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < kRestartRecords; ++i) {
        std::uint64_t kind = rng() % 10;
        // At least 8 bytes (the index); spanning ones stay well inside the 8 x 4 KiB ring.
        sizes.push_back(kind < 7 ? 8 + rng() % 300 : kind < 9 ? 8 + rng() % 4000 : 4000 + rng() % 9000);
    }
    return sizes;
}

// Ends the stream once a consumer is attached (a consumer's death is ridden out until `until`).
int end_stream_riding_out(RecordWriter& writer, std::chrono::steady_clock::time_point until) {
    Status status;
    while ((status = writer.end_stream()) == Status::peer_died) {
        if (std::chrono::steady_clock::now() > until) return 4;
        ::sched_yield();
    }
    CHILD_EXPECT(status == Status::ok);
    return 0;
}

// Runs of 20-120 records of one size (the shapes write_batch frames and read_batch walks at a
// stride, and that runs frame): mostly small (some of sizes that are not a multiple of 8, so
// that a resume point inside a run is not 8-aligned), some up to a segment, a few spanning.
std::vector<std::size_t> restart_batch_sizes(std::uint64_t seed) {
    std::vector<std::size_t> sizes;
    std::mt19937_64 rng(seed);
    while (sizes.size() < kRestartRecords) {
        std::uint64_t kind = rng() % 10;
        std::size_t size = kind < 5 ? 8 + 8 * (rng() % 40) : kind < 8 ? 9 + rng() % 300 : kind < 9 ? 8 + rng() % 4000 : 4000 + rng() % 9000;
        std::size_t run = std::min<std::size_t>(20 + rng() % 100, kRestartRecords - sizes.size());
        sizes.insert(sizes.end(), run, size);
    }
    return sizes;
}

// The same producer through write_batch, one call per run of equal sizes; after peer_died,
// `written` says where to go on once a new consumer is attached.
int restart_batch_producer(const std::string& name, const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
    auto writer = RecordWriter::attach(name, options);
    auto until = std::chrono::steady_clock::now() + 120s;
    std::vector<std::byte> buffer;
    for (std::size_t i = 0; i < sizes.size();) {
        std::size_t run = 1;
        while (i + run < sizes.size() && sizes[i + run] == sizes[i]) ++run;
        buffer.resize(run * sizes[i]);
        for (std::size_t k = 0; k < run; ++k) fill_record(buffer.data() + k * sizes[i], sizes[i], i + k);
        std::size_t done = 0;
        while (done < run) {
            std::size_t written = 0;
            Status status = writer.write_batch(std::span<const std::byte>(buffer).subspan(done * sizes[i]), sizes[i], written);
            done += written;
            if (status == Status::peer_died) {
                if (std::chrono::steady_clock::now() > until) return 4;
                ::sched_yield();
                continue;
            }
            if (status != Status::ok) {
                std::fprintf(stderr, "producer: write_batch at %zu: %s %s\n", i + done, describe(status).c_str(),
                             writer.last_error().c_str());
                return 3;
            }
        }
        i += run;
    }
    return end_stream_riding_out(writer, until);
}

// A producer that rides out the consumer's death: a write that returns peer_died did not complete
// its record, so it is written again once a new consumer is attached.
int restart_producer(const std::string& name, const ChannelOptions& options, const std::vector<std::size_t>& sizes) {
    auto writer = RecordWriter::attach(name, options);
    auto until = std::chrono::steady_clock::now() + 120s;
    std::vector<std::byte> buffer;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        buffer.resize(sizes[i]);
        fill_record(buffer.data(), sizes[i], i);
        Status status;
        while ((status = writer.write(std::span<const std::byte>(buffer.data(), sizes[i]))) == Status::peer_died) {
            if (std::chrono::steady_clock::now() > until) return 4;
            ::sched_yield();
        }
        if (status != Status::ok) {
            std::fprintf(stderr, "producer: write %zu: %s %s\n", i, describe(status).c_str(), writer.last_error().c_str());
            return 3;
        }
    }
    return end_stream_riding_out(writer, until);
}

// How the first consumer reads: read()/read_for() one record at a time, read_batch() (the kill
// lands in its handler), or read_run() (the kill lands while it processes a run's records).
enum class ReadWith { record, batch, run };

void consumer_restart_case(KillMode mode, std::size_t kill_at, bool exactly_once, bool checksums,
                           ReadWith read_with = ReadWith::record) {
    const bool batches = read_with != ReadWith::record;
    CAPTURE(kill_at);
    CAPTURE(exactly_once);
    CAPTURE(static_cast<int>(read_with));
    const std::string name = test::unique_name("rec-crestart");
    auto options = records_options(kSmallSegment, 8, checksums);
    // With batches both sides use them: runs of equal sizes through write_batch, so that the
    // kill lands inside read_batch's fixed-stride loop.
    const std::uint64_t seed = kill_at * 31 + static_cast<int>(mode);
    const auto sizes = batches ? restart_batch_sizes(seed) : restart_sizes(seed);
    test::SharedBlock<RestartShared> shared;

    test::Child producer([&] {
        return batches ? restart_batch_producer(name, options, sizes) : restart_producer(name, options, sizes);
    });
    test::Child first([&] {
        ::alarm(120);  // read() has no deadline: a hang ends the child, and the test fails
        auto reader = RecordReader::attach(name, options);
        std::size_t expected = 0;
        bool good = true;
        auto process = [&](const Record& record) {
            std::uint64_t index = index_of(record.bytes);
            if (record.kind != RecordKind::record || index != expected ||
                !check_record(record.bytes, index, sizes[index]).empty()) {
                good = false;
                return;
            }
            ++expected;
            shared->in_progress.store(static_cast<std::int64_t>(index));
            if (mode == KillMode::processing && index == kill_at) ::raise(SIGKILL);
            shared->positions[index] = record.position;
            shared->finished.store(static_cast<std::int64_t>(index));
            if (mode == KillMode::finished && index == kill_at) ::raise(SIGKILL);
            if (mode == KillMode::external && index >= kill_at) {
                // Some work per record, so that the test's kill lands while the stream goes on.
                volatile std::uint64_t sink = 0;
                for (int spin = 0; spin < 200000; ++spin) sink = sink + static_cast<std::uint64_t>(spin);
            }
        };
        while (expected < sizes.size() && good) {
            Status status;
            if (read_with == ReadWith::run) {
                // The records of a run are processed one by one after read_run returned them
                // all: the kill lands inside the run, whose first record the successor resumes at.
                RecordRun run;
                status = expected % 3 == 2 ? reader.read_run_for(run, 1 + expected % 700, kDeadline)
                                           : reader.read_run(run, 1000);
                if (status == Status::ok) {
                    shared->run_first.store(static_cast<std::int64_t>(expected));
                    for (std::size_t k = 0; k < run.count && good; ++k) {
                        Record record;
                        record.bytes = run.record(k);
                        record.position = RecordPosition{run.position.segment, run.position.offset + k * run.record_size};
                        process(record);
                    }
                }
            } else if (batches) {
                // The handler runs inside read_batch: the kill lands mid-batch.
                std::size_t delivered = 0;
                status = expected % 3 == 2 ? reader.read_batch_for(process, 64, delivered, kDeadline)
                                           : reader.read_batch(process, 1000, delivered);
            } else {
                Record record;
                // Both the inline fast path (read) and the slow path (read_for) store the resume point.
                status = expected % 3 == 2 ? reader.read_for(record, kDeadline) : reader.read(record);
                if (status == Status::ok) process(record);
            }
            CHILD_EXPECT(status == Status::ok);
        }
        CHILD_EXPECT(good);
        return 0;
    });
    if (mode == KillMode::external) {
        REQUIRE(test::eventually([&] { return shared->in_progress.load() >= static_cast<std::int64_t>(kill_at); }, 60s));
        first.kill(SIGKILL);
    }
    const int first_code = first.exit_code();
    CHECK(first_code == -(100 + SIGKILL));
    const std::int64_t in_progress = shared->in_progress.load();
    const std::int64_t finished = shared->finished.load();
    CAPTURE(in_progress);
    CAPTURE(finished);
    REQUIRE(in_progress >= 0);

    // The new consumer (this process) reads to the end.
    auto reader = RecordReader::attach(name, options);
    if (exactly_once && finished >= 0) reader.skip_through(shared->positions[finished]);
    std::vector<std::uint64_t> seen;
    Status status;
    while (true) {
        Record record;
        status = reader.read_for(record, kDeadline);
        if (status != Status::ok) break;
        REQUIRE(record.kind == RecordKind::record);
        std::uint64_t index = index_of(record.bytes);
        REQUIRE(index < sizes.size());
        CHECK(check_record(record.bytes, index, sizes[index]) == "");
        seen.push_back(index);
    }
    CHECK_MESSAGE(status == Status::end_of_stream, describe(status) << " " << reader.last_error());
    REQUIRE_FALSE(seen.empty());
    const std::int64_t first_seen = static_cast<std::int64_t>(seen.front());
    // Nothing lost: every record the dead consumer had not finished comes again.
    CHECK(first_seen <= finished + 1);
    if (exactly_once) {
        CHECK(first_seen == finished + 1);  // no duplicate at all
    } else {
        // Duplicates only of the record in progress (read, maybe finished, next read() not
        // called); with read_run, of the run in progress, from its first record.
        const std::int64_t unfinished_from = read_with == ReadWith::run ? shared->run_first.load() : in_progress;
        CHECK(first_seen >= unfinished_from);
        if (mode != KillMode::external) CHECK(first_seen == unfinished_from);
    }
    // Then every record once, in order, to the end.
    bool contiguous = true;
    for (std::size_t i = 0; i < seen.size(); ++i) contiguous = contiguous && seen[i] == seen.front() + i;
    CHECK(contiguous);
    CHECK(seen.back() == sizes.size() - 1);
    CHECK(producer.exit_code() == 0);
}

}  // namespace

TEST_SUITE("records") {

TEST_CASE("a killed consumer's successor loses nothing: at-least-once, exactly-once with skip_through") {
    for (bool exactly_once : {false, true}) {
        SUBCASE(exactly_once ? "exactly-once, killed while processing" : "at-least-once, killed while processing") {
            for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{57}, std::size_t{700}, kRestartRecords - 1}) {
                consumer_restart_case(KillMode::processing, k, exactly_once, false);
            }
        }
        SUBCASE(exactly_once ? "exactly-once, killed after finishing" : "at-least-once, killed after finishing") {
            for (std::size_t k : {std::size_t{0}, std::size_t{13}, std::size_t{400}, kRestartRecords - 2}) {
                consumer_restart_case(KillMode::finished, k, exactly_once, false);
            }
            consumer_restart_case(KillMode::finished, 250, exactly_once, true);
        }
        SUBCASE(exactly_once ? "exactly-once, killed from outside" : "at-least-once, killed from outside") {
            for (std::size_t k : {std::size_t{100}, std::size_t{500}, std::size_t{900}}) {
                consumer_restart_case(KillMode::external, k, exactly_once, false);
            }
        }
        SUBCASE(exactly_once ? "exactly-once, read_batch, killed in the handler" : "at-least-once, read_batch, killed in the handler") {
            for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{57}, std::size_t{700}, kRestartRecords - 1}) {
                consumer_restart_case(KillMode::processing, k, exactly_once, false, ReadWith::batch);
            }
            for (std::size_t k : {std::size_t{0}, std::size_t{13}, std::size_t{400}, kRestartRecords - 2}) {
                consumer_restart_case(KillMode::finished, k, exactly_once, false, ReadWith::batch);
            }
            consumer_restart_case(KillMode::external, 500, exactly_once, false, ReadWith::batch);
        }
        SUBCASE(exactly_once ? "exactly-once, read_run, killed inside a run" : "at-least-once, read_run, killed inside a run") {
            for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{57}, std::size_t{700}, kRestartRecords - 1}) {
                consumer_restart_case(KillMode::processing, k, exactly_once, false, ReadWith::run);
            }
            for (std::size_t k : {std::size_t{13}, std::size_t{400}, kRestartRecords - 2}) {
                consumer_restart_case(KillMode::finished, k, exactly_once, false, ReadWith::run);
            }
            consumer_restart_case(KillMode::finished, 250, exactly_once, true, ReadWith::run);
            consumer_restart_case(KillMode::external, 500, exactly_once, false, ReadWith::run);
        }
    }
}

TEST_CASE("a consumer killed inside a run of 12-byte records: its successor resumes at the record, unaligned") {
    // One run frame of 12-byte records (data at payload offset 64): record k starts at 64 + 12 k,
    // so the resume points of records 1 and 77 (offsets 76 and 988) are not multiples of 8.
    const std::string name = test::unique_name("rec-run-resume");
    auto options = records_options(kSmallSegment, kSmallCount);
    struct Twelve {
        std::uint32_t index, twice, thrice;
    };
    static_assert(sizeof(Twelve) == 12);
    std::vector<Twelve> values(200);
    for (std::uint32_t i = 0; i < values.size(); ++i) values[i] = {i, 2 * i, 3 * i};
    auto writer = RecordWriter::attach(name, options);
    std::size_t written = 0;
    REQUIRE(writer.write_values(std::span<const Twelve>(values), written) == Status::ok);
    REQUIRE(writer.end_stream() == Status::ok);
    for (std::uint32_t kill_after : {1u, 6u, 77u}) {
        CAPTURE(kill_after);
        test::Child first([&] {
            ::alarm(60);
            auto reader = RecordReader::attach(name, options);
            Twelve value{};
            do {
                if (reader.read_value(value) != Status::ok) return 3;
            } while (value.index < kill_after);
            ::raise(SIGKILL);  // record kill_after read, not finished: it comes again
            return 0;
        });
        CHECK(first.exit_code() == -(100 + SIGKILL));
        auto reader = RecordReader::attach(name, options);
        Twelve out[64];
        std::size_t got = 0;
        REQUIRE_MESSAGE(reader.read_values(std::span<Twelve>(out), got) == Status::ok, reader.last_error());
        REQUIRE(got >= 1);
        CHECK(out[0].index == kill_after);
        CHECK(out[0].thrice == 3 * kill_after);
    }
    // Each of those readers took a run from kill_after and detached without finishing it (no
    // further read): the next one, child or not, resumed at the run's first record. A last one
    // reads to the end from 77.
    auto reader = RecordReader::attach(name, options);
    std::uint32_t next = 77;
    Twelve value{};
    Status status;
    while ((status = reader.read_value(value)) == Status::ok) {
        CHECK(value.index == next);
        CHECK(value.twice == 2 * next);
        ++next;
    }
    CHECK(status == Status::end_of_stream);
    CHECK(next == values.size());
    reader.remove_channel();
}

TEST_CASE("a consumer that died between storing its resume point and released: the next resumes at the tag") {
    // 4 KiB segments: 36 records of 100 bytes (112 with header and padding) per segment.
    const std::string name = test::unique_name("rec-resume-tag");
    auto options = records_options(kSmallSegment, kSmallCount);
    constexpr std::size_t kRecords = 110;  // three segments: the ring of four holds them all
    {
        auto writer = RecordWriter::attach(name, options);
        for (std::size_t i = 0; i < kRecords; ++i) REQUIRE(writer.write(make_record(100, i)) == Status::ok);
        REQUIRE(writer.end_stream() == Status::ok);
    }
    RecordPosition position_of_40;
    {
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i <= 40; ++i) {
            Record record;
            REQUIRE(reader.read(record) == Status::ok);  // the inline path, mostly
            REQUIRE(index_of(record.bytes) == i);
            position_of_40 = record.position;
        }
    }  // detached with record 40 unfinished: resume word (1, offset of 40), released 1
    REQUIRE(position_of_40.segment == 1);
    REQUIRE(position_of_40.offset != 0);
    test::MappedFile file(test::path_of(name));
    REQUIRE(file.ok());
    REQUIRE(file.peek64(test::offsets::released) == 1);
    SUBCASE("released still at the old segment: resume in the segment the tag names") {
        file.poke64(test::offsets::released, 0);  // as if it died before storing released = 1
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 40; i < kRecords; ++i) {
            Record record;
            REQUIRE(reader.read_for(record, kDeadline) == Status::ok);
            REQUIRE(index_of(record.bytes) == i);
            CHECK(check_record(record.bytes, i, 100) == "");
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
        CHECK(shmchan::inspect(name).released >= 2);  // the segments before it were released
    }
    SUBCASE("a tag that names no unreleased segment is refused at attach") {
        const std::size_t word = offsetof(L::ChannelHeader, consumers) + offsetof(L::ConsumerSlot, position) +
                                 offsetof(L::ConsumerLine, resume_point);
        file.poke64(word, L::make_tagged_word(9, 0));
        CHECK_THROWS_AS(RecordReader::attach(name, options), shmchan::Error);
    }
}

TEST_CASE("a record larger than the ring in flight at the consumer's death is reported lost with its size") {
  for (bool batch : {false, true}) {
    CAPTURE(batch);  // the successor's first call: read_for, or read_batch_for (the loss in last())
    // 4 KiB x 4 ring; record 10 is 100 KiB. The producer writes records 0..9 and fills the ring
    // with the head of record 10; the test stops it there (SIGSTOP), so that the first consumer,
    // reading with try_read, deterministically has the record half read, with its first segments
    // released, when try_read comes back would_block: it kills itself then. The producer,
    // resumed, does not retry record 10 if its write fails.
    constexpr std::size_t kBig = 100 * 1024 + 3;
    constexpr std::size_t kCount = 20;
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < kCount; ++i) sizes.push_back(i == 10 ? kBig : 16 + i * 37);
    const std::string name = test::unique_name("rec-lost");
    auto options = records_options(kSmallSegment, kSmallCount);
    test::SharedBlock<std::atomic<int>> big_outcome;  // 1 written, 2 peer_died
    test::SharedBlock<std::atomic<int>> big_started;
    test::Child producer([&] {
        auto writer = RecordWriter::attach(name, options);
        auto until = std::chrono::steady_clock::now() + 120s;
        for (std::size_t i = 0; i < kCount; ++i) {
            auto bytes = make_record(sizes[i], i);
            if (i == 10) big_started->store(1);
            Status status;
            while ((status = writer.write(bytes)) == Status::peer_died && i != 10) {
                if (std::chrono::steady_clock::now() > until) return 4;
                ::sched_yield();
            }
            if (i == 10) {
                big_outcome->store(status == Status::ok ? 1 : status == Status::peer_died ? 2 : 3);
                continue;
            }
            CHILD_EXPECT(status == Status::ok);
        }
        return end_stream_riding_out(writer, until);
    });
    REQUIRE(test::wait_for_flag(*big_started, 1, 60s));
    REQUIRE(test::eventually([&] {
        auto info = shmchan::inspect(name);
        return info.published - info.released == kSmallCount;  // the producer waits inside record 10
    }, 60s));
    producer.kill(SIGSTOP);
    test::Child first([&] {
        auto reader = RecordReader::attach(name, options);
        test::MappedFile file(test::path_of(name));
        CHILD_EXPECT(file.ok());
        const auto& line = file.header().consumers[0].position;
        for (std::size_t i = 0; i < 10; ++i) {
            Record record;
            CHILD_EXPECT(reader.read_for(record, kDeadline) == Status::ok);
            CHILD_EXPECT(check_record(record.bytes, i, sizes[i]).empty());
        }
        Record record;
        Status status = reader.try_read(record);
        CHILD_EXPECT(status == Status::would_block);
        CHILD_EXPECT(L::load_relaxed(line.in_flight_record_bytes) == kBig);
        ::raise(SIGKILL);
        return 5;
    });
    CHECK(first.exit_code() == -(100 + SIGKILL));
    producer.kill(SIGCONT);

    auto reader = RecordReader::attach(name, options);
    Record record;
    Status status;
    if (batch) {
        std::size_t delivered = 99, handled = 0;
        status = reader.read_batch_for([&](const Record&) { ++handled; }, 10, delivered, kDeadline);
        CHECK(delivered == 0);
        CHECK(handled == 0);
        record = reader.last();
    } else {
        status = reader.read_for(record, kDeadline);
    }
    CHECK_MESSAGE(status == Status::record_lost, describe(status) << " " << reader.last_error());
    CHECK(record.lost_bytes == kBig);
    CHECK(record.position.segment > 0);
    for (std::size_t i = 11; i < kCount; ++i) {
        CAPTURE(i);
        status = reader.read_for(record, kDeadline);
        REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
        REQUIRE(record.kind == RecordKind::record);
        CHECK(check_record(record.bytes, i, sizes[i]) == "");
    }
    CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    CHECK(producer.exit_code() == 0);
    // The producer either saw the death (peer_died, the record abandoned) or went on writing the
    // record into the new consumer's ring (a new consumer attached before it noticed): in both
    // cases the new consumer reports the record lost and never delivers a part of it.
    CHECK((big_outcome->load() == 1 || big_outcome->load() == 2));
    shmchan::remove_channel(name, true);
  }
}

// ---- 7. Restart of a killed producer ----------------------------------------------------------------

TEST_CASE("a producer killed in the middle of a record larger than the ring: the half record never appears") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-prestart");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        constexpr std::size_t kFirst = 30, kSecond = 25, kHuge = 200 * 1024;
        std::vector<std::size_t> sizes;
        std::mt19937_64 rng(3 + checksums);
        for (std::size_t i = 0; i < kFirst + 1 + kSecond; ++i) sizes.push_back(8 + rng() % 3000);
        sizes[kFirst] = kHuge;
        sizes[5] = 6000;  // a spanning record that completes
        test::SharedBlock<std::atomic<int>> huge_started;

        test::Child first_producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = 0; i < kFirst; ++i) CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
            huge_started->store(1);
            static_cast<void>(writer.write(make_record(kHuge, kFirst)));  // blocks until killed: the consumer stops reading
            return 7;
        });
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < kFirst; ++i) {
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            REQUIRE(check_record(record.bytes, i, sizes[i]) == "");
        }
        // The consumer stops; the producer fills the ring with the head of the huge record and
        // blocks in the middle of it. Kill it there.
        REQUIRE(test::wait_for_flag(*huge_started, 1, 60s));
        REQUIRE(test::eventually([&] {
            auto info = reader.consumer().info();
            return info.published - info.released == kSmallCount;
        }, 60s));
        first_producer.kill(SIGKILL);
        CHECK(first_producer.exit_code() == -(100 + SIGKILL));

        std::optional<test::Child> second_producer;
        std::vector<std::uint64_t> seen;
        int peer_died = 0;
        auto until = std::chrono::steady_clock::now() + 120s;
        Status status;
        while (std::chrono::steady_clock::now() < until) {
            Record record;
            status = reader.read_for(record, kDeadline);
            if (status == Status::peer_died) {
                ++peer_died;
                if (!second_producer) {
                    second_producer.emplace([&] {
                        auto writer = RecordWriter::attach(name, options);
                        for (std::size_t i = kFirst + 1; i < sizes.size(); ++i) {
                            CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
                        }
                        CHILD_EXPECT(writer.end_stream() == Status::ok);
                        return 0;
                    });
                }
                continue;  // reading goes on once the new producer is attached
            }
            if (status != Status::ok) break;
            REQUIRE(record.kind == RecordKind::record);
            std::uint64_t index = index_of(record.bytes);
            CHECK_MESSAGE(index != kFirst, "the half-written record was delivered");
            REQUIRE(index < sizes.size());
            CHECK(check_record(record.bytes, index, sizes[index]) == "");
            seen.push_back(index);
        }
        CHECK_MESSAGE(status == Status::end_of_stream, describe(status) << " " << reader.last_error());
        CHECK(peer_died > 0);
        REQUIRE(second_producer);
        CHECK(second_producer->exit_code() == 0);
        std::vector<std::uint64_t> expected;
        for (std::size_t i = kFirst + 1; i < sizes.size(); ++i) expected.push_back(i);
        CHECK(seen == expected);
    }
}

TEST_CASE("a producer killed with committed records in an unpublished segment: its successor continues it") {
    for (bool checksums : {false, true}) {
        CAPTURE(checksums);
        const std::string name = test::unique_name("rec-presume");
        auto options = records_options(kSmallSegment, kSmallCount, checksums);
        options.buffer_timeout = std::chrono::hours(1);  // no hand-over by timeout
        constexpr std::size_t kFirst = 7, kTotal = 40;
        std::vector<std::size_t> sizes;
        for (std::size_t i = 0; i < kTotal; ++i) sizes.push_back(8 + (i * 97) % 500);
        test::Child first_producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = 0; i < kFirst; ++i) CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
            ::raise(SIGKILL);  // dies holding a partly filled segment
            return 7;
        });
        CHECK(first_producer.exit_code() == -(100 + SIGKILL));
        test::Child second_producer([&] {
            auto writer = RecordWriter::attach(name, options);
            for (std::size_t i = kFirst; i < kTotal; ++i) CHILD_EXPECT(writer.write(make_record(sizes[i], i)) == Status::ok);
            CHILD_EXPECT(writer.end_stream() == Status::ok);
            return 0;
        });
        CHECK(second_producer.exit_code() == 0);
        auto reader = RecordReader::attach(name, options);
        for (std::size_t i = 0; i < kTotal; ++i) {
            CAPTURE(i);
            Record record;
            Status status = reader.read_for(record, kDeadline);
            REQUIRE_MESSAGE(status == Status::ok, describe(status) << " " << reader.last_error());
            CHECK(check_record(record.bytes, i, sizes[i]) == "");
        }
        Record record;
        CHECK(reader.read_for(record, kDeadline) == Status::end_of_stream);
    }
}

}  // TEST_SUITE
