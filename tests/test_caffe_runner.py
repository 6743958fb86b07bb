"""ddsr.training.runner: parsing Caffe's log, finding snapshots, and real `caffe train` runs.

The parser tests use log lines in the exact format of BVLC Caffe's solver.cpp
and sgd_solver.cpp, with values written by hand; the Caffe tests train tiny
nets of their own (NetSpec, a few hundred weights) for a few dozen iterations.
"""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ddsr.training import runner, snapshots
from ddsr.training.log import parse_log_line, read_log

LOG = """\
# ddsr: 2025-11-25 20:00:00 cwd=/repo caffe train -solver solvers/tiny.prototxt
I1125 20:00:01.000001  4242 caffe.cpp:204] Using GPUs 0
I1125 20:00:01.100000  4242 solver.cpp:289] Solving tiny
I1125 20:00:01.100001  4242 solver.cpp:290] Learning Rate Policy: multistep
I1125 20:00:01.200000  4242 solver.cpp:347] Iteration 0, Testing net (#0)
I1125 20:00:01.300000  4242 solver.cpp:414]     Test net output #0: loss = 0.25 (* 1 = 0.25 loss)
I1125 20:00:01.400000  4242 solver.cpp:239] Iteration 0 (-1.4e-44 iter/s, 0.2s/10 iters), loss = 0.5
I1125 20:00:01.400001  4242 solver.cpp:258]     Train net output #0: loss = 0.5 (* 1 = 0.5 loss)
I1125 20:00:01.400002  4242 sgd_solver.cpp:112] Iteration 0, lr = 0.001
I1125 20:00:02.400000  4242 solver.cpp:239] Iteration 10 (10 iter/s, 1s/10 iters), loss = 0.125
I1125 20:00:02.400001  4242 solver.cpp:258]     Train net output #0: loss = 0.125 (* 1 = 0.125 loss)
I1125 20:00:02.400002  4242 sgd_solver.cpp:112] Iteration 10, lr = 0.001
I1125 20:00:03.000000  4242 solver.cpp:464] Snapshotting to binary proto file snapshots/tiny_iter_20.caffemodel
I1125 20:00:03.000001  4242 sgd_solver.cpp:284] Snapshotting solver state to binary proto file snapshots/tiny_iter_20.solverstate
I1125 20:00:03.100000  4242 solver.cpp:347] Iteration 20, Testing net (#0)
I1125 20:00:03.200000  4242 solver.cpp:414]     Test net output #0: loss = 0.0625 (* 1 = 0.0625 loss)
I1125 20:00:03.300000  4242 solver.cpp:239] Iteration 20 (10 iter/s, 1s/10 iters), loss = 3.5e-02
I1125 20:00:03.300002  4242 sgd_solver.cpp:112] Iteration 20, lr = 1e-04
I1125 20:00:04.300000  4242 solver.cpp:239] Iteration 30 (10 iter/s, 1s/10 iters), loss = -nan
I1125 20:00:04.300002  4242 sgd_solver.cpp:112] Iteration 30, lr = 1e-04
"""


