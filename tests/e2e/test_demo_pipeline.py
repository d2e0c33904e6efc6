"""The demo and ablation pipelines end to end on a tiny model and a tiny freshly built dataset (e2e: each
trains several models). Their presets, report and tables on hand-made metrics: tests/unit/demo/test_demo.py."""

import json

import pytest

from lambda_dpo.demo import ablation
from lambda_dpo.demo import run as demo


MICRO = demo.Preset(max_steps=2, steered_steps=3, eval_lists=3, prompts=2, ood_prompts=3, max_new_tokens=4,
                    weights=(0.0, 0.1, 0.5, 1.0), control_weights=(0.0, 1.0), wording_weights=(0.0, 1.0))


@pytest.fixture
def micro(monkeypatch, tiny_data):
    monkeypatch.setattr(demo, "demo_data_dir", lambda: tiny_data)
    monkeypatch.setattr(ablation, "demo_data_dir", lambda: tiny_data)
    monkeypatch.setitem(demo.PRESETS, "micro", MICRO)


def test_demo_runs_the_protocol_on_both_prompt_sets_and_writes_report_and_plots(micro, monkeypatch, tiny_llama_dir,
                                                                                   tmp_path):
    calls, steps = [], {}

    def recording_generate(sm, prompts, lam=None, **kw):
        calls.append((sm.conditioning, len(prompts), kw["batch_size"], lam))
        return generate(sm, prompts, lam, **kw)

    def recording_train(cfg):
        steps[cfg.output_dir.split("/")[-1]] = cfg.max_steps
        return train(cfg)

    generate, train = demo.generate, demo.train
    monkeypatch.setattr(demo, "generate", recording_generate)
    monkeypatch.setattr(demo, "train", recording_train)
    out = demo.run_demo("micro", tmp_path / "run", model=tiny_llama_dir)
    # each model trains on as many lists: the steered one 1 list per step, the others 2
    assert steps == {"lambda_dpo_steered-seed0": 3, "dpo_best_worst-seed0": 2, "lambda_dpo_fixed-seed0": 2}
    # a sweep is one generate call over every (prompt, lambda) pair, weight-major
    sweep_calls = [c for c in calls if c[1] == len(MICRO.weights) * MICRO.ood_prompts]
    assert sweep_calls and all(b == demo.GEN_BATCH for _, _, b, _ in calls)
    lams = sweep_calls[0][3]
    assert [lam["informativeness"] for lam in lams[::MICRO.ood_prompts]] == list(MICRO.weights)
    # DPO and lambda-fixed: once under their own prompt (no lambda), once given the steered model's text
    assert any(cond == "none" for cond, *_ in calls) and any(cond == "prompt" for cond, *_ in calls)
    m = json.loads((out / "metrics.json").read_text())
    assert m["sets"] == {"held-out": MICRO.prompts, "general": MICRO.ood_prompts}
    steered = m["runs"]["lambda_dpo_steered"]["0"]
    for name in ("held-out", "general"):
        front = steered["fronts"][name]
        assert front["sweep"]["weights"] == list(MICRO.weights)
        assert len(front["sweep"]["replies"][0]) == m["sets"][name]
        assert [u["w"] for u in front["unseen"]] == [0.1]  # 0.1 is unseen; 0.5 is on the grid of quarters
        assert steered["other_wording"][name]["sweep"]["weights"] == list(MICRO.wording_weights)
        assert m["base_with_text"]["fronts"][name]["sweep"]["weights"] == list(MICRO.control_weights)
        for control in ("dpo_best_worst", "lambda_dpo_fixed"):
            run = m["runs"][control]["0"]
            assert run["fronts"][name]["sweep"]["weights"] == list(MICRO.control_weights)
            assert len(run["single"][name]["replies"]) == m["sets"][name]
    assert set(steered["vertices"]["matrix"]) == set(m["aspects"])
    assert set(steered["centre"]["means"]) == set(m["aspects"])
    assert steered["delta"]["replies"] > 0 and steered["listwise"]
    assert m["recipe"]["lambda_text"] == demo.load_config(None).lambda_text  # the training defaults
    stages = m["stage_seconds"]
    assert list(stages) == list(demo.STAGES) and all(v > 0 for v in stages.values())
    text = (out / "report.md").read_text()
    assert text.startswith("# lambda-dpo demo") and "the steered front's hypervolume is" in text.split("\n\n")[1]
    for heading in ("## Held-out demo prompts", "## General questions", "## Vertex matrix", "## Another wording",
                    "## Quality kept", "## Three general questions", "## Diagnostics: held-out top-1"):
        assert heading in text
    assert (out / "fronts.png").stat().st_size > 1000 and (out / "lengths.png").stat().st_size > 1000


def test_ablation_reports_spread_over_seeds(micro, tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ablation, "ABLATION", {k: ablation.ABLATION[k] for k in ("none+fixed", "embedding+adaptive")})
    monkeypatch.setitem(ablation.ABLATION["embedding+adaptive"], "adaptive_val_lists", 2)
    monkeypatch.setitem(ablation.ABLATION["embedding+adaptive"], "adaptive_every", 1)
    out = ablation.run_ablation("micro", tmp_path / "abl", seeds=(0, 1), model=tiny_llama_dir)
    text = (out / "ablation.md").read_text()
    assert "none+fixed" in text and "embedding+adaptive" in text and "±" in text
    assert "Combinations not run" in text and "linear in lambda" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]["embedding+adaptive"]) == {"0", "1"}


