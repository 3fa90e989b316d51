"""The optional C accelerator; the project's metadata is in pyproject.toml.

``optional=True``: where there is no C compiler or no Python headers, the build
says so and installs the pure-Python package, which works the same, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("scgikit._speedups", ["src/scgikit/_speedups.c"], optional=True),
    ],
)
