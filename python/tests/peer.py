# SPDX-License-Identifier: Apache-2.0
# The other side of the Python suite's channels, as its own process:
#   python3 peer.py SCENARIO NAME [ARGS...]
# Records carry a pattern that payload(i, size) recomputes, so the reader can check every byte.
import os
import signal
import sys

import numpy

import shmchan

SIZES = [0, 1, 7, 63, 64, 65, 1000, 4000, 4088, 4096, 4097, 10000, 32256, 32704, 32705, 100000, 300000]
STRUCT = numpy.dtype([("id", "<u8"), ("x", "<f4"), ("tag", "S4")])


def payload(i, size):
    return ((numpy.arange(size, dtype=numpy.uint32) * 7 + i * 13) & 0xFF).astype(numpy.uint8).tobytes()


def struct_array(count, start=0):
    a = numpy.zeros(count, dtype=STRUCT)
    a["id"] = numpy.arange(start, start + count)
    a["x"] = a["id"] * 0.5
    a["tag"] = b"abcd"
    return a


def options(args):
    """key=value arguments as RecordWriter options (ints where they parse)."""
    out = {}
    for arg in args:
        key, value = arg.split("=", 1)
        if value in ("True", "False"):
            out[key] = value == "True"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def main():
    scenario, name, *rest = sys.argv[1:]
    if scenario == "sizes":  # every size class, then end of stream
        with shmchan.RecordWriter(name, **options(rest)) as w:
            for i, size in enumerate(SIZES):
                w.write(payload(i, size))
            w.end_stream()
    elif scenario == "arrays":  # numpy runs: structured records, int64, and a 2-D array as one record
        with shmchan.RecordWriter(name, **options(rest)) as w:
            assert w.write_array(struct_array(5000)) == 5000
            assert w.write_array(numpy.arange(3000, dtype=numpy.int64)[::2]) == 1500  # not contiguous
            w.write(numpy.arange(12, dtype=numpy.float64).reshape(3, 4))
            w.end_stream()
    elif scenario == "events":  # records, barriers and events interleaved
        with shmchan.RecordWriter(name, **options(rest)) as w:
            for i in range(100):
                w.write(payload(i, i * 50))
                if i % 10 == 0:
                    w.write_barrier(i)
                if i % 25 == 0:
                    w.write_event(9, f"watermark {i}".encode())
            w.write_event(10)
            w.end_stream()
    elif scenario == "die":  # publish COUNT records (every size class in turn), then die by SIGKILL
        count = int(rest[0])
        w = shmchan.RecordWriter(name, **options(rest[1:]))
        for i in range(count):
            w.write(payload(i, SIZES[i % len(SIZES)]))
        w.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif scenario == "wait_read":  # blocks in read() until SIGINT: exit 42 on KeyboardInterrupt
        r = shmchan.RecordReader(name)
        try:
            print("ready", flush=True)
            r.read(timeout=60)
        except KeyboardInterrupt:
            sys.exit(42)
        sys.exit(1)
    elif scenario == "hold":  # attach as writer and wait for stdin to close
        w = shmchan.RecordWriter(name)
        print("ready", flush=True)
        sys.stdin.read()
        w.close()
    else:
        sys.exit(f"peer: unknown scenario {scenario}")


if __name__ == "__main__":
    main()
