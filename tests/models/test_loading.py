"""Loading: three artifact formats, pickles refused unexecuted, bad model.toml named."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from models import ModelRepository, NotFound
from models.errors import ModelNotReady
from models.repository import ZOO_DIR
from tests.helpers import LogisticModel, to_toml, write_torchscript_model

SPEC = {
    "name": "m",
    "version": "1",
    "modality": "tabular",
    "classes": ["no", "yes"],
    "output": "logits",
    "tabular": {"features": ["a", "b", "c", "d", "e", "f"]},
}
FEATURES = ["a", "b", "c", "d", "e", "f"]
EXAMPLE = dict.fromkeys(FEATURES, 0.5)
NAN = float("nan")
WEIGHTS = [1.0, -2.0, 0.5, 0.0, 3.0, -1.0]
X = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])


def _write(directory: Path, spec: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.toml").write_text(to_toml(spec))


def _expected() -> torch.Tensor:
    return LogisticModel(WEIGHTS, 0.5)(X).detach()


def test_loading_only_named_models_reads_no_other_weights(tmp_path: Path) -> None:
    """The CLI and Ray actors load just the model they need."""
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "m"})
    write_torchscript_model(tmp_path / "n", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "n"})
    (tmp_path / "n" / "model.pt").write_bytes(b"not read")  # would fail if it were loaded
    loaded = ModelRepository(tmp_path).load(only=["m"])
    assert list(loaded.handles) == ["m"] and not loaded.errors
    torch.testing.assert_close(loaded.get("m").forward(X), _expected())
    assert "n" in ModelRepository(tmp_path).load().errors  # loading everything reads it


def test_torchscript_loads(tmp_path: Path) -> None:
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "m"})
    handle = ModelRepository(tmp_path).load().get("m")
    assert handle.ready and len(handle.sha256) == 64
    torch.testing.assert_close(handle.forward(X), _expected())


def test_torch_export_loads(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    _exported_program(tmp_path / "m" / "model.pt2", dynamic=True)
    _write(tmp_path / "m", {**SPEC, "format": "export", "artifact": "model.pt2"})
    handle = ModelRepository(tmp_path).load().get("m")
    torch.testing.assert_close(handle.forward(X), _expected())
    gradient = torch.autograd.functional.jacobian(lambda x: handle.forward(x)[0, 1], X)
    torch.testing.assert_close(gradient[0], torch.tensor(WEIGHTS))


def test_safetensors_with_factory_loads(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    save_file(LogisticModel(WEIGHTS, 0.5).state_dict(), str(tmp_path / "m" / "model.safetensors"))
    spec = {
        **SPEC,
        "format": "safetensors",
        "artifact": "model.safetensors",
        "factory": "tests.helpers:logistic_factory",
    }
    _write(tmp_path / "m", spec)
    handle = ModelRepository(tmp_path).load().get("m")
    torch.testing.assert_close(handle.forward(X), _expected())


class _Payload:
    """A pickle that runs code when loaded: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize(
    ("fmt", "artifact"),
    [("torchscript", "model.pt"), ("export", "model.pt2"), ("safetensors", "model.safetensors")],
)
def test_a_pickle_carrying_code_is_refused_without_running(
    tmp_path: Path, fmt: str, artifact: str
) -> None:
    marker = tmp_path / "pwned"
    repo = tmp_path / "repo"
    (repo / "evil").mkdir(parents=True)
    torch.save({"model": _Payload(marker)}, str(repo / "evil" / artifact))
    spec = {**SPEC, "name": "evil", "format": fmt, "artifact": artifact}
    if fmt == "safetensors":
        spec["factory"] = "tests.helpers:logistic_factory"
    _write(repo / "evil", spec)
    loaded = ModelRepository(repo).load()
    assert "evil" not in loaded.handles
    assert "evil" in loaded.errors
    assert not marker.exists()


def _exported_program(path: Path, dynamic: bool = False) -> None:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    rows = X.expand(2, -1) if dynamic else X  # a batch of 1 would be specialised
    model = LogisticModel(WEIGHTS, 0.5).eval()
    program = torch.export.export(model, (rows,), dynamic_shapes=shapes)
    torch.export.save(program, str(path), extra_files={"notes.txt": "plain bytes"})


