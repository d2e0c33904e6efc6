"""Safety of files: our code never unpickles, never evaluates text as code, a config cannot run code,
and a model's own Python code (trust_remote_code) runs only when the user asks for it."""

import ast
from pathlib import Path

import pytest
from conftest import REPO

import lambda_dpo.models as models
import lambda_dpo.training.settings as settings
from lambda_dpo.training.config import LambdaDPOConfig, load_config

SRC = REPO / "src" / "lambda_dpo"

# module.function calls that unpickle or execute data
UNSAFE_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
                ("cPickle", "load"), ("dill", "load"), ("dill", "loads"), ("joblib", "load"), ("marshal", "loads"),
                ("shelve", "open"), ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"),
                ("yaml", "load_all"), ("yaml", "unsafe_load_all"), ("np", "load"), ("numpy", "load")}
UNSAFE_NAMES = {"eval", "exec", "compile", "__import__"}
UNSAFE_IMPORTS = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve"}


def unsafe_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in UNSAFE_NAMES:
                found.append(f"{where}: {f.id}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in UNSAFE_CALLS:
                found.append(f"{where}: {f.value.id}.{f.attr}()")
            for kw in node.keywords:
                if kw.arg == "trust_remote_code" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                    found.append(f"{where}: trust_remote_code=True")
                if kw.arg in ("allow_pickle", "weights_only") and isinstance(kw.value, ast.Constant) \
                        and kw.value.value is (kw.arg == "allow_pickle"):
                    found.append(f"{where}: {kw.arg}={kw.value.value}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{where}: import {n}" for n in names if n and n.split(".")[0] in UNSAFE_IMPORTS]
    return found


def test_source_never_unpickles_or_evaluates_data():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    assert [u for f in files for u in unsafe_uses(f)] == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import pickle\nimport torch, yaml\nx = torch.load('a')\ny = eval('1')\nyaml.load('a')\n"
                   "m.from_pretrained('x', trust_remote_code=True)\nnp.load('a', allow_pickle=True)\n")
    found = unsafe_uses(bad)
    assert len(found) == 7, found  # np.load(..., allow_pickle=True) counts twice


def test_trust_remote_code_is_off_unless_the_config_asks(monkeypatch, tmp_path):
    assert LambdaDPOConfig.__dataclass_fields__["trust_remote_code"].default is False
    seen = []

    def fake(kind):
        def load(name, **kwargs):
            seen.append((kind, kwargs.get("trust_remote_code")))
            raise RuntimeError("stop here")
        return load

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", fake("model"))
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", fake("tokenizer"))
    monkeypatch.setattr(models, "resolve_model_path", lambda name: name)
    for value in (None, True):
        over = {} if value is None else {"trust_remote_code": value}
        cfg = load_config(None, model_name_or_path=str(tmp_path), output_dir=str(tmp_path / "o"), **over)
        with pytest.raises(RuntimeError, match="stop here"):
            models.load_tokenizer(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
        with pytest.raises(RuntimeError, match="stop here"):
            models.load_model(cfg.model_name_or_path, trust_remote_code=cfg.trust_remote_code)
    assert seen == [("tokenizer", False), ("model", False), ("tokenizer", True), ("model", True)]

    # The training path (settings.load_policy, which LambdaDPOTrainer calls) hands the config's value to both loaders.
    calls = []
    monkeypatch.setattr(settings, "load_tokenizer", lambda name, **kw: calls.append(("tokenizer", kw)) or object())
    monkeypatch.setattr(settings, "load_model", lambda name, **kw: calls.append(("model", kw)) or object())
    settings.load_policy(load_config(None, use_lora=False, output_dir=str(tmp_path / "o")))
    settings.load_policy(load_config(None, use_lora=False, output_dir=str(tmp_path / "o"), trust_remote_code=True))
    assert [(k, kw["trust_remote_code"]) for k, kw in calls] == [("model", False), ("tokenizer", False),
                                                                 ("model", True), ("tokenizer", True)]


def test_generate_cli_keeps_remote_code_off_by_default(monkeypatch):
    import lambda_dpo.generation as generation
    from lambda_dpo.cli import main

    seen = []

    def fake_load(model_dir, *, trust_remote_code=False):
        seen.append(trust_remote_code)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(generation, "load_steerable", fake_load)
    assert main(["generate", "--model", "m", "hi"]) == 2
    assert main(["generate", "--model", "m", "--trust-remote-code", "hi"]) == 2
    assert seen == [False, True]


@pytest.mark.parametrize("text", [
    "beta: !!python/object/apply:os.system ['touch {marker}']\n",
    "lambda_table: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    "!!python/name:os.system\n",
])
def test_config_file_cannot_run_code(tmp_path, text):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(text.format(marker=marker))
    with pytest.raises(Exception, match="constructor|python/"):
        load_config(path)
    assert not marker.exists()


def test_config_override_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(Exception, match="constructor|python/"):
        load_config(None, [f"beta=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()
