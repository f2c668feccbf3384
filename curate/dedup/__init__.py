"""Deduplication: exact (content hash), fuzzy (MinHash LSH) and semantic (SemDeDup)."""
