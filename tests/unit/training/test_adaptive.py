"""The adaptive (performance-driven) lambda source and its training-time signal."""

import json
import shutil

import pytest
import torch

from lambda_dpo.lambdas import AdaptiveLambda
from lambda_dpo.training import adaptive_lambda as sched
from lambda_dpo.training.config import load_config

ASPECTS = ("a", "b", "c")


def test_candidates_are_vertices_centre_and_random_points():
    src = AdaptiveLambda(ASPECTS, n_random=2, seed=0)
    c = src.candidates
    assert c.shape == (6, 3) and torch.allclose(c.sum(-1), torch.ones(6))
    assert torch.equal(c[:3], torch.eye(3)) and torch.allclose(c[3], torch.full((3,), 1 / 3))
    assert torch.allclose(src.probs, torch.full((6,), 1 / 6))


def test_update_is_exp3_softmax_with_floor_and_moves_toward_better_candidates():
    src = AdaptiveLambda(ASPECTS, n_random=0, temperature=0.1, floor=0.05)
    signal = torch.tensor([0.3, 0.1, 0.0, 0.1])
    probs = src.update(signal, step=10)
    expected = 0.8 * torch.softmax(signal / 0.1, 0) + 0.05
    torch.testing.assert_close(probs, expected)
    assert probs.argmax() == 0 and probs.min() >= 0.05 and probs.sum().item() == pytest.approx(1.0)
    # the draws follow the new probabilities
    draws = src.draw([(0, i) for i in range(3000)])
    share_a = (draws[:, 0] == 1).float().mean().item()
    assert share_a == pytest.approx(probs[0].item(), abs=0.03)
    assert src.history[-1]["step"] == 10


