// SPDX-License-Identifier: Apache-2.0
// shmchan records: the per-segment serialization layer (Flink's record serializer and
// deserializer) on top of a channel.
//
//   auto writer = shmchan::RecordWriter::attach("trades");        // producer process
//   writer.write(std::string_view("hello"));                      // copying call
//   std::span<std::byte> room;
//   writer.reserve(sizeof(Trade), room);                          // zero-copy: write in place
//   new (room.data()) Trade{...};
//   writer.commit(sizeof(Trade));
//   writer.write_value(Trade{...});                               // typed, through Codec<Trade>
//   writer.write_values(std::span<const Trade>(trades), written);   // a batch: an array of records
//   writer.reserve_run(sizeof(Trade), 512, room, count);           // a batch in place
//   writer.commit_run(count);
//   writer.write_barrier(42);                                     // in-band events
//   writer.end_stream();
//
//   auto reader = shmchan::RecordReader::attach("trades");        // consumer process
//   shmchan::Record record;
//   while (reader.read(record) == shmchan::Status::ok) {
//       if (record.kind == shmchan::RecordKind::record) use(record.bytes);   // a view: valid
//       else if (record.kind == shmchan::RecordKind::barrier) snapshot(record.checkpoint_id);
//   }                                                             // until the next read
//   reader.read_batch([&](const shmchan::Record& r) { use(r); }, 512, delivered);   // a batch
//   shmchan::RecordRun run;                                       // or a view of many records
//   if (reader.read_run(run, 512) == shmchan::Status::ok) use(run.bytes, run.count);
//
// Framing: channels/layout.hpp (FrameHeader). A record larger than the room left in a segment
// spans segments, up to the channel's max record size (64 MiB by default). A record that lies in
// one segment is read in place; a spanning one is reassembled into a buffer the reader reuses.
//
// Visibility and flushing: every completed record is committed at once (one release store). A
// spinning consumer that caught up re-reads the segment header about every microsecond and sees a
// flush() at once (the flush word, layout.hpp rule 2b). A parked consumer is woken when a segment
// fills, on flush(), or wakes itself after the producer's buffer timeout
// (ChannelOptions::buffer_timeout, 100 ms by default; 0 flushes every record). With checksums
// on, the reader takes only handed-over segments (full, flushed, or timed out at the writer's
// next write), whose CRC-32C it checks.
//
// Restart: a consumer that attaches after another one died resumes at the first record the dead
// one had not finished (a record is finished when the next read() is called), so delivery is
// at-least-once: the record being processed at the death may come twice. For exactly-once, store
// the RecordPosition of each record you finish with your own state and pass the last one to
// skip_through() after attaching. A record larger than the ring whose first segments were
// released when the consumer died is reported as Status::record_lost with its size. A producer
// that attaches after another died continues after the last record that one completed; a record
// it had half written is never delivered. For exactly-once, number the records and resume at
// completed_records().
//
// Not thread-safe; the hot path makes no syscall and no allocation (a spanning record larger
// than any before it grows the reassembly buffer once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "channel.hpp"
#include "detail/frame_decoder.hpp"
#include "layout.hpp"

