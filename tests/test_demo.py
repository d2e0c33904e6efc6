"""The demo and ablation pipelines end to end on a tiny model and a tiny freshly built dataset."""

import dataclasses
import json

import pytest

from lambda_dpo.demo import run as demo
from lambda_dpo.demo.data.build import build_demo_dataset

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


def test_demo_measures_steering_and_writes_report_and_plots(micro, monkeypatch, tiny_llama_dir, tmp_path):
    batches = []

    def recording_generate(sm, prompts, lam=None, **kw):
        batches.append((len(prompts), kw["batch_size"]))
        return generate(sm, prompts, lam, **kw)

    generate = demo.generate
    monkeypatch.setattr(demo, "generate", recording_generate)
    out = demo.run_demo("micro", tmp_path / "run", model=tiny_llama_dir)
    # every generation call of the demo runs its prompts as one batch (GEN_BATCH: faster decoding)
    assert batches and all(n <= b == demo.GEN_BATCH for n, b in batches)
    assert all(p.gen_prompts <= demo.GEN_BATCH for p in demo.PRESETS.values())
    stages = json.loads((out / "metrics.json").read_text())["stage_seconds"]
    assert list(stages) == list(demo.STAGES) and all(v > 0 for v in stages.values())
    # each figure is rounded to 0.1 s: the stages' sum may exceed the rounded wall time by 0.05 per figure
    rounding = 0.05 * (len(stages) + 1) + 1e-9
    assert sum(stages.values()) <= json.loads((out / "metrics.json").read_text())["wall_seconds"] + rounding
    assert f"training {stages['training']:.0f} s" in (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]) == set(demo.METHODS) and metrics["seeds"] == [0]
    steered = metrics["runs"]["lambda_dpo_steered"]["0"]
    assert [p["w"] for p in steered["edge"]["points"]] == list(demo.EDGE_WS)
    assert len(steered["edge"]["points"][0]["replies"]) == MICRO.gen_prompts
    assert steered["delta"]["replies"] > 0 and "scores" in steered["centre"]
    assert "single" in metrics["runs"]["dpo_best_worst"]["0"]  # never sees lambda: one judged point
    base = metrics["base_with_text"]
    assert base["edge"]["points"][0]["lambda"] == {"instruction_following": 0.0, "correctness": 0.0,
                                                   "conciseness": 1.0, "informativeness": 0.0}
    assert set(metrics["baselines"]) == {"random", "shortest", "longest"}
    assert metrics["recipe"]["lambda_text"] == demo.load_config(None).lambda_text  # the training defaults
    report = (out / "report.md").read_text()
    for heading in ("## Targets (", "## Along the conciseness-informativeness edge", "## One held-out prompt",
                    "## Generation-free", "## Held-out top-1", "pick: shortest"):
        assert heading in report
    assert (out / "steering.png").stat().st_size > 1000 and (out / "pareto.png").stat().st_size > 1000


def test_the_steered_model_gets_its_own_step_budget(micro, monkeypatch, tiny_llama_dir, tmp_path):
    steps = {}

    def recording_train(cfg):
        steps[cfg.output_dir.split("/")[-1]] = cfg.max_steps
        return train(cfg)

    train = demo.train
    monkeypatch.setattr(demo, "train", recording_train)
    monkeypatch.setitem(demo.PRESETS, "micro", dataclasses.replace(MICRO, steered_max_steps=3))
    out = demo.run_demo("micro", tmp_path / "run", model=tiny_llama_dir)
    assert steps == {"lambda_dpo_steered-seed0": 3, "dpo_best_worst-seed0": 2, "lambda_dpo_fixed-seed0": 2}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steered_max_steps"] == 3 and metrics["budget"]["max_steps"] == 2
    assert "2 (3 for the steered model) training steps per method" in (out / "report.md").read_text()
    assert demo.PRESETS["full"].steered_steps == 200 and demo.PRESETS["default"].steered_steps == 40


