"""The curl examples of the HTTP API docs run verbatim against a live server.

Blocks marked with a `<!-- test -->` line right before a ```sh fence are collected from
README.md (duplicates once, in order) and run with bash -euo pipefail from
the repository root; only `EXPLAINER_URL` (the live server) and `TMPDIR` differ from a
user's shell after `make run`.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "README.md"]
BLOCK = re.compile(r"^<!-- test -->\n```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for source in SOURCES:
        if source.is_file():
            for number, match in enumerate(BLOCK.finditer(source.read_text()), start=1):
                seen.setdefault(match.group(1), f"{source.name}:{number}")
    return [(where, block) for block, where in seen.items()]


BLOCKS = readme_blocks()


def test_the_docs_have_tested_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.fixture(scope="module")
def shell_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


@pytest.mark.parametrize("block", [b for _, b in BLOCKS], ids=[w for w, _ in BLOCKS])
def test_example_runs_verbatim(live_server: str, shell_tmp: Path, block: str) -> None:
    env = {**os.environ, "EXPLAINER_URL": live_server, "TMPDIR": str(shell_tmp)}
    env.pop("EXPLAINER_API_KEY", None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{block}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.strip()
