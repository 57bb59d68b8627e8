"""Tokenisers: raw UTF-8 bytes (vocabulary 256) and byte-level BPE trained locally with HF `tokenizers`.

Both round-trip any text exactly. Byte-level BPE starts from all 256 byte symbols, so nothing is ever
out of vocabulary; bytes per token is measured on the validation text and stored so that losses in
nats per token convert to bits per byte the same way for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from scaling_cli.errors import DataError
from scaling_cli.validate import PRETRAINED_TOKENIZERS, TOKENIZERS

BYTE_VOCAB = 256
BPE_FILE = "tokenizer.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.int32)


class ByteTokenizer:
    """Token i is byte i of the UTF-8 text."""

    kind = "bytes"
    vocab_size = BYTE_VOCAB

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def encode_many(self, texts: list[str]) -> np.ndarray:
        return self.encode("".join(texts))

    def decode(self, tokens: np.ndarray) -> str:
        return np.asarray(tokens, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")


class BpeTokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation) from the `tokenizers` library."""

    kind = "bpe"

    def __init__(self, backend) -> None:
        self._tok = backend
        self.vocab_size = backend.get_vocab_size()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BpeTokenizer:
        """Learn merges on the given (training) texts until the vocabulary has vocab_size entries; texts may be
        a generator (the library's iterator API), so a large sample is never held as one list."""
        lib = _tokenizers_lib()
        tok = lib.Tokenizer(lib.models.BPE())
        tok.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = lib.decoders.ByteLevel()
        trainer = lib.trainers.BpeTrainer(
            vocab_size=vocab_size,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=lib.pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts) if isinstance(texts, list) else None)
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> BpeTokenizer:
        lib = _tokenizers_lib()
        try:
            return cls(lib.Tokenizer.from_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception for unreadable files
            raise DataError(str(path), "tokenizer", f"cannot load the BPE tokenizer ({exc})") from None

    def save(self, path: Path) -> None:
        self._tok.save(str(path))

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text).ids, dtype=token_dtype(self.vocab_size))

    def encode_many(self, texts: list[str]) -> np.ndarray:
        encodings = self._tok.encode_batch(texts)
        ids = [np.asarray(e.ids, dtype=token_dtype(self.vocab_size)) for e in encodings]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=token_dtype(self.vocab_size))

    def decode(self, tokens: np.ndarray) -> str:
        return self._tok.decode([int(t) for t in tokens])


def _tokenizers_lib():
    try:
        import tokenizers
        import tokenizers.decoders
        import tokenizers.models
        import tokenizers.pre_tokenizers
        import tokenizers.trainers
    except ImportError:
        raise DataError("tokenizer", "bpe", "needs the `tokenizers` package: pip install 'scaling-cli[bpe]'") from None
    return tokenizers


def is_pretrained(kind: str) -> bool:
    """hf:PATH or tiktoken:ENCODING (data/pretrained.py), as opposed to bytes or a BPE trained here."""
    return isinstance(kind, str) and kind.startswith(PRETRAINED_TOKENIZERS)


def check_tokenizer(kind: str, vocab_size: int | None, where: str = "tokenizer") -> int:
    """The vocabulary size a tokenizer request resolves to; DataError for an unknown kind or bad size."""
    if is_pretrained(kind):
        from scaling_cli.data.pretrained import PretrainedTokenizer

        return PretrainedTokenizer.open(kind).vocab_size  # vocab_size is the tokenizer's own (the spec leaves it out)
    if kind not in TOKENIZERS:
        raise DataError(where, "tokenizer", f"unknown tokenizer {kind!r} (choose from {', '.join(TOKENIZERS)})")
    if kind == "bytes":
        if vocab_size not in (None, BYTE_VOCAB):
            raise DataError(where, "vocab_size", f"the bytes tokenizer has vocabulary 256, got {vocab_size}")
        return BYTE_VOCAB
    if vocab_size is None:
        raise DataError(where, "vocab_size", "the bpe tokenizer needs a vocab_size (e.g. 2048)")
    if not isinstance(vocab_size, int) or not 257 <= vocab_size <= 1_000_000:
        raise DataError(where, "vocab_size", f"must be an integer between 257 and 1000000, got {vocab_size!r}")
    return vocab_size


def byte_tokenizer_json() -> str:
    """A Hugging Face `tokenizer.json` whose token i is byte i of the UTF-8 text (ByteTokenizer, for exports)."""
    lib = _tokenizers_lib()
    vocab = {symbol: byte for byte, symbol in enumerate(_byte_symbols())}
    tok = lib.Tokenizer(lib.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = lib.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = lib.decoders.ByteLevel()
    return tok.to_str()


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte (byte-level BPE's alphabet), in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, shifted = [], 0
    for byte in range(BYTE_VOCAB):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols
