"""The ablation study of §4.3 (paper Tables 2-5), re-run on the synthetic benchmark.

Paper §4.3: "we show the impact of progressively integrating our different components: spatial
preservation (SP) module (Sec. 3.1), contextual basis masks (CBM) [...] and mask alignment weighting
loss (WL) (Sec. 3.4), to the baseline. [...] our baseline is similar to YOLACT, obtaining the basis
masks by using only high-resolution FPN layer (P3) and using a single set of coefficients."

What this module does, top to bottom:

    Variant          one setting of the four ablation switches of SipMaskConfig
    TABLES           the four tables: which variants each row trains, the paper's COCO numbers
                     where this module transcribes them, and the claims the paper makes
    ablation_config  preset('cpu_tiny') with a variant's switches, a seed and the short
                     ABLATION_* schedule
    run_one          train one (variant, seed) and evaluate it on the synthetic val split;
                     writes one JSON record (the unit of resuming)
    summarize        mean / std / min / max of mask AP, AP50, AP75 over the seeds of a variant
    judge            a claim 'row A beats row B' against the seed spread -> a verdict in words
    assemble         every run record -> the tables with verdicts (a JSON-ready dict)
    to_markdown      the same as a Markdown report
    reproduce        all of it: the unique variants x seeds, in parallel processes, resumable

Each variant is trained once even when several tables list it (12 unique variants for 19 rows).
A run's record lands in WORK/runs/<variant>__seed<k>.json only after its evaluation, and a rerun
skips every record whose config equals the one it would train, so an interrupted reproduction
continues where it stopped; an interrupted run itself continues from its last checkpoint
(WORK/<variant>/seed<k>/checkpoint.pt, every 100 iterations; a run stopped during its evaluation
is only evaluated again).

Verdict rule. For a claim "A > B" the difference of means d = mean_A - mean_B (mask AP, points) is
compared with its standard error from the seed spread, se = sqrt(std_A^2 / n_A + std_B^2 / n_B)
(std = sample standard deviation over seeds, ddof 1). The claim *holds* when d > 2 se, is *same
direction, within noise* when 0 < d <= 2 se, *not seen* when -2 se <= d <= 0 and *reversed* when
d < -2 se. With 3 seeds this is a rough guide, not a significance test.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import torchvision

from . import checkpoints, engine
from .config import SipMaskConfig, preset
from .data.coco import CocoInstances
from .data.synthetic import make_data
from .files import read_json, write_json
from .model import SipMask

FORMAT = "sipmask_ref.ablations/1"  # marker of results/ablations.json
RUN_FORMAT = "sipmask_ref.ablation_run/1"  # marker of one run record
BASE_PRESET = "cpu_tiny"  # the model of every run: its architecture, input size, losses, inference
# The schedule of one run, fixed here (not taken from the preset) so that tuning the preset's own
# schedule does not change the tables: AdamW, which learns from scratch in few iterations, linear
# warm-up over the first 10% and the learning rate divided by 10 at 75% and 92% of the iterations.
# 1000 iterations: 12 configurations x 3 seeds fit about 80 minutes on 2 cores (2 runs of 1 thread).
ABLATION_ITERS = 1000  # training iterations per run (batch: the preset's, 8 images)
ABLATION_OPTIMIZER = "adamw"
ABLATION_LR = 4e-3
ABLATION_LR_STEPS = (0.75, 0.92)  # fractions of the iterations
ABLATION_WARMUP = 0.1  # fraction of the iterations
CHECKPOINT_EVERY = 100  # iterations between checkpoints inside one run (resume granularity)
EVAL_BATCH = 8  # images per forward pass in evaluation
METRICS = ("AP", "AP50", "AP75")  # the mask numbers the tables report
NOISE_FACTOR = 2.0  # a difference must exceed this many standard errors to count as "holds"


# ----------------------------------------------------------------------------------------------------
# variants and tables
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """The four §4.3 ablation switches of SipMaskConfig; the defaults are full SipMask."""

    sub_regions: tuple[int, int] = (2, 2)  # (k_h, k_w) sets of spatial coefficients per box
    basis_source: str = "p3-p5"  # 'p3' (YOLACT-like) | 'p3-p5' contextual basis masks
    alignment_weight: str = "cls+loc"  # mask loss weighting: 'none' | 'cls' | 'loc' | 'cls+loc'
    feature_alignment: bool = True  # deformable-conv feature alignment of the SP module

    @property
    def key(self) -> str:
        """A file-name-safe name, e.g. 'sr2x2_p3-p5_cls+loc_fa'."""
        k_h, k_w = self.sub_regions
        alignment = "fa" if self.feature_alignment else "nofa"
        return f"sr{k_h}x{k_w}_{self.basis_source}_{self.alignment_weight}_{alignment}"

    def switches(self) -> dict[str, Any]:
        """The switches as SipMaskConfig field values."""
        return dataclasses.asdict(self) | {"sub_regions": tuple(self.sub_regions)}


FULL = Variant()
BASELINE = Variant(sub_regions=(1, 1), basis_source="p3", alignment_weight="none", feature_alignment=False)


@dataclass(frozen=True)
class Row:
    """One row of a table: a label, the variant it trains, the paper's COCO minival mask AP (if known)."""

    label: str
    variant: Variant
    paper_ap: float | None = None


