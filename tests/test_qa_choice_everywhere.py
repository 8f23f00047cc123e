"""QA and multiple-choice tasks through every tool (#30 'Everywhere' / Done when): each sharing strategy trains
a span-QA and an MC task through the binary (matrix); from a pretrained-checkpoint run of both, mtl-predict
round-trips (QA: answer text + score, a substring of the context at its offset; MC: the choice and its
probability; JSONL and TSV), mtl-export writes a checkpoint transformers loads with every weight, and a
run initialised from it (init_from) trains a QA target."""

import io
import json
import contextlib

import gin
import pytest

from conftest import ONE_DEVICE, TINY_ARGS
from mtl_jax import train
from pretrained_fixtures import write_tiny_checkpoint

STRATEGIES = ("hard", "soft", "sluice", "cross_stitch", "mmoe", "lora", "adapters")
MIX_GIN = "\n".join([
    "import tasks.offline_qa", "import tasks.offline_choice", "import tasks.from_files",
    "MIXTURE_OR_TASK_NAME = @from_files.mixture()", "from_files.mixture.name = 'qa_mc'",
    "from_files.mixture.tasks = [('wnut16_qa', 1.0), ('chatterbot_choice', 1.0)]"]) + "\n"
CONTEXT = "Heading to see Taylor Swift in New York tonight"


def _mix(tmp_path):
  path = tmp_path / "qa_mc.gin"
  path.write_text(MIX_GIN)
  return path


def _scores(model_dir):
  tasks = json.loads((model_dir / "results.json").read_text())["tasks"]
  return tasks["wnut16_qa"], tasks["chatterbot_choice"]


@pytest.mark.matrix  # one tiny run per strategy
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_a_qa_and_a_choice_task(clean_gin, tmp_path, strategy):
  model_dir = tmp_path / "run"
  assert train.main(["--no_progress", *TINY_ARGS, f"--gin_file=gin/sharing/{strategy}.gin",
                     f"--gin_file={_mix(tmp_path)}", "--gin.TRAIN_STEPS=2", "--gin.trainer.train.eval_period=2",
                     f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]) == 0
  qa, mc = _scores(model_dir)
  assert 0.0 <= qa["exact"] <= qa["f1"] <= 1.0 and qa["HasAns_total"] + qa["NoAns_total"] == qa["total"] > 100
  assert 0.0 <= mc["accuracy"] <= 1.0 and mc["num_examples"] > 50
  spec = json.loads((model_dir / "run_spec.json").read_text())
  assert spec["sharing"] == strategy and spec["tasks"] == ["chatterbot_choice", "wnut16_qa"]


def _predict(argv):
  from mtl_jax.predict import cli
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(argv) == 0
  return out.getvalue().splitlines()


@pytest.mark.e2e  # three runs of the binary, mtl-predict x 3, mtl-export
def test_predict_export_and_init_from_with_qa_and_choice(clean_gin, tmp_path):
  transformers = pytest.importorskip("transformers")
  ckpt = write_tiny_checkpoint(tmp_path / "ckpt", layers=1, pooling="mean")
  source = tmp_path / "source"
  common = ["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
            "--gin_file=gin/pretrained/minilm.gin", f"--gin.pretrained.checkpoint={ckpt}",
            "--gin.TASK_FEATURE_LENGTHS={'inputs': 32}", "--gin.BATCH_SIZE=8", "--gin.TRAIN_STEPS=2",
            "--gin.trainer.train.eval_period=2", "--gin.trainer.train.eval_batch_size=64", ONE_DEVICE]
  assert train.main([*common, f"--gin_file={_mix(tmp_path)}", f"--gin.MODEL_DIR={source}"]) == 0
  gin.clear_config()

  qa_in = tmp_path / "qa.jsonl"
  qa_in.write_text(json.dumps({"question": "which person is mentioned?", "context": CONTEXT}) + "\n"
                   + json.dumps({"question": "which geo loc is mentioned?", "context": CONTEXT}) + "\n")
  rows = [json.loads(l) for l in _predict([f"--model_dir={source}", f"--input={qa_in}", "--tasks=wnut16_qa",
                                           "--input_format=auto"])]
  assert [r["line"] for r in rows] == [1, 2]
  for r in rows:
    answer = r["tasks"]["wnut16_qa"]
    assert set(answer) >= {"answer", "score", "start"} and isinstance(answer["score"], float)
    assert answer["answer"] == "" or CONTEXT[answer["start"]:answer["start"] + len(answer["answer"])] == answer["answer"]
  mc_in = tmp_path / "mc.jsonl"
  mc_in.write_text(json.dumps({"text": "What is AI?", "choices": ["a fruit", "Artificial Intelligence", "blue"]}) + "\n")
  (mc,) = [json.loads(l)["tasks"]["chatterbot_choice"] for l in _predict(
      [f"--model_dir={source}", f"--input={mc_in}", "--tasks=chatterbot_choice"])]
  assert 0 <= mc["choice"] < 3 and 1 / 3 <= mc["probability"] <= 1.0
  assert mc["text"] == ["a fruit", "Artificial Intelligence", "blue"][mc["choice"]]
  tsv = _predict([f"--model_dir={source}", f"--input={mc_in}", "--tasks=chatterbot_choice", "--format=tsv"])
  assert tsv[1].split("\t") == ["1", "chatterbot_choice", mc["text"], f"{mc['probability']:.6f}"]

  from mtl_jax.pretrained import export
  assert export.main([f"--model_dir={source}", f"--output={tmp_path / 'exported'}"]) == 0
  _, info = transformers.BertModel.from_pretrained(str(tmp_path / "exported"), output_loading_info=True)
  assert not info["missing_keys"] and not info["mismatched_keys"]

  gin.clear_config()
  target = tmp_path / "target"
  assert train.main([*common, "--gin_file=gin/tasks/offline_qa.gin", f"--gin.init_from.model_dir={source}",
                     f"--gin.MODEL_DIR={target}"]) == 0
  spec = json.loads((target / "run_spec.json").read_text())
  assert spec["init_from"]["model_dir"] == str(source) and spec["tasks"] == ["wnut16_qa"]
  qa = json.loads((target / "results.json").read_text())["tasks"]["wnut16_qa"]
  assert 0.0 <= qa["f1"] <= 1.0 and qa["headline"] == qa["f1"]


def test_predict_reads_a_pair_as_a_tsv_line_or_json_alike(clean_gin):
  from mtl_jax.predict import inputs
  from tasks import from_files
  from_files.task(name="pairs_probe", kind="classification", train="examples/data/pairs.jsonl",
                  text_fields=["premise", "hypothesis"], label_names=["different", "same"])
  tsv, js = inputs.examples_for("pairs_probe", ["A man eats.\tSomeone is eating.",
                                                {"premise": "A man eats.", "hypothesis": "Someone is eating."}], "in.txt")
  assert tsv == js and tsv["texts"] == ["A man eats.", "Someone is eating."]
  with pytest.raises(ValueError, match=r"^in.txt:1: "):
    inputs.examples_for("pairs_probe", ["one\ttwo\tthree"], "in.txt")
