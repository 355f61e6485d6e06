"""Our checkpoint format, loading any weight file (ours or released), and conversions."""
