"""Bundle benchmark: all five methods on one input, three ways, in one process.

For each zoo model and a ResNet-18-sized CNN at 224x224 (random weights):
(a) naive: captum, shap and lime called directly with their documented defaults
    (IG n_steps=50 in one batch; KernelExplainer with nsamples="auto" for tabular and
    shap's Partition explainer with its default batch for images; lime's defaults:
    5000 samples tabular, 1000 samples in batches of 10 with quickshift for images; the
    tree fit on a second, separately evaluated lime neighbourhood);
(b) ours: `explainer.explain` with tuned chunk sizes (cache off);
(c) the floor: the same number of forward and forward+backward rows as (b), at the best
    chunk sizes (tuned apart, without and with gradients), with no explanation code,
    through the same model calls as (b) (image models' rows without gradients through the
    engine's frozen copy); the floor of the model as loaded is printed beside it.
Naive and ours are both timed warm (one untimed run first: shap compiles its numba code
for each input dtype on first use). Each repeat runs ours, naive and the two floors back to
back, so that all four see the machine in the same state (on a shared virtual machine its
speed drifts by tens of percent over minutes); each figure is the median of `--repeats`
(7: on this shared machine, medians of 5 still moved by 0.2 between runs; the ResNet-18
is timed once per 7 repeats).
Prints per-method and whole-bundle times and the ratios; the last line is
`bundle speedup vs naive: tabular <x>x, image <y>x; image ours/floor <z>x`
(tabular: the smallest speedup over the tabular zoo models; image: the zoo image model).

    python -m benchmarks.bundle [--repeats 7] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shap
import torch
from captum.attr import IntegratedGradients, Saliency
from lime.lime_image import LimeImageExplainer
from lime.lime_tabular import LimeTabularExplainer
from sklearn.tree import DecisionTreeRegressor

from benchmarks.resnet import resnet18
from explainer import METHODS, Engine, explain
from explainer.methods.captum_speedups import gauss_legendre_as_shipped
from explainer.methods.shap_values import default_blur_kernel
from models import ModelHandle, ModelRepository
from models.repository import ZOO_DIR


@dataclass
class Figures:
    """Seconds per method for one way of computing the bundle."""

    methods: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.methods.values())


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def score_function(
    handle: ModelHandle, target: int, channels_last: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """The naive model function: the whole array in one forward call."""

    def score(rows: np.ndarray) -> np.ndarray:
        if channels_last:
            rows = rows.transpose(0, 3, 1, 2)
        with torch.no_grad():
            outputs = handle.forward(torch.from_numpy(np.asarray(rows, dtype=np.float32)))
        return outputs[:, target].numpy().astype(np.float64)

    return score


def naive(handle: ModelHandle, x: torch.Tensor, target: int) -> Figures:
    """Seconds per method of one naive run (captum as shipped: numpy's nodes every call)."""
    run = naive_image if handle.is_image else naive_tabular
    with gauss_legendre_as_shipped():
        return run(handle, x, target)


def median_figures(runs: list[Figures]) -> Figures:
    return Figures({name: statistics.median(r.methods[name] for r in runs) for name in METHODS})


def naive_tabular(handle: ModelHandle, x: torch.Tensor, target: int) -> Figures:
    assert handle.background is not None
    background = handle.background.numpy()
    row = x[0].numpy().astype(np.float64)
    score = score_function(handle, target)
    figures = Figures()
    figures.methods["saliency"] = timed(
        lambda: Saliency(handle.forward).attribute(x.clone(), target=target)
    )
    figures.methods["integrated_gradients"] = timed(
        lambda: IntegratedGradients(handle.forward).attribute(x.clone(), target=target)
    )
    figures.methods["shap"] = timed(
        lambda: shap.KernelExplainer(score, background).shap_values(row[None], silent=True)
    )

    def lime_once() -> tuple[np.ndarray, np.ndarray]:
        recorded: dict[str, np.ndarray] = {}

        def recording(rows: np.ndarray) -> np.ndarray:
            recorded["x"], recorded["y"] = rows, score(rows)
            return recorded["y"]

        LimeTabularExplainer(background, mode="regression").explain_instance(
            row, recording, num_features=len(row)
        )
        return recorded["x"], recorded["y"]

    figures.methods["lime"] = timed(lime_once)

    def tree() -> None:
        samples, scores = lime_once()
        DecisionTreeRegressor(max_depth=3).fit(samples, scores)

    figures.methods["tree"] = timed(tree)
    return figures


def naive_image(handle: ModelHandle, x: torch.Tensor, target: int) -> Figures:
    image = x[0].numpy().transpose(1, 2, 0).astype(np.float64)
    score = score_function(handle, target, channels_last=True)
    figures = Figures()
    figures.methods["saliency"] = timed(
        lambda: Saliency(handle.forward).attribute(x.clone(), target=target)
    )
    figures.methods["integrated_gradients"] = timed(
        lambda: IntegratedGradients(handle.forward).attribute(x.clone(), target=target)
    )
    kernel = default_blur_kernel(image.shape[0], image.shape[1])  # the same masker as ours
    masker = shap.maskers.Image(f"blur({kernel},{kernel})", image.shape)
    figures.methods["shap"] = timed(
        lambda: shap.Explainer(score, masker, algorithm="partition")(
            image[None], max_evals=500, silent=True
        )
    )

    def classify(batch: np.ndarray) -> np.ndarray:
        return score(batch)[:, None]

    def lime_once() -> None:
        LimeImageExplainer().explain_instance(
            image, classify, labels=(0,), top_labels=None, hide_color=None, random_seed=0
        )

    figures.methods["lime"] = timed(lime_once)
    figures.methods["tree"] = timed(lime_once)  # a second, separately evaluated neighbourhood
    return figures


def ours(handle: ModelHandle, x: torch.Tensor, engine: Engine) -> tuple[Figures, int, int]:
    """Seconds per method of one run, and the rows it evaluates."""
    before_inference, before_grad = engine.rows_inference, engine.rows_with_grad
    result = explain(handle, x, METHODS, engine=engine)[0]
    rows_inference = engine.rows_inference - before_inference
    rows_grad = engine.rows_with_grad - before_grad
    figures = Figures({n: e.timing_ms / 1000 for n, e in result.methods.items()})
    return figures, rows_inference, rows_grad


def floor(
    handle: ModelHandle,
    engine: Engine,
    rows_inference: int,
    rows_grad: int,
    target: int,
    as_loaded: bool = False,
) -> float:
    """Seconds for the same rows at the tuned chunks: inference, then forward+backward.

    The backward pass computes gradients for the input only, as the explanation methods
    need (captum calls `torch.autograd.grad`), not for the model's weights.

    Through the engine's model calls (its frozen copy for inference), or with `as_loaded`
    the model itself.
    """
    chunk, grad_chunk = engine.chunk_for(handle), engine.chunk_for(handle, gradients=True)
    batch = torch.rand((max(chunk, grad_chunk), *handle.input_shape), device=engine.device)
    copy = None if as_loaded else engine.inference_module(handle)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, rows_inference, chunk):
            handle.forward(batch[: min(chunk, rows_inference - start)], module=copy)
    for start in range(0, rows_grad, grad_chunk):
        part = batch[: min(grad_chunk, rows_grad - start)].clone().requires_grad_(True)
        torch.autograd.grad(handle.forward(part)[:, target].sum(), part)  # as captum does
    return time.perf_counter() - started


