"""The ablation study of §4.3 (paper Tables 2-5), re-run on the synthetic benchmark.

Paper §4.3: "we show the impact of progressively integrating our different components: spatial
preservation (SP) module (Sec. 3.1), contextual basis masks (CBM) [...] and mask alignment weighting
loss (WL) (Sec. 3.4), to the baseline. [...] our baseline is similar to YOLACT, obtaining the basis
masks by using only high-resolution FPN layer (P3) and using a single set of coefficients."

A package, read in this order (each module imports only those above it):

    tables.py     what is trained and what is claimed: Variant (FULL, BASELINE), Row, Claim, TABLES,
                  unique_variants
    runs.py       one run: ablation_config (preset('cpu_tiny'), a variant's switches, a seed, the
                  short ABLATION_* schedule), run_one (train from the pretrained body, evaluate on
                  the synthetic val split, write one JSON record: the unit of resuming), the
                  records' paths, PretrainedBody and load_body
    pretrain.py   the stand-in for ImageNet: the body pretrained once as the §3 box detector alone
                  (BoxDetector, pretrain_body), which every run of every row starts from
    verdicts.py   summarize (the seed spread of a row), judge (a claim against the seed spread ->
                  a verdict in words, VERDICTS), assemble (every record -> the tables with verdicts)
    report.py     to_markdown (results/ablations.md), load_report (results/ablations.json)
    driver.py     reproduce: the unique variants x seeds, in parallel processes, resumable

Each variant is trained once even when several tables list it (12 unique variants for 19 rows).

    python -m sipmask_ref reproduce [--seeds 3] [--jobs 2] [--pretrain-iters 1900] [--only VARIANT ...]
                                    [--report-only]

The public names of the modules are re-exported here (`from sipmask_ref.reproduce import TABLES`,
`reproduce.ablation_config`, `reproduce.reproduce`).
"""

from .driver import reproduce
from .pretrain import PRETRAIN_ITERS, BoxDetector, expected_body, pretrain_body, pretrain_config
from .report import FORMAT, load_report, to_markdown
from .runs import (
    ABLATION_ITERS,
    ABLATION_LR,
    ABLATION_LR_STEPS,
    ABLATION_OPTIMIZER,
    ABLATION_WARMUP,
    BASE_PRESET,
    CHECKPOINT_EVERY,
    EVAL_BATCH,
    RUN_FORMAT,
    PretrainedBody,
    ablation_config,
    config_json,
    load_body,
    load_finished_run,
    run_checkpoint_path,
    run_name,
    run_one,
    run_record_path,
    synthetic_datasets,
    write_record,
)
from .tables import BASELINE, FULL, TABLES, Claim, Row, Table, Variant, unique_variants
from .verdicts import METRICS, NOISE_FACTOR, VERDICTS, assemble, judge, summarize

__all__ = [
    "ABLATION_ITERS",
    "ABLATION_LR",
    "ABLATION_LR_STEPS",
    "ABLATION_OPTIMIZER",
    "ABLATION_WARMUP",
    "BASELINE",
    "BASE_PRESET",
    "CHECKPOINT_EVERY",
    "EVAL_BATCH",
    "FORMAT",
    "FULL",
    "METRICS",
    "NOISE_FACTOR",
    "PRETRAIN_ITERS",
    "RUN_FORMAT",
    "TABLES",
    "VERDICTS",
    "BoxDetector",
    "Claim",
    "PretrainedBody",
    "Row",
    "Table",
    "Variant",
    "ablation_config",
    "assemble",
    "config_json",
    "expected_body",
    "judge",
    "load_body",
    "load_finished_run",
    "load_report",
    "pretrain_body",
    "pretrain_config",
    "reproduce",
    "run_checkpoint_path",
    "run_name",
    "run_one",
    "run_record_path",
    "summarize",
    "synthetic_datasets",
    "to_markdown",
    "unique_variants",
    "write_record",
]
