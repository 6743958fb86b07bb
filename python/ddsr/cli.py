"""What every command-line tool does at its edge: one line per error and the documented exit status.

An exception may carry its own status (``exit_status``: 3 for a diverged training run, 130 for an
interrupted one); Ctrl-C is 130; any other expected failure (``ValueError``, ``OSError``,
``RuntimeError``) is 1. The message is one line, ``<prog>: error: <why>``, on stderr.
"""

import contextlib
import sys
import warnings

__all__ = ["exit_status", "warnings_as_lines"]


@contextlib.contextmanager
def warnings_as_lines(prog):
    """Show Python warnings as one line each, ``<prog>: warning: <message>`` on stderr, while
    the block runs (instead of Python's file:line form with the source line)."""
    shown = warnings.showwarning
    warnings.showwarning = lambda message, *a, **k: print(f"{prog}: warning: {message}", file=sys.stderr)
    try:
        yield
    finally:
        warnings.showwarning = shown


def exit_status(prog, main):
    """Run a tool's ``main()`` and return its exit status (what ``main`` returns when it returns)."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError) as exc:
        status = getattr(exc, "exit_status", 1)
        prefix = "" if status == 130 else "error: "  # an interruption is not the tool's error
        print(f"{prog}: {prefix}{exc}", file=sys.stderr)
        return status
