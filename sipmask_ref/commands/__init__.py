"""The handlers of the image commands of `python -m sipmask_ref` (cli.py builds the parser and calls them).

Not a paper section. Each handler takes the parsed arguments, checks them (cli_common.py: a mistake is
a one-line UsageError, exit code 2) and calls the library. Its modules, each importing only those above
it in this list:

    data.py          `make-data` (cmd_make_data, make_synthetic_data, MAKE_DATA_DEFAULTS) and
                     `check-data` (cmd_check_data: dataset_check.py)
    image.py         `train`, `evaluate`, `predict`, `export`: cmd_train (train_image_model),
                     cmd_evaluate (evaluate_checkpoint), cmd_predict (write_overlay), cmd_export;
                     `--task vis` and `predict --video` go on to video/commands.py
    demo.py          `demo`: make-data, train cpu_tiny, evaluate, draw (write_prediction_grid)
    experiments.py   `reproduce` (reproduce/, Tables 2-5), `leak` (leak_table.py: §3.3 on Table 4's
                     runs) and `compare` (compare/, Table 1)

The public names of the modules are re-exported here. A test that replaces a function patches it where
it is looked up: `commands.demo.make_synthetic_data` for the demo.
"""

from .data import MAKE_DATA_DEFAULTS, cmd_check_data, cmd_make_data, make_synthetic_data
from .demo import cmd_demo, write_prediction_grid
from .experiments import cmd_compare, cmd_leak, cmd_reproduce
from .image import (
    PER_CLASS_NAME,
    cmd_evaluate,
    cmd_export,
    cmd_predict,
    cmd_train,
    evaluate_checkpoint,
    keep_scores,
    train_image_model,
    write_overlay,
)

__all__ = [
    "MAKE_DATA_DEFAULTS",
    "PER_CLASS_NAME",
    "cmd_check_data",
    "cmd_compare",
    "cmd_demo",
    "cmd_evaluate",
    "cmd_export",
    "cmd_leak",
    "cmd_make_data",
    "cmd_predict",
    "cmd_reproduce",
    "cmd_train",
    "evaluate_checkpoint",
    "keep_scores",
    "make_synthetic_data",
    "train_image_model",
    "write_overlay",
    "write_prediction_grid",
]