def resnet_handle(directory: Path) -> ModelHandle:
    """Script the benchmark ResNet-18 into a one-model repository and load it."""
    model_dir = directory / "resnet18-224"
    model_dir.mkdir()
    torch.jit.save(torch.jit.script(resnet18()), str(model_dir / "model.pt"))
    (model_dir / "model.toml").write_text(
        'name = "resnet18-224"\nversion = "0"\nmodality = "image"\nformat = "torchscript"\n'
        'artifact = "model.pt"\nclasses = ["c0","c1","c2","c3","c4","c5","c6","c7","c8","c9"]\n'
        'output = "logits"\n\n[image]\nheight = 224\nwidth = 224\nchannels = 3\n'
        "mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n"
    )
    return ModelRepository(directory).load().get("resnet18-224")


def example_input(handle: ModelHandle) -> torch.Tensor:
    """The model's example row, its first background image, or a seeded random image."""
    if handle.spec.example is not None:
        return handle.decode([handle.spec.example])
    if handle.background is not None:
        return handle.background[:1].clone()
    return torch.rand((1, *handle.input_shape), generator=torch.Generator().manual_seed(0))


def run_model(handle: ModelHandle, repeats: int) -> dict[str, float]:
    x = example_input(handle)
    engine = Engine("cpu", cache_entries=0)
    engine.tune(handle)
    target = int(handle.forward(x).argmax(dim=1)[0])
    explain(handle, x, METHODS, engine=engine)  # warm-up (shap compiles on first use)
    naive(handle, x, target)
    mine_runs: list[Figures] = []
    direct_runs: list[Figures] = []
    floors: list[float] = []
    loaded_floors: list[float] = []
    for _ in range(repeats):
        figures, rows_inference, rows_grad = ours(handle, x, engine)
        mine_runs.append(figures)
        direct_runs.append(naive(handle, x, target))
        floors.append(floor(handle, engine, rows_inference, rows_grad, target))
        loaded_floors.append(floor(handle, engine, rows_inference, rows_grad, target, True))
    mine, direct = median_figures(mine_runs), median_figures(direct_runs)
    compute_floor, loaded_floor = statistics.median(floors), statistics.median(loaded_floors)
    print(
        f"\n{handle.name} (chunk {engine.chunk_for(handle)}, "
        f"{engine.chunk_for(handle, gradients=True)} with gradients; rows: {rows_inference} "
        f"forward + {rows_grad} forward/backward)"
    )
    print(f"  {'method':<22}{'naive s':>10}{'ours s':>10}{'naive/ours':>12}")
    for name in METHODS:
        a, b = direct.methods[name], mine.methods[name]
        print(f"  {name:<22}{a:>10.3f}{b:>10.3f}{a / b:>11.1f}x")
    speedup = direct.total / mine.total
    print(f"  {'bundle':<22}{direct.total:>10.3f}{mine.total:>10.3f}{speedup:>11.1f}x")
    copy = "frozen copy" if engine.inference_module(handle) is not None else "no copy"
    print(
        f"  floor {compute_floor:.3f} s ({copy}); ours/floor {mine.total / compute_floor:.2f}x; "
        f"floor of the model as loaded {loaded_floor:.3f} s"
    )
    paired = sorted(m.total / f for m, f in zip(mine_runs, floors, strict=True))
    print(f"  ours/floor per repeat (run back to back): {paired[0]:.2f}x to {paired[-1]:.2f}x")
    return {"speedup": speedup, "floor_ratio": mine.total / compute_floor}


