"""What a node pays for the meta-plugin, side by side with upstream Multus: `python -m bench.node_cost`."""
