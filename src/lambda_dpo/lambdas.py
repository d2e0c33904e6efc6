"""Where lambda comes from during training (docs/design.md, "Where lambda comes from").

Every source maps keys to weight vectors over a fixed, ordered set of K aspects: `draw(keys)`
returns a [len(keys), K] float tensor whose rows lie on the simplex. Training keys a list's lambda
by (epoch, dataset index), so a draw is a pure function of (seed, epoch, index): a resumed run,
or the same data split over any number of processes, gives every list the lambda it would have
had in one uninterrupted run, with no sampler state to checkpoint. `LAMBDA_SOURCES` maps each
`lambda_source` name to the constructor that builds its source from the training config.

Note: without conditioning, sampling lambda is only noise around the fixed mixture E[lambda]
(the loss is linear in lambda); sampling matters together with conditioning.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any, Callable, Mapping, Sequence

import torch


def uniform_lambda(aspects: Sequence[str]) -> dict[str, float]:
    """Equal weight on every aspect, the centre of the simplex: lambda wherever none is given."""
    return {a: 1.0 / len(aspects) for a in aspects}


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
    """Base: `draw(keys)` -> [len(keys), K] simplex weights over `aspects`, deterministic per key."""

    def __init__(self, aspects: Sequence[str], seed: int = 0):
        self.aspects = tuple(aspects)
        self.seed = int(seed)

    def _one(self, generator: torch.Generator) -> torch.Tensor:
        """One [K] draw using only `generator` for randomness."""
        raise NotImplementedError

    def draw(self, keys: Sequence[Sequence[int]]) -> torch.Tensor:
        rows = [self._one(torch.Generator().manual_seed(_key_seed(self.seed, key))) for key in keys]
        return torch.stack(rows) if rows else torch.zeros(0, len(self.aspects))

    def draw_other(self, keys: Sequence[Sequence[int]], first: torch.Tensor, tries: int = 16) -> torch.Tensor:
        """A second lambda per key that differs from `first` [len(keys), K] (for lambda-contrast
        batches): redrawn with keys (*key, 1), (*key, 2), ... until it differs; a source that
        cannot give another value (fixed) returns `first`'s row."""
        rows = []
        for key, row in zip(keys, first):
            other = row
            for j in range(1, tries + 1):
                other = self._one(torch.Generator().manual_seed(_key_seed(self.seed, (*key, j))))
                if not torch.allclose(other, row, atol=1e-6):
                    break
            rows.append(other)
        return torch.stack(rows) if rows else torch.zeros(0, len(self.aspects))


