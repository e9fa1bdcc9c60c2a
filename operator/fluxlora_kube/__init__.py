"""A small Kubernetes API client that knows no resource of ours: `client` carries requests as
plain dicts, `paths` is the one table of where each kind lives."""