namespace shmchan {

namespace detail {
// The inline fast paths of RecordWriter and RecordReader work on these; the rest of each side's
// state lives in records.cpp. A fast path runs only while `fast_limit` is non-zero, which the
// slow path sets when nothing unusual is pending (no checksum, no flush per record, no spanning
// record, no restart bookkeeping, not ended): see arm_fast_path() in records.cpp.
struct WriteCursor {
    std::byte* payload = nullptr;                    // the held segment's payload
    layout::SharedU32* committed_bytes = nullptr;    // its header's count (rule 2)
    std::uint32_t offset = 0;        // where the next frame starts
    std::uint32_t fast_frames = 0;   // records appended here since the slow path last counted
    std::uint32_t fast_limit = 0;    // a fast frame must end by here (capacity - 8); 0: slow path
    std::uint32_t reserved_size = 0;
    std::uint64_t max_fast_record = 0;  // min(max record, segment capacity)
    bool reserved = false;
};
struct ReadCursor {
    const std::byte* payload = nullptr;  // the viewed segment's payload
    std::uint64_t position = 0;          // the segment being parsed
    std::uint32_t offset = 0;            // where its next frame starts
    std::uint32_t fast_limit = 0;        // committed bytes of the view; 0: slow path
    std::uint64_t max_record = 0;
    layout::SharedU64* resume_point = nullptr;  // consumer line: where a restarted consumer resumes
    ReadProgress progress;               // consumed since the last release (counters)
    bool in_batch = false;               // inside a read_batch handler: other reads are refused
    std::uint32_t run_end = 0;           // inside a record_run frame: where its records end
    std::uint32_t run_size = 0;          // ... and the size of each (checked at the run's header)
};
// Both reader fast paths (read_fast, read_batch) take a frame only when it passes the frame
// decoder's common-case check, record_frame_fits (detail/frame_decoder.hpp); anything else goes to
// the slow path, which decodes it.
// A reader's step inside a run frame: the cursor moves to `next`, a record boundary of the run
// that ends at `run_end`; at the run's end it goes past the frame (layout::past_run, within the
// `viewed` bytes) and leaves the run (run_end 0). The one step of read_fast, read_run_fast,
// take_run and the slow path.
inline void step_in_run(std::uint32_t& offset, std::uint32_t& run_end, std::uint64_t next, std::uint64_t viewed) noexcept {
    if (next >= run_end) {
        next = layout::past_run(run_end, viewed);
        run_end = 0;
    }
    offset = static_cast<std::uint32_t>(next);
}
// From this size on, write() and write_batch() put a record that goes alone into a run frame of
// one (layout.hpp: record_run), so that its bytes start on a cache line: a long copy to an
// aligned destination writes whole lines (an unaligned one was ~12 % slower even within one
// core's L2, measured); the run's padding, at most 56 bytes, is under 6 % of such a record.
inline constexpr std::size_t kAlignedRecordMin = 1024;
// The end of both writer fast paths: the frame header of a record of `length` payload bytes
// (already in place) at the cursor, then one release store of committed_bytes, which publishes
// the frame to a partial reader (rule 2). The header's record_count is brought up to date by
// the next slow commit, flush or publish (fast_frames).
inline void commit_fast_frame(WriteCursor& c, std::size_t length, std::uint64_t end) noexcept {
    const layout::FrameHeader header{static_cast<std::uint32_t>(length),
                                     static_cast<std::uint16_t>(layout::FrameKind::record), 0};
    std::memcpy(c.payload + c.offset, &header, sizeof header);
    c.offset = static_cast<std::uint32_t>(end);
    ++c.fast_frames;
    layout::store_release(*c.committed_bytes, c.offset);
}
}  // namespace detail

// Codec<T>: how a T becomes record bytes. Specialize it for your type:
//   template <> struct shmchan::Codec<Point> {
//       static std::size_t size(const Point&);
//       static void encode(const Point&, std::span<std::byte> out);   // out.size() == size()
//       static bool decode(std::span<const std::byte> in, Point& out);   // false: not a Point
//   };
// Built in: trivially copyable types (bytes as in memory; decode checks the size), std::string,
// std::string_view (decoded as a view into the record: valid until the next read).
template <class T, class Enable = void>
struct Codec;

template <class T>
inline constexpr bool kIsByteView = std::is_same_v<T, std::string_view> || std::is_pointer_v<T> ||
                                    std::is_same_v<T, std::span<const std::byte>> ||
                                    std::is_same_v<T, std::span<std::byte>>;

template <class T>
struct Codec<T, std::enable_if_t<std::is_trivially_copyable_v<T> && !kIsByteView<T>>> {
    static std::size_t size(const T&) noexcept { return sizeof(T); }
    static void encode(const T& value, std::span<std::byte> out) noexcept { std::memcpy(out.data(), &value, sizeof(T)); }
    static bool decode(std::span<const std::byte> in, T& out) noexcept {
        if (in.size() != sizeof(T)) return false;
        std::memcpy(&out, in.data(), sizeof(T));
        return true;
    }
};

template <>
struct Codec<std::string_view> {
    static std::size_t size(std::string_view value) noexcept { return value.size(); }
    static void encode(std::string_view value, std::span<std::byte> out) noexcept {
        if (!value.empty()) std::memcpy(out.data(), value.data(), value.size());
    }
    static bool decode(std::span<const std::byte> in, std::string_view& out) noexcept {
        out = std::string_view(reinterpret_cast<const char*>(in.data()), in.size());
        return true;
    }
};

template <>
struct Codec<std::string> {
    static std::size_t size(const std::string& value) noexcept { return value.size(); }
    static void encode(const std::string& value, std::span<std::byte> out) noexcept {
        if (!value.empty()) std::memcpy(out.data(), value.data(), value.size());
    }
    static bool decode(std::span<const std::byte> in, std::string& out) {
        out.assign(reinterpret_cast<const char*>(in.data()), in.size());
        return true;
    }
};

enum class RecordKind : std::uint8_t {
    record,      // user data: `bytes`
    barrier,     // checkpoint barrier: `checkpoint_id`
    user_event,  // `event_type` and `bytes`
    in_flight_end,  // input gates, unaligned checkpoints: every record in flight for checkpoint
                    // `checkpoint_id` has been delivered (flagged with in_flight_of)
};

// Where a frame starts in the stream: the segment's position and the offset in its payload.
// Positions only grow within a channel's life.
struct RecordPosition {
    std::uint64_t segment = 0;
    std::uint64_t offset = 0;
    friend bool operator==(const RecordPosition&, const RecordPosition&) = default;
    friend auto operator<=>(const RecordPosition&, const RecordPosition&) = default;
};

struct Record {
    RecordKind kind = RecordKind::record;
    std::span<const std::byte> bytes;  // valid until the next read; untrusted producer bytes
    std::uint64_t checkpoint_id = 0;
    std::uint16_t event_type = 0;
    RecordPosition position;
    std::uint64_t lost_bytes = 0;  // Status::record_lost: size of the record that was lost
    // Input gates, unaligned checkpoints: non-zero when this record was in flight (queued ahead of
    // the barrier on its channel) when checkpoint `in_flight_of` was taken: persist it with
    // that checkpoint's state.
    std::uint64_t in_flight_of = 0;
    std::string_view text() const noexcept {
        return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
    }
};

// Records of one size side by side in memory: what read_run() hands over (the records one
// write_batch() call put into one segment, or a single record).
struct RecordRun {
    std::span<const std::byte> bytes;  // count * record_size bytes; valid until the next read;
                                       // untrusted producer bytes
    std::size_t record_size = 0;
    std::size_t count = 0;
    RecordPosition position;  // of the first record (a record of a run frame: where its bytes start)
    std::span<const std::byte> record(std::size_t i) const noexcept { return bytes.subspan(i * record_size, record_size); }
};

class RecordWriter {
public:
    // Attaches as the producer of a records channel (created if missing). options.framing is
    // forced to records. Throws Error as Producer::attach does.
    static RecordWriter attach(std::string_view name, ChannelOptions options = {});

