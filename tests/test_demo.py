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


def test_ablation_report_counts_undefined_seeds_and_says_whether_a_lead_beats_the_spread(tmp_path):
    from lambda_dpo.evaluation.report import write_ablation_report

    nan = float("nan")

    def run(ndcg, rho, area):
        return {"listwise": {"mean/ndcg": ndcg, "mean/top1": 0.5}, "summary": {
            "controllability": dict(zip(("a", "b"), rho)), "pareto_area": area}}

    m = {"preset": "quick", "budget": {"max_steps": 24, "eval_lists": 12, "gen_prompts": 12, "max_new_tokens": 48,
                                       "full_grid": False},
         "seeds": [0, 1], "model": "m", "aspects": ["a", "b"], "conflict": ["a", "b"], "torch_threads": 2,
         "wall_seconds": 1.0, "runs": {
             "x": {"0": run(0.90, (0.5, nan), 1.0), "1": run(0.92, (nan, nan), 1.2)},
             "y": {"0": run(0.80, (0.1, 0.3), 3.0), "1": run(0.81, (0.1, 0.1), 3.1)}}}
    text = write_ablation_report(m, tmp_path, {}).read_text()
    assert "Preset `quick` (24 training steps" in text
    assert "| x | 0.91 ± 0.01 | 0.50 ± 0.00 | 0.50 (1/2 seeds) | n/a | 0.50 (1/2 seeds) |" in text
    assert "| y | 0.81 ± 0.01 | 0.50 ± 0.00 | 0.10 ± 0.00 | 0.20 ± 0.14 | 0.15 ± 0.07 |" in text
    assert "highest held-out NDCG: `x` (0.910), ahead of `y` by 0.105: more than" in text
    assert "largest Pareto area: `y` (3.05), ahead of `x` by 1.95: more than" in text
    # x's mean rho is defined on one seed only: its spread is unknown, so y's decides
    assert "highest mean controllability: `x` (0.50), ahead of `y` by 0.35: more than the larger seed std of the two (0.07)" in text
