// SPDX-License-Identifier: Apache-2.0
// The records layer: framing records and events into segments, and reading them back.
//
// Shared-memory protocol: the channel's rules (channels/layout.hpp) plus the framing declared
// there (FrameHeader). The writer commits each complete frame with one release store of the
// segment's committed_bytes (Producer::commit); the reader parses only committed bytes, copies
// each frame header into a local once, checks it, and uses only the local.
#include "channels/records.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "channels/crc32c.hpp"
#include "channels/detail/hooks.hpp"
#include "shm/process.hpp"

namespace shmchan {

namespace L = layout;

namespace {

enum class Mode { try_once, timed, blocking };


struct Deadline {
    Mode mode = Mode::blocking;
    std::uint64_t at_ns = 0;
    static Deadline make(Mode mode, std::chrono::nanoseconds timeout) {
        Deadline deadline{mode, 0};
        if (mode == Mode::timed) deadline.at_ns = shm::monotonic_ns() + static_cast<std::uint64_t>(std::max<std::int64_t>(0, timeout.count()));
        return deadline;
    }
    // The timeout to pass to a core wait: negative = none.
    std::chrono::nanoseconds remaining() const {
        if (mode == Mode::blocking) return std::chrono::nanoseconds(-1);
        if (mode == Mode::try_once) return std::chrono::nanoseconds(0);
        std::uint64_t now = shm::monotonic_ns();
        return std::chrono::nanoseconds(now >= at_ns ? 0 : static_cast<std::int64_t>(at_ns - now));
    }
};

// A named type T (record_type_name) against the channel's declared type: a channel without one
// takes any T. On a match the handle caches T's tag (`checked`) and checks it no more.
template <class Side>
bool check_record_type(const Side& side, std::string& last_error, const void* tag, std::string_view type,
                       const void*& checked) {
    const std::string& declared = side.record_type();
    if (declared.empty() || declared == type) {
        checked = tag;
        return true;
    }
    last_error = "channel '" + side.name() + "' carries records of type '" + declared + "', not '" +
                 std::string(type) + "' (record_type_name of the value's type)";
    return false;
}

L::FrameHeader frame_header(std::uint32_t length, L::FrameKind kind, std::uint16_t event_type) {
    L::FrameHeader header{};
    header.length = length;
    header.kind = static_cast<std::uint16_t>(kind);
    header.event_type = event_type;
    return header;
}

}  // namespace

// ---- Writer --------------------------------------------------------------------------------------

struct RecordWriter::State {
    detail::ProducerHooks hooks() noexcept { return detail::ProducerHooks(producer); }  // the channel beyond its user API
    explicit State(Producer p) : producer(std::move(p)) {}
    Producer producer;
    std::string last_error;
    std::uint32_t capacity = 0;
    std::uint32_t segment_count = 0;
    std::uint64_t max_record = 0;
    bool checksums = false;
    bool latency_mode = false;
    std::uint64_t buffer_timeout_ns = 0;

    // The segment being filled. The fields the inline fast path shares live in `cur`.
    detail::WriteCursor cur;
    bool holding = false;
    WritableSegment segment;
    std::uint32_t& offset = cur.offset;  // where the next frame starts
    std::uint32_t frames = 0;  // frames that start in this segment (plus cur.fast_frames)
    std::uint32_t flags = 0;
    std::uint32_t first_record_offset = 0;
    std::uint64_t first_frame_ns = 0;  // checksums: when the segment got its first frame

    bool& reserved = cur.reserved;
    std::uint32_t& reserved_size = cur.reserved_size;
    std::uint64_t pending_records = 0;  // plus cur.fast_frames
    std::uint64_t pending_events = 0;
    std::vector<std::byte> scratch;
    bool ended = false;
    std::uint64_t next_position = 0;  // the segment after the last one published (a hint)
    // Records of the stream completed before the held segment's pending ones: the previous
    // producers' (found at attach) and ours in the segments we published.
    std::uint64_t records_completed = 0;

    Status fail(Status status, std::string message) {
        last_error = "channel '" + producer.name() + "': " + std::move(message);
        return status;
    }

    // The inline fast path (records.hpp) may append frames to the held segment as long as
    // nothing needs the slow path: no checksum to compute, no flush per record, not ended. The
    // segment header's flags and first_record_offset already hold what we would commit (set at
    // acquire, changed only by spanning records, which publish), so the fast path stores only
    // committed_bytes; it counts its records in cur.fast_frames, which count_fast_frames() adds
    // to ours before anything uses them.
    void count_fast_frames() {
        frames += cur.fast_frames;
        pending_records += cur.fast_frames;
        cur.fast_frames = 0;
    }

    void arm_fast_path() {
        const bool fast = holding && !checksums && !latency_mode && !ended;
        cur.fast_limit = fast ? capacity - L::kFrameHeaderBytes : 0;
        if (!holding) return;
        cur.payload = segment.payload.data();
        auto* header = reinterpret_cast<L::SegmentHeader*>(segment.payload.data() - L::kSegmentHeaderBytes);
        cur.committed_bytes = &header->committed_bytes;
    }

    // Acquires a segment if none is held (waiting as the mode says).
    Status acquire(const Deadline& deadline) {
        if (holding) return Status::ok;
        Status status;
        switch (deadline.mode) {
            case Mode::try_once: status = producer.try_acquire(segment); break;
            case Mode::timed: status = producer.acquire_for(segment, deadline.remaining()); break;
            default: status = producer.acquire(segment); break;
        }
        if (status != Status::ok) {
            if (status == Status::peer_died || status == Status::corrupt || status == Status::incompatible) {
                last_error = producer.last_error();
            }
            return status;
        }
        holding = true;
        offset = segment.committed;  // non-zero only when continuing a dead producer's segment
        frames = segment.record_count;
        flags = segment.flags;
        first_record_offset = segment.first_record_offset;
        first_frame_ns = 0;
        if (offset % L::kFrameAlignment != 0 || offset > capacity) {
            holding = false;
            return fail(Status::corrupt, "resumed segment has a misaligned committed size " + std::to_string(offset));
        }
        arm_fast_path();
        return Status::ok;
    }

    Status publish() {
        count_fast_frames();
        std::uint32_t checksum = 0;
        if (checksums) {
            checksum = crc32c(segment.payload.data(), offset);
            flags |= L::kSegmentHasChecksum;
        }
        // The count through this segment: its end ordinal, and the next one's start.
        records_completed += pending_records;
        hooks().set_record_ordinal(records_completed);
        Status status = hooks().publish(offset, flags, frames, first_record_offset, checksum);
        holding = false;
        arm_fast_path();
        next_position = segment.sequence + 1;
        hooks().add_written(pending_records, pending_events);
        pending_records = pending_events = 0;
        if (status != Status::ok) last_error = producer.last_error();
        return status;
    }

    // Makes the frames written so far visible; hands the segment over when it is full (or, with
    // checksums, when the buffer timeout has passed since its first frame).
    Status commit_frames() {
        count_fast_frames();
        Status status = hooks().commit(offset, flags, frames, first_record_offset);
        if (status != Status::ok) return fail(status, producer.last_error());
        if (capacity - offset < L::kFrameHeaderBytes) return publish();
        if (checksums) {
            std::uint64_t now = shm::monotonic_coarse_ns();
            if (first_frame_ns == 0) {
                first_frame_ns = now;
            } else if (now - first_frame_ns >= buffer_timeout_ns) {
                return publish();
            }
        }
        if (latency_mode) hooks().wake_consumer();
        return Status::ok;
    }