    RecordWriter(RecordWriter&&) noexcept;
    RecordWriter& operator=(RecordWriter&&) noexcept;
    ~RecordWriter();  // detaches without ending the stream

    // Copying writes. too_large: over the max record size, nothing written. try/for variants
    // wait (or not) only before the first byte: they need every segment the record needs to be
    // free, so a record larger than the ring can only be written by the blocking call.
    Status write(std::span<const std::byte> record);  // inline fast path below
    Status try_write(std::span<const std::byte> record);
    Status write_for(std::span<const std::byte> record, std::chrono::nanoseconds timeout);
    Status write(std::string_view text) { return write(std::as_bytes(std::span(text.data(), text.size()))); }

    // Zero-copy: `out` gets `size` writable bytes inside a segment (size <= max_inline_record());
    // commit(used) frames the first `used` of them as one record. Nothing is visible before
    // commit; a second reserve (or a write, an event) before commit drops the first. From
    // detail::kAlignedRecordMin bytes on, `out` starts on a cache line where that fits a segment
    // (a run of one, as write() places such a record).
    Status reserve(std::size_t size, std::span<std::byte>& out);  // inline fast path below
    Status try_reserve(std::size_t size, std::span<std::byte>& out);
    Status reserve_for(std::size_t size, std::span<std::byte>& out, std::chrono::nanoseconds timeout);
    Status commit(std::size_t used);

    // Zero-copy batches: `out` gets room for `count` records of `record_size` bytes side by side
    // in a segment (1 <= count <= max_records: as many as fit the held segment, or a fresh one
    // when not even one does), to fill in place; commit_run(used) frames the first `used` of
    // them (<= count; 0 drops the reservation) as one run frame (layout.hpp: record_run), which
    // a reader takes whole with read_run(). Nothing is visible before commit_run; a write, an
    // event, a reserve() or a flush() that hands the segment over (with checksums) in between
    // drops the reservation (commit_run: invalid_call).
    // too_large: a record that does not fit a run frame in one segment (use reserve/write).
    Status reserve_run(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out, std::size_t& count);
    Status try_reserve_run(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out, std::size_t& count);
    Status reserve_run_for(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out, std::size_t& count,
                           std::chrono::nanoseconds timeout);
    Status commit_run(std::size_t used);