def _fake_metrics(words, base_words, top1_conc=0.95, top1_inf=0.8, dpo_if=0.5):
    """A hand-made metrics dict for `targets`: steered and base edges with the given mean words."""
    aspects = ["instruction_following", "correctness", "conciseness", "informativeness"]
    ws = [0.0, 0.25, 0.5, 0.75, 1.0]

    def edge(ws_words):
        pts = [{"w": w, "mean_words": x, "words": [x], "replies": ["r"],
                "scores": {"instruction_following": 4.0, "correctness": 3.0, "conciseness": 5 - 3 * w,
                           "informativeness": 1 + 3 * w}} for w, x in zip(ws, ws_words)]
        return {"points": pts, "summary": {"spearman": {"conciseness": -1.0, "informativeness": 1.0},
                                           "sign_test": {"words": {"up": 1, "down": 0, "ties": 0, "p_value": 1.0}}}}

    single = {"scores": {"instruction_following": 4.0, "correctness": 3.0, "conciseness": 3.0,
                         "informativeness": 2.0}, "mean_words": 30.0}
    steered = {"listwise": {"conciseness/top1": top1_conc, "informativeness/top1": top1_inf,
                            "instruction_following/top1": 0.6, "correctness/top1": 0.6},
               "edge": edge(words), "delta": {"spearman": 0.6, "mean_abs_delta": 5.0},
               "centre": {"scores": {"instruction_following": 3.95, "correctness": 2.8, "conciseness": 3.0,
                                         "informativeness": 2.0}}}
    dpo = {"listwise": {"instruction_following/top1": dpo_if, "correctness/top1": 0.5}, "single": single}
    return {"aspects": aspects, "conflict": ["conciseness", "informativeness"], "edge_ws": ws, "seeds": [0],
            "runs": {"lambda_dpo_steered": {"0": steered}, "dpo_best_worst": {"0": dpo},
                     "lambda_dpo_fixed": {"0": {"single": single}}},
            "base_with_text": {"edge": edge(base_words), "delta": {"spearman": 0.3}}}


def test_a_preset_without_the_fixed_model_reports_without_its_target(tmp_path):
    from lambda_dpo.evaluation.steering_report import targets, write_steering_report

    m = _fake_metrics([10, 20, 30, 40, 50], [20, 20, 25, 25, 30])
    del m["runs"]["lambda_dpo_fixed"]
    assert not any("lambda-fixed" in t for t, *_ in targets(m))
    m.update(preset="default", budget={"max_steps": 40, "eval_lists": 40, "gen_prompts": 16, "max_new_tokens": 64},
             model="m", torch_threads=2, wall_seconds=1.0, recipe={"lambda_text": "instructions"},
             baselines={"random": {f"{a}/top1": 0.4 for a in m["aspects"]}})
    m["base_with_text"].update(listwise={}, delta={"spearman": 0.3, "mean_abs_delta": 4.0})
    text = write_steering_report(m, tmp_path).read_text()
    assert "lambda_dpo_fixed" not in text and (tmp_path / "steering.png").exists()


def test_a_regenerated_report_names_the_budget_it_replaced(tmp_path):
    from lambda_dpo.evaluation.steering_report import write_steering_report

    m = _fake_metrics([10, 20, 30, 40, 50], [20, 20, 25, 25, 30])
    del m["runs"]["lambda_dpo_fixed"]
    m.update(preset="full", budget={"max_steps": 100, "eval_lists": 40, "gen_prompts": 24, "max_new_tokens": 96},
             model="m", torch_threads=2, wall_seconds=5004.0, recipe={"lambda_text": "instructions"},
             baselines={"random": {f"{a}/top1": 0.4 for a in m["aspects"]}},
             regenerated_from={"run": "runs/demo-full-100", "max_new_tokens": 64}, wall_seconds_regenerate=823.0)
    m["base_with_text"].update(listwise={}, delta={"spearman": 0.3, "mean_abs_delta": 4.0})
    text = write_steering_report(m, tmp_path).read_text()
    assert "96 new tokens (greedy)" in text
    assert ("wall time 5004 s for the run, whose generations were then redone at this budget "
            "(`scripts/regenerate_demo.py`, 823 s; the run itself generated 64 new tokens: `runs/demo-full-100`)") in text
    # a re-scored run says so, with the command; save_demo_outputs writes what the report was made from
    from lambda_dpo.evaluation.steering_report import save_demo_outputs

    m["listwise_rescored"] = {"command": "python scripts/rescore_listwise.py R --models M --out O"}
    out = tmp_path / "rescored"
    text = save_demo_outputs(m, out).read_text()
    assert "listwise figures recomputed from the saved models: `python scripts/rescore_listwise.py R" in text
    assert json.loads((out / "metrics.json").read_text())["listwise_rescored"] == m["listwise_rescored"]


