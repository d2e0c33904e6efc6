"""The docs site: the config reference is generated and current, the Logged metrics table names
every key training logs, and `mkdocs build --strict` passes (broken links, references and
docstrings fail it)."""

import dataclasses
import difflib
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO
from transformers import TrainerCallback, TrainingArguments

from lambda_dpo.training.config import CHOICES, LambdaDPOConfig, load_config
from lambda_dpo.training.run import train

ROOT = REPO


def _generator():
    """docs/gen_config_reference.py, a script (not part of the package), imported from its file."""
    path = ROOT / "docs" / "gen_config_reference.py"
    spec = importlib.util.spec_from_file_location("gen_config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_generated_and_current():
    gen = _generator()
    page = gen.render()
    committed = (ROOT / "docs" / "config.md").read_text() if (ROOT / "docs" / "config.md").is_file() else ""
    diff = "".join(list(difflib.unified_diff(committed.splitlines(True), page.splitlines(True),
                                             "docs/config.md (committed)", "docs/config.md (generated)"))[:40])
    assert committed == page, f"docs/config.md is stale: run {gen.COMMAND}\n{diff}"
    rows = set(re.findall(r"^\| `(\w+)` \|", page, re.M))
    own = set(LambdaDPOConfig.__dict__["__annotations__"])
    assert own <= rows, f"fields missing from the config reference: {sorted(own - rows)}"


def test_config_reference_takes_allowed_values_from_the_validator():
    """The allowed values are what LambdaDPOConfig validates against (config.CHOICES): each listed value
    constructs, a value outside them is refused, and every option validated against a set shows it."""
    gen = _generator()
    fields = {f.name: f for f in dataclasses.fields(LambdaDPOConfig)}
    trainer_fields = {f.name: f for f in dataclasses.fields(TrainingArguments)}
    for name in CHOICES:
        values = gen._allowed(CHOICES, trainer_fields, fields[name])
        assert values == list(CHOICES[name]) and values, name
        for value in values:
            LambdaDPOConfig(**{name: value})
        with pytest.raises(ValueError, match=name):
            LambdaDPOConfig(**{name: "not-a-choice"})
    for name in ("loss_type", "lambda_source", "conditioning", "truncation", "eval_dtype", "data_format"):
        assert name in CHOICES
    assert gen._allowed(CHOICES, trainer_fields, fields["model_name_or_path"]) == []


def _documented_metrics() -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "metrics.md").read_text(), re.M))


def _as_documented(key: str, aspects) -> str:
    """A logged key as the table names it: an aspect becomes {aspect}, a candidate index {i}."""
    for aspect in aspects:
        a = re.escape(aspect)
        key = re.sub(rf"^eval_{a}(?=/)", "eval_{aspect}", key)
        key = re.sub(rf"(?<=/){a}$", "{aspect}", key)
    return re.sub(r"^(lambda_prob|lambda_perf)/\d+$", r"\1/{i}", key)


class _Keys(TrainerCallback):
    def __init__(self):
        self.keys: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.keys.update(logs or {})


def test_logged_metrics_table_names_every_key_training_logs(tiny_llama_dir, tmp_path, one_thread):
    """One tiny run with every optional term on (rpo_alpha, lambda_contrast, the adaptive source, an
    eval split): every key it logs or returns is a row of docs/metrics.md, and every row is logged."""
    cfg = load_config(None, model_name_or_path=tiny_llama_dir, train_file="examples/tiny_listwise.jsonl",
                      eval_fraction=0.25, output_dir=str(tmp_path / "m"), reference_cache_dir=None, max_steps=2,
                      logging_steps=1, per_device_train_batch_size=2, lambda_source="adaptive", adaptive_every=1,
                      adaptive_val_lists=2, rpo_alpha=0.1, model_dtype="float32", report_to="none")
    assert cfg.lambda_contrast and cfg.contrast_alpha > 0  # so loss/contrast is logged
    seen = _Keys()
    result = train(cfg, callbacks=[seen])
    keys = seen.keys | {k for entry in result.trainer.state.log_history for k in entry}
    keys |= set(result.train_metrics) | set(result.eval_metrics)
    logged = {_as_documented(k, result.aspects) for k in keys}
    documented = _documented_metrics()
    missing = sorted(logged - documented)
    assert not missing, f"logged but not in docs/metrics.md's tables: {missing}"
    unseen = sorted(documented - logged)
    assert not unseen, (f"in docs/metrics.md but never logged by this run: {unseen} (a key logged only under other "
                        "settings: turn them on in this test)")


def test_make_test_never_calls_apt_get():
    """Installing system packages is CI's business (.ci/run), not that of a user's `make test`."""
    assert "apt-get" not in (ROOT / "Makefile").read_text()
    assert "apt-get" in (ROOT / ".ci" / "run").read_text()


def test_docs_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: `pip install -e .[docs]` to build and check the docs site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, (f"mkdocs build --strict failed (pip install -e .[docs] for its plugins):\n"
                                  f"{proc.stdout}{proc.stderr}")