    // Batches: the records of `records`, each `record_size` bytes, packed back to back (an array
    // of fixed-size records), in order: the records that fit the held segment go into it as one
    // run frame (one header, one copy, one release store; layout.hpp: record_run), a reader
    // gets them one by one (read) or as one view (read_run); with checksums or a zero buffer
    // timeout, and for a record alone, one frame per record as write(). `written` tells how many went
    // in: all of them when the blocking call returns ok; the try and timed calls stop with
    // would_block / timed_out where they would have had to wait (a record is never half
    // written). invalid_call: record_size is 0 or does not divide records.size(); too_large: a
    // record over the max record size (nothing written).
    Status write_batch(std::span<const std::byte> records, std::size_t record_size, std::size_t& written);
    Status try_write_batch(std::span<const std::byte> records, std::size_t record_size, std::size_t& written);
    Status write_batch_for(std::span<const std::byte> records, std::size_t record_size, std::size_t& written,
                           std::chrono::nanoseconds timeout);
    // Typed: each value of a trivially copyable T is one record (its bytes, as write_value does).
    template <class T>
    Status write_values(std::span<const T> values, std::size_t& written) {
        static_assert(std::is_trivially_copyable_v<T> && !kIsByteView<T>, "write_values: a trivially copyable T");
        return write_batch(std::as_bytes(values), sizeof(T), written);
    }

    // Typed writes through Codec<T>: in place when the encoding fits one segment.
    template <class T>
    Status write_value(const T& value);

    // Events, in order with the records. A priority barrier is also published in the channel's
    // priority lane first, so that an input gate in unaligned mode sees it at once, ahead of the
    // data queued in the ring (the in-band copy, written after, may wait for room).
    Status write_barrier(std::uint64_t checkpoint_id, bool priority = false);
    Status write_event(std::uint16_t event_type, std::span<const std::byte> payload);  // <= 1 KiB

    // Wakes a parked consumer now (and, with checksums, hands over the partly filled segment).
    Status flush();
    // Writes the end-of-stream event, hands everything over and ends the channel's stream.
    Status end_stream();
    // The same, waiting at most `timeout` for room for the end event (timed_out: not ended).
    Status end_stream_for(std::chrono::nanoseconds timeout);

    // Exactly-once after a restart: the records of the stream completed so far (last byte
    // committed), counting the previous producers' and ours; a record of a run and a record that
    // spans segments count one each, events none. A writer that replaces a dead one and numbers
    // its records resumes at number completed_records(): the dead one's record in flight was
    // delivered if and only if it is counted. Exact across a kill at any moment (attach throws
    // Error corrupt if the counts in the channel's segment headers are damaged).
    std::uint64_t completed_records() const noexcept;

    std::size_t max_inline_record() const noexcept;  // largest record that fits one segment
    std::uint64_t max_record_bytes() const noexcept;
    Producer& producer() noexcept;
    const std::string& last_error() const noexcept;

private:
    struct State;
    explicit RecordWriter(std::unique_ptr<State> state);
    static std::uint64_t count_resumed_records(State& state);
    std::vector<std::byte>& scratch();
    Status write_slow(std::span<const std::byte> record);
    Status reserve_slow(std::size_t size, std::span<std::byte>& out);
    Status commit_slow(std::size_t used);
    std::unique_ptr<State> state_;
    detail::WriteCursor* cursor_ = nullptr;  // inside *state_
};

class RecordReader {
public:
    // Attaches as the consumer of a records channel (created if missing), resuming where the
    // previous consumer left off. Throws Error as Consumer::attach does.
    static RecordReader attach(std::string_view name, ChannelOptions options = {});

    RecordReader(RecordReader&&) noexcept;
    RecordReader& operator=(RecordReader&&) noexcept;
    ~RecordReader();

    // The next record or event. ok; end_of_stream (after the end event, and from then on);
    // record_lost (see the file comment); would_block / timed_out; peer_died; corrupt (a bad
    // frame or segment: last_error() names the channel, the segment and the cause).
    Status read(Record& out);      // inline fast path below
    Status try_read(Record& out);  // inline fast path below
    Status read_for(Record& out, std::chrono::nanoseconds timeout);

    // Batches: waits as read() does (try_: not at all; _for: at most `timeout`) for the next
    // record or event and calls handler(const Record&) with it, then with the further records it
    // can take without waiting or looking again (in the committed bytes it has seen), up to
    // `limit` in all (at least 1); an event after the first is left for the next call. ok: `delivered` records and events were handed over;
    // otherwise a status of read() and none (record_lost: last() holds the lost record's size
    // and position). Each Record and its bytes are valid during its call only. Inside the
    // handler this reader refuses reads (invalid_call) and skip_through. A consumer that dies in
    // a handler is followed by one that resumes at the record being handled (at-least-once, as
    // read()); a handler that throws leaves the reader after the record it was given.
    template <class Handler>
    [[gnu::always_inline]] Status read_batch(Handler&& handler, std::size_t limit, std::size_t& delivered) {
        Record record;
        return deliver_batch(read(record), record, handler, limit, delivered);
    }
    template <class Handler>
    Status try_read_batch(Handler&& handler, std::size_t limit, std::size_t& delivered) {
        Record record;
        return deliver_batch(try_read(record), record, handler, limit, delivered);
    }
    template <class Handler>
    Status read_batch_for(Handler&& handler, std::size_t limit, std::size_t& delivered,
                          std::chrono::nanoseconds timeout) {
        Record record;
        return deliver_batch(read_for(record, timeout), record, handler, limit, delivered);
    }

