"""The shape of the library: the import graph flows down the pipeline (no cycle at any depth, no
private name used across modules), one registry knows the allocators, a new allocator is one
function, configurations own their cache keys, ARCHITECTURE.md lists every subcommand, every test
file is named after what it tests."""
import ast
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dlp_lib"

# The pipeline's floors and each module's code stages are declared once, in dlp_lib/layout.py: a module
# may import modules of its own floor or below, never above.
from dlp_lib.layout import MODULES, STAGES, floor_of  # noqa: E402


def _modules(package: Path = PACKAGE):
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        yield ".".join(rel.parts), path


def _resolve(target: str, names) -> str | None:
    """The module a dotted name inside the package denotes: a module, a package (its __init__), or None."""
    if target in names:
        return target
    return f"{target}.__init__" if f"{target}.__init__" in names else None


def _import_statements(path: Path, module: str, package_name: str = "dlp_lib"):
    """(imported module, imported name or None, line) for every import of a module of the package, at
    every depth (function bodies included), relative or absolute, as dotted names inside the package
    ("" is the package itself). `module` is the file's dotted name ("x.__init__" for a package)."""
    package_parts = module.split(".")[:-1]  # a module's package; for "x.__init__" that is x
    prefix = package_name + "."
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module == package_name:
                target = ""
            elif node.module and node.module.startswith(prefix):
                target = node.module[len(prefix):]
            else:
                continue
            for alias in node.names:
                yield target, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package_name or alias.name.startswith(prefix):
                    yield alias.name[len(prefix):] if alias.name != package_name else "", None, node.lineno


def _import_graph(package: Path = PACKAGE, package_name: str = "dlp_lib") -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its code (`from x import y` imports the
    module x.y when there is one, else x)."""
    modules = dict(_modules(package))
    graph = {}
    for module, path in modules.items():
        edges = set()
        for target, name, _ in _import_statements(path, module, package_name):
            joined = f"{target}.{name}" if target and name else (name or target)
            resolved = (_resolve(joined, modules) if name else None) or _resolve(target or "__init__", modules)
            if resolved and resolved != module:
                edges.add(resolved)
        graph[module] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as a path (first == last), or None."""
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n, stack + [n])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m, [m])
            if found:
                return found
    return None


def test_every_module_has_a_floor_and_known_stages():
    missing = sorted(m for m, _ in _modules() if floor_of(m) is None)
    assert not missing, f"modules without an entry in dlp_lib/layout.py's MODULES: {missing}"
    unknown = {name: stages for name, (_, stages) in MODULES.items() if set(stages) - set(STAGES)}
    assert not unknown, f"layout entries naming unknown stages: {unknown}"
    stale = sorted(name for name in MODULES if not any(m == name or m.startswith(name + ".") for m, _ in _modules()))
    assert not stale, f"layout entries for modules that do not exist: {stale}"


