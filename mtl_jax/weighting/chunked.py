"""The Gram matrix and the combined update of a gradient method without T gradient copies.

Why: gradients.param_step holds every task's gradient of the shared parameters at once ([T, P]:
14 GB at BERT-base size and T=32, per device). Here the tasks go in chunks of CHUNK: a lax.scan over
chunk a computes a's gradients (one vmap over its row groups), its diagonal Gram block, then a loop
over the later chunks b recomputes b's gradients for the off-diagonal block a x b, so at most
2 x CHUNK gradient copies are alive. Cost: (C + 1) / 2 backward passes' worth of FLOPs for C chunks
(each chunk pass backpropagates only its own groups' rows), e.g. 2.5 at T=32.
Then the update needs no g_t: sum_t alpha_t g_t is the gradient of sum_t alpha_t l_t, one more
forward + backward (vmapped over the same groups with the same rngs: the same gradients, summed in
another order), and the heads' equal-weighted gradient is a second, head-only vjp of that forward.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

CHUNK = 8  # tasks whose gradients are computed together (2 x CHUNK copies at most)


def _padded_chunks(groups_T, num_tasks: int, chunk: int):
  """[C, chunk, ...] row groups; tasks past T repeat group 0 with weight 0 (rows dropped after)."""
  n = -(-num_tasks // chunk) * chunk

  def pad(x):
    extra = jnp.broadcast_to(x[:1], (n - num_tasks, *x.shape[1:]))
    return jnp.concatenate([x, extra]) if n > num_tasks else x

  padded = jax.tree.map(pad, groups_T)
  if n > num_tasks:
    padded["weight"] = padded["weight"].at[num_tasks:].set(0)
  shaped = jax.tree.map(lambda x: x.reshape(n // chunk, chunk, *x.shape[1:]), padded)
  return shaped, (jnp.arange(n) % num_tasks).reshape(n // chunk, chunk), n


def gram(objective: Callable, params, groups_T, shared: Sequence[str], num_tasks: int, chunk: int | None = None):
  """(G [T, T] over the shared params, aux [T, ...]) of objective(params, group, t) -> (loss, aux)."""
  chunk = min(chunk or CHUNK, num_tasks)
  chunks, ts, n = _padded_chunks(groups_T, num_tasks, chunk)
  count = n // chunk

  def grads_of(c):
    group = jax.tree.map(lambda x: x[c], chunks)
    g, aux = jax.vmap(jax.grad(objective, has_aux=True), in_axes=(None, 0, 0))(params, group, ts[c])
    flat = [x.reshape(chunk, -1).astype(jnp.float32) for k in shared for x in jax.tree.leaves(g[k])]
    return flat, aux

  def cross(a, b):
    return sum(jnp.einsum("ip,jp->ij", x, y, precision=jax.lax.Precision.HIGHEST) for x, y in zip(a, b))

  def outer(g_nn, a):
    ga, aux = grads_of(a)
    g_nn = jax.lax.dynamic_update_slice(g_nn, cross(ga, ga), (a * chunk, a * chunk))

    def inner(b, g_nn):
      block = cross(ga, grads_of(b)[0])
      g_nn = jax.lax.dynamic_update_slice(g_nn, block, (a * chunk, b * chunk))
      return jax.lax.dynamic_update_slice(g_nn, block.T, (b * chunk, a * chunk))

    return jax.lax.fori_loop(a + 1, count, inner, g_nn), aux

  g_nn, aux = jax.lax.scan(outer, jnp.zeros((n, n), jnp.float32), jnp.arange(count))
  aux = jax.tree.map(lambda x: x.reshape(n, *x.shape[2:])[:num_tasks], aux)
  return g_nn[:num_tasks, :num_tasks], aux


def update(objective: Callable, params, groups_T, alpha_T, head_w_T, shared: Sequence[str], num_tasks: int):
  """Gradients: the shared params' sum_t alpha_t g_t, the others' (heads) sum_t head_w_t g_t."""
  # the barrier: this forward starts once alpha is known (after the Gram pass), not beside it
  params, alpha_T, head_w_T = jax.lax.optimization_barrier((params, alpha_T, head_w_T))
  losses = lambda p: jax.vmap(lambda g, t: objective(p, g, t)[0])(groups_T, jnp.arange(num_tasks))
  losses_T, vjp = jax.vjp(losses, params)
  (by_alpha,) = vjp(alpha_T.astype(losses_T.dtype))
  (by_head_w,) = vjp(head_w_T.astype(losses_T.dtype))  # only its heads part is used: the rest is dead code
  return {k: (by_alpha[k] if k in shared else by_head_w[k]) for k in params}
