"""Baseline `random_subset`: condensation's reference, a random real subset of the full training set."""

from raysynth.methods.base import CondensationParams, FitContext, Intent, Method, Report, SyntheticSet, register_method


def baseline_subset(split, per_class: int):
    """The baseline's subset of a split (also what Koopcon's ceiling decodes, so the two pair by seed)."""
    return split.random_subset(per_class, seed_offset=1)


@register_method("random_subset")
class RandomSubset(Method):
    Params = CondensationParams
    intent = Intent.CONDENSATION
    uses_remainder = True

    def fit(self, split, context: FitContext, report: Report) -> SyntheticSet:
        images, labels = baseline_subset(split, self.params.per_class(split))
        return SyntheticSet(images, labels)
