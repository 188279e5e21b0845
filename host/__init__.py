"""Host side: the command line, the compiled-blob cache and (to come) the device driver."""
