"""The one compiled module, ``epix.permits.mapping`` (see its docstring for why it is C).

Everything else is configured in ``pyproject.toml``. lxml's C API and libxml2's headers come
from the lxml wheel the build environment installs, pinned to the version ``uv.lock`` runs.
"""

import lxml
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "epix.permits.mapping",
                ["epix/permits/mapping.pyx"],
                include_dirs=lxml.get_include(),
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
