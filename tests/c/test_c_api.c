/* SPDX-License-Identifier: Apache-2.0 */
/* The C API (<shmchan/shmchan.h>) from a C11 program, across two processes (fork): records of
   every size class (one byte, in-segment, spanning several segments), zero-copy reserve/commit,
   batches and runs, barriers and user events in order, end of stream; a producer that dies
   (every published record, then SHMCHAN_PEER_DIED); try and timed forms; bad input (a bad name,
   bad options, NULL arguments) as status codes with messages. Channels live in a temporary
   directory of the test's own (SHMCHAN_DIR). No verdict depends on timing. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <shmchan/shmchan.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(condition)                                                                  \
    do {                                                                                  \
        if (!(condition)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
            ++failures;                                                                   \
        }                                                                                 \
    } while (0)
#define CHECK_STATUS(call, expected)                                                                     \
    do {                                                                                                 \
        int status_ = (call);                                                                            \
        if (status_ != (expected)) {                                                                     \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__, __LINE__, #call,           \
                    shmchan_status_string(status_), shmchan_status_string(expected));                    \
            ++failures;                                                                                  \
        }                                                                                                \
    } while (0)

/* Byte i of record k: a pattern that tells records and offsets apart. */
static unsigned char pattern(uint64_t k, size_t i) { return (unsigned char)((k * 131u + i * 7u + 1u) & 0xffu); }

static void fill(unsigned char* out, uint64_t k, size_t size) {
    for (size_t i = 0; i < size; ++i) out[i] = pattern(k, i);
}
static int matches(const void* data, uint64_t k, size_t size) {
    const unsigned char* bytes = data;
    for (size_t i = 0; i < size; ++i)
        if (bytes[i] != pattern(k, i)) return 0;
    return 1;
}

/* 4 KiB segments, 4 of them: records of 10 KiB span segments, 40 KiB are larger than the ring. */
static shmchan_options small_ring(void) {
    shmchan_options options;
    memset(&options, 0, sizeof options);
    options.segment_size = 4096;
    options.segments = 4;
    options.wait = SHMCHAN_WAIT_PARK;
    return options;
}

static const size_t sizes[] = {0, 1, 7, 64, 1000, 4000, 4096, 10000, 40000, 3};
#define SIZE_COUNT (sizeof sizes / sizeof sizes[0])
enum { BATCH = 100, BATCH_RECORD = 16 };

/* ---- 1. Round trip: the producer's side, in the child -------------------------------------- */
static int produce(const char* name) {
    shmchan_options options = small_ring();
    shmchan_writer* writer = NULL;
    shmchan_error error;
    if (shmchan_writer_attach(name, &options, &writer, &error) != SHMCHAN_OK) {
        fprintf(stderr, "writer: %s\n", error.message);
        return 1;
    }
    static unsigned char buffer[40000];
    uint64_t k = 0;
    for (size_t s = 0; s < SIZE_COUNT; ++s, ++k) {
        fill(buffer, k, sizes[s]);
        if (shmchan_write(writer, buffer, sizes[s]) != SHMCHAN_OK) return 2;
    }
    /* Zero-copy: reserve room in the segment, fill it, commit a shorter record. */
    void* room = NULL;
    if (shmchan_reserve(writer, 500, &room) != SHMCHAN_OK || room == NULL) return 3;
    fill(room, k, 300);
    if (shmchan_commit(writer, 300) != SHMCHAN_OK) return 4;
    ++k;
    if (shmchan_write_barrier(writer, 42, 0) != SHMCHAN_OK) return 5;
    if (shmchan_write_event(writer, 7, "watermark", 9) != SHMCHAN_OK) return 6;
    /* A batch: BATCH records of BATCH_RECORD bytes. */
    static unsigned char batch[BATCH * BATCH_RECORD];
    for (size_t i = 0; i < BATCH; ++i) fill(batch + i * BATCH_RECORD, k + i, BATCH_RECORD);
    size_t written = 0;
    if (shmchan_write_batch(writer, batch, BATCH_RECORD, BATCH, &written) != SHMCHAN_OK || written != BATCH) return 7;
    if (shmchan_flush(writer) != SHMCHAN_OK) return 8;
    if (shmchan_completed_records(writer) != SIZE_COUNT + 1 + BATCH) return 9;
    if (shmchan_end_stream(writer) != SHMCHAN_OK) return 10;
    /* After the end: a write is a misuse, with a message. */
    if (shmchan_write(writer, "x", 1) != SHMCHAN_INVALID_CALL || shmchan_writer_last_error(writer)[0] == '\0') return 11;
    shmchan_writer_detach(writer);
    return 0;
}

