"""The documents are maps of the tree as it is: docs/architecture.md's module table names every
module under receiver/, and the files the documents and the code's comments point a reader to
exist. (The layer diagram is test_layers.py's, README's tables test_readme.py's.)
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness import ROOT

RECEIVER = ROOT / "receiver"
ARCHITECTURE = ROOT / "docs/architecture.md"


def table_rows(text: str) -> dict[str, str]:
    """The module table: each row's first cell (its module or directory names) -> its text."""
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    return {line.split(" | ", 1)[0]: line for line in section.splitlines()
            if line.startswith("| `")}


def unnamed(rows: dict[str, str], modules: list[str]) -> list[str]:
    """The modules (paths under receiver/) no row names: a module is named by its path in
    any row (`core/model.py`) or, as `name.py` or `name.`, in the row of its directory
    (`store/sqlite/`)."""
    missing = []
    for module in modules:
        directory, _, name = module.rpartition("/")
        own = any(f"`{module}`" in row for row in rows.values())
        inside = rows.get(f"| `{directory}/`", "")
        if not own and not re.search(rf"`{re.escape(name)}`|`{re.escape(name[:-3])}[.`]",
                                     inside):
            missing.append(module)
    return missing


def test_the_module_table_names_every_module() -> None:
    modules = sorted(str(p.relative_to(RECEIVER)) for p in RECEIVER.rglob("*.py")
                     if p.name != "__init__.py" and p.parent != RECEIVER)
    missing = unnamed(table_rows(ARCHITECTURE.read_text()), modules)
    assert not missing, f"docs/architecture.md's module table names no row for: {missing}"


def test_a_module_counts_as_named_in_its_own_row_or_its_directorys() -> None:
    rows = table_rows("\n## Modules\n| `a/x.py` | x, and `c/v.py` |\n"
                      "| `b/` | `y.py` (y), `store.Z` |\n")
    assert unnamed(rows, ["a/x.py", "b/y.py", "b/store.py", "b/w.py", "c/x.py", "c/v.py"]) == [
        "b/w.py", "c/x.py"]


def test_every_file_the_documents_name_exists() -> None:
    missing = []
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for path in re.findall(r"(?<![\w/.])((?:receiver|tests|bench|deploy|docs)/[\w./-]*\w)",
                               document.read_text()):
            if not (ROOT / path).exists():
                missing.append(f"{document.name}: {path}")
    assert not missing, missing


def commented_files(source: str) -> list[str]:
    """The `.py` files a module's text names (`web/encoding.py`, `notify.py`): its comments
    and docstrings are where such names stand."""
    return re.findall(r"(?<![\w/.])([\w/]*\w\.py)\b", source)


def test_every_file_the_code_names_in_its_comments_exists() -> None:
    """A comment that sends a reader to `http/encoding.py` after the move to web/ misleads:
    each path must exist (under receiver/ or the repository), each bare name somewhere under
    receiver/."""
    names = {p.name for p in RECEIVER.rglob("*.py")}
    missing = []
    for module in sorted(RECEIVER.rglob("*.py")):
        for named in commented_files(module.read_text()):
            if "/" in named:
                found = ((RECEIVER / named).exists() or (ROOT / named).exists()
                         or any(RECEIVER.rglob(named)))
            else:
                found = named in names or named.startswith("test_")
            if not found:
                missing.append(f"{module.relative_to(ROOT)}: {named}")
    assert not missing, missing


def test_the_comment_reader_finds_paths_and_names() -> None:
    assert commented_files("# see web/encoding.py and notify.py; not x.pyc") == [
        "web/encoding.py", "notify.py"]
    assert Path(RECEIVER / "web/encoding.py").exists()
