"""The package's layers follow the course: data -> tokens -> blocks -> models -> learning -> pictures -> command line.

A module may import from its own layer and the layers below it, never from a layer above. The test reads
every `import` of every module in course_lib (with `ast`, without running them), so a new upward import
fails here with the module, the line and the two layers named.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "course_lib"

#: The allowed direction, written once: each layer may import only from layers at or before it.
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"__init__", "utils", "data"}),
    ("tokens", {"tokenization", "gguf"}),
    ("blocks", {"attention", "layers", "embeddings"}),
    ("models", {"models", "llama", "moe"}),
    ("learning", {"training", "generation", "metrics", "masking", "finetuning", "post_training", "pronunciation", "chat",
                  "scaling"}),
    ("pictures and widgets", {"viz", "diagrams", "widgets", "chat_widget", "sampling_playground"}),
    ("command line", {"cli", "assistant", "__main__"}),
    ("practice", {"exercises"}),
]
LAYER_OF = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}

#: The one documented exception: a model's `generate` shortcut method imports the decoding functions
#: inside the method (a convenience for `model.generate(...)`; the decoding code itself lives in learning).
ALLOWED_INSIDE_FUNCTIONS = {"generate"}

#: Upward imports that are still to be removed (issue 23: plotting leaves the learning modules). The test
#: fails when one of these disappears, so that this list stays true.
KNOWN_DEBTS = {("pronunciation", "viz")}


def _imports(path: Path) -> list[tuple[str, int, str | None]]:
    """(imported course_lib module, line, name of the enclosing function or None) for every import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "course_lib":
                parts = child.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in child.names]
                found.extend((name, child.lineno, function) for name in names)
            elif isinstance(child, ast.Import):
                found.extend((a.name.split(".")[1], child.lineno, function) for a in child.names
                             if a.name.startswith("course_lib."))
            visit(child, inner)

    visit(tree, None)
    return found


def _modules() -> list[tuple[str, Path]]:
    """(layer name, file) for every module: a top-level file is its own module, a subpackage's files share its name."""
    files = [(p.stem, p) for p in sorted(PACKAGE.glob("*.py"))]
    for package in sorted(d for d in PACKAGE.iterdir() if (d / "__init__.py").exists()):
        files += [(package.name, p) for p in sorted(package.glob("*.py"))]
    return files


def _upward_imports() -> tuple[list[str], set[tuple[str, str]]]:
    problems, debts = [], set()
    for module, path in _modules():
        for target, line, function in _imports(path):
            if target not in LAYER_OF or LAYER_OF[target] <= LAYER_OF[module]:
                continue
            if function in ALLOWED_INSIDE_FUNCTIONS:
                continue
            if (module, target) in KNOWN_DEBTS:
                debts.add((module, target))
                continue
            problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({LAYERS[LAYER_OF[module]][0]}) imports "
                            f"course_lib.{target} ({LAYERS[LAYER_OF[target]][0]}), a higher layer")
    return problems, debts


def test_every_module_has_a_layer():
    modules = {module for module, _ in _modules()}
    assert modules - set(LAYER_OF) == set(), "add the new module to LAYERS in this test"
    assert set(LAYER_OF) - modules == set(), "LAYERS names a module that no longer exists"


def test_no_layer_imports_a_higher_one():
    problems, _ = _upward_imports()
    assert not problems, "\n".join(problems)


def test_known_debts_are_still_real():
    _, debts = _upward_imports()
    assert debts == KNOWN_DEBTS, f"remove {sorted(KNOWN_DEBTS - debts)} from KNOWN_DEBTS: the import is gone"


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "attention.py"
    bad.write_text("from course_lib.training import train\n\ndef generate():\n    from course_lib.generation import generate\n")
    assert _imports(bad) == [("training", 1, None), ("generation", 4, "generate")]
    assert LAYER_OF["training"] > LAYER_OF["attention"]

