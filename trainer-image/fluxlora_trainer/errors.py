"""The two ways a run ends badly (see fluxlora_api.contract.ExitCode)."""


class BadInput(Exception):
    """The dataset or config cannot be trained: the message names the file or field and the
    problem. Ends with ExitCode.BAD_INPUT, which the Job never retries."""
