"""Sparse masks and layer-wise sparsity distributions.

distributions.py: how many weights each layer keeps (Uniform, ER, ERK, or your own object). layers.py: which
layers are masked, what a neuron is. build.py: ``sparsify``, the first masks. masks.py: ``SparseMasks``, the
masks and their caches from then on. optimizer_state.py: the optimizer state that follows the masks. flat.py:
every masked layer as one vector.
"""
from .build import random_mask, sparsify
from .distributions import DISTRIBUTIONS, ER, ERK, Distribution, Uniform, layer_counts, layer_densities
from .layers import maskable_layers
from .masks import SparseMasks
from .optimizer_state import ELEMENTWISE_OPTIMIZERS, check_elementwise

__all__ = [
    "DISTRIBUTIONS", "ELEMENTWISE_OPTIMIZERS", "ER", "ERK", "Distribution", "SparseMasks", "Uniform",
    "check_elementwise", "layer_counts", "layer_densities", "maskable_layers", "random_mask", "sparsify",
]
