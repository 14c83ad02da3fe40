"""``mpigd bench kernel``: each model's fused loss-and-gradient kernel, against a streaming read of the
same bytes and against NumPy/BLAS (dense) or scipy.sparse (CSR) doing the same work.

The fused kernel is called through the model object (``make_model(...).loss_grad``), as training
calls it. Throughput is bytes of data read per second: ``X`` and ``y`` for dense rows; ``indptr``,
``indices``, ``data`` and ``y`` for CSR rows. The streaming read (``stream_sum`` over exactly those
arrays) is what memory bandwidth allows one core, so ``fraction_of_stream`` is the kernel's share of
it; ``speedup_vs_numpy`` is the baseline's median time over the kernel's. Before timing, each
baseline's loss and gradient are compared with the kernel's (``loss_rel_err``, ``grad_rel_err``).
The MLP reads dense rows only, so it has no CSR case (its record says so).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mpigd import kernels
from mpigd.bench import baselines
from mpigd.bench.timing import measure
from mpigd.checks import check_choices, check_fits_memory
from mpigd.config import DTYPES
from mpigd.errors import UsageError
from mpigd.data.synthetic_models import generate_sparse
from mpigd.models import make_model, memory_bytes

MODELS = ("linear", "logistic", "softmax", "mlp")
LAYOUTS = ("dense", "sparse")
LOSS_NAME = {"linear": "squared", "logistic": "logistic", "softmax": "softmax", "mlp": "mlp"}
DENSE_ONLY = {"mlp": "the mlp model reads dense rows only (no CSR kernel)"}
CSV_FIELDS = ("model", "layout", "variant", "baseline", "dtype", "rows", "features", "classes", "hidden", "density",
              "nnz", "bytes", "repeats", "median_s", "min_s", "max_s", "gb_per_s", "fraction_of_stream",
              "speedup_vs_numpy", "loss_rel_err", "grad_rel_err", "skipped")


@dataclass(frozen=True)
class Data:
    """One layout's rows: ``X`` as the model reads it, ``X`` as the baseline reads it, and the arrays
    the streaming read covers (everything but ``y``)."""

    layout: str
    X: Any
    baseline_X: Any
    arrays: tuple[np.ndarray, ...]
    nnz: int | None

    @property
    def baseline(self) -> str:
        return "numpy" if self.layout == "dense" else "scipy"


def make_data(layout: str, rows: int, features: int, density: float, dtype: str, seed: int) -> Data:
    """Standard-normal dense rows, or CSR rows with about ``density * features`` non-zeros each
    (int64 ``indptr`` and ``indices``, as mpigd's readers produce them)."""
    if layout == "dense":
        X = np.random.default_rng(seed).standard_normal((rows, features)).astype(dtype)
        return Data("dense", X, X, (X,), None)
    import scipy.sparse

    X, _ = generate_sparse("classification", features, 2, density, seed, 0, rows, dtype)
    # SciPy picks its own index dtype (int32 where the values fit): it is given what a user would give it.
    S = scipy.sparse.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape)
    return Data("sparse", X, S, (X.indptr, X.indices, X.data), X.nnz)


def data_bytes(layout: str, rows: int, features: int, density: float, dtype: str) -> int:
    """About the memory :func:`make_data` takes at its peak: dense rows are drawn in float64, then
    converted to ``dtype``; CSR rows hold a value and an int64 index per non-zero, and SciPy's copy."""
    itemsize = np.dtype(dtype).itemsize
    if layout == "dense":
        return rows * features * (8 + itemsize)
    return int(2 * rows * features * density * (itemsize + 8)) + 16 * (rows + 1)


def labels(model, rows: int, dtype: str, seed: int) -> np.ndarray:
    """Targets the model accepts: real values (linear), 0/1, or class numbers, in ``dtype``."""
    rng = np.random.default_rng(seed + 1)
    if model.name == "linear":
        return rng.standard_normal(rows).astype(dtype)
    return rng.integers(0, getattr(model, "n_classes", 2), rows).astype(dtype)


def start_params(model, dtype: str, seed: int) -> np.ndarray:
    """Parameters away from zero, so that no branch of the loss is trivially cheap."""
    if model.name == "mlp":
        return model.init_params(np.dtype(dtype), seed)
    rng = np.random.default_rng(seed + 2)
    return (rng.standard_normal(model.n_params) / np.sqrt(model.n_features)).astype(dtype)


def _rel_err(got, expected) -> float:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(got - expected)) / max(1.0, float(np.max(np.abs(expected)))))


def _record(variant: str, timing, nbytes: int, **fields) -> dict[str, Any]:
    return {"variant": variant, **fields, "bytes": nbytes, **timing.as_dict(),
            "gb_per_s": nbytes / timing.median / 1e9}


def check_arguments(rows: int, features: int, dtypes: Sequence[str], repeats: int, models: Sequence[str],
                    layouts: Sequence[str], classes: int, hidden: Sequence[int], density: float) -> None:
    """Refuse, in one line (:class:`~mpigd.errors.UsageError`), what ``mpigd bench kernel`` refuses:
    values out of range, unknown names, and rows whose largest layout in any of ``dtypes``, alone or
    with a model's buffers, cannot fit this node's memory (one layout in one dtype is held at a time).
    :func:`run` calls it; the command calls it first with every dtype it will run, so that nothing runs before a refusal."""
    check_choices("--models", models, MODELS)
    check_choices("--layout", layouts, LAYOUTS)
    check_choices("--dtype", dtypes, DTYPES)
    if rows < 1 or features < 1 or repeats < 1 or classes < 2 or not 0 < density <= 1:
        raise UsageError("bench kernel needs --rows, --features, --repeats >= 1, --classes >= 2, 0 < --density <= 1")
    if not hidden or min(hidden) < 1:
        raise UsageError(f"bench kernel needs --hidden widths >= 1 such as 64,32; got {hidden!r}")
    held = max(data_bytes(layout, rows, features, density, dtype) for layout in layouts for dtype in dtypes)
    check_fits_memory(held, f"{rows:,} rows x {features:,} features")
    for name in models:  # one model at a time beside the rows, in float64 at most
        model = make_model(name, features, classes, tuple(hidden))
        check_fits_memory(held + memory_bytes(model, 8, training=False),
                          f"{rows:,} rows x {features:,} features and a {name} model of {model.n_params:,} parameters")


