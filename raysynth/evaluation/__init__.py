"""Classifier protocol, CAS, FID and the metrics of a trial (the protocol is the space's ``evaluation`` section)."""

from raysynth.evaluation.evaluate import Evaluator

__all__ = ["Evaluator"]
