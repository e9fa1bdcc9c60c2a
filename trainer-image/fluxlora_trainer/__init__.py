"""The FLUX.1-dev LoRA trainer that runs inside the Job's container.

It honours the contract in fluxlora_api.contract: TrainingConfig in, status.progress patched,
TrainingResult in the termination message, ExitCode out.
"""
