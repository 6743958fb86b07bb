"""Tests of ddsr.data.registry and tools/fetch_datasets.py.

Downloads go to a local HTTP server on 127.0.0.1 that serves a copy of Set5 (the
smallest set), laid out both as raw repository URLs and as a mirror. The expected
values come from the shared MANIFEST.tsv and the paper (set sizes), not from the
module under test.
"""

import csv
import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ddsr.data import fetch, registry as datasets

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / "tools" / "fetch_datasets.py"

# The paper: test on Set5 (5), Set14 (14), BSD 200 (200); train on 91 images,
# General-100 and BSD 100 (291 in all). BSD200-train is the optional extra.
PAPER_COUNTS = {"Set5": 5, "Set14": 14, "BSD200": 200, "T91": 91, "General-100": 100, "BSD100": 100}
ALL_NAMES = ("Set5", "Set14", "BSD200", "T91", "General-100", "BSD100", "BSD200-train")


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def registry():
    return datasets.load_registry()


@pytest.fixture(scope="module")
def shared_sets(shared_dir):
    return shared_dir / "datasets"


# ---------------------------------------------------------------- the registry

def test_registry_has_the_paper_sets(registry):
    assert registry.names == ALL_NAMES
    assert registry.paper_sets == tuple(PAPER_COUNTS)
    for name, count in PAPER_COUNTS.items():
        assert len(registry.files(name)) == count, name
    assert len(registry.files("BSD200-train")) == 200
    assert sum(len(registry.files(n)) for n in ("T91", "General-100", "BSD100")) == 291
    assert {registry.role(n) for n in ("Set5", "Set14", "BSD200")} == {"test"}
    assert {registry.role(n) for n in ("T91", "General-100", "BSD100")} == {"train"}
    assert registry.role("BSD200-train") == "optional"


def test_registry_agrees_with_the_shared_manifest(registry, shared_sets):
    with open(shared_sets / "MANIFEST.tsv", newline="") as fh:
        manifest = {(r["set"], r["filename"]): r for r in csv.DictReader(fh, delimiter="\t")}
    ours = {(f.set, f.filename): f for n in registry.names for f in registry.files(n)}
    assert set(ours) == set(manifest)
    for key, row in manifest.items():
        f = ours[key]
        assert (f.sha256, f.bytes, f.width, f.height) == (
            row["sha256"], int(row["bytes"]), int(row["width"]), int(row["height"])), key
        assert (f.source_repo, f.source_commit, f.source_path) == (
            row["source_repo"], row["source_commit"], row["source_path"]), key


def test_shared_copies_verify_against_the_registry(registry, shared_sets):
    for name in registry.names:
        assert datasets.verify_set(name, shared_sets, registry=registry) == [], name


def test_raw_url_is_the_pinned_github_file(registry):
    bird = [f for f in registry.files("Set5") if f.filename == "bird_GT.bmp"][0]
    assert bird.raw_url() == ("https://raw.githubusercontent.com/WangDequan/SRCNN/"
                              "85679e2ef74e058a1f1e79fe6ba349e93f1ee8ea/Test/Set5/bird_GT.bmp")
    assert bird.mirror_url("http://host/sets/") == "http://host/sets/Set5/bird_GT.bmp"
    im = registry.files("General-100")[0]
    assert im.raw_url().startswith("https://raw.githubusercontent.com/yippp/FSRCNN/")


def test_unknown_set_is_an_error_naming_the_known_ones(registry, tmp_path):
    with pytest.raises(ValueError, match=r"unknown set 'Set6'.*Set5, Set14"):
        registry.files("Set6")
    with pytest.raises(ValueError, match="unknown set"):
        fetch.fetch_set("Set6", tmp_path, from_dir=tmp_path, registry=registry)
    assert list(tmp_path.iterdir()) == []


_GOOD_ROW = ["Set5", "test", "a.bmp", "0" * 64, "10", "2", "3", "o/r", "1" * 40, "Test/a.bmp"]


@pytest.mark.parametrize("column, value, message", [
    (2, "../escape.bmp", "not a plain file name"),
    (2, "sub/dir.bmp", "not a plain file name"),
    (2, ".hidden", "not a plain file name"),
    (3, "XYZ", "bad sha256"),
    (1, "validation", "role"),
    (4, "ten", "integers"),
    (8, "abc", "bad commit"),
    (9, "../../etc/passwd", "bad source path"),
])
def test_registry_rejects_malformed_rows(tmp_path, column, value, message):
    row = list(_GOOD_ROW)
    row[column] = value
    path = tmp_path / "registry.tsv"
    path.write_text("\t".join(datasets.REGISTRY_COLUMNS) + "\n" + "\t".join(row) + "\n")
    with pytest.raises(ValueError, match=message):
        datasets.load_registry(path)