def test_single_seed_runs_merge_into_the_report_of_one_multi_seed_run(micro, tiny_llama_dir, tmp_path, monkeypatch):
    from lambda_dpo.demo.merge import merge_metrics, merge_runs

    monkeypatch.setitem(demo.PRESETS, "micro2", demo.Preset(**{**MICRO.__dict__, "seeds": (0, 1),
                                                               "methods": (demo.STEERED, demo.DPO)}))
    both = json.loads((demo.run_demo("micro2", tmp_path / "both", model=tiny_llama_dir) / "metrics.json").read_text())
    one = [demo.run_demo("micro2", tmp_path / f"s{s}", seed=s, model=tiny_llama_dir) for s in (1, 0)]
    out = merge_runs(one, tmp_path / "merged")
    merged = json.loads((out / "metrics.json").read_text())
    assert merged["seeds"] == [0, 1] and merged["merged_from"] == 2
    for key in ("runs", "base_with_text", "baselines", "recipe", "budget", "prompts"):
        assert merged[key] == both[key], key  # deterministic on CPU: seed by seed measures what one run does
    assert (out / "report.md").read_text().split("Wall time")[1].split("\n", 1)[1] == \
        (tmp_path / "both" / "report.md").read_text().split("Wall time")[1].split("\n", 1)[1]
    with pytest.raises(ValueError, match="seed 0 is in two runs"):
        merge_metrics([merged, json.loads((one[1] / "metrics.json").read_text())])
    other = {**merged, "recipe": {**merged["recipe"], "beta": 9.0}}
    with pytest.raises(ValueError, match="differs from run 1 in 'recipe'"):
        merge_metrics([json.loads((one[1] / "metrics.json").read_text()), other])


def test_remeasure_measures_a_runs_saved_models_again_under_another_decoding(micro, tiny_llama_dir, tmp_path,
                                                                             monkeypatch):
    from lambda_dpo.demo import remeasure
    from lambda_dpo.demo.remeasure import remeasure_demo
    from lambda_dpo.training.settings import saved_settings

    monkeypatch.setitem(demo.PRESETS, "micro1", demo.Preset(**{**MICRO.__dict__, "methods": (demo.STEERED, demo.DPO)}))
    run = demo.run_demo("micro1", tmp_path / "run", model=tiny_llama_dir, model_dtype="float32")
    before = json.loads((run / "metrics.json").read_text())
    kernels, load = [], remeasure.load_steerable

    def recording_load(model_dir, **kw):
        sm = load(model_dir, **kw)
        kernels.append((model_dir, sm.model.config._attn_implementation))
        return sm

    monkeypatch.setattr(remeasure, "load_steerable", recording_load)
    # the same decoding from the saved models reproduces every generated figure of the run (float32, CPU)
    again = json.loads((remeasure_demo(run, tmp_path / "again", "prompt") / "metrics.json").read_text())
    for key in ("runs", "base_with_text"):
        assert again[key] == before[key], key
    assert again["remeasured"] == {"from": str(run), "decoding": "prompt"}
    # each saved model loads with the attention kernel it trained with
    assert kernels and all(kernel == saved_settings(d).attn_implementation for d, kernel in kernels)

    mixed_calls = []

    def recording_mixed(sm, prompts, lam=None, **kw):
        mixed_calls.append(lam)
        return generate_mixed(sm, prompts, lam, **kw)

    generate_mixed = demo.generate_mixed
    monkeypatch.setattr(demo, "generate_mixed", recording_mixed)
    out = remeasure_demo(run, tmp_path / "mixed", "mixed")
    m = json.loads((out / "metrics.json").read_text())
    assert m["decoding"] == "mixed" and m["remeasured"]["decoding"] == "prompt"
    assert all(lam is not None for call in mixed_calls for lam in call)  # own-prompt points decode plainly
    # steered sweeps, wording, vertices, centre; base fronts and vertices; DPO's front given the text
    assert len(mixed_calls) == 2 + 2 + 1 + 1 + 2 + 1 + 2
    steered, old = m["runs"][demo.STEERED]["0"], before["runs"][demo.STEERED]["0"]
    for key in ("listwise", "delta", "train_loss"):
        assert steered[key] == old[key]  # scored, not generated: the run's own
    assert m["base_with_text"]["listwise"] == before["base_with_text"]["listwise"]
    # at a vertex mixed decoding is the prompt's greedy reply (float32)
    assert steered["vertices"]["replies"] == old["vertices"]["replies"]
    assert m["runs"][demo.DPO]["0"]["single"] == before["runs"][demo.DPO]["0"]["single"]
    assert "Measured again under mixed decoding" in (out / "report.md").read_text()
    from lambda_dpo.demo.merge import merge_metrics

    def as_seed_1(metrics):
        return {**metrics, "seeds": [1], "runs": {k: {"1": v["0"]} for k, v in metrics["runs"].items()}}

    with pytest.raises(ValueError, match="in 'decoding'"):
        merge_metrics([before, as_seed_1(m)])
    with pytest.raises(ValueError, match="whether or from which decoding they were measured again"):
        merge_metrics([before, as_seed_1(again)])
    assert merge_metrics([again, as_seed_1(again)])["remeasured"]["from"] == [str(run), str(run)]
    (run / "models" / "dpo_best_worst-seed0").rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match="dpo_best_worst-seed0 not found"):
        remeasure_demo(run, tmp_path / "x", "mixed")
