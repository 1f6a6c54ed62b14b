"""The plan of a ``minidl train`` run: its options, kept in its checkpoints, and what
``--resume`` may change."""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["PLAN_DEFAULTS", "PlanError", "resolve_plan", "flag"]

# Every option that shapes the numbers of a run, with its default. A resumed run takes the
# ones not given on the command line from its checkpoint, so `--resume` alone continues it.
PLAN_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist-subset", "epochs": 10, "batch_size": 64, "lr": 1e-3,
    "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0, "schedule": "none",
    "augment": False, "grad_clip": None, "seed": 0, "limit": None, "val_split": 0.1,
    "tensorboard": None,   # not a number-shaping option, but a callback the state includes
}

# Schedules planned over the run's epochs: they cannot be stretched to more of them.
_FIXED_LENGTH = {"onecycle": "a one-cycle schedule cannot be stretched",
                 "cosine": "a cosine schedule anneals over its planned epochs and cannot be "
                           "stretched"}


class PlanError(ValueError):
    """A --resume whose options contradict the checkpoint's plan (one line, with the fix)."""


def flag(key: str) -> str:
    """The command-line spelling of a plan key: 'batch_size' -> '--batch-size'."""
    return "--" + key.replace("_", "-")


def _shown(value: Any) -> str:
    return "off" if value is False else "on" if value is True else str(value)


def resolve_plan(args: argparse.Namespace, saved: dict[str, Any] | None,
                 where: str) -> dict[str, Any]:
    """The options of this run: the command line's, else the checkpoint's (``saved``, the
    plan of the run resumed from ``where``), else the defaults. ``schedule_epochs`` is the
    number of epochs the LR schedule is laid out over (the first run's).

    Raises :class:`PlanError` when the command line contradicts ``saved``: a different
    model or option, or more epochs than a one-cycle or cosine schedule covers.
    """
    if saved is not None and saved.get("model") != args.model:
        raise PlanError(f"--resume: {where} holds a {saved.get('model')} run, not "
                        f"{args.model}; give MODEL {saved.get('model')}, or another --out for "
                        f"a new run")
    plan: dict[str, Any] = {"model": args.model}
    differs = []
    for key, default in PLAN_DEFAULTS.items():
        given = getattr(args, key)
        old = saved[key] if saved is not None and key in saved else None
        known = saved is not None and key in saved
        plan[key] = given if given is not None else (old if known else default)
        if known and given is not None and given != old and key != "epochs":
            differs.append(f"{flag(key)} {_shown(given)} (the checkpoint has {_shown(old)})")
    if differs:
        raise PlanError(f"--resume: {', '.join(differs)} differ from the run in {where}; leave "
                        f"them out (a resumed run takes its options from its checkpoint), or "
                        f"give another --out for a new run")
    planned = int(saved.get("schedule_epochs", saved["epochs"])) if saved else plan["epochs"]
    plan["schedule_epochs"] = planned
    if saved is not None and plan["epochs"] != planned and plan["schedule"] in _FIXED_LENGTH:
        raise PlanError(f"--resume: --epochs {plan['epochs']} differs from the {planned} epochs "
                        f"the --schedule {plan['schedule']} of {where} is planned over; "
                        f"{_FIXED_LENGTH[plan['schedule']]}: resume with --epochs {planned} (or "
                        f"leave --epochs out), or give another --out for a new run")
    return plan
