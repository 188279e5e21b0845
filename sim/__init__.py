"""Cycle-accurate simulation: Verilator builds, cocotb testbenches, the simulated board."""
