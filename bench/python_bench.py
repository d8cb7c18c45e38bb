# SPDX-License-Identifier: Apache-2.0
"""Python transports between two processes, side by side in one run: shmchan against
multiprocessing.Queue, multiprocessing.Pipe (send_bytes/recv_bytes) and
multiprocessing.shared_memory with a Queue of offsets.

    PYTHONPATH=build/python /usr/bin/python3 bench/python_bench.py [--quick] [--only PATTERN] [--json FILE]

Rows (pattern):
  64B-each     64-byte records, one call per record on both sides
  64B-numpy    64-byte records in numpy runs: write_array / read_array (shmchan); batches of the same
               records as one message (the others)
  32KiB        32 KiB records (shmchan: 32,256 bytes, the largest that fits one default segment);
               shmchan reads them zero-copy (numpy.frombuffer on the record)
Fair work, as shm-bench: the producer writes every byte of every record (the transport copies it
from the producer's buffer), the consumer reads every byte (into a checksum that is verified).
Producer and consumer are separate processes (spawn), pinned to different cores when there are two.
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import zlib
from multiprocessing import shared_memory

import numpy

import shmchan

RECORD64 = numpy.dtype([("key", "<u8"), ("value", "<f8"), ("payload", "V48")])  # 64 bytes
assert RECORD64.itemsize == 64
BATCH = 1024
SHMCHAN_32K = 32256


def pin(core):
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() >= 2:
        os.sched_setaffinity(0, {core % os.cpu_count()})


def make_records(count, size):
    """count records of `size` bytes, distinct, as one buffer."""
    data = numpy.frombuffer(numpy.random.default_rng(1).bytes(count * size), numpy.uint8).copy()
    return data


MASK64 = (1 << 64) - 1


def word_sum(buffer, checksum):
    """The bulk rows' checksum: every 64-bit word of the records, summed modulo 2**64 (the word
    sum shm-bench's consumers compute; zlib.adler32 runs at about 2.6 GB/s here and would be the
    row's ceiling, not the transport)."""
    words = numpy.frombuffer(buffer, numpy.uint64)
    return (checksum + int(numpy.add.reduce(words, dtype=numpy.uint64))) & MASK64


def checksum_of(pattern, buffer, checksum):
    """What the consumer folds each received buffer into: adler32 for the one-call-per-record row
    (per-call cost dominates there), the word sum for the bulk rows."""
    return zlib.adler32(buffer, checksum) if pattern == "64B-each" else word_sum(buffer, checksum)


def initial_checksum(pattern):
    return 1 if pattern == "64B-each" else 0


