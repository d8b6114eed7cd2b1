"""The readers' agreement of a project: the first table of a landmark paper, from the store in one call.

Per landmark and overall: how far the readers' points lie apart (every pair of
readers, every image both read), how far the current model's proposals lie from
each reader and from the consensus, and whether the model is within the readers'
spread (its mean distance to a reader no larger than the readers' to each other).
For each measurement (the spine's Cobb angles, or a project's own distances and
angles): the intraclass correlation over the readers and Bland-Altman limits for
each pair. In mm when every image read has a spacing, in px otherwise, and says which.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..db.store import Project
from ..engine.agreement import BlandAltman, Spread, bland_altman, icc, pairwise_distances, spread
from ..engine.evaluation import error_unit
from ..engine.measurements import Measurement

__all__ = ["AgreementReport", "MeasurementAgreement", "agreement_report", "bland_altman_plots"]


@dataclass
class MeasurementAgreement:
    name: str
    unit: str
    icc: float | None
    pairs: list[BlandAltman]
    values: dict[str, dict[str, float]]  # reader -> image -> value

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "icc": self.icc,
            "bland_altman": [
                {"first": p.first, "second": p.second, "bias": p.bias, "lower": p.lower, "upper": p.upper}
                for p in self.pairs
            ],
            "values": self.values,
        }


@dataclass
class AgreementReport:
    readers: list[str]
    unit: str
    images: int  # images read by two readers or more
    per_landmark: list[Spread]
    overall: Spread
    #: the current model against each reader and the consensus: {"reader or consensus": (per landmark, overall)}
    model: dict[str, tuple[list[Spread], Spread]] | None = None
    model_version: int | None = None
    measurements: list[MeasurementAgreement] = field(default_factory=list)

    def within_spread(self) -> list[bool] | None:
        """Per landmark: is the model's mean distance to a reader no larger than the readers' to each other?"""
        if not self.model:
            return None
        to_readers = [spreads for name, (spreads, _) in self.model.items() if name != "consensus"]
        out = []
        for k, readers in enumerate(self.per_landmark):
            means = [s[k].mean for s in to_readers if s[k].mean is not None]
            out.append(bool(means and readers.mean is not None and float(np.mean(means)) <= readers.mean))
        return out

    def to_dict(self) -> dict[str, object]:
        model = None
        if self.model is not None:
            model = {
                name: {"per_landmark": [s.to_dict() for s in spreads], "overall": overall.to_dict()}
                for name, (spreads, overall) in self.model.items()
            }
        return {
            "readers": self.readers,
            "unit": self.unit,
            "images": self.images,
            "per_landmark": [s.to_dict() for s in self.per_landmark],
            "overall": self.overall.to_dict(),
            "model": model,
            "model_version": self.model_version,
            "model_within_readers": self.within_spread(),
            "measurements": [m.to_dict() for m in self.measurements],
        }

    def table(self) -> str:
        """The paper's table: per landmark, the readers' spread and the model's distance to them, side by side."""
        head = f"{'landmark':<16}{'readers mean':>14}{'median':>9}{'p95':>9}"
        if self.model:
            head += f"{'model-readers':>15}{'model-consensus':>17}  within"
        readers = ", ".join(self.readers)
        lines = [f"{len(self.readers)} readers ({readers}), {self.images} images read twice or more, {self.unit}"]
        lines.append(head)
        within = self.within_spread() or []
        for k, s in enumerate([*self.per_landmark, self.overall]):
            line = f"{s.landmark:<16}{_f(s.mean):>14}{_f(s.median):>9}{_f(s.p95):>9}"
            if self.model:
                to_readers, to_consensus = self._model_means(k)
                flag = ("yes" if within[k] else "no") if k < len(within) else ""
                line += f"{_f(to_readers):>15}{_f(to_consensus):>17}  {flag}"
            lines.append(line)
        for m in self.measurements:
            pairs = "; ".join(f"{p.first}-{p.second} bias {p.bias:.2f} ({p.lower:.2f}, {p.upper:.2f})" for p in m.pairs)
            lines.append(f"{m.name} ({m.unit}): ICC {_f(m.icc, 3)}; Bland-Altman {pairs}")
        return "\n".join(lines)

    def _model_means(self, k: int) -> tuple[float | None, float | None]:
        """Row ``k`` (a landmark, or the overall row after them): the model's mean distance to the readers
        (averaged over readers) and to the consensus."""
        assert self.model is not None

        def row(spreads: tuple[list[Spread], Spread]) -> Spread:
            return spreads[0][k] if k < len(self.per_landmark) else spreads[1]

        means = [row(v).mean for name, v in self.model.items() if name != "consensus"]
        means = [m for m in means if m is not None]
        consensus = self.model.get("consensus")
        return (float(np.mean(means)) if means else None), (row(consensus).mean if consensus else None)


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def agreement_report(project: Project, measurements: Sequence[Measurement] | None = None) -> AgreementReport:
    """The readers' (and the current model's) agreement in ``project``; measurements default to the built-in."""
    names = project.landmark_names
    readings = project.readings.all()
    readers = sorted(readings)
    images = {im.name: im for im in project.images()}
    read_twice = sorted(i for i in images if sum(i in r for r in readings.values()) >= 2)
    spacing = {i: images[i].spacing for i in images}
    unit = error_unit(spacing[i] for i in read_twice)
    scale = {i: (spacing[i] if unit == "mm" else None) for i in images}
    distances = pairwise_distances(readings, scale)
    per = [spread(n, distances[:, k] if len(distances) else np.array([]), unit) for k, n in enumerate(names)]
    overall = spread("all", distances.ravel(), unit)
    report = AgreementReport(readers, unit, len(read_twice), per, overall)
    report.model_version, report.model = _model_against(project, readings, read_twice, scale, unit)
    defs = project.measurements() if measurements is None else list(measurements)
    report.measurements = [_measurement(m, readings, read_twice, images, scale, unit) for m in defs]
    return report


