"""The fused CPU loop behind :class:`zoo.layers.FusedLSTM` and :class:`zoo.layers.FusedGRU`.

One job per module, each importing only the ones above it:

- :mod:`.bf16`: the loops' per-step buffers, bfloat16 ones held as uint16 bit patterns;
- :mod:`.cells`: one cell's XLA-compiled forward and backward loops (LSTM, GRU);
- :mod:`.gradient`: a whole sequence as one ``tf.custom_gradient`` op, batch split into
  concurrent loops (``lstm_sequence``, ``gru_sequence``).
"""