    // Segments that must be free, beyond the one held, before a frame of `frame_bytes` starts.
    std::uint64_t segments_needed(std::uint64_t frame_bytes) const {
        std::uint64_t room = holding ? capacity - offset : 0;
        if (frame_bytes <= room) return 0;
        if (frame_bytes <= capacity) return 1;
        // Spanning: it starts here if the header and a byte fit, else in a fresh segment.
        std::uint64_t first_part = room > L::kFrameHeaderBytes ? room : capacity;
        std::uint64_t rest = frame_bytes - first_part;
        return (room > L::kFrameHeaderBytes ? 0 : 1) + (rest + capacity - 1) / capacity;
    }

    // try / timed calls wait (or not) only before the first byte: for all the segments needed.
    Status wait_for_room(std::uint64_t frame_bytes, const Deadline& deadline) {
        if (deadline.mode == Mode::blocking) return Status::ok;
        std::uint64_t needed = segments_needed(frame_bytes);
        if (needed == 0) return Status::ok;
        if (holding && offset > 0 && hooks().free_segments() < needed) {
            // We must wait, so hand the held segment over first (that does not wait): the
            // reader may need it to free segments (the end of a spanning record it holds, a
            // seal it waits for with checksums), and a record that needs every other segment
            // could never find them free while we hold one. The blocking path does the same in
            // room_for().
            Status status = publish();
            if (status != Status::ok) return status;
            needed = segments_needed(frame_bytes);
        }
        if (needed > segment_count) {
            return fail(Status::invalid_call, "a record of " + std::to_string(frame_bytes) + " bytes needs " +
                                                  std::to_string(needed) + " segments, more than the ring's " +
                                                  std::to_string(segment_count) + ": use the blocking write");
        }
        Status status = hooks().wait_for_free(static_cast<std::uint32_t>(needed), deadline.remaining());
        if (status == Status::timed_out && deadline.mode == Mode::try_once) return Status::would_block;
        if (status != Status::ok && status != Status::timed_out) last_error = producer.last_error();
        return status;
    }

    // Makes room for a frame that fits one segment: hands over the current segment if needed.
    Status room_for(std::uint32_t frame_bytes, const Deadline& deadline) {
        Status status = acquire(deadline);
        if (status != Status::ok) return status;
        if (capacity - offset >= frame_bytes) return Status::ok;
        status = publish();
        if (status != Status::ok) return status;
        return acquire(deadline);
    }

    Status write_frame(L::FrameKind kind, std::uint16_t event_type, std::span<const std::byte> data,
                       const Deadline& deadline) {
        if (ended) return fail(Status::invalid_call, "write after end of stream");
        const std::uint64_t length = data.size();
        if (kind == L::FrameKind::record && length > max_record) {
            return fail(Status::too_large, "record of " + std::to_string(length) + " bytes exceeds the maximum of " +
                                               std::to_string(max_record));
        }
        reserved = false;
        const std::uint64_t frame_bytes = L::kFrameHeaderBytes + length;
        Status status = wait_for_room(frame_bytes, deadline);
        if (status != Status::ok) return status;
        // From here the calls block: every segment needed is free (or the call is blocking).
        const Deadline blocking{Mode::blocking, 0};
        const Deadline& wait = deadline.mode == Mode::blocking ? deadline : blocking;

        if (frame_bytes <= capacity) {
            status = room_for(static_cast<std::uint32_t>(frame_bytes), wait);
            if (status != Status::ok) return status;
            L::FrameHeader header = frame_header(static_cast<std::uint32_t>(length), kind, event_type);
            std::byte* at = segment.payload.data() + offset;
            std::memcpy(at, &header, sizeof header);
            if (length) std::memcpy(at + L::kFrameHeaderBytes, data.data(), length);
            offset = static_cast<std::uint32_t>(std::min<std::uint64_t>(L::frame_align(offset + frame_bytes), capacity));
            ++frames;
            if (kind == L::FrameKind::record) ++pending_records; else ++pending_events;
            return commit_frames();
        }

        // A record that spans segments (events never do: they are at most 1 KiB).
        status = acquire(wait);
        if (status != Status::ok) return status;
        if (capacity - offset <= L::kFrameHeaderBytes) {
            status = publish();
            if (status == Status::ok) status = acquire(wait);
            if (status != Status::ok) return status;
        }
        const std::byte* source = data.data();
        std::uint64_t remaining = length;
        {
            L::FrameHeader header = frame_header(static_cast<std::uint32_t>(length), kind, event_type);
            std::byte* at = segment.payload.data() + offset;
            std::memcpy(at, &header, sizeof header);
            std::uint64_t first_part = capacity - offset - L::kFrameHeaderBytes;
            std::memcpy(at + L::kFrameHeaderBytes, source, first_part);
            source += first_part;
            remaining -= first_part;
            ++frames;
            flags |= L::kSegmentRecordContinues;
            offset = capacity;
            status = publish();
            if (status != Status::ok) return status;
        }
        while (remaining > 0) {
            status = acquire(wait);
            if (status != Status::ok) return status;  // the record stays incomplete: readers drop it
            std::uint64_t chunk = std::min<std::uint64_t>(remaining, capacity);
            std::memcpy(segment.payload.data(), source, chunk);
            source += chunk;
            remaining -= chunk;
            frames = 0;
            flags = L::kSegmentContinuesRecord;
            if (remaining > 0) {
                flags |= L::kSegmentRecordContinues;
                offset = capacity;
                first_record_offset = capacity;
                status = publish();
                if (status != Status::ok) return status;
            } else {
                offset = static_cast<std::uint32_t>(L::frame_align(chunk));
                first_record_offset = offset;
            }
        }
        ++pending_records;
        return commit_frames();
    }

    // The headers of a run frame of `count` records of `record_size` bytes at `offset` of the held
    // segment (the records are, or will be, at run_data_offset(offset)); returns where the next
    // frame starts. The caller checked that the run fits the segment.
    std::uint32_t frame_run(std::uint64_t record_size, std::uint64_t count) {
        const std::uint64_t data_at = L::run_data_offset(offset);
        const std::uint64_t data_bytes = record_size * count;
        const L::FrameHeader header = frame_header(
            static_cast<std::uint32_t>(data_at - offset - L::kFrameHeaderBytes + data_bytes), L::FrameKind::record_run, 0);
        const L::RunHeader run_header{static_cast<std::uint32_t>(record_size), static_cast<std::uint32_t>(count)};
        std::byte* at = segment.payload.data() + offset;
        std::memcpy(at, &header, sizeof header);
        std::memcpy(at + L::kFrameHeaderBytes, &run_header, sizeof run_header);
        return static_cast<std::uint32_t>(std::min<std::uint64_t>(L::frame_align(data_at + data_bytes), capacity));
    }