def test_parse_line_kinds_and_values():
    ev = parse_log_line("I1125 20:00:02.400000  4242 solver.cpp:239] Iteration 10 (10 iter/s, 1s/10 iters), loss = 0.125\n")
    assert (ev.kind, ev.iteration, ev.value) == ("train_loss", 10, 0.125)
    # the older format without the speed, and the final "Iteration N, loss = X" of Solve()
    ev = parse_log_line("I1125 20:00:02.4 4242 solver.cpp:327] Iteration 100, loss = 2e-3")
    assert (ev.kind, ev.iteration, ev.value) == ("train_loss", 100, 0.002)
    ev = parse_log_line("Iteration 7, lr = 1e-05")
    assert (ev.kind, ev.iteration, ev.value) == ("lr", 7, 1e-5)
    ev = parse_log_line("I1125 20:00:01.2  4242 solver.cpp:347] Iteration 20, Testing net (#0)")
    assert (ev.kind, ev.iteration) == ("test_start", 20)
    ev = parse_log_line("I1125 20:00:01.3  4242 solver.cpp:414]     Test net output #0: loss = 0.25 (* 1 = 0.25 loss)")
    assert (ev.kind, ev.name, ev.value) == ("test_output", "loss", 0.25)
    ev = parse_log_line("I1125 20:00:03.0  4242 caffe.cpp:235] Resuming from snapshots/a_b_iter_1500.solverstate")
    assert (ev.kind, ev.iteration, ev.text) == ("resume", 1500, "snapshots/a_b_iter_1500.solverstate")
    ev = parse_log_line("F1125 20:00:03.0  4242 hdf5.cpp:14] Check failed: status >= 0 (-1 vs. 0) Failed to get dataset info for data")
    assert ev.kind == "fatal" and ev.text.startswith("Check failed: status")
    # glog >= 0.6 writes the year too
    ev = parse_log_line("I20261125 20:24:22.131599 25630 solver.cpp:239] Iteration 3 (1 iter/s, 1s/1 iters), loss = 7")
    assert (ev.kind, ev.iteration, ev.value) == ("train_loss", 3, 7.0)
    ev = parse_log_line("F20261125 20:24:22.1 25630 hdf5_data_layer.cpp:96] Check failed: x")
    assert (ev.kind, ev.text) == ("fatal", "Check failed: x")
    assert parse_log_line("I1125 20:00:03.0  4242 net.cpp:84] Creating Layer data") is None
    assert parse_log_line("") is None


@pytest.mark.parametrize("text", ["nan", "-nan", "inf", "-inf", "NaN"])
def test_parse_nonfinite_losses(text):
    ev = parse_log_line(f"I1125 20:00:04.3 4242 solver.cpp:239] Iteration 30 (1 iter/s, 1s/1 iters), loss = {text}")
    assert ev.iteration == 30 and not math.isfinite(ev.value)


def test_read_log_tables():
    log = read_log(LOG.splitlines())
    assert log.loss[0] == 0.5 and log.loss[10] == 0.125 and log.loss[20] == 0.035
    assert log.lr == {0: 1e-3, 10: 1e-3, 20: 1e-4, 30: 1e-4}
    assert log.test == {"loss": {0: 0.25, 20: 0.0625}}
    assert log.snapshots == {20: "snapshots/tiny_iter_20.caffemodel"}
    assert log.nonfinite == (30, "loss")
    assert log.last_finite_loss_iteration() == 20
    assert log.last_iteration == 30
    assert not log.done
    rows = log.rows()
    assert [r["iteration"] for r in rows] == [0, 10, 20, 30]
    assert rows[0] == {"iteration": 0, "loss": 0.5, "lr": 1e-3, "test_loss": 0.25}
    assert rows[1]["test_loss"] is None


def test_read_log_nonfinite_test_output():
    log = read_log([
        "Iteration 0, loss = 1",
        "Iteration 40, Testing net (#0)",
        "    Test net output #0: loss = inf (* 1 = inf loss)",
    ])
    assert log.nonfinite == (40, "test loss")


def test_resumed_log_is_one_history(tmp_path):
    """A resumed run appended to the log replaces what the first run logged after the snapshot."""
    first = LOG.splitlines()[:-2]  # up to iteration 20, then (say) killed at 25
    second = [
        "I1125 21:00:00.0 5555 caffe.cpp:235] Resuming from snapshots/tiny_iter_20.solverstate",
        "I1125 21:00:00.1 5555 solver.cpp:347] Iteration 20, Testing net (#0)",
        "I1125 21:00:00.2 5555 solver.cpp:414]     Test net output #0: loss = 0.0600 (* 1 = 0.06 loss)",
        "I1125 21:00:00.3 5555 solver.cpp:239] Iteration 20 (10 iter/s, 1s/10 iters), loss = 0.03",
        "I1125 21:00:00.4 5555 solver.cpp:239] Iteration 30 (10 iter/s, 1s/10 iters), loss = 0.02",
        "I1125 21:00:00.5 5555 solver.cpp:332] Optimization Done.",
    ]
    path = tmp_path / "train.log"
    path.write_text("\n".join(first + second) + "\n")
    log = read_log(path)
    assert log.resumed_from == [20]
    assert log.loss == {0: 0.5, 10: 0.125, 20: 0.03, 30: 0.02}
    assert log.test["loss"] == {0: 0.25, 20: 0.06}
    assert log.snapshots == {20: "snapshots/tiny_iter_20.caffemodel"}
    assert log.done and log.nonfinite is None


