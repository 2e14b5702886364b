"""How the package reports progress: a function that prints takes ``out: Out = print``.

Commands pass ``print`` (flushed where a pipe must see each line as it comes), the local runner an
indenting wrapper, tests a list's ``append``. The runtime, which imports nothing else of the
package, names its callback ``out`` too. Errors are not output: they are raised (``errors.py``)."""

from collections.abc import Callable

Out = Callable[[str], None]
