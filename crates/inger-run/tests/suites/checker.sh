#!/bin/sh
# The CHECKER for gnulib's test scripts (they start their test programs as
# `${CHECKER} ./test-foo`): runs the program under inger-run at the suite's slice, on the
# wall clock (the suite is a stress test: a waiting program is preempted too).
#
# The --stats report goes to the program's stderr. It is asked for only when that stderr is
# the stream the suite captures (the pipe whose dev:ino is in INGER_SUITE_STDERR), where the
# suite splits it out; a script that sent the program's stderr to a file of its own (to
# compare it with an expected text) gets no report in it.
#
# Settings (set by the suite, removed before the program runs): INGER_SUITE_RUN (the command),
# INGER_SUITE_PRELOAD (its library), INGER_SUITE_SLICE, INGER_SUITE_STDERR.
run=$INGER_SUITE_RUN
preload=$INGER_SUITE_PRELOAD
slice=$INGER_SUITE_SLICE
captured=$INGER_SUITE_STDERR
unset INGER_SUITE_RUN INGER_SUITE_PRELOAD INGER_SUITE_SLICE INGER_SUITE_STDERR
stats=
if [ "$(stat -L -c %d:%i /dev/fd/9 9>&2 2>/dev/null)" = "$captured" ]; then
    stats=--stats
fi
exec "$run" --preload "$preload" --slice "$slice" --wall-slices $stats -- "$@"
