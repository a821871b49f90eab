/* A program that does things to one real-time signal (inger's timer signal when run under
 * inger-run: SIGRTMAX-4 unless INGER_SIGNAL says otherwise), with CPU-bound work between
 * them so that it is preempted many times. Everything it observes goes to stdout, so a run
 * under inger-run can be compared with a direct run.
 *
 * usage: timer_signal MODE SIGNAL   (SIGNAL as a number)
 *
 * MODE: work (nothing done to the signal), reset (signal(SIG_DFL) first), reset-all (every
 * signal reset with sigaction), handler (its own SA_SIGINFO handler, raised and queued,
 * then signal() and SIG_IGN), oneshot (sysv_signal, siginterrupt, sigset, sigignore),
 * block (sigfillset + SIG_BLOCK around work), timer (its own POSIX timer on the signal),
 * default (raises the signal at its default action: dies of it).
 */
#define _GNU_SOURCE
/* sigset, sigignore and siginterrupt are deprecated, and tested here on purpose. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int sig;
static volatile sig_atomic_t calls;
static volatile sig_atomic_t last_value;
static volatile sig_atomic_t last_code;
static volatile sig_atomic_t blocked_inside;

/* About 0.1 s of CPU work; the result is printed so that it cannot be optimised away. */
static uint64_t work(void) {
    volatile uint64_t x = 1;
    for (uint64_t i = 0; i < 60000000ULL; i++) x += i ^ (x >> 3);
    return x;
}

static void on_info(int s, siginfo_t *info, void *uc) {
    (void)uc;
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    blocked_inside = sigismember(&now, s);
    calls++;
    last_code = info->si_code;
    last_value = info->si_value.sival_int;
}

static void on_plain(int s) {
    (void)s;
    calls++;
}

static const char *name(void (*handler)(int)) {
    if (handler == SIG_DFL) return "SIG_DFL";
    if (handler == SIG_IGN) return "SIG_IGN";
    if (handler == on_plain) return "on_plain";
    struct sigaction probe;
    probe.sa_sigaction = on_info;
    if (handler == probe.sa_handler) return "on_info";
    return "other";
}

static void show(const char *when) {
    struct sigaction now;
    if (sigaction(sig, NULL, &now) != 0) {
        perror("sigaction");
        exit(2);
    }
    printf("%s: handler %s flags %#x mask has sig %d has SIGUSR1 %d\n", when,
           name(now.sa_handler), (unsigned)now.sa_flags, sigismember(&now.sa_mask, sig),
           sigismember(&now.sa_mask, SIGUSR1));
}

/* Resets the signal before main when TIMER_SIGNAL_RESET_IN_CONSTRUCTOR names it: programs
 * (and their libraries' constructors) can touch the signal before main. */
static int reset_by_constructor;

__attribute__((constructor)) static void before_main(void) {
    const char *number = getenv("TIMER_SIGNAL_RESET_IN_CONSTRUCTOR");
    if (number) {
        signal(atoi(number), SIG_DFL);
        reset_by_constructor = 1;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODE SIGNAL\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    sig = atoi(argv[2]);
    uint64_t result = 0;
    show("start");
    if (reset_by_constructor) printf("the constructor reset the signal\n");
    if (strcmp(mode, "work") == 0) {
        result += work();
    } else if (strcmp(mode, "reset") == 0) {
        /* The case that killed programs under inger-run: the next expiry met SIG_DFL. */
        void (*old)(int) = signal(sig, SIG_DFL);
        printf("signal returned %s\n", name(old));
        result += work();
        show("after reset");
    } else if (strcmp(mode, "reset-all") == 0) {
        /* A tool that resets every signal, as some daemons and test runners do. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
        result += work();
        show("after reset-all");
    } else if (strcmp(mode, "handler") == 0) {
        struct sigaction act;
        memset(&act, 0, sizeof act);
        act.sa_sigaction = on_info;
        act.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&act.sa_mask);
        sigaddset(&act.sa_mask, SIGUSR1);
        sigaddset(&act.sa_mask, SIGKILL);
        struct sigaction old;
        sigaction(sig, &act, &old);
        printf("old handler %s\n", name(old.sa_handler));
        show("installed");
        result += work();
        raise(sig);
        printf("after raise: calls %d code %d blocked inside %d\n", (int)calls, (int)last_code,
               (int)blocked_inside);
        union sigval value = {.sival_int = 42};
        sigqueue(getpid(), sig, value);
        printf("after sigqueue: calls %d code %d value %d\n", (int)calls, (int)last_code,
               (int)last_value);
        result += work();
        signal(sig, on_plain);
        show("signal()");
        raise(sig);
        printf("after raise: calls %d\n", (int)calls);
        signal(sig, SIG_IGN);
        raise(sig);
        printf("ignored: calls %d\n", (int)calls);
        show("ignored");
    } else if (strcmp(mode, "oneshot") == 0) {
        result += work();
        sysv_signal(sig, on_plain);
        show("sysv_signal");
        raise(sig);
        printf("after raise: calls %d\n", (int)calls);
        show("after delivery");
        siginterrupt(sig, 1);
        signal(sig, on_plain);
        show("signal after siginterrupt");
        sigset(sig, on_plain);
        void (*held)(int) = sigset(sig, SIG_HOLD);
        printf("sigset SIG_HOLD returned %s\n", name(held));
        raise(sig);
        printf("held: calls %d\n", (int)calls);
        void (*released)(int) = sigset(sig, on_plain);
        printf("sigset returned %s, calls %d\n", released == SIG_HOLD ? "SIG_HOLD" : name(released),
               (int)calls);
        sigignore(sig);
        show("sigignore");
    } else if (strcmp(mode, "block") == 0) {
        /* Block everything for a while, as around a critical section. */
        result += work();
        sigset_t all, old;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, &old);
        result += work();
        sigset_t now;
        sigprocmask(SIG_SETMASK, &old, &now);
        printf("was blocked %d\n", sigismember(&now, sig));
        result += work();
    } else if (strcmp(mode, "timer") == 0) {
        /* The program's own POSIX timer on the same signal: its expiries are the program's. */
        struct sigaction act;
        memset(&act, 0, sizeof act);
        act.sa_sigaction = on_info;
        act.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(sig, &act, NULL);
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = sig;
        event.sigev_value.sival_int = 7;
        timer_t timer;
        if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) {
            perror("timer_create");
            return 2;
        }
        struct itimerspec spec = {{0, 1000000}, {0, 1000000}};
        timer_settime(timer, 0, &spec, NULL);
        while (calls < 20) {
        }
        timer_delete(timer);
        printf("timer: at least 20 calls, code SI_TIMER %d, value %d\n", last_code == SI_TIMER,
               (int)last_value);
    } else if (strcmp(mode, "default") == 0) {
        result += work();
        fflush(stdout);
        raise(sig); /* the default action: the process dies of the signal */
        printf("still alive\n");
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("result %llu\n", (unsigned long long)(result & 0xff));
    return 0;
}
