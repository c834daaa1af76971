"""The fast path's C hashes are hashlib's and zlib's, digest for digest.

blake2.h's BLAKE2s and BLAKE2b check file-handle MACs and make READDIRPLUS cookies and verifiers
that rpcsrv.export makes with hashlib.blake2s/blake2b; fp_core.h's CRC-32 keys the duplicate
request cache as rpcsrv.svc's zlib.crc32 does. A difference would be handles the fast path
rejects, cookies that do not resume, or retransmissions it does not recognise. rpcsrv.fast._fast
exposes the three (blake2s, blake2b, crc32, at the end of _fast_worker.pxi); these tests hold them
to the Python ones: random keys, data and digest sizes, and every length around a block boundary
(64-byte blocks for BLAKE2s, 128-byte for BLAKE2b) with the key lengths and digest sizes at their
ends."""
from __future__ import annotations

import hashlib
import os
import zlib

import pytest
from hypothesis import example, given, settings, strategies as st

from rpcsrv.fast import _fast

# lengths around the block boundaries: a keyed hash's key is a block of its own before the data,
# the last block is compressed with the final flag, and an exact multiple ends on a full block
BOUNDARY_LENGTHS = sorted({b * k + d for b in (64, 128) for k in (1, 2, 3) for d in (-1, 0, 1)} | {0, 1})


def data_strategy(block: int):
    # random lengths up to about 4 KiB, and lengths a byte either side of a multiple of the block
    near_boundary = st.tuples(st.integers(1, 4096 // block), st.integers(-1, 1)).map(lambda kd: kd[0] * block + kd[1])
    return st.one_of(st.binary(max_size=4200),
                     near_boundary.flatmap(lambda n: st.binary(min_size=n, max_size=n)))


@settings(max_examples=600, deadline=None)
@given(key=st.binary(max_size=32), data=data_strategy(64), size=st.integers(1, 32))
@example(key=b"", data=b"", size=32)
@example(key=b"k" * 32, data=b"", size=32)
@example(key=b"", data=b"abc", size=32)                     # RFC 7693 appendix B's message
def test_blake2s_is_hashlibs(key, data, size):
    assert _fast.blake2s(key, data, size) == hashlib.blake2s(data, key=key, digest_size=size).digest()


@settings(max_examples=600, deadline=None)
@given(key=st.binary(max_size=64), data=data_strategy(128), size=st.integers(1, 64))
@example(key=b"", data=b"", size=64)
@example(key=b"k" * 64, data=b"", size=64)
@example(key=b"", data=b"abc", size=64)                     # RFC 7693 appendix A's message
def test_blake2b_is_hashlibs(key, data, size):
    assert _fast.blake2b(key, data, size) == hashlib.blake2b(data, key=key, digest_size=size).digest()


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
def test_blake2_at_block_boundaries(n):
    data = bytes((7 * i + 3) & 0xFF for i in range(n))
    for keylen in (0, 1, 31, 32):
        key = os.urandom(keylen)
        for size in (1, 8, 16, 31, 32):
            assert _fast.blake2s(key, data, size) == hashlib.blake2s(data, key=key, digest_size=size).digest()
    for keylen in (0, 1, 32, 63, 64):
        key = os.urandom(keylen)
        for size in (1, 8, 32, 63, 64):
            assert _fast.blake2b(key, data, size) == hashlib.blake2b(data, key=key, digest_size=size).digest()


def test_blake2_as_the_export_uses_them():
    # rpcsrv.export.readdir's cookie (BLAKE2b-64 of a name) and verifier (BLAKE2s-64 of an inode
    # number), handles.py's MAC and derived keys (BLAKE2s, 32-byte keys)
    key = bytes(range(32))
    for name in (b".", b"a", b"x" * 255, "é".encode()):
        assert _fast.blake2b(key, name, 8) == hashlib.blake2b(name, key=key, digest_size=8).digest()
    ino = (1234567).to_bytes(8, "big")
    assert _fast.blake2s(key, ino, 8) == hashlib.blake2s(ino, key=key, digest_size=8).digest()
    assert _fast.blake2s(key, b"export-id", 32) == hashlib.blake2s(b"export-id", key=key).digest()


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=4200))
@example(b"")
@example(b"123456789")                                       # the CRC catalogue's check: cbf43926
def test_crc32_is_zlibs(data):
    assert _fast.crc32(data) == zlib.crc32(data)


def test_crc32_check_value_and_long_inputs():
    assert _fast.crc32(b"") == 0 == zlib.crc32(b"")
    assert _fast.crc32(b"123456789") == 0xCBF43926
    for data in (bytes(range(256)) * 4096, b"\xff" * 65537, os.urandom(3 << 20)):
        assert _fast.crc32(data) == zlib.crc32(data)


def test_rfc_7693_vectors():
    # the RFC's own digests of "abc" (appendices A and B), without hashlib
    assert _fast.blake2b(b"", b"abc", 64).hex() == (
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
        "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")
    assert _fast.blake2s(b"", b"abc", 32).hex() == "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
