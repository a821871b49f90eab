"""Runs one module of CPython's regression tests (Debian's libpython3.11-testsuite) and
writes the outcome of every test case to a file, one line each, sorted:

    <test id> TAB <outcome> TAB <detail>

where the outcome is ok, skipped: <reason>, FAIL, ERROR, expected failure or unexpected
success, and the detail is the last line of the traceback (for FAIL and ERROR; it may hold
timings, so it is for people, not for comparison). Subtests get their own lines.

Usage: python3 python_outcomes.py MODULE OUTPUT [EXCLUDED_TEST_ID...]

The module is loaded and run the way `python3 -m test MODULE` runs it (unittest's loader
with the module's load_tests, no optional resources enabled), in the current directory,
which the caller makes fresh. Excluded test ids are not run. Exit status: 0 when every test
passed or was skipped, 1 otherwise; the verbose unittest report goes to stderr.
"""

import os
import sys
import unittest

from test import support


def main():
    module, output, *excluded = sys.argv[1:]
    excluded = set(excluded)
    # As regrtest without -u: tests that need an optional resource (network, cpu-heavy, ...)
    # are skipped.
    support.use_resources = []
    suite = unittest.defaultTestLoader.loadTestsFromName("test." + module)
    kept = unittest.TestSuite()
    found = set()
    for case in flatten(suite):
        if case.id() in excluded:
            found.add(case.id())
        else:
            kept.addTest(case)
    missing = excluded - found
    if missing:
        sys.exit(f"python_outcomes: excluded tests not found in {module}: {sorted(missing)}")

    outcomes = {}

    class Recorder(unittest.TextTestResult):
        def record(self, test, outcome, err=None):
            detail = ""
            if err is not None:
                lines = self._exc_info_to_string(err, test).strip().splitlines()
                detail = lines[-1] if lines else ""
            key = test.id()
            # A test case with failing subtests is recorded under each subtest; keep the
            # worst outcome if a test is reported twice.
            if key not in outcomes or outcomes[key][0] == "ok":
                outcomes[key] = (outcome, clean(detail))

        def addSuccess(self, test):
            super().addSuccess(test)
            self.record(test, "ok")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self.record(test, "FAIL", err)

        def addError(self, test, err):
            super().addError(test, err)
            self.record(test, "ERROR", err)

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self.record(test, "skipped: " + clean(reason))

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self.record(test, "expected failure")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self.record(test, "unexpected success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is None:
                self.record(subtest, "ok")
            elif issubclass(err[0], test.failureException):
                self.record(subtest, "FAIL", err)
            else:
                self.record(subtest, "ERROR", err)

    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=Recorder)
    result = runner.run(kept)
    with open(output, "w", encoding="utf-8") as out:
        for key in sorted(outcomes):
            outcome, detail = outcomes[key]
            out.write(f"{key}\t{outcome}\t{detail}\n")
    sys.exit(0 if result.wasSuccessful() else 1)


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


def clean(text):
    # Names of temporary files hold the process id (test.support.os_helper.TESTFN).
    text = str(text).replace(str(os.getpid()), "<pid>")
    return " ".join(text.split())[:300]


if __name__ == "__main__":
    main()
