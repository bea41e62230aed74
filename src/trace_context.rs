//! W3C Trace Context (`traceparent`) carried from the HTTP request through the AMQP message
//! headers into the worker, so the logs of one send share one trace id.
//!
//! The header is `{version}-{trace-id}-{parent-id}-{flags}`: 2, 32, 16 and 2 lowercase hex
//! digits (<https://www.w3.org/TR/trace-context/#traceparent-header>). A malformed header is
//! ignored and a new trace starts, as the specification asks.
//!
//! While a unit of work runs inside [`TraceContext::scope`], every message the process
//! publishes (retries, dead letters) carries this context's `traceparent` (see
//! [`crate::queue::Publisher::publish`]).

use rand::Rng;

/// Name of the HTTP and AMQP header.
pub const HEADER: &str = "traceparent";

/// A remote parent read from a `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    // Lowercase only: the specification forbids uppercase hex in this header.
    if s.len() != N * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// An id (at most 16 bytes) in lowercase hex, written without an intermediate `String`: span
/// fields and headers format it straight into their own buffer.
#[derive(Clone, Copy)]
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buf = [0u8; 32];
        let out = buf.get_mut(..self.0.len() * 2).ok_or(std::fmt::Error)?;
        hex::encode_to_slice(self.0, out).map_err(|_| std::fmt::Error)?;
        f.write_str(std::str::from_utf8(out).map_err(|_| std::fmt::Error)?)
    }
}

impl TraceParent {
    /// Parses a header value; `None` when it is not a valid `traceparent`.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let version = value.get(0..2)?;
        let version = hex_bytes::<1>(version)?[0];
        if version == 0xff {
            return None;
        }
        // Version 00 is exactly 55 characters; a later version may append `-…` fields.
        if (version == 0 && value.len() != 55)
            || value.len() < 55
            || (value.len() > 55 && value.as_bytes()[55] != b'-')
        {
            return None;
        }
        let bytes = value.as_bytes();
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(value.get(3..35)?)?;
        let parent_id = hex_bytes::<8>(value.get(36..52)?)?;
        let flags = hex_bytes::<1>(value.get(53..55)?)?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

/// The span of this process's part of a trace: the trace id (inherited or new), this span's
/// id, and the remote parent's span id when there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut rng = rand::rng();
    loop {
        let mut out = [0u8; N];
        rng.fill(&mut out[..]);
        if out != [0u8; N] {
            return out;
        }
    }
}

impl TraceContext {
    /// Continues the trace of `header` (a `traceparent` value) with a new span, or starts a new
    /// trace when the header is absent or invalid.
    pub fn continue_from(header: Option<&str>) -> TraceContext {
        match header.and_then(TraceParent::parse) {
            Some(parent) => TraceContext {
                trace_id: parent.trace_id,
                span_id: random_nonzero(),
                parent_span_id: Some(parent.parent_id),
                flags: parent.flags,
            },
            None => TraceContext {
                trace_id: random_nonzero(),
                span_id: random_nonzero(),
                parent_span_id: None,
                // Sampled: there is no sampler here, every send is traced in the logs.
                flags: 0x01,
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        to_hex(&self.span_id)
    }

    pub fn parent_span_id_hex(&self) -> Option<String> {
        self.parent_span_id.map(|p| to_hex(&p))
    }

    /// The `traceparent` for work caused by this span (this span is the parent).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            Hex(&self.trace_id),
            Hex(&self.span_id),
            self.flags
        )
    }

    /// The intake's span of `POST /v1/send`.
    pub fn send_span(&self) -> tracing::Span {
        tracing::info_span!(
            "send",
            trace_id = %Hex(&self.trace_id),
            span_id = %Hex(&self.span_id),
            parent_span_id = self.parent_span_id.as_ref().map(|p| tracing::field::display(Hex(p))),
        )
    }

    /// The worker's span of one delivery.
    pub fn delivery_span(&self) -> tracing::Span {
        tracing::info_span!(
            "delivery",
            trace_id = %Hex(&self.trace_id),
            span_id = %Hex(&self.span_id),
            parent_span_id = self.parent_span_id.as_ref().map(|p| tracing::field::display(Hex(p))),
        )
    }

    /// Runs `work` with this context current (see [`TraceContext::current`]).
    pub async fn scope<F: std::future::Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// The context of the unit of work this task is running, if any.
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(|c| *c).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_parsed() {
        let p = TraceParent::parse(VALID).expect("valid");
        assert_eq!(to_hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&p.parent_id), "00f067aa0ba902b7");
        assert_eq!(p.flags, 1);
        // A later version may carry more fields after a dash.
        assert!(TraceParent::parse(&format!("01{}-extra", &VALID[2..])).is_some());
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for b in bad {
            assert_eq!(TraceParent::parse(b), None, "{b:?} must be rejected");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_points_at_its_parent() {
        let ctx = TraceContext::continue_from(Some(VALID));
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent_span_id_hex().as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(ctx.span_id_hex(), "00f067aa0ba902b7");
        let header = ctx.traceparent();
        let next = TraceParent::parse(&header).expect("own header parses");
        assert_eq!(next.trace_id, ctx.trace_id);
        assert_eq!(next.parent_id, ctx.span_id);
        assert_eq!(next.flags, 1);
    }

    #[test]
    fn an_invalid_header_starts_a_new_trace() {
        let ctx = TraceContext::continue_from(Some("garbage"));
        assert_eq!(ctx.parent_span_id, None);
        assert_ne!(ctx.trace_id, [0; 16]);
        assert!(TraceParent::parse(&ctx.traceparent()).is_some());
        let other = TraceContext::continue_from(None);
        assert_ne!(ctx.trace_id, other.trace_id);
    }
}
