"""Scoring models on domains: class alignment by name, the cross-domain plan, metrics, forgetting, reports and plots."""
