"""Seeded random Markov chains over bytes whose entropy rate is known exactly.

The chain has order k over an alphabet of A symbols (printed as the ASCII bytes from '!' upwards).
Two kinds (`markov_kind`):

- "sparse" (the default): each of the A**k contexts may be followed by `branching` distinct symbols,
  chosen at random, with probabilities drawn from a flat Dirichlet. Its lower-order marginals are nearly
  uniform, so a model learns nothing until it combines all k symbols, and a small model reaches the
  entropy of a low-order chain: no dependence on model size to fit.
- "backoff": a hierarchical Dirichlet n-gram, the known-answer source for scaling laws. A Zipf(1)
  unigram over the A symbols (in a random order) is refined order by order: the next-symbol table of
  each context of length j is drawn from Dirichlet(concentration * the table of its length j-1 suffix).
  Every order carries part of the signal (the manifest lists H(next | last j symbols) for j = 0..k),
  so a model keeps finding more as it grows: the bigram table takes a few thousand numbers, the
  order-3 table over 16 symbols 65 thousand.

The entropy rate is sum over contexts of pi(context) * H(next symbol | context), where pi is the
stationary distribution of the context chain.

Generation runs many independent chains side by side (one per document) so that each numpy step
advances all of them; every chain starts in a context drawn from pi, so each document is a stationary
sample. Documents are concatenated in the token stream, so the first k bytes after a document
boundary are not predictable from the bytes before it; with 4096-byte documents that is k/4096 of
the stream (0.05% for k = 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaling_cli.data.options import DataOptions

FIRST_SYMBOL_BYTE = ord("!")
DOC_BYTES = 4096
_STATIONARY_TOL = 1e-13
_STATIONARY_MAX_ITERS = 200_000


@dataclass(frozen=True)
class MarkovChain:
    """Successor table `succ[context, j]` and its probabilities `probs[context, j]`."""

    order: int
    alphabet: int
    succ: np.ndarray
    probs: np.ndarray

    @property
    def n_contexts(self) -> int:
        return self.alphabet**self.order

    def next_contexts(self) -> np.ndarray:
        """The context reached from each context by each of its successors, shape like `succ`."""
        contexts = np.arange(self.n_contexts, dtype=np.int64)[:, None]
        return (contexts * self.alphabet + self.succ) % self.n_contexts


def build_chain(order: int, alphabet: int, branching: int, seed: int) -> MarkovChain:
    """Draw the chain's structure: successors without replacement and Dirichlet(1) probabilities."""
    rng = np.random.default_rng([seed, 0])
    n_contexts = alphabet**order
    # argsort of uniform noise gives one random permutation per row; its first columns are the successors
    succ = np.argsort(rng.random((n_contexts, alphabet)), axis=1)[:, :branching].astype(np.int64)
    probs = rng.dirichlet(np.ones(branching), size=n_contexts) if branching > 1 else np.ones((n_contexts, 1))
    return MarkovChain(order=order, alphabet=alphabet, succ=succ, probs=probs)


def build_backoff_chain(order: int, alphabet: int, concentration: float, seed: int) -> MarkovChain:
    """Draw a hierarchical Dirichlet n-gram: each order's rows are Dirichlet around the next lower order's.

    Contexts are numbered with the most recent symbol least significant, so a context's suffix of
    length j-1 is its index modulo alphabet ** (j - 1). Rows are dense: every symbol may follow.
    """
    rng = np.random.default_rng([seed, 0])
    zipf = 1.0 / np.arange(1, alphabet + 1)
    table = (zipf[rng.permutation(alphabet)] / zipf.sum())[None, :]
    for length in range(1, order + 1):
        parents = table[np.arange(alphabet**length) % alphabet ** (length - 1)]
        # a tiny floor keeps every Dirichlet parameter positive when a parent probability underflows
        table = rng.gamma(concentration * parents + 1e-9)
        table /= table.sum(axis=1, keepdims=True)
    succ = np.broadcast_to(np.arange(alphabet, dtype=np.int64), table.shape).copy()
    return MarkovChain(order=order, alphabet=alphabet, succ=succ, probs=table)


def entropy_by_context_bits(chain: MarkovChain, pi: np.ndarray) -> list[float]:
    """H(next symbol | the last j symbols) in bits under the stationary chain, for j = 0..order.

    The best loss of a predictor that sees only the last j symbols; j = order is the entropy rate.
    """
    joint = pi[:, None] * chain.probs  # P(context, next), dense over (context, successor slot)
    out = []
    for length in range(chain.order + 1):
        suffixes = np.arange(chain.n_contexts) % chain.alphabet**length
        grouped = np.zeros((chain.alphabet**length, chain.alphabet))
        np.add.at(grouped, (suffixes[:, None], chain.succ), joint)
        conditional = grouped / np.maximum(grouped.sum(axis=1, keepdims=True), 1e-300)
        with np.errstate(divide="ignore"):
            logs = np.where(conditional > 0, np.log2(np.where(conditional > 0, conditional, 1.0)), 0.0)
        out.append(float(-(grouped * logs).sum()))
    return out


