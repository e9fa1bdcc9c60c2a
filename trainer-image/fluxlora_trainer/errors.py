"""The ways a run ends badly other than a crash (see fluxlora_api.contract.ExitCode)."""


class BadInput(Exception):
    """The dataset or config cannot be trained: the message names the file or field and the
    problem. Ends with ExitCode.BAD_INPUT, which the Job never retries."""


class Stopped(Exception):
    """A signal (SIGTERM) stopped the run: the pod is being evicted, preempted or deleted.
    Ends with ExitCode.RETRYABLE; the retry resumes from the last checkpoint."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(
            f"stopped by {signal_name} (the pod is being evicted, preempted or deleted)"
        )
