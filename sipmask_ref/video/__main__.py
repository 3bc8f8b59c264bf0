"""`python -m sipmask_ref.video reproduce ...`: the old command, which says the new one
(`python -m sipmask_ref reproduce-video`) and runs it (see commands.main)."""

from .commands import main

if __name__ == "__main__":
    raise SystemExit(main())
