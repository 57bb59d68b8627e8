"""Repetition accounting: how many unique training tokens a data set holds and how often runs pass over them."""

from __future__ import annotations

import json
import math
from pathlib import Path

from scaling_cli.data.options import DataOptions, split_variant
from scaling_cli.data.prepared import dataset_dirname, prepared_root
from scaling_cli.data.sources import cache_root
from scaling_cli.errors import DataError

REPEATED_EPOCHS = 4  # Muennighoff et al. 2023: repeated data is worth about as much as fresh up to ~4 epochs


def unique_train_tokens(manifest: dict) -> int:
    """Unique tokens of a prepared training split (without duplicated copies)."""
    unique = manifest.get("train_unique")
    return int(unique["tokens"]) if unique else int(manifest["tokens"]["train"])


def repetition_fields(tokens: float, manifest: dict) -> dict:
    """The `unique_tokens` and `epochs` (training tokens over unique training tokens) of a run's row."""
    unique = unique_train_tokens(manifest)
    return {"unique_tokens": unique, "epochs": tokens / unique if unique else math.nan}


def known_unique_tokens(dataset: str, opts: DataOptions, tokenizer: str, vocab: int, cache: Path) -> int | None:
    """Unique training tokens of a data set without preparing it: from its manifest when it is prepared,
    else (byte tokens) at most `max_train_bytes`; None when unknown."""
    try:
        manifest = prepared_root(cache) / dataset_dirname(dataset, opts, tokenizer, vocab) / "manifest.json"
        return unique_train_tokens(json.loads(manifest.read_text()))
    except (OSError, ValueError, KeyError, DataError):
        pass
    _, variant = split_variant(dataset, opts)
    return variant.max_train_bytes if tokenizer == "bytes" else None


def repetition_warnings(runs, cache: Path | None = None) -> list[str]:
    """One line per data set whose runs exceed REPEATED_EPOCHS passes over the unique training tokens."""
    cache = Path(cache) if cache is not None else cache_root()
    most: dict[str, object] = {}
    for run in runs:
        if run.dataset not in most or run.tokens > most[run.dataset].tokens:
            most[run.dataset] = run
    lines = []
    for dataset, run in most.items():
        unique = known_unique_tokens(dataset, run.data_options, run.tokenizer, run.vocab_size, cache)
        if unique and run.tokens / unique > REPEATED_EPOCHS:
            over = sum(1 for r in runs if r.dataset == dataset and r.tokens / unique > REPEATED_EPOCHS)
            lines.append(
                f"{dataset}: {over} run(s) exceed {REPEATED_EPOCHS} epochs (up to {run.tokens / unique:.1f} passes "
                f"over {unique:,} unique training tokens); past about {REPEATED_EPOCHS} epochs repeated data is "
                "worth less than fresh (Muennighoff et al. 2023): fit them with --law constrained"
            )
    return lines
