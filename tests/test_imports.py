"""Structure: no import cycles between cadft's modules, the README's group-to-module map holds, the wheel lists every
package and the tests mirror the packages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cadft"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_at_load(path: Path, modules: set[str]) -> set[str]:
    """cadft modules imported when `path` is imported (module level, including `if TYPE_CHECKING` blocks' exclusion)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in (
            ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) else []
        ):
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{alias.name}" for alias in child.names]
                found |= {name for name in names if name in modules} or (
                    {child.module} if child.module in modules else set()
                )
            elif isinstance(child, ast.Import):
                found |= {alias.name for alias in child.names if alias.name in modules}
    return found


def test_no_import_cycles():
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: imports_at_load(path, set(files)) - {name} for name, path in files.items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in graph[node]:
            assert state.get(target) != "open", "import cycle: " + " -> ".join([*trail, node, target])
            if target not in state:
                visit(target, [*trail, node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


def test_every_config_group_has_the_module_the_readme_names():
    """Each config group is a module (or package) of the same name inside its stage, as the README's table says."""
    readme = (REPO / "README.md").read_text()
    table = re.search(r"## Configuration at a glance\n.*?\n(\| group.*?)\n\n", readme, re.S).group(1)
    rows = {row.split("|")[1].strip(" `"): row.split("|")[3] for row in table.splitlines()[2:]}
    groups = {
        path.name for path in (REPO / "conf").iterdir() if path.is_dir() and path.name not in ("hydra", "experiment")
    }
    assert set(rows) == groups, "README's configuration table and conf/ disagree"
    for group, modules in rows.items():
        named = re.findall(r"`(cadft/[\w/]+(?:\.py)?)`", modules)
        assert named, group
        assert all((REPO / module).exists() for module in named), (group, named)
        assert any(Path(module).stem == group for module in named), (group, named)


def test_the_wheel_lists_every_package():
    """pyproject.toml lists cadft's packages and conf/'s folders (conf/ is mapped into the wheel as cadft.conf): none
    may be missing, or the wheel would lack it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    # cadft.eval.templates holds the report's templates (no Python)
    code = {module_name(path.parent) for path in PACKAGE.rglob("*.py")} | {"cadft.eval.templates"}
    conf_dir = REPO / "conf"
    conf = {
        ".".join(["cadft.conf", *folder.relative_to(conf_dir).parts])
        for folder in (conf_dir, *conf_dir.rglob("*"))
        if folder.is_dir()
    }
    assert set(config["packages"]) == code | conf
    assert config["package-dir"] == {"cadft.conf": "conf"}


def test_tests_mirror_the_packages():
    folders = {path.name for path in (REPO / "tests").iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == packages, f"tests/ folders {sorted(folders)} and cadft/ packages {sorted(packages)} differ"
