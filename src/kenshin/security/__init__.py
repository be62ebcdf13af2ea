"""Identity, access and audit (issue 14; SPEC X2, X3, X5, X6): principals, secrets, tokens, the
authorization policy, rate limits, the audit trail and the kill switch. See docs/security.md."""
