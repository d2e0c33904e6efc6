"""Timing of TRL's DPOTrainer on the same lists, expanded to pairs ("trl_all": all C(N,2), "trl_bw": best-vs-worst).

TRL runs its own training loop; the exact token ids the listwise methods see are fed to it, and
each optimizer step (the pairs of one list) is timed by a TrainerCallback. Used by
bench_throughput.py's workers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # bench/ is not a package: siblings import by name from any directory

from cost_model import pairs_of  # noqa: E402
from workload import BETA, LR, SEED, lora_config  # noqa: E402


def trl_pair_rows(lists, which: str) -> dict[str, list[list[int]]]:
    """The lists expanded to (prompt, chosen, rejected) token-id rows, pairs of a list contiguous."""
    rows = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for prompt, responses in lists:
        for c, r in pairs_of(len(responses), which):
            rows["prompt_ids"].append(list(prompt))
            rows["chosen_ids"].append(list(responses[c]))
            rows["rejected_ids"].append(list(responses[r]))
    return rows


def time_trl_steps(base_model, tokenizer, lists, which: str, warmup: int = 1, steps: int = 3, *, min_steps: int = 1,
                   max_timed_seconds: float = float("inf"), pairs_per_micro_batch: int = 1,
                   gradient_checkpointing: bool = False, lora_r: int = 16, beta: float = BETA, lr: float = LR,
                   log=None, after_init=None) -> dict:
    """Time TRL DPOTrainer optimizer steps on the lists expanded to pairs ("all" or "bw").

    One optimizer step = the pairs of one list: per_device_train_batch_size = pairs_per_micro_batch
    and gradient_accumulation_steps = pairs per list / pairs_per_micro_batch. TRL tokenises text
    itself, so the trainer is built on a one-row text placeholder and its train_dataset then
    replaced by the exact token ids (prompt_ids / chosen_ids / rejected_ids, the columns TRL's
    collator reads), so TRL sees the very tokens the other methods see. Times are taken from
    on_step_begin to on_step_end (batches are prefetched before on_step_begin).
    """
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    log = log or (lambda msg: None)
    n = len(lists[0][1])
    p_len, r_len = len(lists[0][0]), len(lists[0][1][0])
    pairs_per_list = len(pairs_of(n, which))
    if pairs_per_list % pairs_per_micro_batch:
        pairs_per_micro_batch = 1
    total = warmup + steps
    rows = trl_pair_rows([lists[i % len(lists)] for i in range(total)], which)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.t0 = self.c0 = None
            self.step_s, self.cpu_s = [], []

        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            dt, dc = time.perf_counter() - self.t0, time.process_time() - self.c0
            timed = state.global_step > warmup
            if timed:
                self.step_s.append(dt), self.cpu_s.append(dc)
            log(f"{'step' if timed else 'warm-up'} {state.global_step}/{total}: {dt:.2f} s (cpu {dc:.2f} s)")
            if timed and len(self.step_s) >= min_steps and sum(self.step_s) >= max_timed_seconds:
                if len(self.step_s) < steps:
                    log(f"time budget {max_timed_seconds:.0f} s reached after {len(self.step_s)} timed steps")
                control.should_training_stop = True
            return control

    shapes: set[tuple[int, ...]] = set()

    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out_dir:
        config = DPOConfig(
            output_dir=out_dir, per_device_train_batch_size=pairs_per_micro_batch,
            gradient_accumulation_steps=pairs_per_list // pairs_per_micro_batch, max_steps=total,
            learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
            beta=beta, max_length=p_len + r_len, bf16=False, fp16=False, use_cpu=True,
            gradient_checkpointing=gradient_checkpointing, logging_steps=10**6, save_strategy="no",
            eval_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=SEED,
            precompute_ref_log_probs=False,
        )
        placeholder = Dataset.from_dict({"prompt": ["a"], "chosen": [" b"], "rejected": [" c"]})
        torch.manual_seed(SEED)
        trainer = DPOTrainer(model=base_model, args=config, train_dataset=placeholder, processing_class=tokenizer,
                             peft_config=lora_config(lora_r))
        trainer.train_dataset = Dataset.from_dict(rows)
        collate = trainer.data_collator

        def recording_collator(examples):
            out = collate(examples)
            shapes.add(tuple(out["input_ids"].shape))
            return out

        trainer.data_collator = recording_collator
        timer = StepTimer()
        trainer.add_callback(timer)
        if after_init is not None:
            after_init()
        trainer.train()
    expected = (2 * pairs_per_micro_batch, p_len + r_len)
    if shapes != {expected}:
        raise RuntimeError(f"TRL batches had shapes {sorted(shapes)}, expected {expected}: truncation or padding")
    return {"step_s": timer.step_s, "cpu_s": timer.cpu_s, "precompute_s_per_list": None,
            "pairs_per_list": pairs_per_list, "pairs_per_micro_batch": pairs_per_micro_batch,
            "gradient_accumulation_steps": pairs_per_list // pairs_per_micro_batch,
            "gradient_checkpointing": gradient_checkpointing, "batch_shape": list(expected)}
