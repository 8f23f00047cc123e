"""mtl-predict's fast path (mtl_jax/predict/fast.py, manifest.py): features built in numpy from the
vocabulary file equal the seqio pipeline's for the tasks the manifest marks fast (truncation, unicode,
odd whitespace included); a manifest is trusted only while config.gin / run_spec.json / the vocabulary
hash as recorded; and (e2e) a predict in a new process that finds a manifest imports no TensorFlow and
prints what the full path printed."""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ONE_DEVICE, REPO, subprocess_env
from mtl_jax.predict import fast, manifest

TEXTS = ["the film was wonderful", "a dull and broken camera " * 30,  # cut to the length, EOS kept
         "ünïcödé ☃ text\twith a tab", "   leading and trailing   ", "x", "Ça coûte 12,50 € — «vraiment»?"]


def test_fast_features_equal_the_seqio_pipeline():
  import importlib
  from tasks import from_files, offline  # noqa: F401  registers rotten_tomatoes / vader_tweets
  pipeline = importlib.import_module("mtl_jax.predict.load").pipeline_features
  name = from_files.task(name="fast_path_reviews", kind="classification", train="examples/data/reviews_train.csv",
                         validation="examples/data/reviews_validation.csv", text_fields="text", label_field="label")
  names = ("rotten_tomatoes", name, "vader_tweets")
  specs = {t: manifest._task(t) for t in names}
  assert all(s.get("fast") and s["vocabulary"]["type"] == "sentencepiece" for s in specs.values()), specs
  lengths = {"inputs": 12}
  featurize = fast.Featurizer({"task_specs": specs}, names, lengths)
  for task, placeholder in ((name, {"label": 0}), ("vader_tweets", {"score": 0.0})):  # one vocabulary: 2 kinds
    examples = [{"text": t, **placeholder} for t in TEXTS]
    want = pipeline(task, examples, names, lengths)
    got = featurize(task, examples)
    assert sorted(got) == sorted(want)
    for key in want:
      assert got[key].dtype == want[key].dtype, (task, key)
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"{task} {key}")
    assert want["input_mask"][1].sum() == 12 and want["input_ids"][1][-1] == 1  # the long text: cut, EOS last
    assert want["input_mask"][4].sum() < 12 and (want["task_id"] == names.index(task)).all()


def test_fast_tagging_features_equal_the_seqio_pipeline():
  import importlib
  from tasks import from_files, offline  # noqa: F401  registers wnut16_ner
  pipeline = importlib.import_module("mtl_jax.predict.load").pipeline_features
  name = from_files.task(name="fast_path_ner", kind="tagging", train="examples/data/ner_train.conll",
                         validation="examples/data/ner_validation.conll")
  names = ("wnut16_ner", name)
  specs = {t: manifest._task(t) for t in names}
  assert all(s.get("fast") for s in specs.values()), specs
  lengths = {"inputs": 12}
  sentences = [t.split() for t in TEXTS] + [["Ana", "Silva", "flew", "to", "Paris", "today"], ["x"],
                                            ["Zürich", "—", "naïve", "coöperation", "résumé", "ok"]]
  examples = [{"tokens": words, "tags": [0] * len(words)} for words in sentences]
  got = fast.Featurizer({"task_specs": specs}, names, lengths)(name, examples)
  want = pipeline(name, examples, names, lengths)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert (want["tags"] == 0).any() and (want["tags"][1] >= 0).sum() < len(sentences[1])  # cut words: untagged


def test_pair_tasks_are_left_to_the_full_pipeline():
  from tasks import from_files
  pairs = from_files.task(name="fast_path_pairs", kind="classification", train="examples/data/pairs.jsonl",
                          text_fields=["premise", "hypothesis"], label_names=["different", "same"])
  assert "pairs" in manifest._task(pairs)["unsupported"] and not manifest._task(pairs).get("fast")
  assert manifest._task(pairs)["file_spec"]["text_fields"] == ["premise", "hypothesis"]


