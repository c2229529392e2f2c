"""Evidence files: content-addressed, stored once, atomically, names and sizes checked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from handoff.errors import EvidenceError, EvidenceNotFound, EvidenceTooLarge
from handoff.evidence import EvidenceStore, normalize_content_type, sanitize_filename

JPEG = b"\xff\xd8\xff\xe0" + b"photo of a broken kettle" * 100


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence", max_bytes=1024 * 1024)


async def test_put_stores_by_sha256_with_its_metadata(store: EvidenceStore) -> None:
    ref = await store.put("kettle.jpg", "image/jpeg", JPEG)
    digest = hashlib.sha256(JPEG).hexdigest()
    assert (ref.filename, ref.content_type, ref.sha256, ref.size) == (
        "kettle.jpg", "image/jpeg", digest, len(JPEG))
    path = store.root / digest[:2] / digest[2:4] / digest
    assert path == store.path(digest) and path.read_bytes() == JPEG
    meta = json.loads(path.with_name(digest + ".json").read_text(encoding="utf-8"))
    assert meta["filename"] == "kettle.jpg" and meta["content_type"] == "image/jpeg"
    assert meta["size"] == len(JPEG)
    assert await store.read(digest) == JPEG and store.exists(digest)


async def test_same_bytes_are_stored_once(store: EvidenceStore) -> None:
    refs = await asyncio.gather(*[store.put(f"copy{i}.jpg", "image/jpeg", JPEG)
                                  for i in range(10)])
    assert len({r.sha256 for r in refs}) == 1
    assert [r.filename for r in refs] == [f"copy{i}.jpg" for i in range(10)]
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted([refs[0].sha256, refs[0].sha256 + ".json"])


async def test_no_temporary_files_are_left_behind(store: EvidenceStore) -> None:
    await store.put("a.png", "image/png", b"a")
    await store.put("b.png", "image/png", b"b")
    assert not [p for p in store.root.rglob(".tmp-*")]


async def test_a_file_over_the_limit_is_refused_and_nothing_written(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "ev", max_bytes=100)
    with pytest.raises(EvidenceTooLarge) as caught:
        await store.put("big.jpg", "image/jpeg", b"x" * 101)
    assert caught.value.size == 101 and caught.value.limit == 100
    assert "at most 100 bytes" in str(caught.value)
    assert not (tmp_path / "ev").exists()
    await store.put("ok.jpg", "image/jpeg", b"x" * 100)


def test_default_limit_is_ten_megabytes(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    store.check_size(10 * 1024 * 1024)
    with pytest.raises(EvidenceTooLarge):
        store.check_size(10 * 1024 * 1024 + 1)


@pytest.mark.parametrize(("given", "kept"), [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
    ("/abs/path/photo.png", "photo.png"),
    (".hidden", "hidden"),
    ("..", "file"),
    ("", "file"),
    ("a\x00b\nc.jpg", "a_b_c.jpg"),
    ('we<ird>:"|?*.jpg', "we_ird______.jpg"),
    ("退货照片.jpg", "退货照片.jpg"),
    ("x" * 300 + ".jpeg", "x" * 115 + ".jpeg"),
])
def test_filenames_are_sanitised(given: str, kept: str) -> None:
    assert sanitize_filename(given) == kept


async def test_a_traversing_name_never_leaves_the_store(store: EvidenceStore,
                                                        tmp_path: Path) -> None:
    ref = await store.put("../../../outside.jpg", "image/jpeg", b"data")
    assert ref.filename == "outside.jpg"
    assert not (tmp_path / "outside.jpg").exists()
    inside = [p.resolve() for p in store.root.rglob("*") if p.is_file()]
    assert all(store.root.resolve() in p.parents for p in inside)


@pytest.mark.parametrize(("given", "kept"), [
    ("image/JPEG", "image/jpeg"),
    ("image/png; charset=binary", "image/png"),
    ("", "application/octet-stream"),
    (None, "application/octet-stream"),
    ("not a type", "application/octet-stream"),
    ("text/html\r\nX-Evil: 1", "application/octet-stream"),
])
def test_content_types_are_normalised(given: str | None, kept: str) -> None:
    assert normalize_content_type(given) == kept


async def test_bad_digests_and_missing_files(store: EvidenceStore) -> None:
    with pytest.raises(EvidenceError):
        store.path("../../etc/passwd")
    with pytest.raises(EvidenceNotFound):
        await store.read("0" * 64)


async def test_an_unwritable_store_raises_evidence_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_bytes(b"")
    store = EvidenceStore(blocker / "evidence")
    with pytest.raises(EvidenceError):
        await store.put("a.jpg", "image/jpeg", b"data")


async def test_a_damaged_copy_is_replaced(store: EvidenceStore) -> None:
    ref = await store.put("a.jpg", "image/jpeg", JPEG)
    path = store.path(ref.sha256)
    path.write_bytes(JPEG[:10])  # e.g. restored from a broken backup
    os.sync()
    await store.put("a.jpg", "image/jpeg", JPEG)
    assert path.read_bytes() == JPEG
