"""Build the one native extension of asp: the lean call path (``asp._native``).

Generated kernels are plain C without Python.h (fast to compile); this module,
built once at install time, checks each call's guards and calls the kernel with
the GIL released.  It is optional: without a compiler asp still installs and
every kernel runs as plain Python.
"""
import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "asp._native",
            ["asp/runtime/_native.c"],
            include_dirs=[numpy.get_include()],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
