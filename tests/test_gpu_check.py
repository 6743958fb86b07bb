"""The GPU self-check (ddsr.training.gpu_check, tools/check_gpu.py) on a machine without a GPU.

What needs a GPU is the candidate side of each comparison; everything else runs here:
the GPU detection (with stand-in nvidia-smi and /proc), the parsers of what nvidia-smi,
ldd and the caffe tool print (on their documented formats), the tolerance checks on
hand-made numbers whose answers are known, the report writer, the prototxt editing
(checked against protobuf's own parser of Caffe's schema), and the whole check run CPU
against CPU through the real caffe tool on a tiny DDSR, which also shows that a real
difference in training is caught by the same comparison.
"""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddsr.training import gpu_check, gpu_facts
from ddsr.training import prototxt_text as pt

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "check_gpu.py"
TRAIN_NET = REPO / "prototxt" / "ddsr_x3_train.prototxt"
SOLVER = REPO / "solvers" / "ddsr_x3.prototxt"


def machine_has_gpu():
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/gpus").is_dir()


# --- no GPU ---------------------------------------------------------------------------------


@pytest.mark.skipif(machine_has_gpu(), reason="this machine has an NVIDIA GPU")
def test_without_a_gpu_the_tool_says_so_in_one_line_and_exits_2(tmp_path):
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, str(TOOL), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "no NVIDIA GPU" in lines[0]
    assert not out.exists()


def fake_nvidia_smi(folder, stdout, status=0):
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '%s' '{stdout}'\nexit {status}\n")
    tool.chmod(0o755)
    return str(tool)


def test_gpus_from_nvidia_smi(tmp_path):
    tool = fake_nvidia_smi(tmp_path, "0, NVIDIA H200, 580.159.03, 143771\n1, NVIDIA H200, 580.159.03, 143771\n")
    gpus = gpu_facts.find_gpus(nvidia_smi=tool, proc=tmp_path / "none")
    assert gpus == [gpu_facts.GPU(0, "NVIDIA H200", "580.159.03", 143771),
                    gpu_facts.GPU(1, "NVIDIA H200", "580.159.03", 143771)]


def test_nvidia_smi_without_devices_is_no_gpu(tmp_path):
    tool = fake_nvidia_smi(tmp_path, "No devices were found\n", status=6)
    with pytest.raises(gpu_facts.NoGPU, match="No devices were found"):
        gpu_facts.find_gpus(nvidia_smi=tool, proc=tmp_path / "none")


def test_gpus_from_the_driver_when_nvidia_smi_is_missing(tmp_path):
    entry = tmp_path / "proc" / "0000:01:00.0"
    entry.mkdir(parents=True)
    (entry / "information").write_text("Model: \t\t NVIDIA GeForce GTX 1080 Ti\nIRQ: 42\n")
    gpus = gpu_facts.find_gpus(nvidia_smi="no-such-nvidia-smi", proc=tmp_path / "proc")
    assert [g.name for g in gpus] == ["NVIDIA GeForce GTX 1080 Ti"]
    with pytest.raises(gpu_facts.NoGPU, match="no nvidia-smi"):
        gpu_facts.find_gpus(nvidia_smi="no-such-nvidia-smi", proc=tmp_path / "none")


# --- what the tools print ---------------------------------------------------------------------

# `caffe time`'s closing lines (tools/caffe.cpp of BVLC Caffe), with glog's prefix.
CAFFE_TIME = """\
I1201 10:00:00.000000  4242 caffe.cpp:397] Average time per layer:
I1201 10:00:00.000000  4242 caffe.cpp:400]     conv1\tforward: 0.101 ms.
I1201 10:00:00.000000  4242 caffe.cpp:408] Average Forward pass: 12.25 ms.
I1201 10:00:00.000000  4242 caffe.cpp:410] Average Backward pass: 30.5 ms.
I1201 10:00:00.000000  4242 caffe.cpp:412] Average Forward-Backward: 42.9 ms.
I1201 10:00:00.000000  4242 caffe.cpp:414] Total Time: 2145 ms.
"""


def test_caffe_time_averages_are_read():
    assert gpu_facts.parse_caffe_time(CAFFE_TIME) == gpu_facts.CaffeTime(12.25, 30.5, 42.9)
    with pytest.raises(ValueError, match="Forward-Backward"):
        gpu_facts.parse_caffe_time(CAFFE_TIME.replace("Average Forward-Backward", "Something"))


def test_device_query_lines_are_read():
    text = ("I1201 10:00:00.000000  4242 caffe.cpp:138] Querying GPUs 0\n"
            "I1201 10:00:00.000000  4242 common.cpp:178] Device id:                     0\n"
            "I1201 10:00:00.000000  4242 common.cpp:179] Major revision number:         9\n"
            "I1201 10:00:00.000000  4242 common.cpp:181] Name:                          NVIDIA H200\n"
            "I1201 10:00:00.000000  4242 common.cpp:182] Total global memory:           150754820096\n")
    found = gpu_facts.parse_device_query(text)
    assert found == {"Device id": "0", "Major revision number": "9", "Name": "NVIDIA H200",
                     "Total global memory": "150754820096"}


