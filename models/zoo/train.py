"""Train the zoo's models reproducibly on the CPU.

    python -m models.zoo.train NAME [--out DIR]

NAME is breast-cancer, credit-risk, lesion-64 or all.

Each run writes the artifact, `background.npz` and `metrics.json` into the model's directory
(or `--out`), with fixed seeds, deterministic algorithms and two threads. The test metrics
are computed on the saved artifact, loaded back through `ModelHandle` exactly as the service
loads it. `model.toml` and `CARD.md` are written by hand and only read here.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn

from models.handle import BACKGROUND_FILE, ModelHandle
from models.spec import ModelSpec, parse_model_toml
from models.zoo import credit_data, lesion_data
from models.zoo.architectures import LesionCNN, MixedTabularMLP, StandardisedMLP

ZOO_DIR = Path(__file__).resolve().parent
METRICS_FILE = "metrics.json"
SEED = 0
# Small tabular models train on one thread: with two threads on a shared 2-core machine,
# waiting at thread barriers dominated (a 3 s run took 12 minutes under load).
THREADS = {"breast-cancer": 1, "credit-risk": 1, "lesion-64": 2}

# Normalisation of the lesion model (per-channel mean/std of its training images, rounded);
# must equal `[image].mean` / `[image].std` in lesion-64/model.toml.
LESION_MEAN = (0.763, 0.594, 0.484)
LESION_STD = (0.143, 0.131, 0.116)


@dataclass(frozen=True)
class Split:
    """A fixed train/test split: tabular rows (N, F) float32, or images (N, 64, 64, 3) uint8."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def breast_cancer_split() -> Split:
    """sklearn's Wisconsin data: stratified 75/25 split with random_state=0."""
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data.astype(np.float32),
        data.target.astype(np.int64),
        test_size=0.25,
        stratify=data.target,
        random_state=0,
    )
    return Split(x_train, y_train, x_test, y_test)


def credit_split() -> Split:
    """Synthetic applicants: training and test sets drawn with separate seeds."""
    train = credit_data.generate(credit_data.TRAIN_SIZE, credit_data.TRAIN_SEED)
    test = credit_data.generate(credit_data.TEST_SIZE, credit_data.TEST_SEED)
    return Split(train.x, train.y, test.x, test.y)


def lesion_split() -> Split:
    """Generated lesion images: training and test sets drawn with separate seeds."""
    train = lesion_data.generate(lesion_data.TRAIN_SIZE, lesion_data.TRAIN_SEED)
    test = lesion_data.generate(lesion_data.TEST_SIZE, lesion_data.TEST_SEED)
    return Split(train.images, train.labels, test.images, test.labels)


def images_to_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1], the service's input space."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0).contiguous()


SPLITS: dict[str, Callable[[], Split]] = {
    "breast-cancer": breast_cancer_split,
    "credit-risk": credit_split,
    "lesion-64": lesion_split,
}


