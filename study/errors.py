"""The project's error types, in two families that the command line maps to exit codes.

A `StudyError` is a problem with the user's input or environment that the user can fix: the
command line prints `error: <message>` on one line and exits with code 2. A `WorkFailed` is not
the user's input: the work itself failed (training diverged, every worker died, an export does
not match its model); the command line prints `<what> failed: <message>` on one line and exits
with code 1.

An error names the settings that would fix it as the library takes them (`fresh`, `state_dir`),
never as command-line flags; the command line shows its own flag for each of `settings`.
"""


class StudyError(Exception):
    """Base class for errors the user can act on; `settings` names the settings, by their
    keyword names, that the message suggests changing."""

    def __init__(self, message: str, *, settings: tuple[str, ...] = ()):
        super().__init__(message)
        self.settings = settings


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


class ModelError(StudyError):
    """A model URI or a model file cannot be used."""


class ServerError(StudyError):
    """An MLflow server process (the UI or a tracking server) cannot be started."""


class WorkFailed(Exception):
    """Base class for work that ran and failed; `what` names the work in the error line."""

    what = "work"


class TrainingFailed(WorkFailed):
    """Training could not produce a usable model (a NaN loss, a time budget ran out)."""

    what = "training"


class WorkersLost(WorkFailed):
    """Every local worker of a distributed sweep died before it could run a trial."""

    what = "sweep"
