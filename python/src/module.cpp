// SPDX-License-Identifier: Apache-2.0
// shmchan._shmchan: the Python binding (pybind11) of the records layer. The package's
// __init__.py re-exports it; the API is documented in shmchan/__init__.pyi.
//
// Waiting: every call that can wait first tries without waiting (no GIL release on the fast
// path); otherwise it releases the GIL and waits in slices of at most kSlice with the library's
// timed calls, which wait only before a record's first byte (nothing is ever half written).
// Between slices, and when a signal handler interrupted a sleep (Status::interrupted), it takes
// the GIL back and runs PyErr_CheckSignals(): Ctrl-C raises KeyboardInterrupt within a slice.
//
// Views: a Record exports its bytes through the buffer protocol without a copy. A Record is
// valid until the reader's next read (a generation number); any use of it after that raises.
// Buffers exported before stay memory-safe: an in-place record lies in the channel's mapping,
// which the reader keeps mapped while any export is alive (close() defers the detach until the
// last one is released); a record that may have been reassembled from several segments (the
// reader's buffer, reused by later reads) is copied into the Record first.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <dirent.h>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "channels/channel.hpp"
#include "channels/layout.hpp"
#include "channels/records.hpp"
#include "shm/error.hpp"
#include "shm/process.hpp"
#include "shm/region.hpp"
#include "shmchan/version.hpp"

namespace py = pybind11;
namespace L = shmchan::layout;
using shmchan::Status;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::chrono::milliseconds kSlice{100};

// ---- Exceptions ------------------------------------------------------------------------------

PyObject* g_error = nullptr;          // shmchan.Error(Exception), .code
PyObject* g_peer_died = nullptr;      // shmchan.PeerDied(Error)
PyObject* g_corrupt = nullptr;        // shmchan.Corrupt(Error)
PyObject* g_invalid = nullptr;        // shmchan.InvalidArgument(Error, ValueError)
PyObject* g_stale = nullptr;          // shmchan.StaleRecord(Error)

[[noreturn]] void raise(PyObject* type, const std::string& code, const std::string& message) {
    py::object exc = py::reinterpret_steal<py::object>(PyObject_CallFunction(type, "s", message.c_str()));
    if (!exc) throw py::error_already_set();
    exc.attr("code") = code;
    PyErr_SetObject(type, exc.ptr());
    throw py::error_already_set();
}

[[noreturn]] void raise_invalid(const std::string& message) { raise(g_invalid, "bad_options", message); }

std::string errc_name(const std::error_code& code) {
    if (code.category() == shmchan::shmchan_category()) {
        switch (static_cast<shmchan::Errc>(code.value())) {
            case shmchan::Errc::bad_name: return "bad_name";
            case shmchan::Errc::bad_magic: return "bad_magic";
            case shmchan::Errc::bad_version: return "bad_version";
            case shmchan::Errc::corrupt: return "corrupt";
            case shmchan::Errc::not_ready: return "not_ready";
            case shmchan::Errc::geometry_mismatch: return "geometry_mismatch";
            case shmchan::Errc::framing_mismatch: return "framing_mismatch";
            case shmchan::Errc::side_taken: return "side_taken";
            case shmchan::Errc::stream_ended: return "stream_ended";
            case shmchan::Errc::unsafe_file: return "unsafe_file";
            case shmchan::Errc::bad_options: return "bad_options";
            case shmchan::Errc::type_mismatch: return "type_mismatch";
        }
        return "error";
    }
    // errno: its symbolic name, as Python's errno.errorcode has it.
    py::object names = py::module_::import("errno").attr("errorcode");
    py::object name = names.attr("get")(code.value(), "errno " + std::to_string(code.value()));
    return py::cast<std::string>(name);
}

[[noreturn]] void raise_setup(const shmchan::Error& error) {
    const std::string code = errc_name(error.code());
    PyObject* type = g_error;
    if (error.code() == shmchan::Errc::bad_name || error.code() == shmchan::Errc::bad_options) type = g_invalid;
    if (error.code() == shmchan::Errc::corrupt || error.code() == shmchan::Errc::bad_magic ||
        error.code() == shmchan::Errc::bad_version) {
        type = g_corrupt;
    }
    raise(type, code, error.what());
}

// A status that is not ok as an exception (ok, would_block and end_of_stream are the caller's).
[[noreturn]] void raise_status(Status status, const std::string& what, const std::string& last_error) {
    std::string message = what + ": " + (last_error.empty() ? shmchan::to_string(status) : last_error);
    switch (status) {
        case Status::timed_out:
        case Status::would_block:
            PyErr_SetString(PyExc_TimeoutError, (what + ": timed out").c_str());
            throw py::error_already_set();
        case Status::peer_died: raise(g_peer_died, "peer_died", message);
        case Status::corrupt: raise(g_corrupt, "corrupt", message);
        case Status::too_large: raise(g_invalid, "too_large", message);
        default: raise(g_error, shmchan::to_string(status), message);
    }
}

// ---- Options ---------------------------------------------------------------------------------

template <class T>
T integer_option(const char* key, py::handle value, std::uint64_t low, std::uint64_t high) {
    if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr())) {
        raise_invalid(std::string("option ") + key + ": an integer, not " + py::str(py::type::of(value)).cast<std::string>());
    }
    long long v = 0;
    try {
        v = value.cast<long long>();
    } catch (const py::cast_error&) {
        raise_invalid(std::string("option ") + key + ": out of range");
    }
    if (v < 0 || static_cast<std::uint64_t>(v) < low || static_cast<std::uint64_t>(v) > high) {
        raise_invalid(std::string("option ") + key + "=" + std::to_string(v) + ": out of range " + std::to_string(low) +
                      ".." + std::to_string(high));
    }
    return static_cast<T>(v);
}

