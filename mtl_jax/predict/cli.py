"""mtl-predict: per input line and task, the label and its probability, the score, or the tags.

  python -m mtl_jax.predict --model_dir=/tmp/run --input=texts.txt [--tasks=a,b] [--format=jsonl|tsv]
      [--checkpoint=auto|best|latest] [--input_format=auto|text|jsonl] [--batch_size=32]

--input: a file (or - for stdin) with one text per line, or JSONL with each task's fields (a file
task's text_fields, e.g. {"premise": ..., "hypothesis": ...}; 'tokens' for tagging). Auto: JSONL for
.jsonl / .json files and for stdin whose every line is a JSON object.
--format=jsonl (default): one object per input line,
    {"line": 1, "input": ..., "tasks": {"reviews": {"label": "positive", "probability": 0.93},
                                        "ratings": {"score": 0.41}, "ner": {"words": [...], "tags": [...]}}}
--format=tsv: a header, then one row per input line and task: line, task, prediction, probability
(the probability of a class; empty for scores; tags as space-separated word/TAG).
The checkpoint: 'auto' = the best-by-validation one if the run saved one, else the latest.
A MODEL_DIR whose config.gin imports a module outside mtl_jax / tasks is refused (reading it would run
that module's code); --trust_config reads it anyway.
"""

from __future__ import annotations

import argparse
import json
import sys


def _tsv_row(line: int, task: str, result: dict) -> str:
  if "label" in result:
    prediction, probability = result["label"], f"{result['probability']:.6f}"
  elif "answer" in result:
    prediction, probability = result["answer"], f"{result['score']:.6f}"
  elif "choice" in result:
    prediction, probability = result["text"], f"{result['probability']:.6f}"
  elif "score" in result:
    prediction, probability = f"{result['score']:.6f}", ""
  else:
    prediction = " ".join(f"{w}/{t if t is not None else '_'}" for w, t in zip(result["words"], result["tags"]))
    probability = ""
  clean = lambda s: str(s).replace("\t", " ").replace("\n", " ")
  return "\t".join([str(line), task, clean(prediction), probability])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="mtl-predict", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_dir", required=True, help="an mtl-train MODEL_DIR")
  parser.add_argument("--input", required=True, help="file with one text (or JSON object) per line; - = stdin")
  parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task of the run)")
  parser.add_argument("--format", default="jsonl", choices=("jsonl", "tsv"), help="output format")
  parser.add_argument("--input_format", default="auto", choices=("auto", "text", "jsonl"))
  parser.add_argument("--checkpoint", default="auto", choices=("auto", "best", "latest"))
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--trust_config", action="store_true",
                      help="read a MODEL_DIR whose config.gin imports modules outside mtl_jax / tasks (runs their code)")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  if args.batch_size < 1:
    parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
  from mtl_jax.predict import fast, inputs, load
  from mtl_jax.train import one_line
  try:
    records = inputs.read_records(args.input, args.input_format)
    fast.enable_compile_cache()  # the forward's ~1-2 s compile, read back on the next predict
    predictor = load(args.model_dir, args.checkpoint, args.batch_size, trust_config=args.trust_config)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks is not None else None
    results = predictor.predict(records, tasks, source="stdin" if args.input == "-" else args.input)
  except (ValueError, KeyError, OSError, RuntimeError) as e:
    print(f"mtl-predict: error: {one_line(e)}", file=sys.stderr, flush=True)
    return 2
  out = sys.stdout
  if args.format == "tsv":
    out.write("line\ttask\tprediction\tprobability\n")
  for number, (record, result) in enumerate(zip(records, results), 1):
    if args.format == "tsv":
      out.writelines(_tsv_row(number, task, r) + "\n" for task, r in result.items())
    else:
      out.write(json.dumps({"line": number, "input": record, "tasks": result}, ensure_ascii=False) + "\n")
  out.flush()
  print(f"mtl-predict: {len(records)} inputs x {len(results[0])} tasks from {predictor.checkpoint} checkpoint "
        f"(step {predictor.step}) of {args.model_dir}", file=sys.stderr, flush=True)
  return 0
