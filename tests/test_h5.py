"""Tests of ddsr.data.h5: shuffling, shard limits, list files, atomic writes, Caffe read-back."""

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

import ddsr
from ddsr.data import h5, patches


def random_pairs(n, rng, size=7, scale=3):
    data = rng.random((n, size, size), dtype=np.float32)
    label = rng.integers(0, 256, (n, scale * size, scale * size), dtype=np.uint8)
    return data, label


def folder_snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


# --- shuffling ---------------------------------------------------------------------------------

def test_shuffled_order_is_a_seeded_permutation():
    a = h5.shuffled_order(1000, seed=7)
    np.testing.assert_array_equal(a, h5.shuffled_order(1000, seed=7))
    assert not np.array_equal(a, h5.shuffled_order(1000, seed=8))
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))
    assert not np.array_equal(a, np.arange(1000))


def test_shuffled_order_keeps_a_multiple_like_srcnn():
    # SRCNN's generate_train.m writes floor(count / 128) chunks of 128:
    # 252,086 patches -> 1969 chunks -> 252,032, the paper's number.
    order = h5.shuffled_order(252086, seed=0, multiple_of=128)
    assert len(order) == 1969 * 128 == 252032
    assert len(set(order.tolist())) == len(order) and order.max() < 252086
    assert len(h5.shuffled_order(127, 0, 128)) == 0
    with pytest.raises(ValueError):
        h5.shuffled_order(10, 0, 0)


# --- shard sizes -------------------------------------------------------------------------------

def test_shard_sizes_by_bytes():
    # One row of 7x7 + 21x21 float32 is (49 + 441) * 4 = 1960 bytes; 64 KiB kept for metadata.
    limit = 65536 + 10 * 1960
    assert h5.shard_sizes(10, (1, 7, 7), (1, 21, 21), limit) == [10]
    assert h5.shard_sizes(11, (1, 7, 7), (1, 21, 21), limit) == [6, 5]
    assert h5.shard_sizes(25, (1, 7, 7), (1, 21, 21), limit) == [9, 8, 8]
    assert h5.shard_sizes(0, (1, 7, 7), (1, 21, 21), limit) == []
    # The paper's database fits one default (1 GB) shard: 252,032 * 1960 = 494 MB.
    assert h5.shard_sizes(252032, (1, 7, 7), (1, 21, 21)) == [252032]


def test_shard_sizes_by_blob_elements():
    # A 30000x30000 label is 9e8 elements: 2 rows (1.8e9) fit under 2^31, 3 (2.7e9) do not.
    sizes = h5.shard_sizes(5, (1, 1, 1), (1, 30000, 30000), max_shard_bytes=10**12)
    assert sizes == [2, 2, 1]


def test_shard_sizes_too_small_limit():
    with pytest.raises(ValueError, match="cannot hold one sample"):
        h5.shard_sizes(5, (1, 7, 7), (1, 21, 21), max_shard_bytes=65536)


# --- shards and list files ---------------------------------------------------------------------

def test_write_shard_layout_and_values(tmp_path):
    rng = np.random.default_rng(0)
    data, label = random_pairs(20, rng)
    index = np.array([5, 0, 19, 3])
    h5.write_shard(tmp_path / "s.h5", data, label, index)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert set(f.keys()) == {"data", "label"}
        for name, shape in (("data", (4, 1, 7, 7)), ("label", (4, 1, 21, 21))):
            ds = f[name]
            assert ds.shape == shape and ds.dtype == np.dtype("<f4")
            assert ds.chunks is None and ds.compression is None  # contiguous, as Caffe reads fast
    got_data, got_label = h5.read_shard(tmp_path / "s.h5")
    np.testing.assert_array_equal(got_data[:, 0], data[index])
    # uint8 labels become MATLAB im2single: single(x) / 255.
    np.testing.assert_array_equal(got_label[:, 0],
                                  label[index].astype(np.float32) / np.float32(255))


def test_write_shard_many_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(h5, "_ROWS_PER_WRITE", 3)
    rng = np.random.default_rng(1)
    data, label = random_pairs(10, rng)
    order = rng.permutation(10)
    h5.write_shard(tmp_path / "s.h5", data, label, order)
    got_data, _ = h5.read_shard(tmp_path / "s.h5")
    np.testing.assert_array_equal(got_data[:, 0], data[order])