def _rewritten(path: Path, change: dict[str, bytes | None]) -> None:
    """Rewrite the export archive at `path`: each entry (below the root folder) named in
    `change` replaced by its bytes, added if new, or removed where None."""
    with zipfile.ZipFile(path) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        entries = {name: archive.read(name) for name in archive.namelist()}
    for name, data in change.items():
        entries.pop(f"{root}/{name}", None)
        if data is not None:
            entries[f"{root}/{name}"] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _pickled(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)
    return buffer.getvalue()


def _opaque_constant(marker: Path) -> dict[str, bytes | None]:
    config = {
        "evil": {
            "path_name": "opaque_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }
    }
    return {
        "data/constants/model_constants_config.json": json.dumps({"config": config}).encode(),
        "data/constants/opaque_obj_0": pickle.dumps(_Payload(marker)),
    }


def _pickled_weight(marker: Path) -> dict[str, bytes | None]:
    config = {
        "w": {"path_name": "weight_0", "is_param": True, "use_pickle": True, "tensor_meta": None}
    }
    return {
        "data/weights/model_weights_config.json": json.dumps({"config": config}).encode(),
        "data/weights/weight_0": _pickled(marker),
    }


@pytest.mark.parametrize(
    "attack",
    [
        lambda marker: {"data/sample_inputs/model.pt": _pickled(marker)},  # retried unsafely
        _opaque_constant,  # torch.export.load calls pickle.loads on it
        _pickled_weight,  # torch.load(weights_only=False)
        lambda marker: {"data/aotinductor/model/model.so": b"\x7fELF"},  # native code
    ],
    ids=["sample-inputs", "opaque-object", "pickled-weight", "aotinductor"],
)
def test_an_export_archive_that_would_unpickle_or_run_code_is_refused_first(
    tmp_path: Path, attack: Callable[[Path], dict[str, bytes | None]]
) -> None:
    """torch.export.load unpickles parts of an archive: checked before it is called."""
    marker = tmp_path / "pwned"
    (tmp_path / "repo" / "m").mkdir(parents=True)
    _exported_program(tmp_path / "repo" / "m" / "model.pt2")
    _rewritten(tmp_path / "repo" / "m" / "model.pt2", attack(marker))
    _write(tmp_path / "repo" / "m", {**SPEC, "format": "export", "artifact": "model.pt2"})
    loaded = ModelRepository(tmp_path / "repo").load()
    assert "m" not in loaded.handles and "model.pt2" in loaded.errors["m"]
    assert not marker.exists()


def _program_changed(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the program JSON (models/model.json) of the export archive at `path`."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("models/model.json"))
        program = json.loads(archive.read(name))
    change(program)
    _rewritten(path, {name.split("/", 1)[1]: json.dumps(program).encode()})


def _shape_expression(marker: Path) -> Callable[[dict[str, Any]], None]:
    def change(program: dict[str, Any]) -> None:
        sizes = program["graph_module"]["graph"]["tensor_values"]["x"]["sizes"]
        expression = sizes[0]["as_expr"]["expr_str"]  # sympify evaluates it as Python
        sizes[0]["as_expr"]["expr_str"] = (
            f"{expression} + 0*__import__('pathlib').Path('{marker}').touch()"
        )

    return change


def _guard_code(marker: Path) -> Callable[[dict[str, Any]], None]:
    def change(program: dict[str, Any]) -> None:  # compiled and run on every call
        program["guards_code"] = [f"__import__('pathlib').Path('{marker}').touch() is None"]

    return change


def _operator(marker: Path) -> Callable[[dict[str, Any]], None]:
    def change(program: dict[str, Any]) -> None:  # any torch.* function could be called
        program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.load"

    return change


@pytest.mark.parametrize(
    "attack", [_shape_expression, _guard_code, _operator], ids=["sympify", "guards", "operator"]
)
def test_an_export_program_that_would_run_code_is_refused(
    tmp_path: Path, attack: Callable[[Path], Callable[[dict[str, Any]], None]]
) -> None:
    """The program JSON is evaluated too: shape expressions by sympy, guard code by exec."""
    marker = tmp_path / "pwned"
    (tmp_path / "repo" / "m").mkdir(parents=True)
    _exported_program(tmp_path / "repo" / "m" / "model.pt2", dynamic=True)
    _program_changed(tmp_path / "repo" / "m" / "model.pt2", attack(marker))
    _write(tmp_path / "repo" / "m", {**SPEC, "format": "export", "artifact": "model.pt2"})
    loaded = ModelRepository(tmp_path / "repo").load()
    assert "m" not in loaded.handles and "refused" in loaded.errors["m"]
    assert not marker.exists()


def test_an_export_archive_with_extra_files_loads(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    _exported_program(tmp_path / "m" / "model.pt2", dynamic=True)
    _write(tmp_path / "m", {**SPEC, "format": "export", "artifact": "model.pt2"})
    torch.testing.assert_close(ModelRepository(tmp_path).load().get("m").forward(X), _expected())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"classes": None}, "classes"),
        ({"modality": "audio"}, "modality"),
        ({"format": "pickle"}, "format"),
        ({"output": "scores"}, "output"),
        ({"tabular": None}, "tabular"),
        ({"unexpected": 1}, "unexpected"),
        ({"artifact": "missing.pt"}, "artifact"),
        ({"format": "safetensors", "artifact": "model.pt"}, "factory"),
        ({"name": "../escape"}, "name"),
        (
            {"tabular": {"features": FEATURES, "ranges": {"a": {"min": 2.0, "max": 1.0}}}},
            "tabular.ranges.a",
        ),
        (
            {"tabular": {"features": FEATURES, "ranges": {"a": {"min": NAN, "max": 1.0}}}},
            "tabular.ranges.a.min",
        ),
        ({"example": {**EXAMPLE, "typo": 1.0}}, "example"),
        ({"example": {**EXAMPLE, "b": "high"}}, "example"),  # a number expected
        (
            {
                "tabular": {"features": FEATURES, "categorical": {"a": ["x", "y"]}},
                "example": {**EXAMPLE, "a": "z"},
            },
            "example",
        ),
        ({"default_baseline": "blur"}, "default_baseline"),  # an image baseline
        ({"default_baseline": "mean"}, "default_baseline"),  # needs background.npz
        ({"default_baseline": "uniform"}, "default_baseline"),  # ... or declared ranges
        ({"tabular": {"features": FEATURES, "adverse_class": True}}, "tabular.adverse_class"),
        ({"limits": {"max_instances": "5"}}, "limits.max_instances"),  # not coerced
        ({"example": {**EXAMPLE, "a": True}}, "example.a"),
        (
            {"tabular": {"features": FEATURES, "ranges": {"a": {"min": -1e300, "max": 1.0}}}},
            "tabular.ranges.a.min",  # past float32: the inputs' type
        ),
    ],
)
def test_a_bad_model_toml_names_file_and_key_and_others_still_load(
    tmp_path: Path, change: dict[str, object], key: str
) -> None:
    write_torchscript_model(
        tmp_path / "good", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "good"}
    )
    write_torchscript_model(tmp_path / "bad", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "bad"})
    spec = {**SPEC, "version": "1", "format": "torchscript", "artifact": "model.pt", **change}
    _write(tmp_path / "bad", {k: v for k, v in spec.items() if v is not None})
    repo = ModelRepository(tmp_path).load()
    assert repo.names() == ["good"]
    message = repo.errors["bad"]
    assert str(tmp_path / "bad" / "model.toml") in message
    assert f"'{key}" in message


