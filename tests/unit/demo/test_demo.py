"""The demo's presets and command line, and its report and ablation tables on hand-made metrics (no training).
The pipelines end to end on a tiny model: tests/e2e/test_demo_pipeline.py."""

import json
import logging
import sys

import pytest

from lambda_dpo.demo import report
from lambda_dpo.demo import run as demo


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


def test_demo_cli_passes_the_decoding_and_remeasure_needs_out(monkeypatch, tmp_path, capsys):
    from lambda_dpo import cli
    from lambda_dpo.demo import remeasure

    seen, run_demo = {}, demo.run_demo
    monkeypatch.setattr(demo, "run_demo", lambda *a, **kw: seen.setdefault("run", kw["decoding"]) and tmp_path)
    monkeypatch.setattr(remeasure, "remeasure_demo", lambda run, out, decoding: seen.setdefault("again", (run, decoding))
                        and tmp_path)
    cli.main(["demo", "--preset", "quick", "--decoding", "mixed"])
    cli.main(["demo", "--remeasure", "runs/x", "--out", str(tmp_path)])
    assert seen == {"run": "mixed", "again": ("runs/x", "prompt")}
    with pytest.raises(SystemExit, match="demo --remeasure: give --out"):
        cli.main(["demo", "--remeasure", "runs/x"])
    with pytest.raises(SystemExit):
        cli.main(["demo", "--decoding", "beam"])
    assert "invalid choice: 'beam'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="decoding 'beam' is not one of"):
        run_demo("quick", tmp_path, decoding="beam")


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
