"""Migration from other client-side encryption formats to envstore (``envstore migrate``).

One module per legacy format (:mod:`.oss2fmt` for oss2 ``CryptoBucket``, :mod:`.s3ec` for the
Amazon S3 Encryption Client), the streaming decryptors (:mod:`.ciphers`), the legacy keys
(:mod:`.legacy_keys`), the sources (:mod:`.source`), one object's pipeline (:mod:`.objects`)
and the driver (:mod:`.driver`).
"""

from __future__ import annotations

from envstore.migration.driver import migrate

__all__ = ["migrate"]
