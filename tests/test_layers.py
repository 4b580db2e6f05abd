"""Imports inside receiver/ point one way: no cycle, and no module imports from a layer above.

Every module under receiver/ is read with `ast` (not imported), and every import of a receiver
module counts: at the top, inside a function, or under TYPE_CHECKING, since each is a
dependency a reader has to follow. A module's layer is that of the longest entry of LAYERS
that names it or a package above it, so a new module takes its package's layer and a new
package must be placed here once. docs/architecture.md draws the same order.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "receiver"

# Low to high: a module may import from its own layer and those below it. Names are relative
# to `receiver.`; "" is the package itself (its version). A module takes the layer of the
# longest entry naming it or a package above it: a new module in a package lands with its
# package; a module that applies the domain to the store on a clock (a `service.py`, a loop)
# is named in the services layer. docs/architecture.md ("Layers") says why each sits where.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "core"),
    ("telemetry",),
    # The config's data: the YAML with positions, the schema, its problems, storage settings.
    ("config.yamlsource", "config.schema", "config.problems", "config.storage"),
    # A route carries its staleness rule, so the rule sits beside the route tree.
    ("alertmanager", "routing", "escalation.staleness"),
    # The pure domain: values in, decisions out; and the store's records, plain data that the
    # domain and every store speak (the typed outbox message among them).
    ("ingest", "oncall", "escalation", "notify", "delivery", "incidents", "heartbeats",
     "maintenance", "store.records"),
    # The validated Config holds the domain's values (policies, schedules, the route tree),
    # so it sits above the packages that define them; none of them imports it.
    ("config",),
    ("store",),
    # Services: the domain applied to the store, on the clock.
    # incidents.declare and .assignment read requests against the Config, as drills do.
    ("incidents.service", "incidents.drills", "incidents.declare", "incidents.assignment",
     "incidents.desk", "escalation.responder", "escalation.timer",
     "delivery.dispatch", "delivery.render", "oncall.service", "oncall.handoffs",
     "heartbeats.service", "maintenance.service"),
    ("web",),
    # The builder turns a file into a Config: only the daemon and the CLI load one.
    ("app", "config.build"),
    ("cli", "__main__"),
    # Test doubles: above everything, so no production module may import them.
    ("testing",),
)


def module_name(path: Path, root: Path) -> str:
    """`receiver/config/model.py` -> "config.model"; a package's __init__ is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_tree(root: Path = ROOT) -> dict[str, str]:
    return {module_name(p, root): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*.py"))}


def imports(name: str, source: str, known: set[str], package: bool) -> set[str]:
    """The receiver modules `source` (module `name`) imports, wherever the import stands."""
    found: set[str] = set()
    base = name.split(".") if package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(_inside(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                target = _inside(node.module or "")
            for alias in node.names:
                # `from receiver.config import model` imports the module config.model.
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
    return {m for m in found if m is not None and m in known and m != name}


def _inside(module: str) -> str:
    if module == "receiver":
        return ""
    return module.removeprefix("receiver.") if module.startswith("receiver.") else "\0"


def graph(tree: Mapping[str, str]) -> dict[str, set[str]]:
    known = set(tree)
    packages = {m for m in known if any(o.startswith(f"{m}.") for o in known)} | {""}
    return {m: imports(m, src, known, m in packages) for m, src in tree.items()}


def layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int | None:
    best: tuple[int, int] | None = None  # (length of the entry, layer)
    for level, entries in enumerate(layers):
        for entry in entries:
            if module == entry or (entry and module.startswith(f"{entry}.")):
                length = len(entry.split(".")) if entry else 0
                if best is None or length > best[0]:
                    best = (length, level)
    return best[1] if best is not None else None


def upward(
    edges: Mapping[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS
) -> list[str]:
    """Each import of a module from a higher layer, and each module no layer names."""
    problems = []
    for module in sorted(edges):
        mine = layer_of(module, layers)
        if mine is None:
            problems.append(f"receiver.{module} is in no layer: add its package to LAYERS")
            continue
        for target in sorted(edges[module]):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs > mine:
                problems.append(
                    f"receiver.{module} (layer {mine}) imports receiver.{target} "
                    f"(layer {theirs}, above it)"
                )
    return problems


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Each group of modules that reach one another through imports, as one cycle through
    its members for the failure message."""
    reach = {m: _reachable(edges, m) for m in edges}
    found: list[list[str]] = []
    placed: set[str] = set()
    for module in sorted(edges):
        if module in placed or module not in reach[module]:
            continue
        component = sorted(o for o in reach[module] if module in reach[o])
        placed.update(component)
        found.append(_a_cycle(component, edges))
    return found


def _reachable(edges: Mapping[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(edges.get(start, ()))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges.get(module, ()))
    return seen


def _a_cycle(component: list[str], edges: Mapping[str, set[str]]) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    while True:
        step = sorted(edges[path[-1]] & members)
        back = [w for w in step if w == start]
        if back and len(path) > 1:
            return [*path, start]
        ahead = [w for w in step if w not in seen]
        if not ahead:
            return [*path, start]
        path.append(ahead[0])
        seen.add(ahead[0])


def _render(cycle: list[str]) -> str:
    return " -> ".join(f"receiver.{m}" if m else "receiver" for m in cycle)


def test_no_import_cycle_inside_receiver() -> None:
    found = cycles(graph(read_tree()))
    assert not found, "import cycles:\n" + "\n".join(_render(c) for c in found)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    problems = upward(graph(read_tree()))
    assert not problems, "\n".join(problems)


def test_no_production_module_imports_the_test_doubles() -> None:
    edges = graph(read_tree())
    found = sorted(f"receiver.{m} imports receiver.{t}" for m, targets in edges.items()
                   if not m.startswith("testing") for t in targets if t.startswith("testing"))
    assert not found, found


def test_every_package_opens_with_a_docstring_saying_what_lives_there() -> None:
    bare = [name or "receiver" for name, source in read_tree().items()
            if (ROOT / name.replace(".", "/") / "__init__.py").exists()
            and not ast.get_docstring(ast.parse(source))]
    assert not bare, f"packages without a docstring: {bare}"


# -- the checks can fail --------------------------------------------------------------------

def _synthetic(files: Mapping[str, str]) -> dict[str, set[str]]:
    return graph(dict(files))


def test_a_cycle_is_found_through_any_kind_of_import() -> None:
    edges = _synthetic({
        "core": "",
        "core.a": "from receiver.core import b\n",
        "core.b": "def f() -> None:\n    from receiver.core.c import x\n",
        "core.c": "import typing\nif typing.TYPE_CHECKING:\n    import receiver.core.a\n",
        "core.d": "from receiver.core import a\n",  # on the way in, not on the cycle
    })
    assert cycles(edges) == [["core.a", "core.b", "core.c", "core.a"]]


def test_a_relative_import_counts() -> None:
    edges = _synthetic({"store": "", "store.a": "from . import b\n",
                        "store.b": "from .a import x\n"})
    assert cycles(edges) == [["store.a", "store.b", "store.a"]]


def test_an_upward_import_is_named_with_both_layers() -> None:
    edges = _synthetic({
        "core": "", "core.model": "from receiver.web.api import handler\n",
        "web": "", "web.api": "from receiver.core.model import Alert\n",
    })
    assert upward(edges) == [
        f"receiver.core.model (layer 0) imports receiver.web.api (layer {layer_of('web')}, "
        "above it)"
    ]


def test_a_module_takes_its_package_layer_unless_named_itself() -> None:
    assert layer_of("escalation.engine") == layer_of("escalation")
    assert layer_of("escalation.responder") == layer_of("incidents.service")
    assert layer_of("config.build") == layer_of("app")
    assert layer_of("config.build.routes") == layer_of("app")
    assert layer_of("config.schema") < layer_of("routing")  # type: ignore[operator]
    assert layer_of("nowhere") is None


def test_a_module_in_no_layer_is_reported() -> None:
    assert upward({"newthing.x": set()}) == [
        "receiver.newthing.x is in no layer: add its package to LAYERS"
    ]


@pytest.mark.parametrize("module", ["config.model", "routing.tree", "store.sqlite.store"])
def test_the_real_tree_is_read(module: str) -> None:
    edges = graph(read_tree())
    assert edges[module], f"{module} imports nothing of receiver?"


def diagram(text: str) -> list[str]:
    """The layer diagram of docs/architecture.md's Modules section: each layer's text (its
    number's line and the indented lines that follow it), lowest first."""
    block = text.split("\n## Modules\n", 1)[1].split("```\n", 2)[1]
    layers: dict[int, str] = {}
    number = -1
    for line in block.splitlines():
        head = re.match(r"\s*(\d+)\s+(.*)", line)
        if head:
            number = int(head[1])
            layers[number] = head[2]
        elif number >= 0:
            layers[number] += " " + line.strip()
    return [layers[n] for n in sorted(layers)]


def drawn(entry: str, layer: str) -> bool:
    """A LAYERS entry is drawn in its layer when the layer's text names it whole, or names
    its package first (the layer's heading, as `config data`) and then its module."""
    def word(name: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", layer) is not None

    package, _, module = entry.rpartition(".")
    return word(entry) or bool(package) and layer.startswith(package) and word(module)


def test_the_architecture_diagram_draws_every_layer_entry() -> None:
    text = (ROOT.parent / "docs/architecture.md").read_text()
    drawn_layers = diagram(text)
    assert len(drawn_layers) == len(LAYERS)
    missing = [f"layer {level}: {entry}" for level, entries in enumerate(LAYERS)
               for entry in entries if entry and not drawn(entry, drawn_layers[level])]
    assert not missing, f"docs/architecture.md's layer diagram lacks: {missing}"


def test_the_diagram_reader_tells_a_drawn_entry_from_a_missing_one() -> None:
    layers = diagram("\n## Modules\n\n```\n  1  config data  yamlsource, schema\n"
                     "  0  services     incidents.service,\n      oncall.service\n```\n")
    assert layers == ["services     incidents.service, oncall.service",
                      "config data  yamlsource, schema"]
    assert drawn("config.schema", layers[1])
    assert drawn("oncall.service", layers[0])
    assert not drawn("heartbeats.service", layers[0])
    assert not drawn("service", layers[1])
