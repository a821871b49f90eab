/* Run with an invalid INGER_STACK_SIZE: launching reports INGER_ECONFIG, every time, and
 * changes nothing (no abort, *out untouched, nothing runs). */
#include "check.h"

#include <stdint.h>

static void must_not_run(void *argument) { *(int *)argument = 1; }

int main(void) {
    inger_linger *const sentinel = (inger_linger *)(uintptr_t)0xc0f;
    inger_linger *call = sentinel;
    int ran = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        CHECK_CODE(inger_launch(&call, must_not_run, INGER_FOREVER, &ran), INGER_ECONFIG);
    }
    CHECK(call == sentinel && ran == 0);
    printf("config error ok: %s\n", inger_strerror(INGER_ECONFIG));
    return 0;
}
