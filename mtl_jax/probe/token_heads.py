"""Linear probes for the per-token head kinds: extractive QA (start / end per token) and multiple choice
(a per-token scorer averaged over each choice's tokens), on a frozen trunk's last-layer token states.

Why not the pooled features of the other probes: a QA answer is a span and an MC score is per choice, so
the probe reads every token, as the trained heads do. The linear head is W [D, C] + b (C = 2 for QA,
1 for MC) on standardised states; its loss is the head kind's own `example_loss` (heads/span_qa.py,
heads/multiple_choice.py) on HeadOutputs(token_logits = states @ W + b), plus l2/2 ||W||^2, fitted by
scipy's L-BFGS on a jitted value-and-gradient, the L2 strength picked on validation from curves.C_GRID.
Scores are the task's own metrics on the split in order (QA: the windows regrouped per question and
decoded to text, official SQuAD EM / F1). Features: {'x' [N, L, D] float32, 'input_mask', 'tags',
'label', 'score', 'y' (= label)} per row (a QA row is one doc-stride window), cached as the pooled ones.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from mtl_jax import heads as heads_lib
from mtl_jax.input import task_info
from mtl_jax.probe import scoring

KINDS = {"span_qa": 2, "multiple_choice": 1}  # kind -> outputs per token
MODELS = ("logreg",)
_ROW_KEYS = ("input_mask", "tags", "label", "score")


def rows(featurizer, batches) -> dict[str, np.ndarray]:
  """Last-layer token states and the rows' targets over `batches` (real rows only)."""
  out = {k: [] for k in ("x",) + _ROW_KEYS}
  for batch in batches:
    out["x"].append(featurizer.token_states(batch["input_ids"], batch["input_mask"], batch.get("token_type_ids"),
                                            batch.get("tags")))
    for k in _ROW_KEYS:
      out[k].append(batch[k])
  data = {k: np.concatenate(v) for k, v in out.items()}
  data["y"] = data["label"]
  return data


def _outputs(params, x):
  return jnp.einsum("nld,dc->nlc", x, params["w"]) + params["b"]


@functools.partial(jax.jit, static_argnames=("kind",))
def _value_and_grad(flat, template, x, batch, l2, kind: str):
  unravel = ravel_pytree(template)[1]

  def objective(f):
    p = unravel(f)
    out = heads_lib.HeadOutputs(jnp.zeros(x.shape[:1] + (1,)), _outputs(p, x))
    return heads_lib.KINDS[kind].example_loss(out, batch).mean() + 0.5 * l2 * jnp.sum(p["w"] ** 2)
  return jax.value_and_grad(objective)(flat)


def fit(x: np.ndarray, data: dict, kind: str, l2: float, max_iter: int = 300) -> dict:
  """W, b of the linear token head minimising the head kind's mean loss + l2/2 ||W||^2 (L-BFGS)."""
  import scipy.optimize
  init = {"w": jnp.zeros((x.shape[-1], KINDS[kind])), "b": jnp.zeros(KINDS[kind])}
  flat0 = ravel_pytree(init)[0]
  batch = {k: jnp.asarray(data[k]) for k in _ROW_KEYS}
  xj = jnp.asarray(x, jnp.float32)

  def fun(flat):
    value, grad = _value_and_grad(jnp.asarray(flat, jnp.float32), init, xj, batch, jnp.float32(l2), kind)
    return float(value), np.asarray(grad, np.float64)

  result = scipy.optimize.minimize(fun, np.asarray(flat0, np.float64), jac=True, method="L-BFGS-B",
                                   options={"maxiter": max_iter, "gtol": 1e-6, "ftol": 1e-12})
  return ravel_pytree(init)[1](jnp.asarray(result.x, jnp.float32))


def predict(params, x: np.ndarray) -> np.ndarray:
  return np.asarray(_outputs(params, jnp.asarray(x, jnp.float32)))


def score(task_name: str, data: dict, outputs: np.ndarray) -> dict[str, float]:
  """The task's own metrics on the rows (in order), as the evaluator scores them."""
  info = task_info.get(task_name)
  head = heads_lib.KINDS[info.kind]
  pairs = [head.metric_pair(head_out, {k: data[k][i] for k in _ROW_KEYS}, info.label_names)
           for i, head_out in enumerate(outputs[..., 0] if info.kind == "multiple_choice" else outputs)]
  return scoring.score_pairs(task_name, pairs)


def standardizer(x: np.ndarray, mask: np.ndarray):
  """Per-feature mean / std over the training rows' real tokens (std floored), applied to any split."""
  real = x[mask > 0]
  mean, std = real.mean(0), np.maximum(real.std(0), 1e-6)
  return lambda z: ((z - mean) / std).astype(np.float32)


def fit_and_score(task_name: str, model: str, train, valid, test, seed: int, scalar_mix: bool,
                  c_grid=(0.01, 0.1, 1.0, 10.0, 100.0)) -> dict:
  """One linear token-head probe: L2 picked on validation, scored on `test`; as curves.fit_and_score."""
  del seed  # L-BFGS from zeros: deterministic
  kind = task_info.get(task_name).kind
  if model not in MODELS or scalar_mix:
    raise ValueError(f"task {task_name!r} is {kind}: its probe is the linear token head (--models=logreg, "
                     "no --scalar_mix)")
  norm = standardizer(train["x"], train["input_mask"])
  best = None
  for c in c_grid:
    params = fit(norm(train["x"]), train, kind, 1.0 / (c * len(train["x"])))
    v = score(task_name, valid, predict(params, norm(valid["x"])))["headline"]
    if best is None or v > best[0]:
      best = (v, c, params)
  v, c, params = best
  result = score(task_name, test, predict(params, norm(test["x"])))
  return {"valid": v, "test": result["headline"], "metric": scoring.headline_name(result), "C": c, "mix_weights": None}
