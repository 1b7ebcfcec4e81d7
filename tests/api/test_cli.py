"""The command line: exit codes, `models`, `explain` outputs, and `serve`'s safety check."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import api.server
import explainer
import explainer.cli
from explainer.cli import COMMANDS, build_parser, main
from tests.api.conftest import png_bytes
from tests.api.repo import IMAGE, TABULAR, TABULAR_ROW
from tests.helpers import to_toml


def test_subcommands_are_a_registry() -> None:
    assert {"serve", "models", "explain", "audit"} <= set(COMMANDS)


def test_help_lists_every_command_and_serve_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = build_parser().format_help()
    assert "Commands: serve, models, explain, audit." in text and "`COMMANDS`" not in text
    assert "130 interrupted" in text
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    serve_help = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: 127.0.0.1;" in serve_help and "(default: 8000)" in serve_help
    assert "max_concurrency + max_queue + 1" in serve_help


def test_models_lists_the_repository(model_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--model-repo", str(model_repo)]) == 0
    out = capsys.readouterr().out
    assert TABULAR in out and IMAGE in out
    assert main(["models", "--model-repo", str(model_repo), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed["models"]] == [TABULAR, IMAGE]


def test_explain_writes_json_and_pngs(model_repo: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"instances": [TABULAR_ROW, TABULAR_ROW]}))
    out = tmp_path / "out"
    args = ["explain", TABULAR, str(rows), "--model-repo", str(model_repo), "--out", str(out)]
    assert main([*args, "--methods", "saliency", "shap", "--target", "1", "--seed", "3"]) == 0
    document = json.loads((out / "explanation.json").read_text())
    assert len(document["explanations"]) == 2
    assert document["provenance"]["seed"] == 3 and document["provenance"]["target"] == 1
    assert document["explanations"][0]["methods"]["shap"]["heatmap_url"] == "0_shap.png"
    assert Image.open(out / "1_saliency.png").format == "PNG"


def test_explain_images(model_repo: Path, tmp_path: Path) -> None:
    picture = tmp_path / "in.png"
    picture.write_bytes(png_bytes())
    out = tmp_path / "out"
    args = ["explain", IMAGE, str(picture), "--model-repo", str(model_repo), "--out", str(out)]
    assert main([*args, "--methods", "saliency"]) == 0
    assert Image.open(out / "0_saliency.png").size == (256, 296)


@pytest.mark.parametrize(
    ("content", "extra"),
    [
        ('{"instances": [[NaN, 1, 2, 3]]}', []),  # NaN refused
        ("{not json", []),
        ('{"instances": [[1, 2]]}', []),  # wrong row length
        (json.dumps([TABULAR_ROW]), ["--target", "9"]),  # target out of range
        (json.dumps([TABULAR_ROW]), ["--methods", "gradcam"]),  # not for tabular models
    ],
    ids=["nan", "malformed", "short-row", "target", "method"],
)
def test_explain_bad_input_exits_2(
    model_repo: Path, tmp_path: Path, content: str, extra: list[str]
) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(content)
    args = ["explain", TABULAR, str(rows), "--model-repo", str(model_repo), "--out", str(tmp_path)]
    assert main([*args, *extra]) == 2


def test_explain_unknown_model_or_file_exits_2(model_repo: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text("[]")
    assert main(["explain", "nope", str(rows), "--model-repo", str(model_repo)]) == 2
    assert (
        main(["explain", TABULAR, str(tmp_path / "missing.json"), "--model-repo", str(model_repo)])
        == 2
    )
    assert main(["explain", TABULAR, str(tmp_path), "--model-repo", str(model_repo)]) == 2


def rows_file(tmp_path: Path) -> Path:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([TABULAR_ROW]))
    return rows


def test_explain_checks_out_and_device_before_loading_the_model(
    model_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_loading(*_: object) -> None:
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(explainer.cli, "_repository", no_loading)
    rows = rows_file(tmp_path)
    args = ["explain", TABULAR, str(rows), "--model-repo", str(model_repo)]
    assert main([*args, "--out", str(rows)]) == 2  # a file, not a folder
    assert f"--out {rows}: exists and is not a folder" in capsys.readouterr().err
    blocked = rows / "out"  # under a file: cannot be created
    assert main([*args, "--out", str(blocked)]) == 2
    assert f"--out {blocked}: cannot be created" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "x"), "--device", "bogus"]) == 2
    assert "explainer: error: --device: unknown device 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_explain_interrupted_exits_130(
    model_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def ctrl_c(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(explainer, "explain", ctrl_c)
    args = ["explain", TABULAR, str(rows_file(tmp_path)), "--model-repo", str(model_repo)]
    assert main([*args, "--out", str(tmp_path / "out"), "--methods", "saliency"]) == 130
    assert capsys.readouterr().err == "explainer: interrupted\n"


def test_bad_usage_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["explain"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_serve_refuses_a_public_host_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EXPLAINER_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "9"]) == 2
    assert "--insecure" in capsys.readouterr().err
    assert main(["serve", "--workers", "0"]) == 2


@pytest.mark.parametrize(
    ("threads", "warned"), [("9", True), ("10", False)], ids=["too-few", "enough"]
)
def test_serve_warns_about_too_few_threads(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    threads: str,
    warned: bool,
) -> None:
    served: list[int] = []
    monkeypatch.setattr(api.server, "serve", lambda *args: served.append(args[-1]))
    monkeypatch.setenv("EXPLAINER_MAX_CONCURRENCY", "2")
    monkeypatch.setenv("EXPLAINER_MAX_QUEUE", "7")  # 2 + 7 + 1 for /healthz = 10
    assert main(["serve", "--threads", threads]) == 0
    assert served == [int(threads)]
    err = capsys.readouterr().err
    assert ("warning: --threads 9 is fewer than" in err) is warned


def test_cli_does_not_import_api_or_touch_cuda() -> None:
    code = (
        "import sys, explainer.cli as c; c.build_parser(); "
        "assert not any(m == 'api' or m.startswith('api.') for m in sys.modules); "
        "import torch; assert not torch.cuda.is_initialized()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_folder_given_as_input_is_named_as_one(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "rows.json"
    folder.mkdir()
    assert main(["explain", TABULAR, str(folder), "--model-repo", str(model_repo)]) == 2
    assert capsys.readouterr().err == f"explainer: error: {folder}: is a folder, not a file\n"


def test_load_errors_are_printed_once_on_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch's multi-line errors and the repository's own log line made several lines."""
    (tmp_path / "m").mkdir()
    save_file({"w": torch.zeros(7), "b": torch.zeros(())}, str(tmp_path / "m" / "w.safetensors"))
    spec = {
        "name": "m",
        "version": "1",
        "modality": "tabular",
        "format": "safetensors",
        "artifact": "w.safetensors",
        "factory": "tests.helpers:logistic_factory",
        "classes": ["no", "yes"],
        "output": "logits",
        "tabular": {"features": list("abcdef")},
    }
    (tmp_path / "m" / "model.toml").write_text(to_toml(spec))
    assert main(["models", "--model-repo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: m: w.safetensors: weights do not fit") and err.count("\n") == 1
    rows = rows_file(tmp_path)
    args = ["explain", "m", str(rows), "--model-repo", str(tmp_path), "--out", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("explainer: error: model 'm' failed to load") and err.count("\n") == 1


def test_an_unknown_model_lists_the_models_that_failed_to_load(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model.toml that does not parse gives no name: the one meant may be among them."""
    repo = shutil.copytree(model_repo, tmp_path / "repo")
    (repo / "broken").mkdir()
    (repo / "broken" / "model.toml").write_text('name = "scores"\nversion = 1\n')
    args = ["explain", "scores", str(rows_file(tmp_path)), "--model-repo", str(repo)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "explainer: error: no model named 'scores'\n"
        f"  at broken: {repo / 'broken' / 'model.toml'}: key 'version': Input should be a valid"
        " string\n"
    )


def test_help_gives_the_seed_and_chunk_size_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "rows per checkpoint, 1 to 1024 (default: 64)" in text
    assert "0 to 4294967295 (default: 0)" in text