def test_fresh_start_replaces_old_history():
    """A run that starts over (no resume) after an older run in the same log: only the new one counts."""
    old = LOG.splitlines()
    new = [
        "I1125 22:00:00.0 6666 solver.cpp:289] Solving tiny",
        "I1125 22:00:00.1 6666 solver.cpp:239] Iteration 0 (0 iter/s, 0s/10 iters), loss = 0.75",
        "I1125 22:00:00.2 6666 solver.cpp:239] Iteration 10 (10 iter/s, 1s/10 iters), loss = 0.5",
    ]
    log = read_log(old + new)
    assert log.loss == {0: 0.75, 10: 0.5}
    assert log.test == {"loss": {}} and log.snapshots == {} and log.nonfinite is None


def test_snapshots_listing(tmp_path):
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    for it in (100, 20, 1000):
        (snaps / f"net_x3_iter_{it}.caffemodel").write_bytes(b"")
        (snaps / f"net_x3_iter_{it}.solverstate").write_bytes(b"")
    (snaps / "net_x3_iter_5000.caffemodel").write_bytes(b"")      # no solverstate
    (snaps / "net_x3_k5_iter_9000.caffemodel").write_bytes(b"")   # another run with a longer name
    (snaps / "net_x3_iter_7.caffemodel.diverged").write_bytes(b"")
    found = snapshots.list_snapshots("snapshots/net_x3", tmp_path)
    assert [s.iteration for s in found] == [20, 100, 1000, 5000]
    assert found[-1].solverstate is None
    newest = snapshots.newest_snapshot("snapshots/net_x3", tmp_path)
    assert newest.iteration == 1000 and newest.solverstate.name == "net_x3_iter_1000.solverstate"
    assert snapshots.newest_snapshot("snapshots/net_x3", tmp_path, resumable=False).iteration == 5000
    assert snapshots.list_snapshots("nowhere/net", tmp_path) == []


def test_train_command():
    assert runner.train_command("solvers/ddsr_x3.prototxt") == [
        "caffe", "train", "-solver", "solvers/ddsr_x3.prototxt"]
    assert runner.train_command("s.prototxt", gpu=0, snapshot="snapshots/a_iter_5.solverstate",
                                      caffe="/x/caffe") == [
        "/x/caffe", "train", "-solver", "s.prototxt", "-gpu", "0", "-snapshot", "snapshots/a_iter_5.solverstate"]


# --- real Caffe ----------------------------------------------------------------

def _tiny_net(caffe, source, batch):
    """HDF5 data -> 3x3 conv with 4 filters -> 3x3 conv with 1 filter -> Euclidean loss (41 weights)."""
    from caffe import layers as L

    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(source=source, batch_size=batch, ntop=2)
    n.conv1 = L.Convolution(n.data, num_output=4, kernel_size=3, pad=1,
                            weight_filler=dict(type="gaussian", std=0.1))
    n.conv2 = L.Convolution(n.conv1, num_output=1, kernel_size=3, pad=1,
                            weight_filler=dict(type="gaussian", std=0.1))
    n.loss = L.EuclideanLoss(n.conv2, n.label)
    return n.to_proto()