@dataclass(frozen=True)
class Claim:
    """A statement of the paper as a contrast of rows: sum_k coefficient_k * AP(row_k) > 0."""

    text: str
    contrast: tuple[tuple[str, float], ...]  # (row label, coefficient)
    paper_delta: float | None = None  # the same contrast on the paper's numbers, where available


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    note: str
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...]


def _better(a: str, b: str, text: str, paper_delta: float | None = None) -> Claim:
    return Claim(text, ((a, 1.0), (b, -1.0)), paper_delta)


_SP = Variant(sub_regions=(2, 2), basis_source="p3", alignment_weight="none", feature_alignment=True)
_CBM = Variant(sub_regions=(2, 2), basis_source="p3-p5", alignment_weight="none", feature_alignment=True)
# The numbers of the paper's Tables 2 and 3 are not transcribed here (the text this module was written
# from lacked them); the paper itself has them: https://arxiv.org/abs/2007.14772
_CUT = "not transcribed here (see the paper, arXiv:2007.14772)"

TABLES: tuple[Table, ...] = (
    Table(
        "table2",
        "Table 2: progressively adding SP, CBM and WL to the YOLACT-like baseline",
        "Baseline: P3 basis, one set of coefficients (1x1), no loss weighting, no feature alignment. "
        "+SP: 2x2 spatial coefficients with feature alignment; +CBM: P3-P5 basis; +WL: cls+loc weighting. "
        f"Paper: the text gives the baseline's mask AP, 31.2; the table's other numbers are {_CUT}.",
        (Row("baseline", BASELINE, 31.2), Row("+SP", _SP), Row("+CBM", _CBM), Row("+WL", FULL)),
        (
            _better("+SP", "baseline", "SP improves over the baseline"),
            _better("+CBM", "+SP", "CBM improves further"),
            _better("+WL", "+CBM", "WL improves further"),
            Claim(
                "the largest gain comes from SP (gain of SP > gain of CBM)",
                (("+SP", 2.0), ("baseline", -1.0), ("+CBM", -1.0)),
            ),
            Claim(
                "the largest gain comes from SP (gain of SP > gain of WL)",
                (("+SP", 1.0), ("baseline", -1.0), ("+WL", -1.0), ("+CBM", 1.0)),
            ),
        ),
    ),
    Table(
        "table3",
        "Table 3: feature alignment in the SP module, the rest full SipMask",
        f"Paper numbers: {_CUT}.",
        (
            Row("without alignment", dataclasses.replace(FULL, feature_alignment=False)),
            Row("with alignment", FULL),
        ),
        (_better("with alignment", "without alignment", "feature alignment improves mask AP"),),
    ),
    Table(
        "table4",
        "Table 4: number of sub-regions (sets of spatial coefficients), the rest full SipMask",
        "Paper: COCO minival mask AP. The paper's 1x1 reads 31.2, the Table 2 baseline: it appears to "
        "vary the sub-regions on top of its baseline, while here the rest is full SipMask (as the issue "
        "asks), so compare differences between rows, not levels.",
        tuple(
            Row(f"{k_h}x{k_w}", dataclasses.replace(FULL, sub_regions=(k_h, k_w)), ap)
            for (k_h, k_w), ap in (
                ((1, 1), 31.2),
                ((1, 2), 32.2),
                ((2, 1), 32.1),
                ((2, 2), 32.9),
                ((3, 3), 33.1),
                ((4, 4), 33.1),
            )
        ),
        (
            _better("2x2", "1x1", "a large gain from 1x1 to 2x2", 1.7),
            _better("1x2", "1x1", "1x2 beats 1x1", 1.0),
            _better("2x1", "1x1", "2x1 beats 1x1", 0.9),
            _better("2x2", "1x2", "2x2 beats 1x2", 0.7),
            _better("2x2", "2x1", "2x2 beats 2x1", 0.8),
            _better("3x3", "2x2", "3x3 is marginally better than 2x2", 0.2),
            _better("4x4", "2x2", "4x4 is marginally better than 2x2", 0.2),
        ),
    ),
    Table(
        "table5",
        "Table 5: mask alignment weighting, the rest full SipMask",
        "Paper: COCO minival mask AP; its 'baseline' (no weighting) reads 31.2, the Table 2 baseline, so "
        "the paper appears to add the weighting to its baseline; here the rest is full SipMask.",
        (
            Row("none", _CBM, 31.2),
            Row("only cls", dataclasses.replace(FULL, alignment_weight="cls"), 31.8),
            Row("only loc", dataclasses.replace(FULL, alignment_weight="loc"), 31.7),
            Row("cls+loc", FULL, 32.0),
        ),
        (
            _better("only cls", "none", "weighting by the class score helps", 0.6),
            _better("only loc", "none", "weighting by the ground-truth overlap helps", 0.5),
            _better("cls+loc", "only cls", "cls+loc beats cls alone", 0.2),
            _better("cls+loc", "only loc", "cls+loc beats loc alone", 0.3),
        ),
    ),
)


