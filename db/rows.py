"""Row lookups and the user's name, shared by the project and its repositories."""

from __future__ import annotations

import getpass
import os

from sqlalchemy import select
from sqlalchemy.orm import Session

from scn_annotator.errors import ScnError

from .models import Image, ImagePrediction, ModelVersion

__all__ = ["current_run", "current_version_id", "image_row", "user_name"]


def user_name(user: str | None) -> str:
    """The name an action is recorded under: given, ``SCN_USER``, or the login name."""
    if user:
        return user
    try:
        return os.environ.get("SCN_USER") or getpass.getuser()
    except (KeyError, OSError):  # no user name in containers without a passwd entry
        return "unknown"


def image_row(s: Session, image: int | str) -> Image:
    """An image by id or by name; one line naming it when the project has none."""
    row = s.get(Image, image) if isinstance(image, int) else s.scalar(select(Image).where(Image.name == image))
    if row is None:
        raise ScnError(f"no image {image!r} in this project")
    return row


def current_version_id(s: Session) -> int | None:
    return s.scalar(select(ModelVersion.id).where(ModelVersion.is_current))


def current_run(s: Session, image_id: int, version_id: int | None = None) -> ImagePrediction | None:
    """The latest (not superseded) run of the current or given model version on one image."""
    if version_id is None:
        version_id = current_version_id(s)
        if version_id is None:
            return None
    return s.scalar(
        select(ImagePrediction).where(
            ImagePrediction.image_id == image_id,
            ImagePrediction.model_version_id == version_id,
            ImagePrediction.superseded.is_(False),
        )
    )
