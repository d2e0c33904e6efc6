"""Fit a small reward model without the hub: SmolLM2-135M-Instruct's features, a ridge-regression head fitted to
the demo's rule-judge ratings, saved as a transformers sequence classifier.

The head has one output per demo aspect (instruction_following, correctness, conciseness, informativeness)
and a fifth, `overall`, fitted to their mean: a general reward with per-aspect outputs, as ArmoRM has. Its
input is exactly what `lambda-dpo label`'s reward-model judge feeds it: the conversation with the reply as the
assistant's turn, rendered by the chat template (`reward_input_ids`), pooled at the last token by
transformers' `LlamaForSequenceClassification` itself (the features are taken through that same forward, with
an identity head). The fit is closed form: W = (X'X + a * mean(diag X'X) I)^-1 X'Y, with no intercept
(the classifier's head has no bias), a chosen on the last fifth of the training prompts, then refitted on all.

    python research/fit_reward_model.py --out runs/label-demo/reward-model --skip-first 20

--skip-first 20 leaves out the first 20 prompts of the training split, which research/label_demo.sh labels.
Prints, and writes into OUT/fit.json, the Spearman correlation of each output with its target on the demo's
held-out split, pooled and within lists. Cost: one forward of SmolLM2-135M per reply (about 1200 replies).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from lambda_dpo.demo.dataset import ASPECTS, demo_data_dir
from lambda_dpo.labeling.judges import RewardModelJudge, reward_input_ids
from lambda_dpo.models import load_tokenizer, resolve_model_path

OUTPUTS = (*ASPECTS, "overall")
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def read(path: Path, skip: int = 0) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[skip:] if line.strip()]


def pairs(records: list[dict]) -> tuple[list[tuple], torch.Tensor, list[int]]:
    """(prompt, reply) pairs, their targets [n, 5] and each pair's list index."""
    rows, targets, lists = [], [], []
    for k, r in enumerate(records):
        for i, reply in enumerate(r["responses"]):
            values = [float(r["ratings"][a][i]) for a in ASPECTS]
            rows.append((tuple(r["prompt"]), reply))
            targets.append(values + [sum(values) / len(values)])
            lists.append(k)
    return rows, torch.tensor(targets, dtype=torch.float64), lists


def features(judge: RewardModelJudge, rows: list[tuple], batch_size: int) -> torch.Tensor:
    ids = [reward_input_ids(judge.tokenizer, prompt, reply) for prompt, reply in rows]
    order = sorted(range(len(ids)), key=lambda j: len(ids[j]))  # similar lengths share a batch
    out = torch.empty(len(ids), judge.net.config.hidden_size, dtype=torch.float64)
    start = time.time()
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        out[chunk] = judge.score([ids[j] for j in chunk]).double()
        print(f"\rfeatures {min(b + batch_size, len(order))}/{len(order)} ({time.time() - start:.0f} s)", end="",
              flush=True)
    print()
    return out


def ridge(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    gram = x.T @ x
    return torch.linalg.solve(gram + alpha * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype),
                              x.T @ y)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def ranks(v):
        return v.argsort().argsort().double()

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom else float("nan")


def scores(pred: torch.Tensor, y: torch.Tensor, lists: list[int]) -> dict[str, dict[str, float]]:
    out = {}
    for k, name in enumerate(OUTPUTS):
        within = []
        for lst in sorted(set(lists)):
            idx = [j for j, m in enumerate(lists) if m == lst]
            if y[idx, k].unique().numel() > 1:
                within.append(spearman(pred[idx, k], y[idx, k]))
        out[name] = {"spearman": spearman(pred[:, k], y[:, k]),
                     "within_list_spearman": sum(within) / len(within) if within else float("nan")}
    return out


def load_identity_head(model: str) -> RewardModelJudge:
    """The base model as a sequence classifier whose head is the identity: its scores are the pooled features."""
    tokenizer = load_tokenizer(model)
    path = resolve_model_path(model)
    hidden = AutoConfig.from_pretrained(path).hidden_size
    net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=hidden, dtype=torch.float32).eval()
    with torch.no_grad():
        net.score.weight.copy_(torch.eye(hidden))
    net.config.pad_token_id = tokenizer.pad_token_id
    judge = RewardModelJudge(model=path, outputs={i: f"f{i}" for i in range(hidden)}, device="cpu")
    judge.net, judge.tokenizer = net, tokenizer
    return judge


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the reward model's directory (created)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--skip-first", type=int, default=20, help="training prompts left out (the ones labeled later)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-lists", type=int, default=None, help="use only this many lists of each split (a quick check)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(str(demo_data_dir()))
    train_rows, y_train, _ = pairs(read(data / "train.jsonl", args.skip_first)[:args.max_lists])
    eval_rows, y_eval, eval_lists = pairs(read(data / "eval.jsonl")[:args.max_lists])
    judge = load_identity_head(args.model)
    x_train, x_eval = features(judge, train_rows, args.batch_size), features(judge, eval_rows, args.batch_size)

    cut = int(0.8 * len(train_rows)) // 4 * 4  # whole lists: 4 replies each
    tune = {a: spearman((x_train[cut:] @ ridge(x_train[:cut], y_train[:cut], a))[:, -1], y_train[cut:, -1])
            for a in ALPHAS}
    alpha = max(tune, key=tune.get)
    weight = ridge(x_train, y_train, alpha)
    fit = {"alpha": alpha, "tuning_spearman_overall": tune, "train_replies": len(train_rows),
           "eval_replies": len(eval_rows), "eval": scores(x_eval @ weight, y_eval, eval_lists),
           "outputs": dict(enumerate(OUTPUTS)), "skip_first": args.skip_first, "base_model": args.model}

    net = judge.net
    net.score = torch.nn.Linear(weight.shape[0], len(OUTPUTS), bias=False)
    with torch.no_grad():
        net.score.weight.copy_(weight.T.float())
    net.config.num_labels = len(OUTPUTS)
    net.config.id2label = dict(enumerate(OUTPUTS))
    net.config.label2id = {a: i for i, a in enumerate(OUTPUTS)}
    out = Path(args.out)
    net.save_pretrained(out)
    judge.tokenizer.save_pretrained(out)
    (out / "fit.json").write_text(json.dumps(fit, indent=2) + "\n")

    check = RewardModelJudge(model=str(out), outputs=dict(enumerate(OUTPUTS)), device="cpu")  # as label loads it
    check.load()
    reloaded = check.score([reward_input_ids(check.tokenizer, *eval_rows[0])])[0].double()
    assert torch.allclose(reloaded, x_eval[0] @ weight, atol=1e-3), (reloaded, x_eval[0] @ weight)
    print(f"alpha {alpha}; held-out Spearman (pooled / within lists):")
    for name, s in fit["eval"].items():
        print(f"  {name:<24} {s['spearman']:.3f} / {s['within_list_spearman']:.3f}")
    print(f"reward model saved to {out} (outputs: {', '.join(f'{i}={a}' for i, a in enumerate(OUTPUTS))})")


if __name__ == "__main__":
    main()
