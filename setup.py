"""The optional C accelerator; the project's metadata is in pyproject.toml.

``optional=True``: where there is no C compiler or no Python headers, the build
says so and installs the pure-Python package, which works the same, slower.
Its sources are one file per concern in src/speedups (speedups.h says which).

setuptools' own word for a failed optional extension is one line ("building
extension ... failed: command 'gcc' failed with exit code 1"); the notice below
adds what it means and what to do.  pip shows a build's output only with ``-v``;
``scgikit --version`` says afterwards whether the accelerator is on.
"""

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.errors import BaseError, CCompilerError, CompileError

SOURCES = sorted(str(path) for path in Path("src/speedups").glob("*.c"))

NOTICE = """\
scgikit: NOTICE: the C accelerator (scgikit._speedups) was not built.
scgikit: the build's error: {error}
scgikit: the accelerator is optional: scgikit installs without it and works the same
scgikit: in pure Python, slower; `scgikit --version` says "C accelerator: off (pure Python)".
scgikit: to build it, install a C compiler and the headers of this Python
scgikit: (on Debian: apt-get install gcc python3-dev) and install scgikit again."""


class build_ext(_build_ext):  # lower case: setuptools' warnings carry the class's name
    """setuptools' build_ext, which explains a failed optional extension before it skips it."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, CompileError, BaseError) as error:  # what setuptools skips
            if ext.optional:
                text = " ".join(str(error).split())
                if len(text) > 240:  # a compiler's whole command line: its start and its end
                    text = f"{text[:120]} ... {text[-100:]}"
                print(NOTICE.format(error=text), file=sys.stderr, flush=True)
            raise


setup(
    ext_modules=[
        Extension("scgikit._speedups", SOURCES, depends=["src/speedups/speedups.h"],
                  optional=True),
    ],
    cmdclass={"build_ext": build_ext},
)
