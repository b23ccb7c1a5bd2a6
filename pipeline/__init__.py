"""Orchestration around hiddennets: specs, CLIs, sweeps on Ray, result tables, reports, benchmarks."""
