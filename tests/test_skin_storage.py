"""Skin photos at rest: AES-256-GCM round trip, tamper detection, the key file and its creation."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from ehospital.config import Settings
from ehospital.kit.storage import LocalFileStore
from ehospital.skin.storage import (
    KEY_BYTES,
    EncryptedFileStore,
    KeyFileError,
    StoredFileError,
    load_or_create_key,
)

PHOTO = b"\xff\xd8\xff\xe0" + b"JFIF patient face photo " * 200 + b"\xff\xd9"


@pytest.fixture
def inner(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "files")


@pytest.fixture
def store(inner: LocalFileStore, tmp_path: Path) -> EncryptedFileStore:
    return EncryptedFileStore(inner, tmp_path / "keys" / "skin-photos.key")


def test_round_trip(store: EncryptedFileStore) -> None:
    key = store.put(PHOTO)
    assert store.get(key) == PHOTO
    assert store.get(store.put(b"")) == b""


def test_ciphertext_does_not_contain_the_plaintext(store: EncryptedFileStore, inner: LocalFileStore) -> None:
    key = store.put(PHOTO)
    sealed = inner.get(key)
    assert sealed != PHOTO
    assert b"JFIF" not in sealed and b"patient face" not in sealed
    assert sealed[0] == 1  # format version
    assert len(sealed) == 1 + 12 + len(PHOTO) + 16  # version, nonce, ciphertext, GCM tag
    on_disk = next(p for p in (inner.root / key[:2]).iterdir())
    assert b"patient face" not in on_disk.read_bytes()


def test_every_file_gets_its_own_nonce(store: EncryptedFileStore, inner: LocalFileStore) -> None:
    first, second = inner.get(store.put(PHOTO)), inner.get(store.put(PHOTO))
    assert first[1:13] != second[1:13]
    assert first[13:] != second[13:]


@pytest.mark.parametrize("where", [0, 5, 20, -1], ids=["version", "nonce", "ciphertext", "tag"])
def test_tampering_is_detected(store: EncryptedFileStore, inner: LocalFileStore, where: int) -> None:
    key = store.put(PHOTO)
    path = inner.root / key[:2] / key
    blob = bytearray(path.read_bytes())
    blob[where] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(StoredFileError, match=key):
        store.get(key)


def test_truncated_file_is_detected(store: EncryptedFileStore, inner: LocalFileStore) -> None:
    key = store.put(PHOTO)
    path = inner.root / key[:2] / key
    for length in (len(path.read_bytes()) - 1, 20, 0):
        path.write_bytes(path.read_bytes()[:length])
        with pytest.raises(StoredFileError):
            store.get(key)


def test_ciphertext_is_bound_to_its_purpose(inner: LocalFileStore, tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "skin-photos.key"
    photos = EncryptedFileStore(inner, key_path)
    overlays = EncryptedFileStore(inner, key_path, purpose=b"skin-overlay")
    key = photos.put(PHOTO)
    with pytest.raises(StoredFileError, match="skin-overlay"):
        overlays.get(key)
    assert photos.get(key) == PHOTO


def test_another_key_cannot_read(inner: LocalFileStore, tmp_path: Path) -> None:
    key = EncryptedFileStore(inner, tmp_path / "a" / "k.key").put(PHOTO)
    with pytest.raises(StoredFileError):
        EncryptedFileStore(inner, tmp_path / "b" / "k.key").get(key)


def test_key_file_is_created_private_and_reused(tmp_path: Path, inner: LocalFileStore) -> None:
    key_path = tmp_path / "keys" / "skin-photos.key"
    first = EncryptedFileStore(inner, key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert len(key_path.read_bytes()) == KEY_BYTES
    assert not [p for p in key_path.parent.iterdir() if p != key_path]  # no temporary left behind
    stored = first.put(PHOTO)
    assert EncryptedFileStore(inner, key_path).get(stored) == PHOTO  # a restart reads old files


def test_key_file_open_to_others_is_refused(tmp_path: Path) -> None:
    key_path = tmp_path / "k.key"
    key_path.write_bytes(os.urandom(KEY_BYTES))
    key_path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(key_path)


def test_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    key_path = tmp_path / "k.key"
    key_path.write_bytes(b"short")
    key_path.chmod(0o600)
    with pytest.raises(KeyFileError, match="5 bytes"):
        load_or_create_key(key_path)


def _create_key(path: str) -> bytes:
    return load_or_create_key(Path(path))


def test_racing_processes_and_threads_agree_on_one_key(tmp_path: Path) -> None:
    key_path = tmp_path / "race" / "skin-photos.key"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        from_processes = pool.map(_create_key, [str(key_path)] * 8)
    assert len(set(from_processes)) == 1

    other = tmp_path / "race2" / "skin-photos.key"
    results: list[bytes] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        results.append(load_or_create_key(other))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert results[0] == other.read_bytes()


def test_delete_and_age_come_from_the_wrapped_store(store: EncryptedFileStore) -> None:
    key = store.put(PHOTO)
    assert list(store.keys_older_than(3600)) == []
    assert key in list(store.keys_older_than(-1))
    store.delete(key)
    store.delete(key)  # a missing file is not an error
    with pytest.raises(FileNotFoundError):
        store.get(key)


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    store = EncryptedFileStore.from_settings(settings)
    key = store.put(PHOTO)
    assert (settings.key_dir / "skin-photos.key").is_file()
    assert (settings.data_dir / "skin-photos" / key[:2] / key).is_file()
    assert store.get(key) == PHOTO
