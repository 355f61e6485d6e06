"""The repository itself: a bare clone passes a faithfulness test, and the import graph keeps its
floors (utils/ imports no domain package; no package imports a top-level script; tests import
helpers, never each other)."""
import ast
import os
import subprocess
import sys

from helpers import ROOT

DOMAIN_PACKAGES = {'configs', 'checkpoints', 'datasets', 'discriminators', 'generators', 'geometry', 'inversion',
                   'metrics', 'tools', 'training', 'browser'}


def parse(path):
    """The syntax tree of the Python file at `path`."""
    with open(path) as handle:
        return ast.parse(handle.read())


def imported_modules(path):
    """Top-level names of every module `path` imports (relative imports stay inside their package)."""
    names = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split('.')[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split('.')[0])
    return names


def runs_as_script(path):
    """Whether the module at `path` has a top-level `if __name__ == ...:` block (a command, not a library)."""
    return any(isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
               and isinstance(node.test.left, ast.Name) and node.test.left.id == '__name__'
               for node in parse(path).body)


def package_modules():
    """Paths of every module of the repository's packages (root folders with an __init__.py), sub-packages included."""
    paths = []
    for folder in sorted(os.listdir(ROOT)):
        if os.path.isfile(os.path.join(ROOT, folder, '__init__.py')):
            for directory, _, files in os.walk(os.path.join(ROOT, folder)):
                paths += [os.path.join(directory, name) for name in sorted(files) if name.endswith('.py')]
    return paths


def test_utils_is_the_ground_floor():
    folder = os.path.join(ROOT, 'utils')
    for name in sorted(os.listdir(folder)):
        if name.endswith('.py'):
            assert not imported_modules(os.path.join(folder, name)) & DOMAIN_PACKAGES, f'utils/{name}'


def test_packages_do_not_import_top_level_scripts():
    scripts = {name[:-3] for name in os.listdir(ROOT)
               if name.endswith('.py') and runs_as_script(os.path.join(ROOT, name))}
    assert scripts, 'no command scripts found at the repository root'
    offenders = []
    for path in package_modules():
        imported_scripts = imported_modules(path) & scripts
        if imported_scripts:
            offenders.append(f'{os.path.relpath(path, ROOT)} imports {", ".join(sorted(imported_scripts))}')
    assert not offenders, 'packages must not import top-level scripts: ' + '; '.join(offenders)


def test_every_command_sets_the_openmp_wait_policy_before_torch_loads():
    # The OpenMP runtime reads OMP_WAIT_POLICY when torch loads it: utils.openmp must come first in
    # every command (root scripts and tools; benchmarks measure under the environment they get).
    commands = [os.path.join(folder, name) for folder in ('.', 'tools') for name in sorted(os.listdir(os.path.join(ROOT, folder)))
                if name.endswith('.py') and runs_as_script(os.path.join(ROOT, folder, name))]
    assert len(commands) >= 10, commands
    for name in commands:
        tree = parse(os.path.join(ROOT, name))
        first_import = next(node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))
        assert isinstance(first_import, ast.Import) and first_import.names[0].name == 'utils.openmp', name
    completed = subprocess.run(
        [sys.executable, '-c', 'import os, utils.openmp; print(os.environ["OMP_WAIT_POLICY"])'], cwd=ROOT,
        env={key: value for key, value in os.environ.items() if key != 'OMP_WAIT_POLICY'},
        capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == 'PASSIVE'


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
                            check=False, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert ' passed' in result.stdout and 'skipped' not in result.stdout
