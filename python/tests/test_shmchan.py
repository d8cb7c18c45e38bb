# SPDX-License-Identifier: Apache-2.0
# The Python package across real processes (peer.py runs the other side): round trips of every
# size class, numpy views, barriers and events, end of stream, a producer killed at several
# points, the GIL released while a read waits, Ctrl-C, views used after the next read, bad input.
# No verdict depends on timing: waits have generous deadlines that only a bug would reach.
import json
import os
import signal
import subprocess
import threading
import time

import numpy
import pytest

import shmchan
from peer import SIZES, STRUCT, payload, struct_array

SMALL = {"segment_size": 4096, "segments": 8}


def read_all(reader):
    out = []
    for record in reader:
        out.append((record.kind, bytes(record), record.barrier_id, record.event_kind))
    return out


# ---- Round trips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("geometry", [{}, SMALL, dict(SMALL, checksums=True), {"buffer_timeout": 0}],
                         ids=["default", "small", "small-checksums", "latency"])
def test_every_size_class_round_trips(peer, geometry):
    writer = peer("sizes", "sizes", *[f"{k}={v}" for k, v in geometry.items()])
    with shmchan.RecordReader("sizes", **geometry) as reader:
        got = read_all(reader)
        assert reader.read() is None  # end of stream stays
    writer.wait()
    assert [kind for kind, *_ in got] == ["record"] * len(SIZES)
    for i, (size, (_, data, _, _)) in enumerate(zip(SIZES, got)):
        assert len(data) == size
        assert data == payload(i, size), f"record {i} of {size} bytes differs"


def test_records_are_views_with_the_buffer_protocol(peer):
    writer = peer("sizes", "views", "segment_size=4096", "segments=8")
    with shmchan.RecordReader("views", **SMALL) as reader:
        for i, size in enumerate(SIZES):
            record = reader.read(timeout=30)
            view = memoryview(record)
            assert view.readonly and view.nbytes == size == len(record)
            assert numpy.array_equal(numpy.frombuffer(record, numpy.uint8),
                                     numpy.frombuffer(payload(i, size), numpy.uint8))
            del view
        assert reader.read(timeout=30) is None
    writer.wait()


# ---- numpy -------------------------------------------------------------------------------------------

def test_numpy_runs_are_zero_copy_views(peer):
    writer = peer("arrays", "arrays", "segment_size=65536")
    with shmchan.RecordReader("arrays", segment_size=65536) as reader:
        parts = []
        while sum(len(p) for p in parts) < 5000:
            run = reader.read_array(STRUCT, 4096, timeout=30)
            assert isinstance(run, numpy.ndarray) and run.dtype == STRUCT
            assert not run.flags.writeable and not run.flags.owndata  # a view, not a copy
            parts.append(run.copy())
        assert numpy.array_equal(numpy.concatenate(parts), struct_array(5000))
        ints = []
        while sum(len(p) for p in ints) < 1500:
            ints.append(reader.read_array(numpy.int64, timeout=30).copy())
        assert numpy.array_equal(numpy.concatenate(ints), numpy.arange(3000, dtype=numpy.int64)[::2])
        matrix = reader.read(timeout=30)
        assert numpy.array_equal(numpy.frombuffer(matrix, numpy.float64).reshape(3, 4),
                                 numpy.arange(12, dtype=numpy.float64).reshape(3, 4))
        assert reader.read_array(numpy.int64, timeout=30) is None
    writer.wait()


def test_read_array_of_the_wrong_dtype_is_a_value_error():
    with shmchan.RecordWriter("dtype") as writer, shmchan.RecordReader("dtype") as reader:
        writer.write_array(numpy.arange(10, dtype=numpy.int32))
        writer.flush()
        with pytest.raises(ValueError, match="4 bytes"):
            reader.read_array(numpy.int64, timeout=30)


# ---- Barriers, events, end of stream --------------------------------------------------------------

def test_barriers_and_events_arrive_in_order(peer):
    writer = peer("events", "events")
    with shmchan.RecordReader("events") as reader:
        got = read_all(reader)
    writer.wait()
    expected = []
    for i in range(100):
        expected.append(("record", payload(i, i * 50), None, None))
        if i % 10 == 0:
            expected.append(("barrier", b"", i, None))
        if i % 25 == 0:
            expected.append(("event", f"watermark {i}".encode(), None, 9))
    expected.append(("event", b"", None, 10))
    assert got == expected


def test_read_array_returns_an_event_that_comes_first():
    with shmchan.RecordWriter("event-first") as writer, shmchan.RecordReader("event-first") as reader:
        writer.write_barrier(5)
        writer.write_array(numpy.arange(4, dtype=numpy.int16))
        writer.end_stream()
        barrier = reader.read_array(numpy.int16, timeout=30)
        assert isinstance(barrier, shmchan.Record) and barrier.kind == "barrier" and barrier.barrier_id == 5
        assert list(reader.read_array(numpy.int16, timeout=30)) == [0, 1, 2, 3]
        assert reader.read_array(numpy.int16, timeout=30) is None


