/**
 * @file libinger.h
 * @brief Lightweight preemptible functions for C: call a function with a time budget, get
 *        control back when the budget runs out, resume or cancel it later.
 *
 * Link with `-linger` (`libinger.so` or `libinger.a`, built by `cargo build --release`; see
 * `pkg-config --cflags --libs inger` after installing). x86-64 Linux with glibc only.
 *
 * @code
 * #include <libinger.h>
 *
 * static void work(void *arg) { ... long computation on arg ... }
 *
 * inger_linger *call;
 * int rc = inger_launch(&call, work, 1000, &data);     // run for at most 1 ms
 * if (rc != 0) { fprintf(stderr, "%s\n", inger_strerror(rc)); return 1; }
 * while (!inger_is_complete(call)) {
 *     do_something_else();
 *     inger_resume(call, 1000);                         // another millisecond
 * }
 * inger_cancel(call);                                   // frees the handle
 * @endcode
 *
 * @section budgets Budgets
 * Every `timeout_us` is a budget in microseconds of wall-clock time, measured from the call:
 * - `0` only prepares the call (`inger_launch`) or resumes it as briefly as possible
 *   (`inger_resume`: until the next preemption check, a few microseconds);
 * - `UINT64_MAX` (::INGER_FOREVER) runs it until it returns or calls inger_pause();
 * - anything else is a deadline: once it passes, the function is paused at the next safe
 *   point (typically within 5 to 15 microseconds; later while it is inside the C library, the
 *   dynamic loader, libgcc_s, libstdc++, or an inger_nopreempt() section, where pausing it
 *   would not be safe) and control returns to the caller.
 *
 * inger_launch_cpu() and inger_resume_cpu() take the budget in microseconds of the thread's
 * **CPU time** instead: time the function spends blocked, asleep or descheduled does not
 * count. Use CPU time to bound work (a request may burn at most 10 ms of CPU); use wall-clock
 * time for a latency deadline. A CPU budget ends within the timer's lateness while the
 * function computes, and within one scheduler tick (1-4 ms) when it ends right after a wait;
 * starting it costs one system call (reading the thread's CPU clock).
 *
 * A function launched inside another preemptible function never outlives the outer budget:
 * when the outer deadline passes, both pause and later resume together.
 * Setting the environment variable `INGER_PREEMPT=0` turns preemption off: budgets are then
 * ignored and functions run until they return or pause.
 *
 * @section ownership Ownership
 * inger_launch() allocates an ::inger_linger handle and hands it to the caller, who must
 * free it with inger_cancel() exactly once, whether or not the function completed. Its size
 * and layout are private; C only ever holds a pointer. Using a handle after inger_cancel()
 * is undefined behaviour, like using memory after `free`; the library refuses most such
 * handles with ::INGER_EBADHANDLE, but only on a best-effort basis.
 * Cancelling a function that has started but not returned discards its stack: the rest of
 * the function never runs, memory it allocated is leaked, and locks it holds stay locked.
 * That includes a nested function it was resuming when it was paused: that inner handle
 * stays in use for good (::INGER_ERUNNING) and is leaked.
 *
 * @section threads Threads and thread-local storage
 * A preemptible function runs on the thread that launches or resumes it; there is no
 * parallelism. It deadlocks if it waits for a lock held by its caller (and vice versa).
 * Any number of threads may launch functions at the same time.
 *
 * Each function has its own thread-local storage, as if it ran on a thread of its own: its
 * own `errno`, and its own copy of every `__thread`/`thread_local` variable, starting from the
 * variable's initial value. That is what lets a paused function be resumed on another thread:
 * a handle may be resumed, cancelled and queried from any thread, one call at a time (a call
 * on a handle that another call is using returns ::INGER_ERUNNING). The `arg` given to
 * inger_launch() then travels with the function: make sure it may. When glibc's internals
 * needed for this are not found (or `INGER_SHARED_TLS=1` is set), functions share their
 * caller's thread-local storage except `errno`, and resuming one on another thread than the
 * launching one returns ::INGER_EWRONGTHREAD; inger_capabilities() tells which case holds.
 *
 * The function must not `longjmp` out of itself, throw a C++ exception out of itself (that
 * terminates the process), call `pthread_exit`, or be cancelled with `pthread_cancel`; nor
 * call `setuid` and the like. A stack overflow inside the function prints a message naming
 * `INGER_STACK_SIZE` and aborts the process.
 *
 * @section signals Signal handlers
 * inger_launch(), inger_resume() and inger_cancel() are not async-signal-safe; called from a
 * signal handler they return ::INGER_EINHANDLER and change nothing. Linux keeps no record of
 * "running a handler", so inger looks for a kernel signal frame among the caller's frames
 * with the unwinder of libgcc_s (the one C++ exceptions use), after a cheap scan of the
 * thread's stack for the C library's signal-return address. A handler is found if every
 * frame between it and the inger call has unwind information (the default for C and C++ on
 * x86-64; not for hand-written assembly without CFI directives, some JIT code, or code built
 * with `-fno-asynchronous-unwind-tables`) and it was installed through the C library
 * (`sigaction`, `signal`) or with a trampoline libgcc recognises. Otherwise the call is not
 * refused and its behaviour in the handler is undefined. A report of "in a handler" is never
 * wrong. Cost: outside preemptible functions, usually a scan of the caller's live stack frames
 * (tens of nanoseconds); the unwinder runs only when that scan finds the signal-return
 * address (a stale copy costs a few microseconds, never a wrong answer). Inside a preemptible
 * function (a nested launch) the unwinder always runs: a few microseconds per call.
 * inger_pause() from a handler that interrupted a preemptible function pauses the function
 * with the handler still on its stack; the handler finishes when the function is resumed.
 *
 * @section errors Errors
 * Every `int` result is ::INGER_OK (0) or one of the `INGER_E*` codes below, which
 * inger_strerror() describes. A call that fails changes nothing (in particular `*out` is
 * left as it was and the handle stays valid). No function aborts on bad input (the short
 * names below do, by design).
 *
 * @section settings Settings
 * Read from the environment at the first launch in the process: `INGER_STACK_SIZE` (stack
 * of each function, `K`/`M`/`G` suffixes, default `2M`; only touched pages cost memory),
 * `INGER_SIGNAL` (the real-time timer signal, e.g. `SIGRTMAX-4`, the default),
 * `INGER_PREEMPT=0` (no timer: functions run until they return or pause), `INGER_RETRY_US`
 * (retry interval after a deferred preemption, default 50) and `INGER_SHARED_TLS=1`. A bad
 * value makes inger_launch() return ::INGER_ECONFIG.
 *
 * @section short Short names
 * Programs written against the original libinger may define `INGER_SHORT_NAMES` before
 * including this header to get `linger_t`, `launch`, `resume` and `cancel` (see the end of
 * this file). `pause` is not provided: POSIX `pause(2)` owns that name; use inger_pause().
 */