    // Makes the held segment one whose run frame at `offset` can hold `run_bytes` of records
    // ending by `limit` (capacity, or the inline path's capacity - 8). The caller checked that a
    // fresh segment can (run_data_offset(0) + run_bytes <= limit). Where the held one cannot (its
    // padding included), it is handed over and a fresh one taken: the size asked of room_for()
    // is then more than the room left. A segment taken that continues a dead producer's, with
    // too little room after its committed bytes, is handed over too.
    Status room_for_run(std::uint64_t run_bytes, std::uint64_t limit, const Deadline& deadline) {
        auto fits = [&] { return holding && L::run_data_offset(offset) + run_bytes <= limit; };
        if (fits()) return Status::ok;
        const std::uint64_t need = std::max<std::uint64_t>(L::run_data_offset(0) + run_bytes, holding ? capacity - offset + 1 : 0);
        Status status = wait_for_room(need, deadline);
        if (status != Status::ok) return status;
        const Deadline blocking{Mode::blocking, 0};
        const Deadline& wait = deadline.mode == Mode::blocking ? deadline : blocking;
        status = room_for(static_cast<std::uint32_t>(need), wait);
        if (status != Status::ok || fits()) return status;
        status = publish();
        if (status == Status::ok) status = acquire(wait);
        if (status != Status::ok) return status;
        if (!fits()) return fail(Status::corrupt, "no room for a run at offset " + std::to_string(offset) + " of a fresh segment");
        return Status::ok;
    }

    // One record through the slow path: from detail::kAlignedRecordMin bytes on, through
    // write_batch(), which writes it as a run of one (its bytes on a cache line) where one fits.
    Status write_record(std::span<const std::byte> record, const Deadline& deadline) {
        std::size_t written = 0;
        if (record.size() >= detail::kAlignedRecordMin) return write_batch(record, record.size(), written, deadline);
        return write_frame(L::FrameKind::record, 0, record, deadline);
    }

    // Batches: runs of whole frames straight into the held segment (one committed_bytes store
    // per run), and the general path for one record where a run cannot go on (segment full,
    // checksums, latency mode, a record that spans segments).
    Status write_batch(std::span<const std::byte> records, std::size_t record_size, std::size_t& written,
                       const Deadline& deadline) {
        written = 0;
        if (ended) return fail(Status::invalid_call, "write after end of stream");
        if (record_size == 0 || records.size() % record_size != 0) {
            return fail(Status::invalid_call, "write_batch of " + std::to_string(records.size()) +
                                                  " bytes in records of " + std::to_string(record_size) +
                                                  " bytes: the size must divide the batch");
        }
        if (record_size > max_record) {
            return fail(Status::too_large, "record of " + std::to_string(record_size) + " bytes exceeds the maximum of " +
                                               std::to_string(max_record));
        }
        const std::size_t count = records.size() / record_size;
        const std::byte* source = records.data();
        const std::uint64_t frame_bytes = L::frame_align(L::kFrameHeaderBytes + record_size);
        while (written < count) {
            // A run frame: one header for as many records as fit the held segment, copied in
            // with one memcpy to a cache-line-aligned destination (a long copy then writes whole
            // lines, without first fetching each from the reader's core; an unaligned one is
            // ~12 % slower even within one core's L2, measured). Two records at least; one
            // large record (detail::kAlignedRecordMin) is a run of one too, and may fill the segment to
            // its end (then commit_frames() hands it over); a small one goes as a plain frame.
            const bool large = record_size >= detail::kAlignedRecordMin;
            const std::uint64_t least = large ? 1 : 2;
            const std::uint64_t run_limit = large ? capacity : cur.fast_limit;
            const std::uint64_t data_at = L::run_data_offset(offset);
            if (cur.fast_limit != 0 && record_size <= cur.max_fast_record && count - written >= least &&
                data_at + least * record_size <= run_limit) {
                const std::size_t run = static_cast<std::size_t>(
                    std::min<std::uint64_t>({count - written, (run_limit - data_at) / record_size,
                                             std::numeric_limits<std::uint32_t>::max()}));
                const std::uint64_t data_bytes = std::uint64_t{run} * record_size;
                std::memcpy(segment.payload.data() + data_at, source, data_bytes);
                source += data_bytes;
                written += run;
                offset = frame_run(record_size, run);
                // One frame, `run` records: counted as the inline path counts its frames, so
                // that a flush or commit brings the header's record_count up to date.
                ++cur.fast_frames;
                pending_records += run - 1;
                reserved = false;
                if (offset > cur.fast_limit) {
                    // Past where the inline path may go: the slow commit, which hands a full
                    // segment over.
                    if (Status status = commit_frames(); status != Status::ok) return status;
                } else {
                    // Release: the frame above before the count that covers it (rule 2).
                    L::store_release(*cur.committed_bytes, offset);
                }
                continue;
            }
            if (cur.fast_limit != 0 && record_size <= cur.max_fast_record && offset + frame_bytes <= cur.fast_limit) {
                // One plain frame, as the inline write() frames it.
                std::memcpy(segment.payload.data() + offset + L::kFrameHeaderBytes, source, record_size);
                source += record_size;
                written += 1;
                reserved = false;
                detail::commit_fast_frame(cur, record_size, offset + frame_bytes);
                continue;
            }
            const std::uint64_t run_end_limit = large ? capacity : capacity - L::kFrameHeaderBytes;
            if (count - written >= least && !checksums && !latency_mode &&
                L::run_data_offset(0) + least * record_size <= run_end_limit) {
                // No room here for what is left: go on with a run in a fresh segment, rather than
                // start it with a lone frame.
                if (Status status = room_for_run(least * record_size, run_end_limit, deadline); status != Status::ok) {
                    return status;
                }
                continue;
            }
            Status status = write_frame(L::FrameKind::record, 0, std::span<const std::byte>(source, record_size), deadline);
            if (status != Status::ok) return status;
            source += record_size;
            ++written;
        }
        return Status::ok;
    }

    Status reserve(std::size_t size, std::span<std::byte>& out, const Deadline& deadline) {
        if (ended) return fail(Status::invalid_call, "reserve after end of stream");
        if (size >= detail::kAlignedRecordMin && size <= max_record && L::run_data_offset(0) + size <= capacity) {
            // As write() places it: a run of one, its bytes on a cache line; commit() frames it.
            std::size_t count = 0;
            Status status = reserve_run(size, 1, out, count, deadline);
            run_reservation.single = status == Status::ok;
            return status;
        }
        if (size > capacity - L::kFrameHeaderBytes || size > max_record) {
            return fail(Status::too_large, "reserve of " + std::to_string(size) + " bytes: at most " +
                                               std::to_string(std::min<std::uint64_t>(capacity - L::kFrameHeaderBytes, max_record)) +
                                               " fit one segment; use write()");
        }
        reserved = false;
        run_reservation = {};
        std::uint32_t frame_bytes = static_cast<std::uint32_t>(L::kFrameHeaderBytes + size);
        Status status = wait_for_room(frame_bytes, deadline);
        if (status != Status::ok) return status;
        const Deadline blocking{Mode::blocking, 0};
        status = room_for(frame_bytes, deadline.mode == Mode::blocking ? deadline : blocking);
        if (status != Status::ok) return status;
        out = segment.payload.subspan(offset + L::kFrameHeaderBytes, size);
        reserved = true;
        reserved_size = static_cast<std::uint32_t>(size);
        return Status::ok;
    }

