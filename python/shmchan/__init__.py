# SPDX-License-Identifier: Apache-2.0
"""shmchan: shared-memory channels between processes on one host.

A channel carries records (any bytes-like object, or the elements of a numpy array) from one
producer process to one consumer process through a ring of segments in shared memory, with
backpressure, in-band barriers and events, end of stream and dead-peer detection. Reads are
zero-copy: a Record exports its bytes through the buffer protocol (memoryview, numpy.frombuffer)
and read_array() returns a numpy view of a run of records.

    # producer process                      # consumer process
    with shmchan.RecordWriter("frames") as w:    with shmchan.RecordReader("frames") as r:
        w.write(b"hello")                            for record in r:      # until end of stream
        w.write_array(numpy.arange(10))                  use(memoryview(record))
        w.end_stream()

A record (and every view of it) is valid until the next read: copy it (bytes(record)) to keep it.
"""
from ._shmchan import (  # noqa: F401
    Corrupt,
    Error,
    InvalidArgument,
    PeerDied,
    Record,
    RecordReader,
    RecordWriter,
    StaleRecord,
    __version__,
    inspect,
    list_channels,
)

__all__ = [
    "Corrupt",
    "Error",
    "InvalidArgument",
    "PeerDied",
    "Record",
    "RecordReader",
    "RecordWriter",
    "StaleRecord",
    "inspect",
    "list_channels",
]
