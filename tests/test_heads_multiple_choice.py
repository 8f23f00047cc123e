"""Multiple choice: 2, 3 and 4 choices in one batch (padding choices masked), the loss equals a
numpy softmax cross-entropy over per-choice mean token scores, an offline MC task trains through
the binary, and predict returns the choice and its probability."""

import json

import numpy as np
import pytest
import seqio

from mtl_jax.heads import HeadOutputs, multiple_choice
from mtl_jax.input import features as features_lib
from tasks import offline, registration

import tasks.offline_choice  # noqa: F401  registers chatterbot_choice

from conftest import ONE_DEVICE, TINY_ARGS, run_main

ITEMS = [
    {"text": "The sky is", "choices": ["blue", "a sandwich"], "label": 0},
    {"text": "Two plus two is", "choices": ["five", "four", "a cat"], "label": 1},
    {"text": "Paris is in", "choices": ["Japan", "Peru", "France", "the sea"], "label": 2},
    {"text": "Ice is", "choices": ["hot", "cold", "loud"], "label": 1},
]


def _register():
  registration.add_task("mc_probe", kind="multiple_choice", vocabulary=offline.VOCABULARY,
                        label_names=("c1", "c2", "c3", "c4"), examples_fn=lambda split: ITEMS)
  return seqio.get_mixture_or_task("mc_probe")


def _batch(length=24):
  task = _register()
  ds = task.get_dataset({"inputs": length}, split="validation", shuffle=False)
  ds = features_lib.EncoderFeatureConverter(["mc_probe"])(ds, {"inputs": length})
  rows = list(ds.as_numpy_iterator())
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_two_three_four_choices_in_one_batch_loss_is_softmax_over_present_choices(clean_gin):
  batch = _batch(48)  # room for every pair whole (each gets 48 // its number of choices)
  spm = offline.VOCABULARY.default
  eos = offline.VOCABULARY.eos_id
  for i, item in enumerate(ITEMS):  # per-pair layout: pair j = `context </s> choice_j </s>`, types 0 / 1
    tags, ids, types = batch["tags"][i], batch["input_ids"][i], batch["token_type_ids"][i]
    choice_of = np.asarray(multiple_choice.choice_index(tags, np))
    assert sorted(set(choice_of[choice_of >= 0].tolist())) == list(range(len(item["choices"])))
    for j, choice in enumerate(item["choices"]):
      on = choice_of == j
      assert ids[on].tolist() == list(spm.encode(item["text"])) + [eos] + list(spm.encode(choice)) + [eos]
      assert types[on].tolist() == [0] * (len(spm.encode(item["text"])) + 1) + [1] * (len(spm.encode(choice)) + 1)
  rng = np.random.default_rng(0)
  token_scores = rng.normal(size=batch["tags"].shape).astype(np.float32)
  out = HeadOutputs(np.zeros((len(ITEMS), 1), np.float32), token_scores[..., None])
  loss = np.asarray(multiple_choice.MultipleChoice().example_loss(out, batch))
  for i, item in enumerate(ITEMS):  # independent: per choice mean of its tokens' scores, log-softmax
    choice_of = np.asarray(multiple_choice.choice_index(batch["tags"][i], np))
    scores = np.array([token_scores[i][choice_of == j].mean() for j in range(len(item["choices"]))])
    want = -(scores[item["label"]] - np.log(np.exp(scores).sum()))
    np.testing.assert_allclose(loss[i], want, rtol=1e-5)
    choice, p = multiple_choice.choose(token_scores[i], batch["tags"][i])
    assert choice == int(np.argmax(scores)) and np.isclose(p, np.exp(scores).max() / np.exp(scores).sum())


def test_truncation_keeps_every_choice(clean_gin):
  _register()
  registration.add_task("mc_long", kind="multiple_choice", vocabulary=offline.VOCABULARY,
                        label_names=("c1", "c2", "c3"),
                        examples_fn=lambda split: [{"text": "word " * 200, "choices": ["yes", "no", "maybe so"],
                                                    "label": 0}])
  ds = seqio.get_mixture_or_task("mc_long").get_dataset({"inputs": 16}, split="validation", shuffle=False)
  ex = next(ds.as_numpy_iterator())  # per-pair layout: each pair cut to 16 // 3 tokens, all three kept
  assert len(ex["inputs"]) == 15 and ex["tags"].tolist() == [multiple_choice.pair_tag(j) for j in range(3) for _ in range(5)]
  assert ex["token_type"].tolist()[-2:] == [1, 1]  # the last choice keeps its token and its separator


