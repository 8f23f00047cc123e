"""Tasks from files: each format read as documented, labels inferred (sorted, logged), the hash
split for missing splits, ordinary seqio Tasks with their metrics; the shipped example gin (CSV,
JSONL, TSV and CoNLL tasks mixed with an offline task) trains end to end and resumes from gin alone."""

import csv
import json

import gin
import numpy as np
import pytest
import seqio

from mtl_jax.input import input_pipeline, task_info
from mtl_jax import train
from mtl_jax.data import file_tasks, splits
from tasks import from_files, registration
from conftest import ONE_DEVICE

DATA = train.REPO_ROOT / "examples" / "data"


def _spec(**kw):
  return file_tasks.FileTaskSpec(**{"base_dirs": (str(train.REPO_ROOT),), **kw})


def test_csv_labels_inferred_sorted_logged_and_test_carved_by_the_hash_rule(capsys):
  examples, labels = _spec(name="r", kind="classification", train="examples/data/reviews_train.csv",
                           validation="examples/data/reviews_validation.csv").read()
  assert labels == ("negative", "positive")
  assert "file task 'r': 2 labels inferred from reviews_train.csv (sorted): negative, positive" in capsys.readouterr().err
  rows = list(csv.DictReader(open(DATA / "reviews_train.csv", newline="")))
  want = {s: [(r["text"], ["negative", "positive"].index(r["label"])) for r in rows
              if (splits.split_of(r["text"]) == "test") == (s == "test")] for s in ("train", "test")}
  for split in ("train", "test"):
    assert [(e["text"], e["label"]) for e in examples[split]] == want[split]
  assert 0 < len(examples["test"]) < len(examples["train"])
  val = list(csv.DictReader(open(DATA / "reviews_validation.csv", newline="")))
  assert [e["text"] for e in examples["validation"]] == [r["text"] for r in val]  # a given file is used whole


def test_jsonl_sentence_pairs_joined_t5_style_and_split_three_ways(tmp_path):
  examples, labels = _spec(name="p", kind="classification", train="examples/data/pairs.jsonl",
                           text_fields=["premise", "hypothesis"], label_names=["different", "same"]).read()
  assert labels == ("different", "same")
  records = [json.loads(l) for l in open(DATA / "pairs.jsonl")]
  joined = [f"premise: {r['premise']} hypothesis: {r['hypothesis']}" for r in records]
  for split in splits.SPLITS:
    want = [(t, labels.index(r["label"])) for t, r in zip(joined, records) if splits.split_of(t) == split]
    assert [(e["text"], e["label"]) for e in examples[split]] == want and want, split


def test_integer_labels_sort_numerically_and_tsv_regression(tmp_path):
  path = tmp_path / "n.jsonl"
  path.write_text("".join(json.dumps({"text": f"text {i}", "label": lab}) + "\n"
                          for i, lab in enumerate([10, 2, 1, 2, 10, 1] * 10)))
  examples, labels = _spec(name="n", kind="classification", train=str(path)).read()
  assert labels == ("1", "2", "10")
  everything = [e for s in splits.SPLITS for e in examples[s]]
  assert sorted(e["label"] for e in everything) == sorted({10: 2, 2: 1, 1: 0}[l] for l in [10, 2, 1, 2, 10, 1] * 10)

  examples, labels = _spec(name="s", kind="regression", train="examples/data/ratings.tsv", label_field="score").read()
  rows = [l.rstrip("\n").split("\t") for l in open(DATA / "ratings.tsv")][1:]
  got = {e["text"]: e["score"] for s in splits.SPLITS for e in examples[s]}
  assert labels == () and got == {t: float(v) for t, v in rows}