def test_write_split_respects_limits_and_lists_shards(tmp_path):
    rng = np.random.default_rng(2)
    data, label = random_pairs(50, rng)
    order = h5.shuffled_order(50, seed=3)
    limit = 65536 + 12 * 1960
    info = h5.write_split(tmp_path, "train", data, label, order, max_shard_bytes=limit)
    assert [s["num_patches"] for s in info["shards"]] == [10, 10, 10, 10, 10]
    for shard in info["shards"]:
        assert (tmp_path / shard["file"]).stat().st_size == shard["bytes"] <= limit
    listed = h5.read_list_file(tmp_path / "train.txt")
    assert listed == [tmp_path / f"train_{i:03d}.h5" for i in range(5)]
    got_data, got_label = h5.read_split(tmp_path / "train.txt")
    np.testing.assert_array_equal(got_data[:, 0], data[order])
    np.testing.assert_array_equal(got_label[:, 0], label[order] / np.float32(255))


def test_list_path_relative_under_root_else_absolute(tmp_path):
    root = tmp_path / "repo"
    assert h5.list_path(root / "data" / "h5" / "x3" / "train_000.h5", root) == \
        "data/h5/x3/train_000.h5"
    assert h5.list_path(tmp_path / "elsewhere" / "a.h5", root) == \
        (tmp_path / "elsewhere" / "a.h5").as_posix()
    assert h5.list_path(tmp_path / "a.h5") == (tmp_path / "a.h5").as_posix()