@pytest.mark.parametrize("bad, match", [
    ({"text": "q", "choices": ["only one"], "label": 0}, "'choices' must be 2 to 3"),
    ({"text": "q", "choices": ["a", "b"], "label": 2}, "label 2 is not the index"),
])
def test_bad_items_are_one_line(clean_gin, bad, match):
  registration.add_task("mc_bad", kind="multiple_choice", vocabulary=offline.VOCABULARY,
                        label_names=("c1", "c2", "c3"), examples_fn=lambda split: [bad])
  with pytest.raises(ValueError, match=match):
    seqio.get_mixture_or_task("mc_bad").get_dataset({"inputs": 16}, split="train", shuffle=False)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_chatterbot_choice_trains_through_the_binary_and_predicts(clean_gin, tmp_path):
  model_dir = tmp_path / "run"
  run = run_main(*TINY_ARGS, ONE_DEVICE,
                 "--gin_file=gin/tasks/offline_choice.gin", f"--gin.MODEL_DIR='{model_dir}'",
                 "--gin.TRAIN_STEPS=6", "--gin.trainer.train.eval_period=6")
  from mtl_jax.input import truncation
  n_val = min(64, len(tasks.offline_choice.examples("validation")))  # TINY_ARGS' evaluation.max_examples
  cut = truncation.counts(["chatterbot_choice"], 32, max_examples=64)["chatterbot_choice"]["validation"][0]
  assert f"mtl_jax: truncated at inputs=32: chatterbot_choice {cut}/{n_val} validation" in run.stdout
  results = json.loads((model_dir / "results.json").read_text())
  task = results["tasks"]["chatterbot_choice"]
  assert 0.0 <= task["accuracy"] <= 1.0 and task["num_examples"] > 50
  from mtl_jax import predict
  predictor = predict.load(model_dir)
  out = predictor.predict([{"text": "What is AI?", "choices": ["a fruit", "Artificial Intelligence", "blue"]},
                           "How are you?\tI am fine\tParis"])
  for row, n in zip(out, (3, 2)):
    r = row["chatterbot_choice"]
    assert 0 <= r["choice"] < n and 1.0 / n <= r["probability"] <= 1.0


def _mc_file(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_file_task_choices_jsonl_and_csv(clean_gin, tmp_path):
  from tasks import from_files
  rows = [{"q": "The sky is", "choices": ["blue", "green"], "label": 0},
          {"q": "Two plus two", "choices": ["three", "four", "five"], "label": "four"},
          {"q": "Paris is in", "choices": ["Peru", "Chad", "France", "Fiji"], "label": 2}]
  jsonl = _mc_file(tmp_path, "mc.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
  csv = _mc_file(tmp_path, "mc.csv", 'q,choices,label\nThe sky is,blue | green,0\n"Two plus two","[""three"", ""four""]",four\n')
  for path, n in ((jsonl, 3), (csv, 2)):
    name = f"mc_file_{path.suffix[1:]}"
    from_files.task(name=name, kind="multiple_choice", train=str(path), validation=str(path),
                    text_fields="q", label_field="label")
    assert from_files.SPECS[name].read()[1] == tuple(f"choice{i + 1}" for i in range(4 if n == 3 else 2))
    exs = seqio.get_mixture_or_task(name).source._examples_fn("validation")
    assert [e["label"] for e in exs] == [0, 1, 2][:n]
    assert exs[1]["choices"] == ["three", "four", "five"][:len(exs[1]["choices"])]


@pytest.mark.parametrize("content, expected", [
    ('{"q": "a", "choices": ["x", "y"], "label": 0}\n{"q": "b", "choices": ["only"], "label": 0}\n',
     "2: 'choices' must hold >= 2 non-empty choices, got ['only']; give a JSON list (or 'a | b' in CSV / TSV)"),
    ('{"q": "a", "choices": ["x", "y"], "label": 0}\n{"q": " ", "choices": ["x", "y"], "label": 1}\n',
     "2: empty text in 'q'; drop the row or fill it"),
    ('{"q": "a", "choices": ["x", "y"], "label": 0}\n{"q": "b", "choices": ["x", "y"], "label": 5}\n',
     "2: label 5 is neither a choice's 0-based index (0 to 1) nor one of its choices' text; fix the row"),
])
def test_bad_choice_rows_are_one_line_and_write_nothing(tmp_path, capsys, content, expected):
  from mtl_jax import train
  path = _mc_file(tmp_path, "bad.jsonl", content)
  gin_file = tmp_path / "bad.gin"
  gin_file.write_text("\n".join([
      "import tasks.from_files", "bad/from_files.task.name = 'bad_mc'", "bad/from_files.task.kind = 'multiple_choice'",
      f"bad/from_files.task.train = {str(path)!r}", "bad/from_files.task.text_fields = 'q'",
      "MIXTURE_OR_TASK_NAME = @bad/from_files.task()"]) + "\n")
  model_dir = tmp_path / "never"
  capsys.readouterr()
  rc = train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
                   f"--gin_file={gin_file}", "--gin.TRAIN_STEPS=2", f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE])
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("mtl-train")]
  assert rc == 2 and err == [f"mtl-train: error: {path}:{expected}"] and not model_dir.exists()


def test_predict_input_with_too_few_choices_is_one_line(clean_gin):
  _register()
  from mtl_jax.predict import inputs
  with pytest.raises(ValueError, match=r"^in.txt:3: task 'mc_probe' needs >= 2 non-empty choices"):
    inputs.examples_for("mc_probe", ["q\ta\tb", {"text": "q", "choices": ["a", "b"]}, "q\tonly"], "in.txt")
  with pytest.raises(ValueError, match=r"^in.txt:1: empty context"):
    inputs.examples_for("mc_probe", [{"text": " ", "choices": ["a", "b"]}], "in.txt")
