# SPDX-License-Identifier: Apache-2.0
"""A decoder process feeds a trainer process with batches of frames (64 x 3 x 224 x 224 uint8,
synthetic) through a shmchan channel; the trainer uses each batch as a zero-copy numpy array. Then
the same program over multiprocessing.Queue, for comparison.

    PYTHONPATH=build/python python3 examples/python/decoder_trainer.py [--batches N]
        [--train-ms MS] [--kill-decoder-after K] [--no-queue]

- Backpressure: the channel holds 4 batches; a slow trainer (--train-ms) holds the decoder back,
  so memory stays bounded (a Queue without maxsize would grow instead).
- A decoder that dies (--kill-decoder-after K) is reported: the trainer gets every batch the
  decoder finished, then a clear message, and exits 1.
"""
import argparse
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy

import shmchan

SHAPE = (64, 3, 224, 224)
BATCH_BYTES = int(numpy.prod(SHAPE))
# One batch per segment, so that the trainer reads it in place (a record larger than a segment
# would be reassembled: a copy). Room for the segment's and the record's headers.
SEGMENT = (BATCH_BYTES + 4096 + 4095) // 4096 * 4096
CHANNEL = f"decoder-trainer-{os.getpid()}"


def decode(index):
    """A synthetic decoded batch: frames whose pixels depend on the batch number."""
    batch = numpy.empty(SHAPE, numpy.uint8)
    batch[...] = numpy.arange(224, dtype=numpy.uint8)  # a cheap pattern, broadcast over the batch
    batch[:, 0, 0, 0] = index % 256
    return batch


def decoder(name, batches, kill_after):
    with shmchan.RecordWriter(name, segment_size=SEGMENT, segments=4) as writer:
        for i in range(batches):
            if i == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # as a crash: no end of stream
            writer.write(decode(i))  # waits while the trainer is 4 batches behind (backpressure)
        writer.end_stream()


def train(batch, train_ms):
    """Stand-in for a training step: reads every byte of the batch."""
    checksum = int(batch[:, 0, 0, 0].astype(numpy.uint64).sum()) + int(batch.sum(dtype=numpy.uint64))
    if train_ms:
        time.sleep(train_ms / 1000)
    return checksum


def trainer_shmchan(name, train_ms):
    count = 0
    start = time.perf_counter()
    with shmchan.RecordReader(name, segment_size=SEGMENT, segments=4) as reader:
        try:
            for record in reader:  # until end of stream
                batch = numpy.frombuffer(record, numpy.uint8).reshape(SHAPE)  # zero-copy: valid until the next read
                assert batch[0, 0, 0, 0] == count % 256, "batches out of order"
                train(batch, train_ms)
                del batch
                count += 1
        except shmchan.PeerDied as error:
            print(f"trainer: the decoder died after {count} batches ({error})", file=sys.stderr)
            reader.remove_channel()
            return count, time.perf_counter() - start, False
        reader.remove_channel()
    return count, time.perf_counter() - start, True


def decoder_queue(queue, batches):
    for i in range(batches):
        queue.put(decode(i))
    queue.put(None)


def trainer_queue(queue, train_ms):
    count = 0
    start = time.perf_counter()
    while (batch := queue.get()) is not None:
        train(batch, train_ms)
        count += 1
    return count, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--train-ms", type=float, default=0, help="time a training step takes (a slow trainer)")
    parser.add_argument("--kill-decoder-after", type=int, default=-1, help="the decoder dies before this batch")
    parser.add_argument("--no-queue", action="store_true", help="skip the multiprocessing.Queue comparison")
    args = parser.parse_args()
    context = mp.get_context("spawn")

    process = context.Process(target=decoder, args=(CHANNEL, args.batches, args.kill_decoder_after))
    process.start()
    count, elapsed, complete = trainer_shmchan(CHANNEL, args.train_ms)
    process.join()
    print(f"shmchan:               {count} batches of {BATCH_BYTES / 1e6:.1f} MB, {count / elapsed:8.1f} batches/s "
          f"({count * BATCH_BYTES / elapsed / 1e9:.2f} GB/s)")
    if not complete:
        return 1
    if count != args.batches or process.exitcode != 0:
        print(f"trainer: {count} batches of {args.batches}, decoder exit {process.exitcode}", file=sys.stderr)
        return 1

    if not args.no_queue:
        queue = context.Queue(maxsize=4)  # the same bound as the channel's 4 segments
        process = context.Process(target=decoder_queue, args=(queue, args.batches))
        process.start()
        count, elapsed = trainer_queue(queue, args.train_ms)
        process.join()
        print(f"multiprocessing.Queue: {count} batches of {BATCH_BYTES / 1e6:.1f} MB, {count / elapsed:8.1f} batches/s "
              f"({count * BATCH_BYTES / elapsed / 1e9:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
