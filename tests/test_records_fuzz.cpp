// SPDX-License-Identifier: Apache-2.0
// A records reader fed mutated headers, frames and garbage segments while a writer runs: only
// documented statuses, never a crash, an overrun or a loop.
//
// Verdicts never depend on timing: waits have generous deadlines, and a deadline that passes is a
// failure only where the behaviour under test is what should have ended the wait.
#include "records_support.hpp"

// ---- 8. A reader fed mutated and random shared memory ---------------------------------------------

namespace {

struct FuzzShared {
    std::atomic<std::uint64_t> cases{0}, current{0};
    std::atomic<std::uint64_t> ok_reads{0}, corrupt{0}, attach_refused{0}, lost{0}, ends{0}, other{0};
};

bool documented_read_status(Status status) {
    switch (status) {
        case Status::would_block:
        case Status::timed_out:
        case Status::end_of_stream:
        case Status::record_lost:
        case Status::peer_died:
        case Status::corrupt: return true;
        default: return false;
    }
}

// One case: a channel written with a random mix, mutated, then read to the first non-ok status.
// Returns an empty string or what went wrong.
std::string fuzz_case(std::uint64_t seed, FuzzShared& stats) {
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) { return n ? rng() % n : 0; };
    const std::uint32_t count = 2 + static_cast<std::uint32_t>(pick(5));
    const bool checksums = pick(3) == 0;
    const std::string name = "fz-" + std::to_string(seed);
    ChannelOptions options = records_options(kSmallSegment, count, checksums);
    options.ready_timeout = 10ms;
    options.liveness_interval = 10ms;
    const std::uint32_t capacity = kSmallSegment - L::kSegmentHeaderBytes;
    std::string problem;
    {
        std::optional<RecordWriter> writer(RecordWriter::attach(name, options));
        std::optional<RecordReader> reader(RecordReader::attach(name, options));
        std::vector<std::byte> buffer(3 * kSmallSegment);
        auto write_mix = [&](int items) {
            for (int i = 0; i < items; ++i) {
                std::uint64_t kind = pick(10);
                // Barriers and events block for a free segment: only while one is free (a record
                // in flight holds its segments, so the ring can be full when a lap starts).
                if ((kind == 7 || kind == 8) && shmchan::detail::ProducerHooks(writer->producer()).free_segments() == 0) return;
                Status status;
                if (kind == 5 && pick(2) == 0) {
                    // A batch: run frames (or frames one by one, with checksums).
                    const std::size_t size = 1 + pick(pick(4) == 0 ? capacity : 100);
                    const std::size_t n = std::min<std::size_t>(1 + pick(80), buffer.size() / size);
                    for (std::size_t k = 0; k < n; ++k) fill_record(buffer.data() + k * size, size, k);
                    std::size_t written = 0;
                    status = writer->try_write_batch(std::span<const std::byte>(buffer.data(), n * size), size, written);
                } else if (kind == 6 && pick(2) == 0) {
                    std::span<std::byte> room;
                    std::size_t got = 0;
                    status = writer->try_reserve_run(1 + pick(200), 1 + pick(100), room, got);
                    if (status == Status::ok) status = writer->commit_run(pick(got + 1));
                } else if (kind < 6) {
                    std::size_t size = pick(4) == 0 ? pick(2 * capacity) : pick(200);
                    fill_record(buffer.data(), size, i);
                    status = writer->try_write(std::span<const std::byte>(buffer.data(), size));
                } else if (kind == 6) {
                    std::span<std::byte> room;
                    std::size_t size = pick(capacity - 8);
                    status = writer->try_reserve(size, room);
                    if (status == Status::ok) status = writer->commit(pick(size + 1));
                } else if (kind == 7) {
                    status = writer->write_barrier(rng());
                } else if (kind == 8) {
                    status = writer->write_event(static_cast<std::uint16_t>(rng()),
                                                 std::span<const std::byte>(buffer.data(), pick(64)));
                } else {
                    status = writer->flush();
                }
                if (status != Status::ok) return;
            }
        };
        // Some laps written and read cleanly first, so positions and slots wrap.
        const int laps = static_cast<int>(pick(4));
        for (int lap = 0; lap < laps; ++lap) {
            write_mix(static_cast<int>(1 + pick(30)));
            for (int reads = 0; reads < 10000; ++reads) {
                Record record;
                Status status = reader->try_read(record);
                if (status == Status::would_block) break;
                if (status != Status::ok) return "clean lap: " + describe(status) + " " + reader->last_error();
            }
        }
        write_mix(static_cast<int>(1 + pick(40)));
        if (pick(5) == 0 && shmchan::detail::ProducerHooks(writer->producer()).free_segments() > 0 &&
            writer->end_stream() != Status::ok) {
            return "end_stream: " + writer->last_error();
        }
        for (std::uint64_t n = pick(3); n > 0; --n) {  // a reader part way into the data
            Record record;
            if (reader->try_read(record) != Status::ok) break;
        }
        if (pick(2) == 0) writer.reset();

        // Mutations.
        test::MappedFile file(test::path_of(name));
        if (!file.ok()) return "cannot map " + test::path_of(name);
        std::byte* base = reinterpret_cast<std::byte*>(&file.header());
        auto segment_at = [&](std::uint32_t slot) { return base + L::kHeaderBytes + std::uint64_t{slot} * kSmallSegment; };
        auto interesting32 = [&]() -> std::uint32_t {
            switch (pick(10)) {
                case 0: return 0;
                case 1: return capacity;
                case 2: return capacity + 1;
                case 3: return capacity - 8;
                case 4: return 0xFFFFFFFFu;
                case 5: return static_cast<std::uint32_t>(pick(capacity + 16));
                case 6: return static_cast<std::uint32_t>(pick(capacity / 8) * 8);
                case 7: return 0x80000000u;
                default: return static_cast<std::uint32_t>(rng());
            }
        };
        const int mutations = 1 + static_cast<int>(pick(6));
        for (int m = 0; m < mutations; ++m) {
            std::uint32_t slot = static_cast<std::uint32_t>(pick(count));
            std::byte* segment = segment_at(slot);
            std::byte* payload = segment + L::kSegmentHeaderBytes;
            switch (pick(10)) {
                case 0:  // a random byte anywhere in the segments
                    segment[pick(kSmallSegment)] = static_cast<std::byte>(rng());
                    break;
                case 1: {  // a segment header field
                    static constexpr std::size_t fields[] = {0, 4, 8, 12, 24, 28};
                    std::size_t field = fields[pick(6)];
                    std::uint32_t value = interesting32();
                    if (field == 8 && pick(2)) value = static_cast<std::uint32_t>(pick(8));  // flags
                    file.poke32(static_cast<std::size_t>(segment - base) + field, value);
                    break;
                }
                case 2:  // the segment's sequence
                    file.poke64(static_cast<std::size_t>(segment - base) + 16,
                                pick(2) ? file.peek64(static_cast<std::size_t>(segment - base) + 16) + pick(3) - 1 : rng());
                    break;
                case 3:
                case 4: {  // a frame header inside the payload
                    std::size_t at = pick(capacity / 8) * 8;
                    std::uint32_t length = interesting32();
                    if (pick(2)) length = static_cast<std::uint32_t>(pick(3 * capacity));
                    std::uint16_t kind = static_cast<std::uint16_t>(pick(6));
                    std::uint16_t type = static_cast<std::uint16_t>(rng());
                    std::memcpy(payload + at, &length, 4);
                    std::memcpy(payload + at + 4, &kind, 2);
                    std::memcpy(payload + at + 6, &type, 2);
                    if (kind == static_cast<std::uint16_t>(L::FrameKind::record_run) && at + 16 <= capacity && pick(2)) {
                        // Its run header: record size and count, each odd or plausible.
                        const std::uint32_t run[2] = {pick(2) ? interesting32() : static_cast<std::uint32_t>(1 + pick(100)),
                                                      pick(2) ? interesting32() : static_cast<std::uint32_t>(1 + pick(100))};
                        std::memcpy(payload + at + 8, run, sizeof run);
                    }
                    break;
                }
                case 5:  // random payload bytes
                    for (std::uint64_t n = 1 + pick(64); n > 0; --n) payload[pick(capacity)] = static_cast<std::byte>(rng());
                    break;
                case 6: {  // a whole segment of garbage, header included (or with its sequence kept)
                    std::uint64_t sequence = file.peek64(static_cast<std::size_t>(segment - base) + 16);
                    for (std::uint32_t i = 0; i < kSmallSegment; ++i) segment[i] = static_cast<std::byte>(rng());
                    if (pick(2)) {
                        file.poke64(static_cast<std::size_t>(segment - base) + 16, sequence);
                        file.poke32(static_cast<std::size_t>(segment - base) + 0, static_cast<std::uint32_t>(pick(capacity + 1)));
                        file.poke32(static_cast<std::size_t>(segment - base) + 8, static_cast<std::uint32_t>(pick(8)));
                    }
                    break;
                }
                case 7: {  // the consumer's resume point and in-flight size
                    std::size_t line = offsetof(L::ChannelHeader, consumers) + offsetof(L::ConsumerSlot, position);
                    if (pick(2)) file.poke64(line + offsetof(L::ConsumerLine, resume_point), pick(2) ? pick(capacity + 16) : rng());
                    else file.poke64(line + offsetof(L::ConsumerLine, in_flight_record_bytes), pick(2) ? pick(100000) : rng());
                    break;
                }
                case 8: {  // positions and end of stream
                    std::uint64_t published = file.peek64(test::offsets::published);
                    switch (pick(3)) {
                        case 0: file.poke64(test::offsets::published, published + pick(2 * count + 1) - count); break;
                        case 1: file.poke32(test::offsets::end_of_stream, static_cast<std::uint32_t>(pick(3))); break;
                        default: file.poke64(test::offsets::released, file.peek64(test::offsets::released) + pick(3) - 1); break;
                    }
                    break;
                }
                default: {  // the channel header, rarely: any byte of it
                    if (pick(4) == 0) base[pick(L::kHeaderBytes)] = static_cast<std::byte>(rng());
                    break;
                }
            }
        }

        // Read with the existing reader or a fresh one, to the first non-ok status.
        if (pick(2) == 0) {
            reader.reset();
            try {
                reader.emplace(RecordReader::attach(name, options));
            } catch (const shmchan::Error& error) {
                ++stats.attach_refused;
                if (std::string(error.what()).empty()) return "attach refused without a message";
            }
        }
        if (reader) {
            const bool timed = pick(8) == 0;
            Status status = Status::ok;
            std::uint64_t sum = 0;
            int reads = 0;
            const bool runs = pick(3) == 0;
            for (; reads < 100000; ++reads) {
                Record record;
                if (runs) {
                    // read_run: a view of a run's records (an event comes back as Status::event).
                    shmchan::RecordRun run;
                    status = timed ? reader->read_run_for(run, 1 + pick(300), 1ms) : reader->try_read_run(run, 1 + pick(300));
                    if (status == Status::event) status = Status::ok;
                    if (status != Status::ok) break;
                    ++stats.ok_reads;
                    if (run.bytes.size() != run.count * run.record_size) return "a run whose bytes are not count x size";
                    for (std::byte b : run.bytes) sum += static_cast<unsigned>(b);  // touch every byte
                    continue;
                }
                status = timed ? reader->read_for(record, 1ms) : reader->try_read(record);
                if (status != Status::ok) break;
                ++stats.ok_reads;
                if (record.kind != RecordKind::record && record.kind != RecordKind::barrier &&
                    record.kind != RecordKind::user_event) {
                    return "ok with an unknown kind";
                }
                for (std::byte b : record.bytes) sum += static_cast<unsigned>(b);  // touch every byte
            }
            (void)sum;
            if (reads == 100000) return "100000 reads without an end: a loop";
            if (!documented_read_status(status)) return "read returned " + describe(status) + " " + reader->last_error();
            if (status == Status::corrupt) {
                ++stats.corrupt;
                if (reader->last_error().empty()) return "corrupt without last_error()";
            } else if (status == Status::record_lost) {
                ++stats.lost;
            } else if (status == Status::end_of_stream) {
                ++stats.ends;
            } else {
                ++stats.other;
            }
            // Once more after the failure: still no crash, still a documented status.
            Record record;
            Status again = reader->try_read(record);
            if (again != Status::ok && !documented_read_status(again)) {
                return "read after " + describe(status) + " returned " + describe(again);
            }
        }
        reader.reset();
        writer.reset();
    }
    shmchan::remove_channel(name, true);
    return problem;
}

}  // namespace

