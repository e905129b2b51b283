"""Matched comparisons of Sessa against baselines (`sessa bench`)."""
