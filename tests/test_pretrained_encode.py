"""mtl-encode end to end: the npz equals the Python function's output, ids equal the tokenizer's own."""

import re

import numpy as np
import pytest

from mtl_jax.pretrained import encode, store

pytestmark = pytest.mark.xdist_group("pretrained_encode")  # one worker under -n: the encode CLI runs once

TEXTS = ["Hello world, this is MiniLM!", "", "An unusually long line that the short max_length below truncates, "
         "keeping [CLS] at the start and [SEP] at the end.", "UPPER case and accents: café"]


def _hf_ids(texts, max_length):
  """The checkpoint's tokenizer.json run by `tokenizers`, its own 128 padding / truncation switched off."""
  import tokenizers
  tok = tokenizers.Tokenizer.from_file(str(store.resolve("all-MiniLM-L6-v2") / "tokenizer.json"))
  tok.no_padding()
  tok.enable_truncation(max_length)
  return [e.ids for e in tok.encode_batch(texts)]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("encode")
  (tmp / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
  rc = encode.main(["--checkpoint=all-MiniLM-L6-v2", f"--input={tmp / 'texts.txt'}", f"--output={tmp / 'out.npz'}",
                    "--max_length=16", "--batch_size=3"])
  return rc, tmp / "out.npz"


def test_cli_writes_what_the_function_returns(cli_run):
  rc, out = cli_run
  assert rc == 0
  got = dict(np.load(out))
  want = encode.encode_texts("all-MiniLM-L6-v2", TEXTS, max_length=16, batch_size=2)  # other batching, same result
  assert set(got) == {"input_ids", "mask", "hidden"}
  assert (got["input_ids"].dtype, got["mask"].dtype, got["hidden"].dtype) == (np.int32, np.int32, np.float32)
  assert got["hidden"].shape == (len(TEXTS), 16, 384)
  np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
  np.testing.assert_array_equal(got["mask"], want["mask"])
  np.testing.assert_allclose(got["hidden"], want["hidden"], atol=1e-5)


def test_ids_are_the_tokenizers_own(cli_run):
  got = np.load(cli_run[1])
  want = _hf_ids(TEXTS, 16)
  assert max(map(len, want)) == 16 and len(want[1]) == 2  # one text truncated, the empty one is [CLS] [SEP]
  for i, ids in enumerate(want):
    np.testing.assert_array_equal(got["input_ids"][i, :len(ids)], ids)
    assert got["mask"][i].sum() == len(ids) and (got["input_ids"][i, len(ids):] == 0).all()
  assert got["input_ids"][2, 0] == 101 and got["input_ids"][2, 15] == 102  # [CLS] ... [SEP] after truncation


def test_ids_match_the_transformers_tokenizer():
  transformers = pytest.importorskip("transformers")
  tok = transformers.AutoTokenizer.from_pretrained(str(store.resolve("all-MiniLM-L6-v2")))
  ours = encode.TextEncoder("all-MiniLM-L6-v2").tokenize(TEXTS, max_length=16)
  want = tok(TEXTS, truncation=True, max_length=16, padding="longest", return_tensors="np")
  np.testing.assert_array_equal(ours[0], want["input_ids"])
  np.testing.assert_array_equal(ours[1], want["attention_mask"])


def test_length_is_the_longest_text(tmp_path):
  (tmp_path / "t.txt").write_text("one two\nthree\n")
  assert encode.main(["--checkpoint=all-MiniLM-L6-v2", f"--input={tmp_path / 't.txt'}",
                      f"--output={tmp_path / 'o.npz'}"]) == 0
  got = np.load(tmp_path / "o.npz")
  assert got["input_ids"].shape == (2, 4)  # [CLS] one two [SEP]; not max_length
  np.testing.assert_array_equal(got["input_ids"][1], _hf_ids(["three"], 512)[0] + [0])


@pytest.mark.parametrize("case, message", [
    ("missing", "--input '.*missing.txt' does not exist"),
    ("empty", "--input '.*empty.txt' is empty"),
    ("bad_checkpoint", "pretrained checkpoint '.*nowhere' is neither a directory nor a named model"),
    ("no_config", "has no config.json"),
])
def test_errors_are_one_line(tmp_path, capsys, case, message):
  (tmp_path / "empty.txt").write_text("")
  (tmp_path / "texts.txt").write_text("hi\n")
  (tmp_path / "notackpt").mkdir()
  inputs = {"missing": "missing.txt", "empty": "empty.txt"}.get(case, "texts.txt")
  checkpoint = {"bad_checkpoint": str(tmp_path / "nowhere"), "no_config": str(tmp_path / "notackpt")}.get(
      case, "all-MiniLM-L6-v2")
  rc = encode.main([f"--checkpoint={checkpoint}", f"--input={tmp_path / inputs}", f"--output={tmp_path / 'o.npz'}"])
  err = capsys.readouterr().err
  assert rc == 2
  assert err.startswith("mtl-encode: error: ") and err.count("\n") == 1, err
  assert re.search(message, err), err
  assert not (tmp_path / "o.npz").exists()
