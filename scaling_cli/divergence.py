"""The one rule that calls a run diverged by its loss: worse than a uniform guess over the vocabulary by a margin."""

from __future__ import annotations

import math

# A model that has learned anything scores below ln V (the uniform guess); a fresh one scores about ln V.
# One nat above it (2.7x the uniform guess's perplexity) is no longer noise around the start: the run blew up.
MARGIN_NATS = 1.0


def loss_limit(vocab_size: int) -> float:
    """The largest loss (nats per token) a healthy run may show: ln(vocab_size) + MARGIN_NATS."""
    return math.log(vocab_size) + MARGIN_NATS


def blown_up(loss: float, vocab_size: int, what: str = "val_loss") -> str | None:
    """The reason a loss makes its run diverged, or None when it is below the limit (NaN is judged elsewhere)."""
    limit = loss_limit(vocab_size)
    if not loss > limit:
        return None
    return (
        f"{what} {loss:.4g} exceeds the uniform guess ln {vocab_size} = {math.log(vocab_size):.3f} "
        f"by more than {MARGIN_NATS:g} nat"
    )
