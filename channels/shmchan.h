/* SPDX-License-Identifier: Apache-2.0 */
/* shmchan's C API: records channels between processes, for C and for every language that calls C
   (Rust, Go, Java's Panama, C#, Lua, ...). C11; link with -lshmchan (pkg-config shmchan).

     #include <shmchan/shmchan.h>

     shmchan_writer* writer;                                    // the producer process
     shmchan_error error;
     if (shmchan_writer_attach("trades", NULL, &writer, &error) != SHMCHAN_OK) {
         fprintf(stderr, "%s\n", error.message);               // the channel and the cause
         return 1;
     }
     shmchan_write(writer, "hello", 5);                         // waits while the ring is full
     shmchan_end_stream(writer);
     shmchan_writer_detach(writer);

     shmchan_reader* reader;                                    // the consumer process
     shmchan_reader_attach("trades", NULL, &reader, &error);
     shmchan_record record;
     while (shmchan_read(reader, &record) == SHMCHAN_OK)       // SHMCHAN_END_OF_STREAM at the end
         if (record.kind == SHMCHAN_KIND_RECORD) use(record.data, record.size);   // a view: valid
     shmchan_reader_detach(reader);                             // until the next read

   The same library and semantics as the C++ API (channels/records.hpp): either side may attach
   first (the channel is created if missing); a writer waits while no segment is free
   (backpressure); a reader gets every record published before its producer died, then
   SHMCHAN_PEER_DIED. Calls that can wait come in three forms: the plain call (waits), try_ (never
   waits: SHMCHAN_WOULD_BLOCK) and _for (waits at most timeout_ns nanoseconds: SHMCHAN_TIMED_OUT).
   A wait returns SHMCHAN_INTERRUPTED when a signal handler ran while it slept.

   Every function returns a status code (or a value) and never lets an exception or a C++ type
   out. A status other than SHMCHAN_OK leaves a message in the handle: shmchan_writer_last_error()
   and shmchan_reader_last_error(). Handles are not thread-safe: one thread drives a handle at a
   time. Attach after fork(), never before. */
