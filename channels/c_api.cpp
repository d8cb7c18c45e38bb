// SPDX-License-Identifier: Apache-2.0
// The C API (channels/shmchan.h) over RecordWriter and RecordReader. Every function is noexcept
// and catches everything the C++ side may throw (Error at attach, bad_alloc): no exception and no
// C++ type crosses into C. A handle owns its C++ object and the message of its last failure.
#include "shmchan.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <span>
#include <string>

#include "records.hpp"
#include "shmchan/version.hpp"

namespace {

using shmchan::Status;

// The C statuses are the C++ ones: a change to either must show here.
static_assert(SHMCHAN_OK == static_cast<int>(Status::ok));
static_assert(SHMCHAN_WOULD_BLOCK == static_cast<int>(Status::would_block));
static_assert(SHMCHAN_TIMED_OUT == static_cast<int>(Status::timed_out));
static_assert(SHMCHAN_END_OF_STREAM == static_cast<int>(Status::end_of_stream));
static_assert(SHMCHAN_PEER_DIED == static_cast<int>(Status::peer_died));
static_assert(SHMCHAN_CORRUPT == static_cast<int>(Status::corrupt));
static_assert(SHMCHAN_INVALID_CALL == static_cast<int>(Status::invalid_call));
static_assert(SHMCHAN_INTERRUPTED == static_cast<int>(Status::interrupted));
static_assert(SHMCHAN_EVENT == static_cast<int>(Status::event));
static_assert(SHMCHAN_RECORD_LOST == static_cast<int>(Status::record_lost));
static_assert(SHMCHAN_DECODE_ERROR == static_cast<int>(Status::decode_error));
static_assert(SHMCHAN_TOO_LARGE == static_cast<int>(Status::too_large));
static_assert(SHMCHAN_INCOMPATIBLE == static_cast<int>(Status::incompatible));
static_assert(SHMCHAN_KIND_RECORD == static_cast<int>(shmchan::RecordKind::record));
static_assert(SHMCHAN_KIND_BARRIER == static_cast<int>(shmchan::RecordKind::barrier));
static_assert(SHMCHAN_KIND_USER_EVENT == static_cast<int>(shmchan::RecordKind::user_event));
static_assert(SHMCHAN_KIND_IN_FLIGHT_END == static_cast<int>(shmchan::RecordKind::in_flight_end));

std::chrono::nanoseconds ns(std::int64_t value) { return std::chrono::nanoseconds(value); }

void fill_error(shmchan_error* error, int code, const char* message) noexcept {
    if (!error) return;
    error->code = code;
    std::snprintf(error->message, sizeof error->message, "%s", message);
}

// C options -> ChannelOptions; false (and `problem`) for a value the C struct cannot mean.
bool to_options(const shmchan_options* in, shmchan::ChannelOptions& out, const char*& problem) {
    if (!in) return true;
    if (in->segment_size) out.segment_size = in->segment_size;
    if (in->segments) out.segment_count = in->segments;
    if (in->consumers) out.consumers = in->consumers;
    switch (in->wait) {
        case SHMCHAN_WAIT_DEFAULT: case SHMCHAN_WAIT_HYBRID: out.wait = shmchan::WaitStrategy::hybrid; break;
        case SHMCHAN_WAIT_SPIN: out.wait = shmchan::WaitStrategy::spin; break;
        case SHMCHAN_WAIT_PARK: out.wait = shmchan::WaitStrategy::park; break;
        default: problem = "options: wait is not one of SHMCHAN_WAIT_*"; return false;
    }
    out.checksums = in->checksums != 0;
    switch (in->on_leftover) {
        case SHMCHAN_LEFTOVER_RESUME: out.on_leftover = shmchan::OnLeftover::resume; break;
        case SHMCHAN_LEFTOVER_FRESH: out.on_leftover = shmchan::OnLeftover::fresh; break;
        default: problem = "options: on_leftover is not one of SHMCHAN_LEFTOVER_*"; return false;
    }
    if (in->max_record_bytes) out.max_record_bytes = in->max_record_bytes;
    if (in->buffer_timeout_ns == SHMCHAN_FLUSH_EVERY_RECORD) {
        out.buffer_timeout = std::chrono::nanoseconds(0);
    } else if (in->buffer_timeout_ns > 0) {
        out.buffer_timeout = ns(in->buffer_timeout_ns);
    } else if (in->buffer_timeout_ns < 0) {
        problem = "options: buffer_timeout_ns is negative (SHMCHAN_FLUSH_EVERY_RECORD for a zero timeout)";
        return false;
    }
    if (in->spin_budget_ns < 0 || in->liveness_interval_ns < 0 || in->ready_timeout_ns < 0) {
        problem = "options: a negative duration";
        return false;
    }
    if (in->spin_budget_ns) out.spin_budget = ns(in->spin_budget_ns);
    if (in->liveness_interval_ns) out.liveness_interval = ns(in->liveness_interval_ns);
    if (in->ready_timeout_ns) out.ready_timeout = ns(in->ready_timeout_ns);
    if (in->mode) out.mode = static_cast<mode_t>(in->mode);
    if (in->allowed_owner_set) out.allowed_owner = static_cast<uid_t>(in->allowed_owner);
    for (std::uint32_t word : in->reserved_) {
        if (word != 0) {
            problem = "options: reserved fields must be zero";
            return false;
        }
    }
    return true;
}

// Attaches a side; Handle holds `T side` and `std::string error`.
template <class Handle, class Side>
int attach(const char* name, const shmchan_options* options, Handle** out, shmchan_error* error) noexcept {
    if (out) *out = nullptr;
    if (!name || !out) {
        fill_error(error, static_cast<int>(shmchan::Errc::bad_options), "attach: name and out must not be NULL");
        return SHMCHAN_SETUP_ERROR;
    }
    try {
        shmchan::ChannelOptions cpp_options;
        const char* problem = nullptr;
        if (!to_options(options, cpp_options, problem)) {
            std::string message = "channel '" + shmchan::escaped(name) + "': " + problem;
            fill_error(error, static_cast<int>(shmchan::Errc::bad_options), message.c_str());
            return SHMCHAN_SETUP_ERROR;
        }
        *out = new Handle{Side::attach(name, cpp_options), std::string()};
        return SHMCHAN_OK;
    } catch (const shmchan::Error& e) {
        fill_error(error, e.code().value(), e.what());
        return SHMCHAN_SETUP_ERROR;
    } catch (const std::bad_alloc&) {
        fill_error(error, ENOMEM, "out of memory");
        return SHMCHAN_NO_MEMORY;
    } catch (const std::exception& e) {
        fill_error(error, EIO, e.what());
        return SHMCHAN_SETUP_ERROR;
    } catch (...) {
        fill_error(error, EIO, "unknown error");
        return SHMCHAN_SETUP_ERROR;
    }
}

}  // namespace