def _fake_run(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.gin").write_text("TRAIN_STEPS = 3\n")
  (run / "run_spec.json").write_text('{"tasks": ["t"]}')
  vocab = tmp_path / "spm.model"
  vocab.write_bytes(b"model bytes")
  return run, vocab


def test_a_manifest_is_trusted_only_while_the_run_and_vocabulary_files_match(tmp_path, monkeypatch):
  monkeypatch.setenv("MTL_JAX_CACHE", str(tmp_path / "cache"))
  run, vocab = _fake_run(tmp_path)
  entry = {"fast": True, "kind": "classification", "label_names": ["a", "b"],
           "vocabulary": {"type": "sentencepiece", "path": str(vocab), "sha256": manifest._sha256(vocab),
                          "add_bos": False, "bos_id": -1, "eos_id": 1}}
  saved = {"version": manifest.VERSION, **manifest._fingerprint(run), "tasks": ["t"], "feature_lengths": {"inputs": 8},
           "gin_modules": ["mtl_jax.models.encoder", "tasks.from_files", "mtl_jax.run.trainer"],
           "task_specs": {"t": entry}}
  assert manifest.read(run) is None  # none yet
  (run / manifest.FILENAME).write_text(json.dumps(saved))
  assert manifest.read(run) == saved
  assert manifest.model_modules(saved) == ["mtl_jax.models.encoder"]  # task / trainer modules: not imported
  (run / "config.gin").write_text("TRAIN_STEPS = 4\n")  # resumed with other settings: stale
  assert manifest.read(run) is None
  saved.update(manifest._fingerprint(run))
  cached = manifest.cache_path(run)  # a predict's cached manifest counts as well
  cached.parent.mkdir(parents=True)
  cached.write_text(json.dumps(saved))
  assert manifest.read(run) == saved
  manifest._CHECKED.clear()
  vocab.write_bytes(b"another model")  # the vocabulary file changed under the run
  assert manifest.read(run) is None


def test_trusted_foreign_imports_still_run_on_the_fast_path(tmp_path, monkeypatch):
  (tmp_path / "fh_fast_payload.py").write_text(f"open({str(tmp_path / 'ran.txt')!r}, 'w').write('ran')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  text = "import tasks.from_files\nfrom mtl_jax.models import encoder\nimport fh_fast_payload\n"
  assert fast._foreign_imports(text) == ["fh_fast_payload"]
  try:
    fast.parse_model_config(text, {"gin_modules": []})
  finally:
    import gin
    gin.clear_config()
  assert (tmp_path / "ran.txt").read_text() == "ran"  # config_trust refused it earlier unless --trust_config


def test_parse_model_config_binds_model_modules_and_skips_task_modules():
  import gin
  from mtl_jax.models import encoder
  text = ("from mtl_jax.models import encoder\nimport tasks.not_a_module\n"
          "EncoderConfig.d_model = 48\nmixture.name = 'x'\nMIXTURE_OR_TASK_NAME = @from_files.mixture()\n"
          "train.batch_size = 16\n")
  try:
    fast.parse_model_config(text, {"gin_modules": ["mtl_jax.models.encoder", "tasks.from_files"]})
    assert gin.query_parameter("EncoderConfig.d_model") == 48
    assert encoder.EncoderConfig().d_model == 48
    assert "tasks.not_a_module" not in sys.modules
  finally:
    gin.clear_config()


@pytest.mark.e2e  # trains a tiny run and runs mtl-predict twice in new processes
def test_the_first_predict_after_training_imports_no_tensorflow_and_prints_what_the_full_path_prints(tmp_path):
  from mtl_jax import train
  run = tmp_path / "run"
  assert train.main(["--no_progress", "--gin_file=gin/runs/quickstart.gin", "--gin_file=gin/tasks/example_files.gin",
                     "--gin_file=gin/models/tiny.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}",
                     "--gin.BATCH_SIZE=16", "--gin.TRAIN_STEPS=2", f"--gin.MODEL_DIR={run}", ONE_DEVICE]) == 0
  assert (run / manifest.FILENAME).exists()  # training wrote it (run/trainer.py)
  (tmp_path / "in.txt").write_text("the film was wonderful\na dull and broken camera\n")
  env = subprocess_env()
  cmd = [sys.executable, "-X", "importtime", "-m", "mtl_jax.predict", f"--model_dir={run}",
         f"--input={tmp_path / 'in.txt'}", "--tasks=file_reviews,file_ratings,rotten_tomatoes"]
  fast = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  (run / manifest.FILENAME).rename(tmp_path / "manifest.away")  # no manifest anywhere: the full path
  full = subprocess.run(cmd, cwd=REPO, env={**env, "MTL_JAX_CACHE": str(tmp_path / "empty_cache")},
                        capture_output=True, text=True, timeout=300)
  assert fast.returncode == full.returncode == 0, (fast.stderr[-2000:], full.stderr[-2000:])
  assert fast.stdout == full.stdout and len(fast.stdout.splitlines()) == 2
  imported = lambda proc, module: re.search(rf"\|\s+{module}$", proc.stderr, re.M) is not None  # -X importtime
  assert imported(full, "tensorflow")
  assert not imported(fast, "tensorflow") and not imported(fast, "seqio") and imported(fast, "jax")
