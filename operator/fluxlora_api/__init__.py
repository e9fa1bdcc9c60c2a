"""The LoRATrainingJob API: the one definition shared by the CRD, the operator, the gateway and
the trainer (hyperparameters, defaults, ranges, status shape and the trainer contract)."""
