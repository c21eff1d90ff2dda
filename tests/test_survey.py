"""Preset tables and the measured sample overlap between catalog SoundFonts."""

from mixscribe.synth import catalog
from mixscribe.synth.survey import overlap, preset_table
from tests.conftest import run_cli

PROGRAMS = (0, 4, 19, 24, 40, 42, 56, 65, 68, 70, 71, 73)


def test_preset_table_lists_every_preset_and_flags_silence():
    rows = preset_table(catalog.select(("timgm6mb",)))
    by_key = {(r.bank, r.program): r for r in rows}
    assert by_key[(0, 0)].name == "Piano 1" and not by_key[(0, 0)].silent
    assert (0, 70) in by_key and by_key[(0, 70)].name == "Bassoon"
    assert len(rows) == len(by_key) >= 128
    assert sum(r.silent for r in rows) < len(rows) / 4


def test_overlap_agrees_with_declared_families():
    report = overlap(catalog.select(("timgm6mb", "csound_gmbank", "opl3_fm")), PROGRAMS)
    i = {sf: k for k, sf in enumerate(report.ids)}
    assert report.shared[i["timgm6mb"], i["csound_gmbank"]] >= 3  # same family: shared samples
    assert report.shared[i["timgm6mb"], i["opl3_fm"]] == 0
    assert report.shared[i["csound_gmbank"], i["opl3_fm"]] == 0
    assert report.disagreements() == []
    assert "timgm6mb" in report.format()


def test_overlap_cli_fails_when_families_are_misdeclared(fake_catalog):
    entries = [catalog.get_entry("timgm6mb").__dict__, {**catalog.get_entry("csound_gmbank").__dict__, "family": "other"}]
    result = run_cli("soundfonts", "overlap", "--programs", *map(str, PROGRAMS), env=fake_catalog(entries))
    assert result.returncode == 1
    assert "DISAGREES: timgm6mb (tim) and csound_gmbank (other) share samples" in result.stdout
