//! Receiver-side webhook signature verification (SPEC §6); filled in by the webhooks work.
