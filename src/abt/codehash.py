"""Which code a job runs, and a digest of it (torch-free: read at the workflow's parse time).

Snakemake does not notice edits to Python modules a job imports, and depending on all of
``src/`` would re-run every pre-training for a caption edit in the report. So each rule depends
on the code *its* job executes: :func:`code_digest` of the job's entry point (``module`` or
``module:function``) is a ``params:`` entry of the rule, and a change of that digest re-runs the
job and what depends on it (``Params have changed since last execution``).

What counts as the code of an entry point:

* the imports of ``abt`` modules in the function's body and at its module's top level (static,
  from the source: nothing is imported);
* then, transitively, every ``abt`` module those modules import anywhere (at the top or inside a
  function), with their parent packages' ``__init__.py``;
* each module's package data: the non-Python files in its package folder and in sub-folders
  that are not Python packages (report templates, the transcribed published numbers, the HEAR
  kit shims).

A module that cannot change a result says so with a top-level ``RESULT_NEUTRAL = "<why>"``
(the experiment trackers, which mirror metric rows the CSV files already hold): it is no part of
any digest, so editing it re-runs nothing and does not stop a resume.

A module that dispatches to code it imports lazily, one function per command (the command
line, :mod:`abt.cli`), says so with a top-level ``CODE_BY_FUNCTION = "<why>"``: reached through
another module's import, its file and its top-level imports count, not what each command's
function imports; a job that runs one of its commands names that function as an entry point
(``abt.cli:_pre``: the pre-training job runs ``abt pretrain`` under torchrun).

A run's trainer records the same digest of ``abt.trainer`` so that a resume checkpoint written by
other code is not continued (:mod:`abt.trainer`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Iterable
from pathlib import Path

#: this module decides which code a job's digest covers; it changes no result (a change of what
#: it counts changes the digests it computes, and so re-runs what it should)
RESULT_NEUTRAL = "computes which code a job runs, never a result"

PACKAGE = "abt"
SRC = Path(__file__).resolve().parent  # .../src/abt


def module_file(name: str) -> Path | None:
    """The source file of an ``abt`` module (``None`` if it is not one of ours)."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    parts = name.split(".")[1:]
    if not parts:
        return SRC / "__init__.py"
    rel = Path(*parts)
    for cand in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _imported(node: ast.AST, current: str) -> set[str]:
    """``abt`` modules named by the import statements under ``node``."""
    out: set[str] = set()
    own = module_file(current)
    package = (
        current if own is not None and own.name == "__init__.py" else current.rsplit(".", 1)[0]
    )
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            if n.level:  # relative import
                base = package.split(".")
                base = base[: len(base) - (n.level - 1)]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in n.names)  # `from abt import steps`
    return {m for m in out if module_file(m) is not None}


@functools.cache
def _module_imports(name: str) -> frozenset[str]:
    """The ``abt`` modules module ``name`` imports: anywhere in it, or only at its top level
    when it declares ``CODE_BY_FUNCTION`` (:func:`by_function`)."""
    path = module_file(name)
    assert path is not None, name
    tree = ast.parse(path.read_text())
    if not by_function(name):
        return frozenset(_imported(tree, name))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    return frozenset(m for n in top for m in _imported(n, name))


def _marked(name: str, marker: str) -> bool:
    """Whether module ``name`` assigns a non-empty string constant to ``marker`` at its top
    level."""
    path = module_file(name)
    assert path is not None, name
    for n in ast.parse(path.read_text()).body:
        if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == marker for t in n.targets
        ):
            return isinstance(n.value, ast.Constant) and bool(n.value.value)
    return False


@functools.cache
def result_neutral(name: str) -> bool:
    """Whether module ``name`` declares ``RESULT_NEUTRAL = "<why>"`` at its top level."""
    return _marked(name, "RESULT_NEUTRAL")


@functools.cache
def by_function(name: str) -> bool:
    """Whether module ``name`` declares ``CODE_BY_FUNCTION = "<why>"`` at its top level."""
    return _marked(name, "CODE_BY_FUNCTION")


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _entry_imports(entry: str) -> set[str]:
    """The modules an entry point imports: a whole module's imports, or one function's (with the
    functions of its module it calls) and its module's top-level ones."""
    module, _, func = entry.partition(":")
    path = module_file(module)
    if path is None:
        raise ValueError(f"{module!r} is not a module of the {PACKAGE} package")
    if not func:
        return set(_module_imports(module))
    tree = ast.parse(path.read_text())
    defs = {
        n.name: n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    if func not in defs:
        raise ValueError(f"{module} has no function or class {func!r}")
    # the function, and the functions/classes of its module it refers to, transitively
    todo, used = [func], set()
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
    found: set[str] = set()
    for n in [*(n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)),
              *(defs[u] for u in used)]:  # fmt: skip
        found |= _imported(n, module)
    return found


def code_modules(entries: str | Iterable[str]) -> list[str]:
    """Every ``abt`` module the entry points execute (sorted)."""
    entries = [entries] if isinstance(entries, str) else list(entries)
    seen: set[str] = set()
    todo: list[str] = []
    for e in entries:
        module = e.partition(":")[0]
        seen.add(module)  # its file counts; what it imports is the entry's business
        todo += sorted(_with_parents(module) - {module}) + sorted(_entry_imports(e))
    while todo:
        m = todo.pop()
        for x in sorted(_with_parents(m)):
            if x not in seen:
                seen.add(x)
                if not result_neutral(x):  # its code, and what only it imports, count not
                    todo += sorted(_module_imports(x))
    return sorted(m for m in seen if not result_neutral(m))


def _package_data(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.name == "__pycache__" or p.name.startswith("."):
            continue
        if p.is_file() and p.suffix not in (".py", ".pyc"):
            out.append(p)
        elif p.is_dir() and not (p / "__init__.py").is_file():
            out += [q for q in sorted(p.rglob("*")) if q.is_file() and "__pycache__" not in q.parts]
    return out


def code_files(entries: str | Iterable[str]) -> list[Path]:
    """The files behind :func:`code_modules`: sources and their packages' data files."""
    files: set[Path] = set()
    for m in code_modules(entries):
        path = module_file(m)
        assert path is not None
        files.add(path)
        if path.name == "__init__.py":
            files.update(_package_data(path.parent))
    return sorted(files)


def code_digest(entries: str | Iterable[str]) -> str:
    """SHA-256 (hex, 16 characters) over the paths and contents of :func:`code_files`."""
    h = hashlib.sha256()
    for p in code_files(entries):
        h.update(str(p.relative_to(SRC)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]
