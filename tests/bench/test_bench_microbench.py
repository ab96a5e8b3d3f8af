"""bench.microbench's table from Google Benchmark's JSON: known-answer rows (median time in its
unit, items and bytes per second in G, the cv), and the command line it runs."""

import json

import pytest

from bench import microbench


def aggregate(name, agg, real_time, unit="us", **counters):
    return {"run_name": name, "aggregate_name": agg, "real_time": real_time, "time_unit": unit,
            **counters}  # fmt: skip


def test_rows_take_the_median_and_the_cv():
    report = {
        "benchmarks": [
            aggregate("perturb/f32/n/real_time", "mean", 11.0, items_per_second=9e9),
            aggregate(
                "perturb/f32/n/real_time",
                "median",
                10.0,
                items_per_second=2.5e9,
                bytes_per_second=2e10,
            ),
            aggregate("perturb/f32/n/real_time", "stddev", 0.5),
            aggregate("perturb/f32/n/real_time", "cv", 0.05),
            aggregate("step/D:10", "median", 2.0, unit="ms", items_per_second=64000.0),
        ]
    }
    assert microbench.rows(report) == [
        ["`perturb/f32/n`", "10 us", "2.5 G", "20 G", "5.0%"],
        ["`step/D:10`", "2 ms", "64 k", "", ""],
    ]


def test_a_missing_binary_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        microbench.main([str(tmp_path / "softzo_bench_nothing"), "--out", str(tmp_path)])
    assert "softzo_bench_nothing not found" in capsys.readouterr().err


def test_the_command_asks_for_json_and_aggregates(tmp_path, monkeypatch):
    binary = tmp_path / "softzo_bench_zo"
    binary.write_text("")
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        out = {"context": {"softzo_default_isa": "avx2"}, "benchmarks": []}
        return type("Done", (), {"stdout": json.dumps(out)})()

    real_run = microbench.subprocess.run  # platform.processor() runs uname through it too
    monkeypatch.setattr(
        microbench.subprocess,
        "run",
        lambda cmd, **kw: fake_run(cmd, **kw) if cmd[0] == str(binary) else real_run(cmd, **kw),
    )
    microbench.main([str(binary), "--filter", "^fill/", "--out", str(tmp_path)])
    assert seen["cmd"][1:] == [
        "--benchmark_format=json",
        "--benchmark_repetitions=3",
        "--benchmark_report_aggregates_only=true",
        "--benchmark_min_time=0.1",
        "--benchmark_filter=^fill/",
    ]
    text = (tmp_path / "zo_microbench.md").read_text()
    assert "default ISA avx2" in text and "Names are pass/dtype/distribution" in text
