"""Uploaded datasets in S3, under `<prefix>/<namespace>/<token>/<file>`: a namespace's uploads
are found only through its own keys, and the random token makes their names unguessable. Bytes
arrive part by part into an S3 multipart upload, so no upload is ever held whole in memory.
Tickets of the two-step upload (the hosted SDK's) are small objects under `<prefix>/.tickets/`
(no namespace name starts with a dot), so every gateway replica sees them. S3 credentials and
endpoint come from the gateway's environment, as for output downloads."""

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxlora_gateway.outputs import split_s3_url

PART_BYTES = 8 * 1024 * 1024  # S3 parts are at least 5 MiB, but the last
TICKET_SECONDS = 3600  # how long the PUT of a two-step upload may wait
TOKEN_BYTES = 24
MAX_LINK_SECONDS = 7 * 24 * 3600  # the longest a presigned S3 link may last (SigV4)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass
class Ticket:
    """What one PUT may store: the file (its own token, not the ticket's, so its download URL
    never lets anyone write) and at most how many bytes."""

    namespace: str
    file_token: str
    filename: str
    size: int
    created: float


@dataclass
class UploadStore:
    url: str  # s3://bucket/prefix
    max_bytes: int
    link_seconds: int
    _s3: Any = field(default=None, init=False, repr=False)

    @property
    def bucket(self) -> str:
        return split_s3_url(self.url)[0]

    def key(self, namespace: str, token: str, filename: str) -> str:
        prefix = split_s3_url(self.url)[1].strip("/")
        return "/".join(part for part in (prefix, namespace, token, filename) if part)

    def _ticket_key(self, token: str) -> str:
        return self.key(".tickets", token + ".json", "")

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3  # the operator's extra ships it; imported here so the operator never pays

            self._s3 = boto3.session.Session().client("s3")
        return self._s3

    # --- the two-step upload's tickets --------------------------------------------------------

    def new_ticket(self, namespace: str, filename: str, size: int) -> tuple[str, Ticket]:
        """A ticket for one upload; (its token, the ticket)."""
        token = new_token()
        ticket = Ticket(namespace, new_token(), filename, size, time.time())
        body = json.dumps(ticket.__dict__).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._ticket_key(token), Body=body)
        return token, ticket

    def ticket(self, token: str) -> Ticket | None:
        """The ticket, if it exists and has not expired."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._ticket_key(token))["Body"]
            ticket = Ticket(**json.loads(body.read()))
        except self.s3.exceptions.NoSuchKey:
            return None
        if time.time() - ticket.created > TICKET_SECONDS:
            return None
        return ticket

    def drop_ticket(self, token: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self._ticket_key(token))

    # --- multipart writing --------------------------------------------------------------------

    def start(self, key: str, content_type: str) -> str:
        answer = self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return answer["UploadId"]

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        answer = self.s3.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def complete(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    def abort(self, key: str, upload_id: str) -> None:
        self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    # --- reading ------------------------------------------------------------------------------

    def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is none."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except self.s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise

    def download(self, key: str, path: Path) -> bool:
        """The stored object into `path`; False when there is none."""
        if self.size(key) is None:
            return False
        self.s3.download_file(self.bucket, key, str(path))
        return True

    def link(self, key: str) -> str:
        """A presigned GET URL of the object, for the trainer: it downloads the dataset from S3
        directly, needing neither the gateway nor credentials."""
        return self.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.link_seconds,
        )