def make_tiny_run(caffe, root, name="tiny", base_lr=0.01, solver_type="Adam", max_iter=40,
                  snapshot=10, display=1, test_interval=20):
    """A tiny regression problem (label = a fixed blur of the data) and its solver, under ``root``.

    Paths in the solver are relative to ``root``, which is Caffe's working directory.
    """
    import h5py

    rng = np.random.default_rng(0)
    data = rng.random((64, 1, 8, 8), dtype=np.float32)
    label = (0.5 * data + 0.25 * np.roll(data, 1, axis=3) + 0.25 * np.roll(data, 1, axis=2)).astype(np.float32)
    (root / "h5").mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "h5" / "train.h5", "w") as f:
        f["data"], f["label"] = data, label
    (root / "h5" / "train.txt").write_text("h5/train.h5\n")
    (root / "snapshots").mkdir(exist_ok=True)  # Caffe does not create it
    (root / "net.prototxt").write_text(str(_tiny_net(caffe, "h5/train.txt", 16)))
    solver = "\n".join([
        'net: "net.prototxt"',
        f"test_iter: 4", f"test_interval: {test_interval}", "test_initialization: true",
        f'type: "{solver_type}"', f"base_lr: {base_lr}", "momentum: 0.9",
        *(["momentum2: 0.999"] if solver_type == "Adam" else []),
        'lr_policy: "fixed"', f"display: {display}", f"max_iter: {max_iter}",
        f"snapshot: {snapshot}", f'snapshot_prefix: "snapshots/{name}"', "random_seed: 1",
        "solver_mode: CPU", ""])
    path = root / f"{name}_solver.prototxt"
    path.write_text(solver)
    return path.name


@pytest.mark.caffe
def test_train_runs_and_logs(caffe, caffe_tool, tmp_path):
    solver = make_tiny_run(caffe, tmp_path, max_iter=20)
    result = runner.train(solver, workdir=tmp_path, caffe=caffe_tool, progress=False)
    assert result.final_iteration == 20 and result.start_iteration == 0
    assert result.snapshot.iteration == 20
    assert [s.iteration for s in snapshots.list_snapshots("snapshots/tiny", tmp_path)] == [10, 20]
    assert result.log_path == tmp_path / "runs" / "tiny_solver" / "train.log"
    log = read_log(result.log_path)
    assert log.done
    assert sorted(log.loss) == list(range(21))  # display 1: every iteration, plus the final 20
    assert sorted(log.test["loss"]) == [0, 20]
    assert log.loss[20] < log.loss[0]  # it learns
    # run again: already at max_iter, nothing runs
    again = runner.train(solver, workdir=tmp_path, caffe=caffe_tool, progress=False)
    assert again.already_done and again.final_iteration == 20


