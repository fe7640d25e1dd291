"""Classifier protocol, CAS, FID and the metrics of a trial."""

from raysynth.evaluation.evaluate import EvaluationSettings, Evaluator
from raysynth.evaluation.protocol import ClassifierProtocol

__all__ = ["ClassifierProtocol", "EvaluationSettings", "Evaluator"]
