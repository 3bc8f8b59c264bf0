"""The whole ablation study: every unique variant x seeds, in parallel processes, resumable.

reproduce   pretrain the body once (pretrain.py, in this process), train every unique variant of
            TABLES with seeds 0..seeds-1 from it (run_one, one process per run in parallel, or in
            this process), then assemble the tables and write OUT/ablations.json and OUT/ablations.md
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from ..data.synthetic import make_data
from ..files import read_json
from .pretrain import PRETRAIN_ITERS, expected_body, finished_pretraining, pretrain_body
from .report import FORMAT, to_markdown
from .runs import (
    ABLATION_ITERS,
    BASE_PRESET,
    PretrainedBody,
    ablation_config,
    load_finished_run,
    machine,
    run_name,
    run_one,
    run_record_path,
    write_record,
)
from .tables import FULL, Variant, unique_variants
from .verdicts import NOISE_FACTOR, assemble


def _environment(jobs: int, threads: int) -> dict[str, Any]:
    return {
        **machine(),
        "device": "cpu",
        "jobs": jobs,
        "threads_per_job": threads,
    }


def _worker_init(threads: int) -> None:
    """Start-up of a worker process of `reproduce`: its own torch thread count."""
    torch.set_num_threads(threads)


def _run_in_worker(
    variant: Variant, seed: int, iters: int, work_dir: str, data_root: str, body: PretrainedBody | None
) -> dict[str, Any]:
    return run_one(variant, seed, iters, work_dir, data_root, body=body)


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
    pretrain_iters: int = PRETRAIN_ITERS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pretrain the body, train every unique variant of TABLES with seeds 0..seeds-1 from it; write
    OUT/ablations.{json,md}.

    out: where ablations.json and ablations.md go. work_dir: run records (runs/*.json) and
    checkpoints; finished runs found there are skipped. data_root: folder holding synthetic/
    (default: data/ under the working directory, generated if missing). only: variant keys to run
    (default all).
    jobs: runs in parallel, each in its own process with `threads` torch threads (default
    cpu_count // jobs); jobs=1 runs in this process and leaves its thread count alone unless
    `threads` is given. report_only: train nothing, assemble the runs already finished (a partial
    report lists the missing rows as "not run"). pretrain_iters: iterations of the body's
    pretraining (pretrain.py; it runs first, in this process with `jobs * threads` threads, once:
    a rerun finds it done); 0 trains every run from scratch. Returns the report written to
    ablations.json.
    """
    started = time.perf_counter()
    if seeds < 1 or jobs < 1:
        raise ValueError(f"seeds and jobs must be >= 1, got seeds={seeds}, jobs={jobs}")
    if pretrain_iters < 0:
        raise ValueError(f"pretrain_iters must be >= 0, got {pretrain_iters}")
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
    # report_only trains nothing: the configs need the number of classes, read once here
    train_ann = data_root / "synthetic" / "annotations" / "instances_train.json"
    num_classes = len(read_json(train_ann, "annotation")["categories"]) if report_only else None
    body, pretraining = _pretrained_body(
        pretrain_iters, work_dir, data_root, num_classes, requested_threads or threads * jobs, log
    )

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
        for variant, seed in plan:
            config = ablation_config(variant, seed, iters, num_classes=num_classes)
            record = load_finished_run(run_record_path(work_dir, variant, seed), config, body)
            if record is not None:
                records.append(record | {"skipped": True})
        log(f"report only: {len(records)} of {len(plan)} runs finished")
    elif jobs == 1:
        for variant, seed in plan:
            finished(
                run_name(variant, seed),
                functools.partial(
                    run_one, variant, seed, iters, work_dir, data_root, requested_threads, body
                ),
            )
    else:
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(threads,)
        ) as pool:
            futures = {
                pool.submit(_run_in_worker, v, s, iters, str(work_dir), str(data_root), body): run_name(v, s)
                for v, s in plan
            }
            for future in as_completed(futures):
                finished(futures[future], future.result)

    report = _report(
        records,
        pretraining,
        pretrain_iters,
        iters,
        seeds,
        data_root,
        jobs,
        threads,
        len(plan),
        time.perf_counter() - started,
    )
    report["environment"]["runs_failed"] = failed
    out = Path(out)
    write_record(report, out / "ablations.json")
    (out / "ablations.md").write_text(to_markdown(report))
    log(f"wrote {out / 'ablations.json'} and {out / 'ablations.md'}")
    return report


def _pretrained_body(
    iters: int,
    work_dir: str | os.PathLike,
    data_root: Path,
    report_only_classes: int | None,
    threads: int,
    log: Callable[[str], None],
) -> tuple[PretrainedBody | None, dict[str, Any] | None]:
    """(the body the runs start from, the pretraining's record); (None, None) when iters is 0.
    report_only_classes: the number of classes when reporting only: then nothing is trained and the
    record is None if the pretraining has not finished."""
    if iters == 0:
        return None, None
    if report_only_classes is None:
        return pretrain_body(work_dir, data_root, iters, threads=threads, log=log)
    body = expected_body(work_dir, iters, report_only_classes)
    return body, finished_pretraining(work_dir, body)


def _span_s(records: Sequence[dict[str, Any]]) -> float:
    """Seconds from the earliest run start (finished_at - wall_s) to the latest finished_at."""
    if not records:
        return 0.0
    ends = [time.mktime(time.strptime(r["finished_at"], "%Y-%m-%dT%H:%M:%S")) for r in records]
    return max(ends) - min(end - r["wall_s"] for end, r in zip(ends, records, strict=True))


def _report(
    records: list[dict[str, Any]],
    pretraining: dict[str, Any] | None,
    pretrain_iters: int,
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
        # from the start of the pretraining (or of the first run) to the end of the last run (read
        # from the records, so it survives re-assembling; includes any pause between an
        # interruption and its resumption)
        "total_wall_s": _span_s(records + ([pretraining] if pretraining else [])),
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
        "pretrain_iters": pretrain_iters,  # 0: every run from scratch
        # the record of the pretraining every run starts from (pretrain.py); None if not run
        "pretraining": None
        if pretraining is None
        else {k: v for k, v in pretraining.items() if k not in ("config", "format")},
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
