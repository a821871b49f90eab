/* The original libinger's names, behind INGER_SHORT_NAMES. With the argument "misuse" the
 * program resumes a completed call, which must abort with a message. */
#define INGER_SHORT_NAMES
#include "check.h"

#include <string.h>

static volatile int stop;
static void spin_until_stopped(void *argument) {
    int *runs = argument;
    (*runs)++;
    while (!stop) {
    }
}

static void yield_once(void *argument) {
    (void)argument;
    inger_pause();
}

int main(int argc, char **argv) {
    int runs = 0;
    linger_t call = launch(spin_until_stopped, 1000, &runs);
    CHECK(!call.is_complete && runs == 1);
    resume(&call, 1000);
    CHECK(!call.is_complete);
    stop = 1;
    resume(&call, INGER_FOREVER);
    CHECK(call.is_complete);
    if (argc > 1 && strcmp(argv[1], "misuse") == 0) {
        resume(&call, 1000); /* aborts: the call already completed */
        printf("not reached\n");
        return 0;
    }
    cancel(&call);
    CHECK(call.handle == NULL && call.is_complete);

    linger_t paused = launch(yield_once, INGER_FOREVER, NULL);
    CHECK(!paused.is_complete && inger_yielded(paused.handle));
    cancel(&paused);
    printf("short names ok\n");
    return 0;
}
