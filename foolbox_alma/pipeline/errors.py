"""The pipeline's exceptions."""

from pathlib import Path
from typing import Optional


class EvaluationError(ValueError):
    """A problem with an evaluation's inputs or output folder (the message says which)."""


class EvaluationInterrupted(KeyboardInterrupt):
    """An evaluation stopped by Ctrl-C (or SIGTERM, through the command line's handler): every
    shard that finished is saved; rerunning the same command computes only the others.

    Attributes:
        saved: Shards saved in the output folder (finished now or loaded from earlier).
        total: Shards of the run.
        out: The output folder (None when the run kept nothing on disk).
    """

    def __init__(self, saved: int, total: int, out: Optional[Path]):
        super().__init__(saved, total, out)
        self.saved, self.total, self.out = saved, total, out

    def __str__(self) -> str:
        if self.out is None:
            return (
                f"interrupted: {self.saved} of {self.total} shards were done, none saved "
                "(no output folder)"
            )
        return (
            f"interrupted: {self.saved} of {self.total} shards are saved in {self.out}; "
            "rerun the same command to compute the rest"
        )
