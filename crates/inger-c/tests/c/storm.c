/* Built with -fstack-protector-all: a function that allocates, formats with stdio and writes
 * to a file is preempted thousands of times while its caller allocates and prints between
 * resumes. Its results (a hash and the file it wrote) must equal a direct run's. */
#include "check.h"

#include <stdint.h>
#include <string.h>

struct workload {
    FILE *output;
    volatile int stop;      /* set by the caller once enough preemptions happened */
    uint64_t iterations;    /* how many it did (direct run: how many to do) */
    uint64_t hash;
};

static uint64_t fnv1a(uint64_t hash, const unsigned char *bytes, size_t length) {
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ bytes[i]) * 0x100000001b3u;
    }
    return hash;
}

/* One step: deterministic in `i` alone. */
static uint64_t step(FILE *output, uint64_t i, uint64_t hash) {
    size_t size = 16 + (i * 7919u) % 4000u;
    unsigned char *block = malloc(size);
    CHECK(block != NULL);
    for (size_t j = 0; j < size; j++) {
        block[j] = (unsigned char)(i + j * 31u);
    }
    char line[128];
    int length = snprintf(line, sizeof line, "%llu:%zu:%02x%02x\n", (unsigned long long)i, size,
                          block[0], block[size - 1]);
    CHECK(length > 0 && (size_t)length < sizeof line);
    CHECK(fputs(line, output) >= 0);
    hash = fnv1a(hash, block, size);
    hash = fnv1a(hash, (const unsigned char *)line, (size_t)length);
    free(block);
    return hash;
}

static void until_stopped(void *argument) {
    struct workload *work = argument;
    uint64_t hash = 0xcbf29ce484222325u;
    uint64_t i = 0;
    while (!work->stop) {
        hash = step(work->output, i, hash);
        i++;
    }
    work->iterations = i;
    work->hash = hash;
}

static void fixed_count(struct workload *work) {
    uint64_t hash = 0xcbf29ce484222325u;
    for (uint64_t i = 0; i < work->iterations; i++) {
        hash = step(work->output, i, hash);
    }
    work->hash = hash;
}

/* Reads a whole stream back. */
static char *contents(FILE *file, long *length) {
    CHECK(fflush(file) == 0);
    *length = ftell(file);
    CHECK(*length >= 0);
    rewind(file);
    char *bytes = malloc((size_t)*length + 1);
    CHECK(bytes != NULL);
    CHECK(fread(bytes, 1, (size_t)*length, file) == (size_t)*length);
    return bytes;
}

int main(void) {
    const uint64_t wanted_preemptions = 3000;
    inger_stats_t before, now;
    CHECK_OK(inger_stats(&before));

    struct workload sliced = {tmpfile(), 0, 0, 0};
    CHECK(sliced.output != NULL);
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, until_stopped, 30, &sliced));
    unsigned long resumes = 0;
    char *caller_blocks[64] = {0};
    while (!inger_is_complete(call)) {
        /* The caller allocates, frees and formats between resumes. */
        size_t slot = resumes % 64;
        free(caller_blocks[slot]);
        caller_blocks[slot] = malloc(32 + resumes % 2048);
        CHECK(caller_blocks[slot] != NULL);
        memset(caller_blocks[slot], (int)resumes, 32);
        if (resumes % 1000 == 0) {
            printf("resume %lu\n", resumes);
        }
        CHECK_OK(inger_stats(&now));
        if (now.preemptions - before.preemptions >= wanted_preemptions) {
            sliced.stop = 1;
        }
        CHECK_OK(inger_resume(call, 30));
        resumes++;
        CHECK(resumes < 20u * 1000u * 1000u); /* preemption must not have stopped working */
    }
    CHECK_OK(inger_cancel(call));
    for (int i = 0; i < 64; i++) {
        free(caller_blocks[i]);
    }
    CHECK_OK(inger_stats(&now));
    uint64_t preemptions = now.preemptions - before.preemptions;
    CHECK(preemptions >= wanted_preemptions);

    struct workload direct = {tmpfile(), 0, sliced.iterations, 0};
    CHECK(direct.output != NULL);
    fixed_count(&direct);
    CHECK(direct.hash == sliced.hash);
    long sliced_length, direct_length;
    char *sliced_text = contents(sliced.output, &sliced_length);
    char *direct_text = contents(direct.output, &direct_length);
    CHECK(sliced_length == direct_length);
    CHECK(memcmp(sliced_text, direct_text, (size_t)sliced_length) == 0);
    free(sliced_text);
    free(direct_text);
    printf("storm ok: %llu iterations, %llu preemptions, %lu resumes, %ld bytes written\n",
           (unsigned long long)sliced.iterations, (unsigned long long)preemptions, resumes,
           sliced_length);
    return 0;
}
