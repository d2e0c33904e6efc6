"""The package's shape: imports point one way, pyproject declares exactly what src/ imports, no module
uses another's private names, functions and modules stay short, and each option's allowed values are
written once (the tests at the end).

Layers, lowest first (`LAYERS`). A module may import modules of strictly lower layers, and
siblings inside its own package (data/, evaluation/, training/, demo/, labeling/); nothing else. The
order is the data flow (docs/design.md, "Layers"):

0. `atomic`, `config_files`, `models`, `wrappers`, `data`, `segment_attention`, `sharding`: foundations
   with no lambda-dpo imports: write-then-rename, YAML config files with overrides, model names ->
   loaded models and tokenizers, the model under its wrappers (`unwrap_model`, `eval_mode`, which every later layer uses), preference
   records -> validated `PreferenceList`s, the attention implementation that scores a packed row by
   segment, and the output layer's weights under FSDP2 / ZeRO-3.
1. `tokenization`, `targets`, `losses`, `lambdas`, `layouts`, `precision`: one step each of the
   computation on a list: lists -> token ids, ratings -> target distributions, scores -> loss,
   where lambda comes from, token ids -> the rows of one forward pass (and which layout), and how
   a model runs numerically (`precision`: dtype and attention-kernel policy, autocast, fp32 copies).
   They need only layer 0 (targets and tokenization read `data`, layouts and precision `wrappers`),
   not one another. `rating_scales` (ratings in any units rescaled
   before the targets, and the check that the targets are not nearly one-hot) reads `data` too.
2. `conditioning`, `logprobs`, `memory`: built on layer 1: conditioning renders a prompt under lambda
   through `tokenization`; logprobs runs the model on a batch laid out by `layouts` -> log-probs;
   memory predicts a training step's peak memory from the layout and precision choices.
3. `batching`, `saved_model`, `reference`: the collator (tokenised lists + reference -> one batch)
   combines conditioning, lambdas, targets and layouts; the model directory's files record the
   conditioning (its lambda text) and the uniform lambda from `lambdas`; the reference scores the
   unconditioned lists with `logprobs`.
4. `evaluation`: held-out metrics and steering measurements; renders lists through `batching`.
5. `training`: config, Trainer, the adaptive lambda source's callback (which reads evaluation's
   metrics) and the run, which writes the model directory.
6. `generation`, `export`, `labeling`: load a model directory and generate under a lambda, or write it
   out as a standalone checkpoint; make training data (prompts -> sampled replies -> judges' ratings ->
   listwise records). They do not need training; they sit above it because they serve what training
   produced or feed it, and nothing in the library imports them.
7. `demo`, `playground`, `evaluate_saved`: apps apart from the library: `demo.dataset` (the embedded dataset's prompts,
   judges and builder), `demo.run` (the demo: train, run the steering protocol; uses everything
   above), `demo.report` / `demo.tables` (its report) and `demo.ablation`; `playground`, the web page that steers a model directory (on
   `generation`); `evaluate_saved`, the held-out figures of a model directory (`lambda-dpo
   evaluate`: the directory loaded as `generation` loads it, its lists prepared as `training` does);
   `evaluate_steering`, the steering protocol on a model directory (`lambda-dpo evaluate --front`).
8. `cli`: the command line, the only entry point above the demo; `testing`: offline tiny models and
   the GPT-2 tokenizer for tests and benchmarks, at the top so that no module of the package imports it.

So the demo is apart: no library module (layers 0-6) imports `demo` (nor `playground`: the layers
forbid it).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest
from conftest import REPO

ROOT = REPO
SRC = ROOT / "src" / "lambda_dpo"

LAYERS = [
    {"atomic", "config_files", "models", "wrappers", "data", "segment_attention", "sharding"},
    {"tokenization", "targets", "losses", "lambdas", "layouts", "precision", "rating_scales"},
    {"conditioning", "logprobs", "memory"},
    {"batching", "saved_model", "reference"},
    {"evaluation"},
    {"training"},
    {"generation", "export", "labeling"},
    {"demo", "playground", "evaluate_saved", "evaluate_steering"},
    {"cli", "testing"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
PACKAGES = {"data", "evaluation", "training", "demo", "labeling"}

# Import name -> distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml", "huggingface_hub": "huggingface-hub"}
# Declared and needed, but reached through another package rather than imported by name; each with
# the file that uses it and a marker of that use (checked below, so an entry cannot go stale).
INDIRECT = {
    "numpy": ("reference.py", ".numpy()"),  # torch's Tensor.numpy(), which needs numpy installed (torch does not require it)
    "gguf": ("models.py", "gguf_file="),  # transformers reads the embedded SmolLM2 GGUF file with it
}
# Imported only inside a function, for an optional feature, and declared as an extra.
OPTIONAL = {"deepspeed": "DeepSpeed ZeRO-3 (training/run.py gathers partitioned weights)",
            "gradio": "the browser playground (playground.py, `lambda-dpo playground`)",
            "matplotlib": "the demo's plots (demo/report.py; without it the report is written without them)"}


def _modules() -> dict[str, tuple[ast.Module, bool]]:
    """'lambda_dpo.x.y' -> (parsed source, is a package's __init__), for every module under src/lambda_dpo."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (ast.parse(path.read_text(), str(path)), is_package)
    return out


def _imports(name: str, tree: ast.Module, is_package: bool) -> list[tuple[str, int, bool]]:
    """(absolute module imported, line, at module level) for every import in the module, functions included."""
    top = {id(node) for node in tree.body}
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            if node.level and not node.module:  # from . import x: x is a submodule
                found += [(f"{module}.{alias.name}", node.lineno, id(node) in top) for alias in node.names]
            else:
                found.append((module, node.lineno, id(node) in top))
    return found


def _unit(module: str) -> str | None:
    """The layer unit of 'lambda_dpo.x...' ('x'), or None for the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_layer():
    units = {_unit(name) for name in _modules()} - {None}
    assert units <= set(LAYER), f"place these modules in LAYERS (and justify it): {sorted(units - set(LAYER))}"
    assert set(LAYER) <= units, f"LAYERS names modules that do not exist: {sorted(set(LAYER) - units)}"


def test_no_import_points_up_or_sideways():
    bad = []
    for name, (tree, is_package) in _modules().items():
        unit = _unit(name)
        for module, line, _ in _imports(name, tree, is_package):
            if module != "lambda_dpo" and not module.startswith("lambda_dpo."):
                continue
            target = _unit(module)
            if unit is None or target is None:
                bad.append(f"{name}:{line} imports {module} (the package root imports nothing, and nothing imports it)")
            elif target == unit and unit in PACKAGES:
                continue  # siblings inside one package
            elif LAYER[target] >= LAYER[unit]:
                bad.append(f"{name}:{line} (layer {LAYER[unit]}) imports {module} (layer {LAYER[target]})")
    assert not bad, "imports against the layer order (see this file's docstring):\n" + "\n".join(bad)


def test_the_library_never_imports_the_demo():
    for name, (tree, is_package) in _modules().items():
        if _unit(name) in (None, "demo", "cli"):
            continue
        for module, line, _ in _imports(name, tree, is_package):
            assert not (module.startswith("lambda_dpo.") and _unit(module) == "demo"), (name, line)


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower().replace("_", "-") for r in reqs}

    return names(project["dependencies"]), {k: names(v) for k, v in project["optional-dependencies"].items()}


def _third_party() -> dict[str, set[bool]]:
    """Distribution name -> {at module level?} for each third-party import of src/."""
    out: dict[str, set[bool]] = {}
    for name, (tree, is_package) in _modules().items():
        for module, _, top in _imports(name, tree, is_package):
            root = module.split(".")[0]
            if root == "lambda_dpo" or root in sys.stdlib_module_names or root == "__future__":
                continue
            out.setdefault(DISTRIBUTION.get(root, root).lower().replace("_", "-"), set()).add(top)
    return out


def test_declared_dependencies_equal_the_imported_ones():
    runtime, extras = _declared()
    imported = _third_party()
    optional = set(OPTIONAL)
    assert runtime == (set(imported) - optional) | set(INDIRECT), (
        f"declared but not imported: {sorted(runtime - set(imported) - set(INDIRECT))}; "
        f"imported but not declared: {sorted(set(imported) - optional - runtime)}")
    for dist in optional:
        assert imported.get(dist) == {False}, f"{dist} must only be imported inside the function that needs it"
        assert any(dist in reqs for reqs in extras.values()), f"{dist} ({OPTIONAL[dist]}) must be an extra"


def test_indirect_dependencies_are_still_used():
    for dist, (path, marker) in INDIRECT.items():
        assert marker in (SRC / path).read_text(), (
            f"{dist} is declared for {marker!r} in {path}, which is gone: drop it from pyproject.toml and INDIRECT")


# Run in a fresh interpreter: snapshot the global registries a module could write to when imported,
# import every module of the package, compare.
_IMPORT_EVERYTHING = """
import importlib, sys
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

def state():
    return (dict(AttentionInterface._global_mapping), dict(AttentionMaskInterface._global_mapping),
            torch.get_default_dtype())

before = state()
for name in sys.argv[1:]:
    importlib.import_module(name)
after = state()
for what, b, a in zip(("transformers' attention functions", "transformers' attention masks"), before, after):
    assert a == b, f"importing lambda_dpo changed {what}: {sorted(k for k in a.keys() | b.keys() if a.get(k) is not b.get(k))}"
assert before[2] == after[2], f"importing lambda_dpo changed torch's default dtype to {after[2]}"
"""


def test_importing_changes_no_global_state():
    """No import-time side effects: importing every module of lambda_dpo leaves transformers' attention
    and mask registries and torch's default dtype as they were. What registers does so when called
    (`segment_attention.register`, run by `install` where the packed layout is installed)."""
    names = sorted(_modules())
    result = subprocess.run([sys.executable, "-c", _IMPORT_EVERYTHING, *names], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _private_uses(name: str, tree: ast.Module, is_package: bool) -> list[str]:
    """Where module `name` reaches a private name (one leading underscore) of another lambda_dpo module:
    `from .x import _y`, or `x._y` on a lambda_dpo module `x` it imported."""
    package = name if is_package else name.rpartition(".")[0]
    modules: dict[str, str] = {}  # local name -> the lambda_dpo module it is bound to
    found = []

    def private(n: str) -> bool:
        return n.startswith("_") and not n.startswith("__")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module != "lambda_dpo" and not module.startswith("lambda_dpo."):
                continue
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{name}:{node.lineno} imports {module}.{alias.name}")
                elif not node.module or (SRC.parent / module.replace(".", "/") / alias.name).exists() or (
                        SRC.parent / module.replace(".", "/") / f"{alias.name}.py").exists():
                    modules[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lambda_dpo.") and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{name}:{node.lineno} uses {modules[node.value.id]}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules():
    """A name with a leading underscore is its module's own: another module that needs it needs it public
    (renamed, documented, and tested as such), or the helper belongs to a module both can import."""
    bad = [use for name, (tree, is_package) in _modules().items() for use in _private_uses(name, tree, is_package)]
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_the_private_name_check_sees_both_forms():
    tree = ast.parse("from .layouts import _warned, LAYOUTS\nfrom . import logprobs\nlogprobs._softmax_(x)\n")
    assert _private_uses("lambda_dpo.reference", tree, False) == [
        "lambda_dpo.reference:1 imports lambda_dpo.layouts._warned",
        "lambda_dpo.reference:3 uses lambda_dpo.logprobs._softmax_"]


MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
# The demo's dataset builder (prompt specs, judges, the build script: data, mostly) is the
# exception, by design.
LONG_MODULES_ALLOWED = ("demo/dataset/",)


def _source_files():
    return [(path.relative_to(SRC).as_posix(), path) for path in sorted(SRC.rglob("*.py"))]


def test_no_function_is_over_80_lines():
    """Outside the demo's dataset builder, a function fits on a screen: longer ones are split into steps
    with names (as `cli.build_parser` is, one function per command)."""
    bad = []
    for rel, path in _source_files():
        if rel.startswith("demo/dataset/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    bad.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(bad)


def test_no_module_is_over_400_lines():
    """One job per module keeps each under 400 lines; past that, split it by job (docs/design.md, "Layers")."""
    bad = [f"{rel}: {len(path.read_text().splitlines())} lines" for rel, path in _source_files()
           if not rel.startswith(LONG_MODULES_ALLOWED) and len(path.read_text().splitlines()) > MAX_MODULE_LINES]
    assert not bad, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(bad)


# ---- each option's allowed values written once ----------------------------------------------------------

# Where the test finds the sets: config.CHOICES (every config option's), the command line's `_Choices(module,
# NAME)` arguments, and these constants, which no option lists whole but code must not copy either.
OPTION_SETS = "lambda_dpo.training.config", "CHOICES"
CLI = "lambda_dpo.cli"
OTHER_SETS = [("lambda_dpo.layouts", "LAYOUTS")]
# Literals that look like a copy of a set but are a choice of their own, each with the reason.
NOT_COPIES = {
    ("lambda_dpo.demo.ablation", ("prompt", "embedding")): "the ablation's arms: the conditioning modes that show "
                                                           "lambda, chosen for the experiment",
}


def _assigned(tree: ast.Module) -> dict[str, ast.expr]:
    """NAME -> its value, for the module's top-level assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            out.update({t.id: node.value for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = node.value
    return out


def _from_imports(name: str, tree: ast.Module, is_package: bool) -> dict[str, tuple[str, str]]:
    """local name -> (absolute module, its name there), for the module's top-level `from X import Y`."""
    package = name if is_package else name.rpartition(".")[0]
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.update({alias.asname or alias.name: (module, alias.name) for alias in node.names})
    return out


def _values(module: str, expr: ast.expr, modules: dict) -> tuple[set[str], set[str]]:
    """(the allowed values, the modules that write them) of an expression defining an option's set: a tuple,
    list or set of strings, a registry's keys (a dict), tuple(X), ("auto", *X), or a name bound to one of these
    (followed through imports)."""
    if isinstance(expr, ast.Name):
        tree, is_package = modules[module]
        if expr.id in _assigned(tree):
            return _values(module, _assigned(tree)[expr.id], modules)
        source, name = _from_imports(module, tree, is_package)[expr.id]
        return _values(source, ast.Name(name), modules)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in ("tuple", "list", "set",
                                                                                            "frozenset"):
        return _values(module, expr.args[0], modules)
    if isinstance(expr, ast.Dict) and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in expr.keys):
        return {k.value for k in expr.keys}, {module}
    if isinstance(expr, (ast.GeneratorExp, ast.ListComp)) and len(expr.generators) == 1 and all(
            isinstance(c, ast.Compare) and isinstance(c.ops[0], ast.NotEq)
            and isinstance(c.comparators[0], ast.Constant)
            for c in expr.generators[0].ifs):  # (d for d in X if d != "auto")
        values, where = _values(module, expr.generators[0].iter, modules)
        return values - {c.comparators[0].value for c in expr.generators[0].ifs}, where | {module}
    if isinstance(expr, (ast.Tuple, ast.List, ast.Set)):
        values, where = set(), set()
        for elt in expr.elts:
            if isinstance(elt, ast.Starred):
                more, more_where = _values(module, elt.value, modules)
                values, where = values | more, where | more_where
            elif isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                values.add(elt.value)
                where.add(module)
            else:
                raise ValueError(f"{module}: {ast.unparse(expr)}")
        return values, where
    raise ValueError(f"{module}: {ast.unparse(expr)}")


