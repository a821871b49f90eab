/* One blocking call per mode, each of which any caught signal could make return early or
 * fail with EINTR (signal(7)). Run directly and under inger-run (tests/blocking_calls.rs):
 * under inger-run the timer signal arrives while the call waits, and must stay invisible.
 *
 * Each mode burns a little CPU first, so that under inger-run the call starts part-way into
 * a slice and an expiry (or, with CPU-time slices, the wall-clock check of the slice) falls
 * inside the wait. Prints "<mode>: ok" and exits 0, or says what went wrong and exits 1.
 *
 * usage: blocking_calls MODE    (MODE: see the table at the end) */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* How long each call waits. */
#define WAIT_MS 150

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static volatile sig_atomic_t alarms;
static void on_alarm(int signal) {
    (void)signal;
    alarms++;
}

static int failed(const char *mode, const char *what) {
    printf("%s: FAILED: %s (errno %d: %s)\n", mode, what, errno, strerror(errno));
    return 1;
}

/* Fails if the call came back before it had waited WAIT_MS (a lower bound only: a loaded
 * machine makes it later, never earlier). */
static int waited(const char *mode, double start) {
    double elapsed = now_ms() - start;
    if (elapsed < WAIT_MS - 1) {
        printf("%s: FAILED: returned after %.1f ms of %d\n", mode, elapsed, WAIT_MS);
        return 1;
    }
    printf("%s: ok\n", mode);
    return 0;
}

static void burn(void) {
    volatile unsigned long sink = 0;
    for (unsigned long i = 0; i < 2000000; i++) sink += i;
}

static void arm_alarm(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm; /* no SA_RESTART: the program expects EINTR from it */
    sigaction(SIGALRM, &action, NULL);
    struct itimerval timer = {{0, 0}, {0, WAIT_MS * 1000}};
    setitimer(ITIMER_REAL, &timer, NULL);
}

static struct timespec wait_ts(void) {
    struct timespec t = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000000L};
    return t;
}

/* pause() returns only after the program's own SIGALRM handler ran. */
static int pause_after_alarm(const char *mode) {
    double start = now_ms();
    arm_alarm();
    int result = pause();
    if (result != -1 || errno != EINTR) return failed(mode, "pause did not fail with EINTR");
    if (alarms != 1) return failed(mode, "pause returned before the alarm");
    return waited(mode, start);
}

static int sigsuspend_for_alarm(const char *mode) {
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    double start = now_ms();
    arm_alarm();
    sigemptyset(&empty);
    int result = sigsuspend(&empty);
    if (result != -1 || errno != EINTR) return failed(mode, "sigsuspend did not fail with EINTR");
    if (alarms != 1) return failed(mode, "sigsuspend returned before the alarm");
    return waited(mode, start);
}

/* ppoll with no descriptors and no timeout, unblocking SIGALRM: only the alarm ends it. */
static int ppoll_for_alarm(const char *mode) {
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    double start = now_ms();
    arm_alarm();
    sigemptyset(&empty);
    int result = ppoll(NULL, 0, NULL, &empty);
    if (result != -1 || errno != EINTR) return failed(mode, "ppoll did not fail with EINTR");
    if (alarms != 1) return failed(mode, "ppoll returned before the alarm");
    return waited(mode, start);
}

/* select with nothing to wait for and no timeout: only the alarm ends it. */
static int select_for_alarm(const char *mode) {
    double start = now_ms();
    arm_alarm();
    int result = select(0, NULL, NULL, NULL, NULL);
    if (result != -1 || errno != EINTR) return failed(mode, "select did not fail with EINTR");
    if (alarms != 1) return failed(mode, "select returned before the alarm");
    return waited(mode, start);
}

static int sigtimedwait_times_out(const char *mode) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct timespec timeout = wait_ts();
    double start = now_ms();
    int result = sigtimedwait(&set, NULL, &timeout);
    if (result != -1 || errno != EAGAIN) return failed(mode, "sigtimedwait did not time out");
    return waited(mode, start);
}

static void *send_usr1_later(void *arg) {
    pthread_t target = *(pthread_t *)arg;
    struct timespec t = wait_ts();
    while (nanosleep(&t, &t) != 0) {}
    pthread_kill(target, SIGUSR1);
    return NULL;
}

