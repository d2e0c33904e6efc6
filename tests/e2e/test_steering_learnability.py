"""Learnability of steering, and the exact behaviour of every steering option.

The learnability check: on a few lists whose two aspects rank the replies in opposite orders,
training under the two vertices must make the vertex-conditioned implicit reward rank each
aspect's best reply first (top-1 >= 0.9 under each vertex) on those same lists. A model that
ignores lambda cannot: one ranking of the replies serves one vertex only. If lambda did not reach
the policy's logits (conditioning lost, a cache keyed without lambda, the reference seeing lambda),
this fails.
"""

import json

import pytest
import torch

from lambda_dpo.batching import ListCollator
from lambda_dpo.conditioning import GRADED_LEVELS, LambdaText, aspect_instruction, condition_prompt, graded_tag, priority_tag
from lambda_dpo.data.schema import make_list, select_aspects
from lambda_dpo.evaluation.listwise import evaluate_lists
from lambda_dpo.generation import load_steerable, steered_prompt_ids
from lambda_dpo.lambdas import GridLambda, TableLambda
from lambda_dpo.losses import best_reply_nll, lambda_contrast_loss, lambda_dpo_loss
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

PAIR = ("conciseness", "informativeness")
TOPICS = ["rain", "the moon", "bread", "rivers", "music", "trees"]


def conflict_file(path, n_lists=6):
    """Lists of 3 replies: short, medium, long; conciseness prefers short, informativeness long,
    and a third aspect (ignored when `aspects` selects the pair) rates the medium one best."""
    with open(path, "w") as f:
        for topic in TOPICS[:n_lists]:
            replies = [f"{topic.capitalize()} is nice.",
                       f"{topic.capitalize()} matters to people in many ways, every day.",
                       f"{topic.capitalize()} has a long history: people studied it, wrote about it, and "
                       f"learned how it shapes weather, food, travel and culture across the whole world."]
            f.write(json.dumps({"prompt": f"Tell me about {topic}.", "responses": replies,
                                "ratings": {"conciseness": [5, 3, 1], "informativeness": [1, 3, 5],
                                            "correctness": [2, 5, 2]}}) + "\n")
    return str(path)


def vertex_table():
    return [{"weights": {PAIR[0]: 1.0}, "prob": 0.5}, {"weights": {PAIR[1]: 1.0}, "prob": 0.5}]


def train_pair(tmp_path, tiny_llama_dir, **overrides):
    data = conflict_file(tmp_path / "conflict.jsonl")
    fields = dict(model_name_or_path=tiny_llama_dir, train_file=data, eval_fraction=0, aspects=list(PAIR),
                  output_dir=str(tmp_path / "model"), reference_cache_dir=None, use_lora=False,
                  learning_rate=3e-3, beta=0.5, rating_temperature=0.5, max_steps=40,
                  per_device_train_batch_size=3, lambda_source="table", lambda_table=vertex_table(),
                  conditioning="prompt", lambda_text="instructions", logging_steps=40, seed=0,
                  lr_scheduler_type="constant", warmup_steps=0)
    fields.update(overrides)
    return train(load_config(None, **fields))


def train_lists_top1(result):
    items = result.trainer.train_dataset.items
    return evaluate_lists(result.trainer.model, result.trainer.data_collator, items, batch_size=8)


def test_vertex_conditioned_rewards_overfit_conflicting_lists(tmp_path, tiny_llama_dir, one_thread):
    metrics = train_pair(tmp_path, tiny_llama_dir)
    top1 = train_lists_top1(metrics)
    assert top1[f"{PAIR[0]}/top1"] >= 0.9 and top1[f"{PAIR[1]}/top1"] >= 0.9, top1


def test_without_conditioning_one_ranking_cannot_serve_both_vertices(tmp_path, tiny_llama_dir, one_thread):
    top1 = train_lists_top1(train_pair(tmp_path, tiny_llama_dir, conditioning="none"))
    # Every list's two vertices want different replies first, so at most one vertex is right per list.
    assert top1[f"{PAIR[0]}/top1"] + top1[f"{PAIR[1]}/top1"] <= 1.0 + 1e-6, top1


