"""ddsr.atomic: files and folders appear complete under their names, or not at all."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ddsr import atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_written_file_has_an_ordinary_files_mode_not_mkstemps_0600(tmp_path, umask_022):
    atomic.write_text_atomic(tmp_path / "a" / "b.txt", "x\n")
    assert (tmp_path / "a" / "b.txt").read_text() == "x\n"
    assert _mode(tmp_path / "a" / "b.txt") == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old\n")
    with pytest.raises(KeyError):
        with atomic.replacing(target) as tmp:
            tmp.write_text("half")
            raise KeyError("interrupted")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_json_is_indented_and_ends_with_a_newline(tmp_path):
    atomic.write_json_atomic(tmp_path / "s.json", {"b": 1, "a": [2]})
    assert (tmp_path / "s.json").read_text() == '{\n  "b": 1,\n  "a": [\n    2\n  ]\n}\n'


def test_a_folder_is_replaced_whole_only_on_success(tmp_path, umask_022):
    out = tmp_path / "set"
    with atomic.replacing_directory(out) as tmp:
        (tmp / "one.png").write_bytes(b"1")
    assert sorted(p.name for p in out.iterdir()) == ["one.png"] and _mode(out) == 0o755
    with pytest.raises(RuntimeError):
        with atomic.replacing_directory(out, sync=False) as tmp:
            (tmp / "two.png").write_bytes(b"2")
            raise RuntimeError("failed half-way")
    assert sorted(p.name for p in out.iterdir()) == ["one.png"]
    with atomic.replacing_directory(out, sync=False) as tmp:
        (tmp / "two.png").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == ["two.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


# ------------------------------------------------- signals, and temporaries of killed runs

def _dead_pid():
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_sigterm_and_sigint_become_exceptions_with_the_shells_exit_status():
    before = signal.getsignal(signal.SIGTERM)
    for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        with pytest.raises(atomic.Interrupted) as info:
            with atomic.interrupts_as_exceptions():
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler raises here
        assert info.value.exit_status == status == atomic.exit_status(info.value)
        assert isinstance(info.value, KeyboardInterrupt)
        assert atomic.interrupted_message(info.value, "x is unchanged") == \
            f"interrupted ({signal.Signals(signum).name}); x is unchanged"
    assert signal.getsignal(signal.SIGTERM) is before
    assert atomic.exit_status(KeyboardInterrupt()) == 130


def test_a_signal_started_ignored_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `nohup` or `cmd &` leave it
    try:
        with atomic.interrupts_as_exceptions():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            atomic.raise_if_interrupted()  # nothing was received
    finally:
        signal.signal(signal.SIGINT, previous)


class _SignalsInDel:
    """Where h5py closes its objects: Python drops an exception raised in ``__del__``."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100000):  # the handler runs (and raises) in here
            pass


def test_an_interrupt_python_swallowed_still_stops_the_rename(tmp_path, capsys):
    out = tmp_path / "db"
    with atomic.replacing_directory(out, sync=False) as tmp:
        (tmp / "old.h5").write_bytes(b"old")
    with pytest.raises(atomic.Interrupted) as info:
        with atomic.interrupts_as_exceptions():
            with atomic.replacing_directory(out, sync=False) as tmp:
                (tmp / "new.h5").write_bytes(b"new")
                _SignalsInDel()  # deleted at once: its Interrupted is swallowed
                (tmp / "more.h5").write_bytes(b"the work went on")
    assert info.value.exit_status == 130 and info.value.after_commit is None
    assert "Exception ignored" not in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["old.h5"]
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_a_signal_during_the_final_rename_says_the_new_folder_is_in_place(tmp_path, monkeypatch):
    out = tmp_path / "db"
    real = atomic._replace_directory

    def signalled_mid_rename(new, final):
        real(new, final)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # deferred: the rename block finishes first

    monkeypatch.setattr(atomic, "_replace_directory", signalled_mid_rename)
    with pytest.raises(atomic.Interrupted) as info:
        with atomic.interrupts_as_exceptions():
            with atomic.replacing_directory(out, sync=False) as tmp:
                (tmp / "new.h5").write_bytes(b"new")
    assert info.value.after_commit == out and info.value.exit_status == 143
    assert atomic.interrupted_message(info.value, "unchanged") == \
        f"interrupted (SIGTERM) just after {out} was written complete"
    assert [p.name for p in out.iterdir()] == ["new.h5"]
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


def test_temporaries_hold_the_writers_process_id(tmp_path):
    with atomic.replacing_directory(tmp_path / "db", sync=False) as tmp:
        assert tmp.name.startswith(f".db.tmp-{os.getpid()}-")
    with atomic.replacing(tmp_path / "a.txt") as tmp:
        assert tmp.name.startswith(f".a.txt.tmp-{os.getpid()}-")


def test_only_the_temporaries_of_runs_that_are_gone_are_removed(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".db.tmp-{dead}-abc123"
    stale.mkdir()
    (stale / "train_000.h5").write_bytes(b"x" * 1000)
    stale_file = tmp_path / f".db.tmp-{dead}-q1w2e3"  # a file of replacing()
    stale_file.write_bytes(b"half")
    live = tmp_path / f".db.partial-{os.getpid()}-def456"
    live.mkdir()
    old_legacy = tmp_path / ".db.tmp-k2j4h5g6"  # made before names held a process id
    old_legacy.mkdir()
    young_legacy = tmp_path / ".db.old-z9y8x7w6"
    young_legacy.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old_legacy, (two_hours_ago, two_hours_ago))
    others = [tmp_path / "db", tmp_path / f".db2.tmp-{dead}-abc", tmp_path / f".other.tmp-{dead}-x"]
    for path in others:
        path.mkdir()

    removed = atomic.remove_stale_temporaries(tmp_path / "db")
    assert sorted(r.path.name for r in removed) == sorted(
        [stale.name, stale_file.name, old_legacy.name])
    assert {r.path.name: (r.pid, r.bytes >= 1000) for r in removed}[stale.name] == (dead, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, young_legacy.name] + [p.name for p in others])
    message = next(r for r in removed if r.path == stale).describe()
    assert message.startswith(f"removed {stale} (0.0 MB), left by an interrupted run "
                              f"(process {dead}, gone)")


def test_a_reused_process_id_does_not_keep_a_temporary(tmp_path):
    # The temporary was last touched before the process now holding its number started.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            stale = tmp_path / f".db.tmp-{proc.pid}-abc123"
            stale.mkdir()
            an_hour_ago = time.time() - 3600
            os.utime(stale, (an_hour_ago, an_hour_ago))
            fresh = tmp_path / f".x.tmp-{proc.pid}-abc123"
            fresh.mkdir()
            assert [r.path for r in atomic.remove_stale_temporaries(tmp_path / "db")] == [stale]
            assert atomic.remove_stale_temporaries(tmp_path / "x") == []
        finally:
            proc.kill()
