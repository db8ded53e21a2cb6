"""C2SP chunked-encryption v1 (AEAD_AES_256_GCM, HKDF-Expand SHA-512, 16 KiB chunks).

Built on cryptography's hazmat ``AESGCM`` and ``HKDFExpand`` (cryptography 41+), compatible
with pyca's ``cryptography.cobblestone.Cobblestone256Encryptor/Decryptor`` (cryptography 50+):

* ``key(32) || base_nonce(12) || commitment(32) = HKDF-Expand(SHA-512, data_key,
  "c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM" || 0x00 || salt(24) || context, 76)``;
* body = ``salt || commitment || chunk_0 || ... || chunk_n``, chunk ``k`` sealed with nonce
  ``base_nonce XOR k`` (big-endian) and no associated data; the final chunk holds fewer than
  16384 bytes (possibly none), every other chunk exactly 16384.

:class:`Encryptor` streams with bounded memory; :class:`Decryptor` authenticates any run of
chunks independently (random access) after checking the commitment once.
"""

from __future__ import annotations

import hmac
import io
import os
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from envstore.errors import IntegrityError
from envstore.format import CHUNK, COMMITMENT, MAX_CHUNKS, PREFIX, SALT, TAG, WIRE_CHUNK

LABEL = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00"
_HAS_INTO = hasattr(AESGCM, "encrypt_into")

try:  # cryptography >= 50 ships the same construction natively (faster, releases the GIL)
    from cryptography.cobblestone import Cobblestone256Decryptor as _NativeDec
    from cryptography.cobblestone import Cobblestone256Encryptor as _Native
except ImportError:  # pragma: no cover - cryptography < 50
    _Native = None  # type: ignore[assignment,misc]
    _NativeDec = None  # type: ignore[assignment,misc]


def _okm(data_key: bytes | bytearray, salt: bytes, context: bytes) -> bytearray:
    """``key(32) || base_nonce(12) || commitment(32)`` (wipe it after use)."""
    if len(data_key) != 32:
        raise ValueError("data key must be 32 bytes")
    return bytearray(
        HKDFExpand(hashes.SHA512(), 76, LABEL + salt + context).derive(bytes(data_key))
    )


def _derive(data_key: bytes | bytearray, salt: bytes, context: bytes) -> tuple[AESGCM, int, bytes]:
    okm = _okm(data_key, salt, context)
    aead = AESGCM(bytes(okm[:32]))
    base = int.from_bytes(okm[32:44], "big")
    commitment = bytes(okm[44:76])
    okm[:] = bytes(76)
    return aead, base, commitment


def commits_to(data_key: bytes | bytearray, salt: bytes, context: bytes, commitment: bytes) -> bool:
    """Whether ``data_key`` is the key a body with this salt, context and commitment was
    sealed under (C2SP key commitment). The key ring checks every unwrapped candidate."""
    okm = _okm(data_key, salt, context)
    try:
        return hmac.compare_digest(bytes(okm[44:76]), commitment)
    finally:
        okm[:] = bytes(76)


