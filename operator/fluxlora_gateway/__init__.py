"""The hosted trainer's REST API, served by the cluster: requests become LoRATrainingJobs."""
