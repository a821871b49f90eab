# inger's support for gdb. It is embedded in every program and shared library linked with
# inger (Rust's `debugger_visualizer`, in the `.debug_gdb_scripts` section), and gdb runs it
# when it loads that file, if its auto-load safe path allows it (see "Debugging and
# profiling" in inger's README: `-iex "add-auto-load-safe-path <program>"`).
#
# 1. inger's timer signal (SIGRTMAX-4, which gdb calls SIG60, unless INGER_SIGNAL names
#    another) pauses preemptible functions many times a second, and gdb stops at every
#    signal by default. The script passes it to the program silently, as if the user had
#    typed `handle SIG60 nostop noprint pass`. A program that picks its signal in code
#    (`inger::Config::signal`) is caught the first time gdb stops at it: the script then
#    says so and passes that signal from then on.
# 2. Backtraces walk from a preemptible function's frames into the frames of whoever
#    launched or resumed it, through the function's outermost frame, inger_entry_trampoline,
#    whose unwind information is marked as a signal frame (so that gdb accepts the switch of
#    stacks). gdb would print that frame as "<signal handler called>"; the script names it.

import gdb

try:
    from gdb.FrameDecorator import FrameDecorator
except ImportError:  # a gdb without frame decorators: only the signal handling then
    FrameDecorator = None

# glibc on Linux: real-time signals 34..64 (glibc keeps 32 and 33 for itself).
_SIGRTMIN = 34
_SIGRTMAX = 64
_DEFAULT_SIGNAL = _SIGRTMAX - 4
_TRAMPOLINE = "inger_entry_trampoline"


def _parse_signal(text):
    """INGER_SIGNAL as inger parses it: 40, SIGRTMIN+3, SIGRTMAX-2, RTMIN, rtmax-1."""
    text = text.strip().upper()
    if text.startswith("SIG"):
        text = text[3:]
    if text.isdigit():
        return int(text)
    for name, base in (("RTMIN", _SIGRTMIN), ("RTMAX", _SIGRTMAX)):
        if text.startswith(name):
            rest = text[len(name):]
            if not rest:
                return base
            if rest[0] in "+-" and rest[1:].isdigit():
                offset = int(rest[1:])
                return base + offset if rest[0] == "+" else base - offset
    return None


def _configured_signal():
    """The timer signal the program will use, from the environment gdb gives it."""
    try:
        shown = gdb.execute("show environment INGER_SIGNAL", to_string=True)
    except gdb.error:
        shown = ""
    if " = " in shown:
        parsed = _parse_signal(shown.split(" = ", 1)[1])
        if parsed is not None and _SIGRTMIN <= parsed <= _SIGRTMAX:
            return parsed
    return _DEFAULT_SIGNAL


_passed = set()


def _pass_signal(number):
    if number not in _passed:
        gdb.execute("handle SIG%d nostop noprint pass" % number, to_string=True)
        _passed.add(number)


def _timer_signal_of_inferior():
    """The signal the running program's inger uses (0 before its first launch)."""
    try:
        return int(gdb.parse_and_eval("*(int *) &inger_timer_signal"))
    except gdb.error:
        return 0


def _on_stop(event):
    if not isinstance(event, gdb.SignalEvent):
        return
    number = _timer_signal_of_inferior()
    if number and event.stop_signal == "SIG%d" % number and number not in _passed:
        _pass_signal(number)
        print("inger: SIG%d is inger's timer signal (preemption); gdb passes it silently "
              "from now on: `continue` to go on" % number)


class _TrampolineFrame(FrameDecorator if FrameDecorator else object):
    def function(self):
        return _TRAMPOLINE + " [preemptible function entered from the frames below]"


class _TrampolineFilter(object):
    def __init__(self):
        self.name = "inger"
        self.priority = 100
        self.enabled = True

    def filter(self, frames):
        return map(self._decorate, frames)

    @staticmethod
    def _decorate(decorator):
        frame = decorator.inferior_frame()
        if frame.type() == gdb.SIGTRAMP_FRAME:
            try:
                symbol = gdb.execute("info symbol %d" % frame.pc(), to_string=True)
            except gdb.error:
                symbol = ""
            if symbol.split(" ", 1)[0] == _TRAMPOLINE:
                return _TrampolineFrame(decorator)
        return decorator


# A program and a library of it may both carry this script: set up once.
if not getattr(gdb, "_inger_support_loaded", False):
    gdb._inger_support_loaded = True
    _pass_signal(_configured_signal())
    gdb.events.stop.connect(_on_stop)
    if FrameDecorator is not None:
        gdb.frame_filters["inger"] = _TrampolineFilter()
