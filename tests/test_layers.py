"""The layers documented in docs/internals.md hold: every import of every module (read with ast) points to its
own package or a layer above, and inside a package with a documented order to an earlier group; fit/ never
imports torch; only cli/ prints or exits."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "scaling_cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def documented_layers() -> list[list[str]]:
    """The numbered list under '## Layers' in docs/internals.md: per layer, its backticked names."""
    text = (REPO / "docs" / "internals.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    return [re.findall(r"`([\w/]+)`", line) for line in section.splitlines() if re.match(r"\d+\. ", line)]


def layer_index() -> dict[str, int]:
    """Module or package prefix (scaling_cli.data) -> its layer's position, from the documented list."""
    index = {}
    for position, names in enumerate(documented_layers()):
        for name in names:
            dotted = name.rstrip("/").replace("/", ".")
            index[dotted if dotted == "scaling_cli" else f"scaling_cli.{dotted}"] = position
    return index


def component(module: str, index: dict[str, int]) -> str | None:
    """The documented name a module belongs to: itself, or the package it lives in."""
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        prefix = ".".join(parts[:end])
        if prefix in index:
            return prefix
    return module if module == "scaling_cli" else None  # the root names only itself, not every module


def imported_modules(tree: ast.AST) -> set[str]:
    """Every scaling_cli module an import statement names, at any depth of the module (functions included):
    the modules imported, plus `from package import module` names that are modules themselves."""
    found = all_imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return {name for name in found if name.split(".")[0] == "scaling_cli"}


def test_the_documented_layers_cover_every_module():
    index = layer_index()
    assert len(documented_layers()) >= 10
    unplaced = [module for module in MODULES if component(module, index) is None]
    assert not unplaced, f"modules missing from the Layers list in docs/internals.md: {unplaced}"


def test_every_module_imports_only_its_own_package_or_layers_above():
    index = layer_index()
    upward = []
    for module, tree in TREES.items():
        home = component(module, index)
        if home is None:
            continue  # reported by test_the_documented_layers_cover_every_module
        for target in imported_modules(tree):
            other = component(target, index)
            if other == home:
                continue
            if other is None or index[other] >= index[home]:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports that break docs/internals.md's layers:\n" + "\n".join(sorted(upward))


def documented_package_orders() -> dict[str, list[list[str]]]:
    """'- `pkg/`: `a` `b` < `c`' lines under '### Inside packages': package -> its groups of module names."""
    text = (REPO / "docs" / "internals.md").read_text()
    section = text.split("### Inside packages", 1)[1].split("\n## ", 1)[0]
    orders = {}
    for line in section.splitlines():
        if match := re.match(r"- `([\w/]+)/`: (.*)$", line):
            groups = [re.findall(r"`(\w+)`", group) for group in match[2].split(" < ")]
            orders["scaling_cli." + match[1].replace("/", ".")] = groups
    return orders


def backward_imports(package: str, groups: list[list[str]], trees: dict[str, ast.AST]) -> list[str]:
    """Imports inside `package` that point to the same or a later group than the importing module's."""
    position = {f"{package}.{name}": at for at, group in enumerate(groups) for name in group}
    found = []
    for module, tree in trees.items():
        if module not in position:
            continue
        for target in imported_modules(tree):
            inner = ".".join(target.split(".")[: package.count(".") + 2])
            if inner in position and inner != module and position[inner] >= position[module]:
                found.append(f"{module} imports {target}")
    return found


def test_inside_a_documented_package_modules_import_only_earlier_groups():
    orders = documented_package_orders()
    assert "scaling_cli.data" in orders
    for package, groups in orders.items():
        listed = [f"{package}.{name}" for group in groups for name in group]
        present = [m for m in MODULES if m.startswith(package + ".") and m.count(".") == package.count(".") + 1]
        assert sorted(listed) == sorted(present), f"{package}: the documented order lists {listed}, not {present}"
        backward = backward_imports(package, groups, TREES)
        assert not backward, f"imports against {package}'s documented order:\n" + "\n".join(sorted(backward))


def test_the_package_order_check_sees_a_circle():
    trees = {  # real module names, so that `from scaling_cli.data import prepared` is seen as a module
        "scaling_cli.data.options": ast.parse("from scaling_cli.data import prepared\n"),
        "scaling_cli.data.prepared": ast.parse("def f():\n    from scaling_cli.data.options import x\n"),
    }
    one_way = backward_imports("scaling_cli.data", [["options"], ["prepared"]], trees)
    other_way = backward_imports("scaling_cli.data", [["prepared"], ["options"]], trees)
    assert one_way == ["scaling_cli.data.options imports scaling_cli.data.prepared"]
    assert other_way == ["scaling_cli.data.prepared imports scaling_cli.data.options"]


def imports_torch(tree: ast.AST) -> bool:
    return any(name == "torch" or name.startswith("torch.") for name in all_imports(tree))


def all_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_fit_never_imports_torch_directly_or_through_our_modules():
    seen, todo = set(), [m for m in MODULES if m.startswith("scaling_cli.fit")]
    while todo:
        module = todo.pop()
        if module in seen or module not in TREES:
            continue
        seen.add(module)
        assert not imports_torch(TREES[module]), f"{module} (reached from fit/) imports torch"
        todo.extend(imported_modules(TREES[module]))
    fit_modules = [m for m in MODULES if m.startswith("scaling_cli.fit")]
    code = f"import sys; import {', '.join(fit_modules)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def output_and_exits(tree: ast.AST) -> list[str]:
    """print(...), sys.exit(...), exit()/quit(), SystemExit and typer anywhere in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit", "quit"):
            found.append(f"{node.func.id}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr == "exit" and getattr(node.value, "id", "") == "sys":
            found.append(f"sys.exit at line {node.lineno}")
        elif isinstance(node, ast.Name) and node.id == "SystemExit":
            found.append(f"SystemExit at line {node.lineno}")
    found += [f"imports {name}" for name in all_imports(tree) if name.split(".")[0] in ("typer", "click")]
    return found


def test_only_the_cli_prints_or_exits():
    offenders = {
        module: problems
        for module, tree in TREES.items()
        if not (module == "scaling_cli.cli" or module.startswith("scaling_cli.cli."))
        and (problems := output_and_exits(tree))
    }
    assert not offenders, offenders


def test_the_checks_see_what_they_look_for():
    tree = ast.parse("import sys\ndef f():\n    from scaling_cli.cli import main\n    print(1)\n    sys.exit(2)\n")
    assert imported_modules(tree) == {"scaling_cli.cli"}
    assert len(output_and_exits(tree)) == 2
    assert imports_torch(ast.parse("def f():\n    import torch.nn\n"))