def test_demo_cli_passes_the_model_dtype_to_every_trained_model(monkeypatch, tmp_path):
    from lambda_dpo import cli

    seen = []

    def fake_train(name, overrides, *args):
        seen.append((name, overrides["model_dtype"]))
        raise KeyboardInterrupt  # stop after the first model: only the overrides matter here

    monkeypatch.setattr(demo, "_train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["demo", "--preset", "quick", "--out", str(tmp_path), "--model-dtype", "float32"])
    assert seen == [("lambda_dpo_steered", "float32")]


def test_targets_are_computed_from_the_numbers():
    from lambda_dpo.evaluation.steering_report import targets

    rows = {t: (v, ok) for t, v, _, ok in targets(_fake_metrics([10, 20, 30, 40, 50], [20, 20, 25, 25, 30]))}
    assert rows["top-1 at the conciseness vertex"] == ("0.95", True)
    assert rows["mean words rise strictly with w (5 points)"] == ("10 / 20 / 30 / 40 / 50", True)
    assert rows["mean words, w=1 end / w=0 end"] == ("5.00x", True)
    assert rows["word ratio over the base model's with the same text"] == ("5.00 / 1.50 = 3.33x", True)
    assert rows["Spearman of Delta over the base model's"] == ("0.60 / 0.30 = 2.00x", True)
    assert rows["Spearman(lambda_conciseness, conciseness score) along the edge"] == ("1.00", True)
    assert rows["top-1 at the instruction_following vertex vs DPO best-vs-worst"] == ("0.60 vs 0.50", True)
    assert rows["correctness judge score at the centre lambda vs DPO"] == ("2.80 vs 3.00", False)  # 0.2 below
    assert rows["steered front dominates the lambda-fixed point"][1]
    rows = {t: (v, ok) for t, v, _, ok in targets(_fake_metrics([10, 20, 20, 40, 25], [10, 10, 10, 10, 20],
                                                                top1_inf=0.7, dpo_if=0.7))}
    assert not rows["mean words rise strictly with w (5 points)"][1]
    assert rows["mean words, w=1 end / w=0 end"] == ("2.50x", False)
    assert rows["word ratio over the base model's with the same text"] == ("2.50 / 2.00 = 1.25x", False)
    assert rows["top-1 at the informativeness vertex"] == ("0.70", False)
    assert rows["top-1 at the instruction_following vertex vs DPO best-vs-worst"] == ("0.60 vs 0.70", False)


def test_a_tie_over_seeds_meets_a_target_whatever_the_float_rounding():
    """Steered correctness top-1 0.8 / 0.85 / 0.75 against DPO's 0.775 / 0.8 / 0.825 (a held-out run of
    2026-12-02): both means are 0.8, but summed in floating point the first is 0.7999999999999999."""
    from lambda_dpo.evaluation.steering_report import targets

    m = _fake_metrics([10, 20, 30, 40, 50], [20, 20, 25, 25, 30])
    assert (0.8 + 0.85 + 0.75) / 3 < (0.775 + 0.8 + 0.825) / 3  # the rounding this guards against
    m["seeds"] = [0, 1, 2]
    for name, values in (("lambda_dpo_steered", (0.8, 0.85, 0.75)), ("dpo_best_worst", (0.775, 0.8, 0.825))):
        m["runs"][name] = {str(i): {**m["runs"][name]["0"], "listwise": {**m["runs"][name]["0"]["listwise"],
                                                                          "correctness/top1": v}}
                           for i, v in enumerate(values)}
    rows = {t: (v, ok) for t, v, _, ok in targets(m)}
    assert rows["top-1 at the correctness vertex vs DPO best-vs-worst"] == ("0.80 vs 0.80", True)
    m["runs"]["dpo_best_worst"]["2"]["listwise"]["correctness/top1"] = 0.85  # DPO ahead by 0.0083
    rows = {t: (v, ok) for t, v, _, ok in targets(m)}
    assert rows["top-1 at the correctness vertex vs DPO best-vs-worst"] == ("0.80 vs 0.81", False)


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


def _load_heldout_recipe():
    """scripts/heldout_recipe.py (not a package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "heldout_recipe.py"
    spec = importlib.util.spec_from_file_location("heldout_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_heldout_recipe_trains_only_the_steered_model_and_reuses_the_baselines(monkeypatch, tmp_path):
    from types import SimpleNamespace

    mod = _load_heldout_recipe()
    ref = _fake_metrics([10, 20, 30, 40, 50], [20, 20, 25, 25, 30])
    ref.update(preset="full", budget={"max_steps": 100, "eval_lists": 40, "gen_prompts": 24, "max_new_tokens": 96},
               model="m", torch_threads=2, wall_seconds=1.0, recipe={"lambda_text": "instructions"},
               methods={name: {} for name in demo.METHODS},
               baselines={"random": {f"{a}/top1": 0.4 for a in ref["aspects"]}})
    ref["base_with_text"].update(listwise={}, delta={"spearman": 0.3, "mean_abs_delta": 4.0})
    ref["runs"]["lambda_dpo_fixed"]["0"]["listwise"] = {"instruction_following/top1": 0.7}
    ref["seeds"] = [0, 1, 2]
    ref["runs"] = {name: {str(s): per_seed["0"] for s in ref["seeds"]} for name, per_seed in ref["runs"].items()}
    ref_file = tmp_path / "ref.json"
    ref_file.write_text(json.dumps(ref))
    trained, base_measured = [], []

    def fake_train(name, overrides, p, out, seed, model, data):
        trained.append((name, overrides["max_steps"], overrides["lambda_vertex_share"], p.max_steps, seed))
        return SimpleNamespace(trainer=SimpleNamespace(args=SimpleNamespace(**{k: 0 for k in demo.RECIPE_KEYS})))

    def fake_measure(result, specs, p, steered):
        assert steered
        run = json.loads(json.dumps(ref["runs"]["lambda_dpo_steered"]["0"]))
        run["edge"]["points"][-1]["mean_words"] = 90.0  # the new recipe's own figures, not the reference's
        return run

    monkeypatch.setattr(mod, "_train", fake_train)
    monkeypatch.setattr(mod, "measure_model", fake_measure)
    monkeypatch.setattr(mod, "measure_base", lambda *a: base_measured.append(a) or ref["base_with_text"])
    monkeypatch.setattr(mod, "_read_specs", lambda path: [])
    monkeypatch.setattr(mod, "demo_data_dir", lambda: tmp_path)
    out = mod.main(["--out", str(tmp_path / "run"), "--baselines", str(ref_file), "max_steps=200",
                    "lambda_vertex_share=0.3"])
    assert trained == [("lambda_dpo_steered", 200, 0.3, 100, s) for s in (0, 1, 2)]  # p: the baselines' budget
    assert not base_measured  # the overrides do not change what the untrained model reads
    m = json.loads((out / "metrics.json").read_text())
    assert m["runs"]["dpo_best_worst"] == ref["runs"]["dpo_best_worst"]
    assert m["runs"]["lambda_dpo_fixed"] == ref["runs"]["lambda_dpo_fixed"]
    assert [r["edge"]["points"][-1]["mean_words"] for r in m["runs"]["lambda_dpo_steered"].values()] == [90.0] * 3
    assert m["budget"]["max_steps"] == 100 and m["steered_max_steps"] == 200  # the baselines' budget, and ours
    assert m["methods"]["lambda_dpo_steered"]["lambda_vertex_share"] == 0.3
    text = (out / "report.md").read_text()
    assert "100 (200 for the steered model) training steps per method" in text
    assert f"DPO, the lambda-fixed model and the rating-blind picks are those of `{ref_file}`" in text
    assert "90 " in text.split("## Targets")[1].split("\n\n")[1]  # the targets use the new steered figures
    # a change in what the base model reads measures it again; a reference of another budget is refused
    mod.main(["--out", str(tmp_path / "run2"), "--baselines", str(ref_file), "max_steps=200",
              "lambda_vertex_share=0.3", "lambda_text=priorities"])
    assert len(base_measured) == 1
    ref["budget"]["gen_prompts"] = 16
    ref_file.write_text(json.dumps(ref))
    with pytest.raises(SystemExit, match="different budget"):
        mod.main(["--out", str(tmp_path / "run3"), "--baselines", str(ref_file)])
