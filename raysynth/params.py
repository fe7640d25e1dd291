"""The base of every method's typed parameters. Pydantic only: parameter models load without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from raysynth.data.datasets import DataInfo


class Params(BaseModel):
    """Base of every method's typed parameters: strict, immutable, documented per field."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    def to_data(self, mode: str = "python") -> dict:
        """The parameters as a space file writes them (field aliases such as ``lambda``)."""
        return self.model_dump(mode=mode, by_alias=True)

    def check_for(self, data: DataInfo) -> Iterator[tuple[str, str]]:
        """Problems with these parameters on this data, as (field path relative to ``params``, message
        naming the rule, the value and the fix); checked by ``raysynth validate`` before anything starts."""
        return iter(())
