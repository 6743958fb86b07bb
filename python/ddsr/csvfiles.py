"""CSV files of records: written atomically with full-precision floats, read back with numbers as numbers.

Every CSV the project writes (per-image results, training curves, comparison crops) goes
through :func:`write_csv_atomic` and is read back by :func:`read_csv`.
"""

import csv
import io

from .atomic import write_text_atomic

__all__ = ["write_csv_atomic", "read_csv"]


def write_csv_atomic(path, records, fields):
    """Write dict records as CSV with the given columns (floats with full precision, missing fields empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in fields})
    write_text_atomic(path, buf.getvalue())


def read_csv(path, int_columns=("iteration", "scale", "h", "w")):
    """Read a CSV written by :func:`write_csv_atomic`: numbers as int/float, empty cells as None, text as is."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, text in row.items():
                if text == "":
                    parsed[key] = None
                elif key in int_columns:
                    parsed[key] = int(text)
                else:
                    try:
                        parsed[key] = float(text)
                    except ValueError:
                        parsed[key] = text  # e.g. the run or image column
            rows.append(parsed)
    return rows
