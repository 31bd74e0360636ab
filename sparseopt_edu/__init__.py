"""sparseopt-edu: sparse masks, dynamic sparse training and SparseOpt, for teaching."""
__version__ = "0.1.0"