# ---- A producer that dies -----------------------------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 5, 17, 40])
def test_producer_killed_every_published_record_then_peer_died(peer, count):
    writer = peer("die", "dies", count, "segment_size=4096", "segments=8")
    got = 0
    with shmchan.RecordReader("dies", segment_size=4096, segments=8) as reader:
        with pytest.raises(shmchan.PeerDied) as raised:
            while True:
                record = reader.read(timeout=30)
                assert record is not None, "end of stream from a producer that was killed"
                assert bytes(record) == payload(got, SIZES[got % len(SIZES)])
                got += 1
    writer.wait(expected=-signal.SIGKILL)
    assert got == count
    assert raised.value.code == "peer_died" and isinstance(raised.value, shmchan.Error)


# ---- Waiting: the GIL, timeouts, Ctrl-C --------------------------------------------------------------

def test_gil_is_released_while_a_read_waits():
    # The thread writes only once the reader sleeps inside read(): it can run Python code (and
    # the read can return) only if read() released the GIL while it waits.
    with shmchan.RecordReader("gil", wait="park") as reader, shmchan.RecordWriter("gil", buffer_timeout=0) as writer:
        def other_thread():
            deadline = time.monotonic() + 30
            while not shmchan.inspect("gil")["consumer"]["sleeping"] and time.monotonic() < deadline:
                time.sleep(0.001)
            writer.write(b"from another thread")

        thread = threading.Thread(target=other_thread)
        thread.start()
        record = reader.read(timeout=60)
        thread.join()
        assert bytes(record) == b"from another thread"


def test_timed_calls_raise_timeout_error():
    with shmchan.RecordReader("timed", segment_size=4096, segments=1) as reader:
        with pytest.raises(TimeoutError):
            reader.read(timeout=0.01)
        with pytest.raises(TimeoutError):
            reader.read_array(numpy.uint8, timeout=0)
        with shmchan.RecordWriter("timed") as writer:
            writer.write(bytes(3000))
            with pytest.raises(TimeoutError):  # the one segment is held by the unread record
                for _ in range(10):
                    writer.write(bytes(3000), timeout=0.01)


def test_ctrl_c_interrupts_a_waiting_read(peer):
    reader = peer("wait_read", "ctrl-c")
    assert reader.process.stdout.readline().strip() == "ready"
    reader.process.send_signal(signal.SIGINT)
    reader.wait(expected=42, timeout=30)


# ---- Views after the next read -----------------------------------------------------------------------

def test_a_record_used_after_the_next_read_raises():
    with shmchan.RecordWriter("stale") as writer, shmchan.RecordReader("stale") as reader:
        writer.write(b"first")
        writer.write(b"second")
        writer.end_stream()
        first = reader.read(timeout=30)
        view = memoryview(first)
        assert bytes(first) == b"first" and first.valid
        second = reader.read(timeout=30)
        assert not first.valid
        for use in (bytes, memoryview, len, lambda r: numpy.frombuffer(r, numpy.uint8), lambda r: r.tobytes()):
            with pytest.raises(shmchan.StaleRecord):
                use(first)
        assert view.nbytes == 5  # a view taken before stays mapped (memory-safe), not valid data
        assert bytes(second) == b"second"
        assert reader.read(timeout=30) is None
        with pytest.raises(shmchan.StaleRecord):
            bytes(second)


def test_close_waits_for_views_and_then_detaches():
    writer = shmchan.RecordWriter("close")
    reader = shmchan.RecordReader("close")
    writer.write(b"kept")
    writer.flush()
    record = reader.read(timeout=30)
    view = memoryview(record)
    reader.close()
    assert reader.closed
    with pytest.raises(shmchan.StaleRecord):
        bytes(record)
    assert view.tobytes() == b"kept"  # still mapped while the view lives
    with pytest.raises(shmchan.Error) as raised:
        reader.read()
    assert raised.value.code == "closed"
    view.release()
    del record
    # Detached now: a new reader can attach and resumes after the released record (at-least-once).
    with shmchan.RecordReader("close") as again:
        writer.end_stream()
        rest = [bytes(r) for r in again]
        assert rest in ([], [b"kept"])
    writer.close()


def test_a_debloating_reader_shows_its_target_and_the_in_flight_figures():
    with shmchan.RecordReader("debloat", debloat_target=0.05) as reader, shmchan.RecordWriter("debloat") as writer:
        writer.write(b"x" * 100)
        writer.flush()
        assert bytes(reader.read(timeout=30)) == b"x" * 100
        info = shmchan.inspect("debloat")
        assert info["debloat_target_ms"] == pytest.approx(50.0)
        assert info["in_flight_bytes"] >= 0
        assert "estimated_time_to_consume_ms" in info and "credit_limit_segments" in info