#ifndef SHMCHAN_SHMCHAN_H
#define SHMCHAN_SHMCHAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define SHMCHAN_NOEXCEPT noexcept
extern "C" {
#else
#define SHMCHAN_NOEXCEPT
#endif

/* Statuses: the values of C++ shmchan::Status, then the setup failures of attach. */
typedef enum shmchan_status {
    SHMCHAN_OK = 0,
    SHMCHAN_WOULD_BLOCK = 1,    /* try_: nothing to read, or no room */
    SHMCHAN_TIMED_OUT = 2,      /* _for: the timeout passed */
    SHMCHAN_END_OF_STREAM = 3,  /* reader: the producer ended the stream and everything was read */
    SHMCHAN_PEER_DIED = 4,      /* the peer died or detached before end of stream */
    SHMCHAN_CORRUPT = 5,        /* a shared value failed validation (see last_error) */
    SHMCHAN_INVALID_CALL = 6,   /* misuse: commit without reserve, write after end, NULL argument */
    SHMCHAN_INTERRUPTED = 7,    /* a signal handler ran while the call slept: act on it or call again */
    SHMCHAN_EVENT = 8,          /* (C++ read_value only) */
    SHMCHAN_RECORD_LOST = 9,    /* a restarted reader: a record larger than the ring was lost; its
                                   size is in shmchan_record.lost_bytes */
    SHMCHAN_DECODE_ERROR = 10,  /* read_run: records of another size than asked */
    SHMCHAN_TOO_LARGE = 11,     /* write: over the channel's max record size (nothing written) */
    SHMCHAN_INCOMPATIBLE = 12,  /* a would-be peer asked for raw-bytes framing and was refused */
    SHMCHAN_SETUP_ERROR = 64,   /* attach failed: shmchan_error says why */
    SHMCHAN_NO_MEMORY = 65      /* out of memory */
} shmchan_status;

/* The name of a status ("ok", "peer_died", ...); never NULL. */
const char* shmchan_status_string(int status) SHMCHAN_NOEXCEPT;

/* Wait strategies (zero: the default, hybrid). */
enum { SHMCHAN_WAIT_DEFAULT = 0, SHMCHAN_WAIT_SPIN = 1, SHMCHAN_WAIT_HYBRID = 2, SHMCHAN_WAIT_PARK = 3 };
/* What attach does with a leftover channel (a side died before end of stream and nobody holds it). */
enum { SHMCHAN_LEFTOVER_RESUME = 0, SHMCHAN_LEFTOVER_FRESH = 1 };
/* buffer_timeout_ns: hand every record over at once (a zero timeout: latency mode). */
#define SHMCHAN_FLUSH_EVERY_RECORD (-1)

/* Channel options. A zero-initialised struct (or NULL) means the defaults: create with 16
   segments of 32 KiB, or adopt the existing channel's geometry. */
typedef struct shmchan_options {
    uint32_t segment_size;       /* bytes, a multiple of 4096 (0: default or existing) */
    uint32_t segments;           /* segments in the ring (0: default or existing) */
    uint32_t consumers;          /* broadcast: consumer slots, 1..8 (0: 1, or existing) */
    int32_t wait;                /* SHMCHAN_WAIT_* */
    int32_t checksums;           /* non-zero: CRC-32C per segment (when creating) */
    int32_t on_leftover;         /* SHMCHAN_LEFTOVER_* */
    uint64_t max_record_bytes;   /* 0: 64 MiB (when creating) */
    int64_t buffer_timeout_ns;   /* 0: 100 ms; SHMCHAN_FLUSH_EVERY_RECORD: every record */
    int64_t spin_budget_ns;      /* 0: 50 us */
    int64_t liveness_interval_ns; /* 0: 100 ms */
    int64_t ready_timeout_ns;    /* 0: 1 s */
    uint32_t mode;               /* file mode of a created channel (0: 0600) */
    uint32_t allowed_owner_set;  /* non-zero: files owned by allowed_owner are accepted too */
    uint32_t allowed_owner;      /* a uid */
    uint32_t reserved_[9];       /* zero */
} shmchan_options;

/* Why attach failed: code is an errno value or one of shmchan's causes (1000 and up: bad name,
   corrupt, side taken, bad options, ...; C++ shmchan::Errc), message names the channel. */
typedef struct shmchan_error {
    int code;
    char message[512];
} shmchan_error;

typedef struct shmchan_writer shmchan_writer;
typedef struct shmchan_reader shmchan_reader;

/* ---- Writer: attach as the producer (creating the channel if missing) ---------------------- */
/* SHMCHAN_OK and *out set, or SHMCHAN_SETUP_ERROR / SHMCHAN_NO_MEMORY with *out NULL and `error`
   (may be NULL) filled. */
int shmchan_writer_attach(const char* name, const shmchan_options* options, shmchan_writer** out,
                          shmchan_error* error) SHMCHAN_NOEXCEPT;
/* Detaches without ending the stream (the reader then sees SHMCHAN_PEER_DIED). NULL is fine. */
void shmchan_writer_detach(shmchan_writer* writer) SHMCHAN_NOEXCEPT;
const char* shmchan_writer_last_error(const shmchan_writer* writer) SHMCHAN_NOEXCEPT;

/* One record (a copy). try_/_for wait only before the first byte. */
int shmchan_write(shmchan_writer* writer, const void* data, size_t size) SHMCHAN_NOEXCEPT;
int shmchan_try_write(shmchan_writer* writer, const void* data, size_t size) SHMCHAN_NOEXCEPT;
int shmchan_write_for(shmchan_writer* writer, const void* data, size_t size, int64_t timeout_ns) SHMCHAN_NOEXCEPT;
/* `count` records of `record_size` bytes each, back to back in `data`; *written says how many
   went in (all of them when the plain call returns SHMCHAN_OK). */
int shmchan_write_batch(shmchan_writer* writer, const void* data, size_t record_size, size_t count, size_t* written) SHMCHAN_NOEXCEPT;
int shmchan_try_write_batch(shmchan_writer* writer, const void* data, size_t record_size, size_t count,
                            size_t* written) SHMCHAN_NOEXCEPT;
int shmchan_write_batch_for(shmchan_writer* writer, const void* data, size_t record_size, size_t count,
                            size_t* written, int64_t timeout_ns) SHMCHAN_NOEXCEPT;
/* Zero-copy: *out gets `size` writable bytes inside a segment (size <= shmchan_max_inline_record);
   shmchan_commit(used) makes the first `used` of them one record. */
int shmchan_reserve(shmchan_writer* writer, size_t size, void** out) SHMCHAN_NOEXCEPT;
int shmchan_try_reserve(shmchan_writer* writer, size_t size, void** out) SHMCHAN_NOEXCEPT;
int shmchan_reserve_for(shmchan_writer* writer, size_t size, void** out, int64_t timeout_ns) SHMCHAN_NOEXCEPT;
int shmchan_commit(shmchan_writer* writer, size_t used) SHMCHAN_NOEXCEPT;
/* Events in order with the records: a checkpoint barrier (priority non-zero: it may overtake
   queued data at an input gate in unaligned mode) and a user event (payload <= 1 KiB). */
int shmchan_write_barrier(shmchan_writer* writer, uint64_t checkpoint_id, int priority) SHMCHAN_NOEXCEPT;
int shmchan_write_event(shmchan_writer* writer, uint16_t event_type, const void* payload, size_t size) SHMCHAN_NOEXCEPT;
/* Hands what was written over now (wakes a parked reader). */
int shmchan_flush(shmchan_writer* writer) SHMCHAN_NOEXCEPT;
/* End of stream: everything is handed over; the reader gets SHMCHAN_END_OF_STREAM after it. */
int shmchan_end_stream(shmchan_writer* writer) SHMCHAN_NOEXCEPT;
int shmchan_end_stream_for(shmchan_writer* writer, int64_t timeout_ns) SHMCHAN_NOEXCEPT;
/* The largest record that fits one segment (reserve, zero-copy). */
size_t shmchan_max_inline_record(const shmchan_writer* writer) SHMCHAN_NOEXCEPT;
uint64_t shmchan_writer_max_record_bytes(const shmchan_writer* writer) SHMCHAN_NOEXCEPT;
/* Records of the stream completed so far (all producers): where a restarted producer resumes. */
uint64_t shmchan_completed_records(const shmchan_writer* writer) SHMCHAN_NOEXCEPT;

/* ---- Reader: attach as the consumer (creating the channel if missing) ---------------------- */
int shmchan_reader_attach(const char* name, const shmchan_options* options, shmchan_reader** out,
                          shmchan_error* error) SHMCHAN_NOEXCEPT;
void shmchan_reader_detach(shmchan_reader* reader) SHMCHAN_NOEXCEPT;
const char* shmchan_reader_last_error(const shmchan_reader* reader) SHMCHAN_NOEXCEPT;

enum {
    SHMCHAN_KIND_RECORD = 0,         /* data, size */
    SHMCHAN_KIND_BARRIER = 1,        /* checkpoint_id */
    SHMCHAN_KIND_USER_EVENT = 2,     /* event_type, data, size */
    SHMCHAN_KIND_IN_FLIGHT_END = 3   /* input gates only */
};

/* A record or event: a view into shared memory (or the reader's reassembly buffer), valid until
   the next read or detach. The bytes are the producer's: parse them as untrusted input. */
typedef struct shmchan_record {
    int kind;                  /* SHMCHAN_KIND_* */
    uint16_t event_type;
    const void* data;
    size_t size;
    uint64_t checkpoint_id;
    uint64_t position_segment; /* where the frame starts: for shmchan_skip_through */
    uint64_t position_offset;
    uint64_t lost_bytes;       /* SHMCHAN_RECORD_LOST: the lost record's size */
} shmchan_record;

int shmchan_read(shmchan_reader* reader, shmchan_record* out) SHMCHAN_NOEXCEPT;
int shmchan_try_read(shmchan_reader* reader, shmchan_record* out) SHMCHAN_NOEXCEPT;
int shmchan_read_for(shmchan_reader* reader, shmchan_record* out, int64_t timeout_ns) SHMCHAN_NOEXCEPT;

/* A run: up to `limit` records of one size side by side (one write_batch call's records in one
   segment, or one record): data holds count * record_size bytes, valid until the next read. An
   event instead: SHMCHAN_EVENT with the event in *event (consumed). */
typedef struct shmchan_run {
    const void* data;
    size_t record_size;
    size_t count;
    uint64_t position_segment;
    uint64_t position_offset;
} shmchan_run;
int shmchan_read_run(shmchan_reader* reader, shmchan_run* out, size_t limit, shmchan_record* event) SHMCHAN_NOEXCEPT;
int shmchan_try_read_run(shmchan_reader* reader, shmchan_run* out, size_t limit, shmchan_record* event) SHMCHAN_NOEXCEPT;
int shmchan_read_run_for(shmchan_reader* reader, shmchan_run* out, size_t limit, shmchan_record* event,
                         int64_t timeout_ns) SHMCHAN_NOEXCEPT;

/* Exactly-once after a restart: records and events at or before this position are skipped. */
int shmchan_skip_through(shmchan_reader* reader, uint64_t position_segment, uint64_t position_offset) SHMCHAN_NOEXCEPT;
/* Removes the channel's file (after end of stream). */
int shmchan_remove_channel(shmchan_reader* reader) SHMCHAN_NOEXCEPT;

/* ---- Library --------------------------------------------------------------------------------- */
/* The library's version, "MAJOR.MINOR.PATCH". */
const char* shmchan_version(void) SHMCHAN_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* SHMCHAN_SHMCHAN_H */
