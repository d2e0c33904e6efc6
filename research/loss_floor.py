"""How low the steering study's training loss can go on the demo data (numbers quoted in research/steering-study.md).

    python research/loss_floor.py [--tau 0.5] [--steps 4] [--aspects a,b,...] [--pair a,b] [--beta 0.1 0.5] [FILE]

The lambda-DPO loss of a list is at least the entropy of its target p_lambda (reached when
softmax(beta * s) = p_lambda) and is ln N for a policy equal to its reference (s = 0). With lambda
drawn from the grid (multiples of 1/steps), this prints both averaged over every (list, grid point),
and the same for lambda-contrast's relative term (target q proportional to p_a / p_b, over every
pair of grid points), then the floor and the reference value of the study's logged loss with
`contrast_alpha: 1` (listwise + relative / 2). So a logged loss reads as a fraction of the gap closed.
Last, how far apart the optimum puts the replies' Delta between the vertices of --pair, per beta.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lambda_dpo.data import load_lists
from lambda_dpo.demo.dataset import ASPECTS, demo_data_dir
from lambda_dpo.lambdas import GridLambda
from lambda_dpo.losses import target_entropy as entropy
from lambda_dpo.targets import aspect_targets, mix_targets, ratings_tensor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", nargs="?", default=str(Path(str(demo_data_dir())) / "train.jsonl"))
    parser.add_argument("--tau", type=float, default=0.5, help="rating_temperature")
    parser.add_argument("--steps", type=int, default=4, help="lambda_grid_steps")
    parser.add_argument("--aspects", default=",".join(ASPECTS))
    parser.add_argument("--pair", default="conciseness,informativeness",
                        help="two aspects: the span of the optimal Delta between their vertices")
    parser.add_argument("--beta", type=float, nargs="+", default=[0.1, 0.5])
    args = parser.parse_args(argv)
    aspects = args.aspects.split(",")
    lists, _ = load_lists(args.file)  # every aspect; ratings_tensor picks the named ones
    ratings, mask = ratings_tensor(lists, aspects, dtype=torch.float64)
    p_k, usable = aspect_targets(ratings, mask, args.tau)
    grid = GridLambda(aspects, args.steps).points.double()  # [G, K]
    # p_lambda for every (grid point, list): [G, B, N]; lists with no target under a point are left out.
    mixed = [mix_targets(p_k, usable, lam) for lam in grid]
    p = torch.stack([m[0] for m in mixed])
    valid = torch.stack([m[1] for m in mixed])
    ln_n = mask.sum(-1).double().log().expand_as(valid)
    h = entropy(p)
    print(f"{Path(args.file).name}: {len(lists)} lists, aspects {aspects}, tau {args.tau}, {len(grid)} grid points")
    print(f"  listwise term: floor (target entropy) {h[valid].mean():.3f}, at the reference (ln N) "
          f"{ln_n[valid].mean():.3f}")
    # Relative term over every ordered pair (a, b) of grid points: q proportional to p_a / p_b.
    hq, ln_q = [], []
    for a in range(len(grid)):
        both = valid[a] & valid & ((p[a] > 0) | ~mask).all(-1) & ((p > 0) | ~mask).all(-1)  # [G, B]
        log_ratio = torch.where(mask, p[a].clamp(min=1e-30).log() - p.clamp(min=1e-30).log(), float("-inf"))
        q = torch.softmax(log_ratio, dim=-1)
        hq.append(entropy(q)[both])
        ln_q.append(ln_n[0].expand_as(both)[both])
    hq, ln_q = torch.cat(hq), torch.cat(ln_q)
    print(f"  relative term (pairs of grid points): floor {hq.mean():.3f}, at the reference {ln_q.mean():.3f}")
    print(f"  logged loss with contrast_alpha 1 (listwise + relative / 2): floor "
          f"{h[valid].mean() + hq.mean() / 2:.3f}, at the reference {ln_n[valid].mean() + ln_q.mean() / 2:.3f}")
    # At the optimum beta * Delta = log p_b - log p_a + c between the pair's vertices a, b: how far
    # apart (max - min within a list, nats) the policy must put its replies' Delta.
    a, b = (aspects.index(x) for x in args.pair.split(","))
    both = usable[:, a] & usable[:, b]
    log_ratio = p_k[..., b].clamp(min=1e-30).log() - p_k[..., a].clamp(min=1e-30).log()
    span = (torch.where(mask, log_ratio, -torch.inf).amax(-1) - torch.where(mask, log_ratio, torch.inf).amin(-1))[both]
    for beta in args.beta:
        print(f"  optimal Delta between the {args.pair} vertices at beta {beta}: spans {(span / beta).median():.0f} "
              f"nats within a list (median over {int(both.sum())} lists; mean {(span / beta).mean():.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