def _option_sets(modules: dict) -> dict[str, tuple[set[str], set[str]]]:
    """Every option's set of allowed values, with the modules that write it, by where the test found it."""
    config, name = OPTION_SETS
    choices = _assigned(modules[config][0])[name]
    sets = {f"{config}.{name}[{key.value!r}]": _values(config, value, modules)
            for key, value in zip(choices.keys, choices.values)}
    for node in ast.walk(modules[CLI][0]):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_Choices":
            relative, constant = (arg.value for arg in node.args)
            module = "lambda_dpo" + relative
            sets[f"{module}.{constant} (lambda-dpo {CLI}:{node.lineno})"] = _values(module, ast.Name(constant),
                                                                                       modules)
    for module, constant in OTHER_SETS:
        sets[f"{module}.{constant}"] = _values(module, ast.Name(constant), modules)
    # A set that is another but for one value (export's dtypes: model_dtype's without auto) is checked as that
    # one, whose copies it would otherwise count twice; its own subsets (the half-precision dtypes) mean other things.
    return {where: (values, owners) for where, (values, owners) in sets.items()
            if not any(values < other and len(other - values) <= 1 for other, _ in sets.values())}


def _copies(modules: dict) -> list[str]:
    """Each tuple, list or set of strings outside a set's own modules that writes the set out again: all of its
    values, or all but one (the copy that left out `auto`, or missed a value the owner added later)."""
    sets = _option_sets(modules)
    found = []
    for module, (tree, _) in modules.items():
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set)) or not node.elts or not all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                continue
            literal = tuple(e.value for e in node.elts)
            copied = [where for where, (values, owners) in sets.items() if module not in owners
                      and len(set(literal)) >= 2 and set(literal) <= values and len(values - set(literal)) <= 1]
            if copied and (module, literal) not in NOT_COPIES:
                found.append(f"{module}:{node.lineno} writes {literal}, the values of {' and '.join(copied)}")
    return found


