"""Proposals that follow the annotator: every confirmed landmark re-places the others.

The app's process never imports torch (napari stays light and quick to start), so
the model runs in a helper process that lives as long as the annotation session:
``python -m scn_annotator.app.conditioning LOCATION``. It keeps the current model and,
for the open image, the :class:`~scn_annotator.engine.conditioner.Conditioner` (the LA pass
runs once per image; each correction costs only the small SC pass, the decoding and
the local stage). Requests and replies are JSON lines on its stdin and stdout.

The helper also stores each set of proposals it returns as a conditioned run
(``Project.store_conditioned``), so a correction of a proposal records the proposal
the annotator really saw, and the app's own save path is not slowed by it.

:class:`ConditioningClient` is the app's side: Qt-free, torch-free, one request at
a time in flight (a newer request replaces an older one still waiting to be sent,
so a quick series of drags never queues stale work).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import ScnError

__all__ = ["ConditionedProposals", "ConditioningClient", "serve"]


@dataclass
class ConditionedProposals:
    """The landmarks of one image re-predicted given the confirmed ones."""

    image_id: int
    points: np.ndarray  # (N, 2) original pixels; the confirmed landmarks as given
    confidence: np.ndarray  # (N,)
    prediction_ids: list[int | None]  # per landmark, in the stored conditioned run
    run_id: int
    model_version: int
    hints: list[int]  # the landmarks it was conditioned on
    seconds: float  # in the helper, from request to reply


def _hint_array(hints: dict[int, tuple[float, float]], count: int) -> np.ndarray:
    array = np.full((count, 2), np.nan)
    for k, (x, y) in hints.items():
        array[int(k)] = (x, y)
    return array


class _Server:
    """The helper's state: one project, the current model, the open image's conditioner."""

    def __init__(self, location: str) -> None:
        from ..db.store import Project

        self.project = Project.open(location, user="conditioning")
        self.predictor: Any = None
        self.version: int | None = None
        self.image_id: int | None = None
        self.conditioner: Any = None

    def _model(self) -> None:
        from ..engine.inference import Predictor

        current = self.project.models.current()
        if current is None:
            raise ScnError("the project has no model yet")
        if current.id != self.version:
            self.predictor = Predictor.from_checkpoint(self.project.models.file(current), device="cpu")
            self.version, self.image_id = current.id, None
        if not self.predictor.model.config.hint_channels:  # refused before any image is read or LA pass run
            # measured: training-free conditioning costs corrections (spines 45 -> 64 per image, hands +4 %)
            raise ScnError(
                "this model was trained without hint channels, so proposals do not follow corrections; "
                "they will from the next training round on"
            )

    def open(self, image_id: int) -> dict[str, Any]:
        from ..io.images import read_image

        self._model()
        if image_id != self.image_id:
            record = self.project.image(image_id)
            image = read_image(self.project.resolve(record))
            self.conditioner = self.predictor.conditioner(image)
            self.image_id = image_id
        return {"model_version": self.version}

    def propose(self, image_id: int, hints: dict[int, tuple[float, float]]) -> dict[str, Any]:
        start = time.perf_counter()
        self.open(image_id)
        names = self.predictor.names
        prediction = self.conditioner.predict(_hint_array(hints, len(names)))
        run_id, ids = self.project.predictions.store_conditioned(
            self.version, image_id, prediction.points, prediction.confidence, sorted(hints)
        )
        seconds = time.perf_counter() - start
        return {
            "image_id": image_id,
            "points": prediction.points.tolist(),
            "confidence": prediction.confidence.tolist(),
            "prediction_ids": ids,
            "run_id": run_id,
            "model_version": self.version,
            "hints": sorted(hints),
            "seconds": seconds,
        }


def serve(location: str, stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> None:
    """Answer requests until stdin closes: ``{"op": "open"|"propose", "image_id": ..., "hints": {k: [x, y]}}``."""
    server = _Server(location)
    for line in stdin:
        if not line.strip():
            continue
        reply: dict[str, Any]
        request: Any = None
        try:
            request = json.loads(line)
            hints = {int(k): (float(v[0]), float(v[1])) for k, v in (request.get("hints") or {}).items()}
            if request["op"] == "open":
                reply = server.open(int(request["image_id"]))
            elif request["op"] == "propose":
                reply = server.propose(int(request["image_id"]), hints)
            else:
                raise ScnError(f"unknown request {request['op']!r}")
            reply["ok"] = True
        except Exception as exc:  # every failure is a reply; the helper itself keeps serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply["id"] = request.get("id") if isinstance(request, dict) else None
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


class ConditioningClient:
    """The app's handle on the helper process; starts it on first use."""

    def __init__(self, location: str | Path, data_dir: Path | None = None, image_root: Path | None = None) -> None:
        self.location = str(location)
        self.data_dir, self.image_root = data_dir, image_root
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, Future] = {}
        self.error: str | None = None  # the last failure, for the app to show once

    def _start(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        import os

        env = dict(os.environ)
        if self.data_dir is not None:
            env["SCN_DATA_DIR"] = str(self.data_dir)
        if self.image_root is not None:
            env["SCN_IMAGE_ROOT"] = str(self.image_root)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "scn_annotator.app.conditioning", self.location],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            bufsize=1,
        )
        threading.Thread(target=self._read, args=(self._proc,), daemon=True, name="scn-conditioning").start()
        return self._proc

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                future = self._waiting.pop(reply.get("id"), None)
            if future is None:
                continue
            if reply.get("ok"):
                future.set_result(reply)
            else:
                future.set_exception(ScnError(reply.get("error", "the conditioning helper failed")))
        with self._lock:  # the helper died: nobody waits forever
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(ScnError("the conditioning helper stopped"))

    def _send(self, request: dict[str, Any]) -> Future:
        future: Future = Future()
        try:
            proc = self._start()
            with self._lock:
                self._next_id += 1
                request["id"] = self._next_id
                self._waiting[self._next_id] = future
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
        except (OSError, ValueError) as exc:
            with self._lock:
                self._waiting.pop(request.get("id"), None)
            future.set_exception(ScnError(f"the conditioning helper is not available ({exc})"))
        return future

    def open(self, image_id: int) -> Future:
        """Prepare an image (its LA pass) ahead of the first correction; the reply names the model version."""
        return self._send({"op": "open", "image_id": int(image_id)})

    def propose(self, image_id: int, hints: dict[int, tuple[float, float]]) -> Future:
        """A Future of :class:`ConditionedProposals` for the landmarks not in ``hints`` (index -> (x, y))."""
        raw = self._send(
            {
                "op": "propose",
                "image_id": int(image_id),
                "hints": {str(k): [float(x), float(y)] for k, (x, y) in hints.items()},
            }
        )
        result: Future = Future()

        def convert(done: Future) -> None:
            try:
                r = done.result()
                result.set_result(
                    ConditionedProposals(
                        r["image_id"],
                        np.asarray(r["points"], dtype=float).reshape(-1, 2),
                        np.asarray(r["confidence"], dtype=float),
                        r["prediction_ids"],
                        r["run_id"],
                        r["model_version"],
                        r["hints"],
                        r["seconds"],
                    )
                )
            except Exception as exc:
                result.set_exception(exc)

        raw.add_done_callback(convert)
        return result

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the helper ends when its input does
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()


if __name__ == "__main__":
    serve(sys.argv[1])
