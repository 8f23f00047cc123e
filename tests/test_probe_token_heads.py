"""mtl-probe's linear QA / multiple-choice token heads (probe/token_heads.py) on a tiny frozen checkpoint:
the token states equal mtl-encode's pass, the fitted objective equals a numpy transcription of the heads'
losses, and on tasks a linear token head can solve (the answer is always 'paris'; the right choice always
'yes') the probe scores well above chance through the tasks' own metrics; the CLI writes its rows."""

import csv
import random

import numpy as np
import pytest
import seqio

from mtl_jax.heads import multiple_choice
from mtl_jax.probe import cli, featurize, token_heads
from pretrained_fixtures import write_tiny_checkpoint

WORDS = "the a cat dog runs blue green house tree river road car sun moon".split()


def _qa(n, seed):
  rng = random.Random(seed)
  out = []
  for i in range(n):
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 9))]
    words.insert(rng.randint(0, len(words)), "paris")
    context = " ".join(words)
    out.append({"text": "which city?", "context": context, "id": f"{seed}-{i}",
                "answers": [{"text": "paris", "answer_start": context.index("paris")}]})
  return out


def _mc(n, seed):
  rng = random.Random(seed)
  out = []
  for _ in range(n):
    k = rng.randint(2, 4)
    wrong = rng.sample(["no", "never", "maybe", "later"], k - 1)
    label = rng.randrange(k)
    out.append({"text": rng.choice(WORDS), "choices": wrong[:label] + ["yes"] + wrong[label:], "label": label})
  return out


@pytest.fixture(scope="module")
def tasks_and_ckpt(tmp_path_factory):
  from tasks import offline, registration
  data = {"probe_qa": {"train": _qa(40, 0), "validation": _qa(12, 1), "test": _qa(12, 2)},
          "probe_mc": {"train": _mc(40, 0), "validation": _mc(12, 1), "test": _mc(12, 2)}}
  registration.add_task("probe_qa", kind="span_qa", vocabulary=offline.VOCABULARY, label_names=("start", "end"),
                        examples_fn=lambda split: data["probe_qa"][split])
  registration.add_task("probe_mc", kind="multiple_choice", vocabulary=offline.VOCABULARY,
                        label_names=("c1", "c2", "c3", "c4"), examples_fn=lambda split: data["probe_mc"][split])
  return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


def _numpy_loss(kind, out, d):
  """Mean per-row loss: QA = mean of start / end CE over real tokens; MC = CE over per-choice mean scores."""
  losses = []
  for i in range(len(out)):
    real = d["input_mask"][i] > 0
    if kind == "span_qa":
      def ce(z, t):
        z = z[real]
        return np.log(np.exp(z - z.max()).sum()) + z.max() - z[t]
      losses.append(0.5 * (ce(out[i, :, 0], d["label"][i]) + ce(out[i, :, 1], int(d["score"][i]))))
    else:
      tags = np.asarray(multiple_choice.choice_index(d["tags"][i], np))
      scores = np.array([out[i, tags == j, 0].mean() for j in range(tags.max() + 1)])
      losses.append(np.log(np.exp(scores).sum()) - scores[d["label"][i]])
  return float(np.mean(losses))


@pytest.mark.e2e  # featurizes through the tasks' pipeline with a checkpoint tokenizer (~1 CPU-min on the shared box)
@pytest.mark.parametrize("task, kind, metric, floor", [("probe_qa", "span_qa", "f1", 0.4),
                                                       ("probe_mc", "multiple_choice", "accuracy", 0.6)])
