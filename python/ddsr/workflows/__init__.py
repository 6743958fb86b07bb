"""The workflows over the whole pipeline: ``make demo`` and ``make reproduce``.

They call the stages' functions in this process (each step printed as the command a user could
type) and ``caffe train`` as a child process, the paper's command.
"""

import shlex
import sys

__all__ = ["show_command"]


def show_command(prog, words):
    """Print a pipeline step as the command a user could type (``<prog>: $ tools/...``); return it."""
    shown = shlex.join(map(str, words))
    print(f"{prog}: $ {shown}", file=sys.stderr, flush=True)
    return shown
