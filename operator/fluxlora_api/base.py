"""The pydantic base every API model shares: Kubernetes camelCase on the wire."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Fields are snake_case in Python and camelCase in Kubernetes objects and JSON.

    Both spellings are accepted on input so the hosted API's snake_case bodies validate too.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form, without fields that are unset (None)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
