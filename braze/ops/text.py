"""Text featurization: TfIdfVectorizer over integer token ids.

The pool lists n-grams grouped by length (`ngram_counts[i]` is where the (i+1)-grams start);
n-gram k of the pool is counted into output column `ngram_indexes[k]`. Every window of n tokens
taken `d` apart (d = 1 .. max_skip_count + 1; unigrams once) whose tokens form a pooled n-gram
of a length in [min_gram_length, max_gram_length] counts; `mode` then turns counts into TF,
IDF or TF-IDF values. String tokens are not supported: braze tensors are numeric.

NOTE: the specification gives one weight per pooled n-gram; like onnxruntime and ONNX's reference,
weight i applies to output column i (the same thing when ngram_indexes is 0, 1, 2, ...).
"""

from __future__ import annotations

import torch

from .opdef import op

_MODES = ("TF", "IDF", "TFIDF")


def _pooled_ngrams(pool: list[int], counts: list[int], indexes: list[int]) -> dict[int, tuple[list[tuple], list[int]]]:
    """Per n-gram length: the distinct n-grams and their output columns (a repeated n-gram keeps the last)."""
    found: dict[int, dict[tuple, int]] = {}
    gram_id = 0
    for i, start in enumerate(counts):
        end = counts[i + 1] if i + 1 < len(counts) else len(pool)
        n = i + 1
        if start > end or (end - start) % n:
            raise ValueError(f"ngram_counts {counts} does not split the pool of {len(pool)} into {n}-grams")
        for j in range(start, end, n):
            if gram_id >= len(indexes):
                raise ValueError(f"ngram_indexes has {len(indexes)} entries, the pool holds more n-grams")
            found.setdefault(n, {})[tuple(pool[j:j + n])] = indexes[gram_id]
            gram_id += 1
    return {n: (list(grams), list(grams.values())) for n, grams in found.items()}


@op("TfIdfVectorizer", since=9)
def tfidf_vectorizer(x, *, max_gram_length: int, max_skip_count: int, min_gram_length: int, mode: str,
                     ngram_counts: list[int], ngram_indexes: list[int], pool_int64s: list[int] | None = None,
                     pool_strings: list[str] | None = None, weights: list[float] | None = None):
    if pool_strings:
        raise ValueError("pool_strings needs string tokens, which braze does not support (its tensors are numeric)")
    if x.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"X must hold int32 or int64 token ids, got {x.dtype}")
    if x.dim() not in (1, 2) or (x.dim() == 2 and x.shape[0] < 1):
        raise ValueError(f"X must be [C] or [N, C] with N > 0, got shape {list(x.shape)}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if not 1 <= min_gram_length <= max_gram_length or max_skip_count < 0 or not ngram_indexes:
        raise ValueError(f"need 1 <= min_gram_length ({min_gram_length}) <= max_gram_length ({max_gram_length}), "
                         f"max_skip_count >= 0 ({max_skip_count}) and some ngram_indexes")
    size = max(ngram_indexes) + 1
    if weights and (len(weights) != len(ngram_indexes) or len(weights) < size):
        raise ValueError(f"weights has {len(weights)} values; it needs one per n-gram ({len(ngram_indexes)}) and at "
                         f"least one per output column ({size})")
    grams = _pooled_ngrams(pool_int64s or [], ngram_counts, ngram_indexes)
    rows = x.reshape(-1 if x.dim() == 1 else x.shape[0], x.shape[-1]).to(torch.int64)
    length = rows.shape[1]
    counts = torch.zeros(rows.shape[0], size, dtype=torch.float32, device=x.device)
    for n in range(min_gram_length, max_gram_length + 1):
        if n not in grams:
            continue
        pooled = torch.tensor(grams[n][0], dtype=torch.int64, device=x.device)  # G x n
        columns = torch.tensor(grams[n][1], dtype=torch.int64, device=x.device)
        for skip in range(1, (max_skip_count + 2) if n > 1 else 2):
            starts = length - (n - 1) * skip
            if starts <= 0:
                break
            positions = torch.arange(starts, device=x.device)[:, None] + torch.arange(n, device=x.device) * skip
            windows = rows[:, positions]  # rows x starts x n
            hits = (windows[:, :, None, :] == pooled).all(-1).sum(1).to(torch.float32)  # rows x G
            counts = counts.index_add(1, columns, hits)
    scale = torch.tensor(weights[:size], dtype=torch.float32, device=x.device) if weights else None
    if mode == "TF":
        y = counts
    elif mode == "IDF":
        y = (counts > 0).to(torch.float32)
        y = y * scale if scale is not None else y
    else:
        y = counts * scale if scale is not None else counts
    return y.reshape(size) if x.dim() == 1 else y


OPS = [tfidf_vectorizer]
