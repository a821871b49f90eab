/* Tiny assertion helpers shared by the C test programs. A failed check prints where and
 * why, then exits with status 1 (the Rust test shows the output). */
#ifndef INGER_TEST_CHECK_H
#define INGER_TEST_CHECK_H

#include <libinger.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(condition)                                                              \
    do {                                                                              \
        if (!(condition)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* Checks that an inger call returned the expected code, naming both codes on failure. */
#define CHECK_CODE(call, expected)                                                    \
    do {                                                                              \
        int check_code_ = (call);                                                     \
        if (check_code_ != (expected)) {                                              \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", __FILE__, \
                    __LINE__, #call, check_code_, inger_strerror(check_code_),       \
                    (expected), inger_strerror(expected));                            \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

#define CHECK_OK(call) CHECK_CODE(call, INGER_OK)

/* A budget generous enough to finish short work on a loaded machine. */
#define GENEROUS_US (10u * 1000u * 1000u)

#endif
