"""The offline pair tasks (mtl_jax/data/offline_pairs.py): labels recomputed from the corpora, splits that
agree with the sibling tasks' (no held-out text in another task's training data), and both texts reaching
the encoder as a native pair (two segments, token types 0 / 1)."""

import collections

import numpy as np

from mtl_jax.data import chatterbot_choice, corpora, offline_pairs, splits
from mtl_jax.input import input_pipeline as ip
from mtl_jax.input import task_info
from tasks import offline_pairs as pair_tasks


def test_chatterbot_pair_labels_and_negatives_from_other_categories():
  category_of_reply = collections.defaultdict(set)
  answer = {}
  for question, reply, cat in chatterbot_choice._conversations():
    category_of_reply[reply].add(cat)
    answer[question] = (reply, cat)
  rows = offline_pairs.chatterbot_pair()
  assert len(rows) == 2 * len(answer)
  for r in rows:
    question, reply = r["texts"]
    own, cat = answer[question]
    if r["label"] == 1:
      assert reply == own
    else:
      assert reply != own and cat not in category_of_reply[reply], (question, reply)
  for split in splits.SPLITS:
    got = pair_tasks.examples("chatterbot_pair", split)
    assert collections.Counter(e["label"] for e in got) == {0: len(got) // 2, 1: len(got) // 2}
    # the question's split is the one chatterbot_choice gives it: no held-out question trained on there
    choice_questions = {e["text"] for e in splits.get_split(chatterbot_choice.load(), split)}
    assert {e["texts"][0] for e in got} == choice_questions


def test_vader_pair_scores_are_valence_differences_within_one_split():
  valence = {e["text"]: e["score"] for e in corpora.load_vader("movie")}
  seen = collections.Counter()
  for split in splits.SPLITS:
    got = pair_tasks.examples("vader_pair", split)
    assert abs(len(got) - len(splits.get_split(corpora.load_vader("movie"), split)) / 2) <= 1
    for e in got:
      a, b = e["texts"]
      assert splits.split_of(a) == splits.split_of(b) == split
      np.testing.assert_allclose(e["score"], (valence[b] - valence[a]) / 8.0, rtol=0, atol=1e-12)
      seen.update([a, b])
  assert max(seen.values()) == 1  # each sentence in one pair at most
  scores = np.array([e["score"] for e in pair_tasks.examples("vader_pair", "train")])
  assert np.abs(scores).max() <= 1.0 and scores.std() > 0.15 and abs(scores.mean()) < 0.05


def test_pairs_reach_the_encoder_as_two_segments():
  for task in ("chatterbot_pair", "vader_pair"):
    assert task_info.get(task).kind == ("classification" if task == "chatterbot_pair" else "regression")
    provider = ip.get_provider(task)
    batch = ip.eval_batches(provider, (task,), {"inputs": 64}, 8)[0]
    types, mask = batch["token_type_ids"], batch["input_mask"]
    for i in range(8):
      real = types[i][mask[i] > 0]
      assert real[0] == 0 and 1 in real and np.all(np.diff(real) >= 0), (task, real)  # 0...0 1...1
    expected = pair_tasks.examples(task, "validation")[:8]
    key = "label" if task == "chatterbot_pair" else "score"
    np.testing.assert_allclose(batch[key], [e[key] for e in expected], rtol=1e-6)


def test_offline_classes_mixture_holds_one_task_per_shipped_class():
  names = ip.task_names(ip.get_provider("offline_classes"))
  assert names == tuple(sorted(pair_tasks.OFFLINE_CLASSES))
  kinds = {task_info.get(t).kind for t in names}
  assert kinds == {"classification", "regression", "span_qa", "tagging", "multiple_choice"}