def stationary_distribution(chain: MarkovChain) -> np.ndarray:
    """A stationary distribution of the context chain, by power iteration of the lazy chain (P + I) / 2.

    The lazy chain has the same stationary distributions and is aperiodic, so the iteration converges.
    When the chain is reducible the result is a mixture over its closed classes; the entropy rate
    formula holds for any stationary distribution because every class keeps its own conditionals.
    """
    nxt = chain.next_contexts().ravel()
    pi = np.full(chain.n_contexts, 1.0 / chain.n_contexts)
    for _ in range(_STATIONARY_MAX_ITERS):
        moved = np.bincount(nxt, weights=(pi[:, None] * chain.probs).ravel(), minlength=chain.n_contexts)
        new = 0.5 * (pi + moved)
        if np.abs(new - pi).sum() < _STATIONARY_TOL:
            return new / new.sum()
        pi = new
    return pi / pi.sum()


def context_entropies_bits(chain: MarkovChain) -> np.ndarray:
    """H(next symbol | context) in bits for every context."""
    p = chain.probs
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=1)


def entropy_rate_bits(chain: MarkovChain, pi: np.ndarray | None = None) -> float:
    """Exact entropy rate in bits per byte: stationary distribution times per-context entropy."""
    pi = stationary_distribution(chain) if pi is None else pi
    return float(pi @ context_entropies_bits(chain))


def sample_chains(
    chain: MarkovChain, n_chains: int, length: int, rng: np.random.Generator, pi: np.ndarray
) -> np.ndarray:
    """`n_chains` stationary sequences of `length` symbols each, all advanced together, shape (n, length)."""
    out = np.empty((n_chains, length), dtype=np.uint8)
    context = rng.choice(chain.n_contexts, size=n_chains, p=pi)
    # the first k symbols are the starting context itself, written most significant digit first
    for i in range(chain.order):
        out[:, i] = (context // chain.alphabet ** (chain.order - 1 - i)) % chain.alphabet
    cumulative = np.cumsum(chain.probs, axis=1)
    last = chain.probs.shape[1] - 1
    uniforms = rng.random((length, n_chains))
    for t in range(chain.order, length):
        choice = (uniforms[t][:, None] > cumulative[context]).sum(axis=1)
        symbol = chain.succ[context, np.minimum(choice, last)]
        out[:, t] = symbol
        context = (context * chain.alphabet + symbol) % chain.n_contexts
    return out


def chain_from_options(opts: DataOptions) -> MarkovChain:
    """The chain that the spec's markov_* options describe."""
    if opts.markov_kind == "backoff":
        return build_backoff_chain(opts.markov_order, opts.markov_alphabet, opts.markov_concentration, opts.markov_seed)
    return build_chain(opts.markov_order, opts.markov_alphabet, opts.markov_branching, opts.markov_seed)


def generate_documents(opts: DataOptions) -> tuple[list[str], dict]:
    """The markov corpus as ASCII documents of DOC_BYTES each (the last may be shorter), and its facts."""
    chain = chain_from_options(opts)
    pi = stationary_distribution(chain)
    n_docs = -(-opts.markov_bytes // DOC_BYTES)
    symbols = sample_chains(chain, n_docs, DOC_BYTES, np.random.default_rng([opts.markov_seed, 1]), pi)
    flat = (symbols.reshape(-1)[: opts.markov_bytes] + FIRST_SYMBOL_BYTE).tobytes()
    docs = [flat[i : i + DOC_BYTES].decode("ascii") for i in range(0, len(flat), DOC_BYTES)]
    return docs, _facts(opts, chain, pi)


def _facts(opts: DataOptions, chain: MarkovChain, pi: np.ndarray) -> dict:
    facts = {
        "entropy_rate_bits": entropy_rate_bits(chain, pi),
        "order": opts.markov_order,
        "alphabet": opts.markov_alphabet,
        "branching": opts.markov_branching,
        "seed": opts.markov_seed,
        "doc_bytes": DOC_BYTES,
        "symbols": f"bytes {FIRST_SYMBOL_BYTE}..{FIRST_SYMBOL_BYTE + opts.markov_alphabet - 1} (ASCII from '!')",
        "boundary_note": (
            f"the first {opts.markov_order} bytes of each {DOC_BYTES}-byte document start a new "
            "chain, so the stream's achievable loss is a little above the entropy rate"
        ),
    }
    if opts.markov_kind == "backoff":
        facts["kind"] = "backoff"
        facts["concentration"] = opts.markov_concentration
        facts["entropy_by_context_bits"] = entropy_by_context_bits(chain, pi)
        del facts["branching"]
    return facts
