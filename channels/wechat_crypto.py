"""The WeChat official account's signatures and its encrypted ("safe") message mode.

Plain mode: ``signature = sha1(sorted([token, timestamp, nonce]) joined)``. Safe mode adds
``msg_signature = sha1(sorted([token, timestamp, nonce, encrypt]) joined)`` and an AES-256-CBC
payload: the key is the base64 of the 43-character EncodingAESKey plus ``=``, the IV is the
key's first 16 bytes, PKCS#7 padding to blocks of 32 bytes, and the plaintext is
``16 random bytes + 4-byte big-endian length + message + AppID``. The cipher is the
`cryptography` package's; nothing here is home-made but the framing WeChat prescribes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from channels.base import ChannelError

AES_KEY_CHARS = 43
BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16


class WeChatCryptoError(ChannelError):
    """A signature does not match or an encrypted message cannot be decrypted."""


def signature(*parts: str) -> str:
    """The SHA-1 hex digest of the parts sorted and joined, as WeChat signs requests."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def check_signature(expected: str, *parts: str) -> bool:
    """Whether `expected` is the signature of `parts` (compared in constant time)."""
    return hmac.compare_digest(signature(*parts).encode(), expected.lower().encode())


def _pad(data: bytes) -> bytes:
    amount = BLOCK - len(data) % BLOCK
    return data + bytes([amount]) * amount


def _unpad(data: bytes) -> bytes:
    if not data:
        raise WeChatCryptoError("the decrypted message is empty")
    amount = data[-1]
    if not 1 <= amount <= BLOCK or data[-amount:] != bytes([amount]) * amount:
        raise WeChatCryptoError("the decrypted message has bad padding")
    return data[:-amount]


class MessageCrypto:
    """Encrypts and decrypts the messages of one official account in safe mode.

    Args:
        token: the Token configured on the WeChat platform.
        encoding_aes_key: the 43-character EncodingAESKey.
        app_id: the account's AppID; decrypted messages must end with it.
    """

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        if len(encoding_aes_key) != AES_KEY_CHARS:
            raise ValueError(f"the EncodingAESKey must be {AES_KEY_CHARS} characters")
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("the EncodingAESKey is not base64") from exc
        if len(key) != 32:  # pragma: no cover - 43 base64 characters are always 32 bytes
            raise ValueError("the EncodingAESKey must decode to 32 bytes")
        self.token = token
        self.app_id = app_id
        self._key = key

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: bytes, *, random: bytes | None = None) -> str:
        """The base64 ciphertext of `message` (the ``Encrypt`` element's text)."""
        prefix = os.urandom(16) if random is None else random
        if len(prefix) != 16:
            raise ValueError("the random prefix must be 16 bytes")
        plain = prefix + struct.pack(">I", len(message)) + message + self.app_id.encode()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(_pad(plain)) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> bytes:
        """The message inside an ``Encrypt`` element; WeChatCryptoError if it is not ours."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WeChatCryptoError("the encrypted message is not base64") from exc
        if not data or len(data) % 16:
            raise WeChatCryptoError("the encrypted message is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = _unpad(decryptor.update(data) + decryptor.finalize())
        if len(plain) < 20:
            raise WeChatCryptoError("the decrypted message is too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, app_id = plain[20:20 + length], plain[20 + length:]
        if len(message) != length or app_id != self.app_id.encode():
            raise WeChatCryptoError("the encrypted message is not for this AppID")
        return message

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The ``msg_signature`` of an encrypted message."""
        return signature(self.token, timestamp, nonce, encrypted)
