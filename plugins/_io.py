"""napari's ways in: a reader for project folders, a CSV writer for landmarks, the sample project."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_reader", "sample_project", "write_points"]

WIDGET = ("scn-annotator", "Landmark annotator")


def _dock(location: str) -> bool:
    """Open the project in the annotator widget of the current viewer (docking it if needed)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return False
    _, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    if widget.location != location:
        widget.open_project(location)
    return True


def _project_folder(path: str | list[str]) -> Path | None:
    """The project a path names: a folder holding ``project.json``, or that file itself."""
    if isinstance(path, list):
        return None
    candidate = Path(path)
    folder = candidate.parent if candidate.name == "project.json" else candidate
    return folder.resolve() if (folder / "project.json").is_file() else None


def get_reader(path: str | list[str]) -> Callable[[Any], list] | None:
    """Claims a folder that holds an scn-annotator project (or its ``project.json``), nothing else."""
    if _project_folder(path) is None:
        return None

    def read(location: str) -> list:
        folder = _project_folder(location)
        if folder is not None and _dock(str(folder)):
            return [(None,)]  # the widget shows the project; no layer of our own to add
        return []

    return read


def write_points(path: str, data: np.ndarray, attributes: dict) -> list[str]:
    """Save a landmarks layer as a wide CSV in pixels (``image,<name>_x,<name>_y,...``).

    Points without a landmark name are written as ``point<i>``. napari hands writers
    the layer's data coordinates, which for the annotator's layers are image pixels
    (the physical size lives in the layer's scale).
    """
    from scn_annotator.io.landmark_files import write_csv

    features = attributes.get("features")
    names = (
        list(features["name"])
        if features is not None and "name" in features
        else [f"point{i}" for i in range(len(data))]
    )
    rows_cols = np.asarray(data, dtype=float)[:, -2:] if len(data) else np.zeros((0, 2))
    metadata = attributes.get("metadata") or {}
    image = metadata.get("scn_image") or attributes.get("name", "image")
    header = ["image", *[f"{n}_{axis}" for n in names for axis in ("x", "y")]]
    write_csv(path, header, [[image, *[f"{v:.3f}" for r, c in rows_cols for v in (c, r)]]])
    return [str(Path(path))]


def sample_project() -> list:
    """Generate the demo project (phantom hand radiographs, 12 annotated) and open it."""
    from scn_annotator.app.sample_project import generate_sample
    from scn_annotator.app.sample_project import sample_project as build
    from scn_annotator.io.images import read_image
    from scn_annotator.io.landmark_files import read_landmarks

    root = Path.home() / ".cache" / "scn-annotator" / "sample"
    folder = root / "project"
    if not (folder / "project.json").exists():
        truth = read_landmarks(generate_sample(root / "data", count=40, seed=7))
        build(folder, root / "data" / "images", truth.points, sorted(truth.points)[:12]).close()
    image = read_image(next((root / "data" / "images").glob("*.mha")))
    metadata = {"scn_project": str(folder)}
    return [(image.pixels, {"name": "sample radiograph", "metadata": metadata, "scale": image.spacing[::-1]}, "image")]
