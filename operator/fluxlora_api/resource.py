"""Identity of the LoRATrainingJob custom resource: one definition for every part."""

GROUP = "fluxlora.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LoRATrainingJob"
PLURAL = "loratrainingjobs"
SINGULAR = "loratrainingjob"
SHORT_NAMES = ("ltj",)
CATEGORIES = ("all", "fluxlora")
CRD_NAME = f"{PLURAL}.{GROUP}"

# The trainer Job is named "<resource>-train" and Kubernetes limits Job names to 63 characters
# (they become the `batch.kubernetes.io/job-name` label), so resource names are capped here.
JOB_NAME_SUFFIX = "-train"
MAX_NAME_LENGTH = 63 - len(JOB_NAME_SUFFIX)
