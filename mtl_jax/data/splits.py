"""One fixed train/validation/test rule for every corpus, decided by the text alone.

Rule: normalise the text (``normalize``: lower-case, whitespace runs collapsed to
one space, stripped), hash ``SALT + '\\0' + normalised`` with SHA-256, read the
first 8 bytes as a big-endian integer, take it mod 100:
``< 80`` -> 'train', ``< 90`` -> 'validation', else 'test' (80/10/10).
WNUT examples (token lists) use ``' '.join(tokens)`` as their text.

Why: the split depends on nothing but the text, so a sentence present in two
corpora (rotten tomatoes and the VADER movie snippets share a sentence pool)
lands in the same split in both tasks.  Hence no validation/test sentence of
one task is a training sentence of another, whatever the task mix.  Changing
``SALT`` reshuffles every split; never change it casually.  ``dedup_against``
additionally removes examples whose text occurs in another list.
"""
import hashlib

SALT = 'mtl_jax-split-v1'
SPLITS = ('train', 'validation', 'test')


def normalize(text: str) -> str:
    """Lower-cased, whitespace-collapsed text: the key for splits and dedup."""
    return ' '.join(text.lower().split())


def text_of(example) -> str:
    """An example's text: ``example['text']``, or its joined ``tokens``."""
    if isinstance(example, str):
        return example
    if 'text' in example:
        return example['text']
    return ' '.join(example['tokens'])


def split_of(text: str) -> str:
    """'train' | 'validation' | 'test' for ``text`` (80/10/10, see module docstring)."""
    digest = hashlib.sha256(f'{SALT}\0{normalize(text)}'.encode('utf-8')).digest()
    bucket = int.from_bytes(digest[:8], 'big') % 100
    return 'train' if bucket < 80 else 'validation' if bucket < 90 else 'test'


def get_split(examples, split: str) -> list:
    """The examples of ``examples`` (dicts with 'text' or 'tokens') in ``split``."""
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; valid: {", ".join(SPLITS)}')
    return [e for e in examples if split_of(text_of(e)) == split]


def dedup_against(examples, other_examples) -> list:
    """``examples`` minus those whose normalised text occurs in ``other_examples``."""
    seen = {normalize(text_of(e)) for e in other_examples}
    return [e for e in examples if normalize(text_of(e)) not in seen]
