"""The data commands: `make-data` (the synthetic benchmark) and `check-data` (cli.py registers them).

MAKE_DATA_DEFAULTS   data.synthetic.make_data's own defaults, which make-data's parser shows and uses
cmd_make_data        `make-data`: make_synthetic_data with the command's options
make_synthetic_data  generate the benchmark, print its statistics, draw samples.png (also for `demo`)
cmd_check_data       `check-data`: dataset_check.check_dataset, its report and gallery, exit code 2
                     when an image or an annotation cannot be used
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from .. import dataset_check
from ..cli_common import UsageError, checked_preset
from ..data.synthetic import make_data
from ..viz import write_sample_figure

# ----------------------------------------------------------------------------------------------------
# make-data
# ----------------------------------------------------------------------------------------------------
# make_data's own defaults, shown and used by the make-data command (one home: the generator)
MAKE_DATA_DEFAULTS = {
    name: parameter.default for name, parameter in inspect.signature(make_data).parameters.items()
}


def cmd_make_data(args: argparse.Namespace) -> dict[str, Any]:
    """`make-data`: make_synthetic_data with the command's options."""
    return make_synthetic_data(
        args.root,
        seed=args.seed,
        image_size=args.image_size,
        num_train=args.num_train,
        num_val=args.num_val,
        video=args.video,
        force=args.force,
        quiet=args.quiet,
    )


def make_synthetic_data(root: str | Path, *, quiet: bool = False, **options: Any) -> dict[str, Any]:
    """Generate the synthetic benchmark, print statistics, write samples.png next to each dataset.

    `options` go to data.synthetic.make_data (seed, image_size, num_train, num_val, video, force), whose
    defaults are the only ones: make-data's parser reads them from there (MAKE_DATA_DEFAULTS)."""
    made = make_data(root=root, **options, verbose=not quiet, progress=not quiet)
    for entry in made.values():
        figure = write_sample_figure(entry["root"], Path(entry["root"]) / "samples.png")
        if not quiet:
            print(f"sample figure: {figure}")
    return made


# ----------------------------------------------------------------------------------------------------
# check-data
# ----------------------------------------------------------------------------------------------------
def cmd_check_data(args: argparse.Namespace) -> dict[str, Any]:
    """`check-data`: dataset_check.check_dataset on --ann / --images with the preset --config; prints the
    summary, writes report.json, report.txt and gallery.png, and exits with code 2 (one line on stderr)
    when an image cannot be used or an annotation has a problem."""
    config = checked_preset(args.config)
    if not Path(args.ann).is_file():
        raise UsageError(f"annotation file not found: {args.ann}")
    if not Path(args.images).is_dir():
        raise UsageError(f"image folder not found: {args.images}")
    try:
        report, gallery = dataset_check.check_dataset(
            args.ann, args.images, config, preset_name=args.config, progress=not args.quiet
        )
    except ValueError as error:  # the annotation file itself is broken (not COCO, unknown ids, ...)
        raise UsageError(str(error)) from None
    out = Path(args.out) if args.out is not None else dataset_check.default_out_dir(args.ann)
    paths = dataset_check.write_check(report, gallery, out)
    print(dataset_check.format_report(report))
    print("written: " + ", ".join(str(path) for path in paths.values()))
    if not report["ok"]:
        raise UsageError(f"{dataset_check.summary_line(report)} (details: {paths['text']})")
    return report
