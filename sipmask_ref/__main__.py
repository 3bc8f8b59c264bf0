"""`python -m sipmask_ref COMMAND ...`: the command line of sipmask_ref (see cli.py)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