    // Runs: waits as read() does (try_: not at all; _for: at most `timeout`) for the next record
    // or event. A record: ok, and `out` views it and up to `limit` - 1 records after it that
    // lie beside it, of its size (the records of one write_batch() call in one segment; a record
    // written alone is a run of one): no copy, one call for the lot. An event: Status::event, it
    // is consumed and last() holds it. Otherwise the statuses of read() (record_lost: see last()).
    // The run is finished at the next read: a consumer that dies before resumes at its first
    // record (at-least-once, as read()). A limit of 0 is taken as 1.
    Status read_run(RecordRun& out, std::size_t limit);
    Status try_read_run(RecordRun& out, std::size_t limit);
    Status read_run_for(RecordRun& out, std::size_t limit, std::chrono::nanoseconds timeout);
    // Copying: up to values.size() records of a trivially copyable T (one run) copied into
    // `values`; `got` says how many (0 unless ok). decode_error: the next records are not of
    // sizeof(T) bytes (they are consumed; last() holds the first). Other statuses: read_run().
    template <class T>
    Status read_values(std::span<T> values, std::size_t& got);

    // Typed read through Codec<T>: ok (decoded), event (the frame was an event: see last()),
    // decode_error (the record is not a T; it is consumed), or the statuses of read().
    template <class T>
    Status read_value(T& out);
    const Record& last() const noexcept;  // what read_value() read last; a record_lost report

    // Exactly-once after a restart: records and events at or before `position` are skipped.
    void skip_through(RecordPosition position);