def _model_against(project: Project, readings: dict, read: list[str], scale: dict, unit: str) -> tuple:
    current = project.models.current()
    if current is None:
        return None, None
    names = project.landmark_names
    model: dict[str, dict[str, np.ndarray]] = {}
    for image in read:
        latest = project.predictions.latest(image, current.id)
        if latest is not None:
            model[image] = latest.points
    if not model:
        return current.id, None
    out: dict[str, tuple[list[Spread], Spread]] = {}
    consensus = {i: _consensus(project, readings, i) for i in model}
    for name, points in [*((r, readings[r]) for r in sorted(readings)), ("consensus", consensus)]:
        d = pairwise_distances({"model": model, name: points}, scale)
        out[name] = ([spread(n, d[:, k], unit) for k, n in enumerate(names)], spread("all", d.ravel(), unit))
    return current.id, out


def _consensus(project: Project, readings: dict, image: str) -> np.ndarray:
    """The project's consensus of an image where it has one, else the readers' mean."""
    decided = project.annotations.points(image)
    if not np.isnan(decided).all():
        return decided
    with np.errstate(all="ignore"):
        return np.nanmean(np.stack([r[image] for r in readings.values() if image in r]), axis=0)


def _measurement(
    m: Measurement, readings: dict, read: list[str], images: dict, scale: dict, length_unit: str
) -> MeasurementAgreement:
    unit = "deg" if m.unit == "deg" else length_unit
    values: dict[str, dict[str, float]] = {}
    for reader, by_image in readings.items():
        for image in read:
            if image in by_image:
                value = m.value(by_image[image], scale.get(image), images[image].height)
                values.setdefault(reader, {})[image] = value
    readers = sorted(values)
    matrix = np.array([[values[r].get(i, np.nan) for r in readers] for i in read]).reshape(len(read), len(readers))
    pairs = []
    for a, b in itertools.combinations(readers, 2):
        ba = bland_altman(a, b, [values[a].get(i, np.nan) for i in read], [values[b].get(i, np.nan) for i in read])
        if ba is not None:
            pairs.append(ba)
    return MeasurementAgreement(m.name, unit, icc(matrix), pairs, values)


def bland_altman_plots(report: AgreementReport, folder: str | Path) -> list[Path]:
    """One PNG per measurement and pair of readers (needs matplotlib: ``pip install .[plot]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for m in report.measurements:
        for p in m.pairs:
            fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
            ax.scatter(p.means, p.differences, s=12)
            for y, style in ((p.bias, "-"), (p.lower, "--"), (p.upper, "--")):
                ax.axhline(y, color="gray", linestyle=style, linewidth=1)
            ax.set_xlabel(f"mean of {p.first} and {p.second} ({m.unit})")
            ax.set_ylabel(f"{p.first} - {p.second} ({m.unit})")
            ax.set_title(f"{m.name}: bias {p.bias:.2f}, limits {p.lower:.2f} to {p.upper:.2f}")
            fig.tight_layout()
            safe = "".join(c if c.isalnum() else "_" for c in f"{m.name}-{p.first}-{p.second}")
            path = folder / f"bland_altman_{safe}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    return written
