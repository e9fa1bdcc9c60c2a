"""The FLUX.1-dev LoRA trainer that runs inside the Job's container.

It honours the contract in fluxlora_api.contract: TrainingConfig in, progress reported to the
operator, TrainingResult in the termination message, ExitCode out.
"""

from fluxlora_trainer.quiet import silence_unactionable_warnings

# Before any of its modules imports those libraries (their warnings come at import time).
silence_unactionable_warnings()
