"""Scaling: law forms, robust fits, quality-quantity (QQT), OT distances and Projektor, proxy runs."""
