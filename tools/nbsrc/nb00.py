import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbb import code, md, save

ROOT = Path(__file__).resolve().parents[2]

cells = [
md(r"""
# 00 · Start here

**Learning goal.** After this notebook you know what the course will teach you (the paper's claim *and* its
limits), which notebook covers what, that your machine is set up, how the interactive panels behave, and how
fast mode shrinks everything so it runs on a laptop CPU.

You should know PyTorch (modules, `loss.backward()`, `optimizer.step()`). You do not need to know anything
about sparse training yet.
"""),
md(r"""
## What this course is about

**Sparse networks.** Most weights of a *sparse* network are fixed at exactly zero: at 95% *sparsity* only 1 weight
in 20 is alive. *Dynamic sparse training* (DST: SET, RigL, SRigL) keeps the number of live weights fixed but
moves them around during training, so you train a small network from the start instead of pruning a big one.

**The claim (Adnan et al., *SparseOpt*, ICML 2026).** Batch Norm divides the gradient of every weight feeding
neuron *i* by that neuron's standard deviation σᵢ. A neuron that keeps only a fraction dᵢ = 1 − sᵢ of its
incoming weights has σᵢ ∝ √dᵢ, so its gradients are **amplified by 1/√(1 − sᵢ)**: about 3.2× at 90% sparsity,
4.5× at 95%, 5.8× at 97%. Neurons of one layer keep different numbers of weights, so the gradient is not just
scaled but *rotated* (the paper calls it *gradient skew*), and every DST topology update makes it jump.
**SparseOpt** multiplies each neuron's gradient back by √(dᵢ / d̄) before any optimizer (SGD, Adam, ...) sees it.
The paper reports about +1 accuracy point for ResNet-20 + RigL on CIFAR-100 at 90–97% sparsity and 100 epochs,
mostly shrinking with longer training, and +0.5 to +1.3 points for ResNet-50 on ImageNet.

**The limits (what you will also see, measured, in this course).**
- The raw skew is real and easy to measure (notebook 02): the ratio follows 1/√(1 − s) with Batch Norm.
- But Batch Norm is *scale invariant*: a neuron whose gradient is amplified grows its weight norm within a step
  or two, and its *relative* step falls back in line (notebook 04). The correction mainly changes weight norms.
- So at small scale (an MLP on MNIST, a ResNet-20 on synthetic data) races with and without SparseOpt end
  **within seed noise** of each other. The paper's gains were measured on CIFAR-100 on GPUs (notebook 05).
- With constant fan-in (SRigL) SparseOpt is *exactly* the inner optimizer, and with Adam a per-neuron scale
  almost cancels (notebook 06).

A learner who finishes the course can explain both the claim and when it matters.
"""),
md(r"""
## The notebooks

| # | notebook | you will learn |
|---|---|---|
| 00 | `00_start_here` | this page: goals, device check, widgets, fast mode |
| 01 | `01_sparse_networks` | masks, sparsity vs density, uniform / ER / ERK layer-wise distributions, fan-in |
| 02 | `02_batchnorm_meets_sparsity` | the 1/√(1 − s) amplification: derivation, then the paper's Fig. 3 live |
| 03 | `03_dynamic_sparse_training` | SET and RigL step by step: topology changes, fan-in drift, ITOP, skew jumps |
| 04 | `04_sparseopt` | the correction, the rotation angle, how training responds, a baseline-vs-SparseOpt race |
| 05 | `05_at_scale` | the paper's experiment (ResNet-20 + RigL on CIFAR-100) beside its Table 2 |
| 06 | `06_beyond_batchnorm` | LayerNorm, GroupNorm, no norm, constant fan-in, Adam: when does the correction matter? |

Each notebook runs top to bottom on its own, starts with a learning goal and ends with a self-check.
"""),
md(r"""
## Check your machine

The library prints what it found: Python, PyTorch, whether a GPU is available, the notebook packages, and
three checks (plotly's `FigureWidget` works, the JupyterLab setting for live widgets is installed, and this
kernel runs in the same environment as the server). The same report is `sparseopt-edu doctor` in a terminal.
"""),
code(r"""
from sparseopt_edu import fast
from sparseopt_edu.doctor import environment_report, format_report

device = fast.setup(seed=0)          # seeds torch, pins threads in fast mode, returns the device to use
print(format_report(environment_report()))
print()
print(fast.describe())
"""),
md(r"""
If a line says **PROBLEM**, follow its `fix:` line (usually `make setup` from the repository root). A GPU is
optional: every notebook runs on a CPU, and notebooks 04 and 05 use a GPU when there is one (not in fast mode).
"""),
md(r"""
## How the interactive panels work

The notebooks contain *panels*: controls (sliders, dropdowns, buttons) next to live plotly figures.
Two kinds of control behave differently, and each panel says which is which:

- **Structural controls** change *what* is trained: normalisation (BN / LN / GN / none), sparsity, distribution,
  optimizer, DST method, model. Changing one **rebuilds the model and restarts** the run. Their sliders only
  fire when you release the handle (`continuous_update=False`), so dragging does not restart ten times.
- **Rate-like controls** (the learning rate) **apply live**, between two training steps, without a restart.
- **Start / Stop / Reset** buttons control a run *while it trains*. In JupyterLab the clicks reach the kernel
  while a cell is still running (the project ships the JupyterLab setting `commsOverSubshells` for that;
  the device check above verifies it). In front ends that cannot do this (Voila, VS Code, Colab) the panel
  trains in a background thread instead and tells you so.

The small panel below has one structural-style control. Drag the slider and release it: the marker moves to the
amplification that Batch Norm applies to a layer at that sparsity (you will derive the curve in notebook 02).
"""),
code(r"""
import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

s = np.linspace(0, 0.99, 200)
fig = go.FigureWidget(layout=dict(template="plotly_white", height=320, margin=dict(t=50, b=40),
                                  xaxis_title="sparsity s", yaxis_title="gradient amplification",
                                  title="Batch Norm amplifies a sparse layer's gradient by 1/sqrt(1 - s)"))
fig.add_scatter(x=s, y=1 / np.sqrt(1 - s), name="1/sqrt(1 - s)")
fig.add_scatter(x=[0.9], y=[1 / np.sqrt(0.1)], mode="markers+text", marker_size=12, name="your choice",
                text=[f"{1 / np.sqrt(0.1):.2f}x"], textposition="top left")
slider = W.FloatSlider(value=0.9, min=0.0, max=0.99, step=0.01, description="sparsity", continuous_update=False)

def on_change(change):
    with fig.batch_update():  # one redraw for both changes
        fig.data[1].x, fig.data[1].y = [change.new], [1 / np.sqrt(1 - change.new)]
        fig.data[1].text = [f"{1 / np.sqrt(1 - change.new):.2f}x"]

slider.observe(on_change, names="value")
W.VBox([slider, fig])
"""),
md(r"""
**Try this.** Move the slider to 0.95 and to 0.97. The paper's three sparsities give 4.47× and 5.77×. Where
does the curve start to blow up, and why can a sparsity of 1.0 never be allowed?

Widget callbacks run Python in the kernel. The cell below sets the slider from code, exactly as a release of
the handle would, so you can check that the callback moved the marker.
"""),
code(r"""
slider.value = 0.95
print(f"marker at s = {fig.data[1].x[0]:.2f}, amplification {fig.data[1].y[0]:.2f}x")
"""),
md(r"""
## Fast mode

Everything the notebooks train has two sizes, written as `fast.pick(full=..., fast=...)`:

- **full** (default): sizes that show the effect clearly; uses the GPU when there is one.
- **fast** (`SPARSEOPT_EDU_FAST=1` in the environment before Jupyter starts): tiny sizes, the CPU, and a pinned
  thread count, so every notebook finishes in under a minute on a 2-core laptop and prints the same numbers every
  run. The automated tests (nbval) run the notebooks this way and compare the cells whose numbers are the point.

To use it yourself: `SPARSEOPT_EDU_FAST=1 jupyter lab` (or `make lab` after `export SPARSEOPT_EDU_FAST=1`).
"""),
code(r"""
steps = fast.pick(full=2000, fast=100)
print(f"fast mode is {'ON' if fast.is_fast() else 'OFF'}: a demo here would train for {steps} steps")
"""),
md(r"""
Cells whose first line is `# NBVAL_CHECK_OUTPUT` print rounded numbers with a verdict and a stated tolerance,
like the one below. The tests compare their text, so they never print raw accuracies to many digits. This one
checks the three amplification factors the paper quotes against the formula.
"""),
code(r"""
# NBVAL_CHECK_OUTPUT
import math

paper = {0.90: 3.2, 0.95: 4.5, 0.97: 5.8}  # "about 3.2x at s = 0.90, 4.5x at 0.95, 5.8x at 0.97"
for s, quoted in paper.items():
    factor = 1 / math.sqrt(1 - s)
    ok = abs(factor - quoted) < 0.05
    print(f"s = {s:.2f}: 1/sqrt(1 - s) = {factor:.2f}, paper quotes {quoted}: within 0.05 {'✓' if ok else '✗'}")
"""),
md(r"""
## Self-check

1. A layer is at 96% sparsity. By how much does Batch Norm amplify its gradients, according to the paper's
   analysis?
2. You drag the *sparsity* slider of a training panel from 0.90 to 0.95. Does the run continue or restart?
   And if you drag the *learning-rate* slider?
3. The course will show that on small problems SparseOpt and the baseline reach the same accuracy. Does that
   contradict the paper?

<details><summary>Answers</summary>

1. 1/√(1 − 0.96) = 1/√0.04 = **5×** (check: `1 / math.sqrt(0.04)`).
2. Sparsity is structural: the panel rebuilds the model and **restarts**. The learning rate is rate-like: it
   **applies live** to the running training.
3. No. The paper measured gains of about one point on CIFAR-100 at 90–97% sparsity over 100+ epochs on GPUs,
   mostly shrinking with longer training. At small scale Batch Norm's scale invariance re-equalises the steps, and the
   difference is within seed noise. Both statements are measurements; the course shows you both.
</details>
"""),
]

save(ROOT / "notebooks" / "00_start_here.ipynb", cells)
