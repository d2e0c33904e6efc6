"""The scheduler study end to end on a tiny model and a tiny freshly built dataset: a fixed and an adaptive
arm, their fronts and vertex scores, the adaptive arm's probabilities and signal from the log, the report
and plot, and a rerun that trains nothing."""

import json

import pytest

from lambda_dpo.demo import run as demo
from lambda_dpo.demo import scheduler_study as ss

MICRO = demo.Preset(max_steps=2, steered_steps=2, eval_lists=3, prompts=2, ood_prompts=2, max_new_tokens=4)


def test_fixed_and_adaptive_arms_then_a_rerun_that_trains_nothing(tiny_data, tiny_llama_dir, tmp_path, monkeypatch):
    from lambda_dpo.demo import dev_split

    monkeypatch.setattr(dev_split, "demo_data_dir", lambda: tiny_data)
    monkeypatch.setattr(dev_split, "DEV_LISTS", 3)
    monkeypatch.setitem(demo.PRESETS, "micro", MICRO)
    arms = {"fixed": ss.SCHEDULER_ARMS["fixed"],
            "adaptive-progress": {**ss.SCHEDULER_ARMS["adaptive-progress"], "adaptive_every": 1,
                                  "adaptive_val_lists": 2}}
    monkeypatch.setattr(ss, "SCHEDULER_ARMS", arms)
    trained = []
    real_train = ss.train_method
    data_dirs = []
    monkeypatch.setattr(ss, "train_method", lambda name, overrides, *a: trained.append(overrides) or
                        data_dirs.append(a[-1]) or real_train(name, overrides, *a))
    out = ss.run_scheduler_study("micro", tmp_path / "sched", seeds=(0,), model=tiny_llama_dir)

    assert [o["lambda_source"] for o in trained] == ["fixed", "adaptive"]
    data = tmp_path / "sched" / "data"  # trained on the training split minus the dev lists, measured on those
    assert data_dirs == [data, data]
    dev_lines = (data / "eval.jsonl").read_text().splitlines()
    train_lines = (data / "train.jsonl").read_text().splitlines()
    assert len(dev_lines) == 3 and not set(dev_lines) & set(train_lines)
    assert len(dev_lines) + len(train_lines) == len((tiny_data / "train.jsonl").read_text().splitlines())
    assert all(o["max_steps"] == MICRO.steered_steps for o in trained)
    m = json.loads((out / "metrics.json").read_text())
    fixed, adaptive = m["runs"]["fixed"][0], m["runs"]["adaptive-progress"][0]
    for r in (fixed, adaptive):
        assert len(r["steerability"]["front"]) == len(ss.SWEEP) and r["steerability"]["hypervolume"] >= 0
        own = r["robustness"]["own_vertex"]
        assert set(own) == set(m["aspects"]) and r["robustness"]["worst"] == min(own.values())
    assert fixed["schedule"] == [] and fixed["candidates"] is None
    assert [u["step"] for u in adaptive["schedule"]] == [1, 2]
    m_cand = len(adaptive["candidates"])
    assert all(len(u["probs"]) == len(u["perf"]) == m_cand for u in adaptive["schedule"])
    assert sum(adaptive["schedule"][-1]["probs"]) == pytest.approx(1.0)
    text = (out / "report.md").read_text()
    assert "| fixed |" in text and "| adaptive-progress |" in text and "scheduler.png" in text
    assert (out / "scheduler.png").stat().st_size > 0

    trained.clear()
    ss.run_scheduler_study("micro", out, seeds=(0,), model=tiny_llama_dir)
    assert trained == []
