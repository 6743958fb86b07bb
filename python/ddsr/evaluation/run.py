"""A whole evaluation: a method on test sets at several scales, image by image.

The metrics (the expensive part: IFC) may run in worker processes; everything else runs here
in order, so results do not depend on the number of workers.
"""

import time
from dataclasses import dataclass

from ..matlab import imread
from .metrics import METRIC_NAMES, check_metrics, measure
from .protocol import BicubicUpscaler, ImageError, list_set_images, prepare_image, to_uint8

__all__ = ["RECORD_FIELDS", "EvalResult", "evaluate"]


RECORD_FIELDS = ("set", "scale", "image", "psnr", "ssim", "ifc", "forward_ms", "h", "w")


@dataclass
class EvalResult:
    """What :func:`evaluate` found.

    Attributes
    ----------
    records : list of dict
        One per evaluated image and scale, keys :data:`RECORD_FIELDS` (metrics not computed are
        absent); ``h, w`` are the modcropped HR size.
    baseline : list of dict
        The same for the bicubic baseline (empty unless requested).
    errors : list of str
        Images that could not be evaluated, one message each.
    timings : dict
        Seconds spent per metric, and in ``"prepare"`` (reading, modcrop, LR).
    """

    records: list
    baseline: list
    errors: list
    timings: dict


def _measure_pair(hr_y, sr8, bicubic8, scale, metrics):
    """The metrics of an SR image and, optionally, of its bicubic baseline (a worker's task)."""
    timings = {}
    values = measure(hr_y, sr8, scale, metrics, timings)
    base = measure(hr_y, bicubic8, scale, metrics, timings) if bicubic8 is not None else None
    return values, base, timings


class _Done:
    """A finished computation with the interface of a ``concurrent.futures.Future``."""

    def __init__(self, fn, *args):
        try:
            self._value, self._exc = fn(*args), None
        except ValueError as exc:
            self._value, self._exc = None, exc

    def result(self):
        if self._exc is not None:
            raise self._exc
        return self._value


def evaluate(data_root, sets, scales, upscaler_for_scale, metrics=METRIC_NAMES, baseline=False,
             image_sink=None, progress=None, jobs=1):
    """Evaluate a method on test sets at several scales with the protocol.

    Parameters
    ----------
    data_root : path-like
        Folder holding the set folders.
    sets : sequence of str
    scales : sequence of int
    upscaler_for_scale : callable
        ``scale -> upscaler`` (an object with ``upscale(image) -> (sr float, ms)``), called once
        per scale just before that scale is evaluated, so one net is in memory at a time.
    metrics : sequence of str
    baseline : bool
        Also measure the bicubic baseline on the same prepared images (the LR and bicubic images
        are computed once per image and scale and shared).
    image_sink : callable, optional
        ``(set_name, scale, image, sr_uint8)``, called for each SR image (e.g. to save it).
    progress : tqdm-like, optional
        Its ``update(1)`` is called once per image and scale; ``set_description`` per set.
    jobs : int
        Processes computing the metrics (the most expensive part: IFC). With ``jobs > 1`` the
        images are still read, upscaled and forwarded in this process, in order; only
        :func:`measure` runs in worker processes. Results do not depend on ``jobs``.

    Returns
    -------
    EvalResult
        Records in set, image order within each scale, scales in the given order.

    Raises
    ------
    ValueError
        An unknown or empty set, or a bad scale (before anything is computed).
    NetOutputError
        A net's output has the wrong size.
    """
    scales = [int(s) for s in scales]
    if not scales or min(scales) < 1:
        raise ValueError(f"scales must be positive integers, got {scales}")
    if not sets:
        raise ValueError("no sets given")
    if int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    metrics = check_metrics(metrics)
    files = {name: list_set_images(data_root, name) for name in sets}
    bicubic = BicubicUpscaler()
    result = EvalResult([], [], [], {"prepare": 0.0})
    unreadable = {}
    pending = []

    def tick():
        if progress is not None:
            progress.update(1)

    def collect(keep):
        # Take finished measurements in submission order, leaving at most `keep` in flight.
        while len(pending) > keep:
            future, base, ms, bms, where = pending.pop(0)
            try:
                values, bvalues, timings = future.result()
            except ValueError as exc:  # e.g. too small for IFC's pyramid, or a flat image
                result.errors.append(f"{where}: {exc}")
                tick()
                continue
            for k, v in timings.items():
                result.timings[k] = result.timings.get(k, 0.0) + v
            result.records.append({**base, **values, "forward_ms": ms})
            if bvalues is not None:
                result.baseline.append({**base, **bvalues, "forward_ms": bms})
            tick()

    executor = None
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(max_workers=int(jobs))
    try:
        for scale in scales:
            upscaler = upscaler_for_scale(scale)
            for set_name in sets:
                if progress is not None:
                    progress.set_description(f"{set_name} x{scale}")
                for path in files[set_name]:
                    if path in unreadable:
                        tick()
                        continue
                    start = time.perf_counter()
                    try:
                        image = prepare_image(imread(path), scale, name=path.stem)
                    except OSError as exc:
                        unreadable[path] = str(exc)
                        result.errors.append(str(exc))
                        tick()
                        continue
                    except ImageError as exc:
                        result.errors.append(f"{path}: {exc}")
                        tick()
                        continue
                    result.timings["prepare"] += time.perf_counter() - start
                    base = {"set": set_name, "scale": scale, "image": path.stem,
                            "h": image.hr_y.shape[0], "w": image.hr_y.shape[1]}
                    sr, ms = upscaler.upscale(image)
                    sr8 = to_uint8(sr)
                    bic8, bms = None, None
                    if baseline:
                        bsr, bms = bicubic.upscale(image)
                        bic8 = to_uint8(bsr)
                    args = (image.hr_y, sr8, bic8, scale, metrics)
                    future = executor.submit(_measure_pair, *args) if executor else _Done(_measure_pair, *args)
                    pending.append((future, base, ms, bms, f"{path}: x{scale}"))
                    if image_sink is not None:
                        image_sink(set_name, scale, image, sr8)
                    collect(keep=2 * int(jobs))
            del upscaler
        collect(keep=0)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return result
