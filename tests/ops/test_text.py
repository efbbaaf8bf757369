import numpy as np
import pytest

import braze

from .harness import check_op, feeds_of, make_model

POOL = {"ngram_counts": [0, 4, 10], "ngram_indexes": list(range(9)) + [2, 9],
        "pool_int64s": [2, 3, 5, 4,  5, 6, 7, 8, 6, 7,  1, 3, 3]}  # 4 unigrams, 3 bigrams, 1 trigram


def tokens(*shape, seed=0):
    return np.random.default_rng(seed).integers(1, 9, size=shape)


def _raises(inputs, attrs, match):
    model = make_model("TfIdfVectorizer", inputs, attrs, opset=9)
    with pytest.raises(braze.BrazeError, match=f"tfidfvectorizer_node.*{match}"):
        engine = braze.Builder("cpu").build(braze.parse_onnx(model, check=False), braze.BuilderConfig())
        engine.create_execution_context().infer(feeds_of(inputs))


def attrs_of(mode, min_gram, max_gram, skip, weights=None, pool=POOL):
    attrs = {**pool, "mode": mode, "min_gram_length": min_gram, "max_gram_length": max_gram,
             "max_skip_count": skip}
    if weights is not None:
        attrs["weights"] = weights
    return attrs


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
@pytest.mark.parametrize("grams,skip", [((1, 1), 0), ((1, 2), 0), ((2, 3), 3), ((1, 3), 5)])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_tfidf(mode, grams, skip, dtype):
    x = tokens(3, 14).astype(dtype)
    check_op("TfIdfVectorizer", {"x": x}, attrs_of(mode, *grams, skip), opset=9)


@pytest.mark.parametrize("mode", ["IDF", "TFIDF"])
def test_tfidf_weights(mode):
    weights = [0.5, 1.0, 2.0, 0.25, 3.0, 1.5, 0.75, 2.5, 1.25, 4.0, 0.1]
    check_op("TfIdfVectorizer", {"x": tokens(2, 20, seed=1)}, attrs_of(mode, 1, 3, 2, weights), opset=9)


def test_tfidf_vector_input():
    check_op("TfIdfVectorizer", {"x": tokens(25, seed=2).astype(np.int32)}, attrs_of("TF", 1, 2, 4), opset=9)


def test_tfidf_short_rows():
    """Rows shorter than the longest n-gram with its skips."""
    check_op("TfIdfVectorizer", {"x": tokens(2, 3, seed=3)}, attrs_of("TF", 1, 3, 5), opset=9)


def test_tfidf_errors():
    x = tokens(2, 5)
    _raises({"x": x}, attrs_of("BM25", 1, 2, 0), "mode")
    _raises({"x": x}, attrs_of("TF", 3, 2, 0), "min_gram_length")
    _raises({"x": x}, attrs_of("TF", 1, 2, 0, weights=[1.0]), "weights")
    _raises({"x": x.astype(np.float32)}, attrs_of("TF", 1, 2, 0), "int32 or int64")
    _raises({"x": tokens(2, 2, 5)}, attrs_of("TF", 1, 2, 0), r"\[N, C\]")
    bad_pool = {**POOL, "ngram_counts": [0, 4]}  # 9 tokens left for bigrams
    _raises({"x": x}, attrs_of("TF", 1, 2, 0, pool=bad_pool), "ngram_counts")
