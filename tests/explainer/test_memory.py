"""The engine asks glibc's malloc to keep freed memory (explainer.memory), unless told not to."""

from __future__ import annotations

import platform

import pytest

from explainer import Engine, memory


def test_malloc_takes_the_settings_on_glibc() -> None:
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert memory.keep_freed_memory() is on_glibc
    assert memory.keep_freed_memory() is on_glibc  # setting them again is harmless


@pytest.mark.parametrize("keep", [True, False])
def test_the_engine_applies_them_when_asked(monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    Engine("cpu", keep_freed_memory=keep)
    assert calls == ([1] if keep else [])
