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

#include <concepts>
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
#include "detail/record_cursors.hpp"
#include "layout.hpp"

namespace shmchan {

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

// record_type_name<T>: the record type (ChannelOptions::record_type) that a T is written as.
// Specialize it to tie your type to a name, and change the name when the type's bytes change:
//   template <> struct shmchan::record_type_name<Trade> {
//       static constexpr std::string_view value = "trade.v1";   // 1..47 printable, no space
//   };
// RecordWriter::attach_typed<T> / RecordReader::attach_typed<T> declare it at attach. On a
// channel with a declared type, write_value/write_values of a named T whose name differs return
// invalid_call and read_value/read_values return decode_error, before any byte is written or
// consumed (checked once per handle and type, not per record). A T without a name, or a channel
// without a type, is not checked.
template <class T>
struct record_type_name {};
template <class T>
concept NamedRecordType = requires {
    { record_type_name<T>::value } -> std::convertible_to<std::string_view>;
};
namespace detail {
template <class T>
inline constexpr char type_tag = 0;  // one address per T: the handle's cache of the type it checked
template <class T>
constexpr std::string_view declared_type_name() {
    constexpr std::string_view name = record_type_name<T>::value;
    static_assert(!name.empty() && name.size() <= layout::kMaxRecordTypeLength,
                  "record_type_name<T>::value: 1 to 47 bytes");
    return name;
}
}  // namespace detail

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
    // The same, declaring record_type_name<T>::value as options.record_type.
    template <NamedRecordType T>
    static RecordWriter attach_typed(std::string_view name, ChannelOptions options = {}) {
        options.record_type = std::string(detail::declared_type_name<T>());
        return attach(name, std::move(options));
    }

    RecordWriter(RecordWriter&&) noexcept;
    RecordWriter& operator=(RecordWriter&&) noexcept;
    ~RecordWriter();  // detaches without ending the stream

    // Copying writes. too_large: over the max record size, nothing written. try/for variants
    // wait (or not) only before the first byte: they need every segment the record needs to be
    // free, so a record larger than the ring can only be written by the blocking call.
    Status write(std::span<const std::byte> record);      // inline fast path below
    Status try_write(std::span<const std::byte> record);  // inline fast path below
    Status write_for(std::span<const std::byte> record, std::chrono::nanoseconds timeout);  // inline fast path below
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
        written = 0;
        if (!type_allows<T>()) return Status::invalid_call;
        return write_batch(std::as_bytes(values), sizeof(T), written);
    }

    // Typed writes through Codec<T>: in place when the encoding fits one segment. invalid_call
    // (nothing written; last_error() names both types): T's record_type_name differs from the
    // channel's declared type (see record_type_name). write_values checks the same.
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
    bool write_fast(std::span<const std::byte> record) noexcept;  // the inline path: room in the held segment
    Status write_slow(std::span<const std::byte> record);
    Status try_write_slow(std::span<const std::byte> record);
    Status write_for_slow(std::span<const std::byte> record, std::chrono::nanoseconds timeout);
    Status reserve_slow(std::size_t size, std::span<std::byte>& out);
    Status commit_slow(std::size_t used);
    template <class T>
    bool type_allows();  // T may be written here (record_type_name)
    bool check_type(const void* tag, std::string_view type);  // false: last_error says why
    std::unique_ptr<State> state_;
    detail::WriteCursor* cursor_ = nullptr;  // inside *state_
    const void* checked_type_ = nullptr;     // detail::type_tag of the last named T that passed
};

class RecordReader {
public:
    // Attaches as the consumer of a records channel (created if missing), resuming where the
    // previous consumer left off. Throws Error as Consumer::attach does.
    static RecordReader attach(std::string_view name, ChannelOptions options = {});
    // The same, declaring record_type_name<T>::value as options.record_type.
    template <NamedRecordType T>
    static RecordReader attach_typed(std::string_view name, ChannelOptions options = {}) {
        options.record_type = std::string(detail::declared_type_name<T>());
        return attach(name, std::move(options));
    }

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
    // decode_error before reading anything (last_error() names both types): T's
    // record_type_name differs from the channel's declared type; read_values checks the same.
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
    template <class T>
    bool type_allows();  // T may be read here (record_type_name)
    bool check_type(const void* tag, std::string_view type);  // false: last_error says why
    std::unique_ptr<State> state_;
    detail::ReadCursor* cursor_ = nullptr;  // inside *state_
    const void* checked_type_ = nullptr;     // detail::type_tag of the last named T that passed
};

}  // namespace shmchan

// The inline fast paths and the template definitions (internal).
#include "detail/records_inline.hpp"
