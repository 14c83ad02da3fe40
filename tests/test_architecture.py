"""The import rules of ../shared/ARCHITECTURE.md, checked by walking every module's imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNEL_ALLOWED = {"numpy", "numba", "math", "__future__", "mpigd.kernels"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return "mpigd.kernels" if name.startswith("mpigd.kernels") else name.split(".")[0]


def test_kernels_import_only_numpy_and_numba():
    for path in (ROOT / "kernels").rglob("*.py"):
        # The JIT policy also stamps Numba's cache with a digest of the kernels' sources.
        allowed = KERNEL_ALLOWED | ({"functools", "hashlib", "os"} if path.name == "jit.py" else set())
        bad = {name for name in _imports(path) if _top(name) not in allowed}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_mpigd_comm_imports_mpi4py():
    for path in list((ROOT / "mpigd").rglob("*.py")) + list((ROOT / "kernels").rglob("*.py")):
        if ROOT / "mpigd" / "comm" in path.parents:
            continue
        bad = {name for name in _imports(path) if name.split(".")[0] == "mpi4py"}
        assert not bad, f"{path.relative_to(ROOT)} imports mpi4py"


def test_names_offered_by_the_configuration_are_the_registered_ones():
    from mpigd import algorithms, config, models
    from mpigd.comm import strategy_names

    assert set(config.MODELS) == set(models.REGISTRY)
    assert set(config.STRATEGIES) == set(strategy_names())
    assert set(config.ALGORITHMS) == set(algorithms.REGISTRY)


def test_every_package_directory_is_listed_for_installation():
    # An editable install serves whole directories, so a package missing from pyproject's list
    # passes every other test and is absent only from a built wheel (mpigd.cli once was).
    tomllib = pytest.importorskip("tomllib")
    setuptools_table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source_dirs = {name: ROOT / directory for name, directory in setuptools_table["package-dir"].items()}
    source_dirs.setdefault("mpigd", ROOT / "mpigd")
    on_disk = set()
    for top, directory in source_dirs.items():
        for init in directory.rglob("__init__.py"):
            relative = init.parent.relative_to(directory).parts
            on_disk.add(".".join((top, *relative)))
    assert on_disk == set(setuptools_table["packages"])
