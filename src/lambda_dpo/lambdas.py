"""Where lambda comes from during training (design.md section 3).

Every source draws `n` weight vectors over a fixed, ordered set of K aspects, as a [n, K] float
tensor whose rows lie on the simplex. Sources own a torch.Generator so their draws are
reproducible and their state can be saved and restored with a checkpoint.

Note: without conditioning, sampling lambda is only noise around the fixed mixture E[lambda]
(the loss is linear in lambda); sampling matters together with conditioning.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

LAMBDA_SOURCES = ("fixed", "dirichlet", "table")


def parse_lambda(text_or_map: str | Mapping[str, float], aspects: Sequence[str]) -> dict[str, float]:
    """'helpfulness=0.7,honesty=0.3' (or a mapping) -> weights for every aspect, normalised to sum 1.

    Aspects not named get 0. Raises ValueError naming the problem: unknown aspect, negative or
    non-numeric weight, all weights zero.
    """
    if isinstance(text_or_map, str):
        pairs = {}
        for part in filter(None, (p.strip() for p in text_or_map.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"lambda entry {part!r} is not aspect=weight (example: helpfulness=0.7,honesty=0.3)")
            try:
                pairs[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"lambda weight for {name.strip()!r} is {value!r}, not a number") from None
    else:
        pairs = {k: float(v) for k, v in text_or_map.items()}
    unknown = sorted(set(pairs) - set(aspects))
    if unknown:
        raise ValueError(f"lambda names unknown aspect(s) {unknown}; this model's aspects are {list(aspects)}")
    if any(v < 0 or v != v for v in pairs.values()):
        raise ValueError(f"lambda weights must be >= 0, got {pairs}")
    total = sum(pairs.values())
    if total <= 0:
        raise ValueError(f"lambda weights sum to 0: {pairs}; give at least one positive weight")
    return {a: pairs.get(a, 0.0) / total for a in aspects}


class LambdaSource:
    """Base: draws [n, K] simplex weights over `aspects`; state_dict() makes draws resumable."""

    def __init__(self, aspects: Sequence[str], seed: int = 0):
        self.aspects = tuple(aspects)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class FixedLambda(LambdaSource):
    """One vector for the whole run (uniform when `weights` is None)."""

    def __init__(self, aspects, weights: Mapping[str, float] | str | None = None, seed: int = 0):
        super().__init__(aspects, seed)
        w = parse_lambda(weights, aspects) if weights else {a: 1.0 / len(aspects) for a in aspects}
        self.vector = torch.tensor([w[a] for a in self.aspects])

    def sample(self, n: int) -> torch.Tensor:
        return self.vector.expand(n, -1).clone()


class DirichletLambda(LambdaSource):
    """A fresh lambda per list from Dirichlet(alpha * 1_K); alpha=1 is uniform on the simplex."""

    def __init__(self, aspects, alpha: float = 1.0, seed: int = 0):
        super().__init__(aspects, seed)
        if alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def sample(self, n: int) -> torch.Tensor:
        # Normalised Gamma(alpha) draws are Dirichlet(alpha); torch.distributions.Dirichlet takes
        # no generator, and the generator is what makes the draws resumable.
        g = torch._standard_gamma(torch.full((n, len(self.aspects)), self.alpha), generator=self.generator)
        g = g.clamp_min(1e-30)
        return g / g.sum(-1, keepdim=True)


class TableLambda(LambdaSource):
    """A fixed list of lambda vectors drawn with given probabilities (what the authors' code ships)."""

    def __init__(self, aspects, table: Sequence[Mapping], seed: int = 0):
        super().__init__(aspects, seed)
        if not table:
            raise ValueError("lambda_table is empty; give entries like {weights: {helpfulness: 1.0}, prob: 0.5}")
        self.vectors = torch.tensor([[parse_lambda(row["weights"], aspects)[a] for a in self.aspects] for row in table])
        probs = torch.tensor([float(row.get("prob", 1.0)) for row in table])
        if (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"lambda_table probabilities must be >= 0 with a positive sum, got {probs.tolist()}")
        self.probs = probs / probs.sum()

    def sample(self, n: int) -> torch.Tensor:
        idx = torch.multinomial(self.probs, n, replacement=True, generator=self.generator)
        return self.vectors[idx]


def build_lambda_source(kind: str, aspects: Sequence[str], *, fixed=None, alpha: float = 1.0, table=None,
                        seed: int = 0) -> LambdaSource:
    if kind == "fixed":
        return FixedLambda(aspects, fixed, seed)
    if kind == "dirichlet":
        return DirichletLambda(aspects, alpha, seed)
    if kind == "table":
        return TableLambda(aspects, table or [], seed)
    raise ValueError(f"lambda_source {kind!r} is not one of {LAMBDA_SOURCES}")
