"""The docs carry one demo report per preset, and each is what its metrics.json renders to today."""

import dataclasses
import json

import pytest
from conftest import REPO

from lambda_dpo.demo.report import write_report
from lambda_dpo.demo.run import PRESETS


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_has_a_committed_report_of_its_budget(preset):
    folder = REPO / "docs" / f"demo-{preset}"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["preset"] == preset
    assert m["budget"] == json.loads(json.dumps(dataclasses.asdict(PRESETS[preset])))
    assert m["seeds"] == list(PRESETS[preset].seeds)
    for name in ("report.md", "fronts.png", "lengths.png"):
        assert (folder / name).stat().st_size > 0, f"docs/demo-{preset}/{name} is empty"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_committed_report_is_what_its_metrics_render_to(preset, tmp_path):
    """A change to the report's wording or tables shows up here: regenerate the committed reports
    with `lambda-dpo demo --merge docs/demo-PRESET --out docs/demo-PRESET` (or rerun the preset)."""
    pytest.importorskip("matplotlib")  # without it the report says the plots were skipped
    folder = REPO / "docs" / f"demo-{preset}"
    m = json.loads((folder / "metrics.json").read_text())
    rendered = write_report(m, tmp_path).read_text()
    assert rendered == (folder / "report.md").read_text()


def test_committed_loss_comparison_is_what_its_metrics_render_to(tmp_path):
    """docs/losses (the "Does it beat DPO?" page's figures): the full preset's budget, every loss at every
    seed, and report.md as its metrics.json renders today (regenerate: rerun the study on a copy of
    docs/losses, which keeps the measured runs and writes the report again)."""
    from lambda_dpo.demo.loss_comparison import LOSS_METHODS
    from lambda_dpo.demo.loss_report import render

    folder = REPO / "docs" / "losses"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["budget"] == json.loads(json.dumps(dataclasses.asdict(PRESETS["full"]))) and m["seeds"] == [0, 1, 2]
    assert set(m["summary"]) == {"base", *LOSS_METHODS}
    runs = sorted(p.name for p in (folder / "runs").glob("*.json"))
    assert runs == sorted(["base.json", *(f"{k}-seed{s}.json" for k in LOSS_METHODS for s in (0, 1, 2))])
    assert render(m) == (folder / "report.md").read_text()


def test_committed_scheduler_study_is_what_its_metrics_render_to():
    """docs/scheduler (the "Choosing the lambda source" page's table): every arm, the full preset's budget,
    measured on the dev split, and report.md as its metrics.json renders today."""
    from lambda_dpo.demo.scheduler_report import render
    from lambda_dpo.demo.scheduler_study import SCHEDULER_ARMS

    folder = REPO / "docs" / "scheduler"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["budget"] == json.loads(json.dumps(dataclasses.asdict(PRESETS["full"])))
    assert list(m["runs"]) == list(SCHEDULER_ARMS) and m["prompts"] == 24 and m["seeds"] == [0, 1, 2]
    assert all(r["settings"]["overrides"] == json.loads(json.dumps(SCHEDULER_ARMS[name]))
               for name, runs in m["runs"].items() for r in runs)
    runs = sorted(p.name for p in (folder / "runs").glob("*.json"))  # what a rerun with more seeds keeps
    assert runs == sorted(f"{name}-seed{s}.json" for name in SCHEDULER_ARMS for s in m["seeds"])
    assert render(m) == (folder / "report.md").read_text()
    assert (folder / "scheduler.png").stat().st_size > 0


def test_committed_mixed_decoding_report_measures_the_full_runs_models_again(tmp_path):
    """docs/demo-full-mixed: the models of docs/demo-full measured again under mixed decoding
    (`lambda-dpo demo --remeasure` per seed, then `--merge`): the same runs, their training diagnostics
    unchanged, and report.md as its metrics.json renders today."""
    pytest.importorskip("matplotlib")
    folder, full = REPO / "docs" / "demo-full-mixed", json.loads((REPO / "docs" / "demo-full" / "metrics.json").read_text())
    m = json.loads((folder / "metrics.json").read_text())
    assert m["decoding"] == "mixed" and m["remeasured"]["decoding"] == "prompt" and len(m["remeasured"]["from"]) == 3
    for key in ("preset", "budget", "seeds", "recipe", "prompts", "baselines"):
        assert m[key] == full[key], key
    for name, by_seed in full["runs"].items():
        for seed, run in by_seed.items():
            for key in ("listwise", "delta", "train_loss"):
                assert m["runs"][name][seed].get(key) == run.get(key), (name, seed, key)
    assert write_report(m, tmp_path).read_text() == (folder / "report.md").read_text()
