"""The repository's own rules: layers, the module graph the README shows, and the lint configuration."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()



def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            if node.module == "core":  # from core import a, b
                found |= {f"core.{a.name}" for a in node.names}
    return found


def core_graph() -> dict[str, list[str]]:
    """core module -> the core modules it imports."""
    graph = {}
    for path in sorted((ROOT / "core").glob("*.py")):
        if path.name == "__init__.py":
            continue
        mine = {m.removeprefix("core.") for m in imports(path) if m.startswith("core.")}
        graph[path.stem] = sorted(mine - {path.stem})
    return graph


def graph_text(graph: dict[str, list[str]]) -> str:
    """The README's module graph: each core module and what it imports, lowest layer first."""
    order, placed = [], set()
    while len(order) < len(graph):
        ready = sorted(m for m in graph if m not in placed and set(graph[m]) <= placed)
        if not ready:
            raise AssertionError(f"import circle among {sorted(set(graph) - placed)}")
        order += ready
        placed |= set(ready)
    return "\n".join(f"{m:<12} <- {', '.join(graph[m]) or '(nothing in core)'}" for m in order)


def test_core_has_no_import_circle_and_the_readme_shows_its_graph():
    text = graph_text(core_graph())  # raises on a circle
    block = re.search(r"<!-- module graph -->\n```\n(.*?)\n```", README, re.S)
    assert block, "README has no module graph block"
    assert block.group(1) == text, f"README's module graph is out of date; it is now:\n{text}"


def test_a_circle_is_found():
    with pytest.raises(AssertionError, match="import circle"):
        graph_text({"a": ["b"], "b": ["c"], "c": ["a"], "d": []})


def test_core_never_imports_streamlit_and_pages_never_import_torch():
    for path in (ROOT / "core").glob("*.py"):
        assert not {m for m in imports(path) if m.split(".")[0] == "streamlit"}, path
    for path in [*(ROOT / "pages").glob("*.py"), ROOT / "app.py"]:
        heavy = {m for m in imports(path) if m.split(".")[0] in ("torch", "transformers", "sklearn", "onnxruntime")}
        assert not heavy, f"{path.name} imports {heavy}: model code belongs in core/"


def test_every_slot_is_declared_by_the_module_the_catalog_names():
    from core import catalog
    from core.registry import registry

    owners = dict(re.findall(r"^    ([\w, ]+?)\s+core/(\w+)\.py", catalog.__doc__, re.M))
    declared = {}
    for slots, module in owners.items():
        for slot in slots.split(","):
            declared[slot.strip()] = module
    assert set(declared) == set(registry.slots())
    for slot, module in declared.items():
        source = (ROOT / "core" / f"{module}.py").read_text()
        assert "registry.declare(" in source, module
        assert registry.spec(slot).loader.__module__ in (f"core.{module}", "functools"), slot


def test_tests_mirror_the_modules_they_test():
    modules = {p.stem for p in (ROOT / "core").glob("*.py")} | {"pages", "browser", "layout", "roles", "hostile", "scaleout"}
    for path in (ROOT / "tests").glob("test_*.py"):
        assert path.stem.removeprefix("test_") in modules, f"{path.name} tests no module of that name"


def test_ruff_is_clean_with_the_repositorys_configuration():
    assert "line-length" in (ROOT / "ruff.toml").read_text()
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is not in the virtual environment: run `make setup` (requirements.txt pins it)"
    out = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
