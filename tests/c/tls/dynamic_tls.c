/*
 * A library with thread-local variables that tests/tls_dlopen.rs loads with dlopen after
 * inger has started, compiled with the default model for shared libraries (global-dynamic,
 * requested explicitly): each thread's (and each preemptible function's) copy is allocated
 * by __tls_get_addr on first access, from the module's initialisation image.
 */
#include <stdint.h>

__thread long dyn_value = 7;
/* A large initialised block, so a copy that was not built from the image shows. */
__thread unsigned char dyn_pattern[4096] = {[0] = 1, [1000] = 2, [4095] = 3};

long dyn_get(void) { return dyn_value; }

void dyn_set(long value) { dyn_value = value; }

/* 1 if this context's dyn_pattern still equals the initialisation image. */
int dyn_pattern_is_initial(void) {
    for (int i = 0; i < 4096; i++) {
        unsigned char expected = i == 0 ? 1 : i == 1000 ? 2 : i == 4095 ? 3 : 0;
        if (dyn_pattern[i] != expected)
            return 0;
    }
    return 1;
}

/* Scribbles over dyn_pattern (so a later context on a reused block would notice). */
void dyn_pattern_scribble(unsigned char byte) {
    for (int i = 0; i < 4096; i++)
        dyn_pattern[i] = byte;
}

/*
 * Stores `value` in dyn_value and keeps re-reading it while computing for `rounds` steps, so
 * preemptions land in here, in the middle of TLS accesses. Returns how often it changed.
 */
long dyn_churn(long value, long rounds) {
    long wrong = 0;
    volatile uint64_t x = (uint64_t)value | 1;
    dyn_value = value;
    for (long i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x += dyn_pattern[i & 4095]; /* another TLS access */
        if (dyn_value != value) {
            wrong++;
            dyn_value = value;
        }
    }
    return wrong;
}
