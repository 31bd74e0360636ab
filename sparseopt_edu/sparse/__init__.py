"""Sparse masks and layer-wise sparsity distributions."""
from .distributions import DISTRIBUTIONS, layer_counts, layer_densities
from .masks import (
    ELEMENTWISE_OPTIMIZERS,
    SparseMasks,
    check_elementwise,
    maskable_layers,
    random_mask,
    sparsify,
)

__all__ = [
    "DISTRIBUTIONS", "ELEMENTWISE_OPTIMIZERS", "SparseMasks", "check_elementwise", "layer_counts",
    "layer_densities", "maskable_layers", "random_mask", "sparsify",
]