def test_registry_rejects_duplicates_and_wrong_header(tmp_path):
    path = tmp_path / "registry.tsv"
    path.write_text("\t".join(datasets.REGISTRY_COLUMNS) + "\n" + ("\t".join(_GOOD_ROW) + "\n") * 2)
    with pytest.raises(ValueError, match="duplicate"):
        datasets.load_registry(path)
    path.write_text("set\tfile\n")
    with pytest.raises(ValueError, match="columns"):
        datasets.load_registry(path)


# ---------------------------------------------------------- import from a folder

def test_import_from_shared_folder(registry, shared_sets, tmp_path):
    root = tmp_path / "data"
    seen = []
    result = fetch.fetch_set("Set5", root, from_dir=shared_sets, registry=registry,
                                progress=seen.append)
    assert result.action == "fetched"
    assert result.path == root / "Set5"
    assert [e.filename for e in seen] == [f.filename for f in registry.files("Set5")]
    assert sorted(p.name for p in root.iterdir()) == ["Set5"]  # no temporary folder left
    for src in sorted((shared_sets / "Set5").iterdir()):
        assert (root / "Set5" / src.name).read_bytes() == src.read_bytes()
    assert datasets.image_paths("Set5", root, registry=registry) == sorted((root / "Set5").iterdir())

    # A second fetch finds it complete and leaves it alone.
    before = {p.name: p.stat().st_mtime_ns for p in (root / "Set5").iterdir()}
    again = fetch.fetch_set("Set5", root, from_dir=shared_sets, registry=registry)
    assert again.action == "present"
    assert {p.name: p.stat().st_mtime_ns for p in (root / "Set5").iterdir()} == before