class Encryptor:
    """Streaming C2SP encryptor. Write :attr:`prefix` first, then what the methods return."""

    __slots__ = (
        "_aead",
        "_base",
        "_index",
        "_native",
        "_pending",
        "finalized",
        "prefix",
    )

    def __init__(
        self,
        data_key: bytes | bytearray,
        context: bytes,
        salt: bytes | None = None,
        native: bool | None = None,
    ) -> None:
        """``salt`` fixes the salt (test vectors); ``native`` picks pyca's Cobblestone256
        (default where available and no salt is given) or the hazmat AES-GCM loop."""
        self._index = 0
        self._pending = bytearray()  # plaintext of an incomplete chunk (hazmat path)
        self.finalized = False
        if native is None:
            native = _Native is not None and salt is None
        self._native = None
        if native:
            if _Native is None or salt is not None:
                raise ValueError("native encryption needs cryptography >= 50 and a random salt")
            self._native = _Native(bytes(data_key), context)
            self.prefix = bytes(self._native.update(b""))
            return
        salt = os.urandom(SALT) if salt is None else salt
        if len(salt) != SALT:
            raise ValueError("salt must be 24 bytes")
        self._aead, self._base, commitment = _derive(data_key, salt, context)
        self.prefix = salt + commitment

    def __repr__(self) -> str:
        return f"<Encryptor chunk={self._index}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Encryptor holds key material and must not be pickled")

    def _nonce(self, index: int) -> bytes:
        if index >= MAX_CHUNKS:
            raise OverflowError("C2SP chunk limit reached")
        return (self._base ^ index).to_bytes(12, "big")

    def encrypt_full_into(self, data: memoryview, out: memoryview) -> int:
        """Seal ``len(data) // CHUNK`` full chunks of ``data`` into ``out``; bytes written.

        Only valid while no partial chunk is buffered (i.e. before any partial ``update``).
        """
        if self._pending:
            raise RuntimeError("encrypt_full_into after a partial update()")
        return self._seal(data, out)

    def _seal(self, data: memoryview, out: memoryview) -> int:
        n = len(data) // CHUNK
        if self._native is not None:
            written = self._native.update_into(data[: n * CHUNK], out)
            if written != n * WIRE_CHUNK:
                raise RuntimeError("encrypt_full_into after a partial update()")
            self._index += n
            return written
        aead, nonce, index = self._aead, self._nonce, self._index
        if _HAS_INTO:
            into = aead.encrypt_into
            for i in range(n):
                into(
                    nonce(index + i),
                    data[i * CHUNK : (i + 1) * CHUNK],
                    None,
                    out[i * WIRE_CHUNK : (i + 1) * WIRE_CHUNK],
                )
        else:  # cryptography < 45
            for i in range(n):
                out[i * WIRE_CHUNK : (i + 1) * WIRE_CHUNK] = aead.encrypt(
                    nonce(index + i), data[i * CHUNK : (i + 1) * CHUNK], None
                )
        self._index = index + n
        return n * WIRE_CHUNK

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Sealed full chunks for ``data`` (buffers an incomplete chunk)."""
        if self.finalized:
            raise ValueError("encryptor already finalized")
        if self._native is not None:
            return self._native.update(data)
        view = memoryview(data).cast("B")
        if self._pending:
            take = min(CHUNK - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < CHUNK:
                return b""
        out = bytearray(((len(self._pending) + len(view)) // CHUNK) * WIRE_CHUNK)
        mv = memoryview(out)
        pos = 0
        if len(self._pending) == CHUNK:
            pos = self._seal(memoryview(self._pending), mv)
            self._pending.clear()
        full = (len(view) // CHUNK) * CHUNK
        pos += self._seal(view[:full], mv[pos:])
        self._pending += view[full:]
        return bytes(out[:pos])

    def finalize(self) -> bytes:
        """The final (short, possibly empty) chunk."""
        if self.finalized:
            raise ValueError("encryptor already finalized")
        self.finalized = True
        if self._native is not None:
            return self._native.finalize()
        assert len(self._pending) < CHUNK
        sealed = self._aead.encrypt(self._nonce(self._index), bytes(self._pending), None)
        self._pending.clear()
        self._index += 1
        return sealed


class Decryptor:
    """Random-access C2SP decryptor: the commitment is checked once, here, before any chunk."""

    __slots__ = ("_aead", "_base", "_native", "_next")

    def __init__(self, data_key: bytes | bytearray, context: bytes, prefix: bytes) -> None:
        if len(prefix) < PREFIX:
            raise IntegrityError("ciphertext is truncated before its commitment")
        self._aead, self._base, commitment = _derive(data_key, bytes(prefix[:SALT]), context)
        if not hmac.compare_digest(commitment, bytes(prefix[SALT : SALT + COMMITMENT])):
            raise IntegrityError(
                "key commitment mismatch: wrong data key or context, or the object was altered"
            )
        # pyca's native decryptor (cryptography >= 50) for one sequential pass from chunk 0
        self._native: Any = None
        self._next = 0
        if _NativeDec is not None:
            native = _NativeDec(bytes(data_key), context)
            if native.update(bytes(prefix[:PREFIX])) == b"":
                self._native = native

    def __repr__(self) -> str:
        return "<Decryptor>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Decryptor holds key material and must not be pickled")

    def decrypt_chunks(
        self, first: int, wire: bytes | memoryview, final: int, out: bytearray | None = None
    ) -> memoryview:
        """Plaintext of consecutive chunks ``first..`` whose ciphertext is ``wire``.

        ``final`` is the index of the object's final chunk. Every chunk is authenticated before
        the result is returned; any failure raises IntegrityError and releases nothing (the
        output is wiped). ``out`` is a reusable buffer to decrypt into when large enough.
        """
        wire = memoryview(wire).cast("B")
        nfull, rest, last, size = _run_shape(first, len(wire), final)
        if out is None or len(out) < size:
            out = bytearray(size)
        mv = memoryview(out)[:size]
        aead, base = self._aead, self._base
        try:
            if _HAS_INTO:
                into = aead.decrypt_into
                for i in range(nfull):
                    into(
                        (base ^ (first + i)).to_bytes(12, "big"),
                        wire[i * WIRE_CHUNK : (i + 1) * WIRE_CHUNK],
                        None,
                        mv[i * CHUNK : (i + 1) * CHUNK],
                    )
            else:
                for i in range(nfull):
                    mv[i * CHUNK : (i + 1) * CHUNK] = aead.decrypt(
                        (base ^ (first + i)).to_bytes(12, "big"),
                        wire[i * WIRE_CHUNK : (i + 1) * WIRE_CHUNK],
                        None,
                    )
            if rest:
                mv[nfull * CHUNK :] = aead.decrypt(
                    (base ^ last).to_bytes(12, "big"), wire[nfull * WIRE_CHUNK :], None
                )
        except InvalidTag:
            mv[:] = bytes(size)
            raise IntegrityError(
                f"a chunk in {first}..{last} failed authentication (tampered, truncated, "
                "reordered or wrong key)"
            ) from None
        return mv

    def native_run(self, first: int, wire: bytes | memoryview, final: int) -> bytes | None:
        """Plaintext of chunks ``first..`` (ciphertext ``wire``) through pyca's native
        decryptor, when this run continues its one sequential pass (from chunk 0, each run
        starting where the previous one ended); None otherwise (use :meth:`decrypt_chunks`).

        Same guarantees: nothing is returned unless every chunk of the run authenticated, a
        run ending in the final chunk is finalized (end of data authenticated) before it
        returns, any failure raises IntegrityError and ends the native pass.
        """
        native = self._native
        if native is None or first != self._next:
            return None
        self._native = None  # consumed unless this run succeeds and more may follow
        wire = memoryview(wire).cast("B")
        _nfull, rest, last, size = _run_shape(first, len(wire), final)
        # Decrypt straight into the bytes object returned: a BytesIO over a fresh bytes
        # object it alone holds exports that object's own storage, and getvalue() returns
        # it without a copy once the export is released (CPython; elsewhere it copies).
        result = io.BytesIO(bytes(size))
        view = result.getbuffer()
        try:
            n = native.update_into(wire, view)
            if rest:
                tail = native.finalize()
                view[n : n + len(tail)] = tail
                n += len(tail)
            if n != size:  # pragma: no cover - the native decryptor releases full chunks
                raise ValueError("native decryption length mismatch")
        except (InvalidTag, ValueError):
            view[:] = bytes(size)  # nothing of a failed run survives, even unreferenced
            raise IntegrityError(
                f"a chunk in {first}..{last} failed authentication (tampered, truncated, "
                "reordered or wrong key)"
            ) from None
        finally:
            view.release()
        if not rest:
            self._native, self._next = native, last + 1
        return result.getvalue()


def _run_shape(first: int, wire_len: int, final: int) -> tuple[int, int, int, int]:
    """``(full chunks, final chunk's stored length or 0, last index, plaintext size)`` of a
    run of chunks from ``first`` stored in ``wire_len`` bytes; IntegrityError if impossible."""
    nfull, rest = divmod(wire_len, WIRE_CHUNK)
    last = first + nfull - 1
    if rest:
        last += 1
        if last != final or rest < TAG:
            raise IntegrityError("ciphertext chunk run has an impossible length")
    elif last >= final:
        raise IntegrityError("final chunk has full length: object truncated or extended")
    return nfull, rest, last, nfull * CHUNK + max(0, rest - TAG)


def encrypt(data_key: bytes | bytearray, context: bytes, plaintext: bytes) -> bytes:
    """One-shot helper: the whole body for ``plaintext``."""
    enc = Encryptor(data_key, context)
    return enc.prefix + enc.update(plaintext) + enc.finalize()


def decrypt(data_key: bytes | bytearray, context: bytes, body: bytes) -> bytes:
    """One-shot helper: the plaintext of a whole body (every chunk authenticated)."""
    from envstore.format import final_chunk, plain_size

    size = plain_size(len(body))
    dec = Decryptor(data_key, context, body[:PREFIX])
    return bytes(dec.decrypt_chunks(0, memoryview(body)[PREFIX:], final_chunk(size)))
