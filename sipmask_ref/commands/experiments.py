"""The experiment commands: `reproduce` (paper Tables 2-5), `leak` (§3.3 measured on Table 4's runs) and
`compare` (Table 1) (cli.py registers them).

cmd_reproduce     reproduce.reproduce with the command's options, then its tables as Markdown
cmd_leak          leak_table.leak_table over the 1x1 / 2x2 checkpoints of a reproduction, then its table
cmd_compare       compare.compare with the command's options (--lr NAME=LR parsed by _learning_rates)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import compare, leak_table, reproduce
from ..cli_common import UsageError, synthetic_split


def cmd_reproduce(args: argparse.Namespace) -> dict[str, Any]:
    """Train the unique ablation variants x seeds (resumable) and write the tables with verdicts."""
    iters = reproduce.ABLATION_ITERS if args.iters is None else args.iters
    pretrain_iters = reproduce.PRETRAIN_ITERS if args.pretrain_iters is None else args.pretrain_iters
    if args.seeds < 1 or args.jobs < 1 or iters < 1:
        raise UsageError(f"--seeds, --jobs and --iters must be >= 1 (got {args.seeds}, {args.jobs}, {iters})")
    if pretrain_iters < 0:
        raise UsageError(f"--pretrain-iters must be >= 0 (got {pretrain_iters})")
    try:
        report = reproduce.reproduce(
            out=args.out,
            seeds=args.seeds,
            iters=iters,
            jobs=args.jobs,
            work_dir=args.work_dir,
            data_root=args.data_root,
            only=args.only,
            threads=args.threads,
            report_only=args.report_only,
            pretrain_iters=pretrain_iters,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(reproduce.to_markdown(report))
    return report


def cmd_leak(args: argparse.Namespace) -> dict[str, Any]:
    """Measure how much the masks of the Table 4 runs (1x1, 2x2) leak onto same-class neighbours."""
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1 (got {args.seeds})")
    try:
        report = leak_table.leak_table(
            args.work_dir, args.data_root, args.seeds, args.out, progress=not args.quiet
        )
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    print(leak_table.to_markdown(report))
    return report


def _learning_rates(pairs: Sequence[str]) -> dict[str, float]:
    """['mask_rcnn=1e-3', ...] -> {'mask_rcnn': 0.001, ...}."""
    rates = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            raise UsageError(f"--lr: expected NAME=LR (e.g. mask_rcnn=1e-3), got {pair!r}") from None
    return rates


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:
    """Train SipMask, the YOLACT-like baseline and Mask R-CNN for one budget each (resumable); write the
    speed / accuracy table."""
    if not args.budget_s > 0 or args.threads < 1:
        raise UsageError(f"--budget-s must be > 0 and --threads >= 1 (got {args.budget_s}, {args.threads})")
    lrs = _learning_rates(args.lr)
    root = Path(args.data_root)
    synthetic_split(root, "train")  # generated if missing
    try:
        report = compare.compare(
            out=args.out,
            budget_s=args.budget_s,
            threads=args.threads,
            work_dir=args.work_dir,
            data_root=root,
            only=args.only,
            lrs=lrs,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(compare.to_markdown(report))
    return report
