import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbb import code, md, save

ROOT = Path(__file__).resolve().parents[2]

cells = [
md(r"""
# 01 · Sparse networks: masks, sparsity, and how layers share the budget

**Learning goal.** You can say what a mask is and how it is enforced during training, convert between sparsity
and density, state the uniform / ER / ERK rules for splitting a global budget across layers (with formulas), and
read a per-layer density chart and a fan-in histogram of a ResNet. These are the quantities the rest of the course
measures against: the paper's effect depends on the **per-neuron** density.
"""),
md(r"""
## 1. A mask is a boolean tensor next to the weight

`sparsify(model, sparsity, distribution)` picks which weights of every `nn.Linear` / `nn.Conv2d` stay alive. It
registers a boolean **`weight_mask` buffer** beside each masked weight and sets the inactive weights to **exactly
0**. The weight stays an ordinary `nn.Parameter`, so the forward pass is unchanged: a zero weight contributes
nothing.

Backward still produces a *dense* gradient (RigL uses it to decide where to grow). Before the optimizer step that
gradient is **multiplied by the mask**, so an inactive weight never moves. `SparseOpt` does that itself; for a
plain torch optimizer, `masks.attach(optimizer)` installs it as a step pre-hook.
"""),
code(r"""
import torch
from torch import nn
from sparseopt_edu import fast
from sparseopt_edu.sparse import sparsify

fast.setup(seed=0)
layer = nn.Sequential(nn.Linear(6, 4))
masks = sparsify(layer, 0.5, "uniform", seed=0)   # keep half of the 24 weights
print(layer[0].weight_mask.int())                  # the buffer: 1 = live, 0 = inactive
print(layer[0].weight.data.round(decimals=2) + 0.0)  # inactive weights are exactly 0
"""),
code(r"""
opt = torch.optim.SGD(layer.parameters(), lr=0.5)
masks.attach(opt)                                   # multiply .grad by the mask before every step
for _ in range(3):
    opt.zero_grad()
    layer(torch.randn(16, 6)).pow(2).mean().backward()
    dense_grad_nonzero = int((layer[0].weight.grad != 0).sum())   # backward: dense gradient
    opt.step()
print(f"non-zero gradient entries after backward: {dense_grad_nonzero} of 24 (dense)")
print(f"max |inactive weight| after 3 steps: {masks.inactive_max()['weight']}")
"""),
md(r"""
## 2. Sparsity, density, neurons, fan-in

- **Sparsity** s = fraction of weights that are zero. The course always says *sparsity*; **density** d = 1 − s
  is the fraction alive, used only where it reads better (and always named).
- A **neuron** is an output row of a Linear weight (shape `out × in`) or an output channel of a Conv2d weight
  (`out × in × kh × kw`). Its **fan-in** is the number of weights feeding it: `in`, or `in·kh·kw`.
- Neuron *i* keeps **live_i** of its fan-in weights: its own density is dᵢ = liveᵢ / fan-in. Batch Norm's
  amplification (notebook 02) is 1/√dᵢ, per neuron, so the spread of dᵢ *inside* a layer is what makes the
  gradient skewed rather than merely scaled.
"""),
md(r"""
## 3. Sharing a global budget across layers

A global sparsity S fixes the total number of live weights, (1 − S)·N with N = Σ_l N_l over the masked layers.
Three standard rules decide how each layer l (N_l weights, shape n_out × n_in × kh × kw) gets its share:

| rule | density of layer l |
|---|---|
| **uniform** | d_l = 1 − S for every masked layer |
| **ER** (Erdős–Rényi) | d_l = ε · (n_in + n_out) / (n_in · n_out) |
| **ERK** (ER-Kernel) | d_l = ε · (n_out + n_in + kh + kw) / (n_out · n_in · kh · kw) |

For ER and ERK the scale ε solves Σ_l d_l N_l = (1 − S) N. Small layers get high density, big layers low.
If a layer would get d_l > 1, it is made **dense** (d_l = 1), taken out, and ε is solved again for the remaining
layers; this repeats until no layer exceeds 1 (the *dense-capacity loop*). The float densities are then rounded
to integer counts so that the **total live count is exactly round((1 − S)·N)**.

"Uniform" means *every masked layer* at the same sparsity. RigL's convention of keeping the first layer dense is
expressed with `dense=["conv1"]`, which leaves that layer out of the masks (the global sparsity is then over
the masked layers only). ERK is the paper's (and RigL's) default.
"""),
code(r"""
from sparseopt_edu.models import resnet20
from sparseopt_edu import viz

model = resnet20(num_classes=100)
masks = sparsify(model, 0.9, "erk", seed=0)
masks            # the repr is a table: one row per masked layer
"""),
md(r"""
Note the pattern: the first convolution (3 input channels, only 432 weights) stays almost dense, the 64-channel
convolutions of the last stage are about 94% sparse, and the classifier `fc` sits in between. ERK spends the
budget where weights are scarce.

## 4. Explore: per-layer density and fan-in

The panel draws the density of every masked layer of the model for the three rules at once (bars), and the
fan-in histogram of one layer for the rule you choose: how many neurons keep k live incoming weights. All three
controls are structural, but nothing trains here: a change only rebuilds the masks and redraws.
"""),
code(r"""
import ipywidgets as W
import plotly.graph_objects as go
from sparseopt_edu.models import resnet18

MODELS = {"ResNet-20 (CIFAR-100)": lambda: resnet20(num_classes=100),
          "ResNet-18 (CIFAR stem)": lambda: resnet18(num_classes=100)}
dist = W.Dropdown(options=["uniform", "er", "erk"], value="erk", description="distribution")
sparsity = W.FloatSlider(value=0.9, min=0.5, max=0.99, step=0.01, description="sparsity",
                         continuous_update=False, readout_format=".2f")
arch = W.Dropdown(options=list(MODELS), description="model")
layer_pick = W.Dropdown(options=list(masks.names), value="layer3.0.conv2", description="layer")
bars = go.FigureWidget(viz.density_bars(viz.layer_shapes(model), 0.9, highlight="layer3.0.conv2"))
hist = go.FigureWidget(viz.fan_in_histogram(masks, "layer3.0.conv2"))
table = W.Output(layout=dict(max_height="260px", overflow="auto"))
"""),
code(r"""
state = {"model": model, "masks": masks}

def redraw(change=None):
    if change is not None and change.owner is arch:        # new architecture: new layer list
        state["model"] = MODELS[arch.value]()
        names = list(viz.layer_shapes(state["model"]))
        layer_pick.unobserve(redraw, names="value")
        layer_pick.options, layer_pick.value = names, names[len(names) // 2]
        layer_pick.observe(redraw, names="value")
    else:
        state["masks"].remove()                             # unmask, so sparsify() may mask it again
    state["masks"] = sparsify(state["model"], sparsity.value, dist.value, seed=0)
    viz.refresh(bars, viz.density_bars(viz.layer_shapes(state["model"]), sparsity.value, highlight=layer_pick.value))
    viz.refresh(hist, viz.fan_in_histogram(state["masks"], layer_pick.value))
    table.clear_output()
    with table:
        print(state["masks"])

for control in (dist, sparsity, arch, layer_pick):
    control.observe(redraw, names="value")
redraw()
W.VBox([W.HBox([arch, dist]), W.HBox([sparsity, layer_pick]), bars, hist, table])
"""),
md(r"""
**Try this.**
- Switch the distribution between *uniform*, *er* and *erk* at sparsity 0.90 and watch `conv1` and `fc`. Which
  rule starves the first layer, and why is that a bad idea for a layer with only 3 input channels?
- Lower the sparsity to 0.60 with *erk*: `conv1`, all of stage 1 and `fc` hit density 1 (the dense-capacity loop at work).
- Pick `layer3.0.conv2` and raise the sparsity from 0.90 to 0.98: the histogram widens *relative to its mean*.
  A random mask gives each neuron a Binomial(fan-in, d) number of live weights, whose relative spread is
  √((1 − d)/(d · fan-in)). That spread is small at initialisation; notebook 03 shows RigL making it large.
- Switch the model to ResNet-18 (11 M weights; a redraw takes a few seconds).

The next cell drives the panel from code, like a user would (it checks that the callbacks work).
"""),
code(r"""
dist.value = "uniform"
sparsity.value = 0.95
print(f"{dist.value} at {sparsity.value:.2f}: {layer_pick.value} keeps "
      f"{state['masks'].live_count(layer_pick.value)} of {state['masks'].numel(layer_pick.value)} weights")
dist.value, sparsity.value = "erk", 0.9
"""),
md(r"""
## 5. The dense-capacity loop, and RigL's dense first layer

At lower sparsity ERK wants more than 100% density for the small layers; they become dense and the rest share
what is left. With `uniform`, RigL's convention keeps the first layer dense through `dense=`.
"""),
code(r"""
from sparseopt_edu.sparse import layer_densities

shapes = viz.layer_shapes(resnet20(num_classes=100))
for S in (0.5, 0.7, 0.8, 0.9):
    d = layer_densities(shapes, S, "erk")
    dense_layers = [n for n, v in d.items() if v >= 1.0]
    print(f"ERK at S = {S:.1f}: made dense -> {dense_layers or 'none'}")
rigl_uniform = sparsify(resnet20(num_classes=100), 0.9, "uniform", dense=["conv1"], seed=0)
print(f"uniform with dense=['conv1']: {len(rigl_uniform)} masked layers, conv1 masked? {'conv1' in rigl_uniform}")
"""),
md(r"""
## 6. Facts this notebook pins (checked by the tests)

Whatever the rule, the total number of live weights is exact, and the ERK split of a ResNet-20 is a fixed
function of the layer shapes. The fan-in spread of a random mask matches the Binomial prediction.
"""),
code(r"""
# NBVAL_CHECK_OUTPUT
import math

for S in (0.8, 0.9, 0.95):
    for rule in ("uniform", "er", "erk"):
        m = sparsify(resnet20(num_classes=100), S, rule, seed=0)
        ok = m.live_count() == round((1 - S) * m.numel())
        print(f"S={S:.2f} {rule:<7}: live {m.live_count():>6} = round((1-S)N) {'✓' if ok else '✗'}")
d = layer_densities(shapes, 0.9, "erk")
print("ERK densities at S=0.90:", {n: round(d[n], 3) for n in ("conv1", "layer1.0.conv1", "layer2.0.conv1",
                                                                "layer2.0.conv2", "layer3.0.conv2", "fc")})
m = sparsify(resnet20(num_classes=100), 0.9, "erk", seed=0)
live, fan = m.neuron_live("layer3.0.conv2").float(), m.fan_in("layer3.0.conv2")
dens = live.mean() / fan
theory, cv = math.sqrt((1 - dens) / (dens * fan)), float(live.std() / live.mean())
print(f"fan-in spread of layer3.0.conv2: Binomial theory {theory:.2f}; measured within 30% "
      f"{'✓' if abs(cv - theory) < 0.3 * theory else '✗'}")
"""),
md(r"""
## Self-check

1. A ResNet-20 has N = 274,096 masked weights. At global sparsity 0.95, how many stay alive?
2. Under ERK, which gets the higher density: a 16×16×3×3 convolution or a 64×64×3×3 one? By roughly what factor?
3. Why does the paper's effect depend on the *per-neuron* density and not only on the layer's sparsity?

<details><summary>Answers</summary>

1. round(0.05 × 274,096) = **13,705** (check: `sparsify(resnet20(num_classes=100), 0.95).live_count()`).
2. The 16-channel one. ERK's raw density is (16+16+3+3)/(16·16·9) = 0.0165 vs (64+64+3+3)/(64·64·9) = 0.00363,
   a factor of about **4.5** (the table above: 0.284 vs 0.063 at S = 0.9).
3. Batch Norm divides each neuron's gradient by that neuron's own σᵢ ∝ √dᵢ. Neurons of one layer keep different
   numbers of weights, so they get different factors: the gradient is rotated, not just rescaled.
</details>
"""),
]

save(ROOT / "notebooks" / "01_sparse_networks.ipynb", cells)
