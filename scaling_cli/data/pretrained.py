"""Pretrained tokenizers, found offline: `hf:PATH_OR_NAME` (a tokenizer.json read by `tokenizers`) and
`tiktoken:ENCODING_OR_PATH` (a .tiktoken rank file read by `tiktoken`).

`hf:` takes a directory holding tokenizer.json, the file itself, or a Hub name (`org/name`) found in the
Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME`/hub, else ~/.cache/huggingface/hub). `tiktoken:` takes a
path to a rank file (GPT-2's split pattern, no special tokens) or an encoding name whose file tiktoken has cached
in `TIKTOKEN_CACHE_DIR`; nothing is downloaded. A tokenizer's identity is the sha256 of its file, so the same
tokenizer at another path names the same data set and runs. Text is encoded without special tokens, so the
bytes of the text over its tokens (bits per byte) stay exact.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from scaling_cli.errors import DataError
from scaling_cli.validate import PRETRAINED_TOKENIZERS

HF_FILE = "tokenizer.json"
TIKTOKEN_FILE = "tokenizer.tiktoken"
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"  # tiktoken's cache key
GPT2_SPLIT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def is_pretrained(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PRETRAINED_TOKENIZERS)


def locate(name: str) -> Path:
    """The tokenizer's file; DataError("tokenizer", ...) naming every place looked at when it is not there."""
    kind, _, where = name.partition(":")
    if not where:
        raise DataError("tokenizer", "tokenizer", f"{name!r}: give a path or name after '{kind}:'")
    candidates = _hf_candidates(where) if kind == "hf" else _tiktoken_candidates(where)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DataError("tokenizer", "tokenizer", f"{name!r} not found offline; looked in: {looked}")


def identity(name: str) -> dict:
    """What names the tokenizer in data set keys and run ids: its kind and its file's sha256 (not its path)."""
    return {"kind": name.split(":", 1)[0], "sha256": hashlib.sha256(locate(name).read_bytes()).hexdigest()}


def _hf_candidates(where: str) -> list[Path]:
    path = Path(where).expanduser()
    found = [path / HF_FILE if path.is_dir() or not path.suffix else path]
    if where.count("/") == 1 and not where.startswith((".", "~")) and not path.exists():  # a Hub name: org/name
        hub = (
            os.environ.get("HF_HUB_CACHE")
            or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
        )
        repo = Path(hub) / ("models--" + where.replace("/", "--"))
        found += sorted(repo.glob(f"snapshots/*/{HF_FILE}")) or [repo / "snapshots" / "*" / HF_FILE]
    return found


def _tiktoken_candidates(where: str) -> list[Path]:
    path = Path(where).expanduser()
    if path.suffix or "/" in where:
        return [path]
    env = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    cache = env or Path(tempfile.gettempdir()) / "data-gym-cache"
    return [Path(cache) / hashlib.sha1(TIKTOKEN_URL.format(where).encode()).hexdigest()]


class PretrainedTokenizer:
    """A pretrained tokenizer behind data.tokenizer's interface (vocab_size, encode, encode_many, decode)."""

    def __init__(self, name: str, path: Path):
        self.name, self.kind, self.path = name, name.split(":", 1)[0], path
        self._tok = _load_hf(path) if self.kind == "hf" else _load_tiktoken(name, path)
        self.vocab_size = self._tok.get_vocab_size() if self.kind == "hf" else self._tok.n_vocab

    @classmethod
    def open(cls, name: str) -> PretrainedTokenizer:
        return cls(name, locate(name))

    @property
    def file_name(self) -> str:
        return HF_FILE if self.kind == "hf" else TIKTOKEN_FILE

    def save(self, folder: Path) -> None:
        """Copy the tokenizer's file into a prepared data set (export and decoding read it there)."""
        (folder / self.file_name).write_bytes(self.path.read_bytes())

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if self.kind == "hf":
            return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
        return self._tok.encode_ordinary_batch(texts)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_many([text])

    def encode_many(self, texts: list[str]) -> np.ndarray:
        dtype = np.dtype(np.uint16) if self.vocab_size <= 65535 else np.dtype(np.int32)  # as data.tokenizer's
        ids = [np.asarray(i, dtype=dtype) for i in self._ids(texts)]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=dtype)

    def decode(self, tokens: np.ndarray) -> str:
        return self._tok.decode([int(t) for t in tokens])


def _load_hf(path: Path):
    try:
        import tokenizers
    except ImportError:
        raise DataError("tokenizer", "hf", "needs the `tokenizers` package: pip install 'scaling-cli[bpe]'") from None
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception for unreadable files
        raise DataError(str(path), "tokenizer", f"not a tokenizer.json that `tokenizers` can read ({exc})") from None


def _load_tiktoken(name: str, path: Path):
    try:
        import tiktoken
    except ImportError:
        raise DataError("tokenizer", "tiktoken", "needs the `tiktoken` package: pip install tiktoken") from None
    where = name.split(":", 1)[1]
    try:
        if path.name != Path(where).name:  # an encoding name found in tiktoken's cache: tiktoken checks its hash
            return tiktoken.get_encoding(where)
        lines = path.read_bytes().splitlines()  # "<base64 token> <rank>" per line, as tiktoken writes them
        ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}
    except Exception as exc:  # noqa: BLE001 - tiktoken raises ValueError, KeyError or its own errors
        raise DataError(str(path), "tokenizer", f"not a tiktoken rank file ({exc})") from None
    return tiktoken.Encoding(name=path.stem, pat_str=GPT2_SPLIT, mergeable_ranks=ranks, special_tokens={})
