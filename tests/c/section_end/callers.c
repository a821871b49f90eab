/* Preemptible C callers of returns.c (a library nobody names non-preemptible), for returns
 * Rust cannot receive directly, and for a longjmp over a redirected frame. */
#include <setjmp.h>

long double se_long_double(long seed, long rounds);
void se_spin_then_jump(jmp_buf *to, long seed, long rounds);

/* The x87 return value must survive the redirect of se_long_double's return into here. */
double se_via_long_double(long seed, long rounds) {
    long double v = se_long_double(seed, rounds);
    return (double)(v * 3.0L);
}

/* se_spin_then_jump's frame is redirected, then skipped by its longjmp back here. */
long se_jump_over(long seed, long rounds) {
    jmp_buf buf;
    if (setjmp(buf) != 0) {
        return seed + 1;
    }
    se_spin_then_jump(&buf, seed, rounds);
    return -1; /* never reached */
}
