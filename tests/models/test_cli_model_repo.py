"""`--model-repo ""` is bad usage (exit code 2, one line), not the current folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from explainer.cli import main
from tests.helpers import LogisticModel, binary_tabular_spec, write_torchscript_model

FEATURES = ["a", "b", "c", "d", "e", "f"]
ERROR = (
    "explainer: error: --model-repo: the path is empty (leave the option out for"
    " EXPLAINER_MODEL_REPO or the zoo)\n"
)


@pytest.mark.parametrize(
    "command",
    [
        ["models"],
        ["explain", "m", "row.json", "--out", "explained"],
        ["audit", "m", "rows.csv", "--out", "audited"],
        ["serve"],
    ],
    ids=["models", "explain", "audit", "serve"],
)
def test_an_empty_model_repo_is_a_usage_error(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The current folder holds a model: an empty path must not load it.
    write_torchscript_model(
        tmp_path / "m", LogisticModel([1.0] * 6, 0.0), binary_tabular_spec("m", FEATURES)
    )
    (tmp_path / "row.json").write_text('{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 1}')
    (tmp_path / "rows.csv").write_text("a,b,c,d,e,f\n1,1,1,1,1,1\n")
    monkeypatch.chdir(tmp_path)
    served: list[Any] = []
    if command == ["serve"]:
        import api.server

        monkeypatch.setattr(api.server, "serve", lambda *args: served.append(args))
    assert main([*command, "--model-repo", ""]) == 2
    assert capsys.readouterr().err == ERROR
    assert not served
    assert not (tmp_path / "explained").exists() and not (tmp_path / "audited").exists()


def test_a_model_repo_given_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_torchscript_model(
        tmp_path / "m", LogisticModel([1.0] * 6, 0.0), binary_tabular_spec("m", FEATURES)
    )
    assert main(["models", "--model-repo", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("m\t1\ttabular\tno,yes")
