// SPDX-License-Identifier: Apache-2.0
// The inline parts of channels/records.hpp: the fast paths of RecordWriter and RecordReader and
// the template definitions. Internal: records.hpp includes it at its end; never include it by name.
#pragma once

#include <cstring>
#include <span>

#include "../records.hpp"

namespace shmchan {

// ---- The inline fast paths: a frame that fits the held segment (writer) or the committed bytes
// already viewed (reader). Neither makes a call, a syscall or an allocation. ----

inline bool RecordWriter::write_fast(std::span<const std::byte> record) noexcept {
    detail::WriteCursor& c = *cursor_;
    const std::uint64_t end = layout::frame_align(std::uint64_t{c.offset} + layout::kFrameHeaderBytes + record.size());
    if (record.size() < detail::kAlignedRecordMin && record.size() <= c.max_fast_record && end <= c.fast_limit) [[likely]] {
        if (!record.empty()) {
            std::memcpy(c.payload + c.offset + layout::kFrameHeaderBytes, record.data(), record.size());
        }
        c.reserved = false;  // a write drops a pending reservation
        detail::commit_fast_frame(c, record.size(), end);
        return true;
    }
    return false;
}

// The fast path never waits, so the try and timed calls take it as write() does.
inline Status RecordWriter::write(std::span<const std::byte> record) {
    return write_fast(record) ? Status::ok : write_slow(record);
}
inline Status RecordWriter::try_write(std::span<const std::byte> record) {
    return write_fast(record) ? Status::ok : try_write_slow(record);
}
inline Status RecordWriter::write_for(std::span<const std::byte> record, std::chrono::nanoseconds timeout) {
    return write_fast(record) ? Status::ok : write_for_slow(record, timeout);
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
    if (!type_allows<T>()) return Status::decode_error;  // nothing consumed
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

// The type check of the typed calls: a string compare once per handle and named type, then one
// pointer compare per call (the channel's type is fixed for the handle's life).
template <class T>
inline bool RecordWriter::type_allows() {
    if constexpr (NamedRecordType<T>) {
        if (checked_type_ != &detail::type_tag<T>) return check_type(&detail::type_tag<T>, detail::declared_type_name<T>());
    }
    return true;
}
template <class T>
inline bool RecordReader::type_allows() {
    if constexpr (NamedRecordType<T>) {
        if (checked_type_ != &detail::type_tag<T>) return check_type(&detail::type_tag<T>, detail::declared_type_name<T>());
    }
    return true;
}

template <class T>
Status RecordWriter::write_value(const T& value) {
    if (!type_allows<T>()) return Status::invalid_call;
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
    if (!type_allows<T>()) return Status::decode_error;  // nothing consumed
    Record& record = last_slot();
    Status status = read(record);
    if (status != Status::ok) return status;
    if (record.kind != RecordKind::record) return Status::event;
    return Codec<T>::decode(record.bytes, out) ? Status::ok : Status::decode_error;
}

}  // namespace shmchan
