"""SeismicTorch node runtime: numpy, onnxruntime and pyserial only.

Nothing here may import torch, scipy, obspy or the host packages; the host imports the
shared parts (:mod:`edge_runtime.preprocess`, :mod:`edge_runtime.protocol`,
:mod:`edge_runtime.metadata`) from here.
"""

__version__ = "0.1.0"