def test_conll_and_jsonl_tagging(tmp_path):
  examples, labels = _spec(name="t", kind="tagging", train="examples/data/ner_train.conll",
                           validation="examples/data/ner_validation.conll").read()
  assert labels == ("B-LOC", "B-PER", "I-PER", "O")
  blocks = [b for b in (DATA / "ner_validation.conll").read_text().split("\n\n") if b.strip()][1:]  # -DOCSTART-
  want = [[line.split("\t") for line in b.strip().splitlines()] for b in blocks]
  assert [e["tokens"] for e in examples["validation"]] == [[w for w, _ in s] for s in want]
  assert [e["tags"] for e in examples["validation"]] == [[labels.index(t) for _, t in s] for s in want]

  path = tmp_path / "tags.jsonl"
  path.write_text(json.dumps({"tokens": ["Ana", "met", "Tom"], "tags": ["B", "O", "B"]}) + "\n" +
                  json.dumps({"tokens": "in Oslo", "tags": "O B"}) + "\n")
  examples, labels = _spec(name="j", kind="tagging", train=str(path), validation=str(path), test=str(path)).read()
  assert labels == ("B", "O")
  assert [(e["tokens"], e["tags"]) for e in examples["train"]] == [(["Ana", "met", "Tom"], [0, 1, 0]),
                                                                    (["in", "Oslo"], [1, 0])]

  path = tmp_path / "tags.csv"  # one sentence per row: space-separated tokens and tags
  path.write_text('words,labels\nAna met Tom,B O B\n"in Oslo , then",O B O O\n')
  examples, labels = _spec(name="c", kind="tagging", train=str(path), validation=str(path), test=str(path),
                           tokens_field="words", tags_field="labels").read()
  assert labels == ("B", "O")
  assert [(e["tokens"], e["tags"]) for e in examples["test"]] == [(["Ana", "met", "Tom"], [0, 1, 0]),
                                                                   (["in", "Oslo", ",", "then"], [1, 0, 1, 1])]


def test_a_file_task_is_an_ordinary_seqio_task_with_its_metrics(tmp_path):
  name = from_files.task(name="file_unit_reviews", kind="classification", train="examples/data/reviews_train.csv",
                         validation="examples/data/reviews_validation.csv")
  task = seqio.get_mixture_or_task(name)
  assert task.metric_fns == list(registration.DEFAULT_METRICS["classification"])
  assert task_info.get(name).label_names == ("negative", "positive")
  batch = input_pipeline.eval_batches(task, (name,), {"inputs": 32}, 16)[0]
  val = list(csv.DictReader(open(DATA / "reviews_validation.csv", newline="")))
  n = len(val)
  assert batch["label"][:n].tolist() == [["negative", "positive"].index(r["label"]) for r in val]
  assert batch["weight"][:n].tolist() == [1.0] * n and batch["weight"][n:].sum() == 0
  vocab = task.output_features["inputs"].vocabulary
  assert vocab.decode(batch["input_ids"][0][batch["input_mask"][0] > 0].tolist()) == val[0]["text"]
  mix = from_files.mixture(name="file_unit_mix", tasks=[name, ("vader_tweets", 3.0)])
  provider = seqio.get_mixture_or_task(mix)
  assert input_pipeline.task_names(provider) == ("file_unit_reviews", "vader_tweets")
  assert provider.get_rate(seqio.get_mixture_or_task("vader_tweets")) == 3.0