struct shmchan_writer {
    shmchan::RecordWriter side;
    std::string error;  // a failure of the binding itself (NULL argument); else the writer's
};
struct shmchan_reader {
    shmchan::RecordReader side;
    std::string error;
    shmchan::Record record {};
    shmchan::RecordRun run {};
};

namespace {

// Runs `call` (returns Status) on a handle; a throw becomes a status and a message.
template <class Handle, class Call>
int guarded(Handle* handle, Call&& call) noexcept {
    if (!handle) return SHMCHAN_INVALID_CALL;
    try {
        handle->error.clear();
        return static_cast<int>(call(handle->side));
    } catch (const std::bad_alloc&) {
        handle->error = "out of memory";
        return SHMCHAN_NO_MEMORY;
    } catch (const std::exception& e) {
        try {
            handle->error = e.what();
        } catch (...) {
        }
        return SHMCHAN_INVALID_CALL;
    } catch (...) {
        return SHMCHAN_INVALID_CALL;
    }
}

template <class Handle>
int null_argument(Handle* handle, const char* what) noexcept {
    if (!handle) return SHMCHAN_INVALID_CALL;
    try {
        handle->error = what;
    } catch (...) {
    }
    return SHMCHAN_INVALID_CALL;
}

std::span<const std::byte> bytes_of(const void* data, std::size_t size) {
    return {static_cast<const std::byte*>(data), size};
}

void to_c(const shmchan::Record& in, shmchan_record* out) noexcept {
    out->kind = static_cast<int>(in.kind);
    out->event_type = in.event_type;
    out->data = in.bytes.data();
    out->size = in.bytes.size();
    out->checkpoint_id = in.checkpoint_id;
    out->position_segment = in.position.segment;
    out->position_offset = in.position.offset;
    out->lost_bytes = in.lost_bytes;
}

void to_c(const shmchan::RecordRun& in, shmchan_run* out) noexcept {
    out->data = in.bytes.data();
    out->record_size = in.record_size;
    out->count = in.count;
    out->position_segment = in.position.segment;
    out->position_offset = in.position.offset;
}

}  // namespace

// The definitions take C linkage from their declarations in shmchan.h.

const char* shmchan_status_string(int status) noexcept {
    if (status == SHMCHAN_SETUP_ERROR) return "setup_error";
    if (status == SHMCHAN_NO_MEMORY) return "no_memory";
    if (status < 0 || status > SHMCHAN_INCOMPATIBLE) return "unknown";
    return shmchan::to_string(static_cast<Status>(status));
}

const char* shmchan_version(void) noexcept { return SHMCHAN_VERSION_STRING; }

// ---- Writer ----------------------------------------------------------------------------------

