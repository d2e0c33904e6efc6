"""Parity with TRL: on pairwise data, lambda-dpo's `dpo_best_worst` (N = 2) and TRL's DPOTrainer
(sigmoid loss) trained from the same tiny model give the same per-step losses and rewards.

Both trainers run on transformers' Trainer, so the optimiser, schedule, gradient clipping and the
seeded sampler (accelerate's SeedableRandomSampler, keyed by seed and epoch) are the same code; the
test sets every option where the two trainers' defaults differ (README, "Parity with TRL"):

    learning rate (TRL 1e-6, lambda-dpo 5e-4), bf16 (TRL on, lambda-dpo off), gradient
    checkpointing (TRL on, lambda-dpo off), logging steps, max_length (TRL 1024 over prompt +
    completion; lambda-dpo 512 prompt / 256 per response): the data fits both, so nothing is cut;
    conditioning (lambda-dpo writes lambda into the system message by default: off here, as a
    pairwise DPO run has no lambda to show), lambda-dpo's own eval split (off) and reference cache
    (off), LoRA (lambda-dpo's default; TRL's only with a peft_config). Run twice: full fine-tuning
    (reference = the initial weights in both) and LoRA (reference = adapter disabled in both; both
    create the adapter with get_peft_model right after set_seed(seed), so it starts equal).

What remains is fp32 rounding: a summed response log-prob is ~100-170 nats here (one fp32 ulp:
1.5e-5) and the log-ratio is the difference of two such sums, computed in a different order
(lambda-dpo: shared-prompt cache, chunked log-softmax; TRL: one padded row per sequence). Measured
per-step loss differences are <= 1.2e-5, within the 1e-4 the issue asks for.

The data is conversational, so both render it with the same chat template and the responses end
with the template's end-of-turn tokens. (Standard-format pairwise data is tokenised differently:
TRL appends EOS to the raw text without a chat template, lambda-dpo always applies the template.)
"""

import json

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is not installed (it is the `bench` extra: pip install -e '.[bench]')")

from lambda_dpo.batching import ListCollator  # noqa: E402
from lambda_dpo.models import load_tokenizer  # noqa: E402
from lambda_dpo.training.config import load_config  # noqa: E402
from lambda_dpo.training.run import train  # noqa: E402
from lambda_dpo.training.trainer import LambdaDPOTrainer  # noqa: E402

STEPS, BATCH, LR, BETA, SEED = 6, 2, 1e-3, 0.5, 0
QUESTIONS = [("What colour is the sky?", "It is blue.", "It is green, like grass in spring."),
             ("What is 2 + 2?", "4.", "It is 5, I think."),
             ("Name a fruit.", "An apple.", "A carrot is a fruit."),
             ("Capital of Italy?", "Rome.", "Milan, the largest city."),
             ("Is ice cold?", "Yes, ice is cold.", "No."),
             ("How many legs has a cat?", "Four.", "A cat has six legs."),
             ("What do bees make?", "Honey.", "Bees make milk and cheese."),
             ("Which is bigger, the sun or the moon?", "The sun.", "The moon is much bigger.")]
# Shared: same Trainer options in both configs (each set where the trainers' defaults differ, or pinned).
TRAINER = dict(learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, optim="adamw_torch",
               adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, max_steps=STEPS,
               per_device_train_batch_size=BATCH, gradient_accumulation_steps=1, seed=SEED, logging_steps=1,
               bf16=False, gradient_checkpointing=False, save_strategy="no", report_to="none", use_cpu=True,
               dataloader_num_workers=0)  # sampling: the Trainer's default seeded random sampler in both


def records():
    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for q, c, r in QUESTIONS]


LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")