def test_list_file_refuses_whitespace(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        h5.write_list_file(tmp_path / "l.txt", ["/a b/train_000.h5"])
    h5.write_list_file(tmp_path / "l.txt", ["data/h5/x3/train_000.h5", "/abs/t.h5"])
    assert (tmp_path / "l.txt").read_text() == "data/h5/x3/train_000.h5\n/abs/t.h5\n"
    assert h5.read_list_file(tmp_path / "l.txt", tmp_path) == [
        tmp_path / "data/h5/x3/train_000.h5", Path("/abs/t.h5")]


# --- atomic replacement ------------------------------------------------------------------------

def test_atomic_directory_replaces_only_on_success(tmp_path):
    out = tmp_path / "db"
    with h5.atomic_directory(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
        (tmp / "a").write_text("old")
    assert folder_snapshot(out) == {"a": b"old", "manifest.json": b"{}"}
    with pytest.raises(RuntimeError):
        with h5.atomic_directory(out) as tmp:
            (tmp / "a").write_text("new, half written")
            raise RuntimeError("interrupted")
    assert folder_snapshot(out) == {"a": b"old", "manifest.json": b"{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]
    with h5.atomic_directory(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
        (tmp / "b").write_text("new")
    assert folder_snapshot(out) == {"b": b"new", "manifest.json": b"{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)


def test_atomic_directory_refuses_what_is_not_a_database(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a database"):
        with h5.atomic_directory(tmp_path / "notes"):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        h5.check_replaceable(tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        h5.check_replaceable(tmp_path / "file" / "db")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_check_replaceable_unwritable_parent(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            h5.check_replaceable(locked / "db")
    finally:
        locked.chmod(0o700)


# --- build_database ----------------------------------------------------------------------------

def make_set(folder, sizes, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    sources = []
    for i, (h, w) in enumerate(sizes):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = folder / f"im{i}.png"
        Image.fromarray(image).save(path)
        sources.append((folder.name, path))
    return sources


@pytest.fixture
def small_sets(tmp_path):
    train = make_set(tmp_path / "images" / "Train", [(60, 75), (44, 50), (12, 40)], 0)
    val = make_set(tmp_path / "images" / "Val", [(40, 41)], 1)
    return train, val


def build(out, small_sets, **kwargs):
    train, val = small_sets
    options = dict(multiple_of=1, val_sources=val, sync=False) | kwargs
    return h5.build_database(out, train, 3, **options)


def test_build_database_manifest_and_contents(tmp_path, small_sets):
    out = tmp_path / "db"
    manifest = build(out, small_sets, seed=5, multiple_of=8)
    assert manifest == h5.read_manifest(out)
    expected = patches.count_patches((60, 75), 3) + patches.count_patches((44, 50), 3)
    train = manifest["splits"]["train"]
    assert train["num_extracted"] == expected
    assert manifest["num_patches"] == train["num_patches"] == expected // 8 * 8
    assert train["num_dropped"] == expected % 8
    assert manifest["seed"] == 5 and manifest["params"]["stride"] == 4
    assert manifest["params"]["label_size"] == 21
    assert manifest["version"] == ddsr.__version__
    train_sources, _ = small_sets
    assert [im["sha256"] for im in train["images"]] == [
        hashlib.sha256(Path(p).read_bytes()).hexdigest() for _, p in train_sources[:2]]
    assert manifest["num_skipped"] == 1 and train["skipped"][0]["file"] == "im2.png"
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "train.txt", "train_000.h5", "val.txt", "val_000.h5"]
    data, label = h5.read_split(out / "train.txt")
    assert data.shape == (manifest["num_patches"], 1, 7, 7)
    assert label.shape == (manifest["num_patches"], 1, 21, 21)
    # The database holds exactly the collected patches, in the seeded order.
    pairs = patches.collect_patch_pairs(train_sources, 3)
    order = h5.shuffled_order(len(pairs), 5, 8)
    np.testing.assert_array_equal(data[:, 0], pairs.data[order])
    np.testing.assert_array_equal(label[:, 0], pairs.label[order] / np.float32(255))
    val = manifest["splits"]["val"]
    assert val["num_patches"] == patches.count_patches((40, 41), 3)


def test_build_database_is_deterministic(tmp_path, small_sets):
    build(tmp_path / "a", small_sets, seed=1)
    build(tmp_path / "b", small_sets, seed=1)
    for name in ("train_000.h5", "val_000.h5"):
        a, b = h5.read_shard(tmp_path / "a" / name), h5.read_shard(tmp_path / "b" / name)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_failure_mid_write_keeps_the_previous_database(tmp_path, small_sets, monkeypatch):
    out = tmp_path / "db"
    build(out, small_sets, max_shard_bytes=65536 + 20 * 1960)
    before = folder_snapshot(out)
    assert len([n for n in before if n.startswith("train_")]) > 1
    real_write_shard = h5.write_shard
    calls = []

    def failing_write_shard(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # like Ctrl-C after the first shard
        return real_write_shard(path, *args, **kwargs)

    monkeypatch.setattr(h5, "write_shard", failing_write_shard)
    with pytest.raises(KeyboardInterrupt):
        build(out, small_sets, seed=9, max_shard_bytes=65536 + 20 * 1960)
    assert len(calls) == 2
    assert folder_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "images"]


def test_disk_full_leaves_no_partial_database(tmp_path, small_sets, monkeypatch):
    out = tmp_path / "db"
    build(out, small_sets)
    before = folder_snapshot(out)

    def no_space(self, key, value):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", no_space)
    with pytest.raises(OSError, match="No space left on device") as info:
        build(out, small_sets, seed=2)
    assert "previous database is unchanged" in str(info.value)
    assert folder_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "images"]
    # Without a previous database, nothing at all is left.
    with pytest.raises(OSError):
        build(tmp_path / "fresh", small_sets)
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "images"]


def test_unwritable_output_fails_before_any_work(tmp_path, small_sets, monkeypatch):
    (tmp_path / "blocker").write_text("a file where a folder should be")

    def must_not_run(*args, **kwargs):
        raise AssertionError("patches were collected before the output was checked")

    monkeypatch.setattr(patches, "collect_patch_pairs", must_not_run)
    with pytest.raises(NotADirectoryError):
        build(tmp_path / "blocker" / "db", small_sets)


def test_validation_images_must_be_held_out(tmp_path, small_sets):
    train, _ = small_sets
    with pytest.raises(ValueError, match="also training or test images: Train/im0.png"):
        build(tmp_path / "db", (train, train[:1]))
    sha = hashlib.sha256(Path(small_sets[1][0][1]).read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="Val/im0.png"):
        build(tmp_path / "db", small_sets, held_out_sha256={sha})
    assert not (tmp_path / "db").exists()


def test_no_training_patch_is_an_error(tmp_path, small_sets):
    train, val = small_sets
    with pytest.raises(ValueError, match="every training image was skipped"):
        build(tmp_path / "db", (train[2:], val))
    with pytest.raises(ValueError, match="fewer than --multiple-of"):
        build(tmp_path / "db", small_sets, multiple_of=10**6)


# --- Caffe reads what was written -------------------------------------------------------------

@pytest.mark.caffe
def test_caffe_hdf5data_reads_the_arrays_written(tmp_path, caffe):
    rng = np.random.default_rng(4)
    data, label = random_pairs(37, rng)
    order = h5.shuffled_order(37, seed=0)
    h5.write_split(tmp_path, "train", data, label, order,
                   max_shard_bytes=65536 + 20 * 1960)  # 2 shards: the layer crosses files
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(f"""
name: "read_back"
layer {{
  name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{tmp_path / 'train.txt'}" batch_size: 37 shuffle: false }}
}}
""")
    net = caffe.Net(str(net_file), caffe.TEST)
    net.forward()
    assert net.blobs["data"].data.shape == (37, 1, 7, 7)
    assert net.blobs["label"].data.shape == (37, 1, 21, 21)
    np.testing.assert_array_equal(net.blobs["data"].data[:, 0], data[order])
    np.testing.assert_array_equal(net.blobs["label"].data[:, 0],
                                  label[order].astype(np.float32) / np.float32(255))