std::chrono::nanoseconds seconds_option(const char* key, py::handle value, bool allow_zero) {
    if (!(PyFloat_Check(value.ptr()) || PyLong_Check(value.ptr())) || PyBool_Check(value.ptr())) {
        raise_invalid(std::string("option ") + key + ": a number of seconds");
    }
    double seconds = value.cast<double>();
    if (!std::isfinite(seconds) || seconds < 0 || (!allow_zero && seconds == 0) || seconds > 1e9) {
        raise_invalid(std::string("option ") + key + "=" + py::str(value).cast<std::string>() + ": out of range");
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

shmchan::ChannelOptions to_options(const py::kwargs& kwargs) {
    shmchan::ChannelOptions o;
    for (auto item : kwargs) {
        const std::string key = py::cast<std::string>(item.first);
        py::handle value = item.second;
        if (value.is_none()) continue;  // None: the default
        if (key == "segment_size") {
            o.segment_size = integer_option<std::uint32_t>("segment_size", value, 4096, 1u << 30);
        } else if (key == "segments") {
            o.segment_count = integer_option<std::uint32_t>("segments", value, 1, 1u << 20);
        } else if (key == "consumers") {
            o.consumers = integer_option<std::uint32_t>("consumers", value, 1, L::kMaxConsumers);
        } else if (key == "consumer_slot") {
            o.consumer_slot = integer_option<std::uint32_t>("consumer_slot", value, 0, L::kMaxConsumers - 1);
        } else if (key == "wait") {
            if (!PyUnicode_Check(value.ptr())) raise_invalid("option wait: 'spin', 'hybrid' or 'park'");
            auto strategy = shmchan::wait_strategy_from_string(value.cast<std::string>());
            if (!strategy) raise_invalid("option wait='" + value.cast<std::string>() + "': 'spin', 'hybrid' or 'park'");
            o.wait = *strategy;
        } else if (key == "buffer_timeout") {
            o.buffer_timeout = seconds_option("buffer_timeout", value, true);
        } else if (key == "spin_budget") {
            o.spin_budget = seconds_option("spin_budget", value, true);
        } else if (key == "liveness_interval") {
            o.liveness_interval = seconds_option("liveness_interval", value, false);
        } else if (key == "ready_timeout") {
            o.ready_timeout = seconds_option("ready_timeout", value, false);
        } else if (key == "debloat_target") {
            o.debloat_target = seconds_option("debloat_target", value, true);
        } else if (key == "debloat_period") {
            o.debloat_period = seconds_option("debloat_period", value, false);
        } else if (key == "record_type") {
            if (!PyUnicode_Check(value.ptr())) raise_invalid("option record_type: a str, the name of the records' type");
            o.record_type = value.cast<std::string>();
        } else if (key == "checksums") {
            if (!PyBool_Check(value.ptr())) raise_invalid("option checksums: True or False");
            o.checksums = value.cast<bool>();
        } else if (key == "max_record_bytes") {
            o.max_record_bytes = integer_option<std::uint64_t>("max_record_bytes", value, 1, std::uint64_t{1} << 40);
        } else if (key == "mode") {
            o.mode = integer_option<mode_t>("mode", value, 0, 07777);
        } else if (key == "allowed_owner") {
            o.allowed_owner = integer_option<uid_t>("allowed_owner", value, 0, std::numeric_limits<uid_t>::max() - 1);
        } else if (key == "on_leftover") {
            std::string text = PyUnicode_Check(value.ptr()) ? value.cast<std::string>() : std::string();
            if (text == "resume") {
                o.on_leftover = shmchan::OnLeftover::resume;
            } else if (text == "fresh") {
                o.on_leftover = shmchan::OnLeftover::fresh;
            } else {
                raise_invalid("option on_leftover: 'resume' or 'fresh'");
            }
        } else {
            PyErr_SetString(PyExc_TypeError, ("unexpected option '" + key + "'").c_str());
            throw py::error_already_set();
        }
    }
    return o;
}

// A timeout argument: None (no limit) or seconds >= 0.
std::optional<Clock::time_point> deadline_of(py::handle timeout) {
    if (timeout.is_none()) return std::nullopt;
    if (!(PyFloat_Check(timeout.ptr()) || PyLong_Check(timeout.ptr())) || PyBool_Check(timeout.ptr())) {
        raise_invalid("timeout: None or a number of seconds");
    }
    double seconds = timeout.cast<double>();
    if (std::isnan(seconds) || seconds < 0) raise_invalid("timeout: None or a number of seconds >= 0");
    if (seconds > 1e9) return std::nullopt;
    return Clock::now() + std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

// Waits by calling `attempt(slice)` (a timed library call) with the GIL released, in slices, until
// it returns something other than timed_out / interrupted or the deadline passes (timed_out).
// Signals are checked between slices (KeyboardInterrupt propagates as error_already_set).
template <class Attempt>
Status wait_loop(std::optional<Clock::time_point> deadline, Attempt&& attempt) {
    for (;;) {
        std::chrono::nanoseconds slice = kSlice;
        if (deadline) {
            auto left = *deadline - Clock::now();
            if (left <= Clock::duration::zero()) return Status::timed_out;
            slice = std::min<std::chrono::nanoseconds>(slice, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
        }
        Status status;
        {
            py::gil_scoped_release release;
            status = attempt(slice);
        }
        if (status != Status::timed_out && status != Status::interrupted) return status;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
}

// One thread at a time drives a handle: a second one gets an error instead of undefined behaviour.
struct BusyGuard {
    bool& busy;
    explicit BusyGuard(bool& flag, const char* what) : busy(flag) {
        if (busy) {
            PyErr_SetString(PyExc_RuntimeError,
                            (std::string(what) + ": the handle is in use by another thread (one thread at a time)").c_str());
            throw py::error_already_set();
        }
        busy = true;
    }
    ~BusyGuard() { busy = false; }
};

// The bytes of a C-contiguous buffer, held for the duration of a call.
struct HeldBuffer {
    Py_buffer view{};
    bool held = false;
    HeldBuffer(py::handle object, const char* what) {
        if (PyObject_GetBuffer(object.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) {
            if (PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                raise_invalid(std::string(what) + ": a C-contiguous buffer (bytes, bytearray, memoryview, numpy array)");
            }
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, (std::string(what) + ": a bytes-like object, not " +
                                                  py::str(py::type::of(object)).cast<std::string>()).c_str());
            }
            throw py::error_already_set();
        }
        held = true;
    }
    ~HeldBuffer() {
        if (held) PyBuffer_Release(&view);
    }
    std::span<const std::byte> bytes() const {
        return {static_cast<const std::byte*>(view.buf), static_cast<std::size_t>(view.len)};
    }
};

// ---- Writer ----------------------------------------------------------------------------------

class Writer {
public:
    Writer(const std::string& name, const py::kwargs& kwargs) : name_(name) {
        shmchan::ChannelOptions options = to_options(kwargs);
        try {
            py::gil_scoped_release release;  // attach may wait (bounded) for a concurrent creator
            writer_.emplace(shmchan::RecordWriter::attach(name, options));
        } catch (const shmchan::Error& error) {
            raise_setup(error);
        }
        capacity_ = writer_->producer().payload_capacity();
        segments_ = writer_->producer().segment_count();
    }

    void write(py::handle object, py::handle timeout) {
        auto& w = live("write");
        BusyGuard guard(busy_, "write");
        auto deadline = deadline_of(timeout);
        HeldBuffer buffer(object, "write");
        auto bytes = buffer.bytes();
        Status status = w.try_write(bytes);
        if (status == Status::would_block || (status == Status::invalid_call && larger_than_ring(bytes.size()))) {
            if (larger_than_ring(bytes.size())) {
                // Only the blocking call writes a record larger than the ring (it hands its first
                // segments over before the last are free); interrupted mid-record, the record is
                // dropped (readers never see part of it) and KeyboardInterrupt is raised.
                if (deadline) raise_invalid("write: a record larger than the ring cannot be written with a timeout");
                status = wait_loop(std::nullopt, [&](std::chrono::nanoseconds) { return w.write(bytes); });
            } else {
                status = wait_loop(deadline, [&](std::chrono::nanoseconds slice) { return w.write_for(bytes, slice); });
            }
        }
        check(status, "write");
    }

    std::size_t write_array(py::handle array, py::handle timeout) {
        auto& w = live("write_array");
        BusyGuard guard(busy_, "write_array");
        py::module_ np = py::module_::import("numpy");
        if (!py::isinstance(array, np.attr("ndarray"))) {
            PyErr_SetString(PyExc_TypeError, "write_array: a numpy.ndarray");
            throw py::error_already_set();
        }
        py::object a = py::reinterpret_borrow<py::object>(array);
        if (a.attr("ndim").cast<int>() != 1) raise_invalid("write_array: a 1-D array (one record per element)");
        py::object dtype = a.attr("dtype");
        if (dtype.attr("hasobject").cast<bool>()) raise_invalid("write_array: a fixed-size dtype, not one holding Python objects");
        const std::size_t itemsize = dtype.attr("itemsize").cast<std::size_t>();
        if (itemsize == 0) raise_invalid("write_array: a dtype of at least one byte");
        if (!a.attr("flags").attr("c_contiguous").cast<bool>()) a = np.attr("ascontiguousarray")(a);
        auto deadline = deadline_of(timeout);
        HeldBuffer buffer(a, "write_array");
        auto bytes = buffer.bytes();
        std::size_t total = 0;
        Status status = Status::ok;
        while (total * itemsize < bytes.size()) {
            std::size_t written = 0;
            auto rest = bytes.subspan(total * itemsize);
            status = w.try_write_batch(rest, itemsize, written);
            total += written;
            if (status == Status::would_block) {
                status = wait_loop(deadline, [&](std::chrono::nanoseconds slice) {
                    std::size_t n = 0;
                    Status s = w.write_batch_for(bytes.subspan(total * itemsize), itemsize, n, slice);
                    total += n;
                    // Progress counts: a slice that wrote some records and then timed out continues.
                    return s == Status::timed_out && n > 0 ? Status::ok : s;
                });
            }
            if (status != Status::ok) break;
        }
        check(status, "write_array");
        return total;
    }

    // Barriers and events do not wait once the held segment has room for their frame: wait for
    // that room with reserve_for (dropped by the event that follows), then write.
    void write_barrier(std::uint64_t checkpoint_id, bool priority, py::handle timeout) {
        auto& w = live("write_barrier");
        BusyGuard guard(busy_, "write_barrier");
        room_for(w, sizeof checkpoint_id, deadline_of(timeout), "write_barrier");
        check(w.write_barrier(checkpoint_id, priority), "write_barrier");
    }

    void write_event(int kind, py::handle data, py::handle timeout) {
        auto& w = live("write_event");
        BusyGuard guard(busy_, "write_event");
        auto deadline = deadline_of(timeout);
        if (kind < 0 || kind > 0xffff) raise_invalid("write_event: kind is 0..65535");
        std::optional<HeldBuffer> buffer;
        std::span<const std::byte> bytes;
        if (!data.is_none()) {
            buffer.emplace(data, "write_event");
            bytes = buffer->bytes();
        }
        if (bytes.size() > L::kMaxEventPayload) raise_invalid("write_event: a payload of at most 1024 bytes");
        room_for(w, bytes.size(), deadline, "write_event");
        check(w.write_event(static_cast<std::uint16_t>(kind), bytes), "write_event");
    }

    void flush() {
        auto& w = live("flush");
        BusyGuard guard(busy_, "flush");
        check(w.flush(), "flush");
    }

    void end_stream(py::handle timeout) {
        auto& w = live("end_stream");
        BusyGuard guard(busy_, "end_stream");
        auto deadline = deadline_of(timeout);
        Status status = wait_loop(deadline, [&](std::chrono::nanoseconds slice) { return w.end_stream_for(slice); });
        check(status, "end_stream");
    }

    void close() {
        if (busy_) {
            PyErr_SetString(PyExc_RuntimeError, "close: the writer is in use by another thread");
            throw py::error_already_set();
        }
        writer_.reset();
    }
    bool closed() const { return !writer_; }
    std::uint64_t completed_records() { return live("completed_records").completed_records(); }
    std::size_t max_inline_record() { return live("max_inline_record").max_inline_record(); }
    std::uint64_t max_record_bytes() { return live("max_record_bytes").max_record_bytes(); }
    const std::string& name() const { return name_; }

private:
    shmchan::RecordWriter& live(const char* what) {
        if (!writer_) raise(g_error, "closed", std::string(what) + ": the writer of channel '" + name_ + "' is closed");
        return *writer_;
    }
    // A record that may need more segments than the ring has (the library's segments_needed()
    // at its worst: a fresh segment, then the frame's bytes): only the blocking call writes it.
    bool larger_than_ring(std::size_t size) const {
        const std::uint64_t frame = static_cast<std::uint64_t>(size) + L::kFrameHeaderBytes + L::kRunHeaderBytes + 64;
        if (frame <= capacity_) return false;
        return 1 + (frame + capacity_ - 1) / capacity_ > segments_;
    }
    void room_for(shmchan::RecordWriter& w, std::size_t payload, std::optional<Clock::time_point> deadline, const char* what) {
        std::span<std::byte> room;
        const std::size_t size = std::max<std::size_t>(payload, 1);
        Status status = w.try_reserve(size, room);
        if (status == Status::would_block) {
            status = wait_loop(deadline, [&](std::chrono::nanoseconds slice) { return w.reserve_for(size, room, slice); });
        }
        check(status, what);
    }
    void check(Status status, const char* what) {
        if (status == Status::ok) return;
        raise_status(status, std::string(what) + " (channel '" + name_ + "')", writer_->last_error());
    }

    std::string name_;
    std::optional<shmchan::RecordWriter> writer_;
    std::uint32_t capacity_ = 0, segments_ = 0;
    bool busy_ = false;
};

// ---- Reader and Record -------------------------------------------------------------------------

class Reader;

struct RecordObject {
    py::object reader;           // the Reader (keeps the mapping while the record lives)
    Reader* owner = nullptr;
    std::uint64_t generation = 0;
    std::string kind;            // "record", "barrier", "event"
    const std::byte* data = nullptr;
    std::size_t size = 0;
    std::vector<std::byte> copy;  // a record that may have been reassembled: its own bytes
    std::uint64_t barrier_id = 0;
    int event_kind = 0;
    std::uint64_t segment = 0, offset = 0;
    std::uint64_t in_flight_of = 0;
    bool valid() const;
    void require_valid() const;
};

class Reader {
public:
    Reader(const std::string& name, const py::kwargs& kwargs) : name_(name) {
        shmchan::ChannelOptions options = to_options(kwargs);
        try {
            py::gil_scoped_release release;
            reader_ = std::make_unique<shmchan::RecordReader>(shmchan::RecordReader::attach(name, options));
        } catch (const shmchan::Error& error) {
            raise_setup(error);
        }
        capacity_ = reader_->consumer().payload_capacity();
    }

    // read(): a Record, or None at end of stream.
    py::object read(py::object self, py::handle timeout) {
        auto& r = live("read");
        BusyGuard guard(busy_, "read");
        auto deadline = deadline_of(timeout);
        ++generation_;  // the previous record is finished
        shmchan::Record record;
        Status status = r.try_read(record);
        if (status == Status::would_block) {
            status = wait_loop(deadline, [&](std::chrono::nanoseconds slice) { return r.read_for(record, slice); });
        }
        if (status == Status::end_of_stream) return py::none();
        if (status == Status::record_lost) {
            raise(g_error, "record_lost", "read (channel '" + name_ + "'): a record of " +
                                              std::to_string(record.lost_bytes) +
                                              " bytes was lost when the previous reader died");
        }
        check(status, "read");
        return make_record(self, record.kind, record.bytes, record, record.position, false);
    }

    // read_array(dtype, max_records): a numpy array viewing a run of records, a Record (an
    // event came first: it is consumed), or None at end of stream.
    py::object read_array(py::object self, py::handle dtype_arg, std::size_t max_records, py::handle timeout) {
        auto& r = live("read_array");
        // The dtype of the last call is kept: a loop asks for the same one at every call, and
        // making and checking it costs as much as the read.
        if (!last_dtype_arg_ || !last_dtype_arg_.is(dtype_arg)) {
            py::module_ np = py::module_::import("numpy");
            py::object dtype = np.attr("dtype")(dtype_arg);
            if (dtype.attr("hasobject").cast<bool>()) raise_invalid("read_array: a fixed-size dtype, not one holding Python objects");
            const std::size_t itemsize = dtype.attr("itemsize").cast<std::size_t>();
            if (itemsize == 0) raise_invalid("read_array: a dtype of at least one byte");
            if (!frombuffer_) frombuffer_ = np.attr("frombuffer");
            last_dtype_ = dtype;
            last_itemsize_ = itemsize;
            // A list or dict spec may change between calls: not kept.
            const bool mutable_spec = py::isinstance<py::list>(dtype_arg) || py::isinstance<py::dict>(dtype_arg);
            last_dtype_arg_ = mutable_spec ? py::object() : py::reinterpret_borrow<py::object>(dtype_arg);
        }
        const py::object dtype = last_dtype_;
        const std::size_t itemsize = last_itemsize_;
        if (max_records == 0) raise_invalid("read_array: max_records >= 1");
        py::object holder;
        std::size_t count = 0;
        {
            BusyGuard guard(busy_, "read_array");
            auto deadline = deadline_of(timeout);
            ++generation_;
            shmchan::RecordRun run;
            Status status = r.try_read_run(run, max_records);
            if (status == Status::would_block) {
                status = wait_loop(deadline, [&](std::chrono::nanoseconds slice) { return r.read_run_for(run, max_records, slice); });
            }
            if (status == Status::end_of_stream) return py::none();
            if (status == Status::event) {
                const shmchan::Record& event = r.last();
                return make_record(self, event.kind, event.bytes, event, event.position, false);
            }
            check(status, "read_array");
            if (run.record_size != itemsize) {
                raise(g_invalid, "decode_error",
                      "read_array (channel '" + name_ + "'): records of " + std::to_string(run.record_size) +
                          " bytes, not of the dtype's " + std::to_string(itemsize) + " (they are consumed)");
            }
            shmchan::Record as_record;
            holder = make_record(self, shmchan::RecordKind::record, run.bytes, as_record, run.position, run.count >= 2);
            count = run.count;
        }
        return frombuffer_(holder, dtype, count);  // numpy.frombuffer(buffer, dtype, count)
    }

    void skip_through(py::handle position) {
        auto& r = live("skip_through");
        BusyGuard guard(busy_, "skip_through");
        auto pair = position.cast<std::pair<std::uint64_t, std::uint64_t>>();
        r.skip_through(shmchan::RecordPosition{pair.first, pair.second});
    }

    void remove_channel() {
        auto& r = live("remove_channel");
        try {
            r.remove_channel();
        } catch (const shmchan::Error& error) {
            raise_setup(error);
        }
    }

    // Detaches now, or (while views of records are exported) when the last one is released.
    void close() {
        if (busy_) {
            PyErr_SetString(PyExc_RuntimeError, "close: the reader is in use by another thread");
            throw py::error_already_set();
        }
        ++generation_;
        closing_ = true;
        if (exports_ == 0) reader_.reset();
    }
    bool closed() const { return closing_; }
    const std::string& name() const { return name_; }

    bool is_current(std::uint64_t generation) const { return !closing_ && generation == generation_; }
    void add_export() { ++exports_; }
    void drop_export() {
        if (--exports_ == 0 && closing_) reader_.reset();
    }

private:
    shmchan::RecordReader& live(const char* what) {
        if (closing_ || !reader_) raise(g_error, "closed", std::string(what) + ": the reader of channel '" + name_ + "' is closed");
        return *reader_;
    }
    void check(Status status, const char* what) {
        if (status == Status::ok) return;
        raise_status(status, std::string(what) + " (channel '" + name_ + "')", reader_->last_error());
    }
    // A record's bytes certainly lie in one segment of the mapping (not in the reassembly buffer)
    // when its frame, with the largest header and alignment padding, fits before the end of the
    // segment from where it starts; a run of two or more records never spans.
    bool certainly_in_place(const shmchan::RecordPosition& position, std::size_t size) const {
        const std::uint64_t margin = L::kFrameHeaderBytes + L::kRunHeaderBytes + 64;
        return position.offset <= capacity_ && size <= capacity_ && position.offset + margin + size <= capacity_;
    }
    py::object make_record(py::object self, shmchan::RecordKind kind, std::span<const std::byte> bytes,
                           const shmchan::Record& record, const shmchan::RecordPosition& position, bool run) {
        auto object = std::make_unique<RecordObject>();
        object->reader = self;
        object->owner = this;
        object->generation = generation_;
        switch (kind) {
            case shmchan::RecordKind::record: object->kind = "record"; break;
            case shmchan::RecordKind::barrier: object->kind = "barrier"; break;
            case shmchan::RecordKind::user_event: object->kind = "event"; break;
            case shmchan::RecordKind::in_flight_end: object->kind = "in_flight_end"; break;
        }
        // A view for records that lie in the mapping; a copy for a record that may have been
        // reassembled and for events (at most 1 KiB).
        if (kind == shmchan::RecordKind::record && (run || certainly_in_place(position, bytes.size()))) {
            object->data = bytes.data();
        } else {
            object->copy.assign(bytes.begin(), bytes.end());
            object->data = object->copy.data();
        }
        object->size = bytes.size();
        object->barrier_id = record.checkpoint_id;
        object->event_kind = record.event_type;
        object->segment = position.segment;
        object->offset = position.offset;
        object->in_flight_of = record.in_flight_of;
        return py::cast(object.release(), py::return_value_policy::take_ownership);
    }

    std::string name_;
    std::unique_ptr<shmchan::RecordReader> reader_;
    py::object frombuffer_;                     // numpy.frombuffer, looked up once
    py::object last_dtype_arg_, last_dtype_;    // read_array's last dtype argument, as a dtype
    std::size_t last_itemsize_ = 0;
    std::uint32_t capacity_ = 0;
    std::uint64_t generation_ = 0;
    std::size_t exports_ = 0;
    bool closing_ = false;
    bool busy_ = false;
};

bool RecordObject::valid() const { return owner->is_current(generation); }
void RecordObject::require_valid() const {
    if (!valid()) {
        raise(g_stale, "stale_record",
              "this record is no longer valid: the reader has read past it or was closed (a record's bytes are "
              "valid until the next read; copy them with bytes(record) to keep them)");
    }
}

// The buffer protocol of Record, installed on the type by hand so that exports are counted.
int record_getbuffer(PyObject* self, Py_buffer* view, int flags) {
    try {
        RecordObject& record = py::handle(self).cast<RecordObject&>();
        record.require_valid();
        if ((flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
            PyErr_SetString(PyExc_BufferError, "a record is read-only");
            view->obj = nullptr;
            return -1;
        }
        static const char empty = 0;
        void* data = const_cast<void*>(record.size ? static_cast<const void*>(record.data) : &empty);
        if (PyBuffer_FillInfo(view, self, data, static_cast<Py_ssize_t>(record.size), 1, flags) != 0) return -1;
        record.owner->add_export();
        return 0;
    } catch (py::error_already_set& error) {
        error.restore();
    } catch (const std::exception& error) {
        PyErr_SetString(PyExc_BufferError, error.what());
    }
    view->obj = nullptr;
    return -1;
}

void record_releasebuffer(PyObject* self, Py_buffer*) {
    RecordObject& record = py::handle(self).cast<RecordObject&>();
    record.owner->drop_export();
}

// ---- inspect / list_channels -------------------------------------------------------------------

std::string side_state(const shmchan::ChannelInfo::Side& side) {
    if (side.alive) return "alive";
    if (side.attach_count == 0) return "none";
    if (!side.attached) return "detached";
    if (shmchan::shm::pid_state(side.pid, side.start_time) == shmchan::shm::PidState::reused) return "pid reused";
    return "dead";
}

py::dict side_dict(const shmchan::ChannelInfo::Side& side) {
    py::dict d;
    d["pid"] = side.pid;
    d["alive"] = side.alive;
    d["state"] = side_state(side);
    d["attached"] = side.attached;
    d["attach_count"] = side.attach_count;
    d["start_time"] = side.start_time;
    d["sleeping"] = side.sleeping;
    return d;
}

// The fields of `shm-inspect show --json` (the figures a channel that is not ready lacks: None).
py::dict info_dict(const std::string& name, const shmchan::ChannelInfo& i, const std::string& error) {
    py::dict d;
    d["name"] = name;
    d["path"] = shmchan::shm::region_directory() + "/" + std::string(L::kChannelFilePrefix) + name;
    const bool ready = error.empty() && i.abi_version != 0;
    std::string state;
    if (!error.empty()) {
        state = "corrupt";
    } else if (!ready) {
        state = i.creator_alive ? "creating" : "corrupt";
    } else if (i.end_of_stream) {
        state = "ended";
    } else if ((i.producer.attach_count > 0 && !i.producer.alive) || (i.consumer.attach_count > 0 && !i.consumer.alive)) {
        state = "broken";
    } else {
        state = "active";
    }
    d["state"] = state;
    if (!error.empty()) {
        d["reason"] = error;
    } else if (!ready && !i.creator_alive) {
        d["reason"] = "half-created (no ready mark and no live creator)";
    } else {
        d["reason"] = py::none();
    }
    d["stale"] = error.empty() && !(i.producer.alive || i.consumer.alive || i.creator_alive || i.in_use);
    d["creator_alive"] = i.creator_alive;
    d["in_use"] = i.in_use;
    const char* figures[] = {"abi_version", "segment_size", "segments", "payload_capacity", "total_bytes", "framing",
                             "checksums", "record_type", "max_record_bytes", "created_unix_ms", "end_of_stream", "removed", "producer",
                             "consumer", "published_segments", "released_segments", "unread_segments", "fill",
                             "bytes_written", "records_written", "events_written", "bytes_read", "records_read",
                             "events_read", "wakeups", "producer_wake_syscalls", "consumer_wake_syscalls", "parks",
                             "producer_parks", "consumer_parks", "backpressured_ns", "idle_ns", "last_publish_unix_ms",
                             "last_release_unix_ms", "buffer_timeout_ns", "flushed_segment", "flushed_bytes",
                             "resume_segment", "resume_offset", "in_flight_record_bytes", "in_flight_bytes",
                             "estimated_time_to_consume_ms", "debloat_target_ms", "credit_limit_segments",
                             "debloated_in_flight_bytes", "throughput_bytes_per_s", "throughput_segments_per_s"};
    if (!ready) {
        for (const char* key : figures) d[key] = py::none();
        return d;
    }
    const auto& p = i.producer_counters;
    const auto& c = i.consumer_counters;
    const std::uint64_t unread = i.published >= i.released ? i.published - i.released : 0;
    d["abi_version"] = i.abi_version;
    d["segment_size"] = i.segment_size;
    d["segments"] = i.segment_count;
    d["payload_capacity"] = L::segment_payload_capacity(i.segment_size);
    d["total_bytes"] = i.total_bytes;
    d["framing"] = i.framing == shmchan::Framing::records ? "records" : "raw_bytes";
    d["checksums"] = (i.flags & L::kFlagChecksums) != 0;
    d["record_type"] = i.record_type.empty() ? py::object(py::none()) : py::object(py::str(i.record_type));
    d["max_record_bytes"] = i.max_record_bytes;
    d["created_unix_ms"] = i.created_realtime_ns / 1'000'000u;
    d["end_of_stream"] = i.end_of_stream;
    d["removed"] = i.removed;
    d["producer"] = side_dict(i.producer);
    d["consumer"] = side_dict(i.consumer);
    d["published_segments"] = i.published;
    d["released_segments"] = i.released;
    d["unread_segments"] = unread;
    d["fill"] = i.segment_count ? static_cast<double>(unread) / i.segment_count : 0.0;
    d["bytes_written"] = p.bytes;
    d["records_written"] = p.records;
    d["events_written"] = p.events;
    d["bytes_read"] = c.bytes;
    d["records_read"] = c.records;
    d["events_read"] = c.events;
    d["wakeups"] = p.wake_syscalls + c.wake_syscalls;
    d["producer_wake_syscalls"] = p.wake_syscalls;
    d["consumer_wake_syscalls"] = c.wake_syscalls;
    d["parks"] = p.parks + c.parks;
    d["producer_parks"] = p.parks;
    d["consumer_parks"] = c.parks;
    d["backpressured_ns"] = p.waited_ns;
    d["idle_ns"] = c.waited_ns;
    d["last_publish_unix_ms"] = p.last_realtime_ns / 1'000'000u;
    d["last_release_unix_ms"] = c.last_realtime_ns / 1'000'000u;
    d["buffer_timeout_ns"] = i.buffer_timeout_ns;
    // The records layer's words, decoded against the positions (layout.hpp), as shm-inspect does.
    std::uint64_t position = 0, bytes = 0;
    const std::uint64_t flushed_bytes = i.flush_word & 0xffff'ffffull;
    const bool ordered = i.released <= i.published;
    if (ordered && flushed_bytes != 0 && L::decode_tagged_word(i.flush_word, i.released, i.published, position, bytes)) {
        d["flushed_segment"] = position;
    } else {
        d["flushed_segment"] = py::none();
    }
    d["flushed_bytes"] = flushed_bytes;
    if (ordered && L::decode_tagged_word(i.resume_word, i.released, i.published, position, bytes)) {
        d["resume_segment"] = position;
        d["resume_offset"] = bytes;
    } else {
        d["resume_segment"] = py::none();
        d["resume_offset"] = py::none();
    }
    d["in_flight_record_bytes"] = i.in_flight_record_bytes;
    // Debloating, as shm-inspect shows it (None: off, or nothing measured yet).
    const std::uint64_t capacity = L::segment_payload_capacity(i.segment_size);
    d["in_flight_bytes"] = unread * capacity;
    d["estimated_time_to_consume_ms"] =
        i.segments_per_ks ? py::object(py::float_(static_cast<double>(unread) * 1e6 / static_cast<double>(i.segments_per_ks)))
                          : py::object(py::none());
    d["debloat_target_ms"] =
        i.debloat_target_ns ? py::object(py::float_(static_cast<double>(i.debloat_target_ns) / 1e6)) : py::object(py::none());
    d["credit_limit_segments"] = i.credit_limit ? py::object(py::int_(i.credit_limit)) : py::object(py::none());
    d["debloated_in_flight_bytes"] =
        i.credit_limit ? py::object(py::int_(std::uint64_t{i.credit_limit} * capacity)) : py::object(py::none());
    d["throughput_bytes_per_s"] = i.segments_per_ks ? py::object(py::int_(i.throughput_bytes_per_s)) : py::object(py::none());
    d["throughput_segments_per_s"] =
        i.segments_per_ks ? py::object(py::float_(static_cast<double>(i.segments_per_ks) / 1000.0)) : py::object(py::none());
    return d;
}

py::dict inspect_channel(const std::string& name) {
    if (!shmchan::shm::is_valid_name(name)) raise(g_invalid, "bad_name", "inspect: '" + shmchan::escaped(name) + "' is not a valid channel name");
    shmchan::ChannelInfo info;
    try {
        py::gil_scoped_release release;
        info = shmchan::inspect(name);
    } catch (const shmchan::Error& error) {
        raise_setup(error);
    }
    return info_dict(name, info, {});
}

py::list list_channels() {
    const std::string directory = shmchan::shm::region_directory();
    std::vector<std::string> names;
    DIR* dir = ::opendir(directory.c_str());
    if (!dir) raise(g_error, errc_name(std::error_code(errno, std::generic_category())), "list_channels: cannot read " + directory + ": " + std::strerror(errno));
    const std::string_view prefix = L::kChannelFilePrefix;
    while (dirent* entry = ::readdir(dir)) {
        std::string_view file = entry->d_name;
        if (file.size() <= prefix.size() || file.substr(0, prefix.size()) != prefix || entry->d_type == DT_DIR) continue;
        std::string name(file.substr(prefix.size()));
        if (shmchan::shm::is_valid_name(name)) names.push_back(std::move(name));
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    py::list out;
    for (const auto& name : names) {
        try {
            shmchan::ChannelInfo info = shmchan::inspect(name);
            out.append(info_dict(name, info, {}));
        } catch (const shmchan::Error& error) {
            if (error.code() == std::errc::no_such_file_or_directory) continue;  // removed meanwhile
            out.append(info_dict(name, shmchan::ChannelInfo{}, error.what()));
        }
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_shmchan, m) {
    m.doc() = "shmchan: shared-memory channels between processes (records, zero-copy numpy views)";

    g_error = PyErr_NewExceptionWithDoc("shmchan.Error", "A shmchan failure; .code names the cause.", PyExc_Exception, nullptr);
    g_peer_died = PyErr_NewExceptionWithDoc("shmchan.PeerDied", "The peer died or went away before end of stream.", g_error, nullptr);
    g_corrupt = PyErr_NewExceptionWithDoc("shmchan.Corrupt", "Shared memory failed validation.", g_error, nullptr);
    py::tuple invalid_bases = py::make_tuple(py::handle(g_error), py::handle(PyExc_ValueError));
    g_invalid = PyErr_NewExceptionWithDoc("shmchan.InvalidArgument", "A bad name, option or argument (a ValueError).",
                                          invalid_bases.ptr(), nullptr);
    g_stale = PyErr_NewExceptionWithDoc("shmchan.StaleRecord", "A record used after the reader moved past it.", g_error, nullptr);
    for (PyObject* type : {g_error, g_peer_died, g_corrupt, g_invalid, g_stale}) {
        if (!type) throw py::error_already_set();
        PyObject_SetAttrString(type, "code", Py_None);
    }
    m.attr("Error") = py::handle(g_error);
    m.attr("PeerDied") = py::handle(g_peer_died);
    m.attr("Corrupt") = py::handle(g_corrupt);
    m.attr("InvalidArgument") = py::handle(g_invalid);
    m.attr("StaleRecord") = py::handle(g_stale);

    py::class_<Writer>(m, "RecordWriter")
        .def(py::init<const std::string&, const py::kwargs&>(), py::arg("name"))
        .def("write", &Writer::write, py::arg("data"), py::kw_only(), py::arg("timeout") = py::none())
        .def("write_array", &Writer::write_array, py::arg("array"), py::kw_only(), py::arg("timeout") = py::none())
        .def("write_barrier", &Writer::write_barrier, py::arg("barrier_id"), py::kw_only(), py::arg("priority") = false,
             py::arg("timeout") = py::none())
        .def("write_event", &Writer::write_event, py::arg("kind"), py::arg("data") = py::none(), py::kw_only(),
             py::arg("timeout") = py::none())
        .def("flush", &Writer::flush)
        .def("end_stream", &Writer::end_stream, py::kw_only(), py::arg("timeout") = py::none())
        .def("close", &Writer::close)
        .def_property_readonly("closed", &Writer::closed)
        .def_property_readonly("name", &Writer::name)
        .def_property_readonly("completed_records", &Writer::completed_records)
        .def_property_readonly("max_inline_record", &Writer::max_inline_record)
        .def_property_readonly("max_record_bytes", &Writer::max_record_bytes)
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Writer& w, py::handle, py::handle, py::handle) { w.close(); })
        .def("__repr__", [](const Writer& w) {
            return "<shmchan.RecordWriter '" + w.name() + "'" + (w.closed() ? " closed>" : ">");
        });

    py::class_<Reader>(m, "RecordReader")
        .def(py::init<const std::string&, const py::kwargs&>(), py::arg("name"))
        .def("read", [](py::object self, py::handle timeout) { return self.cast<Reader&>().read(self, timeout); },
             py::kw_only(), py::arg("timeout") = py::none())
        .def("read_array",
             [](py::object self, py::handle dtype, std::size_t max_records, py::handle timeout) {
                 return self.cast<Reader&>().read_array(self, dtype, max_records, timeout);
             },
             py::arg("dtype"), py::arg("max_records") = 1u << 20, py::kw_only(), py::arg("timeout") = py::none())
        .def("skip_through", &Reader::skip_through, py::arg("position"))
        .def("remove_channel", &Reader::remove_channel)
        .def("close", &Reader::close)
        .def_property_readonly("closed", &Reader::closed)
        .def_property_readonly("name", &Reader::name)
        .def("__iter__", [](py::object self) { return self; })
        .def("__next__", [](py::object self) {
            py::object record = self.cast<Reader&>().read(self, py::none());
            if (record.is_none()) throw py::stop_iteration();
            return record;
        })
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](Reader& r, py::handle, py::handle, py::handle) { r.close(); })
        .def("__repr__", [](const Reader& r) {
            return "<shmchan.RecordReader '" + r.name() + "'" + (r.closed() ? " closed>" : ">");
        });

    py::class_<RecordObject> record(m, "Record", py::buffer_protocol());
    record
        .def_property_readonly("kind", [](const RecordObject& r) { return r.kind; })
        .def_property_readonly("barrier_id", [](const RecordObject& r) -> py::object {
            if (r.kind != "barrier") return py::none();
            return py::int_(r.barrier_id);
        })
        .def_property_readonly("event_kind", [](const RecordObject& r) -> py::object {
            if (r.kind != "event") return py::none();
            return py::int_(r.event_kind);
        })
        .def_property_readonly("position", [](const RecordObject& r) { return py::make_tuple(r.segment, r.offset); })
        .def_property_readonly("valid", &RecordObject::valid)
        .def("__len__", [](const RecordObject& r) {
            r.require_valid();
            return r.size;
        })
        .def("__bytes__", [](const RecordObject& r) {
            r.require_valid();
            return py::bytes(reinterpret_cast<const char*>(r.data), r.size);
        })
        .def("tobytes", [](const RecordObject& r) {
            r.require_valid();
            return py::bytes(reinterpret_cast<const char*>(r.data), r.size);
        })
        .def("__repr__", [](const RecordObject& r) {
            std::string text = "<shmchan.Record " + r.kind;
            if (r.kind == "barrier") text += " " + std::to_string(r.barrier_id);
            if (r.kind == "event") text += " kind " + std::to_string(r.event_kind);
            text += ", " + std::to_string(r.size) + " bytes at (" + std::to_string(r.segment) + ", " +
                    std::to_string(r.offset) + ")" + (r.valid() ? ">" : ", stale>");
            return text;
        });
    auto* type = reinterpret_cast<PyTypeObject*>(record.ptr());
    type->tp_as_buffer->bf_getbuffer = record_getbuffer;
    type->tp_as_buffer->bf_releasebuffer = record_releasebuffer;

    m.def("inspect", &inspect_channel, py::arg("name"));
    m.def("list_channels", &list_channels);
    m.attr("__version__") = shmchan::version();
}