    // A run reservation: where its frame starts, in which segment, and the frames written there
    // when it was made (a write, an event or a commit since then moves them: the run is dropped).
    struct RunReservation {
        bool active = false;
        std::uint64_t segment = 0;
        std::uint32_t at = 0, record_size = 0, count = 0, frames_then = 0;
        bool single = false;  // made by reserve() for one large record: commit() takes it
    } run_reservation;

    Status reserve_run(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out, std::size_t& count,
                       const Deadline& deadline) {
        count = 0;
        out = {};
        run_reservation = {};
        if (ended) return fail(Status::invalid_call, "reserve_run after end of stream");
        if (record_size == 0 || max_records == 0) {
            return fail(Status::invalid_call, "reserve_run of " + std::to_string(max_records) + " records of " +
                                                  std::to_string(record_size) + " bytes");
        }
        // One record in a run frame of a fresh segment: the headers and padding up to the first
        // 64-byte boundary (run_data_offset), then the record.
        const std::uint64_t fresh_need = L::run_data_offset(0) + std::uint64_t{record_size};
        if (fresh_need > capacity || record_size > max_record) {
            return fail(Status::too_large, "reserve_run of records of " + std::to_string(record_size) + " bytes: at most " +
                                               std::to_string(std::min<std::uint64_t>(capacity - L::run_data_offset(0), max_record)) +
                                               " fit a run frame; use reserve() or write()");
        }
        reserved = false;
        if (Status status = room_for_run(record_size, capacity, deadline); status != Status::ok) return status;
        count_fast_frames();
        const std::uint64_t data_at = L::run_data_offset(offset);  // data_at + record_size <= capacity
        count = static_cast<std::size_t>(std::min<std::uint64_t>(
            {max_records, (capacity - data_at) / record_size, std::numeric_limits<std::uint32_t>::max()}));
        out = segment.payload.subspan(data_at, count * record_size);
        run_reservation = {true, segment.sequence, offset, static_cast<std::uint32_t>(record_size),
                           static_cast<std::uint32_t>(count), frames, false};
        return Status::ok;
    }

    // Whether the run reserved is still where it was made, and nothing was framed since.
    bool run_reservation_holds(const RunReservation& run) {
        count_fast_frames();
        return run.active && holding && !reserved && segment.sequence == run.segment && offset == run.at &&
               frames == run.frames_then;
    }

    Status commit_run(std::size_t used) {
        const RunReservation run = std::exchange(run_reservation, {});
        if (!run_reservation_holds(run) || run.single) {
            return fail(Status::invalid_call, "commit_run without reserve_run (or a write, event or reserve since)");
        }
        if (used > run.count) {
            return fail(Status::invalid_call, "commit_run of " + std::to_string(used) + " records, " +
                                                  std::to_string(run.count) + " reserved");
        }
        if (used == 0) return Status::ok;  // nothing written: the reservation is dropped
        offset = frame_run(run.record_size, used);
        ++frames;
        pending_records += used;
        return commit_frames();
    }

