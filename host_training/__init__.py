"""Workstation side: data preparation, training, evaluation and ONNX export.

Imports the window chain from :mod:`edge_runtime.preprocess` so that training inputs
are made by the code the node runs.
"""
