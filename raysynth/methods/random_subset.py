"""Baseline `random_subset`: condensation's reference, a random real subset of the full training set."""

from pydantic import Field

from raysynth.methods.base import Budget, Intent, Method, Params, Report, SyntheticSet, register_method


class RandomSubsetParams(Params):
    images_per_class: int | None = Field(None, ge=1, description="images per class; None: `dataset.images_per_class`")


@register_method("random_subset")
class RandomSubset(Method):
    Params = RandomSubsetParams
    intent = Intent.CONDENSATION
    uses_remainder = True

    def fit(self, split, budget: Budget, report: Report) -> SyntheticSet:
        per_class = self.params.images_per_class or split.images_per_class
        images, labels = split.random_subset(per_class, seed_offset=1)
        return SyntheticSet(images, labels)