def expected_checksum(pattern, count, size):
    """What the consumer must compute over every byte of every record, in order (the records are
    the block of make_records repeated)."""
    data = make_records(min(count, BATCH), size).tobytes()
    per_block = len(data) // size
    checksum = initial_checksum(pattern)
    if pattern == "64B-each":
        for _ in range(count // per_block):
            checksum = zlib.adler32(data, checksum)
    else:
        checksum = (word_sum(data, 0) * (count // per_block)) & MASK64
    return checksum_of(pattern, data[: (count % per_block) * size], checksum)


# ---- Producers (child processes) ----------------------------------------------------------------

def produce(transport, pattern, count, size, endpoint, started, ready):
    pin(1)
    block = make_records(min(count, BATCH), size).reshape(-1, size)
    records = [bytes(block[i]) for i in range(len(block))] if pattern != "64B-numpy" else None
    started.set()  # the interpreter's start and the records' making are not measured
    ready.wait()
    if transport == "shmchan":
        with shmchan.RecordWriter(endpoint) as w:
            if pattern == "64B-numpy":
                arrays = block.view(RECORD64).reshape(-1)
                sent = 0
                while sent < count:
                    n = min(len(arrays), count - sent)
                    w.write_array(arrays[:n])
                    sent += n
            else:
                write = w.write
                for i in range(count):
                    write(records[i % len(records)])
            w.end_stream()
    elif transport == "queue":
        put = endpoint.put
        if pattern == "64B-numpy":
            for i in range(0, count, len(block)):
                put(block[: min(len(block), count - i)].tobytes())
        else:
            for i in range(count):
                put(records[i % len(records)])
        put(None)
    elif transport == "pipe":
        send = endpoint.send_bytes
        if pattern == "64B-numpy":
            for i in range(0, count, len(block)):
                send(block[: min(len(block), count - i)].tobytes())
        else:
            for i in range(count):
                send(records[i % len(records)])
        send(b"")
    elif transport == "shared_memory":
        name, slots, slot_bytes, filled, free = endpoint
        memory = shared_memory.SharedMemory(name)
        buf = memory.buf
        per = len(block) if pattern == "64B-numpy" else 1
        i = 0
        while i < count:
            slot = free.get()
            n = min(per, count - i)
            start = slot * slot_bytes
            if per > 1:
                buf[start:start + n * size] = block[:n].reshape(-1)
            else:
                buf[start:start + size] = records[i % len(records)]
            filled.put((slot, n * size))
            i += n
        filled.put(None)
        del buf
        memory.close()


# ---- Consumers (this process) ----------------------------------------------------------------------

def consume(transport, pattern, count, size, endpoint):
    checksum = initial_checksum(pattern)
    got = 0
    if transport == "shmchan":
        with shmchan.RecordReader(endpoint) as r:
            if pattern == "64B-numpy":
                while True:
                    run = r.read_array(RECORD64, BATCH)
                    if run is None:
                        break
                    checksum = word_sum(run, checksum)
                    got += len(run)
            elif pattern == "32KiB":
                for record in r:
                    checksum = word_sum(record, checksum)
                    got += 1
            else:
                adler = zlib.adler32
                for record in r:
                    checksum = adler(record, checksum)
                    got += 1
            r.remove_channel()
    elif transport in ("queue", "pipe"):
        receive = endpoint.get if transport == "queue" else endpoint.recv_bytes
        while True:
            message = receive()
            if not message:
                break
            checksum = checksum_of(pattern, message, checksum)
            got += len(message) // size
    elif transport == "shared_memory":
        name, slots, slot_bytes, filled, free = endpoint
        memory = shared_memory.SharedMemory(name)
        buf = memory.buf
        while True:
            item = filled.get()
            if item is None:
                break
            slot, length = item
            start = slot * slot_bytes
            checksum = checksum_of(pattern, buf[start:start + length], checksum)
            got += length // size
            free.put(slot)
        del buf
        memory.close()
    return got, checksum


def run(context, transport, pattern, count, size):
    started, ready = context.Event(), context.Event()
    shm = None
    if transport == "shmchan":
        endpoint = f"python-bench-{os.getpid()}"
        shmchan_endpoint = endpoint
    elif transport == "queue":
        endpoint = context.Queue(maxsize=64)
    elif transport == "pipe":
        receiver, sender = context.Pipe(duplex=False)
        endpoint = (receiver, sender)
    else:
        slots = 16
        slot_bytes = (BATCH * size) if pattern == "64B-numpy" else size
        shm = shared_memory.SharedMemory(create=True, size=slots * slot_bytes)
        filled, free = context.Queue(), context.Queue()
        for s in range(slots):
            free.put(s)
        endpoint = (shm.name, slots, slot_bytes, filled, free)
    producer_end = endpoint[1] if transport == "pipe" else endpoint
    consumer_end = endpoint[0] if transport == "pipe" else endpoint
    process = context.Process(target=produce, args=(transport, pattern, count, size, producer_end, started, ready))
    process.start()
    pin(0)
    if not started.wait(timeout=120):
        raise RuntimeError(f"{transport} {pattern}: the producer did not start")
    if transport == "shmchan":
        consumer_end = shmchan_endpoint
    ready.set()
    start = time.perf_counter()
    got, checksum = consume(transport, pattern, count, size, consumer_end)
    elapsed = time.perf_counter() - start
    process.join()
    if shm is not None:
        shm.close()
        shm.unlink()
    if process.exitcode != 0:
        raise RuntimeError(f"{transport} {pattern}: the producer exited {process.exitcode}")
    if got != count:
        raise RuntimeError(f"{transport} {pattern}: {got} records of {count}")
    if checksum != expected_checksum(pattern, count, size):
        raise RuntimeError(f"{transport} {pattern}: checksum mismatch")
    return {"transport": transport, "pattern": pattern, "record_bytes": size, "records": count,
            "records_per_s": count / elapsed, "bytes_per_s": count * size / elapsed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of a few seconds")
    parser.add_argument("--only", default="", help="only rows whose 'transport pattern' contains this")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    scale = 0.02 if args.quick else 1.0
    plans = [("64B-each", 64, int(1_000_000 * scale)), ("64B-numpy", 64, int(20_000_000 * scale)),
             ("32KiB", 32 * 1024, int(100_000 * scale))]
    context = mp.get_context("spawn")
    results = []
    print(f"{'transport':<14} {'pattern':<10} {'records/s':>14} {'MB/s':>10}")
    for pattern, size, count in plans:
        for transport in ("shmchan", "queue", "pipe", "shared_memory"):
            if args.only and args.only not in f"{transport} {pattern}":
                continue
            record_size = SHMCHAN_32K if (pattern == "32KiB") else size
            # Every transport moves the same records: 32,256-byte ones in the 32 KiB row.
            row = run(context, transport, pattern, count, record_size)
            results.append(row)
            print(f"{transport:<14} {pattern:<10} {row['records_per_s']:>14,.0f} {row['bytes_per_s'] / 1e6:>10,.0f}",
                  flush=True)
    by = {(r["transport"], r["pattern"]): r["records_per_s"] for r in results}
    for pattern, _, _ in plans:
        base = by.get(("shmchan", pattern))
        if base:
            ratios = ", ".join(f"{base / by[(t, pattern)]:.1f}x {t}" for t in ("queue", "pipe", "shared_memory")
                               if (t, pattern) in by)
            if ratios:
                print(f"shmchan {pattern}: {ratios}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"results": results}, out, indent=1)


if __name__ == "__main__":
    sys.exit(main())
