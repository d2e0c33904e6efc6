"""Mixed precision end to end: a short LoRA training run reaches the same held-out top-1 in float32 and in
bfloat16 (e2e: twelve runs of 20 steps). The tolerances of each forward and gradient, derived and checked
on the tiny model: tests/unit/test_mixed_precision.py."""

import json

import pytest
import torch

from lambda_dpo.precision import precision_label


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


TOPICS = ["rain", "the moon", "bread", "rivers", "music", "trees", "snow", "coffee", "bridges", "birds", "the sea",
          "maps", "clocks", "salt", "glass", "paper", "wind", "honey", "stone", "fire", "bees", "ice", "sand", "cotton",
          "tea", "boats", "lamps", "roads", "clouds", "wool", "iron", "milk", "glue", "owls", "kites", "bells", "silk",
          "frogs", "gold", "caves"]
N_TRAIN = 24
SHORT = ["{T} is nice.", "I like {t}.", "{T}? Fine.", "{T} is good."]
MEDIUM = ["{T} matters to people in many ways.", "Many people think about {t}, for good reasons.",
          "{T} is common, useful, and worth a look."]
LONG = ["{T} has a long history: people studied it, wrote about it, and learned how it shapes the world.",
        "Scientists measure {t}, artists describe it, and people rely on it at home and at work.",
        "{T} can be seen from many sides: how it forms, how it changes, and what it means to people."]
PROMPTS = ["Tell me about {t}.", "What do you know about {t}?", "Describe {t}.", "Say something about {t}."]


def conflict_lists(path, topics, seed):
    """tests/e2e/test_steering_learnability.py's conflicting lists, varied: one list per topic with a short,
    a medium and a long reply (each drawn from a few templates, in shuffled order), conciseness rating
    the short one best and informativeness the long one. Held-out lists use other topics and the same
    templates, so what is learned carries over; with the lists not all alike, top-1 moves list by list."""
    import random

    rng = random.Random(seed)
    with open(path, "w") as f:
        for topic in topics:
            fill = dict(t=topic, T=topic[0].upper() + topic[1:])
            replies = [rng.choice(pool).format(**fill) for pool in (SHORT, MEDIUM, LONG)]
            order = rng.sample(range(3), 3)
            f.write(json.dumps({"prompt": rng.choice(PROMPTS).format(**fill), "responses": [replies[i] for i in order],
                                "ratings": {"conciseness": [[5, 3, 1][i] for i in order],
                                            "informativeness": [[1, 3, 5][i] for i in order]}}) + "\n")
    return str(path)


def test_short_training_reaches_the_same_held_out_top1_in_both_modes(tmp_path, tiny_llama_dir):
    """LoRA trained to follow lambda (conciseness vs informativeness, vertices in the system prompt, each list
    under both vertices per step), 20 steps of 2 lists at lr 1e-3, model_dtype float32 against bfloat16 (set,
    not auto, so the test means the same on a CPU without native bf16, which runs bf16 on a slower path),
    3 seeds each. Held-out top-1 is the mean over the two vertices: a model that ignores lambda ranks each
    list the same way under both and scores at most 0.5; a random ranking scores 1/3.

    Measured (2026-11-30, 2-core EPYC with avx512_bf16, one thread), held-out top-1 every 3 steps, identical
    in both modes for each seed: 0.5 up to step 9 (every list ranked long-first under both vertices), 0.97-1.0
    at step 12, 1.0 from step 15; at step 20, 1.0 in all 6 runs. A mixed mode learning at half speed would
    still be near fp32's step 10 at step 20. Runtime: 33-37 s here; 125 s with bf16's native path switched
    off (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2), as on a CPU without avx512_bf16."""
    from test_steering_learnability import PAIR, vertex_table

    from lambda_dpo.training.config import load_config
    from lambda_dpo.training.run import train

    train_file = conflict_lists(tmp_path / "train.jsonl", TOPICS[:N_TRAIN], seed=0)
    eval_file = conflict_lists(tmp_path / "eval.jsonl", TOPICS[N_TRAIN:], seed=1)
    n_eval = len(TOPICS) - N_TRAIN
    top1 = {"float32": [], "bfloat16": []}
    for seed in (0, 1, 2):
        for dtype in top1:
            cfg = load_config(None, model_name_or_path=tiny_llama_dir, model_dtype=dtype, train_file=train_file,
                              eval_file=eval_file, output_dir=str(tmp_path / f"{dtype}-{seed}"),
                              reference_cache_dir=None, use_lora=True, lora_r=8, lora_alpha=16, aspects=list(PAIR),
                              conditioning="prompt", lambda_text="instructions", lambda_source="table",
                              lambda_table=vertex_table(), lambda_contrast=True, beta=0.5, rating_temperature=0.5,
                              learning_rate=1e-3, lr_scheduler_type="constant", warmup_steps=0, max_steps=20,
                              per_device_train_batch_size=2, logging_steps=20, seed=seed, disable_tqdm=True)
            result = train(cfg)
            assert precision_label(result.trainer.model) == ("float32" if dtype == "float32" else "bfloat16-mixed")
            top1[dtype].append(result.eval_metrics["eval_mean/top1"])
    mean = {d: sum(v) / len(v) for d, v in top1.items()}
    for dtype, m in mean.items():  # well past what ignoring lambda allows (0.5)
        assert m >= 0.8, (dtype, top1)
    # Within noise: the modes' means may differ by the seed-to-seed spread (the larger standard deviation
    # over the 3 seeds of either mode) or by one held-out list (1 / n_eval: bf16 rounding may flip a list
    # whose two best rewards are nearly tied), whichever is larger.
    spread = max(torch.tensor(v).std().item() for v in top1.values())
    assert abs(mean["float32"] - mean["bfloat16"]) <= max(spread, 1 / n_eval), top1
