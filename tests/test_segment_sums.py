"""segment_sums (issue 17 item 2): the contention-free run sums equal FlatLayout's index_add_ sums."""
import torch
from torch import nn

from sparseopt_edu import sparsify
from sparseopt_edu.models import resnet20
from sparseopt_edu.sparse.segment_sums import contiguous_runs, run_bounds, run_sums


def test_equal_to_the_layouts_sums_for_counts_and_values():
    torch.manual_seed(0)
    layout = sparsify(resnet20(num_classes=100), 0.9, "erk").layout()
    layers = run_bounds(torch.tensor(layout.sizes))
    rows = contiguous_runs(layout.row_of, layout.n_rows)
    assert rows is not None
    mask = torch.rand(layout.numel) < 0.1
    assert torch.equal(run_sums(mask, layers), layout.layer_sum(mask))  # counts: exact
    assert torch.equal(run_sums(mask, rows), layout.row_sum(mask))
    values = torch.randn(layout.numel)
    torch.testing.assert_close(run_sums(values, layers), layout.layer_sum(values), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(run_sums(values, rows), layout.row_sum(values), rtol=1e-12, atol=1e-9)


def test_empty_runs_and_spread_neurons():
    bounds = run_bounds(torch.tensor([0, 3, 0, 2]))
    assert run_sums(torch.ones(5), bounds).tolist() == [0.0, 3.0, 0.0, 2.0]
    assert contiguous_runs(torch.tensor([0, 1, 0, 1]), 2) is None  # a transposed conv's neurons interleave
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3), nn.Conv2d(6, 4, 3))
    layout = sparsify(model, 0.5, "uniform").layout()
    assert contiguous_runs(layout.row_of, layout.n_rows) is None
