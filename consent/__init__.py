"""Consent ledger, opt-outs, privacy requests and PII key management."""
