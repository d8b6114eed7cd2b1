"""napari layers for one open image: the radiograph, its landmarks and the SCN heatmaps.

Everything is laid out in physical units: each layer's scale is the pixel spacing
(mm), and heatmaps at network resolution carry the affine that maps them onto the
image. Landmarks keep one colour each (the project's), human annotations are
filled discs, occluded ones squares, model proposals rings, each with a thin dark
outline, so that the landmark's colour reads at the zoom an image opens with and
stays visible on bright bone. Doubt (by the active-learning score) is a white halo
on a layer of its own, under the point: white is no landmark's colour (the
palette's lightness stays at 0.55-0.7), and a halo leaves the joint under the
point in view. A point is never smaller on screen than ``SCREEN_SIZE`` allows,
whatever the zoom.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Points

from scn_annotator.app.annotation_session import ImageView, Shown

__all__ = ["HEATMAP_KINDS", "heatmap_data", "landmark_style", "update_layers"]

HEATMAP_KINDS = ("final", "local", "spatial")
# short enough for napari's layer list at its default width
HEATMAP_NAMES = {"final": "LA x SC", "local": "LA (local)", "spatial": "SC (spatial)"}
HEATMAP_COLORMAPS = {"final": "inferno", "local": "green", "spatial": "magenta"}  # black at zero: additive
DOUBT_COLOR = np.array([1.0, 1.0, 1.0, 0.95])  # the halo: no landmark is white
PLAIN_BORDER = np.array([0.0, 0.0, 0.0, 0.85])  # dark: a point stays visible on bright bone and on the glow
#: the outline's share of a point's size: thin enough that a ring shows its landmark's colour at 14 px
BORDER_WIDTH = 0.07
#: (smallest, largest) size of a point on screen, in screen pixels, whatever the zoom
SCREEN_SIZE = (14, 36)
#: the doubt halo's size against the point's
HALO = 1.9
SYMBOLS = {Shown.ANNOTATION: "disc", Shown.PREDICTION: "ring"}


def _rgba(hex_color: str) -> np.ndarray:
    h = hex_color.lstrip("#")
    return np.array([int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] + [1.0])


def landmark_style(view: ImageView) -> dict:
    """Data, features and per-point style of the landmarks layer."""
    data, index = view.points()
    shown = [view.landmarks[i] for i in index]
    features = {
        "landmark": np.array(index, dtype=int),
        "name": np.array([lm.info.name for lm in shown], dtype=object),
        "kind": np.array([lm.kind for lm in shown], dtype=object),
        "state": np.array([lm.state for lm in shown], dtype=object),
        "source": np.array([lm.source for lm in shown], dtype=object),
        "confidence": np.array([np.nan if lm.confidence is None else lm.confidence for lm in shown]),
        "doubt": np.array([np.nan if lm.doubt is None else lm.doubt for lm in shown]),
    }
    face = np.array([_rgba(lm.info.color) for lm in shown]).reshape(-1, 4)
    border = np.tile(PLAIN_BORDER, (len(shown), 1))
    symbol = ["square" if lm.state == "occluded" else SYMBOLS[lm.kind] for lm in shown]
    width = np.full(len(shown), BORDER_WIDTH)
    # a halo for the doubtful proposals only: a person's point is what it is, whatever the model doubts
    halo = np.array([[lm.y, lm.x] for lm in shown if lm.doubtful and lm.kind == Shown.PREDICTION], dtype=float)
    return {
        "data": data,
        "features": features,
        "face_color": face,
        "border_color": border,
        "symbol": symbol,
        "border_width": width,
        "halo": halo.reshape(-1, 2),
    }


def heatmap_data(view: ImageView, kind: str, landmark: int | None) -> np.ndarray | None:
    """One heatmap image: the selected landmark's, or the maximum over all landmarks.

    LA and SC are shown with the sign that makes the landmark's peak positive (only
    their product is fitted, so the network may learn either sign).
    """
    h = view.heatmaps
    if h is None or (kind == "spatial" and h.spatial is None):
        return None
    local, spatial = h.oriented()
    maps = {"final": h.final, "local": local, "spatial": spatial}[kind]
    image = maps[landmark] if landmark is not None else maps.max(axis=0)
    return np.clip(image, 0, None).astype(np.float32)


def _heatmap_affine(view: ImageView) -> np.ndarray:
    sx, sy = view.spacing
    return np.diag([sy, sx, 1.0]) @ view.heatmaps.transform.affine_network_to_image()


def _set(layer, **values) -> None:  # noqa: ANN001
    """Set only what changed: every napari property set is an event and often a repaint."""
    for key, value in values.items():
        current = getattr(layer, key)
        same = (
            np.array_equal(np.asarray(current, dtype=object), np.asarray(value, dtype=object))
            if isinstance(value, tuple | list | np.ndarray)
            else current == value
        )
        if not same:
            setattr(layer, key, value)


def update_layers(
    viewer,  # noqa: ANN001 - napari.Viewer
    view: ImageView,
    layers: dict,
    *,
    heatmaps: dict[str, bool],
    landmark: int | None,
    names: bool,
    new_image: bool,
) -> dict:
    """Create or update the layers of ``view``; returns them by role.

    Opening the next image is on the annotator's critical path (aim: 200 ms for a
    2,000 x 2,000 radiograph), so layers are updated in place and only what changed.
    """
    sx, sy = view.spacing
    scale = (sy, sx)
    _radiograph(viewer, view, layers, scale, new_image)
    for kind in HEATMAP_KINDS:
        _heatmap(viewer, view, layers, kind, heatmaps.get(kind, False), landmark, new_image)
    style = landmark_style(view)
    size = 0.02 * max(view.record.height * sy, view.record.width * sx)  # readable at any zoom-to-fit
    halo = _halo(viewer, layers, style, scale, size)
    points = _points(viewer, layers, style, scale, size, names)
    points.feature_defaults["landmark"] = landmark if landmark is not None else 0
    points.metadata["scn_image"] = view.record.name  # the points writer names the image by it
    # keep the order: radiograph at the bottom, heatmaps, doubt halos, landmarks on top
    order = [layers["image"], *(layers[k] for k in HEATMAP_KINDS if k in layers), halo, points]
    for target, layer in enumerate(order):
        if layer in viewer.layers:
            current = viewer.layers.index(layer)
            if current != target and target < len(viewer.layers):
                viewer.layers.move(current, target)
    return layers


def _radiograph(viewer, view: ImageView, layers: dict, scale: tuple, new_image: bool) -> None:  # noqa: ANN001
    image = layers.get("image")
    if image is None or image not in viewer.layers:
        image = viewer.add_image(
            view.pixels, name="radiograph", scale=scale, contrast_limits=view.contrast, colormap="gray"
        )
        layers["image"] = image
    elif new_image:
        image.data = view.pixels
        _set(image, scale=scale, contrast_limits=view.contrast)
    image.metadata["scn_image"] = view.record.name


def _heatmap(
    viewer,  # noqa: ANN001
    view: ImageView,
    layers: dict,
    kind: str,
    shown: bool,
    landmark: int | None,
    new_image: bool,
) -> None:
    data = heatmap_data(view, kind, landmark) if shown else None
    layer = layers.get(kind)
    if data is None:
        if layer is not None and layer in viewer.layers:
            _set(layer, visible=False)
        return
    top = max(float(data.max()), 1e-6)
    # LA and SC are low but non-zero almost everywhere; only their peaks are worth colour
    limits = (0.0, top) if kind == "final" else (0.15 * top, top)
    if layer is None or layer not in viewer.layers:
        layers[kind] = viewer.add_image(
            data,
            name=HEATMAP_NAMES[kind],
            affine=_heatmap_affine(view),
            colormap=HEATMAP_COLORMAPS[kind],
            blending="additive",
            opacity=0.55,
            contrast_limits=limits,
        )
        return
    layer.data = data
    if new_image:
        layer.affine = _heatmap_affine(view)
    _set(layer, contrast_limits=limits, visible=True)


def _halo(viewer, layers: dict, style: dict, scale: tuple, size: float) -> Points:  # noqa: ANN001
    halo: Points | None = layers.get("doubt")
    if halo is None or halo not in viewer.layers:
        halo = viewer.add_points(
            style["halo"],
            scale=scale,
            size=HALO * size,
            name="doubt",
            symbol="ring",
            face_color=DOUBT_COLOR,
            border_width=0,
            canvas_size_limits=(HALO * SCREEN_SIZE[0], HALO * SCREEN_SIZE[1]),
            opacity=0.9,
        )
        layers["doubt"] = halo
        return halo
    _set(halo, scale=scale)
    with halo.events.blocker_all():
        halo.data = style["halo"]
        halo.size = HALO * size
    halo.refresh()
    return halo


def _points(viewer, layers: dict, style: dict, scale: tuple, size: float, names: bool) -> Points:  # noqa: ANN001
    points: Points | None = layers.get("points")
    if points is None or points not in viewer.layers:
        if not len(style["data"]):
            style.update(face_color="white", border_color="black", symbol="disc", border_width=BORDER_WIDTH)
        points = viewer.add_points(
            style["data"],
            features=style["features"],
            scale=scale,
            size=size,
            name="landmarks",
            face_color=style["face_color"],
            border_color=style["border_color"],
            symbol=style["symbol"],
            border_width=style["border_width"],
            border_width_is_relative=True,
            canvas_size_limits=SCREEN_SIZE,
            text={"string": "{name}", "size": 9, "color": "white", "anchor": "upper_left", "visible": names},
        )
        layers["points"] = points
        return points
    _set(points, scale=scale)
    with points.events.blocker_all():  # one repaint for the whole update, not one per property
        points.data = style["data"]
        points.features = style["features"]
        if len(style["data"]):  # napari cannot take an empty colour array
            points.face_color = style["face_color"]
            points.border_color = style["border_color"]
            points.symbol = style["symbol"]
            points.border_width = style["border_width"]
        points.size = size
        points.text.visible = names
    points.refresh()
    return points
