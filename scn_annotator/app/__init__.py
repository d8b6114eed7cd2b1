"""The app layer: what the CLI and the napari plugin do, without any Qt.

Project operations (train, predict, evaluate on a project or on loose files), the
annotation session, the background worker, the conditioning helper and the sample
project. The plugin is a thin set of widgets over these.
"""