def test_toml_syntax_error_is_named(tmp_path: Path) -> None:
    shutil.rmtree(tmp_path, ignore_errors=True)
    (tmp_path / "broken").mkdir(parents=True)
    (tmp_path / "broken" / "model.toml").write_text("name = [unclosed\n")
    repo = ModelRepository(tmp_path).load()
    assert "model.toml" in repo.errors["broken"]


def test_background_shape_is_checked(tmp_path: Path) -> None:
    write_torchscript_model(
        tmp_path / "m", LogisticModel(WEIGHTS, 0.5), SPEC, background=np.zeros((4, 3), np.float32)
    )
    assert "background.npz" in ModelRepository(tmp_path).load().errors["m"]


def _npz_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=array)
    return buffer.getvalue()


def _npy_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not an npz file\n", id="text"),  # np.load: ValueError
        pytest.param(b"", id="empty"),  # EOFError
        pytest.param(_npz_of(np.zeros((4, 6), np.float32))[:60], id="truncated"),  # BadZipFile
        pytest.param(_npy_of(np.zeros((4, 6), np.float32)), id="npy"),  # an array, no archive
        pytest.param(_npz_of(np.array([["a"] * 6] * 4)), id="strings"),  # not numbers
        pytest.param(_npz_of(np.array([[0.0] * 6, [0.0] * 5 + [NAN]])), id="nan"),  # LIME: 500
        pytest.param(_npz_of(np.array([[0.0] * 6, [np.inf] * 6])), id="inf"),
        pytest.param(_npz_of(np.zeros((0, 6))), id="no-rows"),
    ],
)
def test_an_unreadable_background_stops_only_its_model(tmp_path: Path, content: bytes) -> None:
    write_torchscript_model(
        tmp_path / "good", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "good"}
    )
    write_torchscript_model(tmp_path / "bad", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "bad"})
    (tmp_path / "bad" / "background.npz").write_bytes(content)
    repo = ModelRepository(tmp_path).load()
    assert repo.names() == ["good"]
    torch.testing.assert_close(repo.get("good").forward(X), _expected())
    assert "background.npz" in repo.errors["bad"]
    with pytest.raises(ModelNotReady) as raised:
        repo.get("bad")
    assert raised.value.status == 503 and repo.errors["bad"] in raised.value.detail
    with pytest.raises(NotFound):
        repo.get("missing")


