"""The repository itself: a bare clone passes a faithfulness test, and the import graph keeps its
floors (utils/ imports no domain package; tests import helpers, never each other)."""
import ast
import os
import subprocess
import sys

from helpers import ROOT

DOMAIN_PACKAGES = {'configs', 'checkpoints', 'datasets', 'discriminators', 'generators', 'geometry', 'inversion',
                   'metrics', 'tools', 'training', 'browser'}


def imported_modules(path):
    """Top-level names of every module `path` imports."""
    with open(path) as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split('.')[0])
    return names


def test_utils_is_the_ground_floor():
    folder = os.path.join(ROOT, 'utils')
    for name in sorted(os.listdir(folder)):
        if name.endswith('.py'):
            assert not imported_modules(os.path.join(folder, name)) & DOMAIN_PACKAGES, f'utils/{name}'


def test_tests_do_not_import_each_other():
    folder = os.path.join(ROOT, 'tests')
    for name in sorted(os.listdir(folder)):
        if name.endswith('.py'):
            assert not {m for m in imported_modules(os.path.join(folder, name)) if m.startswith('test_')}, name


def test_a_bare_clone_checks_itself_against_the_released_outputs(tmp_path):
    clone = tmp_path / 'clone' / 'gram'  # nothing beside it: no ../shared
    subprocess.run(['git', 'clone', '--quiet', ROOT, str(clone)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if key != 'GRAM_REFERENCE_DIR'}
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                             'tests/test_discriminator.py', 'tests/test_generator.py', '-k', 'released or reference'],
                            cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert ' passed' in result.stdout and 'skipped' not in result.stdout
