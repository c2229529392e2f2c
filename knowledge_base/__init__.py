"""FAQ entries, their editorial workflow and hybrid retrieval."""
