"""The benchmark tables' arithmetic (the timings themselves are measured, not tested)."""

from benchmarks.train_speed import REST, Shape, breakdown_table, table


def _row(**tok_s):
    return {"cell": "lstm", "layers": 1, "precision": "bf16", **tok_s}


def test_breakdown_splits_each_step_into_recurrent_layers_and_the_rest():
    shape = Shape(batch=10, seq_len=100)  # 1,000 tokens per step: 1,000 tok/s is 1,000 ms
    row = _row(**{"seqzoo": 20_000, "seqzoo" + REST: 100_000, "torch": 25_000, "torch" + REST: 200_000})
    lines = breakdown_table([row], ["seqzoo", "torch"], shape).splitlines()
    seqzoo = [c.strip() for c in lines[2].strip("|").split("|")]
    torch = [c.strip() for c in lines[3].strip("|").split("|")]
    # seqzoo: step 50 ms, rest 10 ms, recurrent 40 ms; torch: 40, 5, 35 ms.
    assert seqzoo[3:] == ["seqzoo", "50.0", "10.0", "40.0", "0.80x", "0.50x", "0.88x"]
    assert torch[3:] == ["torch", "40.0", "5.0", "35.0", "1.00x", "1.00x", "1.00x"]


def test_table_reports_the_per_round_ratio_range():
    row = _row(seqzoo=110.0, keras=50.0, torch=100.0, **{"seqzoo/torch rounds": [0.9, 1.3, 1.1],
                                                           "seqzoo setup": 0.5, "keras setup": 0.2})
    cells = [c.strip() for c in table([row], ["seqzoo", "keras", "torch"]).splitlines()[2].strip("|").split("|")]
    assert cells[6:] == ["1.10x", "0.50x", "0.90-1.30x", "+120.0%", "0.50 / 0.20"]