def test_contrast_and_rpo_train_and_the_saved_model_reproduces_the_text(tmp_path, tiny_llama_dir, one_thread):
    result = train_pair(tmp_path, tiny_llama_dir, lambda_contrast=True, rpo_alpha=0.5, max_steps=2, logging_steps=1,
                        aspect_instructions={PAIR[0]: "Be brief."}, use_lora=True)
    logged = [h for h in result.trainer.state.log_history if "nll_best" in h]
    assert logged and logged[0]["nll_best"] > 0
    sm = load_steerable(result.output_dir)
    # saved with every aspect's sentence written out: the user's, and the default for the other
    assert sm.lambda_text == LambdaText("instructions", {PAIR[0]: "Be brief.",
                                                         PAIR[1]: aspect_instruction(PAIR[1])})
    text = sm.tokenizer.decode(steered_prompt_ids(sm, "Tell me about rain.", f"{PAIR[0]}=0.75,{PAIR[1]}=0.25"))
    assert "Be brief. (weight 0.75)\nGive a detailed, thorough answer. (weight 0.25)" in text
    card = (result.output_dir / "README.md").read_text()
    assert "Be brief. (weight 0.50)" in card


# ---- exact behaviour of each option -----------------------------------------------------------

def test_instruction_text_orders_by_weight_and_omits_zero_weights():
    text = LambdaText("instructions", {"a": "Do A."})
    lam = {"a": 0.25, "b": 0.75, "c": 0.0}
    assert text.render(lam) == f"{aspect_instruction('b')} (weight 0.75)\nDo A. (weight 0.25)"
    assert aspect_instruction("b") == "Focus on b." and aspect_instruction("conciseness") == "Answer in one short sentence."
    assert text.render({"a": 0.5, "b": 0.5}) == "Do A. (weight 0.50)\nFocus on b. (weight 0.50)"  # ties: aspect order
    assert text.render({"a": 1.0, "b": 0.0}) == "Do A. (weight 1.00)"
    assert text.render({"a": 0.004, "b": 0.996}) == "Focus on b. (weight 1.00)"  # rounds to 0.00: left out
    # The whole system message when there is none; appended to an existing one.
    assert condition_prompt([{"role": "user", "content": "hi"}], lam, "prompt", text)[0] == {
        "role": "system", "content": text.render(lam)}
    sys_msgs = condition_prompt([{"role": "system", "content": "S."}, {"role": "user", "content": "hi"}], lam,
                                "prompt", text)
    assert sys_msgs[0]["content"] == "S.\n\n" + text.render(lam)
    assert LambdaText.from_dict(text.to_dict()) == text and LambdaText.from_dict(None).style == "weights"
    with pytest.raises(ValueError, match="lambda_text"):
        LambdaText("poem")


def test_aspect_order_keeps_the_lines_in_aspect_order_whatever_the_weights():
    text = LambdaText("instructions", {"a": "Do A."}, order="aspects")
    assert text.render({"a": 0.25, "b": 0.75, "c": 0.0}) == "Do A. (weight 0.25)\nFocus on b. (weight 0.75)"
    assert text.render({"a": 0.75, "b": 0.25}) == "Do A. (weight 0.75)\nFocus on b. (weight 0.25)"
    assert text.render({"a": 0.0, "b": 1.0}) == "Focus on b. (weight 1.00)"  # zero weights still left out
    assert LambdaText("priorities", order="aspects").render({"a": 0.2, "b": 0.8}) == (
        "Focus on a. (low priority)\nFocus on b. (high priority)")
    assert LambdaText.from_dict(text.to_dict()) == text
    # a model saved before the option existed reads its text heaviest first, as it was trained
    assert LambdaText.from_dict({"style": "instructions", "instructions": {}}).order == "weight"
    with pytest.raises(ValueError, match="lambda_text_order='random' is not one of weight, aspects"):
        LambdaText("instructions", order="random")
    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.prepare import lambda_text

    assert lambda_text(load_config(None, lambda_text_order="aspects")).order == "aspects"
    assert load_config(None).lambda_text_order == "weight"
    with pytest.raises(ValueError, match="lambda_text_order"):
        load_config(None, lambda_text_order="random")


