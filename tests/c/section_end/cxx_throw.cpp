// A C++ exception thrown from a qsort comparator and caught by the function that called
// qsort directly (tests/section_end_cxx.rs). When the deadline passes inside the comparator,
// the whole-stack rule defers it (qsort's frames are libc's) and redirects qsort's return:
// the catching frame is then the redirected frame's direct caller, the case in which libgcc's
// cleanup phase used to find the redirect stub where it expected the handler, and abort.

#include <cstddef>
#include <cstdlib>
#include <ctime>

namespace {

// Told by the test whether a redirect has been armed since the call began.
long (*redirect_armed)(void);
// Whether the comparator saw the redirect armed before it threw.
bool threw_after_redirect;

double seconds_now() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

// Spins until a redirect is armed (or, should none ever be, for at most 5 seconds: the test
// then fails on the returned code instead of hanging), then throws.
int compare(const void *a, const void *b) {
    double give_up = seconds_now() + 5.0;
    volatile unsigned long sink = 0;
    while (!redirect_armed() && seconds_now() < give_up) {
        for (int i = 0; i < 1000; i++) {
            sink = sink * 6364136223846793005ul + 1442695040888963407ul;
        }
    }
    threw_after_redirect = redirect_armed() != 0;
    if (*static_cast<const long *>(a) != *static_cast<const long *>(b)) {
        throw 1;
    }
    throw 2;
}

}  // namespace

// Sorts a small array whose comparator throws; returns 1 if the exception was caught here
// after a redirect was armed, 2 if it was caught without one, 0 if qsort returned normally.
extern "C" long cxx_sort_catching(long (*armed)(void)) {
    redirect_armed = armed;
    threw_after_redirect = false;
    long values[64];
    for (long i = 0; i < 64; i++) {
        values[i] = (i * 37) % 64;
    }
    try {
        qsort(values, 64, sizeof values[0], compare);
    } catch (int) {
        return threw_after_redirect ? 1 : 2;
    }
    return 0;
}