int shmchan_writer_attach(const char* name, const shmchan_options* options, shmchan_writer** out,
                          shmchan_error* error) noexcept {
    return attach<shmchan_writer, shmchan::RecordWriter>(name, options, out, error);
}

void shmchan_writer_detach(shmchan_writer* writer) noexcept { delete writer; }

const char* shmchan_writer_last_error(const shmchan_writer* writer) noexcept {
    if (!writer) return "no writer (NULL)";
    return writer->error.empty() ? writer->side.last_error().c_str() : writer->error.c_str();
}

int shmchan_write(shmchan_writer* writer, const void* data, size_t size) noexcept {
    if (!data && size) return null_argument(writer, "write: data is NULL");
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.write(bytes_of(data, size)); });
}
int shmchan_try_write(shmchan_writer* writer, const void* data, size_t size) noexcept {
    if (!data && size) return null_argument(writer, "try_write: data is NULL");
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.try_write(bytes_of(data, size)); });
}
int shmchan_write_for(shmchan_writer* writer, const void* data, size_t size, int64_t timeout_ns) noexcept {
    if (!data && size) return null_argument(writer, "write_for: data is NULL");
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.write_for(bytes_of(data, size), ns(timeout_ns)); });
}

namespace {
template <class Call>
int batch(shmchan_writer* writer, const void* data, size_t record_size, size_t count, size_t* written,
          Call&& call) noexcept {
    if (written) *written = 0;
    if (!written || (!data && count)) return null_argument(writer, "write_batch: data or written is NULL");
    if (record_size == 0 || (count && record_size > SIZE_MAX / count)) {
        return null_argument(writer, "write_batch: record_size is 0 or record_size * count overflows");
    }
    if (count == 0) return SHMCHAN_OK;
    return guarded(writer, [&](shmchan::RecordWriter& w) {
        return call(w, bytes_of(data, record_size * count), *written);
    });
}
}  // namespace

int shmchan_write_batch(shmchan_writer* writer, const void* data, size_t record_size, size_t count,
                        size_t* written) noexcept {
    return batch(writer, data, record_size, count, written,
                 [&](shmchan::RecordWriter& w, std::span<const std::byte> b, std::size_t& n) { return w.write_batch(b, record_size, n); });
}
int shmchan_try_write_batch(shmchan_writer* writer, const void* data, size_t record_size, size_t count,
                            size_t* written) noexcept {
    return batch(writer, data, record_size, count, written, [&](shmchan::RecordWriter& w, std::span<const std::byte> b, std::size_t& n) {
        return w.try_write_batch(b, record_size, n);
    });
}
int shmchan_write_batch_for(shmchan_writer* writer, const void* data, size_t record_size, size_t count,
                            size_t* written, int64_t timeout_ns) noexcept {
    return batch(writer, data, record_size, count, written, [&](shmchan::RecordWriter& w, std::span<const std::byte> b, std::size_t& n) {
        return w.write_batch_for(b, record_size, n, ns(timeout_ns));
    });
}

namespace {
template <class Call>
int reserve(shmchan_writer* writer, void** out, Call&& call) noexcept {
    if (!out) return null_argument(writer, "reserve: out is NULL");
    *out = nullptr;
    return guarded(writer, [&](shmchan::RecordWriter& w) {
        std::span<std::byte> room;
        Status status = call(w, room);
        if (status == Status::ok) *out = room.data();
        return status;
    });
}
}  // namespace

int shmchan_reserve(shmchan_writer* writer, size_t size, void** out) noexcept {
    return reserve(writer, out, [&](shmchan::RecordWriter& w, std::span<std::byte>& room) { return w.reserve(size, room); });
}
int shmchan_try_reserve(shmchan_writer* writer, size_t size, void** out) noexcept {
    return reserve(writer, out, [&](shmchan::RecordWriter& w, std::span<std::byte>& room) { return w.try_reserve(size, room); });
}
int shmchan_reserve_for(shmchan_writer* writer, size_t size, void** out, int64_t timeout_ns) noexcept {
    return reserve(writer, out, [&](shmchan::RecordWriter& w, std::span<std::byte>& room) {
        return w.reserve_for(size, room, ns(timeout_ns));
    });
}
int shmchan_commit(shmchan_writer* writer, size_t used) noexcept {
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.commit(used); });
}