def test_no_upward_imports():
    bad = []
    for module, targets in _import_graph().items():
        mine = floor_of(module)
        for target in targets:
            theirs = floor_of(target)
            if theirs is not None and theirs > mine:
                bad.append(f"{module} (floor {mine}) imports {target} (floor {theirs})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    """No cycle among the modules' imports, counting the ones inside functions: a cycle hidden in a
    function body still ties the two modules together (neither can be understood, tested or moved
    without the other)."""
    cycle = _find_cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _plant(root: Path, files: dict[str, str]) -> Path:
    package = root / "planted"
    for rel, text in files.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    return package


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    """A planted package whose two modules import each other only inside functions (one relative, one
    absolute, one a level down): the check reports the cycle; without the back edge it reports none."""
    files = {"__init__.py": "",
             "sub/__init__.py": "",
             "sub/a.py": "def f():\n    from ..b import g\n    return g\n",
             "b.py": "import os\n\n\ndef g():\n    if os.sep:\n        from planted.sub import a\n        return a\n"}
    cycle = _find_cycle(_import_graph(_plant(tmp_path / "cyclic", files), "planted"))
    assert cycle is not None and {"sub.a", "b"} <= set(cycle) and cycle[0] == cycle[-1]
    files["b.py"] = "def g():\n    return 1\n"
    assert _find_cycle(_import_graph(_plant(tmp_path / "acyclic", files), "planted")) is None
    # a package's own relative imports count too (its __init__ importing a module that imports it back)
    files = {"__init__.py": "from . import m\n", "m.py": "def h():\n    from . import helper\n    return helper\n",
             "helper.py": "def k():\n    import planted\n    return planted\n"}
    cycle = _find_cycle(_import_graph(_plant(tmp_path / "init", files), "planted"))
    assert cycle is not None and "__init__" in cycle


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_uses(package: Path = PACKAGE, package_name: str = "dlp_lib") -> list[str]:
    """Every use of another module's private name: `from x import _y`, and `x._y` where x names a
    module of the package (bound by `import` or `from ... import module`)."""
    modules = dict(_modules(package))
    found = []
    for module, path in modules.items():
        bound = set()  # local names of the package's modules in this file
        for target, name, line in _import_statements(path, module, package_name):
            if name is None:
                continue
            joined = f"{target}.{name}" if target else name
            if _resolve(joined, modules):
                bound.add(name)
            elif _is_private(name):
                found.append(f"{module}:{line} imports {name} from {target or package_name}")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound.update(a.asname for a in node.names if a.asname and a.name.startswith(package_name))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and _is_private(node.attr)):
                found.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_names_across_modules():
    """A leading underscore means "only this module uses it": no other module of the library imports
    or reaches for it (a name two modules share is public, documented where it lives)."""
    found = _private_uses()
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_the_private_name_check_sees_both_spellings(tmp_path):
    files = {"__init__.py": "", "home.py": "def _helper():\n    return 1\n\n\ndef public():\n    return _helper()\n",
             "user.py": "from .home import _helper\n",
             "other.py": "def f():\n    from . import home\n    return home._helper() + home.public()\n",
             "aliased.py": "import planted.home as h\n\n\ndef f():\n    return h._helper()\n"}
    found = _private_uses(_plant(tmp_path, files), "planted")
    assert sorted(f.split(":")[0] for f in found) == ["aliased", "other", "user"], found
    assert not any("public" in f for f in found)


def _lab_parameters(package: Path, floor, lab_floor: int) -> list[str]:
    """Every function (or lambda) with a parameter named `lab` in a module whose floor is below
    `lab_floor` (the Lab's)."""
    found = []
    for module, path in _modules(package):
        if floor(module) is None or floor(module) >= lab_floor:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                if any(arg.arg == "lab" for arg in a.posonlyargs + a.args + a.kwonlyargs):
                    found.append(f"{module}:{node.lineno} {getattr(node, 'name', 'lambda')}(lab, ...)")
    return found


def test_nothing_below_the_lab_takes_a_lab():
    """A function that takes a Lab depends on it at run time: below `experiment` (which holds the Lab)
    that dependency would run upward whatever the imports say. Such functions live in `runs/` (above
    the Lab) or take what they need as arguments."""
    found = _lab_parameters(PACKAGE, floor_of, floor_of("experiment"))
    assert not found, "functions below the Lab's floor that take a lab:\n" + "\n".join(found)


def test_the_lab_parameter_check_fires(tmp_path):
    files = {"__init__.py": "", "low.py": "def result(lab, cfg):\n    return lab.run(cfg)\n\n\n"
                                         "def fine(model):\n    return model\n",
             "keyword.py": "class C:\n    def m(self, *, lab=None):\n        return lab\n",
             "lab.py": "class Lab:\n    pass\n", "high.py": "def result(lab, cfg):\n    return lab.run(cfg)\n"}
    floors = {"__init__": 2, "low": 0, "keyword": 0, "lab": 1, "high": 2}
    found = _lab_parameters(_plant(tmp_path, files), floors.get, floors["lab"])
    assert sorted(f.split(" ")[0] for f in found) == ["keyword:2", "low:1"], found


def test_architecture_lists_every_subcommand():
    import argparse

    from dlp_lib.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    table = {line.split("|")[1].strip().strip("`") for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines()
             if line.startswith("| `")}
    assert table == set(sub.choices), f"ARCHITECTURE.md's subcommands {sorted(table)} != the CLI's {sorted(sub.choices)}"


# Tests a newcomer finds by name: tests/test_<name>.py where <name> starts with the name of a module
# or package of the code at any depth (test_svd.py: dlp_lib/compression/svd.py; test_allocation_controls.py:
# the allocation package), "studies_" and a dlp_studies module (the study of a name dlp_lib also uses:
# test_studies_architectures.py), or one of these suites, which cross modules on purpose.
CODE_ROOTS = ("dlp_lib", "dlp_studies", "scripts", "benchmarks")
CROSS_CUTTING_TESTS = {
    "house": "the layout rules of this file",
    "integration": "the whole pipeline on a real model (test_integration_<model>.py)",
    "notebooks": "every notebook under the smoke profile",
    "readme_truth": "README's numbers come from generated sources",
    "reliability": "bad input, interruptions and outputs across subcommands (test_reliability_<subject>.py)",
    "dtype": "the compute dtype through validation, the Lab, fine-tuning and sparse inference",
}
WHOLE_PACKAGE_TESTS = ("studies",)   # test_studies.py: dlp_studies' paper, plots, report and verdicts together


def _code_names(root: Path = ROOT) -> set[str]:
    """Names of the code's modules and scripts (.py, .sh) and of the folders holding them (not of
    what a hidden folder holds, e.g. the DeepSparse benchmark's own virtual environment)."""
    names = set()
    for folder in CODE_ROOTS:
        for path in (root / folder).rglob("*"):
            inside = path.relative_to(root / folder).parts
            if path.suffix in (".py", ".sh") and "__pycache__" not in inside and not any(
                    part.startswith(".") for part in inside):
                names.add(path.stem)
                names.update(inside[:-1])
    names |= {f"studies_{p.stem}" for p in (root / "dlp_studies").glob("*.py") if not p.stem.startswith("_")}
    return {n for n in names if not n.startswith("_")}


def badly_named_tests(test_files, code_names) -> list[str]:
    """The test files (test_*.py names) whose name starts with neither a code name nor a cross-cutting suite."""
    prefixes = set(code_names) | set(CROSS_CUTTING_TESTS)
    bad = []
    for name in test_files:
        stem = name.removeprefix("test_").removesuffix(".py")
        if stem not in WHOLE_PACKAGE_TESTS and not any(stem == p or stem.startswith(p + "_") for p in prefixes):
            bad.append(name)
    return sorted(bad)


def test_every_test_file_is_named_after_what_it_tests():
    files = [p.name for p in (ROOT / "tests").glob("test_*.py")]
    assert badly_named_tests(files, _code_names()) == []
    for suite in CROSS_CUTTING_TESTS:     # no stale entry: each names a suite that exists
        assert any(f == f"test_{suite}.py" or f.startswith(f"test_{suite}_") for f in files), suite


def test_the_test_name_check_flags_a_badly_named_file():
    planted = ["test_misc.py", "test_prunning.py", "test_studies_misc.py", "test_svd_ranks.py", "test_studies.py",
               "test_studies_architectures.py", "test_reliability_cache.py", "test_allocation_controls.py"]
    assert badly_named_tests(planted, _code_names()) == ["test_misc.py", "test_prunning.py", "test_studies_misc.py"]


def test_library_never_imports_the_studies():
    for module, path in _modules():
        assert "dlp_studies" not in path.read_text(), f"dlp_lib.{module} refers to dlp_studies"


def _string_sequences(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            yield [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def test_one_place_knows_the_allocators():
    """No tuple/list/set literal lists the allocators (four or more of them) anywhere in the library, the
    study package or the notebooks: they ask the registry (`allocator_names()`). The library itself
    names no set of three or more (a study's comparison set belongs to the study)."""
    import nbformat

    from dlp_lib.allocation import allocator_names
    names = set(allocator_names())
    sources = [(p, p.read_text()) for p in list(PACKAGE.rglob("*.py")) + list((ROOT / "dlp_studies").rglob("*.py"))]
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        sources.append((nb_path, "\n".join(ln for ln in code.split("\n") if not ln.lstrip().startswith(("%", "!")))))
    offenders = []
    for path, text in sources:
        for seq in _string_sequences(ast.parse(text)):
            limit = 3 if path.is_relative_to(PACKAGE) else 4
            if len(names.intersection(seq)) >= limit:
                offenders.append(f"{path.relative_to(ROOT)}: {seq}")
    assert not offenders, "lists of allocators outside the registry:\n" + "\n".join(offenders)


@pytest.fixture
def reverse_dlp(monkeypatch):
    """A new allocator declared in one function (here, in this test file)."""
    from dlp_lib.allocation import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register("reverse_dlp", needs=("stats",), source="a test: DLP's ratios reversed")
    def plan_reverse_dlp(inputs, sparsity, *, alpha: float = 0.1, strict=False):
        from dlp_lib.allocation import allocate_dlp
        from dlp_lib.plan import SparsityPlan
        r = allocate_dlp(inputs.stats.layer_statistic("median"), sparsity, alpha, strict=strict)[::-1]
        return SparsityPlan("reverse_dlp", sparsity, r.tolist(), {"alpha": alpha})

    return plan_reverse_dlp


def test_a_new_allocator_is_one_function(reverse_dlp, tmp_cache):
    from dlp_lib.cli import build_parser
    from dlp_lib.experiment import ExperimentConfig, Lab
    cfg = ExperimentConfig.from_profile("smoke", allocation="reverse_dlp", sparsity=0.6)
    assert "reverse_dlp" in build_parser().parse_args(["prune", "--allocation", "reverse_dlp"]).allocation
    lab = Lab("tiny-llama", progress=False)
    plan = lab.plan(cfg)
    dlp = lab.plan(cfg.replace(allocation="dlp", alpha=0.1))
    np.testing.assert_allclose(plan.ratios, dlp.ratios[::-1])
    assert plan.mean_ratio == pytest.approx(0.6)
    result = lab.run(cfg)
    assert result["achieved_sparsity"]["overall"] == pytest.approx(0.6, abs=0.02)


def test_unknown_allocator_parameter_is_an_error():
    from dlp_lib.allocation import build_plan
    from dlp_lib.models import tiny_llama
    model, _ = tiny_llama()
    with pytest.raises(ValueError, match="takes no parameters; got alhpa"):
        build_plan("uniform", 0.5, model=model, alhpa=0.1)


def test_allocators_declare_what_they_read():
    from dlp_lib.allocation import allocator_names, get_allocator
    for name in allocator_names():
        a = get_allocator(name)
        assert a.source and a.needs <= {"stats", "weights"}
    assert get_allocator("dlp").needs_stats("wanda") and not get_allocator("er").needs_stats("wanda")
    assert get_allocator("global").needs_stats("wanda") and not get_allocator("global").needs_stats("magnitude")


def test_keys_follow_the_roles():
    from dlp_lib.experiment import ExperimentConfig
    base = ExperimentConfig.from_profile("smoke")
    fp = "f"
    # an evaluation-only change keeps the pruning key, changes the result key
    other_eval = base.replace(eval=("sotu",), neval=2)
    assert other_eval.key("prune", fp) == base.key("prune", fp) and other_eval.key("eval", fp) != base.key("eval", fp)
    # a pruning-only change keeps the plan key
    assert base.replace(method="sparsegpt").key("plan", fp) == base.key("plan", fp)
    assert base.replace(method="sparsegpt").key("prune", fp) != base.key("prune", fp)
    # a plan change keeps the data key (pass 1 is shared)
    assert base.replace(alpha=0.05).key("data", fp) == base.key("data", fp)
    assert base.replace(alpha=0.05).key("plan", fp) != base.key("plan", fp)
    # other weights, other keys everywhere
    assert base.key("data", "g") != base.key("data", fp)
    for key in (base.key("data", fp), base.key("plan", fp), base.key("prune", fp), base.key("eval", fp)):
        assert key["code"] and all(len(v) == 12 for v in key["code"].values())
    # every field has a role
    import dataclasses
    roles = {f.metadata.get("role") for f in dataclasses.fields(ExperimentConfig)}
    assert roles == {"data", "plan", "prune", "eval"}
