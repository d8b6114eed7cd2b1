"""scn-annotator: landmark annotation on radiographs with a SpatialConfiguration-Net.

The core package is Qt-free: images in physical space, the network, training,
inference, evaluation and the command line. The napari plugin lives in
``scn_annotator.plugins`` and the database in ``scn_annotator.db``.
"""

__version__ = "0.1.0"
