"""``sparseopt-edu train``: one run headless, from flags or ``--config FILE.json``; ``--resume`` continues a run
folder from its checkpoint (``--epochs N`` extends it). Prints one line per epoch, or the History as JSON."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from . import command
from .args import add_threads_flag, set_threads
from .config import check_dataset, config_flags, config_from_args
from .errors import CliError, guarded, raise_interrupt


def fmt(v, pct=False):
    """A metric as the console shows it: a loss to 4 places, an accuracy in percent, a missing value as n/a."""
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}%" if pct else f"{v:.4f}"


def _train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="run folder name under --runs (default: no files written)")
    parser.add_argument("--runs", default="runs", help="parent folder of run folders (default: runs)")
    parser.add_argument("--resume", action="store_true",
                        help="continue runs/<name> from its checkpoint (with --epochs N: extend it to N epochs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run folder of this --name (default: refuse)")
    parser.add_argument("--json", action="store_true", help="print the History as JSON and nothing else")
    add_threads_flag(parser)
    config_flags(parser)


@command("train", configure=_train_args)
@guarded
def train_cmd(args: argparse.Namespace) -> int:
    """Train one model headless (flags or --config FILE.json) and print the metrics per epoch."""
    from ..train import Trainer
    from ..train.runs import check_name

    if args.name is not None:
        check_name(args.name)  # before any work: a name is one folder under --runs
    set_threads(args)
    run_dir = os.path.join(args.runs, args.name) if args.name else None
    callbacks = [] if args.json else [_print_epochs]
    if args.resume:
        if not run_dir:
            raise CliError("--resume needs --name (the run folder to continue)")
        if args.overwrite:
            raise CliError("--resume continues a run, --overwrite replaces it: choose one")
        overrides = {}
        if getattr(args, "config", None):  # compared with the run's config.json, like the flags: never ignored
            given = config_from_args(argparse.Namespace(config=args.config)).to_dict()
            with open(args.config) as fh:
                keys = json.load(fh).keys()
            overrides = {k: given[k] for k in keys if k not in ("run_dir", "resume")}
        overrides.update({k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")})
        trainer = Trainer.resume(run_dir, callbacks=callbacks, **overrides)
        if not args.json and trainer.is_main:
            if trainer.resumed_from is None:
                print(f"no checkpoint yet in {run_dir}: starting it from step 0")
            for change in trainer.history.meta.get("length_changes", [])[-1:]:
                if change["at_step"] == trainer.step:
                    print(f"run length changed at step {change['at_step']}: {change['from']} -> {change['to']} "
                          "(recorded in history.json meta.length_changes)")
    else:
        cfg = config_from_args(args, run_dir=run_dir)
        if run_dir:
            _check_new_run(run_dir, args)
        check_dataset(cfg)
        trainer = Trainer(cfg, callbacks=callbacks)
    from ..train import distributed

    talk = trainer.is_main  # under torchrun only rank 0 prints and writes
    if not args.json and talk:
        ddp = f" ranks={trainer.dist.world_size}" if trainer.dist is not None else ""
        print(f"training {trainer.config.model} on {trainer.config.dataset}: method={trainer.config.method} "
              f"sparseopt={trainer.config.sparseopt} sparsity={trainer.config.sparsity} "
              f"steps={trainer.total_steps} device={trainer.device}{ddp}")
    # SIGTERM (a scheduler or a kill) ends the run like Ctrl-C: the last checkpoint stays, records are written.
    previous = signal.signal(signal.SIGTERM, raise_interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        history = trainer.run()
    except BaseException:
        distributed.shutdown(barrier=False)  # another rank may be inside a collective: do not wait for it
        raise
    else:
        distributed.shutdown()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if args.json and talk:
        print(json.dumps(history.to_dict()))
    elif talk:
        print(f"end: {history.reason}" + (f"; files in {run_dir}" if run_dir else ""))
    if history.reason == "nan" and talk:  # stdout keeps its format (--json too); the hint goes to stderr
        print(f"sparseopt-edu: error: {diverged_hint(trainer.config, trainer.step)}", file=sys.stderr)
    return {"done": 0, "stopped": 0, "nan": 3, "interrupted": 130}.get(history.reason, 1)


def diverged_hint(cfg, step: int) -> str:
    """What to change when a run diverged (its loss became NaN or Inf)."""
    clip = (f"clip gradients harder (--max-grad-norm {cfg.max_grad_norm / 2:g})" if cfg.max_grad_norm
            else "clip gradients (--max-grad-norm 1.0)")
    return (f"the run diverged: the loss became NaN or Inf by step {step} with lr={cfg.lr:g}. Lower the learning "
            f"rate (e.g. --lr {cfg.lr / 10:g}) or {clip}" + ("; a warm-up helps too (--warmup-steps 100)"
                                                              if not cfg.warmup_steps else ""))


def _check_new_run(run_dir: str, args) -> None:
    """Refuse to replace a run folder that holds a run, unless --overwrite; say how to resume it instead."""
    from ..train import runs

    if os.path.isdir(run_dir):
        runs.RunLock(run_dir).acquire().release()  # a live run there: "in use by process N", whatever it holds
    info = runs.existing_run(run_dir)
    if info is None:
        return
    if args.overwrite:
        runs.clear_run(run_dir)  # refused while another process uses the folder
        return
    where = "" if args.runs == "runs" else f" --runs {args.runs}"
    resume = f"sparseopt-edu train --name {args.name}{where} --resume"
    done, planned = info["epochs_done"], info["epochs"]
    if info["reason"] == "done":
        state = f"a finished run ({done} epochs)"
        how = f"extend it with `{resume} --epochs N`"
    else:
        progress = f"{done if done is not None else '?'} of {planned if planned is not None else '?'} epochs"
        state = f"an unfinished run ({progress}, reason {info['reason'] or 'unknown'})"
        how = f"continue it with `{resume}`"
    raise CliError(f"{run_dir} already holds {state}: {how}, choose another --name, or pass --overwrite to "
                   "replace it")


def _print_epochs(event) -> None:
    if event.kind == "epoch":
        d = event.data
        print(f"epoch {d['epoch']:3d}  train loss {fmt(d['train_loss'])}  train acc {fmt(d['train_acc'], True)}"
              f"  test loss {fmt(d['test_loss'])}  test acc {fmt(d['test_acc'], True)}"
              f"  {d['time_s']:.1f}s  {d['images_per_s']:.0f} img/s", flush=True)
    elif event.kind == "topology":
        d = event.data
        slope = "n/a" if d["slope_raw"] is None else f"{d['slope_raw']:+.3f}"
        print(f"  topology update at step {event.step}: itop {d['itop']:.3f}, slope raw {slope}, "
              f"rotation {d['rotation_deg'] or 0:.2f} deg", flush=True)

