"""A differential fuzzer for the elementwise, stencil and reduction specializers (issue 11,
section 6).

:mod:`.gen` draws kernels (hypothesis strategies), :mod:`.render` writes them as
modules, :mod:`.worker` compiles and compares them with the Python reference in
a child process, :mod:`.driver` survives the child's crashes and shrinks
failures; ``python -m tests.fuzz`` is the long campaign (``make fuzz``).
"""
