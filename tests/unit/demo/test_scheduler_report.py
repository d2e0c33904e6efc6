"""The scheduler study's pieces on hand-made inputs: robustness from a vertex matrix, the adaptive trace
read from a log history, candidate names, and the report's table."""

import pytest

from lambda_dpo.demo.scheduler_report import candidate_names, render
from lambda_dpo.demo.scheduler_study import robustness, schedule_trace

ASPECTS = ["a", "b", "c"]


def test_robustness_is_the_worst_own_vertex_score_and_the_spread():
    matrix = {"a": {"a": 4.0, "b": 1.0, "c": 2.0}, "b": {"a": 3.0, "b": 2.5, "c": 2.0},
              "c": {"a": 1.0, "b": 5.0, "c": 3.0}}
    r = robustness(matrix, ASPECTS)
    assert r["own_vertex"] == {"a": 4.0, "b": 2.5, "c": 3.0}
    assert r["worst"] == 2.5 and r["worst_aspect"] == "b" and r["spread"] == pytest.approx(1.5)


def test_schedule_trace_reads_the_adaptive_updates_only():
    history = [{"loss": 1.0, "step": 5},
               {"lambda_prob/0": 0.7, "lambda_prob/1": 0.3, "lambda_perf/0": 0.9, "lambda_perf/1": 0.8,
                "lambda_perf/mean": 0.85, "step": 10},
               {"eval_loss": 2.0, "step": 10}]
    assert schedule_trace(history) == [{"step": 10, "probs": [0.7, 0.3], "perf": [0.9, 0.8]}]
    assert schedule_trace([{"loss": 1.0}]) == []


def test_candidate_names():
    cands = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1 / 3] * 3, [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]
    assert candidate_names(cands, ASPECTS) == ["a", "b", "c", "centre", "random 1", "random 2"]


def test_report_rows_are_means_over_seeds():
    def run(seed, hv, worst):
        return {"seed": seed, "steerability": {"hypervolume": hv, "spearman": {"words": 0.5}},
                "robustness": {"worst": worst, "spread": 1.0, "own_vertex": dict.fromkeys(ASPECTS, worst)},
                "mean_words": [10.0, 20.0, 40.0], "schedule": [], "seconds": 600.0 + 300 * seed}
    m = {"model": "m", "seeds": [0, 1], "budget": {"steered_steps": 200}, "prompts": 24, "aspects": ASPECTS,
         "conflict": ["a", "b"], "sweep": [0, 0.5, 1], "wall_seconds": 60, "torch_threads": 2,
         "runs": {"grid": [run(0, 5.0, 3.0), run(1, 7.0, 4.0)]}}
    text = render(m)
    assert "| grid | 6.00 ± 1.41 | 0.50 ± 0.00 | 3.50 ± 0.71 | 1.00 ± 0.00 |" in text
    assert "| 4.00 ± 0.00 |" in text  # words at the last weight over the first
    assert "scheduler.png" not in text  # no adaptive arm, no plot
    # the runs' own times, not the last invocation's (a rerun that keeps seed 0 took only seed 1's)
    assert "Training and measurement: 25 min over its 2 runs at 2 threads." in text
