/* Libsets from C: a copy of zlib for a preemptible function, the original for the caller,
 * the counters, and the libset error codes. */
#include "check.h"

#include <dlfcn.h>

typedef unsigned long (*adler32_fn)(unsigned long, const unsigned char *, unsigned int);

static inger_libset *libz;
static void *inside_adler32;
static unsigned long inside_value;

static void uses_copy(void *argument) {
    (void)argument;
    CHECK_OK(inger_libset_symbol(libz, "adler32", &inside_adler32));
    inside_value = ((adler32_fn)inside_adler32)(1, (const unsigned char *)"libset", 6);
    inger_pause(); /* holding the copy */
}

int main(void) {
    CHECK_CODE(inger_libset_open(NULL, 2, &libz), INGER_ENULL);
    CHECK_CODE(inger_libset_open("libinger-no-such-library.so.3", 2, &libz), INGER_ELIBNOTFOUND);
    CHECK_CODE(inger_libset_open("libc.so.6", 2, &libz), INGER_ECOPY);
    /* glibc's libm uses initial-exec TLS: refused, it cannot be given copies */
    CHECK_CODE(inger_libset_open("libm.so.6", 2, &libz), INGER_ESTATICTLS);
    CHECK_CODE(inger_libset_open("libz.so.1", 0, &libz), INGER_ECONFIG);
    CHECK_OK(inger_libset_open("libz.so.1", 2, &libz));

    void *original = dlsym(dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD), "adler32");
    void *outside = NULL;
    CHECK_OK(inger_libset_symbol(libz, "adler32", &outside));
    CHECK(outside == original);
    CHECK_CODE(inger_libset_symbol(libz, "no_such_symbol", &outside), INGER_ESYMBOL);
    CHECK_CODE(inger_libset_symbol(libz, NULL, &outside), INGER_ENULL);

    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, uses_copy, GENEROUS_US, NULL));
    CHECK(inger_yielded(call));
    CHECK(inside_adler32 != NULL && inside_adler32 != original);
    CHECK(inside_value == ((adler32_fn)original)(1, (const unsigned char *)"libset", 6));
    struct inger_libset_stats stats;
    CHECK_OK(inger_libset_stats(libz, &stats));
    CHECK(stats.copies_in_use == 1 && stats.copies_loaded >= 1 && stats.copies_taken == 1);
    CHECK_OK(inger_cancel(call)); /* discarded while holding its copy: renewed */
    CHECK_OK(inger_libset_stats(libz, &stats));
    CHECK(stats.copies_in_use == 0 && stats.copies_renewed == 1);
    CHECK_CODE(inger_libset_stats(NULL, &stats), INGER_ENULL);
    puts("libset ok");
    return 0;
}
