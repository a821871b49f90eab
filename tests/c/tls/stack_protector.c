/*
 * Compiled by tests/tls_stack_protector.rs with -fstack-protector-all: every function below
 * stores the canary from the thread control block (%fs:0x28) in its frame on entry and
 * checks it on return, aborting with "stack smashing detected" if it differs. The frames
 * hold local arrays and recurse, so preemptions land inside protected frames.
 */
#include <stdint.h>
#include <string.h>

static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Recurses `depth` levels, each with a 128-byte array it fills, hashes and keeps using. */
uint64_t sp_recurse(int depth, uint64_t seed) {
    unsigned char buffer[128];
    uint64_t hash = seed;
    for (int i = 0; i < 128; i++)
        buffer[i] = (unsigned char)(mix(seed + i) >> 7);
    for (int round = 0; round < 40; round++)
        for (int i = 0; i < 128; i += 8) {
            uint64_t word;
            memcpy(&word, buffer + i, sizeof word);
            hash = mix(hash ^ word);
            memcpy(buffer + ((i + 8) & 127), &hash, sizeof hash);
        }
    if (depth > 0)
        hash ^= sp_recurse(depth - 1, hash);
    return hash ^ buffer[depth & 127];
}

/*
 * Recurses `depth` levels like sp_recurse, and at the bottom calls `callback` (which may
 * pause the preemptible function, or resume one): the protected frames above it span that.
 */
uint64_t sp_with_callback(int depth, uint64_t seed, void (*callback)(void)) {
    unsigned char buffer[96];
    uint64_t hash = mix(seed);
    for (int i = 0; i < 96; i++)
        buffer[i] = (unsigned char)(hash >> (i % 57));
    if (depth > 0)
        hash ^= sp_with_callback(depth - 1, hash, callback);
    else
        callback();
    for (int i = 0; i < 96; i += 8) {
        uint64_t word;
        memcpy(&word, buffer + i, sizeof word);
        hash = mix(hash ^ word);
    }
    return hash;
}
