"""mtl-predict for every sharing strategy (hard, soft, sluice, cross_stitch, mmoe) and for a run on
a pretrained checkpoint's tokenizer: predictions equal the eval path's (Steps.predict_step on the
run's eval batches) on the same inputs."""

import gin
import jax
import pytest

from mtl_jax import predict, train
from mtl_jax.models.encoder import EncoderConfig
from mtl_jax.models.multitask import build_model
from mtl_jax.predict.load import Predictor
from pretrained_fixtures import write_tiny_checkpoint
from test_predict import LENGTHS, assert_predict_equals_eval, eval_steps, validation_records
from conftest import ONE_DEVICE

TASKS = ("file_ner", "file_reviews")  # tagging (token logits) and classification (pooled logits) off the trunk


@pytest.fixture(scope="module")
def file_tasks():
  gin.clear_config()
  from tasks import from_files, offline
  for scope, kind, train_file, extra in (
      ("reviews", "classification", "reviews_train.csv", {"validation": "examples/data/reviews_validation.csv"}),
      ("ner", "tagging", "ner_train.conll", {"validation": "examples/data/ner_validation.conll"})):
    from_files.task(name=f"file_{scope}", kind=kind, train=f"examples/data/{train_file}", **extra)
  records = validation_records()
  return offline.VOCABULARY.vocab_size, {t: records[t] for t in TASKS}


@pytest.mark.parametrize("sharing", ["soft", "sluice", "cross_stitch", "mmoe"])  # hard: tests/test_predict.py
def test_every_strategy_predicts_as_the_eval_path(file_tasks, sharing):
  vocab_size, records = file_tasks
  config = EncoderConfig(d_model=32, num_heads=2, mlp_dim=64, num_layers=1, max_len=64, vocab_size=vocab_size)
  model = build_model(config, sharing, [4, 2])
  predictor = Predictor(model, None, TASKS, LENGTHS, batch_size=64)
  steps = eval_steps(predictor)
  predictor.params = steps.init_state().params  # a fresh model: heads and gates differ per task
  assert_predict_equals_eval(predictor, records)


@pytest.mark.e2e  # slow end-to-end (marker e2e: CI's second step)
def test_a_pretrained_tokenizer_mmoe_run_predicts_as_the_eval_path(tmp_path, clean_gin):  # load() sets mmoe.num_experts = 2
  ckpt = write_tiny_checkpoint(tmp_path / "ckpt", layers=1, pooling="mean")
  gin_file = tmp_path / "two_files.gin"
  gin_file.write_text("\n".join([
      "import tasks.from_files",
      "include 'gin/tasks/example_files.gin'",
      "from_files.mixture.name = 'file_two'",
      "from_files.mixture.tasks = [@reviews/from_files.task(), @ner/from_files.task()]",
      "mmoe.num_experts = 2"]) + "\n")
  model_dir = tmp_path / "run"
  assert train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/models/tiny.gin",
                     "--gin_file=gin/pretrained/minilm.gin", "--gin_file=gin/sharing/mmoe.gin", f"--gin_file={gin_file}",
                     f"--gin.pretrained.checkpoint={ckpt}", f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}",
                     "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=2", "--gin.trainer.train.eval_batch_size=64",
                     f"--gin.MODEL_DIR={model_dir}", ONE_DEVICE]) == 0
  gin.clear_config()
  predictor = predict.load(model_dir, checkpoint="latest", batch_size=64)
  assert predictor.checkpoint == "latest" and predictor.step == 2
  experts = [k for k in jax.tree_util.tree_flatten_with_path(predictor.params)[0] if "expert" in str(k[0]).lower()]
  assert experts and all(leaf.shape[0] == 2 for _, leaf in experts)  # mmoe.num_experts from config.gin
  feats = predictor.features("file_reviews", [{"text": "the film was wonderful", "label": 0}])
  assert feats["input_ids"][0][0] == 101  # [CLS]: the checkpoint's WordPiece tokenizer, as in training
  records = validation_records()
  assert_predict_equals_eval(predictor, {t: records[t] for t in ("file_ner", "file_reviews")})