def test_priority_text_writes_each_weight_as_a_word():
    text = LambdaText("priorities", {"a": "Do A."})
    assert text.render({"a": 0.25, "b": 0.75, "c": 0.0}) == "Focus on b. (high priority)\nDo A. (low priority)"
    assert text.render({"a": 0.5, "b": 0.5}) == "Do A. (medium priority)\nFocus on b. (medium priority)"
    assert text.render({"a": 1.0, "b": 0.0}) == "Do A."  # the only line: the sentence alone
    assert text.render({"a": 0.004, "b": 0.996}) == "Focus on b."  # a rounds to 0.00: left out, b alone
    # Bands on the weight rounded to two decimals as %.2f does (0.375 -> 0.38, 0.625 -> 0.62: never on an edge).
    for w, word in [(0.01, "low"), (0.374, "low"), (0.375, "medium"), (0.38, "medium"), (0.62, "medium"),
                    (0.625, "medium"), (0.63, "high"), (0.985, "high")]:
        assert priority_tag(w) == f" ({word} priority)", w
    assert text.render({"a": 0.6, "b": 0.3, "c": 0.1}) == (
        "Do A. (medium priority)\nFocus on b. (low priority)\nFocus on c. (low priority)")
    assert LambdaText.from_dict(text.to_dict()) == text


def test_graded_text_changes_its_word_at_every_tenth_of_weight():
    text = LambdaText("graded", {"a": "Do A."}, order="aspects")
    # The demo's sweep: nine weights, nine different texts, the words moving one rung per step.
    sweep = [text.render({"a": 1 - w, "b": w}) for w in (0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1)]
    assert len(set(sweep)) == 9
    assert sweep[0] == "Do A." and sweep[-1] == "Focus on b."  # a lone line: the sentence alone
    assert sweep[1] == "Do A. (very high priority)\nFocus on b. (very low priority)"
    assert sweep[4] == "Do A. (medium priority)\nFocus on b. (medium priority)"
    assert sweep[6] == "Do A. (fairly low priority)\nFocus on b. (high priority)"
    # Half up at tenths after rounding to two decimals, kept on the ladder at both ends.
    for w, t in [(0.001, 1), (0.04, 1), (0.05, 1), (0.14, 1), (0.149, 2), (0.15, 2), (0.25, 3), (0.5, 5), (0.75, 8),
                 (0.84, 8), (0.849, 9), (0.85, 9), (0.999, 9)]:
        assert graded_tag(w) == f" ({GRADED_LEVELS[t - 1]} priority)", w
    assert LambdaText.from_dict(text.to_dict()) == text


def test_grid_source_is_uniform_over_quarter_points():
    grid = GridLambda(PAIR, steps=4, seed=1)
    assert sorted(grid.points[:, 1].tolist()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(GridLambda(("a", "b", "c", "d"), 4).points) == 35
    draws = grid.draw([(0, i) for i in range(2000)])
    counts = torch.stack([(draws[:, 1] == w).float().mean() for w in (0.0, 0.25, 0.5, 0.75, 1.0)])
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.03)
    assert torch.equal(draws, grid.draw([(0, i) for i in range(2000)]))  # a pure function of the key


def test_contrast_batch_holds_each_list_under_two_different_lambdas():
    table = TableLambda(PAIR, vertex_table(), seed=0)
    keys = [(0, i) for i in range(50)]
    first = table.draw(keys)
    other = table.draw_other(keys, first)
    assert not (first == other).all(-1).any()  # every second lambda differs from the first


