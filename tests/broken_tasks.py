"""Tasks with deliberately bad data, for the bad-input tests (registered on import)."""

import functools

from tasks import offline, registration


def _examples(split, bad):
  good = [{"text": f"sentence number {i}", "label": i % 2, "score": 0.5} for i in range(20)]
  if bad == "empty" and split == "validation":
    return []
  if bad == "label" and split == "train":
    return good[:5] + [{"text": "bad label", "label": 7, "score": 0.0}]
  if bad == "nan" and split == "train":
    return good[:5] + [{"text": "bad score", "label": 0, "score": float("nan")}]
  return good


for _bad, _kind in (("label", "classification"), ("nan", "regression"), ("empty", "classification")):
  registration.add_task(f"broken_{_bad}", kind=_kind, vocabulary=offline.VOCABULARY,
                        label_names=("neg", "pos") if _kind == "classification" else (),
                        examples_fn=functools.partial(_examples, bad=_bad))