static int sigwaitinfo_gets_its_signal(const char *mode) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pthread_t self = pthread_self(), sender;
    double start = now_ms();
    pthread_create(&sender, NULL, send_usr1_later, &self);
    siginfo_t info;
    int result = sigwaitinfo(&set, &info);
    pthread_join(sender, NULL);
    if (result != SIGUSR1) return failed(mode, "sigwaitinfo did not return SIGUSR1");
    return waited(mode, start);
}

static void *post_later(void *arg) {
    struct timespec t = wait_ts();
    while (nanosleep(&t, &t) != 0) {}
    sem_post(arg);
    return NULL;
}

static int epoll_wait_times_out(const char *mode) {
    int epfd = epoll_create1(0);
    int pipefd[2];
    if (epfd < 0 || pipe(pipefd) != 0) return failed(mode, "setup");
    struct epoll_event event = {.events = EPOLLIN, .data.fd = pipefd[0]};
    epoll_ctl(epfd, EPOLL_CTL_ADD, pipefd[0], &event);
    double start = now_ms();
    int result = epoll_wait(epfd, &event, 1, WAIT_MS);
    if (result != 0) return failed(mode, "epoll_wait did not time out");
    return waited(mode, start);
}

static int poll_times_out(const char *mode) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return failed(mode, "setup");
    struct pollfd fd = {.fd = pipefd[0], .events = POLLIN};
    double start = now_ms();
    int result = poll(&fd, 1, WAIT_MS);
    if (result != 0) return failed(mode, "poll did not time out");
    return waited(mode, start);
}

static int select_times_out(const char *mode) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return failed(mode, "setup");
    fd_set readable;
    FD_ZERO(&readable);
    FD_SET(pipefd[0], &readable);
    struct timeval timeout = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
    double start = now_ms();
    int result = select(pipefd[0] + 1, &readable, NULL, NULL, &timeout);
    if (result != 0) return failed(mode, "select did not time out");
    return waited(mode, start);
}

/* With rem: the sleep is the whole request, not what was left at some interruption. */
static int nanosleep_sleeps(const char *mode) {
    struct timespec request = wait_ts(), rem;
    double start = now_ms();
    if (nanosleep(&request, &rem) != 0) return failed(mode, "nanosleep failed");
    return waited(mode, start);
}

static int clock_nanosleep_sleeps(const char *mode) {
    struct timespec request = wait_ts();
    double start = now_ms();
    int error = clock_nanosleep(CLOCK_MONOTONIC, 0, &request, NULL);
    if (error != 0) {
        errno = error;
        return failed(mode, "clock_nanosleep failed");
    }
    return waited(mode, start);
}

static int usleep_sleeps(const char *mode) {
    double start = now_ms();
    if (usleep(WAIT_MS * 1000) != 0) return failed(mode, "usleep failed");
    return waited(mode, start);
}

static int sem_wait_for_post(const char *mode) {
    static sem_t semaphore;
    sem_init(&semaphore, 0, 0);
    pthread_t poster;
    double start = now_ms();
    pthread_create(&poster, NULL, post_later, &semaphore);
    int result = sem_wait(&semaphore);
    pthread_join(poster, NULL);
    if (result != 0) return failed(mode, "sem_wait failed");
    return waited(mode, start);
}

static int nanosleep_without_rem(const char *mode) {
    struct timespec request = wait_ts();
    double start = now_ms();
    if (nanosleep(&request, NULL) != 0) return failed(mode, "nanosleep failed");
    return waited(mode, start);
}

static int sem_timedwait_times_out(const char *mode) {
    sem_t semaphore;
    sem_init(&semaphore, 0, 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += (WAIT_MS % 1000) * 1000000L;
    deadline.tv_sec += WAIT_MS / 1000 + deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    double start = now_ms();
    int result = sem_timedwait(&semaphore, &deadline);
    if (result != -1 || errno != ETIMEDOUT) return failed(mode, "sem_timedwait did not time out");
    return waited(mode, start);
}

static int listener(int *port_out) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(fd, 4) != 0 || getsockname(fd, (struct sockaddr *)&address, &length) != 0)
        return -1;
    *port_out = ntohs(address.sin_port);
    return fd;
}

