"""The release's version has one place, scgikit.__version__, and everything that shows a
version says that one: the package metadata pyproject.toml declares, `scgikit --version`,
the installed distribution, and the names of the sdist and the wheel `python -m build` makes.
scripts/check-release checks the same of real installs in fresh virtual environments."""

import email
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from servers import child_env

import scgikit

pytestmark = pytest.mark.one_path(reason="the release's packaging")

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parent.parent
VERSION = scgikit.__version__


def test_the_version_is_declared_once_in_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "scgikit.__version__"}
    # A plain string literal, which setuptools reads without importing the package.
    source = (ROOT / "src" / "scgikit" / "__init__.py").read_text()
    assert re.findall(r'^__version__ = "([^"]+)"$', source, re.M) == [VERSION]
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", VERSION), VERSION


def test_scgikit_version_says_the_package_version():
    result = subprocess.run([sys.executable, "-m", "scgikit", "--version"], capture_output=True,
                            text=True, timeout=60, env=child_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"scgikit {VERSION}"


def test_the_installed_distribution_says_the_package_version():
    try:
        dist = importlib.metadata.distribution("scgikit")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scgikit is not installed here (the tests import it from src/)")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    source = direct_url.get("url", "")
    if source.startswith("file://") and Path(source[len("file://"):]).resolve() != ROOT.resolve():
        pytest.skip(f"the scgikit installed here is another tree's ({source})")
    assert dist.version == VERSION


def tree_copy(target: Path) -> Path:
    """The files git knows of (tracked, or new and not ignored), as they are in the work tree:
    a build of the copy leaves no egg-info or build/ folder in this one."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((ROOT / name).read_bytes())
    return target


def test_the_built_sdist_and_wheel_carry_the_version(tmp_path):
    # (setup.py's build/ folder in the work tree is a namespace package of that name)
    spec = importlib.util.find_spec("build")
    if spec is None or spec.origin is None:
        pytest.skip("`build` is not installed here: it is in the test extras "
                    "(pip install -e '.[test]')")
    tree = tree_copy(tmp_path / "tree")
    # The wheel as `python -m build` makes it (from the sdist, each in an isolated
    # environment), without its C accelerator: the compiler is not what is tested here.
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"),
                             str(tree)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**child_env(), "CC": "/bin/false", "CXX": "/bin/false"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = sorted(path.name for path in (tmp_path / "dist").iterdir())
    assert len(built) == 2, built
    assert f"scgikit-{VERSION}.tar.gz" in built
    [wheel_name] = [name for name in built if name.endswith(".whl")]
    assert wheel_name.startswith(f"scgikit-{VERSION}-"), wheel_name
    sdist, wheel = tmp_path / "dist" / f"scgikit-{VERSION}.tar.gz", tmp_path / "dist" / wheel_name
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.message_from_bytes(
            archive.read(f"scgikit-{VERSION}.dist-info/METADATA"))
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"scgikit-{VERSION}/PKG-INFO")
        assert member is not None
        assert email.message_from_bytes(member.read())["Version"] == VERSION
    # setuptools' deprecation of the license table (it stops building after 2027-02-18)
    # and any other word about the license would show here.
    output = result.stdout + result.stderr
    assert not [line for line in output.splitlines()
                if "licen" in line.lower() and "warn" in line.lower()], output[-3000:]