def test_contrast_collator_duplicates_lists_with_their_targets(tmp_path, tiny_llama_dir, one_thread):
    result = train_pair(tmp_path, tiny_llama_dir, lambda_contrast=True, max_steps=1)
    collator, items = result.trainer.data_collator, result.trainer.train_dataset.items[:2]
    batch = collator(items)
    assert batch["lam"].shape == (4, 2) and batch["target"].shape[0] == 4
    assert torch.equal(batch["ref_logps"][:2], batch["ref_logps"][2:])
    assert not (batch["lam"][:2] == batch["lam"][2:]).all(-1).any()
    # opposite vertices on conflicting lists: the best reply differs between the two copies
    assert (batch["target"][:2].argmax(-1) != batch["target"][2:].argmax(-1)).all()


def test_contrast_candidates_pick_the_second_lambda_with_the_farthest_target(tmp_path, tiny_llama_dir, one_thread):
    trainer = train_pair(tmp_path, tiny_llama_dir, lambda_contrast=True, max_steps=1).trainer
    c, items = trainer.data_collator, trainer.train_dataset.items
    grid = GridLambda(PAIR, steps=4, seed=3)

    def collator(m):
        return ListCollator(c.tokenizer, c.aspects, grid, c.conditioning, c.tau, c.layout,
                            lambda_text=c.lambda_text, contrast=True, contrast_candidates=m)

    n, keys = len(items), [(0, it.index) for it in items]
    one, many = collator(1)(items), collator(6)(items)
    lam = grid.draw(keys)
    cands = [grid.draw_other(keys, lam)] + [grid.draw_other([(*k, -m) for k in keys], lam) for m in range(1, 6)]
    assert torch.equal(one["lam"][:n], lam) and torch.equal(many["lam"][:n], lam)  # lambda a is unchanged
    assert torch.equal(one["lam"][n:], cands[0])  # M=1: the first draw that differs, as before
    tv = torch.tensor([[0.5 * (collator(1)([items[b]], lam=cand[b])["target"][0] - one["target"][b]).abs().sum()
                        for b in range(n)] for cand in cands])  # [M, n], each candidate's target by hand
    chosen = 0.5 * (many["target"][n:] - many["target"][:n]).abs().sum(-1)
    assert torch.allclose(chosen, tv.max(0).values)
    assert torch.equal(many["lam"][n:], torch.stack([cands[m][b] for b, m in enumerate(tv.argmax(0).tolist())]))
    assert (chosen > tv[0] + 1e-6).any()  # the choice changed some pair (else this test would prove nothing)
    assert torch.equal(collator(6)(items)["lam"], many["lam"])  # a pure function of the keys
    with pytest.raises(ValueError, match="contrast_candidates=2 .*needs lambda_contrast: true"):
        load_config(None, conditioning="prompt", lambda_contrast=False, contrast_candidates=2)


def test_best_reply_nll_is_the_per_token_nll_of_the_target_argmax():
    logps = torch.tensor([[-4.0, -9.0, -6.0], [-3.0, -8.0, 0.0]])
    n_tok = torch.tensor([[2, 3, 4], [3, 4, 0]])
    target = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.7, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert torch.allclose(best_reply_nll(logps, n_tok, target, mask), torch.tensor([6.0 / 4, 8.0 / 4]))


def test_selecting_a_subset_of_aspects_ignores_the_rest_and_catches_typos(tmp_path):
    lists = [make_list([{"role": "user", "content": "q"}], ["a", "b"], {"x": [1, 2], "y": [None, 1]}, "f:1"),
             make_list([{"role": "user", "content": "q"}], ["a", "b"], {"x": [None, 2], "y": [2, 1]}, "f:2")]
    kept, ignored, dropped = select_aspects(lists, ["x"], "f")
    assert [l.origin for l in kept] == ["f:1"] and kept[0].aspects == ("x",) and ignored == ("y",) and dropped == 1
    with pytest.raises(ValueError, match=r"no list rates aspect\(s\) \['z'\].*the data rates: x, y"):
        select_aspects(lists, ["z"], "f")


def test_training_on_a_subset_logs_the_ignored_aspects(tmp_path, tiny_llama_dir, one_thread, caplog):
    caplog.set_level("INFO")
    result = train_pair(tmp_path, tiny_llama_dir, max_steps=1)
    assert result.aspects == PAIR
    assert any("aspects correctness are not in `aspects` and are ignored" in r.message for r in caplog.records)