TEST_SUITE("records") {

TEST_CASE("a reader fed mutated headers, frames and garbage segments never crashes, overruns or loops") {
    std::uint64_t first_seed = 1, cases = test::kSanitized ? 4000 : 20000;
    if (const char* seed = std::getenv("SHMCHAN_RECORDS_FUZZ_SEED")) {  // reproduce one case
        first_seed = std::strtoull(seed, nullptr, 10);
        cases = 1;
    }
    test::SharedBlock<FuzzShared> stats;
    // In a child: a crash or a hang fails this case (with the seed) instead of the runner.
    test::Child child([&] {
        for (std::uint64_t seed = first_seed; seed < first_seed + cases; ++seed) {
            stats->current.store(seed);
            std::string problem = fuzz_case(seed, *stats);
            if (!problem.empty()) {
                std::fprintf(stderr, "fuzz case %llu: %s\n", static_cast<unsigned long long>(seed), problem.c_str());
                return 3;
            }
            stats->cases.fetch_add(1);
        }
        return 0;
    });
    int code = child.exit_code(std::chrono::seconds(400));
    CHECK_MESSAGE(code == 0, "fuzz child exit " << code << " at case seed " << stats->current.load()
                                                << " (-1: hung, <= -100: killed by signal)");
    CHECK(stats->cases.load() == cases);
    MESSAGE("fuzz: " << stats->cases.load() << " cases, " << stats->ok_reads.load() << " ok reads, "
                     << stats->corrupt.load() << " corrupt, " << stats->attach_refused.load() << " attach refused, "
                     << stats->lost.load() << " lost, " << stats->ends.load() << " ends, " << stats->other.load()
                     << " would_block/timed_out/peer_died");
    if (cases >= 100) CHECK(stats->corrupt.load() > cases / 20);  // the mutations did reach the parser
}

}  // TEST_SUITE
