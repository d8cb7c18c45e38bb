# SPDX-License-Identifier: Apache-2.0
# Type stubs of the shmchan package (the extension module shmchan._shmchan).
from types import TracebackType
from typing import Any, Iterator, Literal, Optional, Tuple, Type, Union

import numpy
import numpy.typing

__version__: str

Buffer = Union[bytes, bytearray, memoryview, numpy.ndarray, Any]  # any C-contiguous buffer
Position = Tuple[int, int]  # (segment, offset): where a record starts in the stream

class Error(Exception):
    """A shmchan failure. code: the cause ("peer_died", "corrupt", "side_taken", "bad_name",
    "stale_record", "closed", an errno name such as "ENOENT", ...)."""
    code: Optional[str]

class PeerDied(Error):
    """The peer died or went away before end of stream (everything it published was read first)."""

class Corrupt(Error):
    """Shared memory failed validation."""

class InvalidArgument(Error, ValueError):
    """A bad channel name, option or argument."""

class StaleRecord(Error):
    """A record used after the reader read past it (or was closed)."""

class Record:
    """A record or event: a read-only view into shared memory, valid until the next read.
    Supports the buffer protocol: memoryview(record), numpy.frombuffer(record, dtype)."""
    @property
    def kind(self) -> Literal["record", "barrier", "event", "in_flight_end"]: ...
    @property
    def barrier_id(self) -> Optional[int]: ...
    @property
    def event_kind(self) -> Optional[int]: ...
    @property
    def position(self) -> Position: ...
    @property
    def valid(self) -> bool: ...
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes: ...
    def tobytes(self) -> bytes: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class RecordWriter:
    """Attaches as the producer of channel `name` (created if missing; either side may come
    first). Options: segment_size (bytes, a multiple of 4096), segments, wait ("spin", "hybrid",
    "park"), buffer_timeout (seconds; 0: hand every record over at once), checksums, consumers,
    consumer_slot, mode, max_record_bytes, spin_budget, liveness_interval, ready_timeout,
    debloat_target, debloat_period (seconds; debloat_target on the reader: buffers sized by time),
    record_type (the declared type of the records, e.g. "trade.v1"; an opener that declares
    another one gets Error with code "type_mismatch"), allowed_owner, on_leftover ("resume", "fresh"). Unset options: the defaults when creating, the
    existing channel's values when opening. timeout=None waits without limit; a timed call that
    times out raises TimeoutError."""
    def __init__(
        self,
        name: str,
        *,
        segment_size: Optional[int] = ...,
        segments: Optional[int] = ...,
        wait: Literal["spin", "hybrid", "park"] = ...,
        buffer_timeout: float = ...,
        checksums: bool = ...,
        consumers: Optional[int] = ...,
        consumer_slot: Optional[int] = ...,
        mode: int = ...,
        max_record_bytes: int = ...,
        spin_budget: float = ...,
        liveness_interval: float = ...,
        ready_timeout: float = ...,
        debloat_target: float = ...,
        debloat_period: float = ...,
        record_type: Optional[str] = ...,
        allowed_owner: Optional[int] = ...,
        on_leftover: Literal["resume", "fresh"] = ...,
    ) -> None: ...
    def write(self, data: Buffer, *, timeout: Optional[float] = None) -> None:
        """One record: the bytes of any C-contiguous buffer."""
    def write_array(self, array: numpy.ndarray, *, timeout: Optional[float] = None) -> int:
        """Every element of a 1-D array (any fixed-size dtype) as one record each, as runs.
        Returns the number written (all unless an exception is raised)."""
    def write_barrier(self, barrier_id: int, *, priority: bool = False, timeout: Optional[float] = None) -> None: ...
    def write_event(self, kind: int, data: Optional[Buffer] = None, *, timeout: Optional[float] = None) -> None:
        """A user event (kind 0..65535, payload up to 1 KiB), in order with the records."""
    def flush(self) -> None: ...
    def end_stream(self, *, timeout: Optional[float] = None) -> None: ...
    def close(self) -> None:
        """Detaches without ending the stream (the reader then gets PeerDied)."""
    @property
    def closed(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def completed_records(self) -> int: ...
    @property
    def max_inline_record(self) -> int: ...
    @property
    def max_record_bytes(self) -> int: ...
    def __enter__(self) -> "RecordWriter": ...
    def __exit__(self, t: Optional[Type[BaseException]], v: Optional[BaseException], tb: Optional[TracebackType]) -> None: ...

class RecordReader:
    """Attaches as the consumer of channel `name` (created if missing), resuming where a previous
    consumer stopped. Options as RecordWriter's."""
    def __init__(
        self,
        name: str,
        *,
        segment_size: Optional[int] = ...,
        segments: Optional[int] = ...,
        wait: Literal["spin", "hybrid", "park"] = ...,
        buffer_timeout: float = ...,
        checksums: bool = ...,
        consumers: Optional[int] = ...,
        consumer_slot: Optional[int] = ...,
        mode: int = ...,
        max_record_bytes: int = ...,
        spin_budget: float = ...,
        liveness_interval: float = ...,
        ready_timeout: float = ...,
        debloat_target: float = ...,
        debloat_period: float = ...,
        record_type: Optional[str] = ...,
        allowed_owner: Optional[int] = ...,
        on_leftover: Literal["resume", "fresh"] = ...,
    ) -> None: ...
    def read(self, *, timeout: Optional[float] = None) -> Optional[Record]:
        """The next record or event; None at end of stream. PeerDied once everything the dead
        producer published was read."""
    def read_array(
        self, dtype: numpy.typing.DTypeLike, max_records: int = ..., *, timeout: Optional[float] = None
    ) -> Union[numpy.ndarray, Record, None]:
        """A read-only zero-copy array of the next run of records of `dtype` (the records one
        write_array call put side by side in a segment, at most max_records); a Record when an
        event comes first (it is consumed); None at end of stream. InvalidArgument when the
        records are not of dtype.itemsize bytes (they are consumed)."""
    def skip_through(self, position: Position) -> None:
        """Exactly-once after a restart: skip records and events at or before `position`."""
    def remove_channel(self) -> None: ...
    def close(self) -> None:
        """Detaches (once no view of a record is alive any more)."""
    @property
    def closed(self) -> bool: ...
    @property
    def name(self) -> str: ...
    def __iter__(self) -> Iterator[Record]: ...
    def __next__(self) -> Record: ...
    def __enter__(self) -> "RecordReader": ...
    def __exit__(self, t: Optional[Type[BaseException]], v: Optional[BaseException], tb: Optional[TracebackType]) -> None: ...

def inspect(name: str) -> dict[str, Any]:
    """The fields of `shm-inspect show NAME --json` as a dict (read-only: disturbs nobody)."""

def list_channels() -> list[dict[str, Any]]:
    """Every channel of the directory (SHMCHAN_DIR or /dev/shm), as inspect() dicts."""
