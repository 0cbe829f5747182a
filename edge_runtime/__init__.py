"""SeismicTorch node runtime: numpy, onnxruntime and pyserial only.

Nothing here may import torch, scipy, obspy or the host packages; the host imports the
shared parts (:mod:`edge_runtime.preprocess`, :mod:`edge_runtime.protocol`,
:mod:`edge_runtime.metadata`, the model kinds :mod:`edge_runtime.kinds`, the inference
backends :mod:`edge_runtime.backends`) from here.
"""

__version__ = "0.1.0"
