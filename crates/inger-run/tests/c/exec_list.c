/* Execs /bin/sh with execl, execle or execlp and enough arguments that some are passed on
 * the stack, so that a run under inger-run checks that its variadic entry points hand the
 * whole list (and execle's environment) to the program; "missing" first tries a file that
 * does not exist, then goes on.
 *
 * usage: exec_list execl|execle|execlp|missing
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SCRIPT "echo \"$0|$1|$2|$3|$4|$5|$6|$7|$8|$9|${GREETING-unset}\""

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s execl|execle|execlp|missing\n", argv[0]);
        return 2;
    }
    fflush(stdout);
    if (strcmp(argv[1], "execl") == 0) {
        execl("/bin/sh", "sh", "-c", SCRIPT, "zero", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
              "a8", "a9", (char *)NULL);
    } else if (strcmp(argv[1], "execle") == 0) {
        char *const environment[] = {"GREETING=hello", "PATH=/usr/bin:/bin", NULL};
        execle("/bin/sh", "sh", "-c", SCRIPT, "zero", "b1", "b2", (char *)NULL, environment);
    } else if (strcmp(argv[1], "execlp") == 0) {
        execlp("sh", "sh", "-c", SCRIPT, "zero", (char *)NULL);
    } else if (strcmp(argv[1], "missing") == 0) {
        execl("/nonexistent/program", "program", (char *)NULL);
        printf("execl failed: %s\n", strerror(errno));
        return 0;
    }
    perror("exec");
    return 1;
}
