"""Baseline `random_subset`: condensation's reference, a random real subset of the full training set."""

from raysynth.methods.base import CondensationParams, FitContext, Intent, Method, Report, SyntheticSet, register_method


@register_method("random_subset")
class RandomSubset(Method):
    Params = CondensationParams
    intent = Intent.CONDENSATION
    uses_remainder = True

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        images, labels = split.random_subset(self.params.per_class(split), seed_offset=1)
        return SyntheticSet(images, labels)