static void round_trip(void) {
    const char* name = "c-round-trip";
    pid_t child = fork(); /* before attaching: a child must not inherit a handle */
    if (child == 0) _exit(produce(name));
    shmchan_options options = small_ring();
    shmchan_reader* reader = NULL;
    shmchan_error error;
    CHECK_STATUS(shmchan_reader_attach(name, &options, &reader, &error), SHMCHAN_OK);
    if (!reader) return;

    shmchan_record record;
    uint64_t k = 0;
    for (size_t s = 0; s < SIZE_COUNT; ++s, ++k) {
        CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_OK);
        CHECK(record.kind == SHMCHAN_KIND_RECORD);
        CHECK(record.size == sizes[s]);
        CHECK(record.size == sizes[s] && matches(record.data, k, sizes[s]));
    }
    CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_OK);
    CHECK(record.kind == SHMCHAN_KIND_RECORD && record.size == 300 && matches(record.data, k, 300));
    ++k;
    CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_OK);
    CHECK(record.kind == SHMCHAN_KIND_BARRIER && record.checkpoint_id == 42);
    CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_OK);
    CHECK(record.kind == SHMCHAN_KIND_USER_EVENT && record.event_type == 7 && record.size == 9 &&
          memcmp(record.data, "watermark", 9) == 0);
    /* The batch as runs: views of records side by side. */
    size_t got = 0;
    while (got < BATCH) {
        shmchan_run run;
        int status = shmchan_read_run(reader, &run, BATCH, NULL);
        CHECK_STATUS(status, SHMCHAN_OK);
        if (status != SHMCHAN_OK) break;
        CHECK(run.record_size == BATCH_RECORD && run.count >= 1 && got + run.count <= BATCH);
        for (size_t i = 0; i < run.count && got + i < BATCH; ++i)
            CHECK(matches((const unsigned char*)run.data + i * run.record_size, k + got + i, BATCH_RECORD));
        got += run.count;
    }
    CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_END_OF_STREAM);
    CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_END_OF_STREAM);  /* and from then on */
    int wstatus = 0;
    CHECK(waitpid(child, &wstatus, 0) == child);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0) fprintf(stderr, "writer exited %d\n", WEXITSTATUS(wstatus));
    CHECK_STATUS(shmchan_remove_channel(reader), SHMCHAN_OK);
    shmchan_reader_detach(reader);
}

/* ---- 2. A producer that dies: every published record, then SHMCHAN_PEER_DIED ---------------- */
enum { PUBLISHED = 50 };
static void producer_dies(void) {
    const char* name = "c-peer-died";
    pid_t child = fork();
    if (child == 0) {
        shmchan_options options = small_ring();
        shmchan_writer* writer = NULL;
        if (shmchan_writer_attach(name, &options, &writer, NULL) != SHMCHAN_OK) _exit(1);
        unsigned char record[100];
        for (uint64_t k = 0; k < PUBLISHED; ++k) {
            fill(record, k, sizeof record);
            if (shmchan_write(writer, record, sizeof record) != SHMCHAN_OK) _exit(2);
        }
        shmchan_flush(writer);
        _exit(0); /* no end of stream, no detach: as a crash */
    }
    shmchan_options options = small_ring();
    shmchan_reader* reader = NULL;
    shmchan_error error;
    CHECK_STATUS(shmchan_reader_attach(name, &options, &reader, &error), SHMCHAN_OK);
    if (!reader) return;
    shmchan_record record;
    uint64_t k = 0;
    int status;
    while ((status = shmchan_read(reader, &record)) == SHMCHAN_OK) {
        CHECK(record.size == 100 && matches(record.data, k, 100));
        ++k;
    }
    CHECK(k == PUBLISHED);
    CHECK_STATUS(status, SHMCHAN_PEER_DIED);
    CHECK(shmchan_reader_last_error(reader) != NULL);
    int wstatus = 0;
    CHECK(waitpid(child, &wstatus, 0) == child && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    shmchan_remove_channel(reader);
    shmchan_reader_detach(reader);
}

/* ---- 3. try and timed forms, with no producer yet ------------------------------------------ */
static void try_and_timed(void) {
    shmchan_reader* reader = NULL;
    CHECK_STATUS(shmchan_reader_attach("c-timed", NULL, &reader, NULL), SHMCHAN_OK);
    if (!reader) return;
    shmchan_record record;
    CHECK_STATUS(shmchan_try_read(reader, &record), SHMCHAN_WOULD_BLOCK);
    CHECK_STATUS(shmchan_read_for(reader, &record, 20 * 1000 * 1000), SHMCHAN_TIMED_OUT);

    shmchan_options options;
    memset(&options, 0, sizeof options);
    options.buffer_timeout_ns = SHMCHAN_FLUSH_EVERY_RECORD;
    shmchan_writer* writer = NULL;
    CHECK_STATUS(shmchan_writer_attach("c-timed", &options, &writer, NULL), SHMCHAN_OK);
    if (writer) {
        CHECK_STATUS(shmchan_try_write(writer, "abc", 3), SHMCHAN_OK);
        CHECK_STATUS(shmchan_write_for(writer, "defg", 4, 1000 * 1000 * 1000), SHMCHAN_OK);
        void* room = NULL;
        CHECK_STATUS(shmchan_try_reserve(writer, 8, &room), SHMCHAN_OK);
        if (room) memcpy(room, "zerocopy", 8);
        CHECK_STATUS(shmchan_commit(writer, 8), SHMCHAN_OK);
        CHECK_STATUS(shmchan_commit(writer, 8), SHMCHAN_INVALID_CALL); /* no reservation */
        CHECK_STATUS(shmchan_try_read(reader, &record), SHMCHAN_OK);
        CHECK(record.size == 3 && memcmp(record.data, "abc", 3) == 0);
        CHECK_STATUS(shmchan_read_for(reader, &record, 1000 * 1000 * 1000), SHMCHAN_OK);
        CHECK(record.size == 4 && memcmp(record.data, "defg", 4) == 0);
        CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_OK);
        CHECK(record.size == 8 && memcmp(record.data, "zerocopy", 8) == 0);
        CHECK_STATUS(shmchan_end_stream_for(writer, 1000 * 1000 * 1000), SHMCHAN_OK);
        CHECK_STATUS(shmchan_read(reader, &record), SHMCHAN_END_OF_STREAM);
        shmchan_writer_detach(writer);
    }
    shmchan_remove_channel(reader);
    shmchan_reader_detach(reader);
}

