"""The demo and ablation pipelines end to end on a tiny model and a tiny freshly built dataset."""

import json

import pytest

from lambda_dpo import demo
from lambda_dpo.demo_data.build import build_demo_dataset

MICRO = demo.Preset(train_lists=None, max_steps=2, eval_lists=3, gen_prompts=2, max_new_tokens=4, full_grid=False)


@pytest.fixture(scope="module")
def tiny_data(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_data")
    build_demo_dataset(out, seed=1, n_prompts=10, n_eval=3, max_new_tokens=8, model=tiny_llama_dir, batch_size=8,
                       progress=False)
    return out


@pytest.fixture
def micro(monkeypatch, tiny_data):
    monkeypatch.setattr(demo, "demo_data_dir", lambda: tiny_data)
    monkeypatch.setitem(demo.PRESETS, "micro", MICRO)


def test_demo_writes_report_metrics_and_plots(micro, tiny_llama_dir, tmp_path):
    out = demo.run_demo("micro", tmp_path / "run", model=tiny_llama_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]) == {"base", *demo.METHODS}
    steered = metrics["runs"]["lambda_dpo_steered"]["0"]
    assert len(steered["generation"]) == 7  # 4 vertices + centre + 2 points on the conflicting edge
    assert len(metrics["runs"]["dpo_best_worst"]["0"]["generation"]) == 1  # never sees lambda: one point
    assert set(steered["summary"]["controllability"]) == set(metrics["aspects"])
    report = (out / "report.md").read_text()
    for heading in ("listwise metrics", "Judge scores", "Controllability", "does not beat the baselines"):
        assert heading in report
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "controllability.png").stat().st_size > 1000


def test_ablation_reports_spread_over_seeds(micro, tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "ABLATION", {k: demo.ABLATION[k] for k in ("none+fixed", "embedding+adaptive")})
    monkeypatch.setitem(demo.ABLATION["embedding+adaptive"], "adaptive_val_lists", 2)
    monkeypatch.setitem(demo.ABLATION["embedding+adaptive"], "adaptive_every", 1)
    out = demo.run_ablation("micro", tmp_path / "abl", seeds=(0, 1), model=tiny_llama_dir)
    text = (out / "ablation.md").read_text()
    assert "none+fixed" in text and "embedding+adaptive" in text and "±" in text
    assert "Combinations not run" in text and "linear in lambda" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]["embedding+adaptive"]) == {"0", "1"}
