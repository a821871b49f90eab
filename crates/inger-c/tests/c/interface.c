/* Compiled (not run) by tests/header.rs as C99, C11, C17 and C++17, with and without
 * INGER_SHORT_NAMES: each initialiser below only compiles without diagnostics if the header
 * declares the function with exactly this type, the interface of issue 5 plus extras. */
#include <libinger.h>

#include <stddef.h>

int (*const check_launch)(inger_linger **, void (*)(void *), uint64_t, void *) = inger_launch;
int (*const check_resume)(inger_linger *, uint64_t) = inger_resume;
bool (*const check_is_complete)(const inger_linger *) = inger_is_complete;
bool (*const check_yielded)(const inger_linger *) = inger_yielded;
int (*const check_cancel)(inger_linger *) = inger_cancel;
void (*const check_pause)(void) = inger_pause;
const char *(*const check_strerror)(int) = inger_strerror;

bool (*const check_in_preemptible)(void) = inger_in_preemptible;
int (*const check_nopreempt)(void (*)(void *), void *) = inger_nopreempt;
int (*const check_stats)(inger_stats_t *) = inger_stats;
int (*const check_capabilities)(inger_capabilities_t *) = inger_capabilities;

#ifdef INGER_SHORT_NAMES
linger_t (*const check_short_launch)(void (*)(void *), uint64_t, void *) = launch;
void (*const check_short_resume)(linger_t *, uint64_t) = resume;
void (*const check_short_cancel)(linger_t *) = cancel;
/* The original's field. */
const size_t check_is_complete_field = offsetof(linger_t, is_complete);
#endif

/* The budgets the original defined. */
const uint64_t check_forever = INGER_FOREVER;
typedef char check_forever_is_max[INGER_FOREVER == UINT64_MAX ? 1 : -1];
