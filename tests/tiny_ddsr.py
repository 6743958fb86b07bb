"""A tiny but real DDSR training run for the workflow tests (curves, compare, demo).

``make_tiny_run(root)`` lays out a working directory the way the repository does
(``solvers/``, ``prototxt/``, ``snapshots/``, ``runs/``, ``data/<Set>/``) with a
DDSR of depth 2 and 8 filters at x3 (the package's own net builder), an HDF5
database cut from two scikit-image photographs, and two small test images, and
trains it with ``caffe train`` for a few dozen iterations (about a second).
"""

from pathlib import Path

import numpy as np

SCALE = 3
NAME = "tiny_x3"


def _write_png(path, image):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_tiny_run(root, caffe_tool, max_iter=30, snapshot=10, base_lr=0.001, train=True):
    """Create and (optionally) train the tiny run under ``root``; return its paths."""
    import h5py
    import skimage.data

    from ddsr.data import patches
    from ddsr.model import nets
    from ddsr.training import runner
    from ddsr.data.database import DataRecipe
    from ddsr.model.experiments import DataConfig
    from ddsr.matlab import im2single

    root = Path(root)
    # test images: 48x60 colour crops (multiples of 3), never trained on
    test = root / "data" / "TinySet"
    _write_png(test / "face.png", skimage.data.astronaut()[30:78, 180:240])
    _write_png(test / "cat.png", skimage.data.chelsea()[100:148, 150:210])

    # training database: 7x7 LR patches, 21x21 HR labels, from two other photographs
    data, label = [], []
    for image in (skimage.data.camera()[:150, :150], skimage.data.coffee()[:150, :150]):
        d, l = patches.image_patch_pairs(image, SCALE, patch_size=7, stride=4)
        data.append(d)
        label.append(im2single(l))
    data = np.concatenate(data)[:, None]
    label = np.concatenate(label)[:, None]
    (root / "h5").mkdir(parents=True, exist_ok=True)
    for split, sl in (("train", slice(None)), ("val", slice(0, 32))):
        with h5py.File(root / "h5" / f"{split}.h5", "w") as f:
            f["data"], f["label"] = data[sl], label[sl]
        (root / "h5" / f"{split}.txt").write_text(f"h5/{split}.h5\n")

    recipe = DataRecipe(scale=SCALE, folder="h5", train_sets=("camera", "coffee"), val_set="camera",
                        val_images=1, patch_size=7, stride=4, flip=False, rot90=False, downscale=(),
                        multiple_of=1, seed=0)
    config = DataConfig(recipe=recipe, batch_size=16, val_batch_size=16, shuffle=True)
    (root / "prototxt").mkdir(exist_ok=True)
    (root / "prototxt" / f"{NAME}_train.prototxt").write_text(
        nets.net_text(nets.ddsr(SCALE, depth=2, num_filters=8, train_data=config, name=NAME)))
    (root / "prototxt" / f"{NAME}_deploy.prototxt").write_text(
        nets.net_text(nets.ddsr(SCALE, depth=2, num_filters=8, name=NAME)))
    (root / "solvers").mkdir(exist_ok=True)
    solver = root / "solvers" / f"{NAME}.prototxt"
    solver.write_text("\n".join([
        f'net: "prototxt/{NAME}_train.prototxt"', "test_iter: 2", "test_interval: 10",
        'type: "Adam"', f"base_lr: {base_lr}", "momentum: 0.9", "momentum2: 0.999",
        'lr_policy: "fixed"', "display: 5", f"max_iter: {max_iter}", f"snapshot: {snapshot}",
        f'snapshot_prefix: "snapshots/{NAME}"', "random_seed: 1", ""]))
    result = None
    if train:
        result = runner.train(f"solvers/{NAME}.prototxt", workdir=root, caffe=caffe_tool, progress=False)
    return {"root": root, "solver": solver, "deploy": root / "prototxt" / f"{NAME}_deploy.prototxt",
            "data_root": root / "data", "set": "TinySet", "result": result,
            "log": root / "runs" / NAME / "train.log"}
