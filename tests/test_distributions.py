import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparseopt_edu.sparse import DISTRIBUTIONS, ER, ERK, Uniform, maskable_layers, sparsify
from sparseopt_edu.sparse.distributions import layer_counts, layer_densities
from sparseopt_edu.train.config import CHOICES
from tests.core_models import small_cnn

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


# ----- distributions as objects (issue 15 item 4): names, classes, and a user's own -------------------------
def test_names_are_the_registry_and_give_the_same_counts_as_their_objects():
    assert list(DISTRIBUTIONS) == ["uniform", "er", "erk"]
    assert (DISTRIBUTIONS["uniform"], DISTRIBUTIONS["er"], DISTRIBUTIONS["erk"]) == (Uniform, ER, ERK)
    for name, cls in DISTRIBUTIONS.items():
        assert layer_counts(RESNETISH, 0.9, name) == cls().layer_counts(RESNETISH, 0.9)
        assert layer_counts(RESNETISH, 0.9, cls()) == layer_counts(RESNETISH, 0.9, name)
        assert layer_densities(RESNETISH, 0.9, name) == cls().layer_densities(RESNETISH, 0.9)
    assert tuple(CHOICES["distribution"]) == tuple(DISTRIBUTIONS)  # the CLI's choices are the registry's names


@pytest.mark.parametrize("name", ["uniform", "er", "erk"])
def test_a_name_and_its_object_give_identical_masks(name):
    by_name, by_object = small_cnn(), small_cnn()
    by_object.load_state_dict(by_name.state_dict())
    masks_a = sparsify(by_name, 0.8, name, seed=3)
    masks_b = sparsify(by_object, 0.8, DISTRIBUTIONS[name](), seed=3)
    assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)
    assert all(torch.equal(a, b) for a, b in zip(by_name.state_dict().values(), by_object.state_dict().values()))


class FirstLayerDense:
    """A user's distribution, not a subclass: the first layer keeps all its weights, every other keeps 3."""

    def layer_counts(self, shapes, sparsity):
        first = next(iter(shapes))
        return {n: math.prod(s) if n == first else 3 for n, s in shapes.items()}


def test_a_custom_distribution_object_gives_exactly_its_counts():
    model = small_cnn()
    shapes = {n: tuple(m.weight.shape) for n, m in maskable_layers(model).items()}
    masks = sparsify(model, 0.9, FirstLayerDense())
    assert {n: masks.live_count(n) for n in masks} == FirstLayerDense().layer_counts(shapes, 0.9)
    assert all(int(masks[n].sum()) == masks.live_count(n) for n in masks)

    class OneOverFanIn(ER):  # a subclass: only the proportional rule is new, scaling and rounding are inherited
        def raw_density(self, shape):
            return 1.0 / math.prod(shape[1:])

    counts = layer_counts(RESNETISH, 0.9, OneOverFanIn())
    assert sum(counts.values()) == round(0.1 * sum(math.prod(s) for s in RESNETISH.values()))


def test_unknown_names_and_bad_objects_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown distribution 'gaussian': choose one of uniform, er, erk, or pass"):
        sparsify(small_cnn(), 0.5, "gaussian")
    with pytest.raises(TypeError, match=r"is a class: pass an instance, ERK\(\)"):
        sparsify(small_cnn(), 0.5, ERK)
    with pytest.raises(TypeError, match="layer_counts"):
        sparsify(small_cnn(), 0.5, 0.3)

    class Broken:
        def __init__(self, counts):
            self.counts = counts

        def layer_counts(self, shapes, sparsity):
            return self.counts(shapes)

    with pytest.raises(ValueError, match="for exactly the masked layers"):
        sparsify(small_cnn(), 0.5, Broken(lambda shapes: {"0": 1}))
    with pytest.raises(ValueError, match=r"gives layer '0' 0 live weights.*int in \[1, 216\]"):
        sparsify(small_cnn(), 0.5, Broken(lambda shapes: dict.fromkeys(shapes, 0)))
    with pytest.raises(ValueError, match=r"2.5 live weights"):
        sparsify(small_cnn(), 0.5, Broken(lambda shapes: dict.fromkeys(shapes, 2.5)))
    with pytest.raises(TypeError, match="no layer_densities"):
        layer_densities(RESNETISH, 0.5, FirstLayerDense())
