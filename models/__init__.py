"""Models: training, calibration, cutoff policies, BANT gates, the packaged model, evaluation.

Imports flow one way: ``pipelines`` -> ``models`` -> ``features``.
"""
