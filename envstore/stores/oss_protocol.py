"""The ``oss`` protocol entry point: ossfs where installed, else envstore's oss2 filesystem.

fsspec resolves every protocol of a chained URL (``envstore::oss://b/k``) before envstore sees
it, so ``oss`` must name an importable class even without ossfs.  This module answers with
ossfs's class when ossfs is installed (plain ``oss://`` users keep ossfs) and with
:class:`envstore.stores.oss.OSSFileSystem` otherwise.  envstore itself always reads and
writes OSS through its own oss2 filesystem, whichever class this returns.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "OSSFileSystem":
        raise AttributeError(name)
    try:
        from ossfs import OSSFileSystem
    except ImportError:
        from envstore.stores.oss import OSSFileSystem
    return OSSFileSystem
