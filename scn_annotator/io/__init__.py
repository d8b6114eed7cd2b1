"""Files in and out: radiographs, landmark files, atomic writes, the heatmap cache.

Nothing here knows about projects or the database (a test enforces it).
"""
