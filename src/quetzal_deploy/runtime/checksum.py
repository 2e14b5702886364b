"""The content checksum the front end stores in each object's `checksum` metadata.

Quenedi (systragroup/quetzal-network-editor, `src/AWSClient.js`: `putObject` / `uploadObject`)
writes `Metadata: {user_email, checksum}` where `checksum` is the lowercase hex SHA-256 of the
object's body, and skips a `putObject` when the stored checksum matches. Writing the same value
here lets the front end, the Lambda handler and `invoke upload-scenarios` agree on what changed.
Standard library only: the Lambda image imports this module too.
"""

import hashlib

CHECKSUM_ALGORITHM = "sha256"
CHUNK_BYTES = 1024 * 1024


def bytes_checksum(data: bytes) -> str:
    """Hex SHA-256 of `data`, as the front end computes it."""
    return hashlib.new(CHECKSUM_ALGORITHM, data).hexdigest()
