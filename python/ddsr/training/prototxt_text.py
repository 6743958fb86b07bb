"""Caffe prototxt (protobuf text format) read and written without protobuf.

The GPU self-check (:mod:`ddsr.training.gpu_check`) edits the committed nets and solvers
(data sources, convolution engines, iteration counts) where pycaffe and its generated
``caffe_pb2`` may not be importable: on the project's GPU machines the Python is another
than the one pycaffe was built for. This is the subset of the text format that Caffe's
files use: fields ``name: value`` and nested messages ``name { ... }`` (``name: { ... }``
too), ``#`` comments, quoted strings; repeated fields are repeated names.

A :class:`Message` keeps its fields in order, so ``dump(parse(text))`` is the same
message (comments are dropped). Scalar values are kept as their source tokens
(``"data/h5/x3/train.txt"`` with its quotes, ``128``, ``TRAIN``); :func:`quote` and
:func:`unquote` convert strings.
"""

import re

__all__ = ["Message", "parse", "dump", "quote", "unquote"]

_TOKEN = re.compile(r"""
    \s+ | \#[^\n]* |                                   # space, comments
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<punct>[{}:;,]) |
    (?P<word>[^\s{}:;,"'\#]+)
""", re.VERBOSE)


class Message(list):
    """An ordered list of ``(name, value)``; a value is a scalar token (str) or a Message."""

    def get(self, name, default=None):
        """The first value of field ``name``, else ``default``."""
        for key, value in self:
            if key == name:
                return value
        return default

    def get_all(self, name):
        """Every value of field ``name``, in order."""
        return [value for key, value in self if key == name]

    def set(self, name, value):
        """Replace the first ``name`` field's value (dropping any further ones), or append it."""
        for index, (key, _) in enumerate(self):
            if key == name:
                self[index] = (name, value)
                self[index + 1:] = [(k, v) for k, v in self[index + 1:] if k != name]
                return
        self.append((name, value))

    def remove(self, name):
        """Drop every ``name`` field."""
        self[:] = [(k, v) for k, v in self if k != name]

    def submessage(self, name):
        """The first ``name`` message, created (appended) when there is none."""
        found = self.get(name)
        if found is None:
            found = Message()
            self.append((name, found))
        if not isinstance(found, Message):
            raise ValueError(f"field {name!r} is a scalar, not a message")
        return found


def _tokens(text):
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise ValueError(f"prototxt: cannot read line {line}: {text[position:position + 30]!r}")
        position = match.end()
        kind = match.lastgroup
        if kind is not None:
            yield kind, match.group(kind), text.count("\n", 0, match.start()) + 1


def parse(text):
    """Parse prototxt ``text`` into a :class:`Message`.

    Raises
    ------
    ValueError
        On text that is not protobuf text format (the message names the line).
    """
    tokens = list(_tokens(text))
    stack = [Message()]
    index = 0
    while index < len(tokens):
        kind, token, line = tokens[index]
        if kind == "punct" and token in ";,":
            index += 1
            continue
        if kind == "punct" and token == "}":
            if len(stack) == 1:
                raise ValueError(f"prototxt: unmatched '}}' on line {line}")
            stack.pop()
            index += 1
            continue
        if kind != "word":
            raise ValueError(f"prototxt: expected a field name on line {line}, not {token!r}")
        following = tokens[index + 1][1] if index + 1 < len(tokens) else None
        if following == ":" and index + 2 < len(tokens) and tokens[index + 2][1] == "{":
            index += 1  # "name: {" is "name {"
            following = "{"
        if following == "{":
            child = Message()
            stack[-1].append((token, child))
            stack.append(child)
            index += 2
        elif following == ":" and index + 2 < len(tokens) and tokens[index + 2][0] in ("word", "string"):
            stack[-1].append((token, tokens[index + 2][1]))
            index += 3
        else:
            raise ValueError(f"prototxt: field {token!r} on line {line} has no value")
    if len(stack) != 1:
        raise ValueError("prototxt: a '{' is never closed")
    return stack[0]


def dump(message, indent=0):
    """The prototxt text of ``message`` (two-space indents, as Caffe writes)."""
    pad = "  " * indent
    lines = []
    for key, value in message:
        if isinstance(value, Message):
            lines.append(f"{pad}{key} {{")
            inner = dump(value, indent + 1)
            if inner:
                lines.append(inner.rstrip("\n"))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(lines) + ("\n" if lines else "")


def quote(text):
    """``text`` as a prototxt string token."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(token):
    """The string a quoted prototxt token stands for (a bare token is returned as it is)."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token
