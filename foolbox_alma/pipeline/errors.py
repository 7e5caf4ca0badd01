"""The pipeline's one exception type."""


class EvaluationError(ValueError):
    """A problem with an evaluation's inputs or output folder (the message says which)."""