int shmchan_write_barrier(shmchan_writer* writer, uint64_t checkpoint_id, int priority) noexcept {
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.write_barrier(checkpoint_id, priority != 0); });
}
int shmchan_write_event(shmchan_writer* writer, uint16_t event_type, const void* payload, size_t size) noexcept {
    if (!payload && size) return null_argument(writer, "write_event: payload is NULL");
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.write_event(event_type, bytes_of(payload, size)); });
}
int shmchan_flush(shmchan_writer* writer) noexcept {
    return guarded(writer, [](shmchan::RecordWriter& w) { return w.flush(); });
}
int shmchan_end_stream(shmchan_writer* writer) noexcept {
    return guarded(writer, [](shmchan::RecordWriter& w) { return w.end_stream(); });
}
int shmchan_end_stream_for(shmchan_writer* writer, int64_t timeout_ns) noexcept {
    return guarded(writer, [&](shmchan::RecordWriter& w) { return w.end_stream_for(ns(timeout_ns)); });
}
size_t shmchan_max_inline_record(const shmchan_writer* writer) noexcept {
    return writer ? writer->side.max_inline_record() : 0;
}
uint64_t shmchan_writer_max_record_bytes(const shmchan_writer* writer) noexcept {
    return writer ? writer->side.max_record_bytes() : 0;
}
uint64_t shmchan_completed_records(const shmchan_writer* writer) noexcept {
    return writer ? writer->side.completed_records() : 0;
}

// ---- Reader ----------------------------------------------------------------------------------

int shmchan_reader_attach(const char* name, const shmchan_options* options, shmchan_reader** out,
                          shmchan_error* error) noexcept {
    return attach<shmchan_reader, shmchan::RecordReader>(name, options, out, error);
}

void shmchan_reader_detach(shmchan_reader* reader) noexcept { delete reader; }

const char* shmchan_reader_last_error(const shmchan_reader* reader) noexcept {
    if (!reader) return "no reader (NULL)";
    return reader->error.empty() ? reader->side.last_error().c_str() : reader->error.c_str();
}

namespace {
template <class Call>
int read_one(shmchan_reader* reader, shmchan_record* out, Call&& call) noexcept {
    if (!out) return null_argument(reader, "read: out is NULL");
    *out = shmchan_record{};
    if (!reader) return SHMCHAN_INVALID_CALL;
    return guarded(reader, [&](shmchan::RecordReader& r) {
        Status status = call(r, reader->record);
        if (status == Status::ok || status == Status::record_lost) to_c(reader->record, out);
        return status;
    });
}

template <class Call>
int read_run(shmchan_reader* reader, shmchan_run* out, shmchan_record* event, Call&& call) noexcept {
    if (!out) return null_argument(reader, "read_run: out is NULL");
    *out = shmchan_run{};
    if (event) *event = shmchan_record{};
    if (!reader) return SHMCHAN_INVALID_CALL;
    return guarded(reader, [&](shmchan::RecordReader& r) {
        Status status = call(r, reader->run);
        if (status == Status::ok) to_c(reader->run, out);
        if ((status == Status::event || status == Status::record_lost) && event) to_c(r.last(), event);
        return status;
    });
}
}  // namespace

int shmchan_read(shmchan_reader* reader, shmchan_record* out) noexcept {
    return read_one(reader, out, [](shmchan::RecordReader& r, shmchan::Record& rec) { return r.read(rec); });
}
int shmchan_try_read(shmchan_reader* reader, shmchan_record* out) noexcept {
    return read_one(reader, out, [](shmchan::RecordReader& r, shmchan::Record& rec) { return r.try_read(rec); });
}
int shmchan_read_for(shmchan_reader* reader, shmchan_record* out, int64_t timeout_ns) noexcept {
    return read_one(reader, out, [&](shmchan::RecordReader& r, shmchan::Record& rec) { return r.read_for(rec, ns(timeout_ns)); });
}

int shmchan_read_run(shmchan_reader* reader, shmchan_run* out, size_t limit, shmchan_record* event) noexcept {
    return read_run(reader, out, event, [&](shmchan::RecordReader& r, shmchan::RecordRun& run) { return r.read_run(run, limit); });
}
int shmchan_try_read_run(shmchan_reader* reader, shmchan_run* out, size_t limit, shmchan_record* event) noexcept {
    return read_run(reader, out, event, [&](shmchan::RecordReader& r, shmchan::RecordRun& run) { return r.try_read_run(run, limit); });
}
int shmchan_read_run_for(shmchan_reader* reader, shmchan_run* out, size_t limit, shmchan_record* event,
                         int64_t timeout_ns) noexcept {
    return read_run(reader, out, event, [&](shmchan::RecordReader& r, shmchan::RecordRun& run) {
        return r.read_run_for(run, limit, ns(timeout_ns));
    });
}

int shmchan_skip_through(shmchan_reader* reader, uint64_t position_segment, uint64_t position_offset) noexcept {
    return guarded(reader, [&](shmchan::RecordReader& r) {
        r.skip_through(shmchan::RecordPosition{position_segment, position_offset});
        return Status::ok;
    });
}

int shmchan_remove_channel(shmchan_reader* reader) noexcept {
    return guarded(reader, [](shmchan::RecordReader& r) {
        r.remove_channel();
        return Status::ok;
    });
}
