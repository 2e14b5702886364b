"""Notebooks to plain Python scripts, at image build time and before a local run.

``python -m quetzal_deploy.runtime.convert notebooks`` writes ``<step>.py`` next to every
``<step>.ipynb`` under ``notebooks/``, at any depth (``.ipynb_checkpoints`` skipped). Code cells
are kept in order; markdown and raw cells are left out; ``display(...)`` prints.

IPython syntax cannot run in a script. Display-only magics are dropped (``HARMLESS``); any other
magic or shell escape (``!pip``, ``%run``, ``%%bash``, ``%cd``...) stops the conversion with the
notebook, the cell and the fix, so it fails the image build, not a run on Lambda.
Standard library only: it runs in the Lambda image.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

from quetzal_deploy.runtime.errors import NotebookError

# Magics that only change how Jupyter displays or reloads things: nothing to do in a script.
HARMLESS = (
    "%matplotlib", "%config", "%autoreload", "%aimport", "%load_ext autoreload",
    "%reload_ext autoreload", "%%time",
)
# Jupyter's ``display()`` is a builtin there; in a script it prints (an import of it still wins).
DISPLAY = "display = print  # Jupyter's display() builtin, printed in a script"
# A magic or shell escape starting a line, possibly assigned: `%x`, `%%x`, `!x`, `y = !x`.
IPYTHON_LINE = re.compile(r"^(?P<indent>\s*)(?P<assign>[A-Za-z_][\w.]*\s*=\s*)?(?P<magic>(?:%%?|!)\S.*)$")
FIXES = (
    (re.compile(r"^(?:!|%)\s*pip\b|^%conda\b"), "add the package to requirements.txt and delete the line"),
    (re.compile(r"^%run\b"), "move the shared code to a .py module next to the notebook and import it"),
    (re.compile(r"^%(?:cd|pwd|env|set_env)\b"),
     "use os.chdir / os.environ, or paths built from the step's training_folder"),
    (re.compile(r"^!|^%%(?:bash|sh|script|system)\b|^%(?:sx|system)\b"),
     "run the command with subprocess.run([...], check=True) in Python"),
)


def fix_for(magic: str) -> str:
    return next((fix for pattern, fix in FIXES if pattern.search(magic)),
                "delete it or write the same thing in plain Python")


def harmless(magic: str) -> bool:
    return any(magic == name or magic.startswith(name + " ") for name in HARMLESS)


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def clean_cell(source: str, where: str) -> tuple[str, list[str]]:
    """The cell without its harmless magics, and one problem per other magic or shell escape."""
    try:
        ast.parse(source)
        return source, []  # plain Python: no IPython syntax to look for
    except SyntaxError:
        pass
    lines, problems = [], []
    for number, line in enumerate(source.splitlines(), start=1):
        found = IPYTHON_LINE.match(line)
        if found is None:
            lines.append(line)
            continue
        magic = found["magic"].strip()
        if harmless(magic) and not found["assign"]:
            lines.append(f"{found['indent']}pass  # dropped: {magic}")
        else:
            problems.append(f"{where}, line {number}: `{line.strip()[:120]}` is IPython syntax a "
                            f"script cannot run. Fix: {fix_for(magic)}.")
    return "\n".join(lines), problems


def script_source(notebook: Path, shown: str | None = None) -> str:
    """The notebook's code cells as one script; ``NotebookError`` listing every magic to fix."""
    shown = shown or str(notebook)
    try:
        cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
        if not isinstance(cells, list):
            raise TypeError("'cells' is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as ex:
        raise NotebookError(f"{shown} could not be converted to a script ({type(ex).__name__}: "
                            f"{ex}). Open it in Jupyter, fix it and save it.") from ex
    parts = [f"# Converted from {Path(notebook).name} by quetzal_deploy.runtime.convert.\n{DISPLAY}\n"]
    problems = []
    for index, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        code, found = clean_cell(cell_source(cell), f"{shown}, cell {index}")
        problems += found
        parts.append(f"# Cell {index}\n{code}\n")
    if problems:
        raise NotebookError("\n".join([
            f"{shown} uses IPython syntax that cannot run on Lambda (cells are counted from 1, "
            "markdown included):", *problems,
            "Display-only magics are dropped: " + ", ".join(HARMLESS) + "."]))
    return "\n".join(parts)


def convert_folder(folder: Path) -> list[Path]:
    """Write the script of every notebook under ``folder``; all problems in one error."""
    converted, problems = [], []
    for notebook in sorted(Path(folder).rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        try:
            source = script_source(notebook, notebook.relative_to(folder.parent).as_posix())
        except NotebookError as ex:
            problems.append(str(ex))
            continue
        script = notebook.with_suffix(".py")
        script.write_text(source, encoding="utf-8")
        converted.append(script)
    if problems:
        raise NotebookError("\n\n".join(problems))
    return converted


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "notebooks").resolve()
    try:
        converted = convert_folder(folder)
    except NotebookError as ex:
        print(f"ERROR: {ex}", file=sys.stderr)
        return 1
    print(f"Converted {len(converted)} notebook(s) under {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
