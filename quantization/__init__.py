"""Node variants of exported models and the measurement that picks one.

One module per step: :mod:`~quantization.int16` (int16 input), :mod:`~quantization.simplify`
(onnxsim), :mod:`~quantization.static` (calibrated QDQ int8 / A16W8 / A16W16),
:mod:`~quantization.dynamic` (int8 dense weights), :mod:`~quantization.tflite` (LiteRT),
:mod:`~quantization.compare`, :mod:`~quantization.report` (report and ``choose``); shared
file handling in :mod:`~quantization.files`, timing in :mod:`~quantization.latency`.
"""
