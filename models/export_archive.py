"""The check a torch.export archive passes before `torch.export.load` reads it.

`torch.export.load` is not safe on untrusted files. It unpickles pickled weights, constants
and "opaque" objects, retries sample inputs with `weights_only=False`, loads compiled
AOTInductor libraries and falls back to a pre-2.7 format. Its program JSON is code too:
symbolic shapes (`expr_str`, `range_constraints`) go through `sympy.sympify`, which
evaluates Python; `guards_code` is compiled and run on every call; and an operator is
looked up by name anywhere under `torch`, `operator` or `math` and called by the graph.

So an archive is accepted only when it holds the program's JSON, its weights and tensor
constants as raw bytes, sample inputs that load with `weights_only=True` and extra files
(bytes); when its symbolic expressions use only sympy's and torch's shape functions on
shape symbols; when it has no guard code; and when its graph calls only the listed
operator families.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import torch

# The entries an archive may hold, below its root folder.
_ENTRIES = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/sample_inputs/model\.pt|extra/[^/]+"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
)
# Each weights or constants config entry's file, stored as raw bytes (not pickled).
_RAW_PAYLOAD = {"weights": re.compile(r"weight_\d+"), "constants": re.compile(r"tensor_\d+")}
# Operators a graph may call: ATen and prims ops, torch.export's higher-order ops, symbolic
# shape arithmetic and math functions.
_OPERATORS = re.compile(
    r"torch\.ops\.(aten|prims|higher_order)\.\w+(\.\w+)?|torch\.sym_\w+"
    r"|_operator\.(getitem|add|sub|mul|floordiv|truediv|mod|neg|pow|eq|ne|lt|le|gt|ge"
    r"|and_|or_|not_|abs)|math\.(ceil|floor|trunc|sqrt)"
)
# A symbolic expression's words: sympy and torch shape functions, flags and shape symbols
# (s0, u1, zf2); its strings: symbol names. Anything else (a dunder, `import`) is refused.
_EXPRESSION_WORDS = re.compile(
    r"Symbol|Integer|Float|Rational|Add|Mul|Pow|Max|Min|Abs|Eq|Ne|Lt|Le|Gt|Ge|And|Or|Not"
    r"|Piecewise|ITE|FloorDiv|ModularIndexing|Where|PythonMod|Mod|CleanDiv|CeilToInt"
    r"|FloorToInt|CeilDiv|LShift|RShift|PowByNatural|FloatPow|FloatTrueDiv|IntTrueDiv"
    r"|IsNonOverlappingAndDenseIndicator|TruncToFloat|TruncToInt|RoundToInt"
    r"|RoundDecimal|ToFloat|Identity|OpaqueUnaryFn_\w+|BitwiseFn_\w+"
    r"|positive|integer|nonnegative|real|finite|True|False|true|false|oo"
    r"|[a-z]{1,3}\d+"
)
_EXPRESSION_TOKENS = re.compile(r"'[^']*'|[A-Za-z_]\w*|\d+(\.\d+)?(e[-+]?\d+)?|[-+*/%(),=<>!.\s]")


class ArchiveRefused(ValueError):
    """The archive holds something that loading it would unpickle or run."""


def check_export_archive(name: str, data: bytes) -> None:
    """Raise ArchiveRefused unless the archive `data` (of the file `name`) is safe to give to
    `torch.export.load` (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ArchiveRefused(f"{name} is not a torch.export archive (not a zip file)") from None
    with archive:
        entries = [entry for entry in archive.namelist() if not entry.endswith("/")]
        roots = {entry.split("/", 1)[0] for entry in entries}
        if len(roots) != 1 or any("/" not in entry for entry in entries):
            raise ArchiveRefused(f"{name} is not a torch.export archive (one root folder)")
        root = roots.pop()
        for entry in entries:
            if not _ENTRIES.fullmatch(entry.removeprefix(f"{root}/")):
                raise ArchiveRefused(
                    f"{name}: {entry!r} is refused: only programs saved by torch.export.save"
                    " with plain tensor weights are loaded (no pickled objects, compiled"
                    " libraries or pre-2.7 archives)"
                )
        for kind, payload in _RAW_PAYLOAD.items():
            config = f"{root}/data/{kind}/model_{kind}_config.json"
            if config in entries:
                _check_payload_config(name, archive.read(config), payload)
        program = f"{root}/models/model.json"
        if program not in entries:
            raise ArchiveRefused(f"{name} is not a torch.export archive (no models/model.json)")
        _check_program(name, archive.read(program))
        sample_inputs = f"{root}/data/sample_inputs/model.pt"
        if sample_inputs in entries:
            _check_sample_inputs(name, archive.read(sample_inputs))


def _check_payload_config(name: str, text: bytes, payload: re.Pattern[str]) -> None:
    """Every weight or constant is stored raw, in a file of the expected kind."""
    try:
        entries = json.loads(text)["config"].values()
        raw = all(e["use_pickle"] is False and payload.fullmatch(e["path_name"]) for e in entries)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ArchiveRefused(
            f"{name}: its weights or constants configuration is unreadable"
        ) from None
    if not raw:
        raise ArchiveRefused(
            f"{name}: pickled weights, constants or objects are refused; export plain tensors"
        )


def _check_program(name: str, text: bytes) -> None:
    """The program JSON: no guard code, safe symbolic expressions, listed operators only."""
    try:
        program = json.loads(text)
        constraints = list(program.get("range_constraints", {}))
        guards = program.get("guards_code", [])
    except (ValueError, AttributeError):
        raise ArchiveRefused(f"{name}: its program (models/model.json) is unreadable") from None
    if guards:
        raise ArchiveRefused(f"{name}: programs with guard code are refused (it would be run)")
    for expression in [*constraints, *_values(program, "expr_str")]:
        if not _is_safe_expression(expression):
            raise ArchiveRefused(
                f"{name}: a symbolic shape expression is refused (only shape symbols and"
                " sympy's and torch's shape functions are evaluated)"
            )
    for operator in [*_node_targets(program), *_values(program, "as_operator")]:
        if not (isinstance(operator, str) and _OPERATORS.fullmatch(operator)):
            raise ArchiveRefused(
                f"{name}: the graph calls {str(operator)[:80]!r}; only ATen, prims and"
                " torch.export's own operators are loaded (custom operators are refused)"
            )


def _is_safe_expression(expression: Any) -> bool:
    """Whether a symbolic expression holds only listed words, symbol-name strings, numbers
    and operators."""
    if not isinstance(expression, str):
        return False
    position = 0
    for token in _EXPRESSION_TOKENS.finditer(expression):
        if token.start() != position or not _is_safe_token(token.group()):
            return False
        position = token.end()
    return position == len(expression)


def _is_safe_token(token: str) -> bool:
    """A string must name a shape symbol, a word be listed; numbers and operators pass."""
    if token.startswith("'"):
        return re.fullmatch(r"'[a-z]{1,3}\d+'", token) is not None
    if token[0].isalpha() or token[0] == "_":
        return _EXPRESSION_WORDS.fullmatch(token) is not None
    return True


def _values(data: Any, key: str) -> Iterator[Any]:
    """Every value stored under `key` anywhere in JSON-like `data`."""
    if isinstance(data, dict):
        for name, value in data.items():
            if name == key:
                yield value
            yield from _values(value, key)
    elif isinstance(data, list):
        for item in data:
            yield from _values(item, key)


def _node_targets(data: Any) -> Iterator[Any]:
    """The targets of every graph node (nested graphs included) in JSON-like `data`."""
    if isinstance(data, dict):
        if {"target", "inputs", "outputs"} <= data.keys():
            yield data["target"]
        for value in data.values():
            yield from _node_targets(value)
    elif isinstance(data, list):
        for item in data:
            yield from _node_targets(item)


def _check_sample_inputs(name: str, data: bytes) -> None:
    """Sample inputs must load with `weights_only=True` (torch would retry without)."""
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # torch raises several types for a refused pickle
        raise ArchiveRefused(
            f"{name}: its sample inputs are not plain tensors (they would have to be"
            " unpickled); export with tensor example inputs"
        ) from None