def unique_variants(tables: Sequence[Table] = TABLES) -> list[Variant]:
    """Every variant the tables train, once, in order of first appearance."""
    seen: dict[str, Variant] = {}
    for table in tables:
        for row in table.rows:
            seen.setdefault(row.variant.key, row.variant)
    return list(seen.values())


# ----------------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------------
def ablation_config(
    variant: Variant, seed: int, iters: int = ABLATION_ITERS, num_classes: int | None = None
) -> SipMaskConfig:
    """preset('cpu_tiny') with the variant's switches, `seed`, and the ablation schedule for `iters`.

    The schedule (optimizer, learning rate, warm-up, lr steps) is this module's ABLATION_* constants;
    model, input, losses, inference and batch size are the preset's.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    base = preset(BASE_PRESET)
    steps = tuple(sorted({min(iters, max(1, round(f * iters))) for f in ABLATION_LR_STEPS}))
    return dataclasses.replace(
        base,
        **variant.switches(),
        seed=seed,
        optimizer=ABLATION_OPTIMIZER,
        lr=ABLATION_LR,
        max_iters=iters,
        lr_steps=steps,
        warmup_method="linear",
        warmup_iters=round(ABLATION_WARMUP * iters),
        num_classes=base.num_classes if num_classes is None else num_classes,
    )


def run_name(variant: Variant, seed: int) -> str:
    return f"{variant.key}__seed{seed}"


def run_record_path(work_dir: str | os.PathLike, variant: Variant, seed: int) -> Path:
    """WORK/runs/<variant>__seed<k>.json: the record of a finished run."""
    return Path(work_dir) / "runs" / f"{run_name(variant, seed)}.json"


def run_checkpoint_path(work_dir: str | os.PathLike, variant: Variant, seed: int) -> Path:
    """WORK/<variant>/seed<k>/checkpoint.pt: the weights of a run (e.g. for the Fig. 6 analogue)."""
    return Path(work_dir) / variant.key / f"seed{seed}" / checkpoints.CHECKPOINT_NAME


def _write_json(obj: Any, path: Path) -> Path:
    """Write a record or report as JSON (indent 1, a final newline), atomically (files.write_json)."""
    return write_json(obj, path, indent=1, end="\n")


def _config_json(config: SipMaskConfig) -> dict[str, Any]:
    """asdict with tuples as lists, so that it compares equal to the same config read back from JSON."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_finished_run(path: Path, config: SipMaskConfig) -> dict[str, Any] | None:
    """The record at `path` if it is a finished run of exactly `config`; None otherwise.

    A record of another config (e.g. written before the preset changed) is reported with a warning
    and not used, so that run is trained again.
    """
    if not path.is_file():
        return None
    try:
        record = read_json(path, "run record")
    except ValueError:
        warnings.warn(f"{path}: not valid JSON; running it again", stacklevel=2)
        return None
    if record.get("format") != RUN_FORMAT or record.get("config") != _config_json(config):
        warnings.warn(f"{path}: recorded for another configuration; running it again", stacklevel=2)
        return None
    return record


