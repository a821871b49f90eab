/* Launch, resume and cancel are refused inside signal handlers (synchronous and
 * asynchronous signals, on the thread's stack, on an alternate stack, inside a preemptible
 * function), and there are no false alarms outside them. */
#define _DEFAULT_SOURCE /* sigaction, sigaltstack, setitimer under -std=c11 */
#include "check.h"

#include <signal.h>
#include <string.h>
#include <sys/time.h>

static volatile int stop;
static void spin_until_stopped(void *argument) {
    (void)argument;
    while (!stop) {
    }
}
static void nothing(void *argument) { (void)argument; }

/* A paused function the handlers try to resume and cancel. */
static inger_linger *paused;

struct attempt {
    volatile sig_atomic_t ran;
    int launch_code;
    int resume_code;
    int cancel_code;
    int out_unchanged;
};
static struct attempt attempt;

static void __attribute__((noinline)) try_everything(void) {
    inger_linger *const sentinel = (inger_linger *)(uintptr_t)0xbad;
    inger_linger *call = sentinel;
    attempt.launch_code = inger_launch(&call, nothing, INGER_FOREVER, NULL);
    attempt.out_unchanged = call == sentinel;
    attempt.resume_code = inger_resume(paused, INGER_FOREVER);
    attempt.cancel_code = inger_cancel(paused);
    attempt.ran = 1;
}

/* Some depth between the handler and the calls. */
static void __attribute__((noinline)) level3(void) { try_everything(); __asm__ volatile(""); }
static void __attribute__((noinline)) level2(void) { level3(); __asm__ volatile(""); }
static void __attribute__((noinline)) level1(void) { level2(); __asm__ volatile(""); }

static void handler(int signal) {
    (void)signal;
    try_everything();
}
static void deep_handler(int signal) {
    (void)signal;
    level1();
}

static void install(int signal, void (*function)(int), int flags) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = function;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    CHECK(sigaction(signal, &action, NULL) == 0);
}

static void expect_refused(const char *scenario) {
    CHECK(attempt.ran);
    if (attempt.launch_code != INGER_EINHANDLER || attempt.resume_code != INGER_EINHANDLER ||
        attempt.cancel_code != INGER_EINHANDLER || !attempt.out_unchanged) {
        fprintf(stderr, "%s: launch %d, resume %d, cancel %d, out unchanged %d\n", scenario,
                attempt.launch_code, attempt.resume_code, attempt.cancel_code, attempt.out_unchanged);
        exit(1);
    }
    memset(&attempt, 0, sizeof attempt);
    /* Nothing changed: the paused function is still there and still paused. */
    CHECK(!inger_is_complete(paused));
}

/* Fires SIGALRM at the thread once, asynchronously, while it spins. */
static void interrupt_spinning(void) {
    struct itimerval once;
    memset(&once, 0, sizeof once);
    once.it_value.tv_usec = 2000;
    CHECK(setitimer(ITIMER_REAL, &once, NULL) == 0);
    while (!attempt.ran) {
    }
}

/* Inside a preemptible function: a synchronous and an asynchronous signal. */
static void raise_inside(void *argument) {
    (void)argument;
    CHECK(raise(SIGUSR1) == 0);
}
static void interrupted_inside(void *argument) {
    (void)argument;
    interrupt_spinning();
}

/* A nested launch outside any handler must keep working. */
static void launches_nested(void *argument) {
    int *ok = argument;
    inger_linger *call = NULL;
    *ok = inger_launch(&call, nothing, INGER_FOREVER, NULL) == INGER_OK && inger_is_complete(call) &&
          inger_cancel(call) == INGER_OK;
}

int main(void) {
    CHECK_OK(inger_launch(&paused, spin_until_stopped, 1000, NULL));
    CHECK(!inger_is_complete(paused));

    install(SIGUSR1, handler, 0);
    CHECK(raise(SIGUSR1) == 0);
    expect_refused("synchronous signal");

    install(SIGUSR1, deep_handler, 0);
    CHECK(raise(SIGUSR1) == 0);
    expect_refused("synchronous signal, deep handler");

    install(SIGALRM, deep_handler, 0);
    interrupt_spinning();
    expect_refused("asynchronous signal");

    /* An alternate signal stack on the heap, and one inside the thread's own stack. */
    stack_t alternate = {.ss_sp = malloc(256 * 1024), .ss_flags = 0, .ss_size = 256 * 1024};
    CHECK(alternate.ss_sp != NULL);
    CHECK(sigaltstack(&alternate, NULL) == 0);
    install(SIGUSR1, deep_handler, SA_ONSTACK);
    CHECK(raise(SIGUSR1) == 0);
    expect_refused("alternate stack on the heap");
    {
        _Alignas(16) char on_stack[128 * 1024];
        stack_t local = {.ss_sp = on_stack, .ss_flags = 0, .ss_size = sizeof on_stack};
        CHECK(sigaltstack(&local, NULL) == 0);
        CHECK(raise(SIGUSR1) == 0);
        expect_refused("alternate stack inside the thread's stack");
        stack_t disable = {.ss_sp = NULL, .ss_flags = SS_DISABLE, .ss_size = 0};
        CHECK(sigaltstack(&disable, NULL) == 0);
    }

    /* Handlers that interrupt a preemptible function run on its stack. */
    install(SIGUSR1, handler, 0);
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, raise_inside, INGER_FOREVER, NULL));
    CHECK(inger_is_complete(call));
    CHECK_OK(inger_cancel(call));
    expect_refused("synchronous signal inside a preemptible function");
    install(SIGALRM, handler, 0);
    CHECK_OK(inger_launch(&call, interrupted_inside, INGER_FOREVER, NULL));
    CHECK(inger_is_complete(call));
    CHECK_OK(inger_cancel(call));
    expect_refused("asynchronous signal inside a preemptible function");

    /* No false alarms: plenty of signals have come and gone; every call still works. */
    for (int i = 0; i < 20000; i++) {
        CHECK_OK(inger_launch(&call, nothing, INGER_FOREVER, NULL));
        CHECK_OK(inger_cancel(call));
    }
    int nested_ok = 0;
    CHECK_OK(inger_launch(&call, launches_nested, INGER_FOREVER, &nested_ok));
    CHECK(nested_ok);
    CHECK_OK(inger_cancel(call));
    CHECK_OK(inger_resume(paused, 100));
    stop = 1;
    CHECK_OK(inger_resume(paused, INGER_FOREVER));
    CHECK(inger_is_complete(paused));
    CHECK_OK(inger_cancel(paused));
    printf("signal handler ok\n");
    return 0;
}