static void set_receive_timeout(int fd) {
    struct timeval timeout = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

static int accept_with_timeout(const char *mode) {
    int port;
    int fd = listener(&port);
    if (fd < 0) return failed(mode, "setup");
    set_receive_timeout(fd);
    double start = now_ms();
    int result = accept(fd, NULL, NULL);
    if (result != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        return failed(mode, "accept did not time out");
    return waited(mode, start);
}

static void *connect_later(void *arg) {
    int port = *(int *)arg;
    struct timespec t = wait_ts();
    while (nanosleep(&t, &t) != 0) {}
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, (struct sockaddr *)&address, sizeof address);
    return (void *)(long)fd;
}

static int accept_gets_its_connection(const char *mode) {
    int port;
    int fd = listener(&port);
    if (fd < 0) return failed(mode, "setup");
    pthread_t client;
    double start = now_ms();
    pthread_create(&client, NULL, connect_later, &port);
    int result = accept(fd, NULL, NULL);
    pthread_join(client, NULL);
    if (result < 0) return failed(mode, "accept failed");
    return waited(mode, start);
}

static int read_with_timeout(const char *mode) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return failed(mode, "setup");
    set_receive_timeout(pair[0]);
    char byte;
    double start = now_ms();
    ssize_t result = read(pair[0], &byte, 1);
    if (result != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        return failed(mode, "read did not time out");
    return waited(mode, start);
}

static int recv_with_timeout(const char *mode) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) return failed(mode, "setup");
    set_receive_timeout(pair[0]);
    char byte;
    double start = now_ms();
    ssize_t result = recv(pair[0], &byte, 1, 0);
    if (result != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        return failed(mode, "recv did not time out");
    return waited(mode, start);
}

static volatile sig_atomic_t interrupts;
static void on_interrupt(int signal) {
    (void)signal;
    interrupts++;
}

/* Not a blocking call: a signal sent to the process while its only thread blocks it stays
 * pending until that thread unblocks it (no other thread of the program's could take it). */
static int process_signal_waits_for_unblock(const char *mode) {
    signal(SIGINT, on_interrupt);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    kill(getpid(), SIGINT);
    struct timespec pause_ts = {0, 50 * 1000000L};
    nanosleep(&pause_ts, NULL);
    if (interrupts != 0) return failed(mode, "the handler of a blocked SIGINT ran");
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    if (interrupts != 1) return failed(mode, "SIGINT was not delivered once unblocked");
    printf("%s: ok\n", mode);
    return 0;
}

static const struct {
    const char *name;
    int (*run)(const char *);
} MODES[] = {
    {"pause", pause_after_alarm},
    {"sigsuspend", sigsuspend_for_alarm},
    {"ppoll-alarm", ppoll_for_alarm},
    {"select-alarm", select_for_alarm},
    {"sigtimedwait", sigtimedwait_times_out},
    {"sigwaitinfo", sigwaitinfo_gets_its_signal},
    {"epoll_wait", epoll_wait_times_out},
    {"poll", poll_times_out},
    {"select", select_times_out},
    {"nanosleep", nanosleep_sleeps},
    {"nanosleep-no-rem", nanosleep_without_rem},
    {"clock_nanosleep", clock_nanosleep_sleeps},
    {"usleep", usleep_sleeps},
    {"sem_timedwait", sem_timedwait_times_out},
    {"sem_wait", sem_wait_for_post},
    {"accept-timeout", accept_with_timeout},
    {"accept", accept_gets_its_connection},
    {"read-timeout", read_with_timeout},
    {"recv-timeout", recv_with_timeout},
    {"process-signal", process_signal_waits_for_unblock},
};

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < sizeof MODES / sizeof MODES[0]; i++) printf("%s\n", MODES[i].name);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: blocking_calls MODE|list\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof MODES / sizeof MODES[0]; i++) {
        if (strcmp(argv[1], MODES[i].name) == 0) {
            burn();
            return MODES[i].run(MODES[i].name);
        }
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
