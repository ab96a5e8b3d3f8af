"""softzo's benchmarks, run from a checkout of the repository (they are not installed with the
package): ``python -m bench.softmax``, ``bench.losses``, ``bench.isa``, ``bench.zo``,
``bench.factored``, ``bench.coco``, ``bench.nextword``, ``bench.distributed`` (and
``bench.microbench``, which runs one of the Google Benchmark binaries). Each writes its
Markdown table (and plot) into ``bench/results/`` of this checkout, wherever it is run from, with
the machine, the CPU, the date and the command at its top; ``--quick`` runs a short smoke test
that writes nothing unless ``--out`` is given. ``_common`` holds what they share.

The Google Benchmark sources beside them (``*_bench.cc``) are built by CMake with
``-DSOFTZO_BUILD_BENCH=ON``.
"""
