"""The output destination: s3://bucket/prefix (credentials and endpoint from the environment)
or a directory (a mounted volume, or any local path for local runs). Files are addressed by
name under the destination; their URLs are what the result lists."""

import shutil
from pathlib import Path
from urllib.parse import urlsplit


class Destination:
    """Where one run's files go. Subclasses know one kind of store."""

    def url(self, name: str) -> str:
        raise NotImplementedError

    def put(self, local: Path, name: str) -> str:
        """Store `local` as `name`; returns its URL."""
        raise NotImplementedError

    def get(self, name: str, local: Path) -> None:
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        """Names under `prefix` (relative to the destination)."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError


class DirectoryDestination(Destination):
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, name: str) -> str:
        return str(self.root / name)

    def put(self, local: Path, name: str) -> str:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(local, partial)
        partial.replace(target)  # readers never see half a file
        return str(target)

    def get(self, name: str, local: Path) -> None:
        shutil.copyfile(self.root / name, local)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".partial")
        )

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


class S3Destination(Destination):
    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.session.Session().client("s3")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def put(self, local: Path, name: str) -> str:
        self.client.upload_file(str(local), self.bucket, self._key(name))
        return self.url(name)

    def get(self, name: str, local: Path) -> None:
        self.client.download_file(self.bucket, self._key(name), str(local))

    def list(self, prefix: str) -> list[str]:
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        start = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            names += [item["Key"][start:] for item in page.get("Contents", [])]
        return sorted(names)

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))


def open_destination(output: str) -> Destination:
    parts = urlsplit(output)
    if parts.scheme == "s3":
        return S3Destination(parts.netloc, parts.path)
    if parts.scheme:
        raise ValueError(f"output: unsupported destination {output!r} (use s3:// or a path)")
    return DirectoryDestination(Path(output))
