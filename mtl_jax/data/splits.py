"""One fixed train/validation/test rule for every corpus, decided by the text alone.

Rule: normalise the text (``normalize``: lower-case, whitespace runs collapsed to
one space, stripped), hash ``SALT + '\\0' + normalised`` with SHA-256, read the
first 8 bytes as a big-endian integer, take it mod 100:
``< 80`` -> 'train', ``< 90`` -> 'validation', else 'test' (80/10/10).
WNUT examples (token lists) use ``' '.join(tokens)`` as their text.

Carving a dev split out of a train split (``carved_split``; GLUE / SuperGLUE, whose test labels
are hidden: tasks/glue_carve.py): the same normalised text hashed with its own salt ``DEV_SALT``
(so the carve is independent of the 80/10/10 rule), bucket ``>= 100 - dev_percent`` ->
'validation' (the dev split, default 10 %), else 'train'.

Why: the split depends on nothing but the text, so a sentence present in two
corpora (rotten tomatoes and the VADER movie snippets share a sentence pool)
lands in the same split in both tasks.  Hence no validation/test sentence of
one task is a training sentence of another, whatever the task mix.  Changing
``SALT`` reshuffles every split; never change it casually.  ``dedup_against``
additionally removes examples whose text occurs in another list.
"""
import hashlib

SALT = 'mtl_jax-split-v1'
DEV_SALT = 'mtl_jax-dev-carve-v1'
DEV_PERCENT = 10
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


def text_seed(text: str) -> int:
    """A fixed integer from the raw text (first 16 hex digits of its SHA-256): a seed for draws that must
    be the same on every machine and run (distractors, partners), decided by the text alone as the split."""
    return int(hashlib.sha256(text.encode('utf-8')).hexdigest()[:16], 16)


def bucket_of(text: str, salt: str = SALT) -> int:
    """0..99: the first 8 bytes of SHA-256(salt NUL normalised text), big-endian, mod 100."""
    digest = hashlib.sha256(f'{salt}\0{normalize(text)}'.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') % 100


def split_of(text: str) -> str:
    """'train' | 'validation' | 'test' for ``text`` (80/10/10, see module docstring)."""
    bucket = bucket_of(text)
    return 'train' if bucket < 80 else 'validation' if bucket < 90 else 'test'


def carved_split(text: str, dev_percent: int = DEV_PERCENT) -> str:
    """'validation' (the dev split carved from a train split) for ~dev_percent % of texts, else 'train'."""
    if not isinstance(dev_percent, int) or isinstance(dev_percent, bool) or not 0 < dev_percent < 100:
        raise ValueError(f'dev_percent must be an int in 1..99, got {dev_percent!r}')
    return 'validation' if bucket_of(text, DEV_SALT) >= 100 - dev_percent else 'train'


def get_split(examples, split: str) -> list:
    """The examples of ``examples`` (dicts with 'text' or 'tokens') in ``split``."""
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; valid: {", ".join(SPLITS)}')
    return [e for e in examples if split_of(text_of(e)) == split]


def dedup_against(examples, other_examples) -> list:
    """``examples`` minus those whose normalised text occurs in ``other_examples``."""
    seen = {normalize(text_of(e)) for e in other_examples}
    return [e for e in examples if normalize(text_of(e)) not in seen]
