"""Dataset evaluation protocols as their official code computes them (numpy, host side)."""
