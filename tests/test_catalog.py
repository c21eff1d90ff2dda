import shutil

import pytest

from mixscribe.errors import SoundFontError
from mixscribe.synth import catalog


def test_catalog_is_the_closed_list_in_three_families():
    entries = catalog.load_catalog()
    assert {e.package for e in entries} == {
        "fluid-soundfont-gm", "fluidr3mono-gm-soundfont", "musescore-general-soundfont",
        "timgm6mb-soundfont", "csound-soundfont", "opl3-soundfont",
    }  # fmt: skip
    fam = {e.id: e.family for e in entries}
    assert fam["fluidr3_gm"] == fam["fluidr3mono_gm"] == fam["musescore_general"] == "fluidr3"
    assert fam["timgm6mb"] == fam["csound_gmbank"] == "tim" and fam["opl3_fm"] == "opl3"
    assert all(len(e.sha256) == 64 and e.license for e in entries)


def test_installed_files_match_their_checksums():
    for sf in ("timgm6mb", "csound_gmbank"):
        entry = catalog.get_entry(sf)
        assert catalog.verify_file(entry) == entry.sha256


def test_corrupt_and_missing_soundfonts_are_named(tmp_path, fake_catalog, monkeypatch):
    good = catalog.get_entry("timgm6mb")
    bad = tmp_path / "TimGM6mb-corrupt.sf2"
    shutil.copy(good.path, bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 64)
    env = fake_catalog(
        [
            {**good.__dict__, "id": "corrupt", "path": str(bad)},
            {**good.__dict__, "id": "gone", "path": str(tmp_path / "gone.sf2")},
        ]
    )
    monkeypatch.setenv(catalog.CATALOG_ENV, env[catalog.CATALOG_ENV])
    with pytest.raises(SoundFontError, match="TimGM6mb-corrupt.sf2: checksum mismatch"):
        catalog.verify_file(catalog.get_entry("corrupt"))
    with pytest.raises(SoundFontError, match="gone.sf2: SoundFont 'gone' is missing"):
        catalog.select(("gone",))
    with pytest.raises(SoundFontError, match="'nope': not in the catalog"):
        catalog.get_entry("nope")


def test_install_of_present_soundfonts_only_verifies_them():
    from tests.conftest import run_cli

    r = run_cli("soundfonts", "install", "--soundfont", "timgm6mb", "--soundfont", "csound_gmbank")
    assert r.returncode == 0, r.stderr
    assert "ok  timgm6mb" in r.stdout and "ok  csound_gmbank" in r.stdout
