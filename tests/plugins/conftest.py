"""The dock widget on a real viewer, opened on the trained sample project (make_napari_viewer, pytest-qt)."""

from __future__ import annotations

import pytest


@pytest.fixture
def widget(make_napari_viewer, trained, qtbot):
    from scn_annotator.plugins._widget import AnnotatorWidget

    viewer = make_napari_viewer()
    w = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.open_project(str(trained))
    yield w
    w.training.close()
    w.session.close()
