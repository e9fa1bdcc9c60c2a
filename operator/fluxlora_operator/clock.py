"""Kubernetes timestamps: RFC 3339 in UTC, seconds precision (metav1.Time)."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def hosted_created_at(creation_timestamp: str) -> str:
    """The hosted API's created_at form (2023-04-01T12:34:56.789Z) of a creationTimestamp."""
    moment = parse_time(creation_timestamp).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
