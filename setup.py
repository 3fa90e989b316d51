"""The optional C accelerator; the project's metadata is in pyproject.toml.

``optional=True``: where there is no C compiler or no Python headers, the build
says so and installs the pure-Python package, which works the same, slower.
Its sources are one file per concern in src/speedups (speedups.h says which).
"""

from pathlib import Path

from setuptools import Extension, setup

SOURCES = sorted(str(path) for path in Path("src/speedups").glob("*.c"))

setup(
    ext_modules=[
        Extension("scgikit._speedups", SOURCES, depends=["src/speedups/speedups.h"],
                  optional=True),
    ],
)