def rows_and_cache(handle: ModelHandle, repeats: int) -> dict[str, float]:
    """16 rows in one request versus one row (cache off); a repeated request (cache on)."""
    assert handle.background is not None
    rows = handle.background[:16].clone()
    engine = Engine("cpu", cache_entries=0)
    engine.tune(handle)
    explain(handle, rows, METHODS, engine=engine)  # warm-up
    ones, sixteens = [], []
    for _ in range(repeats):  # back to back, as in run_model
        ones.append(timed(lambda: explain(handle, rows[:1], METHODS, engine=engine)))
        sixteens.append(timed(lambda: explain(handle, rows, METHODS, engine=engine)))
    one, sixteen = statistics.median(ones), statistics.median(sixteens)
    cached_engine = Engine("cpu")
    cached_engine.chunk_sizes = dict(engine.chunk_sizes)
    first = timed(lambda: explain(handle, rows[:1], METHODS, seed=1, engine=cached_engine))
    again = statistics.median(
        timed(lambda: explain(handle, rows[:1], METHODS, seed=1, engine=cached_engine))
        for _ in range(repeats)
    )
    print(
        f"\n{handle.name}: 1 row {one:.3f} s, 16 rows {sixteen:.3f} s "
        f"({sixteen / one:.1f}x one row); first request {first:.3f} s, "
        f"repeated (cache) {again * 1000:.2f} ms ({first / again:.0f}x faster)"
    )
    return {"rows16": sixteen / one, "cache": first / again}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device cpu")
    repository = ModelRepository(ZOO_DIR).load()
    figures = {name: run_model(handle, args.repeats) for name, handle in repository.handles.items()}
    for handle in repository.handles.values():
        if not handle.is_image:
            rows_and_cache(handle, args.repeats)
    if not args.skip_resnet:
        with tempfile.TemporaryDirectory() as directory:
            run_model(resnet_handle(Path(directory)), max(1, args.repeats // 7))
    tabular = min(f["speedup"] for n, f in figures.items() if not repository.get(n).is_image)
    image_name = next(n for n in figures if repository.get(n).is_image)
    image = figures[image_name]
    print(
        f"bundle speedup vs naive: tabular {tabular:.1f}x, image {image['speedup']:.1f}x; "
        f"image ours/floor {image['floor_ratio']:.2f}x"
    )


if __name__ == "__main__":
    main()
