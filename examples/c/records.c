/* SPDX-License-Identifier: Apache-2.0 */
/* The C API: a producer process writes 100,000 numbered records and ends the stream; the consumer
   reads them in place (a view into shared memory), checks the sum, and removes the channel.
     example-c-records                       (cc -std=c11 records.c $(pkg-config --cflags --libs shmchan)) */
#define _POSIX_C_SOURCE 200809L
#include <shmchan/shmchan.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { RECORDS = 100000 };

static int produce(void) {
    shmchan_writer* writer;
    shmchan_error error;
    if (shmchan_writer_attach("example-c-records", NULL, &writer, &error) != SHMCHAN_OK) {
        fprintf(stderr, "producer: %s\n", error.message);
        return 1;
    }
    for (uint64_t i = 0; i < RECORDS; ++i) {
        int status = shmchan_write(writer, &i, sizeof i);  /* waits while the ring is full */
        if (status != SHMCHAN_OK) {
            fprintf(stderr, "producer: %s\n", shmchan_writer_last_error(writer));
            return 1;
        }
    }
    int status = shmchan_end_stream(writer);
    shmchan_writer_detach(writer);
    return status == SHMCHAN_OK ? 0 : 1;
}

int main(void) {
    pid_t child = fork();  /* attach after fork, never before */
    if (child == 0) return produce();

    shmchan_reader* reader;
    shmchan_error error;
    if (shmchan_reader_attach("example-c-records", NULL, &reader, &error) != SHMCHAN_OK) {
        fprintf(stderr, "consumer: %s\n", error.message);
        return 1;
    }
    shmchan_record record;
    uint64_t count = 0, sum = 0;
    int status;
    while ((status = shmchan_read(reader, &record)) == SHMCHAN_OK) {
        uint64_t value;
        if (record.kind != SHMCHAN_KIND_RECORD || record.size != sizeof value) continue;
        memcpy(&value, record.data, sizeof value);  /* valid until the next read */
        sum += value;
        ++count;
    }
    if (status != SHMCHAN_END_OF_STREAM) fprintf(stderr, "consumer: %s\n", shmchan_reader_last_error(reader));
    shmchan_remove_channel(reader);
    shmchan_reader_detach(reader);
    int child_status = 0;
    waitpid(child, &child_status, 0);
    printf("%llu records, sum %llu, then %s\n", (unsigned long long)count, (unsigned long long)sum,
           shmchan_status_string(status));
    return status == SHMCHAN_END_OF_STREAM && count == RECORDS && sum == (uint64_t)RECORDS * (RECORDS - 1) / 2 &&
                   WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0
               ? 0
               : 1;
}