def _forget_file_tasks():
  """What a new process sees: no file task registered (seqio registry, task_info, from_files)."""
  for name in list(from_files.SPECS):
    seqio.TaskRegistry.remove(name)
    from_files.SPECS.pop(name)
  if "file_example_mix" in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove("file_example_mix")


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_example_gin_trains_csv_jsonl_tsv_conll_with_an_offline_task_and_resumes(tmp_path, capsys):
  model_dir = tmp_path / "run"
  args = ["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/tasks/example_files.gin",
          "--gin_file=gin/models/tiny.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", "--gin.BATCH_SIZE=16",
          "--gin.trainer.train.eval_batch_size=128", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]
  _forget_file_tasks()
  assert train.main([*args, "--gin.TRAIN_STEPS=2"]) == 0
  results = json.loads((model_dir / "results.json").read_text())
  tasks = results["tasks"]
  assert sorted(tasks) == ["file_ner", "file_pairs", "file_ratings", "file_reviews", "rotten_tomatoes"]
  assert {"accuracy", "f1_macro"} <= set(tasks["file_reviews"]) and {"accuracy", "f1_macro"} <= set(tasks["file_pairs"])
  assert {"pearson", "spearman", "mse"} <= set(tasks["file_ratings"])
  assert {"span_f1", "token_accuracy"} <= set(tasks["file_ner"])
  assert tasks["file_reviews"]["num_examples"] == 12  # the validation file, whole
  pairs_val = [l for l in open(DATA / "pairs.jsonl") if splits.split_of(
      "premise: {premise} hypothesis: {hypothesis}".format(**json.loads(l))) == "validation"]
  assert tasks["file_pairs"]["num_examples"] == len(pairs_val)  # the hash split of the train file
  assert np.isclose(results["average"], np.mean([r["headline"] for r in tasks.values()]))
  assert "labels inferred from reviews_train.csv (sorted): negative, positive" in capsys.readouterr().err
  spec = json.loads((model_dir / "run_spec.json").read_text())
  assert spec["tasks"] == sorted(tasks) and spec["num_classes"] == [4, 2, 1, 2, 2]

  _forget_file_tasks()  # a later process: the tasks come back from gin alone
  gin.clear_config()
  assert train.main([*args, "--gin.TRAIN_STEPS=3"]) == 0
  assert "resuming from checkpoint at step 2" in capsys.readouterr().out
  assert json.loads((model_dir / "results.json").read_text())["step"] == 3
  # eval_period (100) > TRAIN_STEPS: every max(TRAIN_STEPS // 5, 1) = 1 step (run/eval_schedule.py)
  assert [json.loads(l)["step"] for l in open(model_dir / "eval_history.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize("bad", [{"kind": "ranking"}, {"text_fields": ["a", "b", "c"]}, {"format": "xlsx"},
                                 {"label_names": ["only"]}, {"name": "has space"}])
def test_bad_settings_are_one_line(bad):
  with pytest.raises(file_tasks.FileTaskError) as e:
    _spec(**{"name": "x", "kind": "classification", "train": "examples/data/reviews_train.csv", **bad})
  assert len(str(e.value).splitlines()) == 1 and repr(list(bad.values())[0]).strip("[]")[:6] in str(e.value)


def test_a_yaml_spec_registers_its_tasks_and_mixture_and_bad_specs_are_one_line(tmp_path):
  name = from_files.from_spec("examples/example_tasks.yaml")
  provider = seqio.get_mixture_or_task(name)
  assert input_pipeline.task_names(provider) == ("rotten_tomatoes", "spec_ner", "spec_pairs", "spec_ratings",
                                                 "spec_reviews")
  assert task_info.get("spec_pairs").label_names == ("different", "same")
  assert task_info.get("spec_ner").kind == "tagging" and task_info.get("spec_ratings").kind == "regression"
  (tmp_path / "t.csv").write_text("text,label\na,x\nb,y\n")
  (tmp_path / "one.json").write_text(json.dumps({"tasks": [{"name": "spec_one", "kind": "classification",
                                                            "train": "t.csv", "validation": "t.csv"}]}))
  assert from_files.from_spec(str(tmp_path / "one.json")) == "spec_one"  # one task, path next to the spec
  for content, message in (
      ({"tasks": [{"name": "s", "kind": "classification", "train": "t.csv", "labels": ["x"]}]},
       "task 1 has unknown key 'labels'; use name, kind, train"),
      ({"tasks": [{"name": "s", "kind": "classification"}]}, "task 1 has no 'train'"),
      ({"task": []}, "a spec is a mapping with a non-empty 'tasks' list")):
    (tmp_path / "bad.json").write_text(json.dumps(content))
    with pytest.raises(file_tasks.FileTaskError) as e:
      from_files.from_spec(str(tmp_path / "bad.json"))
    assert train.one_line(e.value).startswith(f"{tmp_path / 'bad.json'}: {message}")  # gin appends context lines