def test_state_round_trip_and_bad_signals():
    src = AdaptiveLambda(ASPECTS, n_random=1)
    src.update(torch.tensor([1.0, 0, 0, 0, 0]))
    other = AdaptiveLambda(ASPECTS, n_random=1)
    other.load_state_dict(json.loads(json.dumps(src.state_dict())))
    assert torch.allclose(other.probs, src.probs) and other.history == src.history
    with pytest.raises(ValueError, match="finite"):
        src.update(torch.tensor([float("nan"), 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="floor"):
        AdaptiveLambda(ASPECTS, n_random=0, floor=0.3)


def test_resume_draws_the_batch_drawn_ahead_with_its_probabilities():
    """Training draws batch n+1 (both lambdas of a contrast pair) before the update after step n.
    Restored at batch 2 (the count of batches trained), the source draws batches 2 and 3 as the
    uninterrupted one did; restoring only the probabilities does not."""
    keys = [[(0, 10 * n + i) for i in range(40)] for n in range(4)]
    signals = [torch.tensor([1.0, 0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0, 0]), torch.tensor([0, 0, 1.0, 0, 0])]

    def pair(src, n):
        lam = src.draw(keys[n])
        return torch.cat([lam, src.draw_other(keys[n], lam)])

    full = AdaptiveLambda(ASPECTS, n_random=1, seed=3)
    drawn = [pair(full, 0)]
    for step in (1, 2, 3):  # the prefetch: batch `step` is drawn, then step `step` updates
        drawn.append(pair(full, step))
        full.update(signals[step - 1], step)
        if step == 2:
            state = json.loads(json.dumps(full.state_dict()))
    resumed, naive = AdaptiveLambda(ASPECTS, n_random=1, seed=3), AdaptiveLambda(ASPECTS, n_random=1, seed=3)
    resumed.load_state_dict(state)
    naive.load_state_dict(state)
    resumed.batches_drawn = 2  # batches 0 and 1 were trained before the checkpoint
    assert torch.equal(pair(resumed, 2), drawn[2]) and not torch.equal(pair(naive, 2), drawn[2])
    assert torch.equal(pair(resumed, 3), drawn[3])  # prefetched during step 3, before its update
    resumed.update(signals[2], 3)
    assert resumed.history == full.history and torch.equal(resumed.probs, full.probs)


def test_candidate_performance_is_lambda_weighted_ndcg(monkeypatch):
    """With implicit rewards that rank exactly by aspect a, the vertex e_a scores NDCG 1 on a."""
    from lambda_dpo.data.schema import make_list
    from lambda_dpo.batching import ScoredList

    lists = [make_list([{"role": "user", "content": f"q{i}"}], ["x", "y", "z"],
                       {"a": [3, 1, 2], "b": [1, 3, 2], "c": [2, 2, 2]}, f"mem:{i}") for i in range(3)]
    items = [ScoredList(type("T", (), {"source": l})(), torch.zeros(3), i) for i, l in enumerate(lists)]
    collator = type("C", (), {"aspects": ASPECTS})()
    monkeypatch.setattr(sched, "implicit_rewards", lambda *a, **k: torch.tensor([[3.0, 1.0, 2.0]] * 3))
    model = torch.nn.Linear(1, 1)
    perf = sched.candidate_performance(model, collator, items, torch.tensor([[1.0, 0, 0], [0, 1.0, 0],
                                                                             [0.5, 0.5, 0]]))
    assert perf[0].item() == pytest.approx(1.0)
    assert perf[1].item() < 1.0
    assert perf[2].item() == pytest.approx((perf[0] + perf[1]).item() / 2)


def test_adaptive_training_logs_and_saves_the_schedule(tiny_llama_dir, tmp_path):
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    cfg = load_config(None, train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir,
                      output_dir=str(tmp_path / "m"), max_steps=2, eval_fraction=0.0, logging_steps=1,
                      reference_cache_dir=str(tmp_path / "c"), lambda_source="adaptive", adaptive_every=1,
                      adaptive_val_lists=3, adaptive_candidates=1, learning_rate=1e-2)
    result = train(cfg)
    logged = [h for h in result.trainer.state.log_history if "lambda_prob/0" in h]
    assert len(logged) == 2
    assert all(0.0 <= h[f"lambda_perf/{i}"] <= 1.0 for h in logged for i in range(5))  # the signal's input
    schedule = json.loads((tmp_path / "m" / "lambda_schedule.json").read_text())
    assert len(schedule["source"]["history"]) == 2 and len(schedule["candidates"]) == 5
    assert sum(schedule["source"]["probs"]) == pytest.approx(1.0)
    assert len(result.trainer.train_dataset) == 24 - 3  # the validation slice is not trained on


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("contrast", [False, True])
def test_adaptive_schedule_resumes_exactly(tiny_llama_dir, tmp_path, contrast):
    """Resuming from a checkpoint restores the probabilities, the last signal and the count of
    batches trained (the batch after the checkpoint was drawn before its update): the schedule and
    the weights end as in the uninterrupted run."""
    from safetensors.torch import load_file

    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    def run(out, **extra):
        fields = dict(train_file="examples/tiny_listwise.jsonl", model_name_or_path=tiny_llama_dir,
                      output_dir=str(out), max_steps=4, eval_fraction=0.0, logging_steps=1,
                      reference_cache_dir=str(tmp_path / "c"), lambda_source="adaptive", adaptive_every=1,
                      adaptive_val_lists=3, adaptive_candidates=1, learning_rate=1e-2, save_strategy="steps",
                      save_steps=2, seed=5, lambda_contrast=contrast)
        return train(load_config(None, **{**fields, **extra}))

    run(tmp_path / "full")
    (tmp_path / "cut").mkdir()  # an interrupted run: only its checkpoint-2 survived
    shutil.copytree(tmp_path / "full" / "checkpoint-2", tmp_path / "cut" / "checkpoint-2")
    assert (tmp_path / "cut" / "checkpoint-2" / "lambda_scheduler.json").exists()
    run(tmp_path / "cut", resume_from_checkpoint="latest")
    full, cut = (json.loads((tmp_path / d / "lambda_schedule.json").read_text()) for d in ("full", "cut"))
    assert cut["source"]["probs"] == full["source"]["probs"] and cut["last"] == full["last"]
    assert [h["step"] for h in cut["source"]["history"]] == [1, 2, 3, 4]
    weights = [load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("full", "cut")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_adaptive_source_refuses_dataloader_workers():
    # A collator in a worker process would keep drawing from the initial probabilities.
    with pytest.raises(ValueError, match="adaptive needs dataloader_num_workers: 0 .got 2."):
        load_config(None, lambda_source="adaptive", dataloader_num_workers=2)
    assert load_config(None, lambda_source="adaptive", dataloader_num_workers=0).lambda_source == "adaptive"
