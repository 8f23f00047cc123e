"""Write a trained trunk back as an HF-layout checkpoint directory (BERT / RoBERTa layout).

  python -m mtl_jax.pretrained.export --model_dir=D --output=OUT [--task=NAME] [--expert=E]

What is exported is ONE plain encoder (embedder + K post-LN layers), taken from
  hard          the trunk;
  soft          task t's tower (slice t of every 'tasks'-stacked param; untied params as they are);
  sluice,       task t's column (slice t). The alpha (and sluice's beta) mixing weights are NOT part
  cross_stitch  of a plain BERT and are dropped: the exported encoder is column t run on its own,
                not the mixed network's output for task t;
  mmoe          one expert (slice e of the 'experts' axis); the gates are dropped.
Heads are never exported. Only checkpoint-architecture trunks (post-LN, embedding LayerNorm,
token types: a run started from `pretrained.checkpoint`) are BERT; a from-scratch pre-LN model
is refused. OUT gets config.json (the source checkpoint's, its fields updated to the trunk),
model.safetensors (HF names, via names.table(...).to_hf), the source's pooler tensors and
tokenizer files when the source is known, and 1_Pooling/config.json saying how the run pooled.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

import jax
import numpy as np
from flax import traverse_util

from mtl_jax.models.encoder import EncoderConfig
from mtl_jax import file_modes
from mtl_jax.run import quiet_orbax
from mtl_jax.pretrained import load, names

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model",
                   "spm.model")


def check_exportable(config: EncoderConfig) -> None:
  if config.model_type not in ("bert", "electra"):  # the other layouts exist only as checkpoint architectures
    return
  if config.norm != "post" or not config.embed_norm or config.type_vocab_size < 1:
    raise ValueError(f"only checkpoint-architecture trunks export as BERT (norm='post', embed_norm=True, "
                     f"type_vocab_size >= 1); this model has norm={config.norm!r}, embed_norm={config.embed_norm}, "
                     f"type_vocab_size={config.type_vocab_size} (trained from scratch?): start the run from "
                     "pretrained.checkpoint to export it")


def _our_shapes(config: EncoderConfig) -> dict[str, tuple]:
  return {e.ours: tuple(e.to_ours(np.broadcast_to(np.float32(0), e.shape)).shape) for e in names.table(config)}


def trunk_params(params, config: EncoderConfig, task: int | None = None,
                 expert: int | None = None) -> dict[str, np.ndarray]:
  """One encoder's weights (our flat checkpoint names) from a model's params, any strategy.

  A param stacked on a leading axis (soft towers, sluice / cross-stitch columns: 'tasks';
  MMoE: 'experts') gives slice `task` or `expert`; params outside the encoder are skipped."""
  check_exportable(config)
  shapes, out, source = _our_shapes(config), {}, {}
  for path, leaf in traverse_util.flatten_dict(params, sep="/").items():
    key = load.checkpoint_key(path)
    if key not in shapes:  # heads, alphas, betas, gates
      continue
    if key in out:
      raise ValueError(f"params {source[key]!r} and {path!r} both hold encoder tensor {key!r}")
    shape = tuple(leaf.shape)
    if shape == shapes[key]:
      value = leaf
    elif shape[1:] == shapes[key]:
      axis, index = ("expert", expert) if "/experts/" in f"/{path}" else ("task", task)
      if index is None:
        raise ValueError(f"param {path!r} holds one copy per {axis} ({shape[0]}); "
                         f"pick one with {axis}=0..{shape[0] - 1}")
      if not 0 <= index < shape[0]:
        raise ValueError(f"{axis}={index} is out of range: param {path!r} has {shape[0]} copies")
      value = leaf[index]
    else:
      raise ValueError(f"param {path!r} has shape {shape}; encoder tensor {key!r} is {shapes[key]}")
    out[key], source[key] = np.asarray(jax.device_get(value), np.float32), path
  missing = sorted(set(shapes) - set(out))
  if missing:
    raise ValueError(f"the model has no param for encoder tensor {missing[0]!r} ({len(missing)} missing)")
  return out


def hf_config(config: EncoderConfig, source: dict | None = None, extra: dict | None = None) -> dict:
  """The source's config.json with the trunk's architecture fields written over it."""
  if config.model_type not in ("bert", "electra"):
    from mtl_jax.pretrained import checkpoint as checkpoint_lib
    out = dict(source or {})
    out.update(checkpoint_lib.hf_fields(config))
    if extra:
      out["mtl_jax"] = extra
    return out
  roberta = config.position_offset > 0
  kind = "electra" if config.model_type == "electra" else "roberta" if roberta else "bert"
  architecture = {"electra": "ElectraModel", "roberta": "RobertaModel"}.get(kind, "BertModel")
  out = dict(source or {"model_type": kind, "architectures": [architecture],
                        "pad_token_id": config.position_offset - 1 if roberta else 0,
                        "position_embedding_type": "absolute"})
  if config.model_type == "electra":
    out["embedding_size"] = config.embed_dim or config.d_model
  tanh = "gelu_new" if out.get("hidden_act") not in ("gelu_new", "gelu_pytorch_tanh") else out["hidden_act"]
  out.update(hidden_size=config.d_model, num_attention_heads=config.num_heads, intermediate_size=config.mlp_dim,
             num_hidden_layers=config.num_layers, vocab_size=config.vocab_size,
             max_position_embeddings=config.max_len + config.position_offset,
             type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
             hidden_act="gelu" if config.gelu_exact else tanh,
             hidden_dropout_prob=config.dropout_rate, attention_probs_dropout_prob=config.dropout_rate)
  if extra:
    out["mtl_jax"] = extra
  return out


def write(output: str | os.PathLike, flat: dict[str, np.ndarray], config: EncoderConfig,
          source: str | os.PathLike | None = None, extra: dict | None = None) -> pathlib.Path:
  """Writes OUT atomically (a temporary sibling renamed into place); OUT must not exist or be empty."""
  from safetensors.numpy import save_file
  output = pathlib.Path(output).absolute()
  source = pathlib.Path(source).absolute() if source is not None else None
  if source is not None and not (source / "config.json").is_file():
    source = None
  if output.exists() and (not output.is_dir() or any(output.iterdir())):
    raise ValueError(f"export output {str(output)!r} already exists and is not empty; pick a new directory")
  pieces = {}
  for e in names.table(config):  # entries sharing an HF tensor (a fused projection) give its rows in order
    pieces.setdefault(e.hf, []).append(e.to_hf(flat[e.ours]))
  tensors = {hf: np.ascontiguousarray(np.concatenate(p) if len(p) > 1 else p[0]) for hf, p in pieces.items()}
  source_config = None
  if source is not None:
    from mtl_jax.pretrained import checkpoint as checkpoint_lib
    source_ckpt = checkpoint_lib.open_checkpoint(source)
    source_config = source_ckpt.config
    for name, value in source_ckpt.tensors().items():  # the pooler: not trained here, kept so HF loads it whole
      base = checkpoint_lib.without_prefix(name)
      if base.startswith("pooler.") and value.shape[-1] == config.d_model:
        tensors[base] = value
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
  try:
    (tmp / "config.json").write_text(json.dumps(hf_config(config, source_config, extra), indent=2) + "\n")
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES if source is not None else ():
      if (source / name).is_file():
        shutil.copy(source / name, tmp / name)
    pooling_file = (source / "1_Pooling" / "config.json") if source is not None else None
    if config.pooling == "mean" or (pooling_file and pooling_file.is_file()):
      pooling = json.loads(pooling_file.read_text()) if pooling_file and pooling_file.is_file() else {}
      pooling.update(word_embedding_dimension=config.d_model, pooling_mode_cls_token=config.pooling == "cls",
                     pooling_mode_mean_tokens=config.pooling == "mean")
      (tmp / "1_Pooling").mkdir()
      (tmp / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    file_modes.as_usual(tmp)  # model.safetensors (0600) and the temporary directory (0700) as readable as the rest
    if output.exists():
      output.rmdir()  # empty (checked above)
    os.replace(tmp, output)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return output


def export_params(params, config: EncoderConfig, output, task: int | None = None, expert: int | None = None,
                  source=None, extra: dict | None = None) -> pathlib.Path:
  """A model's params (any strategy) -> an HF-layout directory at `output`."""
  return write(output, trunk_params(params, config, task, expert), config, source, extra)


