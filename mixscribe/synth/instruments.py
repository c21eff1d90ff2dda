"""General MIDI knowledge: the 16 instrument families and each program's playable range.

The range table is the register constraint whose absence the paper's authors name as a main reason
their synthetic data failed (spec §11.2): a bassoon never plays MIDI 107. Ranges are the usual
orchestral/idiomatic written ranges (sounding pitch), clipped to the model's MIDI 24..107.
Programs that have no definite pitch (drum-like and sound effects) are excluded from generation.
"""

from __future__ import annotations

from mixscribe.schema import GM_FAMILIES, MIDI_MAX, MIDI_MIN, gm_family

__all__ = ["GM_FAMILIES", "PITCHED_PROGRAMS", "gm_family", "program_range"]


# (program, low, high): sounding MIDI range. Unlisted programs are unpitched.
_RANGES: tuple[tuple[int, int, int], ...] = (
    (0, 21, 108), (1, 21, 108), (2, 21, 108), (3, 21, 108), (4, 28, 103), (5, 28, 103),
    (6, 29, 89), (7, 29, 89),
    (8, 60, 108), (9, 79, 108), (10, 60, 96), (11, 53, 89), (12, 45, 96), (13, 65, 108),
    (14, 60, 77), (15, 50, 86),
    (16, 36, 96), (17, 36, 96), (18, 36, 96), (19, 24, 103), (20, 41, 89), (21, 41, 89),
    (22, 60, 96), (23, 41, 89),
    (24, 40, 83), (25, 40, 84), (26, 40, 86), (27, 40, 86), (28, 40, 83), (29, 40, 86),
    (30, 40, 86), (31, 52, 96),
    (32, 28, 55), (33, 28, 60), (34, 28, 60), (35, 28, 60), (36, 28, 60), (37, 28, 60),
    (38, 24, 60), (39, 24, 60),
    (40, 55, 100), (41, 48, 88), (42, 36, 76), (43, 28, 60), (44, 28, 96), (45, 28, 96),
    (46, 24, 103), (47, 40, 55),
    (48, 28, 96), (49, 28, 96), (50, 36, 96), (51, 36, 96), (52, 40, 79), (53, 40, 79),
    (54, 40, 84), (55, 48, 72),
    (56, 54, 86), (57, 40, 72), (58, 28, 58), (59, 54, 82), (60, 34, 77), (61, 34, 86),
    (62, 36, 84), (63, 36, 84),
    (64, 56, 87), (65, 49, 81), (66, 44, 76), (67, 36, 69), (68, 58, 91), (69, 52, 81),
    (70, 34, 75), (71, 50, 94),
    (72, 74, 102), (73, 60, 96), (74, 60, 96), (75, 60, 96), (76, 60, 84), (77, 55, 84),
    (78, 60, 96), (79, 60, 84),
    (80, 36, 96), (81, 36, 96), (82, 36, 96), (83, 36, 96), (84, 36, 96), (85, 36, 96),
    (86, 36, 96), (87, 36, 96),
    (88, 36, 96), (89, 36, 96), (90, 36, 96), (91, 36, 96), (92, 36, 96), (93, 36, 96),
    (94, 36, 96), (95, 36, 96),
    (96, 36, 96), (97, 36, 96), (98, 36, 96), (99, 36, 96), (100, 36, 96), (101, 36, 96),
    (102, 36, 96), (103, 36, 96),
    (104, 48, 84), (105, 48, 84), (106, 50, 82), (107, 55, 90), (108, 60, 84), (109, 55, 77),
    (110, 55, 96), (111, 60, 86),
    (112, 72, 96), (114, 52, 84),
)  # fmt: skip

PROGRAM_RANGES: dict[int, tuple[int, int]] = {
    p: (max(lo, MIDI_MIN), min(hi, MIDI_MAX)) for p, lo, hi in _RANGES
}
PITCHED_PROGRAMS: tuple[int, ...] = tuple(sorted(PROGRAM_RANGES))

GM_NAMES = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel",
    "Music Box", "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ",
    "Percussive Organ", "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica",
    "Tango Accordion", "Nylon Guitar", "Steel Guitar", "Jazz Guitar", "Clean Guitar", "Muted Guitar",
    "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics", "Acoustic Bass", "Finger Bass",
    "Pick Bass", "Fretless Bass", "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings", "Pizzicato Strings",
    "Orchestral Harp", "Timpani", "String Ensemble 1", "String Ensemble 2", "Synth Strings 1",
    "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit", "Trumpet",
    "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1",
    "Synth Brass 2", "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn",
    "Bassoon", "Clarinet", "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle",
    "Shakuhachi", "Whistle", "Ocarina", "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)",
    "Lead 4 (chiff)", "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass+lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)",
    "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)", "FX 1 (rain)", "FX 2 (soundtrack)",
    "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)",
    "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum",
    "Reverse Cymbal", "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)  # fmt: skip


def program_range(program: int, use_ranges: bool = True) -> tuple[int, int]:
    """Playable MIDI range of a GM program (the full 24..107 when ranges are switched off)."""
    if program not in PROGRAM_RANGES:
        raise KeyError(f"GM program {program} has no definite pitch")
    return PROGRAM_RANGES[program] if use_ranges else (MIDI_MIN, MIDI_MAX)