def test_linear_token_head_solves_a_token_task_with_the_tasks_metric(tasks_and_ckpt, tmp_path, task, kind, metric,
                                                                     floor):
  transformers = pytest.importorskip("transformers")
  import torch
  feat = featurize.from_checkpoint("tiny", str(tasks_and_ckpt))
  data = {s: featurize.features(feat, task, s, 32, cache=tmp_path) for s in ("train", "validation", "test")}
  batch = next(featurize._examples(task, "validation", 32))
  assert batch["token_type_ids"].max() == 1  # the question / context and context / choices as a pair
  bert = transformers.BertModel.from_pretrained(str(tasks_and_ckpt)).eval()
  real = batch["input_mask"] > 0
  groups = [real]  # QA: the row as it is; MC (per-pair layout): each (context, choice) pair alone in its own row
  if kind == "multiple_choice":
    groups = [batch["tags"] == multiple_choice.pair_tag(j) for j in range(multiple_choice.MAX_CHOICES)]
  hidden = np.zeros(batch["input_ids"].shape + (bert.config.hidden_size,), np.float32)
  for on in groups:
    rows = np.flatnonzero(on.any(1))
    if not len(rows):
      continue
    n = on.sum(1)[rows]
    left = lambda key: np.stack([np.pad(batch[key][r][on[r]], (0, on.shape[1] - k)) for r, k in zip(rows, n)])
    with torch.no_grad():
      out = bert(input_ids=torch.tensor(left("input_ids"), dtype=torch.long),
                 attention_mask=torch.tensor((np.arange(on.shape[1]) < n[:, None]).astype(np.int64)),
                 token_type_ids=torch.tensor(left("token_type_ids"), dtype=torch.long)).last_hidden_state.numpy()
    for r, k, h in zip(rows, n, out):
      hidden[r][on[r]] = h[:k]
  np.testing.assert_allclose(data["validation"]["x"][:len(real)][real], hidden[real], atol=3e-4)  # HF's states
  train = data["train"]
  norm = token_heads.standardizer(train["x"], train["input_mask"])
  params = token_heads.fit(norm(train["x"]), train, kind, l2=1e-3)
  w = np.asarray(params["w"])
  out = token_heads.predict(params, norm(train["x"]))
  want = _numpy_loss(kind, out, train) + 0.5 * 1e-3 * (w ** 2).sum()
  import jax.numpy as jnp
  from jax.flatten_util import ravel_pytree
  template = {"w": jnp.zeros_like(params["w"]), "b": jnp.zeros_like(params["b"])}
  value, grad = token_heads._value_and_grad(ravel_pytree(params)[0], template, jnp.asarray(norm(train["x"])),
                                            {k: jnp.asarray(train[k]) for k in token_heads._ROW_KEYS},
                                            jnp.float32(1e-3), kind)
  assert float(value) == pytest.approx(want, rel=1e-4) and np.abs(np.asarray(grad)).max() < 1e-3  # a minimum
  got = token_heads.fit_and_score(task, "logreg", train, data["validation"], data["test"], 0, False, (1.0, 100.0))
  # chance: ~1/7 of the context words for QA (one 'paris' among 5-10 words; the random 2-layer trunk mixes
  # the tokens, measured: EM 0.5-0.67), <= 1/2 for the choices
  assert got["metric"] == metric and got["test"] >= floor and got["valid"] >= floor
  with pytest.raises(ValueError, match="linear token head"):
    token_heads.fit_and_score(task, "mlp", train, data["validation"], data["test"], 0, False)


@pytest.mark.e2e  # the CLI end to end
def test_probe_cli_takes_qa_and_choice_tasks(tasks_and_ckpt, tmp_path):
  out = tmp_path / "out"
  argv = [f"--featurizer=tiny={tasks_and_ckpt}", "--tasks=probe_qa,probe_mc", "--sizes=20,all", "--seeds=0",
          "--models=logreg", "--max_length=32", f"--cache_dir={tmp_path / 'cache'}", f"--out_dir={out}",
          "--task_module=tasks.offline"]
  assert cli.main(argv) == 0
  rows = list(csv.DictReader(open(out / "probe_results.csv")))
  assert [(r["task"], r["size"], r["examples"]) for r in rows] == [
      ("probe_qa", "20", "20"), ("probe_qa", "all", "40"), ("probe_mc", "20", "20"), ("probe_mc", "all", "40")]
  assert {r["metric"] for r in rows} == {"f1", "accuracy"} and all(0.0 <= float(r["test"]) <= 1.0 for r in rows)