def export_model_dir(model_dir, output, task: str | None = None, expert: int | None = None) -> pathlib.Path:
  """The latest checkpoint of a training run's MODEL_DIR (its run_spec.json says what it is) -> `output`."""
  model_dir = pathlib.Path(model_dir).absolute()
  spec_file = model_dir / "run_spec.json"
  if not spec_file.is_file():
    raise ValueError(f"MODEL_DIR {str(model_dir)!r} has no run_spec.json; point --model_dir at a training run")
  spec = json.loads(spec_file.read_text())
  from mtl_jax.transfer import init_from
  config = init_from.encoder_config(spec)
  check_exportable(config)  # before the (slow) restore
  sharing, tasks = spec["sharing"], list(spec["tasks"])
  task_index = None
  if task is not None:
    if task not in tasks:
      raise ValueError(f"--task {task!r} is not one of the run's tasks: {', '.join(tasks)}")
    task_index = tasks.index(task)
  if sharing in ("soft", "sluice", "cross_stitch") and task_index is None:
    raise ValueError(f"a {sharing} run has one trunk per task; pick one with --task ({', '.join(tasks)})")
  if sharing == "mmoe" and expert is None:
    raise ValueError("an mmoe run has several experts; pick one with --expert=0..E-1")
  quiet_orbax.install()  # no "Metadata file does not exist" warning
  params, step = init_from.restore_params(model_dir)
  source = (spec.get("pretrained") or {}).get("checkpoint")
  extra = {"model_dir": str(model_dir), "step": int(step), "sharing": sharing, "task": task, "expert": expert,
           "pretrained": spec.get("pretrained")}
  return export_params(params, config, output, task_index, expert, source, extra)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="mtl-export", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="a training run's MODEL_DIR")
  parser.add_argument("--output", required=True, help="the HF-layout directory to write (new or empty)")
  parser.add_argument("--task", default=None, help="soft / sluice / cross_stitch: whose tower or column")
  parser.add_argument("--expert", type=int, default=None, help="mmoe: which expert")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  from safetensors import SafetensorError
  from mtl_jax.train import one_line
  try:
    out = export_model_dir(args.model_dir, args.output, args.task, args.expert)
  except (ValueError, KeyError, OSError, SafetensorError) as e:
    print(f"mtl-export: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  print(f"mtl-export: wrote {out}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
