"""Graph optimization: the pattern-rewrite engine (pattern.py), the ordered pass list (pipeline.py)
and one module per pass family (folding, elimination, recognition, vertical and horizontal fusion,
concat elimination)."""
