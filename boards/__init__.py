"""Board builds with the open toolchain (ULX3S ECP5-85F first)."""
