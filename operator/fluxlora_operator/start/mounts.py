"""Where the trainer pod's volumes are mounted: the one definition the Job's volume mounts and
the run's output folder both use."""

# Scratch space for the dataset, caches, checkpoints and outputs (not the container's /tmp).
WORK_MOUNT_PATH = "/scratch"
# The operator's output volume (--output-pvc), when runs write to a volume instead of S3.
OUTPUT_MOUNT_PATH = "/output"
# The model cache volume (--model-cache-pvc): FLUX.1-dev in the Hugging Face cache layout.
MODEL_CACHE_MOUNT_PATH = "/models"