#ifndef LIBINGER_H
#define LIBINGER_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @name Error codes
 *  Codes 1 to 18 come from the Rust core (`inger::Error::code`); 64 and up are the C API's.
 *  @{ */
/** Success. */
#define INGER_OK 0
/** No stack could be mapped for the function (lower `INGER_STACK_SIZE` or free memory). */
#define INGER_ESTACK 1
/** inger's preemption signal already has another handler; pick one with `INGER_SIGNAL`. */
#define INGER_ESIGNALINUSE 2
/** A system call needed to set up preemption failed. */
#define INGER_ESYSTEM 3
/** An `INGER_*` environment variable is invalid. */
#define INGER_ECONFIG 4
/** Settings were installed after the runtime had started. */
#define INGER_EINITIALIZED 5
/** The function already finished: inger_resume() of a completed handle. */
#define INGER_EFINISHED 6
/** The handle is in use by another call: the function is running (it tried to resume or
 *  cancel itself or a function that is resuming it), or another thread is using the handle. */
#define INGER_ERUNNING 7
/** Called from inside a signal handler (see @ref signals). */
#define INGER_EINHANDLER 8
/** Resumed on another thread than the launching one while thread-local storage is shared
 *  (see @ref threads). */
#define INGER_EWRONGTHREAD 9
/** The function was cancelled cooperatively and unwound (a Rust-side cancellation). */
#define INGER_ECANCELLED 10
/** The preemption signal's handler was reset or replaced (signal() or sigaction() on it), so
 *  arming the timer would kill the process: nothing was run. Leave that signal alone or
 *  choose another with `INGER_SIGNAL`. */
#define INGER_EHANDLER 11
/** The library given to inger_libset_open() could not be found or loaded. */
#define INGER_ELIBNOTFOUND 12
/** The libset's library defines no symbol of that name (inger_libset_symbol()). */
#define INGER_ESYMBOL 13
/** Every copy of the libset's library is held by another preemptible function. */
#define INGER_ECOPYLIMIT 14
/** The library uses initial-exec thread-local storage (`DF_STATIC_TLS`): no copies. */
#define INGER_ESTATICTLS 15
/** A copy of the library could not be made, or it cannot be copied (libc, the loader). */
#define INGER_ECOPY 16
/** Routing would silently fail: another module uses the library's writable data or
 *  thread-local variables directly (nothing was changed). */
#define INGER_EUNROUTABLE 17
/** Every routing stub is taken: too many distinct library functions routed. */
#define INGER_EROUTES 18
/** A required pointer argument was NULL. */
#define INGER_ENULL 64
/** Not a live handle from inger_launch() (already cancelled?). Best effort. */
#define INGER_EBADHANDLE 65
/** A bug in inger; a message was printed on stderr. */
#define INGER_EINTERNAL 66
/** @} */

/** A budget with no limit: run until the function returns or pauses. */
#define INGER_FOREVER UINT64_MAX

/**
 * @brief A preemptible function call: paused, or completed. Opaque; owned by the library.
 *
 * Made by inger_launch(), freed by inger_cancel().
 */
typedef struct inger_linger inger_linger;

/**
 * @brief Calls `fn(arg)` on a new stack, on this thread, for at most `timeout_us`
 *        microseconds.
 *
 * Returns when `fn` returns, calls inger_pause(), or runs out of budget; then
 * inger_is_complete() tells which. With `timeout_us == 0` `fn` does not start until
 * inger_resume().
 *
 * @param[out] out        receives the new handle on success; free it with inger_cancel().
 *                        Left unchanged on error.
 * @param fn              the function to call; not NULL.
 * @param timeout_us      the budget (see @ref budgets).
 * @param arg             passed to `fn` unchanged; it must stay valid as long as `fn` may
 *                        use it.
 * @retval INGER_OK           `*out` holds the handle.
 * @retval INGER_ENULL        `out` or `fn` is NULL.
 * @retval INGER_EINHANDLER   called from a signal handler.
 * @retval INGER_ESTACK, INGER_ESIGNALINUSE, INGER_ESYSTEM, INGER_ECONFIG
 *                            the runtime could not be set up or no stack was available.
 */
int inger_launch(inger_linger **out, void (*fn)(void *), uint64_t timeout_us, void *arg);

/**
 * @brief inger_launch() with a budget of `cpu_us` microseconds of the thread's CPU time
 *        (see @ref budgets).
 */
int inger_launch_cpu(inger_linger **out, void (*fn)(void *), uint64_t cpu_us, void *arg);

/**
 * @brief Continues a paused function for `timeout_us` more microseconds.
 *
 * @param l           a handle from inger_launch().
 * @param timeout_us  the budget (see @ref budgets).
 * @retval INGER_OK           it ran; inger_is_complete() tells whether it has returned.
 * @retval INGER_ENULL        `l` is NULL.
 * @retval INGER_EBADHANDLE   `l` is not a live handle.
 * @retval INGER_EINHANDLER   called from a signal handler.
 * @retval INGER_EFINISHED    the function has already completed.
 * @retval INGER_ERUNNING     `l` is in use: called from inside `l`'s own function (or one it
 *                            resumes), or by another thread at the same time.
 * @retval INGER_EWRONGTHREAD another thread than the launching one, with shared
 *                            thread-local storage (see @ref threads).
 */
int inger_resume(inger_linger *l, uint64_t timeout_us);

/**
 * @brief inger_resume() with a budget of `cpu_us` microseconds of the thread's CPU time
 *        (see @ref budgets).
 */
int inger_resume_cpu(inger_linger *l, uint64_t cpu_us);

/**
 * @brief Whether the function has returned.
 *
 * `false` while it is paused, prepared, or running; `true` for NULL or a handle that is not
 * live, since nothing is left to run there. May be called from any thread.
 */
bool inger_is_complete(const inger_linger *l);

/**
 * @brief Whether the function last stopped by calling inger_pause() rather than by running
 *        out of budget.
 *
 * `false` for a completed, running, NULL or non-live handle. May be called from any thread.
 */
bool inger_yielded(const inger_linger *l);

/**
 * @brief Cancels the function unless it has completed, and frees the handle.
 *
 * A function that never started is simply dropped; a paused one loses its stack (see
 * @ref ownership). A completed handle is freed too. Any thread may cancel a handle.
 *
 * @retval INGER_OK           the handle is freed; `l` must not be used again.
 * @retval INGER_ENULL        `l` is NULL.
 * @retval INGER_EBADHANDLE   `l` is not a live handle.
 * @retval INGER_EINHANDLER   called from a signal handler.
 * @retval INGER_ERUNNING     `l` is in use: called from inside `l`'s own function (or one it
 *                            resumes), or by another thread at the same time.
 * On error the handle stays valid.
 */
int inger_cancel(inger_linger *l);

/**
 * @brief Returns control at once to whoever launched or resumed the calling preemptible
 *        function; inger_yielded() is then true. Does nothing outside a preemptible function.
 */
void inger_pause(void);

/** @brief Whether the caller runs inside a preemptible function. */
bool inger_in_preemptible(void);

/**
 * @brief Calls `fn(arg)` with preemption deferred.
 *
 * If the caller's budget expires meanwhile, it is paused as soon as `fn` returns. Use it
 * around a critical section that must not be paused half-way (for instance one that takes a
 * lock the caller of the preemptible function also takes). Costs a few instructions.
 * Outside a preemptible function it just calls `fn`.
 *
 * @retval INGER_OK     `fn` was called.
 * @retval INGER_ENULL  `fn` is NULL.
 */
int inger_nopreempt(void (*fn)(void *), void *arg);

/** @brief Process-wide counters of the preemption machinery (see inger_stats()). */
typedef struct inger_stats {
    uint64_t preemptions;         /**< Functions paused because a deadline passed. */
    uint64_t yields;              /**< Cooperative pauses (inger_pause()). */
    uint64_t deferred_nopreempt;  /**< Expiries deferred in inger_nopreempt() or inger itself. */
    uint64_t deferred_library;    /**< Expiries deferred inside a non-preemptible library. */
    uint64_t retries;             /**< Timer re-arms after a deferral. */
    uint64_t longest_deferral_ns; /**< Longest delay from a deadline to its pause, in ns. */
} inger_stats_t;

/**
 * @brief Copies the process-wide preemption counters into `*out`.
 * @retval INGER_OK     `*out` is filled.
 * @retval INGER_ENULL  `out` is NULL.
 */
int inger_stats(struct inger_stats *out);

/**
 * @name Libsets
 * Per-function copies of a named non-reentrant library (see `inger::Libset` in the Rust
 * documentation for the full story). Each preemptible function that uses the library gets
 * its own copy (an in-memory file copy loaded with `RTLD_DEEPBIND`), held from its first use
 * until it completes or is cancelled; cancelling renews the copy (its writable data is
 * restored; heap memory the library allocated leaks). The caller, outside any function,
 * uses the original, which becomes non-preemptible; the copies are preemptible.
 *
 * Routing (inger_libset_route()) redirects the PLT/GOT references of the program and its
 * loaded libraries. Not routed: function pointers obtained before routing (`dlsym`, copied
 * out of a GOT), modules loaded after it (route again), and the library's data used directly
 * by another module, which is refused with ::INGER_EUNROUTABLE. Handles live for the process.
 * @{ */

/** @brief A libset (opaque). */
typedef struct inger_libset inger_libset;

/** @brief Counters of one libset (see inger_libset_stats()). */
typedef struct inger_libset_stats {
    uint64_t copies_loaded;     /**< Copies loaded so far (they stay loaded). */
    uint64_t copies_in_use;     /**< Copies held by functions right now. */
    uint64_t copies_renewed;    /**< Copies renewed after a cancellation (or a panic). */
    uint64_t copies_taken;      /**< Times a function took a copy. */
    uint64_t copy_waits;        /**< Routed calls that waited because every copy was held. */
    uint64_t routed_functions;  /**< Distinct functions of the library routed. */
    uint64_t routed_references; /**< GOT entries and data pointers rewritten by routing. */
} inger_libset_stats_t;

/**
 * @brief Opens the libset of `library` (a soname or path; loaded if it is not) with at most
 * `max_copies` copies, loading the first copy now. Opening it again returns a handle to the
 * same libset, whose maximum becomes the larger.
 * @retval INGER_OK            `*out` is the handle.
 * @retval INGER_ENULL         `library` or `out` is NULL.
 * @retval INGER_ECONFIG       `max_copies` is 0.
 * @retval INGER_ELIBNOTFOUND, INGER_ESTATICTLS, INGER_ECOPY, INGER_EINHANDLER
 */
int inger_libset_open(const char *library, size_t max_copies, inger_libset **out);

/**
 * @brief Routes calls into the library made through the PLT/GOT of the program and its
 * other loaded libraries to the running function's copy (the original outside any
 * function). Call again after loading more modules.
 * @retval INGER_OK, INGER_ENULL, INGER_EUNROUTABLE, INGER_EROUTES, INGER_ECOPY
 */
int inger_libset_route(inger_libset *libset);

/**
 * @brief Stores in `*out` the address of `symbol` in the running function's copy (taking a
 * copy if it holds none), or in the original outside any function. The address is valid in
 * that function until it finishes.
 * @retval INGER_OK, INGER_ENULL, INGER_ESYMBOL, INGER_ECOPYLIMIT, INGER_ECOPY
 */
int inger_libset_symbol(inger_libset *libset, const char *symbol, void **out);

/**
 * @brief Copies the libset's counters into `*out`.
 * @retval INGER_OK, INGER_ENULL
 */
int inger_libset_stats(const inger_libset *libset, struct inger_libset_stats *out);

/** @} */

/** @brief What this process's inger can do (see inger_capabilities()). */
typedef struct inger_capabilities {
    /** Each function has its own thread-local storage and may be resumed on any thread
     *  (see @ref threads). */
    bool private_tls;
    /** Thread-local storage is switched with the `wrfsbase` instruction, not a system call. */
    bool fast_tls_switch;
    /** Timer preemption is on (false under `INGER_PREEMPT=0`). */
    bool preemption;
} inger_capabilities_t;

/**
 * @brief Fills `*out` with what this process's inger can do.
 * @retval INGER_OK     `*out` is filled.
 * @retval INGER_ENULL  `out` is NULL.
 */
int inger_capabilities(struct inger_capabilities *out);

/**
 * @brief A static, human-readable description of an error code (never NULL).
 */
const char *inger_strerror(int code);

#ifdef INGER_SHORT_NAMES
/*
 * The original libinger's names. They have no error channel, so an error prints what failed
 * and aborts.
 */
#include <stdio.h>
#include <stdlib.h>

/** @brief A preemptible call in the original API's shape. */
typedef struct {
    bool is_complete;      /**< Whether the function has returned. */
    inger_linger *handle;  /**< The underlying handle (NULL after cancel()). */
} linger_t;

/** @internal Reports a failed short-name call and aborts. */
static inline void inger_short_names_fail_(const char *what, int code) {
    fprintf(stderr, "libinger: %s failed: %s (error %d)\n", what, inger_strerror(code), code);
    abort();
}

/** @brief inger_launch() returning a ::linger_t; aborts on error. */
static inline linger_t launch(void (*fn)(void *), uint64_t timeout_us, void *arg) {
    linger_t l;
    int code = inger_launch(&l.handle, fn, timeout_us, arg);
    if (code != INGER_OK) {
        inger_short_names_fail_("launch", code);
    }
    l.is_complete = inger_is_complete(l.handle);
    return l;
}

/** @brief inger_resume() updating `l->is_complete`; aborts on error (including resuming a
 *  completed call). */
static inline void resume(linger_t *l, uint64_t timeout_us) {
    int code = l == NULL ? INGER_ENULL : inger_resume(l->handle, timeout_us);
    if (code != INGER_OK) {
        inger_short_names_fail_("resume", code);
    }
    l->is_complete = inger_is_complete(l->handle);
}

/** @brief inger_cancel(): cancels the call if it has not completed and frees it; aborts on
 *  error. Afterwards `l->handle` is NULL and `l->is_complete` true. */
static inline void cancel(linger_t *l) {
    int code = l == NULL ? INGER_ENULL : inger_cancel(l->handle);
    if (code != INGER_OK) {
        inger_short_names_fail_("cancel", code);
    }
    l->handle = NULL;
    l->is_complete = true;
}
#endif /* INGER_SHORT_NAMES */

#ifdef __cplusplus
}
#endif

#endif /* LIBINGER_H */
