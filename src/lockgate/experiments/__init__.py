"""Experiments (§8): canary, A/B and shadow traffic, and the analysis that tells a real
difference from noise. Assignment itself is a pure routing decision (``routing.assignment``);
this package holds the statistics, the shadow copies, the shared state and the analysis."""
