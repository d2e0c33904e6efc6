"""The demo and ablation pipelines end to end on a tiny model and a tiny freshly built dataset."""

import json
import logging
import sys

import pytest

from lambda_dpo.demo import ablation
from lambda_dpo.demo import report
from lambda_dpo.demo import run as demo
from lambda_dpo.demo.dataset.build import build_demo_dataset

MICRO = demo.Preset(max_steps=2, steered_steps=3, eval_lists=3, prompts=2, ood_prompts=3, max_new_tokens=4,
                    weights=(0.0, 0.1, 0.5, 1.0), control_weights=(0.0, 1.0), wording_weights=(0.0, 1.0))


@pytest.fixture(scope="module")
def tiny_data(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_data")
    build_demo_dataset(out, seed=1, n_prompts=10, n_eval=3, max_new_tokens=8, model=tiny_llama_dir, batch_size=8,
                       progress=False)
    return out


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


def test_presets_train_as_many_lists_and_sweep_unseen_weights():
    for p in demo.PRESETS.values():
        assert p.steered_steps == 2 * p.max_steps
    full, default = demo.PRESETS["full"], demo.PRESETS["default"]
    assert full.seeds == (0, 1, 2) and len(full.weights) >= 9 and len(full.control_weights) >= 9
    assert full.ood_prompts >= 40 and default.steered_steps >= 200 and set(full.methods) == set(demo.METHODS)
    assert default.methods == (demo.STEERED, demo.DPO)  # lambda-fixed in the full preset only (time)
    assert {0.1, 0.4, 0.6, 0.9} <= set(default.weights)
    assert len(demo.read_questions(demo.ood_questions_file())) >= 40


def test_demo_cli_passes_the_model_dtype_to_every_trained_model(monkeypatch, tmp_path):
    from lambda_dpo import cli

    seen = []

    def fake_train(name, overrides, *args):
        seen.append((name, overrides["model_dtype"]))
        raise KeyboardInterrupt  # stop after the first model: only the overrides matter here

    monkeypatch.setattr(demo, "train_method", fake_train)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["demo", "--preset", "quick", "--out", str(tmp_path), "--model-dtype", "float32"])
    assert seen == [("lambda_dpo_steered", "float32")]


def _front(pair, ws, a_scores, b_scores, words):
    """A measured front of hand-made means, the shape `demo.run.measure_sweep` returns."""
    from lambda_dpo.evaluation.protocol import steerability, unseen_weights

    sweep = {"pair": list(pair), "weights": list(ws), "replies": [["r"] for _ in ws], "words": [[w] for w in words],
             "scores": {pair[0]: [[x] for x in a_scores], pair[1]: [[x] for x in b_scores]},
             "mean_words": list(words), "means": {pair[0]: list(a_scores), pair[1]: list(b_scores)}}
    return {"sweep": sweep, "steerability": steerability(sweep), "unseen": unseen_weights(sweep, 0.25)}


