"""How well the lesion model's explanations point at the ground-truth lesion.

    python -m models.zoo.localisation [--n 100] [--out PATH]

For the first `n` images of the lesion test split, every method explains the predicted
class with the service's default options (and the model's `default_baseline`). Per method:

* `mass_inside`: the fraction of positive attribution mass inside the lesion mask,
  sum(max(a, 0) * mask) / sum(max(a, 0)), averaged over images (0 when a map has no
  positive mass);
* `mass_near`: the same with the mask dilated by NEAR_PX pixels, a diagnostic: how much
  of the mass falls just outside the lesion's edge (smoothing, superpixels or blocks that
  straddle the edge) rather than elsewhere on the skin;
* `pointing_game`: the hit rate of the map's maximum. A hit when the maximum lies inside
  the mask; when the maximum is attained on a whole region (superpixel maps of LIME and the
  tree), a hit when most of that region lies inside the mask.

`chance_mass_inside` is the mean mask area fraction: what a map with uniform positive mass
would score. Integrated gradients is also reported for each baseline, and every method
again for the first SUBSET images alone (the images the regression test recomputes). The
table is printed and written to `models/zoo/lesion-64/localisation.json`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import binary_dilation

from explainer import METHODS, Engine, ExplainOptions, explain
from models.handle import ModelHandle
from models.repository import ZOO_DIR, ModelRepository
from models.zoo import lesion_data
from models.zoo.train import images_to_input

IMAGE_MODEL = "lesion-64"
LOCALISATION_FILE = "localisation.json"
BASELINES = ("zeros", "mean", "blur", "uniform")
CHUNK = 25
NEAR_PX = 2
# The first SUBSET test images are also scored on their own: `tests/models/test_localisation.py`
# recomputes exactly these and compares them with the committed figures.
SUBSET = 16


def mass_inside(attributions: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the map's positive mass inside `mask` (0 when there is none)."""
    positive = np.clip(attributions, 0.0, None)
    total = float(positive.sum())
    return float(positive[mask].sum()) / total if total > 0 else 0.0


def pointing_hit(attributions: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's maximum (most of its pixels, if attained on a region) is in `mask`."""
    at_max = attributions == attributions.max()
    return bool(mask[at_max].mean() > 0.5)


def localisation(
    handle: ModelHandle,
    data: lesion_data.LesionData,
    methods: Sequence[str] = METHODS,
    options: ExplainOptions | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Mean `mass_inside` and `pointing_game` per method over the images of `data`."""
    engine = Engine(device=handle.device, cache_entries=0)
    masses: dict[str, list[float]] = {name: [] for name in methods}
    near: dict[str, list[float]] = {name: [] for name in methods}
    hits: dict[str, list[bool]] = {name: [] for name in methods}
    for start in range(0, len(data.labels), CHUNK):
        inputs = images_to_input(data.images[start : start + CHUNK]).to(handle.device)
        results = explain(handle, inputs, methods, "predicted", options, seed, engine)
        for result, mask in zip(results, data.masks[start : start + CHUNK], strict=True):
            dilated = binary_dilation(mask, iterations=NEAR_PX)
            for name in methods:
                attributions = np.asarray(result.methods[name].attributions, dtype=np.float64)
                masses[name].append(mass_inside(attributions, mask))
                near[name].append(mass_inside(attributions, dilated))
                hits[name].append(pointing_hit(attributions, mask))
    return {
        name: {
            "mass_inside": round(float(np.mean(masses[name])), 4),
            "mass_near": round(float(np.mean(near[name])), 4),
            "pointing_game": round(float(np.mean(hits[name])), 4),
        }
        for name in methods
    }


def lesion_test_images(n: int) -> lesion_data.LesionData:
    """The first `n` images of the lesion test split (the split is drawn whole, then cut)."""
    data = lesion_data.generate(lesion_data.TEST_SIZE, lesion_data.TEST_SEED)
    return lesion_data.LesionData(data.images[:n], data.labels[:n], data.masks[:n])


def load_handle() -> ModelHandle:
    """The committed lesion model, loaded through the repository on the CPU."""
    repository = ModelRepository(ZOO_DIR).load("cpu")
    return repository.get(IMAGE_MODEL)


def report(n: int, seed: int = 0) -> dict[str, Any]:
    """All figures for the first `n` test images: default options, then IG per baseline."""
    handle = load_handle()
    data = lesion_test_images(n)
    by_baseline = {
        baseline: localisation(
            handle,
            data,
            ["integrated_gradients"],
            ExplainOptions.model_validate({"integrated_gradients": {"baseline": baseline}}),
            seed,
        )["integrated_gradients"]
        for baseline in BASELINES
    }
    return {
        "model": IMAGE_MODEL,
        "n_images": n,
        "seed": seed,
        "options": "service defaults",
        "default_baseline": handle.spec.default_baseline,
        "chance_mass_inside": round(float(data.masks.mean()), 4),
        "methods": localisation(handle, data, METHODS, None, seed),
        "integrated_gradients_by_baseline": by_baseline,
        "subset": {
            "n_images": min(SUBSET, n),
            "methods": localisation(
                handle, lesion_test_images(min(SUBSET, n)), METHODS, None, seed
            ),
        },
    }


def format_table(figures: dict[str, Any]) -> str:
    """A plain-text table of a `report()`."""
    lines = [
        f"{figures['model']}: {figures['n_images']} test images, seed {figures['seed']}, "
        f"IG baseline {figures['default_baseline']!r}",
        f"{'method':<32}{'mass inside':>12}{'mass near':>10}{'pointing':>10}",
    ]
    rows = list(figures["methods"].items())
    rows += [
        (f"integrated_gradients ({b})", v)
        for b, v in figures["integrated_gradients_by_baseline"].items()
    ]
    for name, values in rows:
        lines.append(
            f"{name:<32}{values['mass_inside']:>12.3f}{values['mass_near']:>10.3f}"
            f"{values['pointing_game']:>10.3f}"
        )
    lines.append(f"{'chance (mask area)':<32}{figures['chance_mass_inside']:>12.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: compute, print and save the localisation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of test images")
    parser.add_argument("--out", type=Path, default=ZOO_DIR / IMAGE_MODEL / LOCALISATION_FILE)
    args = parser.parse_args(argv)
    figures = report(args.n)
    print(format_table(figures))
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
