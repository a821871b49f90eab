/* A long-running loop for the safe-point tests (tests/safepoint_*.rs).
 *
 * sp_busy_spin sets *inside to 1 on entry and back to 0 before returning, and calls nothing
 * in between: whenever the caller of a paused function finds *inside == 1, the function was
 * paused with this library's frame on its stack. (The compiler may move the arithmetic
 * across the volatile stores, but not the stores out of this function: the flag can only
 * under-report, never report a frame that is not there.)
 */

long sp_busy_spin(volatile int *inside, long rounds);

long sp_busy_spin(volatile int *inside, long rounds)
{
    unsigned long x = (unsigned long)rounds | 1;
    *inside = 1;
    for (long i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* Keep the loop: the optimiser must not fold it. */
        __asm__ volatile("" : "+r"(x));
    }
    *inside = 0;
    return (long)x;
}