def run_lambda_dpo(tmp_path, model_dir, monkeypatch, lora):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    scores, batches = [], []
    record, collate = LambdaDPOTrainer._record, ListCollator.__call__

    def keep_batch(self, items, lam=None):  # the token ids of each batch, in the order the sampler gave them
        batches.append([(list(it.tokens.prompt_ids), *map(list, it.tokens.response_ids)) for it in items])
        return collate(self, items, lam)

    def keep_scores(self, s, inputs):  # the step's implicit rewards [B, 2] (chosen, rejected), no beta
        scores.append(s.clone())
        return record(self, s, inputs)

    monkeypatch.setattr(LambdaDPOTrainer, "_record", keep_scores)
    monkeypatch.setattr(ListCollator, "__call__", keep_batch)
    cfg = load_config(None, model_name_or_path=model_dir, train_file=str(path), data_format="pairwise",
                      eval_fraction=0, use_lora=lora, lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"],
                      lora_dropout=LORA["lora_dropout"], lora_target_modules=LORA["target_modules"], model_dtype="float32", loss_type="dpo_best_worst", beta=BETA,
                      score_type="sum", conditioning="none", lambda_source="fixed", reference_cache_dir=None,
                      max_prompt_length=512, max_response_length=256, output_dir=str(tmp_path / "ours"), **TRAINER)
    result = train(cfg)
    losses = [h["loss"] for h in result.trainer.state.log_history if "loss" in h]
    return losses, scores, batches


def run_trl(tmp_path, model_dir, monkeypatch, lora):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    batches, collate = [], DataCollatorForPreference.torch_call

    def keep_batch(self, examples):
        batches.append([(ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]) for ex in examples])
        return collate(self, examples)

    monkeypatch.setattr(DataCollatorForPreference, "torch_call", keep_batch)

    tokenizer = load_tokenizer(model_dir)  # the same tokenizer and chat template lambda-dpo trains with
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if lora:  # the reference is the model with the adapter disabled, as in lambda-dpo
        from peft import LoraConfig

        extra = dict(peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
    else:  # the initial weights
        extra = dict(ref_model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    args = DPOConfig(output_dir=str(tmp_path / "trl"), loss_type="sigmoid", beta=BETA, label_smoothing=0.0,
                     max_length=None, precompute_ref_log_probs=False, disable_dropout=True, **TRAINER)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(records()),
                         processing_class=tokenizer, **extra)
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h], batches


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_dpo_best_worst_matches_trl_dpo_step_by_step(tmp_path, tiny_llama_dir, monkeypatch, one_thread, lora):
    ours, scores, our_batches = run_lambda_dpo(tmp_path, tiny_llama_dir, monkeypatch, lora)
    theirs, their_batches = run_trl(tmp_path, tiny_llama_dir, monkeypatch, lora)
    assert len(ours) == len(theirs) == len(scores) == STEPS
    # Same batches in the same order (the seeded sampler), and the same token ids: prompt ending with the
    # assistant generation prompt, each response ending with the template's end-of-turn tokens.
    assert len(our_batches) >= STEPS and our_batches[:STEPS] == their_batches[:STEPS]
    assert len({tuple(map(tuple, b[0])) for b in our_batches[:STEPS]}) > 1  # more than one batch seen

    loss_diff = [abs(a - b["loss"]) for a, b in zip(ours, theirs)]
    chosen = [BETA * s[:, 0].mean().item() for s in scores]  # TRL's rewards/chosen = beta * log-ratio, batch mean
    rejected = [BETA * s[:, 1].mean().item() for s in scores]
    chosen_diff = [abs(a - b["rewards/chosen"]) for a, b in zip(chosen, theirs)]
    rejected_diff = [abs(a - b["rewards/rejected"]) for a, b in zip(rejected, theirs)]
    print("lora" if lora else "full", "per-step |loss difference|:", ["%.1e" % d for d in loss_diff])
    print("losses:", ["%.6f" % l for l in ours])
    print("max |rewards/chosen difference|: %.1e, rewards/rejected: %.1e" % (max(chosen_diff), max(rejected_diff)))

    assert abs(ours[0] - torch.log(torch.tensor(2.0)).item()) < 1e-5  # step 1: policy == reference in both
    assert max(abs(l - ours[0]) for l in ours) > 1e-2, "the losses did not move: the comparison shows nothing"
    assert max(abs(r) for r in chosen + rejected) > 1e-2, "the rewards did not move"
    assert max(loss_diff) < 1e-4, loss_diff
    assert max(chosen_diff) < 1e-4 and max(rejected_diff) < 1e-4, (chosen_diff, rejected_diff)
