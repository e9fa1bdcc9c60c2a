"""From a LoRATrainingJob to its trainer Job, as pure functions: the resource's identity and
typed spec (`custom_resource`), what the spec and the operator's settings resolve to
(`run_settings`), the pod's paths (`mounts`) and the batch/v1 Job (`trainer_job`)."""
