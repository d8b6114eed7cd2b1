"""The napari plugin (``scn_annotator.plugins``): the only place Qt is imported."""
