"""One dataclass holds a whole training run (nanoGPT-style): what to build, how to train, where to write.

Validated on construction, so a bad value fails before any data is loaded, with a message that names the
value and the fix. ``to_json`` / ``from_json`` / ``from_dict`` round-trip exactly (tuples come back as tuples).
"""
from __future__ import annotations

import difflib
import inspect
import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields

from ..data import DATASETS
from ..dst import METHODS as DST_METHODS
from ..models import MODELS, NORMS
from ..optim import SCOPES
from ..sparse.distributions import DISTRIBUTIONS as SPARSE_DISTRIBUTIONS
from ..sparse.distributions import as_number
from .json_source import json_text

METHODS = ("dense", *DST_METHODS)  # dense: no masks; the rest is the DST registry (dst/registry.py)
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear")
DISTRIBUTIONS = tuple(SPARSE_DISTRIBUTIONS)  # the names of the registry (sparse/distributions.py)
AUTO_BOOL = ("auto", True, False)

# The allowed values of the fields that take a name: validate() checks them, and each field carries its entry
# in its metadata (the CLI lists them in --help).
CHOICES = {
    "model": MODELS, "dataset": DATASETS, "norm": NORMS, "method": METHODS, "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES, "distribution": DISTRIBUTIONS, "grow_from": ("raw", "corrected"), "scope": SCOPES,
    "skew_every": ("update", "never"), "init": ("dense", "sparse"), "ddp_grad_dtype": ("fp32", "bf16"),
    **{name: AUTO_BOOL for name in ("amp", "channels_last", "cuda_graphs", "progress", "sync_bn")},
}