def test_ldd_output_is_read():
    text = ("\tlinux-vdso.so.1 (0x00007ffd)\n"
            "\tlibcudnn.so.9 => /w/nvidia/cudnn/lib/libcudnn.so.9 (0x00007f01)\n"
            "\tlibnccl.so.2 => not found\n")
    assert gpu_facts.parse_ldd(text) == {"libcudnn.so.9": "/w/nvidia/cudnn/lib/libcudnn.so.9", "libnccl.so.2": None}


@pytest.mark.parametrize("number, text", [(91300, "9.13.0"), (90100, "9.1.0"), (8907, "8.9.7"), (7605, "7.6.5")])
def test_cudnn_version_numbers(number, text):
    # cuDNN 9 made CUDNN_VERSION major * 10000 + minor * 100 + patch (it was major * 1000 + ...)
    assert gpu_facts.cudnn_version_text(number) == text


@pytest.mark.parametrize("number, text", [(13000, "13.0"), (12090, "12.9"), (11080, "11.8")])
def test_cuda_version_numbers(number, text):
    assert gpu_facts.cuda_version_text(number) == text


# --- the tolerance checks -----------------------------------------------------------------------


def test_forward_parity_is_the_max_abs_difference_against_1e_5():
    reference = np.zeros((2, 1, 3, 3), np.float32)
    candidate = reference.copy()
    candidate[1, 0, 2, 1] = -1e-5
    at = gpu_facts.compare_forward(reference, candidate)
    assert at.value == pytest.approx(1e-5) and at.passed and at.worst_index == 9 + 7
    candidate[0, 0, 0, 0] = 1.5e-5
    over = gpu_facts.compare_forward(reference, candidate)
    assert over.value == pytest.approx(1.5e-5) and not over.passed and over.worst_index == 0
    candidate[0, 0, 0, 1] = np.nan
    assert not gpu_facts.compare_forward(reference, candidate).passed
    with pytest.raises(ValueError, match="shapes differ"):
        gpu_facts.compare_forward(reference, candidate[:1])


def test_training_parity_is_each_loss_within_1e_3_relative():
    cpu = [2.0, 1.0, 0.5, 0.25]
    close = gpu_facts.compare_losses(cpu, [2.0019, 1.0, 0.5002, 0.25])  # 9.5e-4, 4e-4
    assert close.passed and close.value == pytest.approx(9.5e-4) and close.worst_index == 0
    far = gpu_facts.compare_losses(cpu, [2.0, 1.0, 0.5, 0.2503])         # 1.2e-3 at iteration 3
    assert not far.passed and far.value == pytest.approx(1.2e-3) and far.worst_index == 3
    diverged = gpu_facts.compare_losses(cpu, [2.0, 1.0, math.inf, 0.25])
    assert not diverged.passed and diverged.worst_index == 2
    with pytest.raises(ValueError, match="length"):
        gpu_facts.compare_losses(cpu, cpu[:3])


def test_hours_of_a_100k_iteration_run():
    assert gpu_facts.hours_for(36.0) == pytest.approx(1.0)          # 36 ms x 100,000 = 1 h
    assert gpu_facts.hours_for(108.0) == pytest.approx(3.0)         # the paper's ~3 h per run


# --- the report ---------------------------------------------------------------------------------


def sample_results(training_loss_difference=2e-4):
    results = gpu_check.CheckResults(
        machine={"GPU 0": "NVIDIA H200, 143771 MiB", "NVIDIA driver": "580.159.03",
                 "CUDA runtime": "13.0 (/x/libcudart.so.13)", "cuDNN": "9.13.0 (/x/libcudnn.so.9)"},
        device_query={"Name": "NVIDIA H200", "Major revision number": "9"},
        settings={"net": "prototxt/ddsr_x3_train.prototxt", "solver": "solvers/ddsr_x3.prototxt", "scale": 3,
                  "batch": 128, "train_batch": 32, "train_iterations": 100, "time_iterations": 50, "gpu": 0})
    results.forward = [("CUDNN", "128 training patches 7x7", gpu_facts.Comparison(3.2e-7, 1e-5, 5)),
                       ("CAFFE", "128 training patches 7x7", gpu_facts.Comparison(2.4e-7, 1e-5, 9))]
    results.training = [("CUDNN", gpu_facts.Comparison(training_loss_difference, 1e-3, 57), 0.51234, 0.01234),
                        ("CAFFE", gpu_facts.Comparison(1e-5, 1e-3, 3), 0.51234, 0.01233)]
    results.timings = [("cuDNN", gpu_facts.CaffeTime(4.0, 8.6, 12.6)),
                       ("Caffe's own (im2col + cuBLAS)", gpu_facts.CaffeTime(20.0, 34.0, 54.0))]
    return results