    Status commit(std::size_t used) {
        if (!reserved && run_reservation.single) {
            // A large record reserved as a run of one: framed as one of `used` bytes (an empty
            // record as a plain frame: a run holds records of one byte or more).
            const RunReservation run = std::exchange(run_reservation, {});
            if (!run_reservation_holds(run)) return fail(Status::invalid_call, "commit without reserve (or a write, event or reserve since)");
            if (used > run.record_size) {
                return fail(Status::invalid_call, "commit of " + std::to_string(used) + " bytes, " +
                                                      std::to_string(run.record_size) + " reserved");
            }
            if (used > 0) {
                offset = frame_run(used, 1);
                ++frames;
                ++pending_records;
                return commit_frames();
            }
            reserved = true;  // the plain frame below
            reserved_size = 0;
        }
        if (!reserved || !holding) return fail(Status::invalid_call, "commit without reserve");
        if (used > reserved_size) {
            return fail(Status::invalid_call, "commit of " + std::to_string(used) + " bytes, " +
                                                  std::to_string(reserved_size) + " reserved");
        }
        reserved = false;
        L::FrameHeader header = frame_header(static_cast<std::uint32_t>(used), L::FrameKind::record, 0);
        std::memcpy(segment.payload.data() + offset, &header, sizeof header);
        offset = static_cast<std::uint32_t>(std::min<std::uint64_t>(L::frame_align(offset + L::kFrameHeaderBytes + used), capacity));
        ++frames;
        ++pending_records;
        return commit_frames();
    }
};

RecordWriter RecordWriter::attach(std::string_view name, ChannelOptions options) {
    options.framing = Framing::records;
    auto state = std::make_unique<State>(Producer::attach(name, options));
    state->capacity = state->producer.payload_capacity();
    state->segment_count = state->producer.segment_count();
    state->max_record = std::min<std::uint64_t>(state->producer.max_record_bytes(), L::kMaxRecordsFramingRecord);
    state->checksums = (state->producer.channel_flags() & L::kFlagChecksums) != 0;
    state->latency_mode = options.buffer_timeout.count() == 0;
    state->buffer_timeout_ns = static_cast<std::uint64_t>(options.buffer_timeout.count());
    state->hooks().set_buffer_timeout(options.buffer_timeout);
    state->cur.max_fast_record = std::min<std::uint64_t>(state->max_record, state->capacity - L::kFrameHeaderBytes);
    state->records_completed = count_resumed_records(*state);
    state->hooks().set_record_ordinal(state->records_completed);
    return RecordWriter(std::move(state));
}

// The records the previous producers completed: counted up to the segment we continue or start
// (the segment headers' ordinals), plus the whole records committed in the one we continue.
std::uint64_t RecordWriter::count_resumed_records(State& state) {
    detail::SegmentView resumed;
    std::uint64_t ordinal = 0;
    if (state.hooks().resume_view(resumed, ordinal) != Status::ok) {
        throw Error(Errc::corrupt, state.producer.last_error());
    }
    const detail::SegmentFrames frames{resumed.payload, resumed.flags, resumed.first_record_offset,
                                       /*sealed=*/false, state.capacity, state.max_record};
    std::uint64_t in_segment = 0;
    if (!detail::count_complete_records(frames, in_segment)) {
        throw Error(Errc::corrupt, "channel '" + state.producer.name() + "': segment " + std::to_string(resumed.sequence) +
                                       " left by the previous producer holds a corrupt frame: its records cannot be counted");
    }
    return ordinal + in_segment;
}

std::uint64_t RecordWriter::completed_records() const noexcept {
    const State& s = *state_;
    return s.records_completed + s.pending_records + s.cur.fast_frames;
}

RecordWriter::RecordWriter(std::unique_ptr<State> state) : state_(std::move(state)), cursor_(&state_->cur) {}
RecordWriter::RecordWriter(RecordWriter&& other) noexcept
    : state_(std::move(other.state_)),
      cursor_(std::exchange(other.cursor_, nullptr)),
      checked_type_(std::exchange(other.checked_type_, nullptr)) {}
RecordWriter& RecordWriter::operator=(RecordWriter&& other) noexcept {
    state_ = std::move(other.state_);
    cursor_ = std::exchange(other.cursor_, nullptr);
    checked_type_ = std::exchange(other.checked_type_, nullptr);
    return *this;
}
RecordWriter::~RecordWriter() = default;

Status RecordWriter::write_slow(std::span<const std::byte> record) {
    return state_->write_record(record, Deadline::make(Mode::blocking, {}));
}
Status RecordWriter::try_write_slow(std::span<const std::byte> record) {
    return state_->write_record(record, Deadline::make(Mode::try_once, {}));
}
Status RecordWriter::write_for_slow(std::span<const std::byte> record, std::chrono::nanoseconds timeout) {
    return state_->write_record(record, Deadline::make(Mode::timed, timeout));
}
Status RecordWriter::write_batch(std::span<const std::byte> records, std::size_t record_size, std::size_t& written) {
    return state_->write_batch(records, record_size, written, Deadline::make(Mode::blocking, {}));
}
Status RecordWriter::try_write_batch(std::span<const std::byte> records, std::size_t record_size, std::size_t& written) {
    return state_->write_batch(records, record_size, written, Deadline::make(Mode::try_once, {}));
}
Status RecordWriter::write_batch_for(std::span<const std::byte> records, std::size_t record_size, std::size_t& written,
                                     std::chrono::nanoseconds timeout) {
    return state_->write_batch(records, record_size, written, Deadline::make(Mode::timed, timeout));
}
Status RecordWriter::reserve_slow(std::size_t size, std::span<std::byte>& out) {
    return state_->reserve(size, out, Deadline::make(Mode::blocking, {}));
}
Status RecordWriter::try_reserve(std::size_t size, std::span<std::byte>& out) {
    return state_->reserve(size, out, Deadline::make(Mode::try_once, {}));
}
Status RecordWriter::reserve_for(std::size_t size, std::span<std::byte>& out, std::chrono::nanoseconds timeout) {
    return state_->reserve(size, out, Deadline::make(Mode::timed, timeout));
}
Status RecordWriter::commit_slow(std::size_t used) { return state_->commit(used); }
Status RecordWriter::reserve_run(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out,
                                 std::size_t& count) {
    return state_->reserve_run(record_size, max_records, out, count, Deadline::make(Mode::blocking, {}));
}
Status RecordWriter::try_reserve_run(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out,
                                     std::size_t& count) {
    return state_->reserve_run(record_size, max_records, out, count, Deadline::make(Mode::try_once, {}));
}
Status RecordWriter::reserve_run_for(std::size_t record_size, std::size_t max_records, std::span<std::byte>& out,
                                     std::size_t& count, std::chrono::nanoseconds timeout) {
    return state_->reserve_run(record_size, max_records, out, count, Deadline::make(Mode::timed, timeout));
}
Status RecordWriter::commit_run(std::size_t used) { return state_->commit_run(used); }

Status RecordWriter::write_barrier(std::uint64_t checkpoint_id, bool priority) {
    State& s = *state_;
    if (priority && !s.ended) {
        // Everything committed so far is overtaken; the in-band copy below closes the range.
        std::uint64_t segment = s.holding ? s.segment.sequence : s.next_position;
        s.hooks().publish_priority(checkpoint_id, segment, s.holding ? s.offset : 0);
    }
    std::byte payload[8];
    std::memcpy(payload, &checkpoint_id, sizeof checkpoint_id);
    return state_->write_frame(L::FrameKind::barrier, 0, payload, Deadline::make(Mode::blocking, {}));
}

Status RecordWriter::write_event(std::uint16_t event_type, std::span<const std::byte> payload) {
    if (payload.size() > L::kMaxEventPayload) {
        return state_->fail(Status::too_large, "event payload of " + std::to_string(payload.size()) +
                                                   " bytes exceeds 1024");
    }
    return state_->write_frame(L::FrameKind::user_event, event_type, payload, Deadline::make(Mode::blocking, {}));
}

Status RecordWriter::flush() {
    State& s = *state_;
    if (s.checksums && s.holding && s.offset > 0) {
        Status status = s.publish();
        if (status != Status::ok) return status;
    } else if (s.holding && s.cur.fast_frames != 0) {
        // The header's record count, which the fast path leaves behind, as of this flush.
        s.count_fast_frames();
        Status status = s.hooks().commit(s.offset, s.flags, s.frames, s.first_record_offset);
        if (status != Status::ok) return s.fail(status, s.producer.last_error());
    }
    s.hooks().wake_consumer();
    return Status::ok;
}

Status RecordWriter::end_stream() { return end_stream_for(std::chrono::nanoseconds(-1)); }

Status RecordWriter::end_stream_for(std::chrono::nanoseconds timeout) {
    State& s = *state_;
    if (s.ended) return Status::ok;
    Deadline deadline = timeout.count() < 0 ? Deadline::make(Mode::blocking, {}) : Deadline::make(Mode::timed, timeout);
    Status status = s.write_frame(L::FrameKind::end_of_stream, 0, {}, deadline);
    if (status != Status::ok) return status;
    if (s.holding && s.offset > 0) {
        status = s.publish();
        if (status != Status::ok) return status;
    }
    s.ended = true;
    s.arm_fast_path();
    status = s.producer.end_stream();
    if (status != Status::ok) s.last_error = s.producer.last_error();
    return status;
}

std::size_t RecordWriter::max_inline_record() const noexcept {
    return std::min<std::uint64_t>(state_->capacity - L::kFrameHeaderBytes, state_->max_record);
}
std::uint64_t RecordWriter::max_record_bytes() const noexcept { return state_->max_record; }
Producer& RecordWriter::producer() noexcept { return state_->producer; }
const std::string& RecordWriter::last_error() const noexcept { return state_->last_error; }
std::vector<std::byte>& RecordWriter::scratch() { return state_->scratch; }
bool RecordWriter::check_type(const void* tag, std::string_view type) {
    return check_record_type(state_->producer, state_->last_error, tag, type, checked_type_);
}

// ---- Reader --------------------------------------------------------------------------------------

struct RecordReader::State {
    detail::ConsumerHooks hooks() noexcept { return detail::ConsumerHooks(consumer); }  // the channel beyond its user API
    explicit State(Consumer c) : consumer(std::move(c)) {}
    Consumer consumer;
    std::string last_error;
    std::uint32_t capacity = 0;
    std::uint32_t segment_count = 0;
    std::uint64_t max_record = 0;
    bool checksums = false;

    detail::ReadCursor cur;          // shared with the inline fast path (records.hpp)
    std::uint64_t& position = cur.position;  // the segment being parsed
    std::uint32_t& offset = cur.offset;      // where its next frame starts
    std::uint64_t floor = 0;     // segments before it are released
    std::uint64_t stored_in_flight = 0;  // the in_flight_record_bytes we stored last
    detail::SegmentView view;
    bool have_view = false;
    // The parse needs the segment sealed: a spanning frame seen in a segment still being filled
    // (its publish stores committed_bytes a moment before `published`).
    bool need_sealed = false;
    std::uint64_t verified = std::numeric_limits<std::uint64_t>::max();  // checksum checked here

    // A record that spans segments, being reassembled (kept across try_read calls).
    bool reassembling = false;
    std::uint64_t record_length = 0;
    std::uint64_t copied = 0;
    RecordPosition record_start;
    std::uint64_t in_flight = 0;  // set while segments of the record were released early
    std::unique_ptr<std::byte[]> buffer;
    std::uint64_t buffer_capacity = 0;

