"""mtl-encode with sentence pairs (#30 'Everywhere'): a line `a<TAB>b` is encoded as transformers encodes
`tokenizer(a, b, truncation=True, max_length=L)` (ids and token types, longest-first), mixed with single texts,
and the hidden states equal transformers' BertModel run with those token types."""

import numpy as np
import pytest

from mtl_jax.pretrained import encode
from pretrained_fixtures import write_tiny_checkpoint

LINES = ["a single sentence without a partner",
         "How old is the tower?\tThe Eiffel Tower was built in 1889 for the World's Fair in Paris.",
         "short\t" + "a very long second text that must be cut first " * 3,
         "an empty second text\t"]


@pytest.mark.e2e  # the CLI end to end + transformers (~1 CPU-min on the shared box)
def test_pairs_equal_transformers_ids_types_and_states(tmp_path):
  transformers = pytest.importorskip("transformers")
  import torch
  ckpt = write_tiny_checkpoint(tmp_path / "tiny", layers=1)
  (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n")
  assert encode.main([f"--checkpoint={ckpt}", f"--input={tmp_path / 'in.txt'}", f"--output={tmp_path / 'o.npz'}",
                      "--max_length=24"]) == 0
  got = dict(np.load(tmp_path / "o.npz"))
  assert set(got) == {"input_ids", "mask", "hidden", "token_type_ids"}
  tok = transformers.AutoTokenizer.from_pretrained(str(ckpt))
  for i, line in enumerate(LINES):
    a, _, b = line.partition("\t")
    want = tok(a, b or None, truncation=True, max_length=24)
    n = len(want["input_ids"])
    assert got["mask"][i].sum() == n, line
    np.testing.assert_array_equal(got["input_ids"][i, :n], want["input_ids"], err_msg=line)
    np.testing.assert_array_equal(got["token_type_ids"][i, :n], want["token_type_ids"], err_msg=line)
  assert got["token_type_ids"][1].max() == 1 and got["mask"][2].sum() == 24  # a pair; the long one cut
  bert = transformers.BertModel.from_pretrained(str(ckpt)).eval()
  with torch.no_grad():
    hidden = bert(input_ids=torch.tensor(got["input_ids"], dtype=torch.long),
                  attention_mask=torch.tensor(got["mask"], dtype=torch.long),
                  token_type_ids=torch.tensor(got["token_type_ids"], dtype=torch.long)).last_hidden_state.numpy()
  real = got["mask"] > 0
  np.testing.assert_allclose(got["hidden"][real], hidden[real], atol=3e-4)
