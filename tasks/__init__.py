"""seqzoo's tasks: data, heads, losses, metrics, baselines, CLIs and exports."""
