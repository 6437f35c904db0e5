"""The core's import structure: one way down the layers, and no cycle, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "neds_framework"

#: Higher layers may import lower ones, never the reverse (README, "How it fits together").
LAYERS = [
    ("neds_framework.api",),  # the public facade over everything below
    ("neds_framework.cli",),
    ("neds_framework.engine",),
    ("neds_framework.model", "neds_framework.recipe", "neds_framework.recipe_schema", "neds_framework.recipe_merge",
     "neds_framework.recipe_structure", "neds_framework.plugins", "neds_framework.contracts"),
    ("neds_framework.data", "neds_framework.registry", "neds_framework.modality"),
    ("neds_framework.errors", "neds_framework.atomic", "neds_framework.hookspecs", "neds_framework.stats",
     "neds_framework"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is in no layer; add it to LAYERS"
    return level


def core_imports() -> dict[str, set[str]]:
    """module -> the core modules it imports anywhere in its body (functions included)."""
    modules = {module_name(p): p for p in CORE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target in modules and target != name and target != "neds_framework":
                    found.add(target)
        graph[name] = found
    return graph


def test_imports_go_down_the_layers_only():
    wrong = [(a, b) for a, deps in core_imports().items() for b in deps if layer_of(b) < layer_of(a)]
    assert not wrong, "imports from a lower layer up to a higher one: " + ", ".join(f"{a} -> {b}" for a, b in sorted(wrong))


def test_no_import_cycle():
    graph = core_imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_public_api_exports_what_it_names():
    import neds_framework.api as api

    assert [name for name in api.__all__ if not hasattr(api, name)] == []


def test_plugins_and_contributing_import_the_core_only_through_the_api():
    """Built-in plugins, the example third-party plugin and CONTRIBUTING's code use `neds_framework.api`."""
    root = CORE.parent
    sources = {p: p.read_text() for p in [*(root / "plugins").rglob("*.py"), *(root / "tests" / "plugins").rglob("*.py")]}
    contributing = (root / "CONTRIBUTING.md").read_text()
    blocks = contributing.split("```python")[1:]
    sources.update({f"CONTRIBUTING.md block {i}": b.split("```")[0] for i, b in enumerate(blocks)})
    wrong = []
    for where, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "neds_framework":
                if node.module != "neds_framework.api":
                    wrong.append(f"{where}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                wrong += [f"{where}: import {a.name}" for a in node.names
                          if a.name.split(".")[0] == "neds_framework" and a.name != "neds_framework.api"]
    assert not wrong, wrong
    assert len(blocks) >= 3


def test_the_core_names_no_modality():
    """No built-in modality name in the core's code (docstrings and comments aside): what the core
    knows about a modality comes from its ModalitySpec. Ray Tune's ``choice`` sampler is not the
    modality of that name."""
    import io
    import re
    import tokenize

    from neds_modalities.plugin import MODALITIES

    pattern = re.compile(r"\b(" + "|".join(MODALITIES) + r")\b")
    allowed = {("engine/stages/search.py", "choice"), ("engine/settings.py", "choice")}
    found = []
    for path in CORE.rglob("*.py"):
        source = path.read_text()
        tree = ast.parse(source)
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
                      and isinstance(n.body[0].value.value, str)}
        doc_lines = set()
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and id(n) in docstrings:
                doc_lines.update(range(n.lineno, n.end_lineno + 1))
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE) or tok.start[0] in doc_lines:
                continue
            for name in pattern.findall(tok.string):
                where = str(path.relative_to(CORE))
                if (where, name) not in allowed:
                    found.append(f"{where}:{tok.start[0]}: {name}")
    assert not found, found
