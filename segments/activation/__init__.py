"""Activation: what hands a segment's members out of cdp. Exports (CSV / JSONL files, encrypted
at rest) and webhooks (HMAC-signed enter / exit deliveries with retries and a delivery log), both
gated by the segment's consent purpose and refusing too-small segments. docs/segments.md,
"Activation: exports and webhooks"."""
