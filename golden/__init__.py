"""The executable specification: networks, float reference, importer, quantizer, blob format, compiler and the bit-exact integer model."""