def _datasets(data_root: Path) -> tuple[CocoInstances, CocoInstances]:
    """(train, val) of the synthetic image benchmark under data_root/synthetic."""
    folder = data_root / "synthetic"
    train = CocoInstances(folder / "annotations" / "instances_train.json", folder / "images" / "train")
    val = CocoInstances(folder / "annotations" / "instances_val.json", folder / "images" / "val")
    return train, val


def run_one(
    variant: Variant,
    seed: int,
    iters: int,
    work_dir: str | os.PathLike,
    data_root: str | os.PathLike,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train one variant with one seed, evaluate it on the val split, write its record; return it.

    Skips the work when a record of the same config exists. `threads`: torch.set_num_threads for
    this call (restored afterwards); None leaves the process's setting alone.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train_set, val_set = _datasets(Path(data_root))
        config = ablation_config(variant, seed, iters, num_classes=len(train_set.class_names))
        record_path = run_record_path(work_dir, variant, seed)
        done = load_finished_run(record_path, config)
        if done is not None:
            return done | {"skipped": True}

        out = run_checkpoint_path(work_dir, variant, seed).parent
        checkpoint = out / checkpoints.CHECKPOINT_NAME
        resume_from = 0
        if checkpoint.is_file():
            state = checkpoints.read_checkpoint(checkpoint)
            if state["config"] == dataclasses.asdict(config) and 0 < state["iteration"] <= iters:
                resume_from = int(state["iteration"])
            del state
        started, cpu_started = time.perf_counter(), time.process_time()
        engine.seed_everything(seed)  # the initial weights depend on the seed only
        model = SipMask(config)
        summary = engine.train(
            model,
            config,
            train_set,
            out,
            iters=iters,
            device="cpu",
            resume=resume_from > 0,
            checkpoint_every=CHECKPOINT_EVERY,
            log_every=max(1, min(50, iters)),
            progress=False,
        )
        trained = time.perf_counter()
        _, metrics = engine.evaluate(model, val_set, "cpu", EVAL_BATCH, progress=False)
        evaluated = time.perf_counter()
        record = {
            "format": RUN_FORMAT,
            "variant": variant.key,
            "switches": json.loads(json.dumps(variant.switches())),
            "seed": seed,
            "iters": iters,
            "resumed_from_iteration": resume_from,
            "final_losses": summary["losses"],
            "metrics": metrics,  # COCOeval numbers in [0, 1] ('segm' = mask, 'bbox' = box)
            "train_s": round(trained - started, 2),
            "eval_s": round(evaluated - trained, 2),
            "wall_s": round(evaluated - started, 2),
            "cpu_s": round(time.process_time() - cpu_started, 2),  # CPU time of this process
            "threads": torch.get_num_threads(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": _config_json(config),
        }
        _write_json(record, record_path)
        return record | {"skipped": False}
    finally:
        torch.set_num_threads(previous_threads)


def _worker_init(threads: int) -> None:
    """Start-up of a worker process of `reproduce`: its own torch thread count."""
    torch.set_num_threads(threads)


def _run_in_worker(variant: Variant, seed: int, iters: int, work_dir: str, data_root: str) -> dict[str, Any]:
    return run_one(variant, seed, iters, work_dir, data_root)


# ----------------------------------------------------------------------------------------------------
# statistics and verdicts
# ----------------------------------------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict[str, Any]:
    """mean, std (sample standard deviation, ddof 1; 0 for one value), min, max, n of `values`."""
    if not values:
        raise ValueError("summarize: no values")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n, "values": list(values)}


VERDICTS = {
    "holds": "holds",
    "weak": "same direction, within seed noise",
    "not_seen": "not seen (within seed noise)",
    "reversed": "reversed (beyond seed noise)",
    "one_seed": "undecided (a row has one seed: no spread)",
}


def judge(contrast: Sequence[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """Verdict of a claim 'sum_k c_k * mean_k > 0' given each row's summary (see the module docstring).

    Returns delta (the contrast of the means), se (its standard error from the seed spread,
    sqrt(sum_k c_k^2 std_k^2 / n_k)), ratio = delta / se (inf / -inf / 0 when se = 0), seed_std (root
    mean square of the rows' stds), verdict (a key of VERDICTS) and text (plain words).
    """
    delta = sum(c * s["mean"] for s, c in contrast)
    se = math.sqrt(sum(c * c * s["std"] ** 2 / s["n"] for s, c in contrast))
    limit = NOISE_FACTOR * se
    if any(s["n"] < 2 for s, c in contrast if c):
        verdict = "one_seed"
    elif delta > limit:
        verdict = "holds"
    elif delta > 0:
        verdict = "weak"
    elif delta >= -limit:
        verdict = "not_seen"
    else:
        verdict = "reversed"
    ratio = delta / se if se > 0 else (math.copysign(math.inf, delta) if delta else 0.0)
    # the typical seed spread of the rows involved: root mean square of their stds
    seed_std = math.sqrt(sum(s["std"] ** 2 for s, c in contrast if c) / sum(1 for _, c in contrast if c))
    size = f", {abs(delta) / seed_std:.1f}x the seed std of {seed_std:.1f}" if seed_std > 0 else ""
    text = f"{VERDICTS[verdict]}: {delta:+.1f} AP" + (
        "" if verdict == "one_seed" else f"{size}; noise threshold 2 se = {limit:.1f}"
    )
    return {"delta": delta, "se": se, "ratio": ratio, "seed_std": seed_std, "verdict": verdict, "text": text}


def _mask_numbers(record: dict[str, Any]) -> dict[str, float]:
    """Mask AP, AP50, AP75 of a run record, in points (x100)."""
    return {m: 100.0 * float(record["metrics"]["segm"][m]) for m in METRICS}


def assemble(records: Sequence[dict[str, Any]], tables: Sequence[Table] = TABLES) -> dict[str, Any]:
    """Run records -> {'configs': per-variant summaries, 'tables': rows and claims with verdicts}.

    A row whose variant has no record reads None; a claim that needs such a row gets verdict None.
    """
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: (r["variant"], r["seed"])):
        by_variant.setdefault(record["variant"], []).append(record)
    configs = {}
    for key, runs in by_variant.items():
        numbers = [_mask_numbers(r) for r in runs]
        configs[key] = {
            "switches": runs[0]["switches"],
            "seeds": [r["seed"] for r in runs],
            **{m: summarize([x[m] for x in numbers]) for m in METRICS},
            "box_AP": summarize([100.0 * float(r["metrics"]["bbox"]["AP"]) for r in runs]),
        }

    out_tables = []
    for table in tables:
        rows = {row.label: row for row in table.rows}
        out_rows = [
            {
                "label": row.label,
                "variant": row.variant.key,
                "switches": row.variant.switches(),
                "paper_AP": row.paper_ap,
                "result": configs.get(row.variant.key),
            }
            for row in table.rows
        ]
        out_claims = []
        for claim in table.claims:
            parts = [(configs.get(rows[label].variant.key), c) for label, c in claim.contrast]
            known = [(s, c) for s, c in parts if s is not None]
            verdict = judge([(s["AP"], c) for s, c in known]) if len(known) == len(parts) else None
            out_claims.append(
                {
                    "text": claim.text,
                    "contrast": [list(p) for p in claim.contrast],
                    "paper_delta": claim.paper_delta,
                    "result": verdict,
                }
            )
        out_tables.append(
            {
                "key": table.key,
                "title": table.title,
                "note": table.note,
                "rows": out_rows,
                "claims": out_claims,
            }
        )
    return {"configs": configs, "tables": out_tables}


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------
def _pm(summary: dict[str, Any] | None, metric: str) -> str:
    if summary is None:
        return "not run"
    s = summary[metric]
    return f"{s['mean']:.1f} (1 seed)" if s["n"] == 1 else f"{s['mean']:.1f} ± {s['std']:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The tables and verdicts of `reproduce`'s report as Markdown."""
    settings, env = report["settings"], report["environment"]
    lines = [
        "# SipMask ablations (paper §4.3, Tables 2-5) on the synthetic benchmark",
        "",
        (
            f"Generated by `python -m sipmask_ref reproduce` (sipmask_ref/reproduce.py). Each row: preset "
            f"`{settings['base_preset']}` with the row's switches, {settings['iters']} iterations of "
            f"{settings['batch_size']} images, seeds {settings['seeds']}; mask AP / AP50 / AP75 (COCOeval, "
            f"points) on the {settings['val_images']} val images, as **mean ± std over seeds** (sample std, "
            f"ddof 1; min-max in the last column). Paper: COCO minival mask AP, ResNet-50-FPN "
            f'("-": a number not transcribed here, Tables 2 and 3; see the paper, arXiv:2007.14772).'
        ),
        "",
        (
            f"Verdict rule: a claim 'A > B' holds when the difference of mean mask AP exceeds "
            f"{NOISE_FACTOR:g} standard errors of that difference (se, from the seed spread); otherwise it "
            f"is 'same direction, within seed noise', 'not seen (within seed noise)' or 'reversed'. Each "
            f"verdict also gives the difference in units of the rows' seed std (root mean square)."
        ),
        "",
        (
            f"Environment: Python {env['python']}, torch {env['torch']}, torchvision {env['torchvision']}, "
            f"{env['device']}, {env['jobs']} parallel run(s) x {env['threads_per_job']} thread(s), "
            f"{env['cpu_count']} CPU cores visible. Runs: {env['runs_finished']} of {env['runs_planned']} "
            f"finished; mean wall time per run {env['mean_run_wall_s']:.0f} s; total wall time "
            f"{env['total_wall_s'] / 60:.1f} min."
        ),
    ]
    if env.get("runs_failed"):
        lines += ["", "Failed runs (left out of the tables): " + "; ".join(env["runs_failed"])]
    for table in report["tables"]:
        lines += [
            "",
            f"## {table['title']}",
            "",
            table["note"],
            "",
            "| row | mask AP | AP50 | AP75 | AP min-max | paper AP (COCO) |",
            "|---|---|---|---|---|---|",
        ]
        for row in table["rows"]:
            result = row["result"]
            span = "" if result is None else f"{result['AP']['min']:.1f}-{result['AP']['max']:.1f}"
            paper = "-" if row["paper_AP"] is None else f"{row['paper_AP']:.1f}"
            lines.append(
                f"| {row['label']} | {_pm(result, 'AP')} | {_pm(result, 'AP50')} | "
                f"{_pm(result, 'AP75')} | {span} | {paper} |"
            )
        lines += ["", "| claim (paper) | paper | here: verdict |", "|---|---|---|"]
        for claim in table["claims"]:
            paper = "-" if claim["paper_delta"] is None else f"{claim['paper_delta']:+.1f} AP"
            verdict = "not run" if claim["result"] is None else claim["result"]["text"]
            lines.append(f"| {claim['text']} | {paper} | {verdict} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# the whole reproduction
# ----------------------------------------------------------------------------------------------------
def _environment(jobs: int, threads: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": "cpu",
        "jobs": jobs,
        "threads_per_job": threads,
    }


def reproduce(
    out: str | os.PathLike = "results",
    seeds: int = 3,
    iters: int = ABLATION_ITERS,
    jobs: int = 2,
    work_dir: str | os.PathLike = "outputs/ablations",
    data_root: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    threads: int | None = None,
    report_only: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every unique variant of TABLES with seeds 0..seeds-1; write OUT/ablations.{json,md}.

    out: where ablations.json and ablations.md go. work_dir: run records (runs/*.json) and
    checkpoints; finished runs found there are skipped. data_root: folder holding synthetic/
    (default: data/ under the working directory, generated if missing). only: variant keys to run
    (default all).
    jobs: runs in parallel, each in its own process with `threads` torch threads (default
    cpu_count // jobs); jobs=1 runs in this process and leaves its thread count alone unless
    `threads` is given. report_only: train nothing, assemble the runs already finished (a partial
    report lists the missing rows as "not run"). Returns the report written to ablations.json.
    """
    started = time.perf_counter()
    if seeds < 1 or jobs < 1:
        raise ValueError(f"seeds and jobs must be >= 1, got seeds={seeds}, jobs={jobs}")
    if data_root is None:  # data/ under the working directory, generated if missing
        data_root = Path("data")
        make_data(root=data_root, progress=False, verbose=False)
    data_root = Path(data_root)
    if not (data_root / "synthetic" / "annotations" / "instances_train.json").is_file():
        raise FileNotFoundError(
            f"no synthetic benchmark under {data_root / 'synthetic'} "
            f"(python -m sipmask_ref make-data --root {data_root})"
        )
    variants = unique_variants()
    if only is not None:
        known = {v.key: v for v in variants}
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {sorted(known)}")
        variants = [known[k] for k in only]
    requested_threads = threads
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    plan = [(v, s) for s in range(seeds) for v in variants]  # seed-major: every row gets seed 0 first
    log(
        f"reproduce: {len(variants)} variants x {seeds} seeds = {len(plan)} runs of {iters} iterations, "
        f"{jobs} at a time x {threads} thread(s); records in {Path(work_dir) / 'runs'}"
    )

    records: list[dict[str, Any]] = []
    failed: list[str] = []

    def finished(name: str, get_record: Callable[[], dict[str, Any]]) -> None:
        """Log one finished run; a run that raised (e.g. a NaN loss) is reported and left out."""
        try:
            record = get_record()
        except BrokenProcessPool:  # a worker process was killed: stop, a rerun resumes
            raise
        except Exception as error:  # noqa: BLE001 - one bad run must not lose the others
            failed.append(f"{name}: {type(error).__name__}: {error}")
            log(f"[{len(records) + len(failed)}/{len(plan)}] {name} FAILED: {error}")
            return
        records.append(record)
        state = "already done" if record["skipped"] else f"{record['wall_s']:.0f} s"
        log(
            f"[{len(records) + len(failed)}/{len(plan)}] {name}: mask AP "
            f"{100 * record['metrics']['segm']['AP']:.1f} ({state})"
        )

    if report_only:
        train_ann = data_root / "synthetic" / "annotations" / "instances_train.json"
        num_classes = len(read_json(train_ann, "annotation")["categories"])
        for variant, seed in plan:
            config = ablation_config(variant, seed, iters, num_classes=num_classes)
            record = load_finished_run(run_record_path(work_dir, variant, seed), config)
            if record is not None:
                records.append(record | {"skipped": True})
        log(f"report only: {len(records)} of {len(plan)} runs finished")
    elif jobs == 1:
        for variant, seed in plan:
            finished(
                run_name(variant, seed),
                functools.partial(run_one, variant, seed, iters, work_dir, data_root, requested_threads),
            )
    else:
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(threads,)
        ) as pool:
            futures = {
                pool.submit(_run_in_worker, v, s, iters, str(work_dir), str(data_root)): run_name(v, s)
                for v, s in plan
            }
            for future in as_completed(futures):
                finished(futures[future], future.result)

    report = _report(
        records, iters, seeds, data_root, jobs, threads, len(plan), time.perf_counter() - started
    )
    report["environment"]["runs_failed"] = failed
    out = Path(out)
    _write_json(report, out / "ablations.json")
    (out / "ablations.md").write_text(to_markdown(report))
    log(f"wrote {out / 'ablations.json'} and {out / 'ablations.md'}")
    return report


def _span_s(records: Sequence[dict[str, Any]]) -> float:
    """Seconds from the earliest run start (finished_at - wall_s) to the latest finished_at."""
    if not records:
        return 0.0
    ends = [time.mktime(time.strptime(r["finished_at"], "%Y-%m-%dT%H:%M:%S")) for r in records]
    return max(ends) - min(end - r["wall_s"] for end, r in zip(ends, records, strict=True))


def _report(
    records: list[dict[str, Any]],
    iters: int,
    seeds: int,
    data_root: Path,
    jobs: int,
    threads: int,
    planned: int,
    elapsed: float,
) -> dict[str, Any]:
    """The JSON document of a reproduction: settings, environment, runs, configs, tables."""
    base = ablation_config(FULL, 0, iters)
    params_file = data_root / "synthetic" / "params.json"
    val_ann = data_root / "synthetic" / "annotations" / "instances_val.json"
    val_images = len(read_json(val_ann, "annotation")["images"])
    run_walls = [r["wall_s"] for r in records]
    fresh = [r for r in records if not r["skipped"]]
    environment = _environment(jobs, threads) | {
        "runs_planned": planned,
        "runs_finished": len(records),
        "runs_this_invocation": len(fresh),
        "mean_run_wall_s": sum(run_walls) / len(run_walls) if run_walls else 0.0,
        "sum_run_wall_s": sum(run_walls),
        "sum_run_cpu_s": sum(r.get("cpu_s", 0.0) for r in records),
        # from the start of the first run to the end of the last (read from the records, so it
        # survives re-assembling; includes any pause between an interruption and its resumption)
        "total_wall_s": _span_s(records),
        "this_invocation_wall_s": elapsed,
    }
    settings = {
        "base_preset": BASE_PRESET,
        "iters": iters,
        "seeds": list(range(seeds)),
        "batch_size": base.batch_size,
        "optimizer": base.optimizer,
        "lr": base.lr,
        "lr_steps": list(base.lr_steps),
        "warmup_iters": base.warmup_iters,
        "val_images": val_images,
        "spread": "std = sample standard deviation over seeds (ddof 1); min and max also given",
        "verdict_rule": f"holds when delta > {NOISE_FACTOR:g} * se, se = sqrt(sum c_k^2 std_k^2 / n_k)",
        "benchmark": read_json(params_file, "benchmark parameters") if params_file.is_file() else None,
    }
    runs = [
        {k: v for k, v in r.items() if k not in ("config", "skipped")}
        for r in sorted(records, key=lambda r: (r["variant"], r["seed"]))
    ]
    return {
        "format": FORMAT,
        "settings": settings,
        "environment": environment,
        "runs": runs,
        **assemble(records),
    }


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read results/ablations.json, checking its format marker."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ablation results at {path} (python -m sipmask_ref reproduce)")
    report = read_json(path, "ablation report")
    if report.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sipmask_ref ablation report (no '{FORMAT}' marker)")
    return report