def _metrics():
    pair = ("conciseness", "informativeness")
    ws, cw = [0.0, 0.1, 0.5, 1.0], [0.0, 0.5, 1.0]
    steered = _front(pair, ws, [5, 4.6, 4, 2], [1.5, 2, 3, 4], [10, 14, 30, 60])  # at 0 / 0.5 / 1: HV 2 + 3 * 1.5 + 1 * 1
    flat = _front(pair, cw, [4, 4, 4], [2, 2, 2], [30, 30, 30])  # one point (4, 2): HV 3
    point = {"point": [4.5, 1.5], "hypervolume": 1.75, "means": {a: 3.0 for a in ASPECTS}, "replies": ["r"]}
    vertices = {"matrix": {k: {j: 4.0 if j == k else 3.0 for j in ASPECTS} for k in ASPECTS},
                "diagonal_is_column_max": {j: True for j in ASPECTS}}
    run = {"fronts": {"general": steered}, "other_wording": {"general": _front(pair, [0.0, 1.0], [4, 3], [2, 3], [20, 40])},
           "vertices": vertices, "centre": {"means": {a: 3.5 for a in ASPECTS}}, "listwise": {"conciseness/top1": 0.9},
           "delta": {"mean_abs_delta": 5.0, "spearman": 0.5}}
    control = {"fronts": {"general": flat}, "single": {"general": point}, "listwise": {}}
    return {"preset": "micro", "model": "m", "seeds": [0], "aspects": list(ASPECTS), "conflict": list(pair),
            "reference": [1.0, 1.0], "grid_step": 0.25, "other_wording": "priorities", "sets": {"general": 1},
            "prompts": {"general": ["Why is the sky blue?"]}, "recipe": {"lambda_text": "instructions"},
            "budget": {"steered_steps": 4, "max_steps": 2, "max_new_tokens": 8, "weights": ws, "control_weights": cw,
                       "wording_weights": [0.0, 1.0]},
            "runs": {"lambda_dpo_steered": {"0": run}, "dpo_best_worst": {"0": control}, "lambda_dpo_fixed": {"0": control}},
            "base_with_text": {"fronts": {"general": flat}, "vertices": vertices, "listwise": {},
                               "delta": {"mean_abs_delta": 1.0, "spearman": 0.1}},
            "baselines": {}, "wall_seconds": 1.0, "stage_seconds": {"training": 0.5}, "torch_threads": 2}


ASPECTS = ("instruction_following", "correctness", "conciseness", "informativeness")


def test_report_compares_hypervolumes_at_the_controls_weights(tmp_path):
    m = _metrics()
    rows = {r["model"]: r for r in report.comparison(m, "general")}
    # the steered front at w = 0, 0.5, 1 (its unseen 0.1 left out): (5, 1.5), (4, 3), (2, 4) -> 2 + 4.5 + 1 = 7.5
    assert rows["lambda_dpo_steered"]["hv"] == [7.5]
    assert rows["base"]["hv"] == [3.0] and rows["base"]["ratio"] == 2.5
    assert rows["DPO, own prompt (one point)"]["ratio"] == 7.5 / 1.75
    assert rows["lambda_dpo_steered"]["words"] == [6.0]
    sentence = report.verdict(m)
    assert "hypervolume is 7.50, 2.50x that of the strongest control (base model + same text, 3.00); above every control" in sentence
    assert "from 10 to 60 words (6.0x)" in sentence
    text = report.save_demo_outputs(m, tmp_path).read_text()
    assert "| 0.10 (unseen) | 14.00 | 4.60 | 2.00 | - |" in text
    assert "> Why is the sky blue?" in text  # the example rule on one prompt picks it
    assert (tmp_path / "fronts.png").exists() and json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(m))


def test_report_is_written_without_matplotlib(tmp_path, monkeypatch, caplog):
    """matplotlib is the plots extra: without it the demo still writes metrics.json and report.md, and the
    report and the log say what the plots need."""
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    m = _metrics()
    with caplog.at_level(logging.WARNING, logger="lambda_dpo.demo.report"):
        text = report.save_demo_outputs(m, tmp_path).read_text()
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert "| 0.10 (unseen) | 14.00 | 4.60 | 2.00 | - |" in text
    assert "![fronts]" not in text and "![lengths]" not in text and not list(tmp_path.glob("*.png"))
    assert "No plots: the plots (fronts.png, lengths.png) need matplotlib" in text
    assert "pip install 'lambda-dpo[plots]'" in text and "pip install 'lambda-dpo[plots]'" in caplog.text


def test_report_says_when_a_control_is_not_beaten(tmp_path):
    m = _metrics()
    big = _front(("conciseness", "informativeness"), [0.0, 0.5, 1.0], [5, 5, 5], [5, 5, 5], [1, 1, 1])
    m["base_with_text"]["fronts"]["general"] = big  # (5, 5): HV 16 > 7.5
    assert "NOT above every control" in report.verdict(m)


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


def test_ablation_report_counts_undefined_seeds_and_says_whether_a_lead_beats_the_spread(tmp_path):
    from lambda_dpo.demo.tables import write_ablation_report

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
