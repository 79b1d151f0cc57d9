"""Every benchmark module imports: a helper moved or renamed under bench/ breaks
a command that is run by hand, not by the suite, and this says so at once."""
import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__))


def test_there_are_benchmarks():
    assert {"pipeline", "fairness", "broadcast", "points"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_benchmark_module_imports(name):
    module = importlib.import_module("bench." + name)
    assert module.__name__ == "bench." + name
