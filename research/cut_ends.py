"""What scoring an end of turn after a sampler-cut reply does (the numbers behind `score_cut_ends`).

    python research/cut_ends.py [FILE]   # default: the dev split the steering study uses (24 lists)

The demo's replies were sampled with a 96-token budget; a reply that hit it ends mid-sentence
(build-data's meta ``hit_max_new_tokens``), and the chat template would still append its
end-of-turn tokens. For the untrained SmolLM2 (fp32, one reply at a time, no batching) this
prints: how many replies were cut, the mean log-prob of those end-of-turn tokens after a cut
reply under the reference prompt and under the conciseness and informativeness instructions
(the study's `instructions` rendering), and each aspect's top-1 of the implicit reward at its
vertex with and without those tokens scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from steering_study import split_files  # noqa: E402

from lambda_dpo.conditioning import LambdaText, condition_prompt  # noqa: E402
from lambda_dpo.demo.dataset import ASPECTS  # noqa: E402
from lambda_dpo.models import load_tokenizer, resolve_model_path  # noqa: E402
from lambda_dpo.tokenization import encode_prompt  # noqa: E402


def shipped_counts() -> str:
    """Cut replies in the shipped train.jsonl, and how often informativeness rates a cut one best."""
    from lambda_dpo.demo.dataset import demo_data_dir

    recs = [json.loads(line) for line in (Path(str(demo_data_dir())) / "train.jsonl").read_text().splitlines()
            if line.strip()]
    cut = sum(m["hit_max_new_tokens"] for r in recs for m in r["meta"])
    differ = [r for r in recs if len(set(r["ratings"]["informativeness"])) > 1]
    best_cut = sum(r["meta"][int(np.argmax(r["ratings"]["informativeness"]))]["hit_max_new_tokens"] for r in differ)
    return (f"train.jsonl: {cut} of {sum(len(r['responses']) for r in recs)} replies cut by the sampler; among the "
            f"{len(differ)} lists whose informativeness ratings differ, the first best-rated reply is a cut one in {best_cut}")


def main(argv: list[str]) -> int:
    print(shipped_counts())
    if argv:
        rows = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line.strip()]
    else:
        _, dev = split_files(None, Path("runs/cut-ends-split"))
        rows = [json.loads(line) for line in dev.read_text().splitlines()][:24]  # the study's max_eval_lists
    path = resolve_model_path("smollm2-135m-instruct")
    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    text = LambdaText("instructions")

    def token_logps(messages, reply) -> np.ndarray:
        prompt = encode_prompt(tok, messages)
        full = tok.apply_chat_template([*messages, {"role": "assistant", "content": reply}], tokenize=True,
                                       return_dict=False)
        ids = torch.tensor([full])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].float().log_softmax(-1)
        return logp[torch.arange(len(prompt) - 1, len(full) - 1), ids[0, len(prompt):]].numpy()

    n_end = len(tok.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                        tokenize=True, return_dict=False)) - len(
        tok.apply_chat_template([{"role": "user", "content": "q"}], add_generation_prompt=True, tokenize=True,
                                return_dict=False)) - len(tok("a", add_special_tokens=False)["input_ids"])
    top1 = {mode: {a: [] for a in ASPECTS} for mode in ("scored", "not scored")}
    ends = {"reference": [], "conciseness": [], "informativeness": []}
    for row in rows:
        cut = [m["hit_max_new_tokens"] for m in row["meta"]]
        ref = [token_logps(row["prompt"], y) for y in row["responses"]]
        ends["reference"] += [lp[-n_end:].sum() for lp, c in zip(ref, cut) if c]
        for a in ASPECTS:
            vertex = {b: float(b == a) for b in ASPECTS}
            pol = [token_logps(condition_prompt(row["prompt"], vertex, "prompt", text), y) for y in row["responses"]]
            if a in ends:
                ends[a] += [lp[-n_end:].sum() for lp, c in zip(pol, cut) if c]
            for mode in top1:
                keep = [len(r) - (n_end if c and mode == "not scored" else 0) for r, c in zip(ref, cut)]
                reward = [p[:k].sum() - r[:k].sum() for p, r, k in zip(pol, ref, keep)]
                ratings = row["ratings"][a]
                top1[mode][a].append(float(ratings[int(np.argmax(reward))] == max(ratings)))
    n_cut = sum(m["hit_max_new_tokens"] for row in rows for m in row["meta"])
    print(f"{len(rows)} lists, {sum(len(r['responses']) for r in rows)} replies, {n_cut} cut by the sampler; "
          f"{n_end} end-of-turn tokens after each")
    print("mean log-prob of the end-of-turn tokens after a cut reply (nats): "
          + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in ends.items()))
    for mode, per in top1.items():
        print(f"top-1 at each vertex, end of turn of cut replies {mode}: "
              + ", ".join(f"{a} {np.mean(v):.3f}" for a, v in per.items()))
    return 0


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # no argparse here: the docstring is the usage
        print(__doc__)
        sys.exit(0)
    raise SystemExit(main(sys.argv[1:]))