    // Removes the channel's file (after end of stream).
    void remove_channel();
    Consumer& consumer() noexcept;
    const std::string& last_error() const noexcept;

private:
    struct State;
    explicit RecordReader(std::unique_ptr<State> state);
    bool read_fast(Record& out);  // the inline path: a record frame in the committed bytes viewed
    template <class Handler>
    [[gnu::always_inline]] inline Status deliver_batch(Status first, Record& record, Handler& handler, std::size_t limit,
                                                       std::size_t& delivered);
    template <class Handler>
    [[gnu::always_inline]] inline void deliver_more(Record& record, Handler& handler, std::size_t limit,
                                                    std::size_t& delivered, std::uint64_t& given_end,
                                                    std::uint64_t& given_records, std::uint64_t& given_bytes,
                                                    std::uint32_t& given_run_end, std::uint64_t fast_limit);
    bool read_run_fast(RecordRun& out, std::size_t limit);  // the inline path: a run frame in the view
    Status take_run(Status first, const Record& record, RecordRun& out, std::size_t limit);
    Status read_slow(Record& out);
    Status try_read_slow(Record& out);
    Record& last_slot() noexcept;
    std::unique_ptr<State> state_;
    detail::ReadCursor* cursor_ = nullptr;  // inside *state_
};

// ---- The inline fast paths: a frame that fits the held segment (writer) or the committed bytes
// already viewed (reader). Neither makes a call, a syscall or an allocation. ----

inline Status RecordWriter::write(std::span<const std::byte> record) {
    detail::WriteCursor& c = *cursor_;
    const std::uint64_t end = layout::frame_align(std::uint64_t{c.offset} + layout::kFrameHeaderBytes + record.size());
    if (record.size() < detail::kAlignedRecordMin && record.size() <= c.max_fast_record && end <= c.fast_limit) [[likely]] {
        if (!record.empty()) {
            std::memcpy(c.payload + c.offset + layout::kFrameHeaderBytes, record.data(), record.size());
        }
        c.reserved = false;  // a write drops a pending reservation
        detail::commit_fast_frame(c, record.size(), end);
        return Status::ok;
    }
    return write_slow(record);
}

inline Status RecordWriter::reserve(std::size_t size, std::span<std::byte>& out) {
    detail::WriteCursor& c = *cursor_;
    const std::uint64_t end = layout::frame_align(std::uint64_t{c.offset} + layout::kFrameHeaderBytes + size);
    if (size < detail::kAlignedRecordMin && size <= c.max_fast_record && end <= c.fast_limit) [[likely]] {
        out = std::span<std::byte>(c.payload + c.offset + layout::kFrameHeaderBytes, size);
        c.reserved = true;
        c.reserved_size = static_cast<std::uint32_t>(size);
        return Status::ok;
    }
    return reserve_slow(size, out);
}

inline Status RecordWriter::commit(std::size_t used) {
    detail::WriteCursor& c = *cursor_;
    const std::uint64_t end = layout::frame_align(std::uint64_t{c.offset} + layout::kFrameHeaderBytes + used);
    if (c.reserved && used <= c.reserved_size && end <= c.fast_limit) [[likely]] {
        c.reserved = false;
        detail::commit_fast_frame(c, used, end);
        return Status::ok;
    }
    return commit_slow(used);
}

inline Status RecordReader::read(Record& out) { return read_fast(out) ? Status::ok : read_slow(out); }
inline Status RecordReader::try_read(Record& out) { return read_fast(out) ? Status::ok : try_read_slow(out); }

inline bool RecordReader::read_fast(Record& out) {
    detail::ReadCursor& c = *cursor_;
    if (c.run_end > c.offset && c.fast_limit >= c.run_end) {
        // The next record of a run frame, whose header the slow path checked against the view.
        const std::uint32_t at = c.offset;
        layout::store_relaxed(*c.resume_point, layout::make_tagged_word(c.position, at));
        out.kind = RecordKind::record;
        out.bytes = std::span<const std::byte>(c.payload + at, c.run_size);
        out.checkpoint_id = 0;
        out.event_type = 0;
        out.position = RecordPosition{c.position, at};
        out.lost_bytes = 0;
        out.in_flight_of = 0;
        detail::step_in_run(c.offset, c.run_end, std::uint64_t{at} + c.run_size, c.fast_limit);
        ++c.progress.records;
        c.progress.bytes += c.run_size;
        return true;
    }
    if (c.fast_limit > c.offset && c.fast_limit - c.offset >= layout::kFrameHeaderBytes) [[likely]] {
        layout::FrameHeader header;
        std::memcpy(&header, c.payload + c.offset, sizeof header);  // once; use the local
        const std::uint64_t room = c.fast_limit - c.offset - layout::kFrameHeaderBytes;
        if (detail::record_frame_fits(header, room, c.max_record)) [[likely]] {
            // The previous record is finished: a restarted consumer resumes at this frame.
            // Relaxed: read only by the next consumer of this slot, after our lock is gone.
            layout::store_relaxed(*c.resume_point, layout::make_tagged_word(c.position, c.offset));
            out.kind = RecordKind::record;
            out.bytes = std::span<const std::byte>(c.payload + c.offset + layout::kFrameHeaderBytes, header.length);
            out.checkpoint_id = 0;
            out.event_type = 0;
            out.position = RecordPosition{c.position, c.offset};
            out.lost_bytes = 0;
            out.in_flight_of = 0;
            const std::uint64_t end = layout::frame_align(std::uint64_t{c.offset} + layout::kFrameHeaderBytes + header.length);
            c.offset = static_cast<std::uint32_t>(end < c.fast_limit ? end : c.fast_limit);
            ++c.progress.records;
            c.progress.bytes += header.length;
            return true;
        }
    }
    return false;
}

inline Status RecordReader::read_run(RecordRun& out, std::size_t limit) {
    if (read_run_fast(out, limit)) return Status::ok;
    Record record;
    return take_run(read(record), record, out, limit);
}
inline Status RecordReader::try_read_run(RecordRun& out, std::size_t limit) {
    if (read_run_fast(out, limit)) return Status::ok;
    Record record;
    return take_run(try_read(record), record, out, limit);
}

// The inline path of read_run: a whole run frame at the cursor, inside the committed bytes
// viewed (fast_limit), its headers read once into locals and checked as the slow path checks
// them. A restarted consumer resumes at the frame (its first record).
inline bool RecordReader::read_run_fast(RecordRun& out, std::size_t limit) {
    detail::ReadCursor& c = *cursor_;
    if (c.run_end != 0 || c.fast_limit <= c.offset || c.fast_limit - c.offset < layout::kFrameHeaderBytes) return false;
    layout::FrameHeader header;
    std::memcpy(&header, c.payload + c.offset, sizeof header);  // once; use the local
    if (header.kind != static_cast<std::uint16_t>(layout::FrameKind::record_run)) return false;
    layout::RunExtent run;
    const std::uint64_t room = c.fast_limit - c.offset - layout::kFrameHeaderBytes;
    if (!layout::decode_run(c.payload, c.offset, header.length, room, c.max_record, run)) return false;  // read() reports it
    // Relaxed: read only by the next consumer of this slot, after our lock is gone.
    layout::store_relaxed(*c.resume_point, layout::make_tagged_word(c.position, c.offset));
    const std::uint32_t size = run.header.record_size;
    const std::uint64_t count = std::min<std::uint64_t>(run.header.count, limit > 1 ? limit : 1);
    const std::uint64_t bytes = count * size;
    out.bytes = std::span<const std::byte>(c.payload + run.data, bytes);
    out.record_size = size;
    out.count = count;
    out.position = RecordPosition{c.position, run.data};
    c.run_end = static_cast<std::uint32_t>(run.end);  // records left: read() or take_run go on
    c.run_size = size;
    detail::step_in_run(c.offset, c.run_end, run.data + bytes, c.fast_limit);
    c.progress.records += count;
    c.progress.bytes += bytes;
    return true;
}
inline Status RecordReader::read_run_for(RecordRun& out, std::size_t limit, std::chrono::nanoseconds timeout) {
    if (read_run_fast(out, limit)) return Status::ok;
    Record record;
    return take_run(read_for(record, timeout), record, out, limit);
}

// The first record came through read(), which stored the resume point at it. If it was a record
// of a run frame and the cursor stands at the next record of that run, checked against this view
// (run_end <= fast_limit), the run's further records are taken with it: the cursor moves past
// them at once, without a store of the resume point per record.
inline Status RecordReader::take_run(Status first, const Record& record, RecordRun& out, std::size_t limit) {
    out = RecordRun{};
    if (first != Status::ok) {
        if (first == Status::record_lost) last_slot() = record;
        return first;
    }
    if (record.kind != RecordKind::record) {
        last_slot() = record;
        return Status::event;
    }
    detail::ReadCursor& c = *cursor_;
    const std::size_t size = record.bytes.size();
    std::size_t count = 1;
    if (limit > 1 && c.run_end > c.offset && c.fast_limit >= c.run_end && size == c.run_size &&
        record.bytes.data() + size == c.payload + c.offset) {
        count += std::min<std::size_t>(limit - 1, (c.run_end - c.offset) / size);
        const std::uint64_t taken = std::uint64_t{count - 1} * size;
        detail::step_in_run(c.offset, c.run_end, c.offset + taken, c.fast_limit);
        c.progress.records += count - 1;
        c.progress.bytes += taken;
    }
    out.bytes = std::span<const std::byte>(record.bytes.data(), count * size);
    out.record_size = size;
    out.count = count;
    out.position = record.position;
    return Status::ok;
}

template <class T>
Status RecordReader::read_values(std::span<T> values, std::size_t& got) {
    static_assert(std::is_trivially_copyable_v<T> && !kIsByteView<T>, "read_values: a trivially copyable T");
    got = 0;
    if (values.empty()) return Status::invalid_call;
    RecordRun run;
    const Status status = read_run(run, values.size());
    if (status != Status::ok) return status;
    if (run.record_size != sizeof(T)) {
        Record& first = last_slot();
        first = Record{};
        first.bytes = run.record(0);
        first.position = run.position;
        return Status::decode_error;
    }
    std::memcpy(values.data(), run.bytes.data(), run.bytes.size());
    got = run.count;
    return Status::ok;
}

// The first record or event came through read(); the rest are the record frames of the view,
// checked as read_fast() checks them. The cursor lives in locals across the handler calls (which
// may write any memory) and is stored back once, by `given`, when this returns or a handler
// throws; meanwhile the cursor's fast path is off and in_batch refuses the slow path, so that a
// handler cannot read through a stale cursor. Frames of one length (the common case) go through
// an inner loop that steps by a fixed stride and only compares each header with the first: the
// next frame's address does not wait for this frame's header load.
template <class Handler>
Status RecordReader::deliver_batch(Status first, Record& record, Handler& handler, std::size_t limit,
                                   std::size_t& delivered) {
    delivered = 0;
    if (first != Status::ok) {
        if (first == Status::record_lost) last_slot() = record;
        return first;
    }
    detail::ReadCursor& c = *cursor_;
    const std::uint32_t fast_limit = c.fast_limit;
    // What the handlers were given so far (the record a throwing handler was given counts as
    // read), kept in locals (registers) and put back into the cursor on the way out, with the
    // cursor's own state.
    std::uint64_t given_end = c.offset, given_records = c.progress.records, given_bytes = c.progress.bytes;
    std::uint32_t given_run_end = c.run_end;
    auto put_back = [&] {
        c.offset = static_cast<std::uint32_t>(given_end);
        c.progress.records = given_records;
        c.progress.bytes = given_bytes;
        c.fast_limit = fast_limit;
        c.run_end = given_run_end > given_end ? given_run_end : 0;  // a run handed out whole is done
        c.in_batch = false;
    };
    c.fast_limit = 0;
    c.in_batch = true;
    try {
        handler(static_cast<const Record&>(record));
        delivered = 1;
        if (fast_limit != 0 && delivered < limit) deliver_more(record, handler, limit, delivered, given_end, given_records,
                                                                 given_bytes, given_run_end, fast_limit);
    } catch (...) {
        put_back();
        throw;
    }
    put_back();
    return Status::ok;
}

template <class Handler>
void RecordReader::deliver_more(Record& record, Handler& handler, std::size_t limit, std::size_t& delivered,
                                std::uint64_t& given_end, std::uint64_t& given_records, std::uint64_t& given_bytes,
                                std::uint32_t& given_run_end, const std::uint64_t fast_limit) {
    const detail::ReadCursor& c = *cursor_;
    const std::byte* const payload = c.payload;
    const std::uint64_t position = c.position;
    const std::uint64_t max_record = c.max_record;
    layout::SharedU64* const resume_point = c.resume_point;
    std::uint64_t offset = given_end;
    record = Record{};
    // The record at `at` (a frame's start, or a record's start in a run), its bytes at `data`;
    // the cursor goes to `end` after it.
    auto deliver = [&](std::uint64_t at, std::uint64_t data, std::uint32_t length, std::uint64_t end) {
        // As read_fast(): the previous record is finished; a restarted consumer resumes here.
        layout::store_relaxed(*resume_point, layout::make_tagged_word(position, at));
        record.bytes = std::span<const std::byte>(payload + data, length);
        record.position = RecordPosition{position, at};
        given_end = end;
        ++given_records;
        given_bytes += length;
        handler(static_cast<const Record&>(record));
        ++delivered;
    };
    std::uint64_t run_end = given_run_end;  // a run begun by read(), checked against this view
    std::uint32_t run_size = c.run_size;
    if (run_end > fast_limit) return;
    while (delivered < limit) {
        if (run_end > offset) {
            // The records of a run: a store of the resume point and the handler per record.
            const std::uint64_t frame_end = layout::past_run(run_end, fast_limit);
            given_run_end = static_cast<std::uint32_t>(run_end);
            while (delivered < limit && offset < run_end) {
                const std::uint64_t next = offset + run_size;
                deliver(offset, offset, run_size, next < run_end ? next : frame_end);
                offset = next;
            }
            if (offset >= run_end) {
                offset = frame_end;
                given_run_end = 0;
                run_end = 0;
            }
            continue;
        }
        if (offset >= fast_limit || fast_limit - offset < layout::kFrameHeaderBytes) break;
        std::uint64_t word;
        std::memcpy(&word, payload + offset, sizeof word);  // the frame header, once; use the local
        layout::FrameHeader header;
        std::memcpy(&header, &word, sizeof header);
        const std::uint64_t room = fast_limit - offset - layout::kFrameHeaderBytes;
        if (header.kind == static_cast<std::uint16_t>(layout::FrameKind::record_run)) {
            layout::RunExtent run;
            if (!layout::decode_run(payload, offset, header.length, room, max_record, run)) break;  // read() reports it
            run_size = run.header.record_size;
            cursor_->run_size = run_size;
            offset = run.data;
            run_end = run.end;
            continue;
        }
        if (!detail::record_frame_fits(header, room, max_record)) {
            break;  // an event or anything odd: the next read() takes it
        }
        const std::uint64_t stride = layout::frame_align(std::uint64_t{layout::kFrameHeaderBytes} + header.length);
        const std::uint64_t end = std::min(offset + stride, fast_limit);
        deliver(offset, offset + layout::kFrameHeaderBytes, header.length, end);
        offset = end;
        // Frames whose header equals this one (same length, a record) that end inside the view.
        while (delivered < limit && fast_limit - offset >= stride) {
            std::uint64_t next;
            std::memcpy(&next, payload + offset, sizeof next);
            if (next != word) break;
            deliver(offset, offset + layout::kFrameHeaderBytes, header.length, offset + stride);
            offset += stride;
        }
    }
}

template <class T>
Status RecordWriter::write_value(const T& value) {
    const std::size_t size = Codec<T>::size(value);
    if (size <= max_inline_record()) {
        std::span<std::byte> room;
        Status status = reserve(size, room);
        if (status != Status::ok) return status;
        Codec<T>::encode(value, room.first(size));
        return commit(size);
    }
    if (size > max_record_bytes()) return Status::too_large;
    std::vector<std::byte>& buffer = scratch();
    buffer.resize(size);  // grows once to the largest value written; reused after
    Codec<T>::encode(value, std::span<std::byte>(buffer.data(), size));
    return write(std::span<const std::byte>(buffer.data(), size));
}

template <class T>
Status RecordReader::read_value(T& out) {
    Record& record = last_slot();
    Status status = read(record);
    if (status != Status::ok) return status;
    if (record.kind != RecordKind::record) return Status::event;
    return Codec<T>::decode(record.bytes, out) ? Status::ok : Status::decode_error;
}

}  // namespace shmchan