def run(rows: int, features: int, dtype: str, repeats: int, seed: int = 0, models: Sequence[str] = ("linear",
        "logistic"), layouts: Sequence[str] = ("dense",), classes: int = 10, hidden: Sequence[int] = (64,),
        density: float = 0.01) -> list[dict[str, Any]]:
    """Records of one dtype: per layout a ``stream read``, then per model ``fused <loss>`` and
    ``numpy|scipy <loss>`` with median seconds, GB/s and ratios (or a record with ``skipped``).

    ``mpigd bench kernel`` for one ``--dtype``; print the records with :func:`table`, write them
    with :func:`write_csv`. One process, not collective. Arguments the command refuses raise
    :class:`~mpigd.errors.UsageError` (:func:`check_arguments`).
    """
    check_arguments(rows, features, (dtype,), repeats, models, layouts, classes, hidden, density)
    results = []
    for layout in layouts:
        data = make_data(layout, rows, features, density, dtype, seed)
        y_size = np.dtype(dtype).itemsize * rows
        nbytes = sum(a.nbytes for a in data.arrays) + y_size
        common = {"layout": layout, "rows": rows, "features": features, "dtype": dtype,
                  "density": density if layout == "sparse" else None, "nnz": data.nnz}
        y_any = np.zeros(rows, dtype=dtype)
        stream = _record("stream read", measure(lambda: [kernels.stream_sum(a) for a in (*data.arrays, y_any)],
                                                repeats=repeats), nbytes, model="-", baseline=None, **common)
        results.append(stream)
        for name in models:
            if layout == "sparse" and name in DENSE_ONLY:
                results.append({"variant": f"fused {LOSS_NAME[name]}", "model": name, **common,
                                "skipped": DENSE_ONLY[name]})
                continue
            model = make_model(name, features, classes, tuple(hidden))
            y = labels(model, rows, dtype, seed)
            params = start_params(model, dtype, seed)
            grad = np.empty_like(params)
            twin = baselines.for_model(model)
            loss = model.loss_grad(data.X, y, params, grad)
            base_loss, base_grad = twin(data.baseline_X, y, params)
            shape = {"model": name, "classes": getattr(model, "n_classes", None) if name in ("softmax", "mlp")
                     else None, "hidden": list(model.hidden) if name == "mlp" else None, **common}
            checks = {"loss_rel_err": abs(loss - base_loss) / max(1.0, abs(base_loss)),
                      "grad_rel_err": _rel_err(grad, base_grad)}
            fused = _record(f"fused {LOSS_NAME[name]}",
                            measure(lambda: model.loss_grad(data.X, y, params, grad), repeats=repeats),
                            nbytes, baseline=None, **shape, **checks)
            base = _record(f"{data.baseline} {LOSS_NAME[name]}",
                           measure(lambda: twin(data.baseline_X, y, params), repeats=repeats),
                           nbytes, baseline=data.baseline, **shape)
            fused["speedup_vs_numpy"] = base["median_s"] / fused["median_s"]
            results += [fused, base]
        for r in results:
            if r["layout"] == layout and "median_s" in r:
                r["fraction_of_stream"] = stream["median_s"] / r["median_s"]
    return results


def table(results: list[dict[str, Any]]) -> str:
    """The records as a fixed-width table (``vs numpy``: the baseline's time over the fused kernel's;
    the baseline is NumPy/BLAS for dense rows and scipy.sparse for CSR rows)."""
    lines = [f"{'model':<9} {'layout':<7} {'variant':<16} {'dtype':<8} {'median ms':>10} {'min-max ms':>17} "
             f"{'GB/s':>7} {'of stream':>9} {'vs numpy':>9}"]
    for r in results:
        if "skipped" in r:
            lines.append(f"{r['model']:<9} {r['layout']:<7} {'(skipped)':<16} {r['dtype']:<8} {r['skipped']}")
            continue
        speedup = f"{r['speedup_vs_numpy']:.2f}x" if "speedup_vs_numpy" in r else "-"
        spread = f"{r['min_s'] * 1e3:.2f}-{r['max_s'] * 1e3:.2f}"
        lines.append(f"{r['model']:<9} {r['layout']:<7} {r['variant']:<16} {r['dtype']:<8} "
                     f"{r['median_s'] * 1e3:>10.2f} {spread:>17} {r['gb_per_s']:>7.2f} "
                     f"{r['fraction_of_stream']:>9.2f} {speedup:>9}")
    return "\n".join(lines)


def write_csv(path: str, results: list[dict[str, Any]]) -> None:
    """One row per record, the columns of :data:`CSV_FIELDS` (empty where a record has no such field)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow({k: ("" if r.get(k) is None else
                                 ",".join(map(str, r[k])) if isinstance(r.get(k), list) else r[k])
                             for k in CSV_FIELDS})

