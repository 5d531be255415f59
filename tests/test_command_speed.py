"""benchmarks.command_speed compares like with like, and its phase timers still find what they wrap
(the timings themselves are measured, not tested)."""

import pytest


def test_the_pytorch_script_splits_the_text_as_seqzoo_does():
    torch_textgen = pytest.importorskip("benchmarks.torch_textgen", exc_type=ImportError)
    from tasks.text_generation.data import SPLIT, split_text

    text = "".join(chr(65 + i % 26) for i in range(10_007))
    assert torch_textgen.split(text) == split_text(text)
    assert SPLIT == (0.90, 0.05, 0.05)


def test_the_pytorch_script_uses_seqzoo_textgens_default_sizes():
    torch_textgen = pytest.importorskip("benchmarks.torch_textgen", exc_type=ImportError)
    from tasks.text_generation import Options

    o = Options()
    assert (o.seq_len, o.batch_size, o.embedding_dim, o.units, o.learning_rate) == (
        torch_textgen.SEQ_LEN,
        torch_textgen.BATCH,
        torch_textgen.EMBED,
        torch_textgen.UNITS,
        torch_textgen.LEARNING_RATE,
    )
    assert (o.model, o.num_layers, o.sample_length, o.temperature, o.prime) == (
        "lstm",
        None,
        torch_textgen.SAMPLE_LENGTH,
        torch_textgen.TEMPERATURE,
        torch_textgen.PRIME,
    )


def test_the_phase_timers_find_the_functions_they_wrap():
    import tasks.terminal
    import tasks.text_generation as textgen
    import tasks.text_generation.export as textgen_export
    import tasks.text_generation.model as textgen_model
    import tasks.text_generation.sampling as sampling
    import zoo.monitor
    import zoo.training

    for module, names in (
        (tasks.terminal, ["quiet_tensorflow"]),
        (textgen, ["load_data", "resolve_run_dir", "report"]),
        (textgen_model, ["build_model", "compile", "evaluate"]),
        (textgen_export, ["export_model"]),
        (sampling.Sampler, ["from_model"]),
        (sampling.SampleAfterEpoch, ["on_epoch_end"]),
        (zoo.monitor, ["plot_grad_norms"]),
        (zoo.training, ["fit"]),
    ):
        for name in names:
            assert callable(getattr(module, name)), (module, name)
