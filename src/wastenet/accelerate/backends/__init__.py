"""One small module per inference runtime; each imports its runtime inside ``load``."""