def test_a_declared_record_type_is_shown_and_another_one_is_refused():
    with shmchan.RecordWriter("typed", record_type="trade.v1") as writer:
        assert shmchan.inspect("typed")["record_type"] == "trade.v1"
        with pytest.raises(shmchan.Error) as raised:
            shmchan.RecordReader("typed", record_type="quote.v1")
        assert raised.value.code == "type_mismatch"
        assert "trade.v1" in str(raised.value) and "quote.v1" in str(raised.value)
        with shmchan.RecordReader("typed") as reader:  # declares none: adopts the channel's
            writer.write(b"t")
            writer.flush()
            assert bytes(reader.read(timeout=30)) == b"t"
    with shmchan.RecordWriter("untyped"):
        assert shmchan.inspect("untyped")["record_type"] is None
    with pytest.raises(ValueError):
        shmchan.RecordWriter("badtype", record_type="has space")


# ---- Bad input -------------------------------------------------------------------------------------------

def test_bad_names_and_options_are_value_errors():
    for name in ("", "../x", "a/b", "x" * 300, "bad name"):
        with pytest.raises(ValueError):
            shmchan.RecordWriter(name)
    for options in ({"segment_size": 1000}, {"segments": 0}, {"wait": "fast"}, {"segment_size": "4096"},
                    {"buffer_timeout": -1}, {"checksums": 1}, {"consumers": 99}, {"on_leftover": "x"},
                    {"debloat_target": -1}, {"debloat_target": 0.1, "debloat_period": 0}):
        with pytest.raises(ValueError):
            shmchan.RecordReader("options", **options)
    with pytest.raises(TypeError):
        shmchan.RecordReader("options", segment_sise=4096)
    with pytest.raises(shmchan.InvalidArgument) as raised:
        shmchan.RecordWriter("../x")
    assert raised.value.code == "bad_name"


def test_bad_calls_raise_clear_errors():
    with shmchan.RecordWriter("calls", max_record_bytes=10000) as writer:
        with pytest.raises(TypeError):
            writer.write("text is not bytes")
        with pytest.raises(ValueError):
            writer.write(numpy.arange(10)[::2])  # not contiguous
        with pytest.raises(ValueError):
            writer.write(bytes(10001))  # over max_record_bytes
        with pytest.raises(ValueError):
            writer.write_array(numpy.zeros((2, 2)))
        with pytest.raises(ValueError):
            writer.write_array(numpy.array([object()]))
        with pytest.raises(TypeError):
            writer.write_array([1, 2, 3])
        with pytest.raises(ValueError):
            writer.write_event(1, bytes(1025))
        with pytest.raises(ValueError):
            writer.write_event(70000)
        with pytest.raises(ValueError):
            writer.write(b"x", timeout=-1)
        with pytest.raises(shmchan.Error) as raised:
            shmchan.RecordWriter("calls")
        assert raised.value.code == "side_taken"
        writer.end_stream()
        with pytest.raises(shmchan.Error):
            writer.write(b"after the end")
    with pytest.raises(shmchan.Error) as raised:
        writer.write(b"closed")
    assert raised.value.code == "closed"


# ---- inspect / list_channels ------------------------------------------------------------------------------

def test_inspect_gives_the_fields_of_shm_inspect(channel_dir):
    with shmchan.RecordWriter("seen", segments=4) as writer, shmchan.RecordReader("seen"):
        writer.write(b"abc")
        writer.flush()
        info = shmchan.inspect("seen")
        for key in ("name", "path", "segment_size", "segments", "state", "producer", "consumer",
                    "published_segments", "released_segments", "bytes_written", "records_written", "bytes_read",
                    "records_read", "wakeups", "backpressured_ns", "idle_ns"):
            assert key in info
        assert info["name"] == "seen" and info["segments"] == 4 and info["state"] == "active"
        assert info["producer"]["pid"] == os.getpid() and info["producer"]["alive"]
        assert info["path"] == str(channel_dir / "shmchan-seen")
        assert [c["name"] for c in shmchan.list_channels()] == ["seen"]
        tool = os.environ.get("SHMCHAN_INSPECT")
        if tool:  # the same keys as the tool's JSON
            shown = json.loads(subprocess.run([tool, "show", "seen", "--json"], check=True, capture_output=True,
                                              text=True).stdout)
            assert set(shown) == set(info)
            assert set(shown["producer"]) == set(info["producer"])
            assert shown["state"] == info["state"] and shown["segments"] == info["segments"]
    with pytest.raises(shmchan.Error) as raised:
        shmchan.inspect("missing")
    assert raised.value.code == "ENOENT"


def test_skip_through_resumes_exactly_once_after_a_reader_restart():
    with shmchan.RecordWriter("skip") as writer:
        for i in range(6):
            writer.write(f"record {i}".encode())
        writer.flush()
        reader = shmchan.RecordReader("skip")
        assert bytes(reader.read(timeout=30)) == b"record 0"
        second = reader.read(timeout=30)
        done = second.position  # stored with our state: records up to here are processed
        assert bytes(second) == b"record 1"
        del second
        reader.close()  # as a crash after processing record 1: at-least-once would repeat it
        with shmchan.RecordReader("skip") as again:
            again.skip_through(done)
            writer.end_stream()
            assert [bytes(r) for r in again] == [f"record {i}".encode() for i in range(2, 6)]
