"""Light target models on frozen features: L2 logistic regression / ridge (L-BFGS) and a small MLP,
each optionally reading an ELMo-style scalar mix of the layers instead of the last layer.

Logistic regression minimises mean cross-entropy + l2/2 ||W||^2 (bias unpenalised); with
l2 = 1 / (C N) that is scikit-learn's C * sum(loss) + ||W||^2 / 2 up to a constant factor, so the
same C gives the same model. Regression tasks get ridge (mean squared error + l2/2 ||W||^2) from the
same code. Both are fitted by scipy's L-BFGS on a jitted JAX value-and-gradient. The scalar mix is
gamma * sum_k softmax(s)_k x_k over the K+1 pooled layers (Peters et al. 2018), its s and gamma
learned with the model (not penalised); the fitted mix weights are returned for the report.
The MLP (one ReLU hidden layer) trains full-batch with optax AdamW for a fixed number of steps.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree


@dataclasses.dataclass
class Fitted:
  params: dict
  kind: str            # 'classification' | 'regression'
  scalar_mix: bool
  apply: callable

  def predict(self, x: np.ndarray) -> np.ndarray:
    """Class ids, or scores."""
    out = np.asarray(self.apply(self.params, jnp.asarray(x)))
    return out.argmax(-1) if self.kind == "classification" else out[..., 0]

  def proba(self, x: np.ndarray) -> np.ndarray:
    return np.asarray(jax.nn.softmax(self.apply(self.params, jnp.asarray(x)), -1))

  def mix_weights(self) -> list[float] | None:
    if not self.scalar_mix:
      return None
    return [float(w) for w in jax.nn.softmax(self.params["mix"]["s"])]


def mixed(params, x):
  """[N, K+1, D] -> [N, D] with the scalar mix, or the last layer ([N, D] input passes through)."""
  if "mix" in params:
    w = jax.nn.softmax(params["mix"]["s"])
    return params["mix"]["gamma"] * jnp.einsum("k,nkd->nd", w, x)
  return x[:, -1] if x.ndim == 3 else x


def _linear_apply(params, x):
  return mixed(params, x) @ params["w"] + params["b"]


def _loss(kind: str):
  if kind == "classification":
    return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
  return lambda out, y: jnp.mean((out[:, 0] - y) ** 2)


def _mix_init(x: np.ndarray, scalar_mix: bool) -> dict:
  if not scalar_mix:
    return {}
  if x.ndim != 3:
    raise ValueError("the scalar mix needs per-layer features [N, K+1, D]")
  return {"mix": {"s": jnp.zeros(x.shape[1]), "gamma": jnp.ones(())}}


def _outputs(kind: str, y: np.ndarray, num_classes: int | None) -> int:
  if kind == "classification":
    return int(num_classes or (int(y.max()) + 1))
  return 1


@functools.partial(jax.jit, static_argnames=("kind",))
def _linear_value_and_grad(params, x, y, l2, kind: str):
  """Jitted once per (kind, shapes): the L2 sweep and every seed reuse the compiled objective."""
  def objective(p):
    return _loss(kind)(_linear_apply(p, x), y) + 0.5 * l2 * jnp.sum(p["w"] ** 2)
  return jax.value_and_grad(objective)(params)


@functools.partial(jax.jit, static_argnames=("kind",))
def _flat_value_and_grad(flat, template, x, y, l2, kind: str):
  """The objective on L-BFGS's flat vector, unravelled and ravelled inside the jit: one dispatch per
  evaluation instead of one per parameter slice (L-BFGS evaluates it hundreds of times per fit)."""
  value, grads = _linear_value_and_grad(ravel_pytree(template)[1](flat), x, y, l2, kind)
  return value, ravel_pytree(grads)[0]


def fit_linear(x: np.ndarray, y: np.ndarray, kind: str, l2: float, num_classes: int | None = None,
               scalar_mix: bool = False, max_iter: int = 500, tol: float = 1e-6) -> Fitted:
  """L2 logistic regression (classification) or ridge (regression) by L-BFGS."""
  import scipy.optimize
  d, c = x.shape[-1], _outputs(kind, y, num_classes)
  init = {"w": jnp.zeros((d, c)), "b": jnp.zeros(c), **_mix_init(x, scalar_mix)}
  flat0, unravel = ravel_pytree(init)
  xj, yj, l2j = jnp.asarray(x, jnp.float32), jnp.asarray(y), jnp.float32(l2)

  def fun(flat):
    value, grads = _flat_value_and_grad(np.asarray(flat, np.float32), init, xj, yj, l2j, kind)
    return float(value), np.asarray(grads, np.float64)

  result = scipy.optimize.minimize(fun, np.asarray(flat0, np.float64), jac=True, method="L-BFGS-B",
                                   options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-12})
  return Fitted(unravel(jnp.asarray(result.x, jnp.float32)), kind, scalar_mix, _linear_jit)


def _mlp_apply(params, x):
  h = jax.nn.relu(mixed(params, x) @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


_linear_jit, _mlp_jit = jax.jit(_linear_apply), jax.jit(_mlp_apply)


@functools.partial(jax.jit, static_argnames=("kind", "steps"))
def _train_mlp(params, x, y, learning_rate, weight_decay, kind: str, steps: int):
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)
  loss = _loss(kind)

  def step(carry, _):
    params, opt = carry
    grads = jax.grad(lambda p: loss(_mlp_apply(p, x), y))(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def fit_mlp(x: np.ndarray, y: np.ndarray, kind: str, seed: int, hidden: int = 128, steps: int = 300,
            learning_rate: float = 3e-3, weight_decay: float = 1e-2, num_classes: int | None = None,
            scalar_mix: bool = False) -> Fitted:
  """One ReLU hidden layer, full-batch AdamW, `steps` updates in one jitted scan."""
  d, c = x.shape[-1], _outputs(kind, y, num_classes)
  k1, k2 = jax.random.split(jax.random.key(seed))
  params = {"w1": jax.random.normal(k1, (d, hidden)) * (2.0 / d) ** 0.5, "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, c)) * (1.0 / hidden) ** 0.5, "b2": jnp.zeros(c),
            **_mix_init(x, scalar_mix)}
  trained = _train_mlp(params, jnp.asarray(x, jnp.float32), jnp.asarray(y), jnp.float32(learning_rate),
                       jnp.float32(weight_decay), kind, steps)
  return Fitted(trained, kind, scalar_mix, _mlp_jit)


def standardizer(x: np.ndarray):
  """Per-feature mean / std of the training features (std floored), applied to any split."""
  mean = x.mean(0, keepdims=True)
  std = np.maximum(x.std(0, keepdims=True), 1e-6)
  return lambda z: ((z - mean) / std).astype(np.float32)