def test_report_names_the_machine_and_every_figure(tmp_path):
    path = gpu_facts.write_report(tmp_path / "gpu" / "report.md", sample_results())
    text = path.read_text()
    assert "Overall: **PASS**" in text
    for expected in ("NVIDIA H200, 143771 MiB", "580.159.03", "13.0 (/x/libcudart.so.13)", "9.13.0",
                     "Name: NVIDIA H200",
                     "| cuDNN | 128 training patches 7x7 | 3.2e-07 | PASS |",
                     "| cuDNN | 0.0002 | 57 | 0.51234 | 0.01234 | PASS |",
                     "| cuDNN | 4.00 | 8.60 | 12.60 | 0.35 h |",            # 12.6 ms x 100k = 0.35 h
                     "| Caffe's own (im2col + cuBLAS) | 20.00 | 34.00 | 54.00 | 1.50 h |"):
        assert expected in text, expected
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it


def test_report_fails_when_one_figure_is_over_its_tolerance():
    results = sample_results(training_loss_difference=2e-3)
    assert not results.passed
    text = gpu_facts.report_markdown(results)
    assert "Overall: **FAIL**" in text
    assert "| cuDNN | 0.002 | 57 | 0.51234 | 0.01234 | FAIL |" in text
    results = sample_results()
    results.failures.append("caffe time, cuDNN: caffe time exited 1")
    assert not results.passed
    assert "FAILED: caffe time, cuDNN" in gpu_facts.report_markdown(results)


# --- the nets it runs -----------------------------------------------------------------------------


def test_prototxt_round_trip_keeps_every_field_caffe_reads(caffe):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2

    for path, message in ((TRAIN_NET, caffe_pb2.NetParameter), (SOLVER, caffe_pb2.SolverParameter)):
        text = path.read_text()
        ours = text_format.Parse(pt.dump(pt.parse(text)), message())
        assert ours == text_format.Parse(text, message()), path


def test_prototxt_errors_name_the_line():
    with pytest.raises(ValueError, match="line 2"):
        pt.parse('name: "x"\nlayer { name: }\n')
    with pytest.raises(ValueError, match="never closed"):
        pt.parse("layer { name: 'x'\n")


def test_engine_data_and_output_edits(caffe):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2

    net = pt.parse(TRAIN_NET.read_text())
    edited = gpu_check.with_output(gpu_check.with_data(gpu_check.with_engine(net, "CUDNN"), "/d/list.txt", 7),
                                   "recon", "/d/out.h5")
    parsed = text_format.Parse(pt.dump(edited), caffe_pb2.NetParameter())
    convolutions = [l for l in parsed.layer if l.type in ("Convolution", "Deconvolution")]
    assert len(convolutions) == 19  # DDSR-18: the deconvolution, 17 convolutions, the reconstruction
    assert all(l.convolution_param.engine == caffe_pb2.ConvolutionParameter.CUDNN for l in convolutions)
    data = [l for l in parsed.layer if l.type == "HDF5Data"]
    assert [(l.hdf5_data_param.source, l.hdf5_data_param.batch_size, l.hdf5_data_param.shuffle)
            for l in data] == [("/d/list.txt", 7, False)] * 2
    assert parsed.layer[-1].type == "HDF5Output" and list(parsed.layer[-1].bottom) == ["recon", "label"]
    assert parsed.layer[-1].hdf5_output_param.file_name == "/d/out.h5"
    # the original is untouched
    assert "engine" not in pt.dump(net)
    assert gpu_check.upscale_factor(net) == 3 and gpu_check.net_batch_size(net) == 128
    assert (gpu_check.loss_blob(net), gpu_check.output_blob(net)) == ("loss", "recon")


def test_solver_keeps_the_optimiser_and_sets_the_rest(caffe):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2

    text = gpu_check.solver_text(pt.parse(SOLVER.read_text()), "/w/net.prototxt", 100, "/w/run")
    solver = text_format.Parse(text, caffe_pb2.SolverParameter())
    original = text_format.Parse(SOLVER.read_text(), caffe_pb2.SolverParameter())
    for name in ("type", "base_lr", "momentum", "momentum2", "delta", "lr_policy", "gamma", "random_seed"):
        assert getattr(solver, name) == getattr(original, name), name
    assert list(solver.stepvalue) == list(original.stepvalue)
    assert (solver.net, solver.max_iter, solver.display, solver.average_loss, solver.snapshot) == \
        ("/w/net.prototxt", 100, 1, 1, 0)
    assert not solver.test_iter and not solver.snapshot_after_train


