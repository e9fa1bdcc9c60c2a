"""The local cluster kit: a real control plane, node, image registry and MinIO built from source,
helm, the images, and the helpers that set a training site up on them. The tests, `make demo`
and the benchmarks all import it (it is installed with the project, in editable mode)."""