def option(default=MISSING, *, help: str, factory=MISSING, choices=None, metavar: str | None = None,
           flag: bool = True):
    """A TrainConfig field that says what the CLI needs to offer it as a flag (cli/config.py reads only this and
    the field's type): its --help sentence, its allowed values (validate() checks them, --help lists them), the
    metavar of its value, and ``flag=False`` for a field the CLI sets itself."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if metavar is not None:
        meta["metavar"] = metavar
    if not flag:
        meta["flag"] = False
    return field(default=default, default_factory=factory, metadata=meta)


@dataclass
class TrainConfig:
    # what to build
    model: str = option("mlp", choices=CHOICES["model"],
                        help="network to build (mlp: Linear-norm-ReLU layers; resnetNN: CIFAR-style ResNet)")
    dataset: str = option("digits", choices=CHOICES["dataset"],
                          help="data to train on (digits, mnist_subset, shapes, fake need no download)")
    norm: str = option("bn", choices=CHOICES["norm"],
                       help="normalisation after each layer: bn BatchNorm, ln LayerNorm, gn GroupNorm, none")
    hidden: int = option(256, help="MLP hidden width (mlp only)")
    depth: int = option(1, help="number of MLP hidden layers (mlp only)")
    # sparsity and DST
    sparsity: float = option(0.9,
                             help="fraction of weights that are zero, in [0, 1) (ignored by --method dense)")
    distribution: str = option("erk", choices=CHOICES["distribution"],
                               help="how the sparsity is shared among layers: erk, er (Erdos-Renyi), uniform")
    dense_layers: tuple = option((), help="layers kept dense, comma-separated module names (e.g. fc1,head)")
    method: str = option(
        "rigl", choices=CHOICES["method"],
        help="dynamic sparse training: dense (no mask), static (fixed mask), set, rigl, srigl")
    sparseopt: bool = option(
        True,
        help="wrap the optimizer in SparseOpt (the per-neuron correction); --no-sparseopt: masked baseline")
    scope: str = option("gradient", choices=CHOICES["scope"],
                        help="what SparseOpt's per-neuron factor scales: the gradient (paper) or the update")
    # optimisation
    optimizer: str = option("sgd", choices=CHOICES["optimizer"], help="inner optimizer")
    lr: float = option(0.1, help="peak learning rate (after warm-up)")
    momentum: float = option(0.9, help="SGD momentum (Adam and AdamW ignore it)")
    nesterov: bool = option(True, help="Nesterov momentum (SGD)")
    weight_decay: float = option(5e-4, help="weight decay (L2 for SGD/Adam, decoupled for AdamW)")
    schedule: str = option("cosine", choices=CHOICES["schedule"], help="learning-rate schedule over the run")
    warmup_steps: int = option(0, help="linear learning-rate warm-up, in steps")
    label_smoothing: float = option(0.0, help="label smoothing of the cross-entropy, in [0, 1)")
    batch_size: int = option(128, help="training batch size")
    epochs: int = option(10, help="training epochs (--steps overrides it)")
    steps: int | None = option(
        None, help="train this many optimizer steps instead of --epochs (default: use --epochs)")
    delta_t: int = option(100, help="steps between topology updates (DST methods)")
    alpha: float = option(
        0.3, help="initial drop fraction of a topology update, decayed by cosine to 0 at --t-end")
    t_end: float = option(0.75, metavar="FRACTION",
                          help="when topology updates stop, as a fraction of training in (0, 1]")  # RigL's 0.75
    t_end_steps: int | None = option(
        None, help="when topology updates stop, as a step count (default: use --t-end)")
    grow_from: str = option(
        "raw", choices=CHOICES["grow_from"],
        help="rank growth candidates by the raw or the SparseOpt-corrected gradient (RigL, SRigL)")
    # data and run
    n_train: int | None = option(None, help="use only the first N training examples (default: all)")
    n_test: int | None = option(None, help="use only the first N test examples (default: all)")
    seed: int = option(0, help="random seed (weights, masks, data order)")
    device: str = option("auto", metavar="auto|cpu|cuda[:N]",
                         help="auto (cuda if available, else cpu), cpu, or cuda[:N]")
    amp: object = option("auto", choices=CHOICES["amp"],
                         help="bf16 autocast on CUDA (auto: on a GPU, off on the CPU)")
    channels_last: object = option("auto", choices=CHOICES["channels_last"],
                                   help="channels-last memory format for convolutions (auto: on a GPU)")
    compile: bool = option(False, help="torch.compile the model")
    cuda_graphs: object = option(
        "auto", choices=CHOICES["cuda_graphs"],
        help="capture the training step in a CUDA graph (auto: on a GPU when the run allows it)")
    eval_every_epochs: int = option(1, help="evaluate on the test set every N epochs (and after the last)")
    skew_every: str = option("update", choices=CHOICES["skew_every"],
                             help="measure the gradient-skew metrics at every topology update, or never")
    run_dir: str | None = option(None, flag=False, help="folder the run writes to (the CLI's --runs/--name)")
    checkpoint_every_epochs: int = option(1, help="write checkpoint.pt every N epochs (with --name)")
    # additions beyond the first contract (docs/TRAINER_API.md lists them)
    log_every: int = option(10, help="record the training loss every N steps")
    resume: bool = option(False, flag=False,
                          help="continue the run in run_dir from its checkpoint (the CLI's --resume)")
    progress: object = option("auto", choices=CHOICES["progress"],
                              help="show a progress bar (auto: on a terminal)")
    data_root: str = option("data", metavar="DIR", help="folder holding downloaded data sets")
    download: bool = option(False, help="let torchvision download cifar10/cifar100/mnist into --data-root")
    data_kwargs: dict = option(
        factory=dict, help="options passed to the data set's builder, as JSON (e.g. '{\"size\": 16}')")
    init: str = option("dense", choices=CHOICES["init"],
                       help="weight init: dense (the usual), or sparse (scaled to each neuron's live fan-in)")
    max_grad_norm: float | None = option(None, help="clip the gradient norm to X (default: no clipping)")
    sync_bn: object = option(
        "auto", choices=CHOICES["sync_bn"],
        help="under torchrun: SyncBatchNorm (auto: on CUDA), else per-rank BatchNorm statistics")
    ddp_grad_dtype: str = option("fp32", choices=CHOICES["ddp_grad_dtype"],
                                 help="under torchrun: all-reduce gradients in fp32, or compressed to bf16")
    def __post_init__(self):
        for f in fields(self):  # a numpy scalar or a 0-d tensor is taken as the number it holds (JSON-safe)
            value = getattr(self, f.name)
            if not isinstance(value, (str, bool, int, float, type(None), tuple, list, dict)):
                number = as_number(value)
                if number is not None:
                    setattr(self, f.name, number)
        if isinstance(self.dense_layers, str):  # "fc1" or "fc1,fc2" (as the CLI flag), not ('f', 'c', '1')
            self.dense_layers = tuple(x.strip() for x in self.dense_layers.split(",") if x.strip())
        elif isinstance(self.dense_layers, (list, tuple)):
            self.dense_layers = tuple(self.dense_layers)
        elif self.dense_layers is None:
            self.dense_layers = ()
        else:
            raise ValueError(f"dense_layers must be a list of module names (e.g. ['fc1']), got {self.dense_layers!r}")
        if self.data_kwargs is None:
            self.data_kwargs = {}
        if not isinstance(self.data_kwargs, dict):
            raise ValueError(f"data_kwargs must be a dict of the dataset's options (e.g. {{'size': 16}}), got "
                             f"{self.data_kwargs!r}")
        self.data_kwargs = dict(self.data_kwargs)
        if isinstance(self.t_end, int) and not isinstance(self.t_end, bool) and self.t_end in (0, 1):
            self.t_end = float(self.t_end)  # JSON's 1 is the fraction 1.0: steps have their own field
        self.validate()

    # ----- validation -------------------------------------------------------------------------------------
    def validate(self) -> None:
        def choice(name, options):
            v = getattr(self, name)
            if v not in options:
                raise ValueError(f"{name} must be one of {', '.join(map(str, options))}, got {v!r}")

        def integer(name, lo, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}{' or None' if allow_none else ''}, got {v!r}")

        def number(name, lo, hi, lo_open=False, hi_open=False):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
                left, right = "(" if lo_open else "[", ")" if hi_open else "]"
                raise ValueError(f"{name} must be in {left}{lo}, {hi}{right}, got {v!r}")

        for name, options in CHOICES.items():
            choice(name, options)
        for name in ("sparseopt", "nesterov", "compile", "resume", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")  # noqa: TRY004 (config errors are ValueErrors)
        integer("hidden", 1)
        integer("depth", 1)
        integer("batch_size", 1)
        integer("epochs", 1)
        integer("steps", 1, allow_none=True)
        integer("delta_t", 1)
        integer("warmup_steps", 0)
        integer("n_train", 1, allow_none=True)
        integer("n_test", 1, allow_none=True)
        integer("seed", 0)
        integer("eval_every_epochs", 1)
        integer("checkpoint_every_epochs", 1)
        integer("log_every", 1)
        number("sparsity", 0.0, 1.0, hi_open=True)
        number("lr", 0.0, 1e6, lo_open=True)
        number("momentum", 0.0, 1.0, hi_open=True)
        number("weight_decay", 0.0, 1e6)
        number("label_smoothing", 0.0, 1.0, hi_open=True)
        number("alpha", 0.0, 1.0)
        if isinstance(self.t_end, (int, float)) and not isinstance(self.t_end, bool) and self.t_end > 1:
            steps = int(self.t_end) if float(self.t_end).is_integer() else "N"
            raise ValueError(f"t_end is a fraction of training in (0, 1], got {self.t_end}: for a step count use "
                             f"t_end_steps={steps} (--t-end-steps {steps})")
        number("t_end", 0.0, 1.0, lo_open=True)
        integer("t_end_steps", 1, allow_none=True)
        self._check_data_kwargs()
        if self.max_grad_norm is not None:
            number("max_grad_norm", 0.0, math.inf, lo_open=True)
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        # method='dense' ignores sparsity (so one config switches by one field); hidden/depth: MLP only
        if self.method != "dense" and self.sparsity == 0.0:
            raise ValueError(f"method={self.method!r} needs sparsity > 0 (use method='dense' for a dense run)")
        if not all(isinstance(d, str) for d in self.dense_layers):
            raise ValueError(f"dense_layers must be module names (strings), got {self.dense_layers!r}")
        if self.run_dir is not None and not isinstance(self.run_dir, str):
            raise ValueError(f"run_dir must be a path string or None, got {self.run_dir!r}")
        if self.resume and self.run_dir is None:
            raise ValueError("resume=True needs run_dir (the folder holding checkpoint.pt)")

    def _check_data_kwargs(self) -> None:
        """Options the dataset's loader does not take fail here, before any work (not as a TypeError inside it)."""
        from .. import data

        params = inspect.signature(getattr(data, self.dataset)).parameters
        allowed = [n for n, p in params.items() if n not in ("root", "download")
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in self.data_kwargs if k not in allowed]
        if unknown:
            fix = {"root": " (use data_root)", "download": " (use download)"}
            raise ValueError(
                f"data_kwargs {{{', '.join(repr(k) + fix.get(k, '') for k in unknown)}}}: not an option of dataset "
                f"{self.dataset!r}, which takes {', '.join(allowed) or 'no options'}")

    # ----- (de)serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["dense_layers"] = list(self.dense_layers)
        return d

    def to_json(self, path=None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from .runs import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object (dict), got {type(d).__name__}")  # noqa: TRY004
        names = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, names, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown config field(s): {', '.join(hints)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text_or_path: str) -> TrainConfig:
        """From JSON text, or from the path of a .json file (``json_source.json_text`` tells which)."""
        text = json_text(text_or_path)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config is not valid JSON: {e}") from e
        return cls.from_dict(d)

    def replace(self, **changes) -> TrainConfig:
        d = self.to_dict()
        d.update(changes)
        return TrainConfig.from_dict(d)


# One line per field, what it means: the fields' help metadata as a table (the CLI's --help text;
# tests/test_cli_help.py checks that none is missing).
HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
