"""Image files: safe names from any character name, atomic writes, never outside the folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from imagequeue_common.assets import AssetStore, slugify

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 100


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Aria Voss", "aria_voss"),
        ("Zoë Ångström", "zoe_angstrom"),
        ("../../etc/passwd", "etc_passwd"),
        ("..", "character"),
        ("a/b\\c", "a_b_c"),
        ("nul\x00byte", "nul_byte"),
        ("Ариа 星", "character"),
        ("x" * 300, "x" * 40),
        ("   ", "character"),
    ],
)
def test_slug_holds_only_safe_characters(name: str, slug: str) -> None:
    assert slugify(name) == slug
    assert re.fullmatch(r"[a-z0-9_]+", slugify(name))


def test_save_writes_the_seed_file_name_and_url(tmp_path: Path) -> None:
    store = AssetStore(tmp_path, "/assets")
    saved = store.save_character_image("693db123", "Aria Voss", PNG, 1702567890)
    assert saved.filename == "aria_voss_693db123_1702567890.png"
    assert saved.url == "/assets/characters/aria_voss_693db123_1702567890.png"
    assert Path(saved.path).read_bytes() == PNG
    assert Path(saved.path).parent == tmp_path / "characters"
    assert os.listdir(tmp_path / "characters") == [saved.filename]  # no temp file left


def test_same_second_never_overwrites(tmp_path: Path) -> None:
    store = AssetStore(tmp_path)
    first = store.save_character_image("c1", "Luna", PNG, 100)
    second = store.save_character_image("c1", "Luna", PNG + b"2", 100)
    assert first.filename != second.filename
    assert Path(first.path).read_bytes() == PNG
    assert second.filename == "luna_c1_100_2.png"


@pytest.mark.parametrize("hostile", ["../../evil", "a/b", "", "x\x00", "é"])
def test_hostile_character_id_is_refused(tmp_path: Path, hostile: str) -> None:
    store = AssetStore(tmp_path / "assets")
    with pytest.raises(ValueError, match="not a plain identifier"):
        store.save_character_image(hostile, "Aria", PNG, 1)
    assert not (tmp_path / "evil").exists()


def test_hostile_name_stays_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "assets"
    saved = AssetStore(root).save_character_image("c1", "../../../../tmp/owned", PNG, 5)
    assert Path(saved.path).resolve().parent == (root / "characters").resolve()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [Path(saved.path)]


def test_remove_takes_only_a_file_name(tmp_path: Path) -> None:
    store = AssetStore(tmp_path)
    saved = store.save_character_image("c1", "Aria", PNG, 1)
    with pytest.raises(ValueError, match="not an image file name"):
        store.remove("../characters/" + saved.filename)
    store.remove(saved.filename)
    assert not Path(saved.path).exists()
    store.remove(saved.filename)  # twice is fine
