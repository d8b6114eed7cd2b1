"""The project store (``scn_annotator.db``): SQLAlchemy models, sessions and migrations.

Filled by the project-store issue; the engine in ``scn_annotator`` does not depend on it.
"""
