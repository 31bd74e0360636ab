import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbb import code, md, save

ROOT = Path(__file__).resolve().parents[2]

cells = [
md(r"""
# 05 · At scale: the paper's experiment

**Learning goal.** You know exactly which experiment the paper's headline numbers come from (ResNet-20 + RigL on
CIFAR-100 at 90/95/97% sparsity), how large the reported gains are, how to re-run it on a GPU with this library,
and how to read your own results beside the paper's Table 2, including the seed spread. You also see why a tiny
offline version of the same experiment is *not expected* to show a difference.
"""),
md(r"""
## 1. What the paper measured (Table 2)

ResNet-20 (16/32/64 channels, about 0.27 M weights) on CIFAR-100, RigL with an ERK distribution, top-1 test
accuracy, mean ± std over seeds, for 100, 200, 300 and 500 epochs. The numbers live in `sparseopt_edu.paper`.
"""),
code(r"""
from pathlib import Path
from sparseopt_edu import fast, paper, viz

fast.setup(seed=0)
for s in paper.TABLE2_SPARSITIES:
    gains = "  ".join(f"{ep} ep {paper.table2_gain(s, ep):+.2f}" for ep in paper.TABLE2_EPOCHS)
    print(f"{s:.0%}: SparseOpt - baseline = {gains}   (points)")
viz.table2_figure(epochs=100, title="The paper's Table 2 at 100 epochs (error bars: std over seeds)")
"""),
md(r"""
Read the figure carefully: the gain is **about 0.7–1.4 points at 100 epochs**, comparable to one to three
standard deviations of the seed spread, largest at the highest sparsity, and it tends to **shrink with longer
training** (at 95%: 1.00 points at 100 epochs, 0.29 at 500, inside the spread; at 97% it stays above 1 point). On ImageNet (ResNet-50, 90 epochs, Table 1) the
gains are 0.5–1.3 points. This is a real but modest effect, measured over several seeds on GPUs.

**The recipe** (the paper does not publish one; these are RigL's CIFAR conventions, [docs/method.md](../docs/method.md) §3): batch 128,
SGD with Nesterov momentum 0.9, lr 0.1 with cosine decay, weight decay 5e-4, random crop + flip, ERK, RigL with
ΔT = 100 steps, α = 0.3 (cosine-decayed), T_end = 75% of training, regrown weights start at 0 with zeroed
optimizer state, RigL grows from the *raw* gradient.
"""),
md(r"""
## 2. How to run it yourself (GPU, CIFAR-100)

Download CIFAR-100 once (needs internet), then run the grid: 2 variants × 3 sparsities × seeds. On an H100 one
100-epoch ResNet-20 run takes roughly 5 minutes with the standard loop (about 3 s per epoch), less with CUDA graphs.

```bash
sparseopt-edu train --dataset cifar100 --download --data-root data --epochs 1 --n-train 128   # downloads
sparseopt-edu reproduce table2 --epochs 100 --seeds 3 --data-root data                        # 18 runs
```

Results land in `runs/table2-cifar100-100ep/` (one folder per run with `config.json` and `history.json`, plus
`results.md` with the table beside the paper's). Without the data, `--dataset shapes` runs the same harness on
an offline stand-in; its numbers are *not* comparable to the paper's.
"""),
md(r"""
## 3. Your saved runs beside the paper

The next cell looks for saved runs under `runs/` at the repository root and, for CIFAR-100 ResNet-20 RigL runs,
plots them (diamonds, with the seed spread) beside the paper's bars. It prints what it found; when nothing is
there, nothing is plotted and section 4 runs a tiny offline version instead.
"""),
code(r"""
root = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
saved = [r for r in viz.load_runs(root / "runs")
         if r["config"].get("model") == "resnet20" and r["config"].get("method") == "rigl"]
cifar = [r for r in saved if r["config"].get("dataset") == "cifar100"]
print(f"saved ResNet-20 RigL runs: {len(saved)} ({len(cifar)} on CIFAR-100)")
ours = []
for (sp, so, ep), hists in viz.group_runs(cifar, ("sparsity", "sparseopt", "epochs")).items():
    accs = [100 * h["test_acc"][-1] for h in hists if h.get("test_acc") and h["test_acc"][-1] is not None]
    if accs:
        ours.append({"sparsity": sp, "method": "sparseopt" if so else "baseline", "values": accs,
                     "label": f"ours: {'sparseopt' if so else 'baseline'}, {ep} ep ({len(accs)} seeds)"})
        print(f"  {sp:.0%} {'SparseOpt' if so else 'baseline '} {ep} ep: " + ", ".join(f"{a:.2f}" for a in accs))
"""),
code(r"""
if ours:
    epochs = min(paper.TABLE2_EPOCHS, key=lambda e: abs(e - max(r["config"]["epochs"] for r in cifar)))
    display(viz.table2_figure(ours, epochs=epochs))
    groups = {f"{'SparseOpt' if so else 'baseline'} {sp:.0%}": h
              for (sp, so), h in viz.group_runs(cifar, ("sparsity", "sparseopt")).items()}
    display(viz.convergence_curves(groups, "test_acc", yaxis_title="test accuracy (fraction)"))
else:
    print("No saved CIFAR-100 runs: run section 2 on a GPU, or see the tiny offline version below.")
"""),
md(r"""
When you have runs, judge them the way the paper's numbers must be judged: a difference between the two
variants means something only if it is larger than the spread over seeds (the diamonds' error bars).

## 4. A tiny offline version (and why it shows no difference)

Without CIFAR-100 (and always in fast mode) we run the *same harness* small: ResNet-20 with RigL at 90% ERK,
baseline vs SparseOpt, 2 seeds each, on scikit-learn's real handwritten digits (8×8 in fast mode, upsampled to
16×16 otherwise), a few hundred steps at most, ΔT shortened so that several topology updates happen. Measured
on our 2-core CPU: about 10–40 s in fast mode and about 7 minutes in full mode (4 runs of 300 steps), depending
on the machine's load.
"""),
code(r"""
from sparseopt_edu.train import TrainConfig, grid

base = TrainConfig(
    model="resnet20", dataset="digits", norm="bn", distribution="erk", sparsity=0.9, method="rigl",
    data_kwargs=dict(size=fast.pick(full=16, fast=8), channels=fast.pick(full=3, fast=1)),
    batch_size=fast.pick(full=64, fast=32), steps=fast.pick(full=300, fast=60),
    n_train=fast.pick(full=None, fast=320), delta_t=fast.pick(full=50, fast=10),
    lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
    device="cpu" if fast.is_fast() else "auto", progress=False,
)
jobs = grid.plan(base, ["rigl", "rigl+sparseopt"], sparsities=[0.9], seeds=[0, 1])
rows = grid.run(jobs)
print(grid.markdown_table(grid.summarize(rows)))
"""),
code(r"""
race = {"baseline": [r["history"] for r in rows if not r["sparseopt"]],
        "SparseOpt": [r["history"] for r in rows if r["sparseopt"]]}
display(viz.convergence_curves(race, "train_loss", title="Tiny offline race: train loss (band = min-max over 2 seeds)",
                               yaxis_title="train loss"))
viz.convergence_curves(race, "test_acc", title="Tiny offline race: test accuracy", yaxis_title="test accuracy")
"""),
code(r"""
# NBVAL_CHECK_OUTPUT
final = {k: [h["test_acc"][-1] for h in v] for k, v in race.items()}
learned = all(h["train_loss"][-1] < h["train_loss"][0] for v in race.values() for h in v)
updates = min(len(h["topology"]) for v in race.values() for h in v)
gap = 100 * (sum(final["SparseOpt"]) / 2 - sum(final["baseline"]) / 2)
print(f"all 4 runs learned (final train loss below the first epoch's) {'✓' if learned else '✗'}")
print(f"RigL changed the topology during every run (at least 2 updates) {'✓' if updates >= 2 else '✗'}")
print(f"SparseOpt - baseline test accuracy within 10 points (no difference expected here) "
      f"{'✓' if abs(gap) < 10 else '✗'}")
"""),
md(r"""
**What this does and does not show.** It shows that the harness runs end to end: RigL changes the topology, both
variants learn, and you can read the two curves with their seed bands. It does **not** show a SparseOpt gain, and
none is expected:

- The paper's gain is about one point after 100 CIFAR-100 epochs; here a few hundred steps on a small, easy
  dataset (about 96-97% test accuracy) finish far from that regime. The test set has 360 images, so one image is
  0.28 points and a one-point gap is three or four images.
- Batch Norm is scale invariant: a neuron whose gradient is amplified grows its weight norm, and its *relative*
  step falls back in line within a step or two (notebook 04). On an MLP on real MNIST (12–15 epochs, 2–3 seeds,
  90–99% sparsity, static or RigL) and on a GPU ResNet-20 at 95% with RigL for 15 epochs of 45,000 synthetic
  images, SparseOpt and the baseline ended **within seed noise** (e.g. test accuracy 66.8 / 65.8 vs 65.9 / 66.0;
  [docs/method.md](../docs/method.md) §4b). The raw skew is real; whether it costs accuracy depends on scale, length and data.

So the honest summary of the course: the mechanism is unambiguous, the correction removes it exactly, and the
accuracy benefit is modest and shows up only in the regime the paper measured. Run section 2 on a GPU to test
it yourself.

**Try this.** In full mode, change `sparsity=0.9` to `0.97` and `seeds=[0, 1]` to `[0, 1, 2]`. Is the gap now
larger than the band? Then try `optimizer="adam"` (notebook 06 predicts an even smaller gap).
"""),
md(r"""
## Self-check

1. At 97% sparsity and 100 epochs, what is the paper's gain from SparseOpt? Is it larger than the two standard
   deviations?
2. Your own 100-epoch CIFAR-100 run shows SparseOpt 0.3 points better at 95% with one seed. What can you
   conclude?
3. Why does the tiny offline race not test the paper's claim?

<details><summary>Answers</summary>

1. 53.95 − 52.53 = **1.42 points**; the stds are 0.40 and 0.35, so yes, it is several standard deviations
   (check: `paper.table2_gain(0.97, 100)`).
2. Nothing yet: the paper's seed std at 95% is 0.49–0.73 points. Run at least 3 seeds per variant and compare
   the difference with the spread.
3. It is far outside the regime the paper measured (CIFAR-100, 100+ epochs, GPU): too short, too small and too
   easy, and two seeds differ by more than the effect. At this scale BN's scale invariance re-equalises the
   steps and no difference is expected ([docs/method.md](../docs/method.md) §4b).
</details>
"""),
]

save(ROOT / "notebooks" / "05_at_scale.ipynb", cells)
