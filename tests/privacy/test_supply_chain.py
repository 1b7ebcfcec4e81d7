"""Supply chain: torch is at least 2.6 (CVE-2025-32434: `torch.load` ran code in older ones).

Both the lock file's pin and the installed build are checked; `make audit-deps` runs
pip-audit over constraints.txt.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from packaging.version import Version

MINIMUM = Version("2.6")
CONSTRAINTS = Path(__file__).parents[2] / "constraints.txt"


def test_locked_torch_is_at_least_2_6() -> None:
    pin = re.search(r"^torch==(\S+)$", CONSTRAINTS.read_text(), re.MULTILINE)
    assert pin is not None, "constraints.txt does not pin torch"
    assert Version(pin.group(1)) >= MINIMUM


def test_installed_torch_is_at_least_2_6() -> None:
    assert Version(torch.__version__.split("+")[0]) >= MINIMUM