def test_a_background_holding_pickles_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    repo = tmp_path / "repo"
    write_torchscript_model(repo / "m", LogisticModel(WEIGHTS, 0.5), SPEC)
    payload = np.array([_Payload(marker)] * 6, dtype=object)
    (repo / "m" / "background.npz").write_bytes(_npz_of(payload))
    loaded = ModelRepository(repo).load()
    assert "background.npz" in loaded.errors["m"] and "m" not in loaded.handles
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "key", "shape"),
    [
        ({"tabular": {"features": ["a", "b", "c", "d", "e"]}}, "tabular.features", "(2, 5)"),
        ({"classes": ["no", "maybe", "yes"]}, "classes", "(2, 2)"),
        ({"output": "probabilities"}, "output", "all-zero instance"),  # logits [0, 0.5]
    ],
)
def test_a_spec_that_does_not_match_its_artifact_is_caught_at_load(
    tmp_path: Path, change: dict[str, object], key: str, shape: str
) -> None:
    write_torchscript_model(
        tmp_path / "good", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "good"}
    )
    write_torchscript_model(
        tmp_path / "bad", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "bad", **change}
    )
    repo = ModelRepository(tmp_path).load()
    assert repo.names() == ["good"]
    message = repo.errors["bad"]
    assert str(tmp_path / "bad" / "model.toml") in message
    assert f"'{key}'" in message and shape in message
    with pytest.raises(ModelNotReady):
        repo.get("bad")


def _lesion_copy(root: Path, toml_edit: Callable[[str], str] = lambda text: text) -> Path:
    directory = root / "lesion-64"
    shutil.copytree(ZOO_DIR / "lesion-64", directory)
    (directory / "model.toml").write_text(toml_edit((directory / "model.toml").read_text()))
    return directory


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (
            lambda text: text.replace('gradcam_layer = "features.9"', 'gradcam_layer = "head.9"'),
            "image.gradcam_layer",
        ),
        (lambda text: re.sub(r"std = \[.*\]", "std = [nan, nan, nan]", text), "image.std.0"),
        (lambda text: re.sub(r"std = \[.*\]", "std = [1e-300, 1, 1]", text), "image.std"),
        (lambda text: text.replace("channels = 3", "channels = true"), "image.channels"),
        (lambda text: text.replace("channels = 3", 'channels = "3"'), "image.channels"),
    ],
    ids=["no-such-layer", "nan-std", "std-zero-in-float32", "bool-channels", "string-channels"],
)
def test_an_image_model_toml_the_model_cannot_honour_is_named(
    tmp_path: Path, edit: Callable[[str], str], key: str
) -> None:
    """Found at load, not by every request (Grad-CAM's 422 named the caller's options)."""
    _lesion_copy(tmp_path, edit)
    errors = ModelRepository(tmp_path).load().errors
    assert "model.toml" in errors["lesion-64"] and f"'{key}'" in errors["lesion-64"]


def test_an_image_background_of_0_to_255_floats_is_refused(tmp_path: Path) -> None:
    """Pixels are [0, 1] floats or uint8: 0..255 floats were references out of range."""
    directory = _lesion_copy(tmp_path)
    with np.load(directory / "background.npz") as archive:
        pixels = archive["x"]
    assert pixels.dtype == np.uint8  # (B, H, W, C) as stored: loads
    np.savez(directory / "background.npz", x=pixels.transpose(0, 3, 1, 2).astype(np.float32))
    errors = ModelRepository(tmp_path).load().errors
    assert "background.npz" in errors["lesion-64"] and "[0, 1]" in errors["lesion-64"]


