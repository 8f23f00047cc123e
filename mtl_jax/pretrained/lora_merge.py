"""Fold one task's LoRA update into the trunk and export it as a plain HF-layout encoder.

    python -m mtl_jax.pretrained.lora_merge --model_dir=D --task=NAME --output=OUT [--alpha=A]

A `lora` run (mtl_jax/sharing/lora.py) keeps one frozen trunk and per-task low-rank factors
A_t [D_in, r], B_t [r, D_out] on chosen projections. For task t every adapted kernel becomes
    W' = W + (alpha / r) A_t B_t          (HF torch layout: W_hf' = W_hf + (alpha/r) B_hf A_hf)
reshaped to the kernel's own layout ([D, H, K] query/key/value, [H, K, D] out, [D_in, D_out]
wi/wo); the result is one plain encoder (no LoRA params), so it runs as fast as the base model
and exports through pretrained/export.py like a hard-sharing trunk. alpha is read from the
run's config.gin (`lora.alpha`) unless given.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

import flax.linen as nn
import numpy as np
from flax import traverse_util

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.pretrained import export

_LORA = re.compile(r"^(.*/)?lora_(\d+)/(\w+)_a$")
_KERNELS = {"query": "attention/query_kernel", "key": "attention/key_kernel", "value": "attention/value_kernel",
            "out": "attention/out_kernel", "wi": "mlp/wi/kernel", "wo": "mlp/wo/kernel"}
DEFAULT_ALPHA = 16.0  # lora.alpha's default


def merged_params(params, task: int, alpha: float):
  """The params with task `task`'s LoRA folded into the trunk kernels and every lora_{k}/ param dropped."""
  flat = {p: np.asarray(v) for p, v in traverse_util.flatten_dict(nn.meta.unbox(params), sep="/").items()}
  out = {p: v for p, v in flat.items() if not re.search(r"(?:^|/)lora_\d+/", p)}
  found = False
  for path, a in flat.items():
    if not (m := _LORA.match(path)):
      continue
    prefix, layer, target = m.group(1) or "", int(m.group(2)), m.group(3)
    if not 0 <= task < a.shape[0]:
      raise ValueError(f"task={task} is out of range: {path!r} holds {a.shape[0]} tasks")
    b = flat[f"{prefix}lora_{layer}/{target}_b"]
    kernel = f"{prefix}layer_{layer}/{_KERNELS[target]}"
    w = out[kernel]
    delta = (alpha / a.shape[-1]) * (a[task].astype(np.float64) @ b[task].astype(np.float64))
    out[kernel] = (w.astype(np.float64) + delta.reshape(w.shape)).astype(w.dtype)
    found = True
  if not found:
    raise ValueError("the params hold no lora_{k}/ factors: is this a 'lora' run?")
  return traverse_util.unflatten_dict(out, sep="/")


def run_alpha(model_dir: pathlib.Path) -> float:
  """lora.alpha as the run bound it (config.gin), else the default."""
  text = (model_dir / "config.gin").read_text() if (model_dir / "config.gin").is_file() else ""
  m = re.search(r"^lora\.alpha\s*=\s*([0-9.eE+-]+)\s*$", text, re.M)
  return float(m.group(1)) if m else DEFAULT_ALPHA


def export_model_dir(model_dir, output, task: str, alpha: float | None = None) -> pathlib.Path:
  """A lora run's latest checkpoint, task `task`'s update merged -> an HF-layout directory at `output`."""
  from mtl_jax.transfer import init_from
  model_dir = pathlib.Path(model_dir).absolute()
  spec = init_from.read_spec(model_dir)
  if spec.get("sharing") != "lora":
    raise ValueError(f"MODEL_DIR {str(model_dir)!r} is a {spec.get('sharing')!r} run; lora_merge needs a 'lora' "
                     "run (export other strategies with mtl_jax.pretrained.export)")
  tasks = list(spec["tasks"])
  if task not in tasks:
    raise ValueError(f"--task {task!r} is not one of the run's tasks: {', '.join(tasks)}")
  config: EncoderConfig = init_from.encoder_config(spec)
  export.check_exportable(config)
  alpha = run_alpha(model_dir) if alpha is None else float(alpha)
  params, step = init_from.restore_params(model_dir)
  merged = merged_params(params, tasks.index(task), alpha)
  source = (spec.get("pretrained") or {}).get("checkpoint")
  extra = {"model_dir": str(model_dir), "step": int(step), "sharing": "lora", "task": task,
           "lora_alpha": alpha, "merged": True, "pretrained": spec.get("pretrained")}
  return export.export_params(merged, config, output, None, None, source, extra)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="mtl-lora-merge", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="a lora run's MODEL_DIR")
  parser.add_argument("--task", required=True, help="whose LoRA update to fold in")
  parser.add_argument("--output", required=True, help="the HF-layout directory to write (new or empty)")
  parser.add_argument("--alpha", type=float, default=None, help="default: lora.alpha from the run's config.gin")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  from mtl_jax.train import one_line
  try:
    out = export_model_dir(args.model_dir, args.output, args.task, args.alpha)
  except (ValueError, KeyError, OSError) as e:
    print(f"mtl-lora-merge: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  print(f"mtl-lora-merge: wrote {out} ({json.dumps(args.task)}'s LoRA merged)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
