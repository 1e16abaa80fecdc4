"""The smart bin: frame sources, presence gate, vote, doors, overlay, sample store, loop."""
