"""The frozen base every contract model derives from."""

from pydantic import BaseModel, ConfigDict

__all__ = ["Immutable"]


class Immutable(BaseModel):
    """A value that never changes once parsed, and refuses fields it does not know.

    Unknown fields are refused rather than ignored so that a typo in a producer
    (``publsh_at``) is a visible 422 instead of a silently missing value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)