    // Restart bookkeeping.
    bool skip_continuation = false;
    bool report_lost = false;
    std::uint64_t lost_bytes = 0;
    bool skipping = false;
    RecordPosition skip_through;

    detail::ReadProgress& progress = cur.progress;
    bool ended = false;
    Record last;
    std::uint32_t& run_end = cur.run_end;    // inside a record_run frame (records.hpp)
    std::uint32_t& run_size = cur.run_size;
    // The resume offset we attached with may lie inside a run frame: found from the segment's
    // first frame before the first parse (locate_resume_point).
    bool locate_resume = false;

    Status fail(Status status, std::string message) {
        last_error = "channel '" + consumer.name() + "': segment " + std::to_string(position) + ": " + std::move(message);
        return status;
    }
    Status from_core(Status status) {
        if (status == Status::corrupt || status == Status::peer_died || status == Status::invalid_call ||
            status == Status::incompatible) {
            last_error = consumer.last_error();
        }
        return status;
    }

    // The core refused a release (the positions we parsed disagree with the channel's, e.g. a
    // `published` that went backwards): report the channel corrupt, keep `floor` where it is.
    Status release_refused(Status status) {
        if (status == Status::peer_died || status == Status::corrupt) return from_core(status);
        return fail(Status::corrupt, "release refused: " + consumer.last_error());
    }

    // Releases every segment before `position` (all their frames are consumed). `floor` moves
    // only with a release the core accepted; a refused one is reported, never skipped over.
    Status release_passed() {
        if (position == floor) return Status::ok;
        Status status = hooks().release_until(position, offset, in_flight, progress);
        if (status != Status::ok) return release_refused(status);
        stored_in_flight = in_flight;
        progress = {};
        floor = position;
        return Status::ok;
    }

    // The previous record is finished: a restarted consumer resumes after it.
    Status finish_previous() {
        if (reassembling) return Status::ok;  // a try_read that returned mid-record
        const bool moved = position != floor;
        Status status = hooks().release_until(position, offset, 0, moved ? progress : detail::ReadProgress{});
        if (status != Status::ok) return release_refused(status);
        if (moved) {
            progress = {};
            floor = position;
        }
        in_flight = 0;
        stored_in_flight = 0;
        return Status::ok;
    }

    // The inline fast path (records.hpp) reads whole record frames inside the committed bytes
    // of the current view, storing the resume offset per record as finish_previous() would. It
    // runs only while nothing else is pending: a verified view of the segment at `position`,
    // nothing to release or skip, no spanning record, no loss to report, not ended.
    void arm_fast_path() {
        const bool fast = have_view && !ended && !report_lost && !reassembling && !skipping && !need_sealed && !locate_resume &&
                          position == floor && stored_in_flight == 0 && in_flight == 0 && view.sequence == position &&
                          !(offset == 0 && (view.flags & L::kSegmentContinuesRecord)) &&
                          (!checksums || (view.sealed && verified == view.sequence));
        cur.fast_limit = fast ? static_cast<std::uint32_t>(view.payload.size()) : 0;
        cur.payload = view.payload.data();
    }

    // Every read that the inline path leaves to us. It disarms the fast path first: if read()
    // throws (an allocation failure), the cursor must not keep a view of a segment it may have
    // released.
    Status slow_read(Record& out, const Deadline& deadline) {
        if (cur.in_batch) return fail(Status::invalid_call, "read inside a read_batch handler");
        cur.fast_limit = 0;
        Status status = read(out, deadline);
        arm_fast_path();
        return status;
    }

    bool view_ready() const {
        if (!have_view) return false;
        if (view.sealed) return true;
        return !checksums && !need_sealed && view.payload.size() > offset;
    }

    Status verify(const detail::SegmentView& segment) {
        if (!checksums || !segment.sealed || verified == segment.sequence) return Status::ok;
        if (!(segment.flags & L::kSegmentHasChecksum)) return fail(Status::corrupt, "checksum missing");
        std::uint32_t actual = crc32c(segment.payload.data(), segment.payload.size());
        if (actual != segment.checksum) {
            return fail(Status::corrupt, "checksum mismatch (CRC-32C " + std::to_string(actual) + ", header says " +
                                             std::to_string(segment.checksum) + ")");
        }
        verified = segment.sequence;
        return Status::ok;
    }

    // Makes `view` show bytes beyond `offset` of segment `position` (or the segment sealed).
    Status ensure_data(const Deadline& deadline) {
        while (!view_ready()) {
            // A try or a timed read (whose time may be up before any look of the wait), or a
            // segment we hold no view of yet, reads the header; a blocking read that has used up
            // its view of the segment being filled polls the producer line only and leaves the
            // header line to the producer (layout.hpp rule 2b): it reads the header within a
            // few dozen spins of its wait.
            Status status = deadline.mode != Mode::blocking || !have_view ? hooks().try_view(position, view)
                                                                         : hooks().poll_view(position, view);
            if (status == Status::ok) {
                have_view = true;
                if (view_ready()) break;
            } else if (status != Status::would_block) {
                return from_core(status);
            }
            if (deadline.mode == Mode::try_once) return Status::would_block;
            // Before sleeping, give back what we passed and report the counters.
            if (!reassembling && position != floor) {
                if (Status released = release_passed(); released != Status::ok) return released;
            }
            std::uint32_t threshold = (checksums || need_sealed) ? capacity : offset;
            std::chrono::nanoseconds remaining = deadline.remaining();
            if (deadline.mode == Mode::timed && remaining.count() == 0) return Status::timed_out;
            status = hooks().wait_view(position, threshold, view, remaining);
            if (status == Status::ok) {
                have_view = true;
            } else {
                return from_core(status);
            }
        }
        return verify(view);
    }

    void advance_segment() {
        ++position;
        offset = 0;
        run_end = 0;
        have_view = false;
        need_sealed = false;
    }

    std::byte* reserve_buffer(std::uint64_t length) {
        if (length > buffer_capacity) {
            std::uint64_t grown = std::max<std::uint64_t>(length, buffer_capacity * 2);
            buffer = std::make_unique<std::byte[]>(grown);  // once per new largest record
            buffer_capacity = grown;
        }
        return buffer.get();
    }

    // The committed bytes of the view, for the frame decoder.
    detail::SegmentFrames frames() const {
        return {view.payload, view.flags, view.first_record_offset, view.sealed, capacity, max_record};
    }

    // What last_error() says of a corrupt frame of the view (`size` committed bytes).
    std::string frame_problem(const detail::Frame& frame, std::uint64_t size) const {
        const std::string at = std::to_string(frame.offset), length = std::to_string(frame.length);
        const std::string kind = std::to_string(static_cast<std::uint16_t>(frame.kind));
        switch (frame.fault) {
            case detail::FrameFault::misaligned: return "frame at offset " + at + " is not 8-byte aligned";
            case detail::FrameFault::truncated_header: return "truncated frame header at offset " + at;
            case detail::FrameFault::bad_run:
                return "record run at offset " + at + " of " + length + " bytes (records of " +
                       std::to_string(frame.run.header.record_size) + " x " + std::to_string(frame.run.header.count) +
                       ") does not fit its frame or the segment";
            case detail::FrameFault::unknown_kind: return "unknown frame kind " + kind + " at offset " + at;
            case detail::FrameFault::record_too_large:
                return "record of " + length + " bytes exceeds the maximum " + std::to_string(max_record);
            case detail::FrameFault::bad_event_length: return "event frame of kind " + kind + " has length " + length;
            case detail::FrameFault::past_committed:
                return "frame of " + length + " bytes at offset " + at + " runs past the segment's " + std::to_string(size) +
                       " committed bytes";
            default: return std::string(detail::to_string(frame.fault)) + " at offset " + at;
        }
    }