def test_contrast_loss_is_the_listwise_loss_of_delta_against_the_target_ratio():
    s_a, s_b = torch.tensor([[1.0, -2.0, 0.5, 9.0]]), torch.tensor([[0.0, 1.0, 3.0, -9.0]])
    p_a, p_b = torch.tensor([[0.5, 0.3, 0.2, 0.0]]), torch.tensor([[0.2, 0.2, 0.6, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    q = torch.tensor([0.5 / 0.2, 0.3 / 0.2, 0.2 / 0.6])
    q = q / q.sum()
    delta = torch.tensor([1.0, -3.0, -2.5])
    expected = -(q * torch.log_softmax(0.5 * delta, dim=-1)).sum()
    assert torch.allclose(lambda_contrast_loss(s_a, s_b, p_a, p_b, mask, 0.5), expected.reshape(1))
    # What both lambdas share cancels: the same function of y added to both scores changes nothing.
    shared = torch.tensor([[4.0, -7.0, 2.0, 100.0]])
    assert torch.allclose(lambda_contrast_loss(s_a + shared, s_b + shared, p_a, p_b, mask, 0.5), expected.reshape(1))
    # Same minimiser as lambda-DPO's two terms: at beta * s = log p + c under each lambda, the
    # gradient of the relative term is 0 too.
    beta = 0.5
    opt_a = ((p_a[:, :3].log() + 1.3) / beta).requires_grad_()
    opt_b = ((p_b[:, :3].log() - 0.4) / beta).requires_grad_()
    lambda_contrast_loss(opt_a, opt_b, p_a[:, :3], p_b[:, :3], mask[:, :3], beta).sum().backward()
    assert opt_a.grad.abs().max() < 1e-6 and opt_b.grad.abs().max() < 1e-6
    for s in (opt_a, opt_b):  # and the listwise terms are at their minimum there as well
        s.grad = None
    (lambda_dpo_loss(opt_a, p_a[:, :3], mask[:, :3], beta) + lambda_dpo_loss(opt_b, p_b[:, :3], mask[:, :3], beta)
     ).sum().backward()
    assert opt_a.grad.abs().max() < 1e-6 and opt_b.grad.abs().max() < 1e-6


def test_contrast_loss_is_zero_where_a_target_has_no_ratio():
    s = torch.randn(2, 3)
    p_a = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])  # first list: a real reply with p_a = 0
    p_b = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 0.0]])  # second list: no target under b
    loss = lambda_contrast_loss(s, -s, p_a, p_b, torch.ones(2, 3, dtype=torch.bool), 1.0)
    assert torch.equal(loss, torch.zeros(2))


def test_contrast_is_on_by_default_where_lambda_varies_and_the_policy_sees_it():
    on = load_config(None, conditioning="prompt")
    assert on.loss_type == "lambda_dpo" and on.lambda_source == "grid"
    assert on.lambda_contrast is True and on.contrast_alpha == 1.0
    for off in (dict(conditioning="none"), dict(lambda_source="fixed"), dict(loss_type="dpo_best_worst")):
        cfg = load_config(None, **{"conditioning": "prompt", **off})
        assert cfg.lambda_contrast is False and cfg.contrast_alpha == 0.0, off
    explicit = load_config(None, conditioning="prompt", lambda_contrast=True, contrast_alpha=0.0)
    assert explicit.lambda_contrast is True and explicit.contrast_alpha == 0.0
    blind = load_config(None, conditioning="none", lambda_contrast=True)  # Delta would be 0: no relative term
    assert blind.lambda_contrast is True and blind.contrast_alpha == 0.0
    # Strings from YAML / the command line coerce by the declared type, though the default is None.
    typed = load_config(None, ["lambda_contrast='false'"], conditioning="prompt")
    assert typed.lambda_contrast is False and typed.contrast_alpha == 0.0
    with pytest.raises(ValueError, match="needs lambda_contrast: true"):  # 0.5 read as a number
        load_config(None, ["contrast_alpha=5e-1", "lambda_contrast=false"])
    assert load_config(None, ["contrast_alpha=5e-1"], conditioning="prompt").contrast_alpha == 0.5