def test_control_characters_in_labels_are_refused(tmp_path: Path) -> None:
    """Labels reach terminals (`explainer models`), tables and CSV headers."""
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), SPEC)
    text = (tmp_path / "m" / "model.toml").read_text()
    text = text.replace('classes = ["no", "yes"]', 'classes = ["no\\u001b[31m", "yes"]')
    (tmp_path / "m" / "model.toml").write_text(text)
    assert (
        "'classes.0': must not hold control characters"
        in ModelRepository(tmp_path).load().errors["m"]
    )


def test_unicode_and_html_labels_load(tmp_path: Path) -> None:
    features = ["<b>a</b>", "é", "患者年龄", "😀 d", "e&amp;", "f"]
    spec = {**SPEC, "classes": ["<script>x</script>", "是 ✓"], "tabular": {"features": features}}
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), spec)
    assert ModelRepository(tmp_path).load().get("m").feature_names == features


@pytest.mark.parametrize("code", [5.0, 0.5, -1.0], ids=["past-the-end", "fraction", "negative"])
def test_a_background_category_code_that_is_no_category_is_refused(
    tmp_path: Path, code: float
) -> None:
    """SHAP, LIME and the tree took such codes as references: explained as no category."""
    background = np.zeros((8, 6), np.float32)
    background[3, 0] = code
    spec = {**SPEC, "tabular": {"features": FEATURES, "categorical": {"a": ["x", "y"]}}}
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), spec, background)
    message = ModelRepository(tmp_path).load().errors["m"]
    assert "background.npz" in message and "row 3 of categorical feature 'a'" in message
    assert str(code) not in message


@pytest.mark.parametrize("value", [1.5, -0.25], ids=["above", "below"])
def test_a_background_value_outside_its_declared_range_is_refused(
    tmp_path: Path, value: float
) -> None:
    """Requests outside `[tabular.ranges]` get a 422; a background row (a reference for
    SHAP, LIME, the tree and the baselines) was taken as it was."""
    background = np.full((8, 6), 0.5, np.float32)
    background[5, 1] = value
    ranges = {"b": {"min": 0.0, "max": 1.0}, "c": {"min": 0.0, "max": 1.0}}
    spec = {**SPEC, "tabular": {"features": FEATURES, "ranges": ranges}}
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), spec, background)
    write_torchscript_model(
        tmp_path / "n", LogisticModel(WEIGHTS, 0.5), {**spec, "name": "n"}, background[:5]
    )
    repository = ModelRepository(tmp_path).load()
    assert repository.names() == ["n"]  # the rows before row 5 are all in range
    message = repository.errors["m"]
    assert message.startswith(f"{tmp_path / 'm' / 'background.npz'}: key 'x': ")
    assert "row 5 of feature 'b' is outside its range [0.0, 1.0]" in message
    assert str(value) not in message


def test_a_background_value_at_a_range_bound_loads(tmp_path: Path) -> None:
    """The rows are float32: 0.1 is stored as 0.10000000149, past a `max` of 0.1, but it is
    what a request giving 0.1 is decoded to, so it is in range."""
    background = np.array([[0.1, 0.0, 0.1, 0.0, 0.0, 0.0], [-0.1, 0.1, 0.0, 0.0, 0.0, 0.0]])
    ranges = {"a": {"min": -0.1, "max": 0.1}, "b": {"min": 0.0, "max": 0.1}}
    spec = {**SPEC, "tabular": {"features": FEATURES, "ranges": ranges}}
    write_torchscript_model(tmp_path / "m", LogisticModel(WEIGHTS, 0.5), spec, background)
    repository = ModelRepository(tmp_path).load()
    assert not repository.errors and repository.names() == ["m"]


def test_a_complex_background_or_one_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    write_torchscript_model(
        tmp_path / "m", LogisticModel(WEIGHTS, 0.5), SPEC, np.zeros((4, 6), np.complex64)
    )
    write_torchscript_model(tmp_path / "n", LogisticModel(WEIGHTS, 0.5), {**SPEC, "name": "n"})
    (tmp_path / "n" / "background.npz").mkdir()  # was silently taken as no background
    errors = ModelRepository(tmp_path).load().errors
    assert "must hold real numbers" in errors["m"]
    assert "background.npz" in errors["n"] and "not a regular file" in errors["n"]


class _OneRowOut(torch.nn.Module):
    """Gives one row whatever the batch: fine on one dummy instance, not on a batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=0, keepdim=True)[:, :2]


class _IntegerOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2].long()


class _TupleOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :2], x


class _SigmoidPair(torch.nn.Module):
    """[sigmoid(z), sigmoid(z)]: sums to 1 at z = 0 only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(x.sum(dim=1))
        return torch.stack([p, p], dim=1)