    // Walks the frames of the resume segment from its first one to the resume offset: a frame
    // boundary, or a record's start inside a run frame (then the run's state is set up).
    Status locate_resume_point() {
        locate_resume = false;
        const detail::FramePlace place = detail::locate_frame(frames(), offset);
        if (!place.found) {
            return fail(Status::corrupt, "resume offset " + std::to_string(offset) + " of segment " + std::to_string(position) +
                                             " is neither a frame nor a record of a run");
        }
        run_end = static_cast<std::uint32_t>(place.run_end);
        if (place.run_end != 0) run_size = place.record_size;
        return Status::ok;
    }

    Status deliver(Record& out, L::FrameKind kind, std::uint16_t event_type, std::span<const std::byte> bytes,
                   RecordPosition start, bool& skip) {
        skip = skipping && start <= skip_through;
        if (kind == L::FrameKind::record) {
            ++progress.records;
            progress.bytes += bytes.size();
        } else {
            ++progress.events;
        }
        // Passed by skip_through(): finished at once (its resume point moves past it); the
        // caller reads on unless that failed.
        if (skip) return finish_previous();
        skipping = false;
        out = Record{};
        out.position = start;
        out.bytes = bytes;
        switch (kind) {
            case L::FrameKind::record: out.kind = RecordKind::record; break;
            case L::FrameKind::barrier:
                out.kind = RecordKind::barrier;
                std::memcpy(&out.checkpoint_id, bytes.data(), sizeof out.checkpoint_id);
                out.bytes = {};
                break;
            case L::FrameKind::user_event:
                out.kind = RecordKind::user_event;
                out.event_type = event_type;
                break;
            case L::FrameKind::end_of_stream:
                ended = true;
                if (Status released = finish_previous(); released != Status::ok) return released;
                return Status::end_of_stream;
            case L::FrameKind::record_run: break;  // never delivered as such: its records are
        }
        last = out;
        return Status::ok;
    }

    Status read(Record& out, const Deadline& deadline) {
        if (ended) return Status::end_of_stream;
        if (report_lost) {
            report_lost = false;
            out = Record{};
            out.lost_bytes = lost_bytes;
            out.position = {position, offset};
            last = out;
            return Status::record_lost;
        }
        if (Status released = finish_previous(); released != Status::ok) return released;
        while (true) {
            Status status = ensure_data(deadline);
            if (status != Status::ok) {
                if (status == Status::end_of_stream) {
                    ended = true;
                    if (reassembling) return fail(Status::corrupt, "stream ended inside a record");
                }
                return status;
            }
            const std::span<const std::byte> payload = view.payload;
            const std::uint32_t size = static_cast<std::uint32_t>(payload.size());

            if (locate_resume && !reassembling) {
                if (Status located = locate_resume_point(); located != Status::ok) return located;
            }
            if (run_end > offset) {
                // The next record of a run frame (its header was checked against these bytes).
                if (run_end > size || run_size == 0 || run_end - offset < run_size) {
                    return fail(Status::corrupt, "record run state beyond the segment's " + std::to_string(size) + " bytes");
                }
                const RecordPosition start{position, offset};
                auto bytes = payload.subspan(offset, run_size);
                detail::step_in_run(offset, run_end, std::uint64_t{offset} + run_size, size);
                bool skip = false;
                status = deliver(out, L::FrameKind::record, 0, bytes, start, skip);
                if (skip && status == Status::ok) continue;
                return status;
            }

            if (reassembling) {
                Continued continued = continue_record();
                if (continued == Continued::error) return Status::corrupt;
                if (continued != Continued::complete) continue;  // more to fetch, or dropped
                bool skip = false;
                status = deliver(out, L::FrameKind::record, 0,
                                 std::span<const std::byte>(buffer.get(), record_length), record_start, skip);
                if (skip && status == Status::ok) continue;
                return status;
            }

            // The common cases inline (a whole record frame, as the fast paths take it, and a run
            // header); every other frame goes through the decoder. An out-of-line decode of each
            // frame here cost the 64-byte ping-pong ~250 ns a round trip.
            if (offset < size && size - offset >= L::kFrameHeaderBytes && offset % L::kFrameAlignment == 0 &&
                !(offset == 0 && (view.flags & L::kSegmentContinuesRecord))) {
                L::FrameHeader header;
                std::memcpy(&header, payload.data() + offset, sizeof header);  // once; use the local
                const std::uint64_t room = size - offset - L::kFrameHeaderBytes;
                if (header.kind == static_cast<std::uint16_t>(L::FrameKind::record_run)) {
                    // A run header, checked as the decoder checks it; a bad one goes to the decoder,
                    // which reports it.
                    L::RunExtent run;
                    if (L::decode_run(payload.data(), offset, header.length, room, max_record, run)) {
                        skip_continuation = false;
                        run_end = static_cast<std::uint32_t>(run.end);
                        run_size = run.header.record_size;
                        offset = static_cast<std::uint32_t>(run.data);
                        continue;  // the loop hands over its first record
                    }
                } else if (detail::record_frame_fits(header, room, max_record)) {
                    skip_continuation = false;
                    const RecordPosition start{position, offset};
                    const std::uint64_t data = std::uint64_t{offset} + L::kFrameHeaderBytes;
                    auto bytes = payload.subspan(data, header.length);
                    offset = static_cast<std::uint32_t>(std::min<std::uint64_t>(L::frame_align(data + header.length), size));
                    bool skip = false;
                    status = deliver(out, L::FrameKind::record, 0, bytes, start, skip);
                    if (skip && status == Status::ok) continue;
                    return status;
                }
            }
            const detail::Frame frame = detail::decode_frame(frames(), offset);
            if (frame.step == detail::FrameStep::continuation) {
                // Continuation bytes of a record whose start we never saw (a restart after the
                // start was released): skip them and report the loss once.
                if (!skip_continuation) {
                    report_lost = true;
                    lost_bytes = 0;
                }
                if (frame.spans) {
                    // All continuation (published whole): wait for the seal if not seen yet.
                    if (!view.sealed) {
                        need_sealed = true;
                        continue;
                    }
                    advance_segment();
                    if (Status released = release_passed(); released != Status::ok) return released;
                    continue;
                }
                offset = static_cast<std::uint32_t>(frame.next);
                skip_continuation = false;
                if (report_lost) {
                    report_lost = false;
                    out = Record{};
                    out.lost_bytes = lost_bytes;
                    out.position = {position, 0};
                    last = out;
                    return Status::record_lost;
                }
                continue;
            }
            skip_continuation = false;

            switch (frame.step) {
                case detail::FrameStep::end:
                    if (view.sealed) {
                        advance_segment();
                        if (Status released = release_passed(); released != Status::ok) return released;
                    }
                    continue;  // ensure_data waits for more
                case detail::FrameStep::pending:
                    // A record spanning segments is handed over whole: wait for the seal.
                    need_sealed = true;
                    continue;
                case detail::FrameStep::corrupt: return fail(Status::corrupt, frame_problem(frame, size));
                case detail::FrameStep::run:
                    run_end = static_cast<std::uint32_t>(frame.run.end);
                    run_size = frame.run.header.record_size;
                    offset = static_cast<std::uint32_t>(frame.run.data);
                    continue;  // the loop hands over its first record
                case detail::FrameStep::record:
                case detail::FrameStep::event:
                case detail::FrameStep::continuation: break;
            }
            const RecordPosition start{position, offset};
            if (!frame.spans) {
                offset = static_cast<std::uint32_t>(frame.next);
                bool skip = false;
                status = deliver(out, frame.kind, frame.event_type, frame.bytes, start, skip);
                if (skip && status == Status::ok) continue;
                return status;
            }
            // The first part of a record spanning segments: reassemble it.
            std::byte* target = reserve_buffer(frame.length);
            std::memcpy(target, frame.bytes.data(), frame.bytes.size());
            reassembling = true;
            record_length = frame.length;
            copied = frame.bytes.size();
            record_start = start;
            advance_segment();
            if (Status released = release_if_ring_held(); released != Status::ok) return released;
        }
    }

