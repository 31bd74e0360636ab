"""``python -m sparseopt_edu.cli`` (and ``torchrun -m sparseopt_edu.cli train ...``): the console script."""
import sys

from . import main

sys.exit(main())
