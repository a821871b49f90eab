/*
 * C thread-local state for tests/tls_c_thread_locals.rs: `__thread` variables with initial
 * values and pthread keys (one below 32, stored inline in glibc's thread descriptor, and one
 * at 32 or above, stored in a second-level array that glibc allocates on first use).
 * The test loads this library at start-up (LD_PRELOAD), so its TLS is in the static block.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

__thread int tls_int = 42;
__thread char tls_text[32] = "initial";

static pthread_key_t low_key;
static pthread_key_t high_key;

int tls_int_get(void) { return tls_int; }

void tls_int_set(int value) { tls_int = value; }

/* Copies the thread's text (at most 31 bytes) into `out` (32 bytes). */
void tls_text_get(char *out) { memcpy(out, tls_text, sizeof tls_text); }

void tls_text_set(const char *text) {
    strncpy(tls_text, text, sizeof tls_text - 1);
    tls_text[sizeof tls_text - 1] = '\0';
}

/*
 * Stores `value` in tls_int and keeps re-reading it while computing for `rounds` steps, so a
 * preemption is likely to land in here. Returns the number of times it found another value.
 */
long tls_int_churn(int value, long rounds) {
    long wrong = 0;
    volatile uint64_t x = (uint64_t)value | 1;
    tls_int = value;
    for (long i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (tls_int != value) {
            wrong++;
            tls_int = value;
        }
    }
    return wrong;
}

/*
 * Creates the two keys (no destructors). Keys are process-wide, so this runs once, in the
 * caller. Returns the high key's index, or -1 if no key at or above 32 could be created.
 */
int tls_keys_create(void) {
    if (pthread_key_create(&low_key, NULL) != 0)
        return -1;
    for (int attempt = 0; attempt < 1100; attempt++) {
        if (pthread_key_create(&high_key, NULL) != 0)
            return -1;
        if (high_key >= 32)
            return (int)high_key;
    }
    return -1;
}

int tls_keys_set(intptr_t low, intptr_t high) {
    if (pthread_setspecific(low_key, (void *)low) != 0)
        return -1;
    return pthread_setspecific(high_key, (void *)high);
}

void tls_keys_get(intptr_t *low, intptr_t *high) {
    *low = (intptr_t)pthread_getspecific(low_key);
    *high = (intptr_t)pthread_getspecific(high_key);
}