    // Holding every segment of the ring while the record goes on would stop the producer: a
    // record larger than the ring is read with its first segments released (and is lost if we
    // die before its end: in_flight tells the next consumer).
    Status release_if_ring_held() {
        if (position - floor >= segment_count) {
            Status status = hooks().release_until(position, 0, record_length, progress);
            if (status != Status::ok) return release_refused(status);
            in_flight = record_length;
            stored_in_flight = in_flight;
            progress = {};
            floor = position;
        }
        return Status::ok;
    }

    enum class Continued { complete, pending, dropped, error };

    // Copies continuation bytes from the segment at `position` (its view is ready).
    Continued continue_record() {
        const std::uint64_t needed = record_length - copied;
        const detail::Frame part = detail::decode_continuation(frames(), needed);
        switch (part.step) {
            case detail::FrameStep::pending: need_sealed = true; return Continued::pending;
            case detail::FrameStep::continuation: break;
            default:
                if (part.fault == detail::FrameFault::not_a_continuation) {
                    // A producer that replaced a dead one started afresh: the half record is
                    // dropped, and this segment is parsed from its start.
                    reassembling = false;
                    in_flight = 0;
                    return Continued::dropped;
                }
                // The status goes back as Continued::error; fail() records the message.
                if (part.fault == detail::FrameFault::short_continuation) {
                    static_cast<void>(fail(Status::corrupt, "continuation segment of " + std::to_string(view.payload.size()) + " bytes (sealed " +
                                              std::to_string(view.sealed) + ") for " + std::to_string(needed) +
                                              " bytes still needed"));
                } else {
                    static_cast<void>(fail(Status::corrupt, "first record offset " + std::to_string(view.first_record_offset) +
                                              " disagrees with the record's end at " + std::to_string(needed)));
                }
                return Continued::error;
        }
        std::memcpy(buffer.get() + copied, part.bytes.data(), part.bytes.size());
        copied += part.bytes.size();
        if (part.spans) {
            // The whole segment is continuation (a segment may also end a continuation and
            // start another spanning record: both flags, but then the record ends here).
            advance_segment();
            if (release_if_ring_held() != Status::ok) return Continued::error;
            return Continued::pending;
        }
        offset = static_cast<std::uint32_t>(part.next);
        reassembling = false;
        return Continued::complete;
    }
};

RecordReader RecordReader::attach(std::string_view name, ChannelOptions options) {
    options.framing = Framing::records;
    auto state = std::make_unique<State>(Consumer::attach(name, options));
    State& s = *state;
    s.capacity = s.consumer.payload_capacity();
    s.segment_count = s.consumer.segment_count();
    s.max_record = std::min<std::uint64_t>(s.consumer.max_record_bytes(), L::kMaxRecordsFramingRecord);
    s.checksums = (s.consumer.channel_flags() & L::kFlagChecksums) != 0;
    detail::ResumePoint resume = s.hooks().resume_point();
    s.position = s.floor = resume.position;
    // A frame starts 8-aligned; a record inside a run frame may start anywhere in the run:
    // locate_resume_point() checks the offset against the segment's frames at the first read.
    if (resume.offset > s.capacity) {
        throw Error(Errc::corrupt, "channel '" + std::string(name) + "': resume offset " + std::to_string(resume.offset) +
                                       " is beyond the segment's payload");
    }
    s.offset = static_cast<std::uint32_t>(resume.offset);
    s.locate_resume = s.offset != 0;
    s.stored_in_flight = resume.in_flight_record_bytes;
    s.cur.max_record = s.max_record;
    s.cur.resume_point = s.hooks().resume_point_field();
    if (resume.in_flight_record_bytes > s.max_record) {
        throw Error(Errc::corrupt, "channel '" + std::string(name) + "': in-flight record size " +
                                       std::to_string(resume.in_flight_record_bytes) + " exceeds the maximum record size " +
                                       std::to_string(s.max_record));
    }
    if (resume.in_flight_record_bytes != 0) {
        s.report_lost = true;
        s.lost_bytes = resume.in_flight_record_bytes;
        s.skip_continuation = true;
        s.offset = 0;
        s.locate_resume = false;
    }
    return RecordReader(std::move(state));
}

RecordReader::RecordReader(std::unique_ptr<State> state) : state_(std::move(state)), cursor_(&state_->cur) {}
RecordReader::RecordReader(RecordReader&& other) noexcept
    : state_(std::move(other.state_)),
      cursor_(std::exchange(other.cursor_, nullptr)),
      checked_type_(std::exchange(other.checked_type_, nullptr)) {}
RecordReader& RecordReader::operator=(RecordReader&& other) noexcept {
    state_ = std::move(other.state_);
    cursor_ = std::exchange(other.cursor_, nullptr);
    checked_type_ = std::exchange(other.checked_type_, nullptr);
    return *this;
}
RecordReader::~RecordReader() = default;

Status RecordReader::read_slow(Record& out) { return state_->slow_read(out, Deadline::make(Mode::blocking, {})); }
Status RecordReader::try_read_slow(Record& out) { return state_->slow_read(out, Deadline::make(Mode::try_once, {})); }
Status RecordReader::read_for(Record& out, std::chrono::nanoseconds timeout) {
    return state_->slow_read(out, Deadline::make(Mode::timed, timeout));
}
const Record& RecordReader::last() const noexcept { return state_->last; }
Record& RecordReader::last_slot() noexcept { return state_->last; }
void RecordReader::skip_through(RecordPosition position) {
    if (state_->cur.in_batch) return;  // refused inside a read_batch handler (documented)
    state_->skipping = true;
    state_->skip_through = position;
    state_->arm_fast_path();
}
void RecordReader::remove_channel() { state_->consumer.remove_channel(); }
Consumer& RecordReader::consumer() noexcept { return state_->consumer; }
const std::string& RecordReader::last_error() const noexcept { return state_->last_error; }
bool RecordReader::check_type(const void* tag, std::string_view type) {
    return check_record_type(state_->consumer, state_->last_error, tag, type, checked_type_);
}

}  // namespace shmchan
