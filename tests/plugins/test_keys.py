"""The shortcut table: napari's own keys stay napari's, and the help lists every one of ours."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from scn_annotator.plugins._keys import SHORTCUTS, help_html

pytestmark = pytest.mark.gui


def test_our_keys_leave_napari_s_own_keys_alone():
    from app_model.types import KeyBinding
    from napari.utils.shortcuts import _default_shortcuts

    # ours are bound on the viewer and on the landmarks layer: napari's keys there are the viewer's
    # (its first block, up to the labels layer's) and the points layer's
    names = list(_default_shortcuts)
    viewer = names[: names.index("napari:activate_labels_erase_mode")]
    points = [n for n in names if "points" in n or n.endswith("_in_slice") or n == "napari:select_all_data"]
    where = viewer + points
    napari_keys = {
        str(KeyBinding.from_int(int(k))) if isinstance(k, int) else str(k)
        for name in where
        for k in _default_shortcuts[name]
    }
    assert {"2", "3", "4", "Shift+A"} <= napari_keys
    ours = {str(KeyBinding.from_str(key)) for key in SHORTCUTS}
    assert not ours & napari_keys, ours & napari_keys


def test_the_help_lists_every_shortcut_with_what_it_does():
    html = help_html()
    for key, (_, description) in SHORTCUTS.items():
        assert f"<b>{key.replace('-', '+')}</b></td><td>{description}</td>" in html