# --- the whole check through the real caffe tool, CPU against CPU -----------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, caffe_tool):
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_ddsr import make_tiny_run

    return make_tiny_run(tmp_path_factory.mktemp("tiny"), caffe_tool, train=False)


def test_cpu_dry_run_of_the_whole_check_passes_and_writes_the_report(tmp_path, tiny, caffe_tool):
    net = tiny["root"] / "prototxt" / "tiny_x3_train.prototxt"
    done = subprocess.run(
        [sys.executable, str(TOOL), "--cpu", "--caffe", caffe_tool, "--net", str(net), "--solver", str(tiny["solver"]),
         "--out", str(tmp_path / "gpu"), "--train-iterations", "5", "--train-batch", "8", "--time-iterations", "2"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "gpu" / "report.md").read_text()
    assert "Overall: **PASS** (CPU against CPU" in text
    # the same binary, weights and data: identical outputs and losses
    assert "| Caffe's own (im2col + cuBLAS) | 16 training patches 7x7 | 0 | PASS |" in text
    assert "| Caffe's own (im2col + cuBLAS) | one 64x64 image | 0 | PASS |" in text
    assert "| Caffe's own (im2col + cuBLAS) | 0 | 0 |" in text
    assert "caffe time, Caffe's own (im2col + cuBLAS): " in done.stderr


def test_the_training_comparison_catches_a_real_difference(tmp_path, tiny, caffe_tool):
    # Two CPU trainings from the same weights and data, one with a learning rate 10% higher:
    # iteration 0 (before any update) agrees, later losses do not.
    net = pt.parse((tiny["root"] / "prototxt" / "tiny_x3_train.prototxt").read_text())
    solver = pt.parse(tiny["solver"].read_text())
    source = gpu_check.write_patches(tmp_path / "train.h5", 32, 3, seed=0)
    model = tmp_path / "net.prototxt"
    model.write_text(pt.dump(gpu_check.with_data(gpu_check.with_engine(net, "CAFFE"), source, 8)))
    init = tmp_path / "init.prototxt"
    init.write_text(gpu_check.solver_text(solver, model, 0, tmp_path / "init", snapshot_at_end=True))
    gpu_check.run_caffe(caffe_tool, ["train", "-solver", init], tmp_path / "init.log")
    weights = tmp_path / "init_iter_0.caffemodel"

    def losses(base_lr, tag):
        solver.set("base_lr", base_lr)
        path = tmp_path / f"{tag}.prototxt"
        path.write_text(gpu_check.solver_text(solver, model, 10, tmp_path / tag))
        text = gpu_check.run_caffe(caffe_tool, ["train", "-solver", path, "-weights", weights], tmp_path / f"{tag}.log")
        return gpu_check.training_losses(text, 10)

    reference, again, faster = losses("0.001", "a"), losses("0.001", "b"), losses("0.0011", "c")
    assert gpu_facts.compare_losses(reference, again).value == 0.0
    assert faster[0] == reference[0]
    assert not gpu_facts.compare_losses(reference, faster).passed


def test_a_caffe_failure_is_one_message_naming_the_log(tmp_path, caffe_tool):
    with pytest.raises(gpu_check.StepFailed, match=r"caffe train exited .*no-such\.prototxt.*log: "):
        gpu_check.run_caffe(caffe_tool, ["train", "-solver", tmp_path / "no-such.prototxt"], tmp_path / "x.log")
    assert (tmp_path / "x.log").is_file()


def test_library_versions_of_a_cpu_build_say_not_linked(caffe_tool):
    versions = gpu_facts.library_versions(caffe_tool)
    if versions["cudart"][0] is not None:
        pytest.skip("the venv's Caffe is a CUDA build")
    assert versions == {"cudart": (None, None), "cudnn": (None, None)}


# --- carrying the CUDA build to a GPU machine ----------------------------------------------------


def test_bundle_refuses_a_build_without_cuda(tmp_path, caffe_tool):
    prefix = Path(caffe_tool).resolve().parents[1]  # the venv's Caffe: bin/caffe, lib/
    done = subprocess.run(["bash", str(REPO / "tools" / "gpu_bundle.sh"), "--from", str(prefix),
                           "--out", str(tmp_path / "b")], capture_output=True, text=True)
    if "libcudart" in subprocess.run(["ldd", caffe_tool], capture_output=True, text=True).stdout:
        pytest.skip("the venv's Caffe is a CUDA build")
    assert done.returncode != 0
    assert "not a CUDA build" in done.stderr
    assert not (tmp_path / "b").exists()


def test_device_script_without_a_bundle_says_so(tmp_path):
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(REPO / "tools" / "gpu_device_check.sh", repo / "tools")
    done = subprocess.run(["bash", str(repo / "tools" / "gpu_device_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert "no .gpu-bundle/caffe-bundle.tar.xz" in done.stderr
