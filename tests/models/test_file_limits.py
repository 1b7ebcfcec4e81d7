"""Size limits on a model's files: `model.toml` at most 1 MiB, the artifact and
`background.npz` at most 2 GiB, checked from the file's size before it is read. A model over
a limit is refused with the file and the limit named; the other models still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models.spec
from models import ModelRepository
from tests.helpers import LogisticModel, binary_tabular_spec, to_toml, write_torchscript_model
from tests.models.test_loading import _exported_program

FEATURES = ["a", "b", "c", "d", "e", "f"]
WEIGHTS = [1.0, -2.0, 0.5, 0.0, 3.0, -1.0]
X = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
MIB, GIB = 1 << 20, 1 << 30


def spec(name: str, **extra: object) -> dict[str, object]:
    return {"version": "1", **binary_tabular_spec(name, FEATURES, **extra)}


def repository_with_good_and(tmp_path: Path) -> Path:
    """A repository holding the model "good" and a loadable model "bad" to spoil."""
    for name in ("good", "bad"):
        write_torchscript_model(tmp_path / name, LogisticModel(WEIGHTS, 0.5), spec(name))
    return tmp_path


def sparse(path: Path, size: int) -> None:
    """A file of `size` zero bytes that takes no disk space (nothing in it is read)."""
    with path.open("wb") as file:
        file.truncate(size)


def assert_only_bad_refused(root: Path, file: str, limit: str) -> str:
    repository = ModelRepository(root).load()
    assert repository.names() == ["good"]
    torch.testing.assert_close(
        repository.get("good").forward(X), LogisticModel(WEIGHTS, 0.5)(X).detach()
    )
    message = repository.errors["bad"]
    assert file in message and f"over the limit of {limit}" in message
    return message


def test_a_model_toml_over_1_mib_is_refused(tmp_path: Path) -> None:
    root = repository_with_good_and(tmp_path)
    text = to_toml({**spec("bad"), "format": "torchscript", "artifact": "model.pt"})
    padding = "# " + "x" * 100 + "\n"
    text += padding * (MIB // len(padding) + 1)  # a valid TOML file, just too large
    (root / "bad" / "model.toml").write_text(text)
    message = assert_only_bad_refused(root, "model.toml", "1 MiB")
    assert message.startswith(f"{root / 'bad' / 'model.toml'}: key '<file>': model.toml is ")


def test_a_model_toml_of_1_mib_loads(tmp_path: Path) -> None:
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), spec("m"))
    path = tmp_path / "m" / "model.toml"
    text = path.read_text() + "#"
    path.write_text(text + "x" * (MIB - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MIB
    assert ModelRepository(tmp_path).load().names() == ["m"]


@pytest.mark.parametrize(
    ("fmt", "artifact"),
    [("torchscript", "model.pt"), ("safetensors", "model.safetensors")],
)
def test_an_artifact_over_2_gib_is_refused_before_it_is_read(
    tmp_path: Path, fmt: str, artifact: str
) -> None:
    root = repository_with_good_and(tmp_path)
    extra = {"factory": "tests.helpers:logistic_factory"} if fmt == "safetensors" else {}
    bad = {**spec("bad", **extra), "format": fmt, "artifact": artifact}
    (root / "bad" / "model.toml").write_text(to_toml(bad))
    sparse(root / "bad" / artifact, 2 * GIB + 1)
    message = assert_only_bad_refused(root, artifact, "2 GiB")
    assert f"key 'artifact': {artifact} is {2 * GIB + 1} bytes" in message


def test_a_background_over_2_gib_is_refused_before_it_is_read(tmp_path: Path) -> None:
    root = repository_with_good_and(tmp_path)
    sparse(root / "bad" / "background.npz", 2 * GIB + 1)
    message = assert_only_bad_refused(root, "background.npz", "2 GiB")
    assert "key 'x': background.npz is" in message


def test_an_export_archive_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`torch.export` archives are read into memory whole, to be checked: the size is
    checked first (here against a lowered limit, the archive being small)."""
    root = repository_with_good_and(tmp_path)
    _exported_program(root / "bad" / "model.pt2", dynamic=True)
    bad = {**spec("bad"), "format": "export", "artifact": "model.pt2"}
    (root / "bad" / "model.toml").write_text(to_toml(bad))
    size = (root / "bad" / "model.pt2").stat().st_size
    assert size > 4096
    monkeypatch.setattr(models.spec, "MAX_ARTIFACT_BYTES", 4096)
    assert_only_bad_refused(root, "model.pt2", "4 KiB")
    monkeypatch.setattr(models.spec, "MAX_ARTIFACT_BYTES", size)  # at the limit: loads
    assert ModelRepository(root).load().names() == ["bad", "good"]
