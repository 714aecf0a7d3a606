"""The project's error types.

Every `StudyError` is a problem with the user's input or environment that the user can fix;
the command line prints its message on one line and exits with code 2. A `TrainingFailed` is
not the user's input: the work itself failed (exit code 1).
"""


class StudyError(Exception):
    """Base class for errors the user can act on."""


class ConfigError(StudyError):
    """The study config or a search space is invalid."""


class DataError(StudyError):
    """The image folder cannot be used as a data set."""


class WeightsError(StudyError):
    """The requested backbone weights cannot be found or loaded."""


class TrackingError(StudyError):
    """The MLflow store cannot be used."""


class SweepStateError(StudyError):
    """The saved state of a sweep does not match the sweep being run."""


class WorkerIdError(StudyError):
    """A worker asked for an id that a live worker of the same sweep holds."""


class TrainingFailed(Exception):
    """Training could not produce a usable model (a NaN loss, a time budget ran out)."""


class WorkersLost(Exception):
    """Every local worker of a distributed sweep died before it could run a trial."""


class ModelError(StudyError):
    """A model URI or a model file cannot be used."""