/* ---- 4. Bad input ---------------------------------------------------------------------------- */
static void bad_input(void) {
    shmchan_writer* writer = (shmchan_writer*)&failures; /* must become NULL */
    shmchan_error error;
    memset(&error, 0, sizeof error);
    CHECK_STATUS(shmchan_writer_attach("../escape", NULL, &writer, &error), SHMCHAN_SETUP_ERROR);
    CHECK(writer == NULL);
    CHECK(error.code == 1000 /* bad_name */ && strstr(error.message, "escape") != NULL);

    shmchan_options options;
    memset(&options, 0, sizeof options);
    options.segment_size = 1000; /* not a multiple of 4096 */
    CHECK_STATUS(shmchan_writer_attach("c-bad", &options, &writer, &error), SHMCHAN_SETUP_ERROR);
    CHECK(error.message[0] != '\0');
    options.segment_size = 0;
    options.wait = 99;
    CHECK_STATUS(shmchan_writer_attach("c-bad", &options, &writer, &error), SHMCHAN_SETUP_ERROR);
    CHECK(strstr(error.message, "wait") != NULL);
    CHECK_STATUS(shmchan_writer_attach(NULL, NULL, &writer, NULL), SHMCHAN_SETUP_ERROR);

    /* NULL handles and arguments: a status, never a crash. */
    shmchan_record record;
    CHECK_STATUS(shmchan_write(NULL, "x", 1), SHMCHAN_INVALID_CALL);
    CHECK_STATUS(shmchan_read(NULL, &record), SHMCHAN_INVALID_CALL);
    shmchan_writer_detach(NULL);
    shmchan_reader_detach(NULL);
    CHECK(strcmp(shmchan_status_string(SHMCHAN_PEER_DIED), "peer_died") == 0);
    CHECK(strcmp(shmchan_status_string(12345), "unknown") == 0);
    CHECK(shmchan_version()[0] != '\0');

    CHECK_STATUS(shmchan_writer_attach("c-bad", NULL, &writer, &error), SHMCHAN_OK);
    if (writer) {
        CHECK_STATUS(shmchan_write(writer, NULL, 5), SHMCHAN_INVALID_CALL);
        CHECK(strstr(shmchan_writer_last_error(writer), "NULL") != NULL);
        size_t written = 0;
        CHECK_STATUS(shmchan_write_batch(writer, "abcd", 0, 1, &written), SHMCHAN_INVALID_CALL);
        /* A second writer of the same channel is refused while this one lives. */
        shmchan_writer* second = NULL;
        CHECK_STATUS(shmchan_writer_attach("c-bad", NULL, &second, &error), SHMCHAN_SETUP_ERROR);
        CHECK(second == NULL && error.code == 1007 /* side_taken */);
        shmchan_writer_detach(writer);
    }
}

int main(void) {
    char directory[] = "/tmp/shmchan-c-test-XXXXXX";
    if (!mkdtemp(directory)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("SHMCHAN_DIR", directory, 1);
    round_trip();
    producer_dies();
    try_and_timed();
    bad_input();
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", directory);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", directory);
    if (failures) {
        fprintf(stderr, "test_c_api: %d failures\n", failures);
        return 1;
    }
    printf("test_c_api: all checks passed\n");
    return 0;
}