def test_every_options_allowed_values_are_written_once():
    """An option's allowed values are defined by the module that implements it and read everywhere else (the
    config's validation, the command line's choices, docs/config.md), so a value added there reaches all of
    them and none lists a value the config refuses."""
    modules = _modules()
    sets = _option_sets(modules)
    assert len(sets) > 15 and all(len(values) >= 2 for values, _ in sets.values()), sets
    found = _copies(modules)
    assert not found, "allowed values written out again: read the constant instead\n" + "\n".join(found)
    for module, literal in NOT_COPIES:  # each exception still exists
        assert any(isinstance(node, (ast.Tuple, ast.List)) and tuple(getattr(e, "value", None) for e in node.elts)
                   == literal for node in ast.walk(modules[module][0])), (module, literal)


def test_the_allowed_values_check_catches_a_copy():
    """A copy of a set (whole, or without one value) is caught wherever it is; a subset that means something
    else (the half-precision dtypes) is not."""
    fake = ast.parse('CLI_DTYPES = ("auto", "float32", "bfloat16", "float16")\n'
                     'EXPORTED = ["float32", "bfloat16", "float16"]\n'
                     'HALF = ("bfloat16", "float16")\n'
                     'SCORES = ["mean", "sum"]\n'
                     'def f(layout):\n    return layout in ("prompt_cache", "packed")\n')
    found = _copies({**_modules(), "lambda_dpo.fake": (fake, False)})
    assert [line.split(" writes ")[0] for line in found if line.startswith("lambda_dpo.fake:")] == [
        "lambda_dpo.fake:1", "lambda_dpo.fake:2", "lambda_dpo.fake:4", "lambda_dpo.fake:6"], found



def test_tier_conftests_do_not_shadow_the_shared_one():
    """Test files import helpers with `from conftest import ...`. A tier's own conftest.py in a plain folder
    is imported under the bare name `conftest` and shadows tests/conftest.py for every file collected after
    it; in a package (a folder with __init__.py) it is imported as `<tier>.conftest` and shadows nothing."""
    shadowing = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("conftest.py")
                       if p.parent != REPO / "tests" and not (p.parent / "__init__.py").exists())
    assert not shadowing, f"{shadowing}: put shared fixtures in tests/conftest.py, or make the folder a package"
