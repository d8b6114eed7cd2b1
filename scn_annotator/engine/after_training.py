"""What a run records about its selected network once the loops are over: its error on the landmarks, and how
those errors go together.

Both read the network of the step the run selected (not the last step's), so both live
here rather than in a loop's module; a run with a file loads and saves that file once
for them. A campaign's rounds keep no file and call :func:`fit_error_model` on the
trainer's own network.
"""

from __future__ import annotations

import dataclasses

from .error_model import ErrorModel
from .evaluation import mean_error
from .inference import predict_samples, sample_errors
from .model_file import ModelFile
from .network import SpatialConfigurationNet
from .trainer import Trainer

__all__ = ["fit_error_model", "record_object_model", "selected_model"]


def selected_model(trainer: Trainer, selected: ModelFile | None) -> SpatialConfigurationNet:
    """The network of the selected step (``selected``'s weights), or the trainer's own when there is no file."""
    if selected is None:
        return trainer.model
    model = SpatialConfigurationNet(trainer.cfg.network_for(trainer.channels)).to(trainer.device)
    model.load_state_dict(selected.weights)
    return model


def fit_error_model(trainer: Trainer, network: SpatialConfigurationNet | None = None) -> ErrorModel | None:
    """How an object model's errors go together on its own labelled images, into ``trainer.objects``
    (``error_model.py``); ``network`` defaults to the trainer's own. A campaign's rounds, which keep no
    file, fit it here so that their proposals follow a correction as the app's do.

    The training images' errors are smaller than new images' will be; what is learned is their correlation,
    which the kriging weights depend on, not their size.
    """
    layout = trainer.objects
    if layout is None:
        return None
    samples = [*trainer.member_samples, *trainer.member_val_samples]
    predicted = predict_samples(network or trainer.model, samples, trainer.device, objects=layout)
    errors = [s.transform.to_network(s.points) - s.transform.to_network(p) for s, p in zip(samples, predicted)]
    model = ErrorModel.fit(layout.objects.members, errors, layout.gap)
    if model is not None:
        trainer.objects = dataclasses.replace(layout, errors=model)
    return model


def record_object_model(trainer: Trainer, *, template_error: bool) -> ErrorModel | None:
    """Into the run's file, for an object layout: the error model, and with ``template_error`` (a model
    without stage 2) the validation error on the landmarks (the template on the centres) instead of the
    error on the centres the loop selected by."""
    if trainer.objects is None or trainer.out is None or not trainer.out.exists():
        return None
    selected = ModelFile.load(trainer.out)
    network = selected_model(trainer, selected)
    samples = trainer.member_val_samples
    if template_error and samples:
        points = predict_samples(network, samples, trainer.device, objects=trainer.objects)
        error = mean_error(sample_errors(samples, points)[0])
        selected.metrics = selected.metrics.replace(val_error=error, val_error_coarse=error)
    model = fit_error_model(trainer, network)
    if model is not None:
        selected.objects = trainer.objects
    selected.save(trainer.out)
    return model
