import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt_edu.sparse.distributions import layer_counts, layer_densities

RESNETISH = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "conv3": (64, 32, 3, 3), "fc": (10, 64)}


@pytest.mark.parametrize("dist", ["uniform", "er", "erk"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.97])
def test_total_live_count_is_exact(dist, sparsity):
    counts = layer_counts(RESNETISH, sparsity, dist)
    n = sum(math.prod(s) for s in RESNETISH.values())
    assert sum(counts.values()) == round((1 - sparsity) * n)
    assert all(1 <= counts[k] <= math.prod(s) for k, s in RESNETISH.items())


def test_erk_formula_and_dense_capacity_loop():
    d = layer_densities(RESNETISH, 0.9, "erk")
    raw = {k: sum(s) / math.prod(s) for k, s in RESNETISH.items()}
    dense = [k for k in d if d[k] == 1.0]
    sparse = [k for k in d if d[k] < 1.0]
    # The small fc layer would exceed density 1: it is made dense, epsilon re-solved for the others.
    assert dense == ["fc"]
    eps = d[sparse[0]] / raw[sparse[0]]
    for k in sparse:
        assert d[k] == pytest.approx(eps * raw[k])
    assert eps * raw["fc"] > 1.0
    n = sum(math.prod(s) for s in RESNETISH.values())
    assert sum(d[k] * math.prod(s) for k, s in RESNETISH.items()) == pytest.approx(0.1 * n)


def test_er_ignores_kernel_size():
    d = layer_densities({"a": (8, 8, 3, 3), "b": (8, 8, 1, 1)}, 0.5, "er")
    assert d["a"] == pytest.approx(d["b"])


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3])), min_size=1, max_size=5),
    sparsity=st.floats(0.0, 0.99),
    dist=st.sampled_from(["uniform", "er", "erk"]),
)
def test_counts_exact_for_any_shapes(shapes, sparsity, dist):
    layers = {f"l{i}": (o, i_, k, k) for i, (o, i_, k) in enumerate(shapes)}
    n = sum(math.prod(s) for s in layers.values())
    total = round((1 - sparsity) * n)
    if total < len(layers):
        with pytest.raises(ValueError, match="at least one weight"):
            layer_counts(layers, sparsity, dist)
        return
    counts = layer_counts(layers, sparsity, dist)
    assert sum(counts.values()) == total
    assert all(1 <= counts[k] <= math.prod(s) for k, s in layers.items())


@pytest.mark.parametrize("bad", [1.0, 1.2, -0.1, float("nan"), "0.9", True])
def test_bad_sparsity_is_refused(bad):
    with pytest.raises(ValueError, match="sparsity must be"):
        layer_counts(RESNETISH, bad, "erk")


def test_unknown_distribution():
    with pytest.raises(ValueError, match="choose one of uniform, er, erk"):
        layer_counts(RESNETISH, 0.5, "gaussian")
