"""The loss comparison end to end on a tiny model and a tiny freshly built dataset: two losses, two seeds,
the summary's intervals and win rates, the report, and a rerun that keeps what was measured."""

import json

import pytest

from lambda_dpo.demo import loss_comparison as lc
from lambda_dpo.demo import run as demo

MICRO = demo.Preset(max_steps=2, steered_steps=2, eval_lists=3, prompts=2, ood_prompts=2, max_new_tokens=4)


def test_two_losses_two_seeds_then_a_rerun_that_trains_nothing(tiny_data, tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(lc, "demo_data_dir", lambda: tiny_data)
    monkeypatch.setitem(demo.PRESETS, "micro", MICRO)
    methods = {k: lc.LOSS_METHODS[k] for k in ("lambda_dpo", lc.ANCHOR)}
    monkeypatch.setattr(lc, "LOSS_METHODS", methods)
    trained = []
    real_train = lc.train_method
    monkeypatch.setattr(lc, "train_method", lambda name, overrides, *a: trained.append((name, overrides)) or
                        real_train(name, overrides, *a))
    out = lc.run_loss_comparison("micro", tmp_path / "losses", seeds=(0, 1), model=tiny_llama_dir)

    assert [n for n, _ in trained] == ["lambda_dpo", lc.ANCHOR] * 2
    for _, overrides in trained:  # equal data and compute: only the loss differs
        assert {k: v for k, v in overrides.items() if k != "loss_type"} == {
            "max_steps": 2, "lambda_source": "fixed", "conditioning": "none", "per_device_train_batch_size": 2}
    m = json.loads((out / "metrics.json").read_text())
    s = m["summary"]
    assert set(s) == {"base", "lambda_dpo", lc.ANCHOR} and m["prompts"] == 3
    row = s["lambda_dpo"]
    for figure in [*row["judge"].values(), row["words"], row["kl"], *row["listwise"].values()]:
        assert figure["lo"] <= figure["mean"] <= figure["hi"]
    assert set(row["listwise"]) == {f"{a}/{f}" for a in m["aspects"] for f in ("top1", "ndcg")}
    shares = row["vs_anchor"]["mean"]
    assert shares["win"]["mean"] + shares["tie"]["mean"] + shares["loss"]["mean"] == pytest.approx(1.0)
    assert "vs_anchor" not in s[lc.ANCHOR] and "kl" not in s["base"]
    per_run = json.loads((out / "runs" / "lambda_dpo-seed1.json").read_text())
    assert len(per_run["replies"]) == len(per_run["kl"]) == 3 and per_run["seed"] == 1

    text = (out / "report.md").read_text()
    assert "LiPO" not in text and "DPO best-vs-worst" in text and "95% interval" in text
    assert (out / "scores.png").stat().st_size > 0 and (out / "win_rates.png").stat().st_size > 0

    trained.clear()
    again = lc.run_loss_comparison("micro", out, seeds=(0, 1), model=tiny_llama_dir)
    assert trained == [] and json.loads((again / "metrics.json").read_text())["summary"] == s
