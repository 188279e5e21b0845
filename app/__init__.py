"""The application layer: the command line, whole-network simulation through the driver,
benchmarks and reports. It is the only layer that imports every other one."""
