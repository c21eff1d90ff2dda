"""Synthesis: SoundFont catalog, random piano rolls, rendering, Ray Data to Parquet shards."""
