"""Per-task heads: one file per head kind, looked up by the task's declared kind."""

from mtl_jax.heads.base import HeadKind, HeadOutputs  # noqa: F401
from mtl_jax.heads.classification import Classification
from mtl_jax.heads.regression import Regression
from mtl_jax.heads.tagging import Tagging
from mtl_jax.heads.multiple_choice import MultipleChoice
from mtl_jax.heads.span_qa import SpanQA

KINDS: dict[str, HeadKind] = {k.name: k for k in (Classification(), Regression(), Tagging(), MultipleChoice(),
                                                  SpanQA())}
KIND_ORDER: tuple[str, ...] = tuple(KINDS)


def kind_index(kind: str) -> int:
  return KIND_ORDER.index(kind)
