"""The MovieLens TFX pipeline definition and its runners."""
