/* Functions that compute for a while and then return values in every register a return may
 * use, for tests/section_end.rs. The library is named non-preemptible, so a deadline that
 * passes inside one of these functions takes effect when it returns: its return address is
 * redirected to inger's stub, which must hand every value back intact. */
#include <setjmp.h>

/* Keeps the loop from being optimised away. */
static volatile long sink;

/* A deterministic computation of about `rounds` steps. */
__attribute__((noinline)) static long spin(long seed, long rounds) {
    unsigned long x = (unsigned long)seed * 2654435761u + 1;
    for (long i = 0; i < rounds; i++) {
        x = x * 6364136223846793005ul + 1442695040888963407ul;
        if ((x & 0xfff) == 0) {
            sink = (long)x;
        }
    }
    return (long)(x >> 1);
}

long se_int(long seed, long rounds) { return spin(seed, rounds) ^ 0x5a5a; }

double se_double(long seed, long rounds) { return (double)(spin(seed, rounds) % 1000003) / 7.0; }

struct se_pair_d {
    double a, b;
};
struct se_pair_d se_pair_double(long seed, long rounds) {
    long v = spin(seed, rounds);
    struct se_pair_d p = {(double)(v % 977) + 0.25, (double)(v % 1013) - 0.5};
    return p;
}

struct se_pair_l {
    long a, b;
};
struct se_pair_l se_pair_long(long seed, long rounds) {
    long v = spin(seed, rounds);
    struct se_pair_l p = {v, ~v};
    return p;
}

struct se_big {
    long v[6];
};
struct se_big se_big(long seed, long rounds) {
    long v = spin(seed, rounds);
    struct se_big b;
    for (int i = 0; i < 6; i++) {
        b.v[i] = v + i * 1000003;
    }
    return b;
}

long double se_long_double(long seed, long rounds) {
    return (long double)(spin(seed, rounds) % 100003) / 3.0L;
}

/* Returns through a tail call: the callee returns straight to our caller. */
__attribute__((noinline)) long se_tail_callee(long seed, long rounds) {
    return spin(seed ^ 0x77, rounds) + 5;
}
long se_tail(long seed, long rounds) { return se_tail_callee(seed, rounds); }

/* Computes, then jumps back to the caller's setjmp instead of returning. */
void se_spin_then_jump(jmp_buf *to, long seed, long rounds) {
    sink = spin(seed, rounds);
    longjmp(*to, 1);
}
