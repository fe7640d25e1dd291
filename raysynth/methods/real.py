"""Baseline `real`: the few-shot set itself, so every metric is that of the real data alone."""

from raysynth.methods.base import FitContext, Intent, Method, Report, SyntheticSet, register_method


@register_method("real")
class Real(Method):
    intent = Intent.GENERATION

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        images, labels = split.fewshot
        return SyntheticSet(images.clone(), labels.clone())
