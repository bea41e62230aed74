//! The one integration-test binary: a module per area, sharing the harness in `common`.
//! Every test runs against the real local Postgres, Redis and RabbitMQ, each in its own
//! database and namespace, so they run in parallel.

mod common;
mod crash_support;
mod email_support;
mod log_capture;
mod matchers;
mod smtp_support;
mod webhook_support;

mod adapters_e2e;
mod api_keys;
mod bench_smoke;
mod breaker_ratelimit;
mod crash;
mod dashboard_assets;
mod dead_letters;
mod delivery_policy;
mod lanes;
mod lanes_crash;
mod limits;
mod message_filters;
mod observability;
mod pipeline;
mod provider_kinds;
mod provider_mailgun;
mod provider_postmark;
mod provider_resend;
mod provider_sendgrid;
mod provider_smtp;
mod provider_twilio;
mod provider_vonage;
mod publish_gather;
mod receipt_dedup;
mod receipts_e2e;
mod receipts_more_e2e;
mod redis_down;
mod retention;
mod secrets;
mod send_gate;
mod smtp_e2e;
mod stats;
mod suppression;
mod unknown_outcome;
mod webhook_endpoints;
mod webhooks_crash;
mod webhooks_out;
mod writer_batch;
mod writer_claim;
