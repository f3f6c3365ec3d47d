"""Beam adapters over the core: one stage per module, each returning good records and failures."""
