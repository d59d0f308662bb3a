"""What the command line prints: the live training display, the export table and every report's rich tables."""
