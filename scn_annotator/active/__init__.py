"""Active learning: which image a person should annotate next, and whether that choice saves work.

Acquisition scores, the ranked queue, the retraining policy, the effort an annotator
spends (measured with an oracle) and whole simulated campaigns.
"""