def test_contrast_alpha_needs_lambda_contrast_and_trains(tmp_path, tiny_llama_dir, one_thread):
    with pytest.raises(ValueError, match="contrast_alpha=1.0 needs lambda_contrast: true"):
        load_config(None, contrast_alpha=1.0, lambda_contrast=False)
    with pytest.raises(ValueError, match="must be >= 0"):
        load_config(None, contrast_alpha=-1.0, lambda_contrast=True)
    result = train_pair(tmp_path, tiny_llama_dir, lambda_contrast=True, contrast_alpha=1.0, max_steps=2, logging_steps=1)
    logged = [h["loss/contrast"] for h in result.trainer.state.log_history if "loss/contrast" in h]
    assert len(logged) == 2 and all(v > 0 for v in logged)
    # The logged loss splits into the listwise term, which cannot go below the targets' entropy, and half
    # the relative term (each copy of a list carries half of it).
    for h in (h for h in result.trainer.state.log_history if "loss/contrast" in h):
        assert h["loss/listwise"] >= h["target_entropy"] > 0
        assert h["loss"] == pytest.approx(h["loss/listwise"] + h["loss/contrast"] / 2, abs=1e-3)
    # The step's loss: each list's copy under lambda a is paired with its copy under lambda b.
    trainer, collator = result.trainer, result.trainer.data_collator
    batch = collator(trainer.train_dataset.items[:3])
    loss, out = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    s, p, m = out["scores"], batch["target"], batch["mask"]
    b = 3
    assert torch.equal(batch["ref_logps"][:b], batch["ref_logps"][b:])  # the same lists, in the same order
    # Delta is the model's own: 0 when both copies see the same lambda, so it cannot be a pairing artefact.
    assert not torch.allclose(s[:b], s[b:])
    rel = lambda_contrast_loss(s[:b], s[b:], p[:b], p[b:], m[:b], 0.5)
    expected = (lambda_dpo_loss(s, p, m, 0.5) + torch.cat([rel, rel]) / 2).mean()  # every list has a target here
    assert torch.allclose(loss, expected, atol=1e-6), (loss, expected)


def test_grid_vertex_share_draws_vertices_that_often_and_the_rest_evenly():
    from lambda_dpo.training.config import load_config

    aspects = ("a", "b", "c", "d")
    grid = GridLambda(aspects, steps=4, seed=0, vertex_share=0.5)
    assert torch.isclose(grid.probs.sum(), torch.tensor(1.0))
    vertex = grid.points.max(dim=1).values == 1
    assert torch.allclose(grid.probs[vertex], torch.full((4,), 0.125))
    assert torch.allclose(grid.probs[~vertex], torch.full((31,), 0.5 / 31))
    draws = grid.draw([(0, i) for i in range(4000)])
    share = (draws.max(dim=1).values == 1).float().mean().item()
    assert abs(share - 0.5) < 0.03  # 4000 draws: binomial std 0.008
    assert torch.equal(draws, grid.draw([(0, i) for i in range(4000)]))  # a pure function of the keys
    assert GridLambda(aspects, steps=4, vertex_share=None).probs is None  # unset: every point alike
    assert (GridLambda(aspects, 4, vertex_share=0.0).draw([(0, i) for i in range(500)]).max(dim=1).values < 1).all()
    with pytest.raises(ValueError, match="lambda_vertex_share must be in"):
        GridLambda(aspects, 4, vertex_share=1.5)
    with pytest.raises(ValueError, match="applies to lambda_source: grid"):
        load_config(None, lambda_source="dirichlet", lambda_vertex_share=0.5)
    with pytest.raises(ValueError, match=r"lambda_vertex_share=1.5 must be a number in \[0, 1\]"):
        load_config(None, ["lambda_vertex_share=1.5"])  # a config error, before any data or model is loaded
    with pytest.raises(ValueError, match="has only vertices"):
        load_config(None, lambda_grid_steps=1, lambda_vertex_share=0.5)
