"""The flagship of docs/fair-comparisons.md: one network in two parametrizations."""
