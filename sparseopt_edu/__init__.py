"""sparseopt-edu: sparse masks, dynamic sparse training and SparseOpt, for teaching.

    masks = sparsify(model, 0.9, "erk")                       # weight_mask buffers, inactive weights at 0
    opt = SparseOpt(torch.optim.SGD(model.parameters(), 0.1, momentum=0.9), masks)
    dst = RigL(masks, opt, delta_t=100, alpha=0.3, t_end=0.75, total_steps=T)
    ...  loss.backward(); opt.step(); dst.step()
"""
from . import diagnostics, dst
from .dst import SET, RigL, SRigL, Static
from .optim import SparseOpt
from .sparse import SparseMasks, sparsify

__version__ = "0.1.0"

__all__ = ["SET", "RigL", "SRigL", "SparseMasks", "SparseOpt", "Static", "diagnostics", "dst", "sparsify"]
