"""Clear outputs, execution counts and execution metadata from notebooks before committing.

    .venv/bin/python notebooks/strip_outputs.py notebooks/*.ipynb

Prints the notebooks it changed; `--check` changes nothing and exits 1 if any would change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode


def strip(notebook: NotebookNode) -> bool:
    """Strip `notebook` in place; return whether anything changed."""
    changed = False
    for cell in notebook.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
        if "execution" in cell.metadata:
            del cell.metadata["execution"]
            changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    """Strip (or, with --check, only test) the given notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report only; exit 1 on changes")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.paths:
        notebook = nbformat.read(path, as_version=4)
        if strip(notebook):
            dirty.append(path)
            if not args.check:
                nbformat.write(notebook, path)
            print(path)
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