def _key_seed(seed: int, key: Sequence[int]) -> int:
    digest = hashlib.blake2b(repr((seed, *map(int, key))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class FixedLambda(LambdaSource):
    """One vector for the whole run (uniform when `weights` is None)."""

    def __init__(self, aspects, weights: Mapping[str, float] | str | None = None, seed: int = 0):
        super().__init__(aspects, seed)
        w = parse_lambda(weights, aspects) if weights else uniform_lambda(aspects)
        self.vector = torch.tensor([w[a] for a in self.aspects])

    def _one(self, generator: torch.Generator) -> torch.Tensor:
        return self.vector.clone()


class DirichletLambda(LambdaSource):
    """A fresh lambda per list from Dirichlet(alpha * 1_K); alpha=1 is uniform on the simplex."""

    def __init__(self, aspects, alpha: float = 1.0, seed: int = 0):
        super().__init__(aspects, seed)
        if alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def _one(self, generator: torch.Generator) -> torch.Tensor:
        # Normalised Gamma(alpha) draws are Dirichlet(alpha); torch.distributions.Dirichlet takes
        # no generator, and the per-key generator is what makes draws reproducible.
        g = torch._standard_gamma(torch.full((len(self.aspects),), self.alpha), generator=generator).clamp_min(1e-30)
        return g / g.sum()


class GridLambda(LambdaSource):
    """Uniform over the simplex points whose weights are multiples of 1/steps.

    K=2, steps=4: the five points 0, 0.25, 0.5, 0.75, 1 of the edge; K=4, steps=4: 35 points
    (4 vertices, 18 on edges, 12 inside faces, 1 inside). Vertices, where the aspects' own
    instructions are read alone, get as much weight as any mixture.

    With `vertex_share` s, a draw is a vertex with probability s (each of the K vertices s/K) and
    one of the other points otherwise (uniformly); None keeps every point equally likely (the
    vertices' share is then K / number of points: 4/35 for K=4, steps=4).
    """

    def __init__(self, aspects, steps: int = 4, seed: int = 0, vertex_share: float | None = None):
        super().__init__(aspects, seed)
        if steps < 1:
            raise ValueError(f"lambda_grid_steps must be >= 1, got {steps}")
        points = [c for c in itertools.product(range(steps + 1), repeat=len(self.aspects)) if sum(c) == steps]
        self.points = torch.tensor(points, dtype=torch.float32) / steps
        self.probs = None
        if vertex_share is not None:
            if not 0 <= vertex_share <= 1:
                raise ValueError(f"lambda_vertex_share must be in [0, 1], got {vertex_share}")
            vertex = self.points.max(dim=1).values == 1
            others = int((~vertex).sum())
            if others == 0 and vertex_share < 1:
                raise ValueError(f"lambda_grid_steps={steps} gives only vertices: lambda_vertex_share must be 1 or unset")
            self.probs = torch.where(vertex, vertex_share / int(vertex.sum()), (1 - vertex_share) / max(others, 1))

    def _one(self, generator: torch.Generator) -> torch.Tensor:
        if self.probs is None:
            return self.points[torch.randint(len(self.points), (1,), generator=generator)[0]]
        return self.points[torch.multinomial(self.probs, 1, generator=generator)[0]]


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

    def _one(self, generator: torch.Generator) -> torch.Tensor:
        return self.vectors[torch.multinomial(self.probs, 1, generator=generator)[0]]


class AdaptiveLambda(LambdaSource):
    """Performance-driven scheduler: candidate lambdas whose sampling probabilities follow a signal.

    Candidates: the K simplex vertices, the centre, and `n_random` Dirichlet(alpha) draws (seeded).
    Every few steps the trainer measures, on a held-out slice, each candidate's signal (see
    `training/adaptive_lambda.py`) and calls `update(signal)`. The rule is an EXP3-style softmax with
    a floor so no candidate starves:

        w = softmax(signal / temperature);  p = (1 - M * floor) * w + floor    (M candidates)

    A list's lambda is candidate c with probability p_c, drawn with the list's key, so between
    updates draws stay a pure function of (seed, epoch, index, p). `state_dict` holds p and its
    history, saved with checkpoints.

    Which p a batch gets depends on when it is drawn, and training draws ahead of the step that
    uses the batch (the DataLoader prefetches, the Trainer fetches a step's micro-batches at once):
    the batch after a checkpoint was drawn before that step's update. So `draw` calls are counted
    (`batches_drawn`; one per batch in training), each update records the count it was made at,
    and batch n is drawn with the p of the last update recorded at or before n. A resumed run sets
    `batches_drawn` to the number of batches trained and draws every batch with the p it had in
    the uninterrupted run.
    """

    def __init__(self, aspects, n_random: int = 4, alpha: float = 1.0, temperature: float = 0.05,
                 floor: float = 0.02, seed: int = 0):
        super().__init__(aspects, seed)
        k = len(self.aspects)
        rnd = DirichletLambda(aspects, alpha, seed + 1).draw([(-1, i) for i in range(n_random)])
        centre = torch.tensor([list(uniform_lambda(self.aspects).values())])
        self.candidates = torch.cat([torch.eye(k), centre, rnd])
        m = len(self.candidates)
        if not 0 <= floor * m < 1:
            raise ValueError(f"adaptive floor {floor} is too large for {m} candidates (need floor * M < 1)")
        if temperature <= 0:
            raise ValueError(f"adaptive temperature must be > 0, got {temperature}")
        self.temperature, self.floor = float(temperature), float(floor)
        self.probs = self._initial = torch.full((m,), 1.0 / m)
        self.history: list[dict] = []
        self.batches_drawn = 0
        self._drawing = self.probs  # p of the batch being drawn (draw_other uses it too)

    def probs_at(self, batch: int) -> torch.Tensor:
        """The p batch number `batch` (0-based count of `draw` calls) is drawn with."""
        for i in range(len(self.history), 0, -1):
            if self.history[i - 1].get("batch", 0) <= batch:
                return self.probs if i == len(self.history) else torch.tensor(self.history[i - 1]["probs"])
        return self._initial if self.history else self.probs

    def draw(self, keys: Sequence[Sequence[int]]) -> torch.Tensor:
        self._drawing = self.probs_at(self.batches_drawn)
        self.batches_drawn += 1
        return super().draw(keys)

    def _one(self, generator: torch.Generator) -> torch.Tensor:
        return self.candidates[torch.multinomial(self._drawing, 1, generator=generator)[0]]

    def update(self, signal: torch.Tensor, step: int = 0) -> torch.Tensor:
        """New probabilities from a [M] signal (higher = sample this candidate more)."""
        signal = torch.as_tensor(signal, dtype=torch.float32)
        if signal.shape != self.probs.shape or not torch.isfinite(signal).all():
            raise ValueError(f"adaptive signal must be {tuple(self.probs.shape)} finite values, got {signal}")
        w = torch.softmax(signal / self.temperature, dim=0)
        self.probs = self._drawing = (1 - len(w) * self.floor) * w + self.floor
        self.history.append({"step": int(step), "batch": self.batches_drawn, "signal": signal.tolist(),
                             "probs": self.probs.tolist()})
        return self.probs

    def state_dict(self) -> dict:
        return {"probs": self.probs.tolist(), "history": self.history, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        self.probs = self._drawing = torch.tensor(state["probs"], dtype=torch.float32)
        self.history = list(state["history"])
        self.batches_drawn = int(state.get("batches_drawn", 0))  # the resuming trainer resets it to batches trained


# The lambda sources, by their `lambda_source` name (the option's allowed values are these keys): each
# builds its source for the aspects from the training config's fields (any object with them; the
# fields are documented in training/config.py).
LAMBDA_SOURCES: dict[str, Callable[[Sequence[str], Any], LambdaSource]] = {
    "fixed": lambda aspects, cfg: FixedLambda(aspects, cfg.lambda_fixed, cfg.seed),
    "dirichlet": lambda aspects, cfg: DirichletLambda(aspects, cfg.dirichlet_alpha, cfg.seed),
    "grid": lambda aspects, cfg: GridLambda(aspects, cfg.lambda_grid_steps, cfg.seed, cfg.lambda_vertex_share),
    "table": lambda aspects, cfg: TableLambda(aspects, cfg.lambda_table or [], cfg.seed),
    "adaptive": lambda aspects, cfg: AdaptiveLambda(aspects, n_random=cfg.adaptive_candidates,
                                                    alpha=cfg.dirichlet_alpha, temperature=cfg.adaptive_temperature,
                                                    floor=cfg.adaptive_floor, seed=cfg.seed),
}


def build_lambda_source(cfg: Any, aspects: Sequence[str]) -> LambdaSource:
    """The source `cfg.lambda_source` names (`LAMBDA_SOURCES`), built from `cfg`'s fields for `aspects`."""
    if cfg.lambda_source not in LAMBDA_SOURCES:
        raise ValueError(f"lambda_source {cfg.lambda_source!r} is not one of {', '.join(LAMBDA_SOURCES)}")
    return LAMBDA_SOURCES[cfg.lambda_source](aspects, cfg)