def _predict(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """Class probabilities (N, classes) from logits, in chunks of 500."""
    with torch.no_grad():
        chunks = [torch.softmax(forward(x[i : i + 500]), dim=1) for i in range(0, len(x), 500)]
    return torch.cat(chunks).numpy()


def evaluate(
    name: str, forward: Callable[[torch.Tensor], torch.Tensor], split: Split | None = None
) -> dict[str, float]:
    """Test accuracy and ROC AUC (of class 1) of model `name`; `forward` takes input space."""
    split = split or SPLITS[name]()
    lesion = name == "lesion-64"
    x = images_to_input(split.x_test) if lesion else torch.from_numpy(split.x_test)
    probabilities = _predict(forward, x)
    return {
        "accuracy": round(float(accuracy_score(split.y_test, probabilities.argmax(1))), 4),
        "roc_auc": round(float(roc_auc_score(split.y_test, probabilities[:, 1])), 4),
    }


@contextmanager
def _reproducible(threads: int) -> Iterator[None]:
    """Seed every generator, use deterministic algorithms and `threads`; restore after."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def _fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> None:
    """Adam + cross-entropy over shuffled mini-batches (seeded), cosine learning-rate decay."""
    generator = torch.Generator().manual_seed(SEED)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            batch = x[index] if augment is None else augment(x[index], generator)
            optimiser.zero_grad()
            loss = loss_fn(model(batch), y[index])
            loss.backward()
            optimiser.step()
            schedule.step()
    model.eval()


def _background(x: np.ndarray, size: int) -> np.ndarray:
    """`size` rows drawn without replacement from the training split (seeded)."""
    rng = np.random.default_rng(SEED)
    return x[np.sort(rng.choice(len(x), size=size, replace=False))]


def _train_breast_cancer(out_dir: Path, split: Split) -> dict[str, Any]:
    x = torch.from_numpy(split.x_train)
    y = torch.from_numpy(split.y_train)
    model = StandardisedMLP(x.mean(0), x.std(0))
    epochs = 60  # chosen by 5-fold cross-validation on the training split
    _fit(model, x, y, epochs=epochs, batch_size=32, lr=1e-3)
    torch.jit.save(torch.jit.script(model), str(out_dir / "model.pt"))
    np.savez_compressed(out_dir / BACKGROUND_FILE, x=_background(split.x_train, 100))
    return {"epochs": epochs}


def _train_credit_risk(out_dir: Path, split: Split) -> dict[str, Any]:
    features = list(credit_data.FEATURES)
    numeric = [features.index(name) for name in credit_data.NUMERIC_FEATURES]
    log_columns = [features.index("income")]
    categorical = {
        features.index(name): len(categories)
        for name, categories in credit_data.CATEGORICAL_FEATURES.items()
    }
    x = torch.from_numpy(split.x_train)
    transformed = x[:, numeric].clone()
    transformed[:, 0] = torch.log(torch.clamp(transformed[:, 0], min=1.0))
    model = MixedTabularMLP(
        numeric, log_columns, transformed.mean(0), transformed.std(0), categorical
    )
    epochs = 30
    _fit(model, x, torch.from_numpy(split.y_train), epochs=epochs, batch_size=128, lr=3e-3)
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (x[:8],), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(out_dir / "model.pt2"))
    np.savez_compressed(out_dir / BACKGROUND_FILE, x=_background(split.x_train, 100))
    return {"epochs": epochs}


def _flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips per batch (the class is flip-invariant)."""
    flips = torch.randint(0, 2, (2,), generator=generator).tolist()
    dims = [dim for dim, flip in zip((2, 3), flips, strict=True) if flip]
    return torch.flip(batch, dims) if dims else batch


def _train_lesion(out_dir: Path, split: Split) -> dict[str, Any]:
    from safetensors.torch import save_file

    mean = torch.tensor(LESION_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(LESION_STD).reshape(1, 3, 1, 1)
    x = (images_to_input(split.x_train) - mean) / std
    model = LesionCNN()
    epochs = 8
    _fit(model, x, torch.from_numpy(split.y_train), epochs, batch_size=32, lr=3e-3, augment=_flip)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    np.savez_compressed(out_dir / BACKGROUND_FILE, x=_background(split.x_train, 32))
    return {"epochs": epochs}


TRAINERS: dict[str, Callable[[Path, Split], dict[str, Any]]] = {
    "breast-cancer": _train_breast_cancer,
    "credit-risk": _train_credit_risk,
    "lesion-64": _train_lesion,
}


def zoo_spec(name: str) -> ModelSpec:
    """The committed `model.toml` of zoo model `name`."""
    return parse_model_toml(ZOO_DIR / name / "model.toml")


def train(name: str, out_dir: Path | None = None) -> dict[str, Any]:
    """Train zoo model `name` into `out_dir` (default: its zoo directory); return the metrics."""
    out_dir = Path(out_dir) if out_dir is not None else ZOO_DIR / name
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = zoo_spec(name)
    with _reproducible(THREADS[name]):
        started = time.perf_counter()
        split = SPLITS[name]()
        details = TRAINERS[name](out_dir, split)
        seconds = time.perf_counter() - started
    handle = ModelHandle(out_dir, spec).load("cpu")
    metrics: dict[str, Any] = {
        "model": name,
        "test": evaluate(name, handle.forward, split),
        "n_train": len(split.y_train),
        "n_test": len(split.y_test),
        **details,
        "train_seconds": round(seconds, 1),
        "threads": THREADS[name],
        "weights_bytes": (out_dir / spec.artifact).stat().st_size,
        "torch": torch.__version__,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> None:
    """Command line: train one model (or all) and print its metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*TRAINERS, "all"])
    parser.add_argument("--out", type=Path, default=None, help="output directory (one model)")
    args = parser.parse_args(argv)
    if args.name == "all" and args.out is not None:
        parser.error("--out needs a single model name")
    for name in TRAINERS if args.name == "all" else [args.name]:
        print(json.dumps(train(name, args.out), indent=2))


if __name__ == "__main__":
    main()
