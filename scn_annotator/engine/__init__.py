"""The engine: the SCN, its training, inference and local refinement, on tensors and arrays.

No database and no app here (a test enforces it): a headless GPU worker, a benchmark
or a notebook trains and predicts with this package and the io package alone.
"""