class _LogOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.log(-x.abs().sum(dim=1) - 1.0)  # NaN everywhere
        return torch.stack([z, z], dim=1)


@pytest.mark.parametrize(
    ("module", "change", "message"),
    [
        (_OneRowOut(), {}, "'classes': the artifact gives outputs of shape (1, 2) for 8"),
        (_IntegerOut(), {}, "'output': the artifact gives torch.int64, not a floating-point"),
        (_TupleOut(), {}, "'output': the artifact gives tuple, not a floating-point tensor"),
        (
            _SigmoidPair(),
            {"output": "probabilities"},
            "for row 0 of background.npz are not in [0, 1] or do not sum to 1",
        ),
        (_LogOut(), {}, "'output': NaN or infinite outputs for row 0 of background.npz"),
    ],
    ids=["batch-of-one-only", "integer", "tuple", "not-probabilities", "nan"],
)
def test_an_artifact_that_cannot_serve_a_batch_is_caught_at_load(
    tmp_path: Path, module: torch.nn.Module, change: dict[str, object], message: str
) -> None:
    """These failed on the first request (exit code 1, or unnormalised probabilities)."""
    background = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    write_torchscript_model(tmp_path / "m", module, {**SPEC, **change}, background)
    errors = ModelRepository(tmp_path).load().errors
    assert str(tmp_path / "m" / "model.toml") in errors["m"] and message in errors["m"]


def test_an_export_with_a_fixed_batch_of_one_is_caught_at_load(tmp_path: Path) -> None:
    """The service evaluates batches of any size: its guard failed on every explanation."""
    (tmp_path / "m").mkdir()
    _exported_program(tmp_path / "m" / "model.pt2", dynamic=False)
    _write(tmp_path / "m", {**SPEC, "format": "export", "artifact": "model.pt2"})
    message = ModelRepository(tmp_path).load().errors["m"]
    assert "'tabular.features': the artifact fails on an input of shape (2, 6)" in message


@pytest.mark.parametrize(
    ("factory", "message"),
    [("os:getcwd", "returned str, not a torch.nn.Module"), ("json:loads", "failed: TypeError")],
)
def test_a_factory_that_gives_no_module_is_named(
    tmp_path: Path, factory: str, message: str
) -> None:
    (tmp_path / "m").mkdir()
    save_file(LogisticModel(WEIGHTS, 0.5).state_dict(), str(tmp_path / "m" / "model.safetensors"))
    spec = {**SPEC, "format": "safetensors", "artifact": "model.safetensors", "factory": factory}
    _write(tmp_path / "m", spec)
    assert f"'factory': '{factory}' {message}" in ModelRepository(tmp_path).load().errors["m"]


@pytest.mark.parametrize("linked", ["model.pt", "background.npz", "model.toml", "folder"])
def test_a_symlink_out_of_the_repository_is_refused(tmp_path: Path, linked: str) -> None:
    """Only the configured repository's files are loaded; the link's target is not shown."""
    background = np.zeros((4, 6), np.float32)
    outside = write_torchscript_model(tmp_path / "outside", LogisticModel(WEIGHTS, 0.5), SPEC)
    np.savez(outside / "background.npz", x=background)
    repo = tmp_path / "repo"
    if linked == "folder":
        repo.mkdir()
        (repo / "m").symlink_to(outside)
    else:
        write_torchscript_model(repo / "m", LogisticModel(WEIGHTS, 0.5), SPEC, background)
        (repo / "m" / linked).unlink()
        (repo / "m" / linked).symlink_to(outside / linked)
    message = ModelRepository(repo).load().errors["m"]
    assert "resolves outside the model repository" in message
    assert str(outside) not in message


def test_a_symlink_within_the_repository_loads(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_torchscript_model(root / "store", LogisticModel(WEIGHTS, 0.5), SPEC)
    (root / "store" / "weights.pt").symlink_to(root / "store" / "model.pt")
    (root / "store" / "model.toml").write_text(
        to_toml({**SPEC, "version": "1", "format": "torchscript", "artifact": "weights.pt"})
    )
    (tmp_path / "link").symlink_to(root)  # a repository given by a symlink
    torch.testing.assert_close(
        ModelRepository(tmp_path / "link").load().get("m").forward(X), _expected()
    )
