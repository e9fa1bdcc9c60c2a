"""The kopf operator: turns each LoRATrainingJob into one GPU batch/v1 Job and mirrors its life
into the resource's status. Pure builders (jobs, identity, mirror, effective) are kept apart from
the handlers and the Kubernetes client, so they are tested without a cluster."""