def test_import_from_folder_with_a_bad_copy_writes_nothing(registry, shared_sets, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(shared_sets / "Set5", src / "Set5")
    (src / "Set5" / "head_GT.bmp").unlink()
    with open(src / "Set5" / "woman_GT.bmp", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01")
    root = tmp_path / "data"
    with pytest.raises(datasets.ChecksumError) as info:
        fetch.fetch_set("Set5", root, from_dir=src, registry=registry)
    assert [(p.filename, p.reason.split(":")[0]) for p in info.value.problems] == [
        ("head_GT.bmp", "missing"), ("woman_GT.bmp", "sha256 mismatch")]
    assert "head_GT.bmp" in str(info.value) and "woman_GT.bmp" in str(info.value)
    assert list(root.iterdir()) == []


def test_from_folder_without_the_set_is_an_error(registry, tmp_path):
    with pytest.raises(datasets.DatasetError, match="Set14"):
        fetch.fetch_set("Set14", tmp_path / "data", from_dir=tmp_path, registry=registry)


# ----------------------------------------------------------- downloads over HTTP

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; counts requests and answers with queued error statuses first."""

    def __init__(self, *args, state, **kwargs):
        self.state = state
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.state["requests"].append(self.path)
        queued = self.state["fail"].get(self.path)
        if queued:
            self.send_error(queued.pop(0))
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(registry, shared_sets, tmp_path):
    """An HTTP server on 127.0.0.1 serving Set5 as raw URLs (/raw/...) and as a mirror (/mirror/...)."""
    root = tmp_path / "www"
    for f in registry.files("Set5"):
        for dest in (root / "raw" / f.source_repo / f.source_commit / f.source_path,
                     root / "mirror" / "Set5" / f.filename):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared_sets / "Set5" / f.filename, dest)
    state = {"requests": [], "fail": {}, "root": root}
    handler = functools.partial(_Handler, state=state, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _assert_set5_intact(root, shared_sets):
    assert sorted(p.name for p in root.iterdir()) == ["Set5"]
    names = sorted(p.name for p in (root / "Set5").iterdir())
    assert names == sorted(p.name for p in (shared_sets / "Set5").iterdir())
    for name in names:
        assert _sha256(root / "Set5" / name) == _sha256(shared_sets / "Set5" / name)


def test_download_raw_urls_from_local_server(registry, shared_sets, server, tmp_path):
    root = tmp_path / "data"
    result = fetch.fetch_set("Set5", root, raw_base=server["url"] + "/raw", registry=registry,
                                timeout=5, retries=0)
    assert result.action == "fetched"
    _assert_set5_intact(root, shared_sets)
    assert sorted(server["requests"]) == sorted(
        "/raw/WangDequan/SRCNN/85679e2ef74e058a1f1e79fe6ba349e93f1ee8ea/Test/Set5/" + n
        for n in ("baby_GT.bmp", "bird_GT.bmp", "butterfly_GT.bmp", "head_GT.bmp", "woman_GT.bmp"))


def test_download_from_mirror_with_corrupted_file_leaves_nothing(registry, server, tmp_path):
    served = server["root"] / "mirror" / "Set5" / "butterfly_GT.bmp"
    data = bytearray(served.read_bytes())
    data[-1] ^= 0xFF
    served.write_bytes(bytes(data))
    root = tmp_path / "data"
    with pytest.raises(datasets.ChecksumError, match="butterfly_GT.bmp") as info:
        fetch.fetch_set("Set5", root, mirror=server["url"] + "/mirror", registry=registry,
                           timeout=5, retries=0)
    assert [p.filename for p in info.value.problems] == ["butterfly_GT.bmp"]
    assert "sha256 mismatch" in info.value.problems[0].reason
    assert list(root.iterdir()) == []  # no Set5, no .Set5.partial-*


def test_download_lists_every_missing_and_wrong_file(registry, server, tmp_path):
    (server["root"] / "mirror" / "Set5" / "baby_GT.bmp").unlink()
    (server["root"] / "mirror" / "Set5" / "head_GT.bmp").write_bytes(b"not a bmp")
    root = tmp_path / "data"
    with pytest.raises(datasets.ChecksumError) as info:
        fetch.fetch_set("Set5", root, mirror=server["url"] + "/mirror", registry=registry,
                           timeout=5, retries=0)
    assert [(p.filename, p.reason.split(":")[0]) for p in info.value.problems] == [
        ("baby_GT.bmp", "missing"), ("head_GT.bmp", "sha256 mismatch")]
    assert list(root.iterdir()) == []


def test_download_retries_busy_server(registry, shared_sets, server, tmp_path):
    server["fail"]["/mirror/Set5/bird_GT.bmp"] = [503, 500]
    root = tmp_path / "data"
    fetch.fetch_set("Set5", root, mirror=server["url"] + "/mirror", registry=registry,
                       timeout=5, retries=2, backoff=0)
    _assert_set5_intact(root, shared_sets)
    assert server["requests"].count("/mirror/Set5/bird_GT.bmp") == 3


def test_download_gives_up_and_leaves_nothing(registry, server, tmp_path):
    server["fail"]["/mirror/Set5/head_GT.bmp"] = [503, 503, 503]
    root = tmp_path / "data"
    with pytest.raises(datasets.DownloadError, match=r"head_GT\.bmp.*503.*2 attempts"):
        fetch.fetch_set("Set5", root, mirror=server["url"] + "/mirror", registry=registry,
                           timeout=5, retries=1, backoff=0)
    assert list(root.iterdir()) == []


def test_unreachable_server_is_a_download_error(registry, tmp_path):
    # A port that nobody listens on: bind one, note it, close it.
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(datasets.DownloadError, match="gave up after 1 attempts"):
        fetch.fetch_set("Set5", tmp_path / "data", mirror=f"http://127.0.0.1:{port}",
                           registry=registry, timeout=2, retries=0)
    assert list((tmp_path / "data").iterdir()) == []


def test_complete_set_is_kept_without_network(registry, shared_sets, tmp_path):
    root = tmp_path / "data"
    fetch.fetch_set("Set5", root, from_dir=shared_sets, registry=registry)
    result = fetch.fetch_set("Set5", root, mirror="http://127.0.0.1:9/nowhere",
                                registry=registry, timeout=1, retries=0)
    assert result.action == "present"


def test_broken_set_is_rebuilt_reusing_good_files(registry, shared_sets, server, tmp_path):
    root = tmp_path / "data"
    fetch.fetch_set("Set5", root, from_dir=shared_sets, registry=registry)
    (root / "Set5" / "bird_GT.bmp").write_bytes(b"broken")
    (root / "Set5" / "stray.png").write_bytes(b"not in the registry")
    assert {p.filename for p in datasets.verify_set("Set5", root, registry=registry)} == {
        "bird_GT.bmp", "stray.png"}
    result = fetch.fetch_set("Set5", root, mirror=server["url"] + "/mirror", registry=registry,
                                timeout=5, retries=0)
    assert result.action == "replaced"
    assert {p.filename for p in result.old_problems} == {"bird_GT.bmp", "stray.png"}
    _assert_set5_intact(root, shared_sets)  # stray file gone, no .Set5.old-* left
    assert server["requests"] == ["/mirror/Set5/bird_GT.bmp"]  # the 4 good files were reused


def test_failed_rebuild_keeps_the_old_folder(registry, shared_sets, server, tmp_path):
    root = tmp_path / "data"
    fetch.fetch_set("Set5", root, from_dir=shared_sets, registry=registry)
    (root / "Set5" / "bird_GT.bmp").write_bytes(b"broken")
    (server["root"] / "mirror" / "Set5" / "bird_GT.bmp").write_bytes(b"also broken")
    with pytest.raises(datasets.ChecksumError, match="bird_GT.bmp"):
        fetch.fetch_set("Set5", root, mirror=server["url"] + "/mirror", registry=registry,
                           timeout=5, retries=0)
    assert sorted(p.name for p in root.iterdir()) == ["Set5"]
    assert (root / "Set5" / "bird_GT.bmp").read_bytes() == b"broken"


def test_file_url_mirror(registry, shared_sets, tmp_path):
    root = tmp_path / "data"
    fetch.fetch_set("Set5", root, mirror=shared_sets.as_uri(), registry=registry)
    _assert_set5_intact(root, shared_sets)


def test_bad_arguments(registry, shared_sets, tmp_path):
    with pytest.raises(ValueError, match="at most one"):
        fetch.fetch_set("Set5", tmp_path, from_dir=shared_sets, mirror="http://x", registry=registry)
    with pytest.raises(ValueError, match="URL"):
        fetch.fetch_set("Set5", tmp_path, mirror="ftp://x", registry=registry)
    with pytest.raises(datasets.DatasetError, match="does not exist"):
        datasets.verify_set("Set5", tmp_path / "nowhere", registry=registry)


# ------------------------------------------------------------------------ CLI

def _tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_help_explains_the_sources():
    run = _tool("--help")
    assert run.returncode == 0
    for text in ("--from DIR", "--mirror URL", "--data-root", "--verify", "--paper", "sha256",
                 "raw.githubusercontent.com", "BSD200-train"):
        assert text in run.stdout, text


def test_cli_fetch_verify_and_errors(shared_sets, tmp_path):
    root = tmp_path / "data"
    run = _tool("Set5", "--from", str(shared_sets), "--data-root", str(root), "-q")
    assert run.returncode == 0, run.stderr
    assert "Set5: 5 verified files" in run.stdout
    run = _tool("--verify", "--data-root", str(root))
    assert run.returncode == 0 and "Set5: ok" in run.stdout

    (root / "Set5" / "baby_GT.bmp").write_bytes(b"x")
    run = _tool("--verify", "--data-root", str(root))
    assert run.returncode == 1
    assert "baby_GT.bmp: sha256 mismatch" in run.stdout
    assert run.stderr.strip().splitlines() == ["fetch_datasets.py: error: verification failed for Set5"]

    run = _tool("Set14", "--from", str(tmp_path / "empty"), "--data-root", str(root), "-q")
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("fetch_datasets.py: error: Set14:")

    run = _tool("Set6", "--data-root", str(root))
    assert run.returncode == 2
    assert "unknown set 'Set6'" in run.stderr

    run = _tool("--data-root", str(root))
    assert run.returncode == 2 and "--all or --paper" in run.stderr


def test_list_set_images(tmp_path):
    (tmp_path / "S").mkdir()
    for name in ("b.png", "a.BMP", "notes.txt", "c.jpeg"):
        (tmp_path / "S" / name).write_bytes(b"x")
    (tmp_path / "S" / "sub.png").mkdir()
    assert [p.name for p in datasets.list_set_images(tmp_path, "S")] == ["a.BMP", "b.png", "c.jpeg"]
    with pytest.raises(ValueError, match=r"unknown set 'Nope': no folder .*Nope \(sets there: S\)"):
        datasets.list_set_images(tmp_path, "Nope")
    (tmp_path / "E").mkdir()
    with pytest.raises(ValueError, match="empty set 'E'"):
        datasets.list_set_images(tmp_path, "E")
