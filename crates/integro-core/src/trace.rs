//! One trace per message across processes: the webhook's span context is
//! written into the reply job (a W3C `traceparent`), and the job's span
//! continues it in whichever worker runs the job. Without the `otlp`
//! feature, or while no exporter is installed, there is no context to carry
//! and both functions do nothing.

/// The current span's context as a W3C `traceparent`, when it is being
/// traced.
pub fn traceparent() -> Option<String> {
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = tracing::Span::current().context();
        let span = context.span();
        let sc = span.span_context();
        if sc.is_valid() {
            return Some(format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            ));
        }
    }
    None
}

/// Makes `span` a child of the span that `traceparent` names (ignored when
/// absent or malformed).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    #[cfg(feature = "otlp")]
    if let Some(parent) = traceparent.and_then(parse_traceparent) {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    #[cfg(not(feature = "otlp"))]
    let _ = (span, traceparent);
}

/// `00-<trace id>-<span id>-<flags>`, version 00 of W3C Trace Context.
#[cfg(feature = "otlp")]
fn parse_traceparent(value: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

#[cfg(all(test, feature = "otlp"))]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_strictly() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let parsed = parse_traceparent(good).unwrap();
        assert_eq!(
            parsed.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(parsed.is_sampled());
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }
}
