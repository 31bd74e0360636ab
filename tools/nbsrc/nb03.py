import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbb import code, md, save

ROOT = Path(__file__).resolve().parents[2]

cells = [
md(r"""
# 03 · Dynamic sparse training, step by step

**Learning goal.** After this notebook you can describe one SET or RigL topology update (drop the smallest
weights, grow new connections at zero), say why the live count never changes, explain where *different*
neuron sparsities come from, and watch the fan-in spread, the ITOP rate and the gradient skew change at every
update while a network trains.
"""),
md(r"""
## One update by hand ([docs/method.md](../docs/method.md) §4)

Every ΔT steps while t < T_end, each sparse layer drops the floor(f·n_active) live weights with the smallest
|w| and grows as many new connections: **SET** at random, **RigL** where the *dense* gradient (the gradient of
every connection, live or not) is largest. The drop fraction f(t) = (α/2)(1 + cos(πt/T_end)) decays to 0.
Grown weights start at exactly 0, and their optimizer state (momentum) is zeroed. Drop and grow are layer-wide
top-k choices, so some neurons gain weights and others lose them: that is where the per-neuron sparsities sᵢ
of notebook 02 drift apart. (SRigL instead keeps every active neuron at the same fan-in.)

The cell below builds the paper's MLP on digits at 90% sparsity, wraps SGD in `SparseOpt`, attaches RigL with
ΔT = 1, takes **one** training step, and checks the invariants.
"""),
code(r"""
import torch
from sparseopt_edu import diagnostics, fast
from sparseopt_edu.dst import RigL
from sparseopt_edu.models import mlp
from sparseopt_edu.optim import SparseOpt
from sparseopt_edu.sparse import sparsify
from sparseopt_edu.widgets import DSTPanel
from sparseopt_edu.widgets.dst import histogram_cv

device = fast.setup(seed=0)
x, y = diagnostics.default_probe_data(512)
"""),
code(r"""
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
model = mlp(64, 256, 10, norm="bn")
masks = sparsify(model, 0.9, "uniform", dense=["head"], seed=0)
opt = SparseOpt(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), masks)
rigl = RigL(masks, opt, delta_t=1, alpha=0.3, t_end=10, total_steps=10)
before, live_before = masks["fc1"].clone(), masks.live_count("fc1")
torch.nn.functional.cross_entropy(model(x), y).backward()
opt.step(); rigl.step()
grown = masks["fc1"] & ~before
f = rigl.updates[-1]["drop_fraction"]
print(f"drop fraction f(1) = {f:.2f}: dropped {int(f * live_before)} of {live_before} live, "
      f"{rigl.updates[-1]['changed']['fc1']} of them regrown elsewhere")
print(f"live count unchanged: {'✓' if masks.live_count('fc1') == live_before else '✗'}")
print(f"grown weights start at exactly 0: {'✓' if float(model.fc1.weight.detach()[grown].abs().max()) == 0.0 else '✗'}")
print(f"inactive weights exactly 0: {'✓' if max(masks.inactive_max().values()) == 0.0 else '✗'}")
"""),
md(r"""
## Live: watch the topology move while the network trains

The panel trains the MLP on the real 5,000-image MNIST subset with the DST method you pick. As in the cell
above, only the hidden layer fc1 (fan-in 784) is sparse and the head stays dense, so all four plots are of
fc1: its fan-in histogram (live weights per neuron; gray: at the start, red: now); the fan-in heterogeneity of
that same histogram, its coefficient of variation CV = std / mean (the first point is the start); the ITOP rate
(fraction of all connections that have been live at some point); and the skew slope (log |grad| per live
weight on log neuron density, as in notebook 02) of the gradient that triggers each update, that is, of the
mask the network trained with up to that update.

**Try this** (⟳ restarts the run, ⚡ applies live):
- Start with **RigL**, then switch to **SET** and to **SRigL**: which one spreads the fan-ins, which keeps
  them equal? Which explores more connections (ITOP)?
- Make ΔT smaller: more, smaller updates.
- Tick **SparseOpt**: the *corrected* slope is the raw one + 0.5 at every update.
- Pick **static**: no updates at all, nothing moves.
"""),
code(r"""
dst_panel = DSTPanel()
dst_panel
"""),
code(r"""
dst_panel.run()  # trains here; Start / Stop / Reset work while it runs
"""),
code(r"""
# Your run's numbers (the text below gives the range over seeds): fc1's fan-in CV and the raw skew slope.
dst_panel.wait()
u, cv0 = dst_panel.updates, histogram_cv(dst_panel.hist0)
slopes = [r["slope_raw"] for r in u if r["slope_raw"] is not None]
if not u:  # static never updates the mask; any other method: Stop came before its first update
    why = ("static never changes the mask" if dst_panel.state.method == "static" else
           "it was stopped before its first update: press Start, then run this cell again")
    print(f"{dst_panel.state.method}: no topology update in this run ({why})")
else:
    print(f"{dst_panel.state.method}: fc1 fan-in CV {cv0:.2f} at the start, {u[0]['fan_in_cv']:.2f} after update 1, "
          f"{u[-1]['fan_in_cv']:.2f} after update {len(u)}")
    print("raw skew slope: " + (f"{slopes[0]:+.2f} at update 1, {min(slopes[1:]):+.2f} to {max(slopes[1:]):+.2f} "
                                "later" if len(slopes) > 1 else "none to fit (equal fan-ins)"))
"""),
md(r"""
## What you see, and why

- **Fan-ins spread under RigL, not under SET.** The random initial mask gives fc1 the binomial spread of a
  coin flip per weight, a CV of about 0.10. RigL grows where the dense gradient is largest, so it keeps adding
  connections to the same neurons: its first update lifts the CV to 0.28–0.41 and the run ends at 0.30–0.34
  (the CV then eases a little as the drop fraction shrinks, while the red histogram stays far wider than the
  gray one). SET's random growth keeps the binomial spread: 0.10–0.11 throughout. SRigL holds every active
  neuron at the same fan-in by design (CV 0.006: fan-ins of B//n and B//n + 1). Measured in this panel, seeds
  0–2, full and fast mode; the cell above prints your run's values.
- **ITOP rises at each update** and flattens as the drop fraction decays (cosine) to 0 at T_end.
- **The skew slope jumps at the updates, and is mostly positive.** At the first update the mask is still the
  random initial one (SET and RigL give the same value there): −0.80 to +0.21 over seeds 0–2, noisy because the
  initial fan-ins differ by only about ±10% (notebook 02's clean −0.5 needs a 30× density range). At every
  later RigL update it is positive, +0.43 to +1.51. Measured (notebook 05 §6, our extension, not a claim of the
  paper): RigL grows connections where gradients are large, so the neurons that *become* dense are those with
  large gradients (a positive correlation, about +0.2 to +0.5 per update, between a neuron's gradient scale and
  the density it gains). That selection outweighs BN's 1/√(1 − sᵢ), and SparseOpt's +0.5, derived for a mask
  that ignores the gradients, then moves the slope further from 0. SET's later slopes swing from −0.72 to
  +1.37, positive at most updates: its fan-ins stay close together (CV 0.10), and a slope fitted over a
  narrow density range is steep on a weak relation; read it beside the fan-in spread. (Seeds 0–2, full and fast
  mode; the cell above prints your run's.) Either way, each update re-shapes the skew, which is why SparseOpt
  recomputes its per-neuron scales after every mask change.
"""),
code(r"""
# NBVAL_CHECK_OUTPUT
u = dst_panel.updates
print(f"topology updates seen: at least 4: {'✓' if len(u) >= 4 else '✗'}")
print(f"RigL spread fc1's fan-ins (CV at least twice its start): {'✓' if u[-1]['fan_in_cv'] >= 2 * cv0 else '✗'}")
print(f"ITOP never decreases: {'✓' if all(a['itop'] <= b['itop'] for a, b in zip(u, u[1:])) else '✗'}")
print(f"corrected slope = raw + 0.5 at every update: "
      f"{'✓' if all(abs(r['slope_corrected'] - r['slope_raw'] - 0.5) < 1e-6 for r in u) else '✗'}")
"""),
md(r"""
## Self-check

1. A RigL update drops 150 connections in a layer. How many does it grow, and at what value do they start?
2. Why does RigL (but not SET) make neuron sparsities drift apart?
3. What is the ITOP rate, and why does it stop rising towards the end of training?

<details><summary>Answers</summary>

1. 150 (the live count is exact), starting at exactly 0 with zeroed optimizer state; a connection dropped and
   chosen again in the same update keeps its weight.
2. Its growth is a layer-wide top-k on |dense gradient|, which concentrates on neurons with large gradients;
   SET grows uniformly at random, which keeps the binomial spread of a random mask.
3. The fraction of all connections that have been live at least once; the drop fraction decays to 0 at T_end
   (75% of training), so no new connections are explored after that.
</details>

Next: notebook 04, the correction itself.
"""),
]
save(ROOT / "notebooks" / "03_dynamic_sparse_training.ipynb", cells)
