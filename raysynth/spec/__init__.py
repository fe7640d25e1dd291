"""The search space: YAML -> one validated, immutable :class:`SweepSpec` (the method's params typed).

``schema`` holds the models, ``yaml_text`` reads files, ``overrides`` applies ``--set`` and dotted
keys, ``validation`` runs the checks beyond a field's type, ``loading`` puts them together.
"""

from raysynth.errors import SpecError
from raysynth.spec.loading import (absolute_tracking_uri, check_dataset_available, check_environment, default_cache_dir,
                                   default_study_storage, load_spec, resolve_defaults)
from raysynth.spec.overrides import MISSING, apply_overrides, flatten, lookup, parse_set
from raysynth.spec.schema import Distribution, SweepSpec
from raysynth.spec.validation import build_spec, only_steps, validate_params
from raysynth.spec.yaml_text import read_yaml

__all__ = ["SweepSpec", "Distribution", "SpecError", "load_spec", "build_spec", "only_steps", "validate_params",
           "flatten", "apply_overrides", "parse_set", "lookup", "MISSING", "read_yaml", "resolve_defaults",
           "default_cache_dir", "default_study_storage", "absolute_tracking_uri", "check_environment",
           "check_dataset_available"]
