"""Checks of the settings read from ``experiments.yaml``: each error names where it is and the key.

Shared by the experiment sections (:mod:`ddsr.model.experiments`) and the solver section
(:mod:`ddsr.model.solvers`).
"""

import math

__all__ = ["check_keys", "require", "as_int", "as_bool", "as_float"]


def check_keys(mapping, known, where):
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def require(mapping, keys, where):
    for key in keys:
        if key not in mapping:
            raise ValueError(f"{where}: missing {key!r} (set it in the experiment or in defaults)")


def as_int(value, key, where, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {key} must be >= {minimum}, got {value}")
    return value


def as_bool(value, key, where):
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def as_float(value, key, where):
    # YAML 1.1 (PyYAML) reads 1e-8 without a dot as a string: accept what float() reads.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)