@pytest.mark.caffe
def test_resume_continues_from_snapshot(caffe, caffe_tool, tmp_path):
    """Stop a run with Ctrl-C (SIGINT) after a snapshot, resume: it continues at the snapshot's iteration."""
    max_iter = 300
    solver = make_tiny_run(caffe, tmp_path, max_iter=max_iter, snapshot=10, test_interval=1000)
    # First run: SIGINT as soon as it has passed iteration 12. Caffe's SIGINT effect "stop"
    # saves a snapshot at the iteration it reached, then exits.
    log_path = tmp_path / "first.log"
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    proc = subprocess.Popen([caffe_tool, "train", "-solver", solver], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        ev = parse_log_line(line)
        if ev is not None and ev.kind == "train_loss" and ev.iteration >= 12:
            proc.send_signal(signal.SIGINT)
            break
    lines += proc.stdout.readlines()
    proc.wait()
    log_path.write_text("".join(lines))
    first = read_log(log_path)
    assert first.stopped_early and not first.done
    stopped_at = max(first.snapshots)
    assert 12 < stopped_at < max_iter
    assert max(first.loss) <= stopped_at
    expected = list(range(10, stopped_at + 1, 10)) + ([stopped_at] if stopped_at % 10 else [])
    assert [s.iteration for s in snapshots.list_snapshots("snapshots/tiny", tmp_path)] == expected

    # Resume through the runner: it picks the newest snapshot and appends to the same log.
    result = runner.train(solver, workdir=tmp_path, caffe=caffe_tool, progress=False,
                                log_path=log_path)
    assert result.start_iteration == stopped_at
    assert result.command[-2:] == ["-snapshot", f"snapshots/tiny_iter_{stopped_at}.solverstate"]
    assert result.final_iteration == max_iter
    resumed = result.log  # this run's lines only
    assert min(resumed.loss) == stopped_at  # the first displayed iteration is the snapshot's
    assert resumed.resumed_from == [stopped_at]
    whole = read_log(log_path)  # both runs, one history
    assert sorted(whole.loss) == list(range(max_iter + 1))
    assert whole.done


@pytest.mark.caffe
def test_caffe_stops_and_snapshots_when_the_runner_dies(caffe, caffe_tool, tmp_path, repo_root):
    """kill -9 of the Python runner: Caffe gets SIGINT, saves a snapshot and exits; the run resumes."""
    solver = make_tiny_run(caffe, tmp_path, max_iter=1000000, snapshot=1000000, test_interval=1000000)
    script = (f"import sys; sys.path.insert(0, {str(repo_root / 'python')!r}); from ddsr.training import runner; "
              f"runner.train({solver!r}, workdir={str(tmp_path)!r}, caffe={caffe_tool!r}, progress=False)")
    runner = subprocess.Popen([sys.executable, "-c", script])
    log_path = tmp_path / "runs" / "tiny_solver" / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline:
        log = read_log(log_path) if log_path.exists() else None
        if log is not None and log.loss and max(log.loss) >= 5:
            break
        time.sleep(0.2)
    else:
        runner.kill()
        pytest.fail("the run did not start")
    runner.kill()
    runner.wait()
    # Caffe writes the .caffemodel, then the .solverstate, then exits: look once it has exited.
    while time.time() < deadline and _processes_in(tmp_path):
        time.sleep(0.2)
    assert not _processes_in(tmp_path), "Caffe is still running"
    snaps = snapshots.list_snapshots("snapshots/tiny", tmp_path)
    assert len(snaps) == 1 and snaps[0].solverstate is not None
    assert 5 <= snaps[0].iteration < 1000000


def _processes_in(folder):
    """Ids of the processes whose working directory is ``folder`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == Path(folder):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.caffe
def test_divergence_stops_the_run(caffe, caffe_tool, tmp_path):
    """SGD with base_lr 1e6 on the tiny net: the loss blows up to inf/NaN within a few iterations."""
    solver = make_tiny_run(caffe, tmp_path, name="diverge", solver_type="SGD", base_lr=1e6,
                           max_iter=100000, snapshot=1, test_interval=100000)
    with pytest.raises(runner.TrainingDiverged) as info:
        runner.train(solver, workdir=tmp_path, caffe=caffe_tool, progress=False)
    err = info.value
    log = read_log(tmp_path / "runs" / "diverge_solver" / "train.log")
    bad = err.iteration
    assert not math.isfinite(log.loss[bad])
    assert all(math.isfinite(log.loss[i]) for i in range(bad))
    assert bad < 1000 and not log.done  # stopped long before max_iter
    assert f"at iteration {bad}" in str(err)
    good = err.last_good
    assert good is not None and good.iteration < bad
    assert f"diverge_iter_{good.iteration}.caffemodel" in str(err)
    assert snapshots.weights_are_finite(good.caffemodel)
    # nothing newer than the good snapshot is left to resume from
    assert snapshots.newest_snapshot("snapshots/diverge", tmp_path).iteration == good.iteration


@pytest.mark.caffe
def test_caffe_error_is_reported(caffe, caffe_tool, tmp_path):
    solver = make_tiny_run(caffe, tmp_path, max_iter=5)
    (tmp_path / "h5" / "train.txt").write_text("h5/missing.h5\n")
    with pytest.raises(runner.TrainingError) as info:
        runner.train(solver, workdir=tmp_path, caffe=caffe_tool, progress=False)
    assert "missing.h5" in str(info.value) or "Failed to open" in str(info.value)


@pytest.mark.caffe
def test_cpu_caffe_has_no_gpu(caffe_tool):
    # This project's test machines build Caffe for the CPU; a CUDA build with a GPU says True.
    build_is_cpu = "cpu" in Path(caffe_tool).resolve().as_posix().lower()
    if not build_is_cpu:
        pytest.skip("not the CPU build")
    assert runner.gpu_available(caffe_tool) is False


def test_train_tool_unknown_experiment(repo_root):
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "train.py"), "no_such_experiment"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("train: error: unknown experiment 'no_such_experiment'")
    assert "ddsr_x3" in done.stderr  # lists the known ones
