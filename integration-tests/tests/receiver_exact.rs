//! Exact values, decoded with the official protobuf types by an in-process OTLP/HTTP receiver.

use std::time::Duration;

use heapspan::export::names as n;
use heapspan_integration_tests::*;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// Every (request index, value) of the sum `metric` for the series `key=value`.
fn sum_series(
    reqs: &[ExportMetricsServiceRequest],
    metric: &str,
    key: &str,
    value: &str,
) -> Vec<i64> {
    let mut out = Vec::new();
    for r in reqs {
        for rm in &r.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == metric) {
                    let Some(metric::Data::Sum(s)) = &m.data else {
                        panic!("{metric} is not a sum")
                    };
                    for p in &s.data_points {
                        if str_attr(&p.attributes, key) == Some(value) {
                            match p.value {
                                Some(number_data_point::Value::AsInt(v)) => out.push(v),
                                other => panic!("{metric}: not an integer point: {other:?}"),
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn exported_values_are_exact() {
    let rx = Receiver::start();
    let out = run(
        app(env!("CARGO_BIN_EXE_export_app"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint())
            .env("APP_MILLIS", "600")
            .env("APP_HOLD_AFTER_MILLIS", "500"),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    let metrics = rx.metrics();
    assert!(metrics.len() >= 3, "{} metric requests", metrics.len());

    // The holder holds exactly HOLD bytes, then frees them when it ends.
    let live = sum_series(&metrics, n::TASK_MEMORY_LIVE, n::TOKIO_TASK_NAME, "holder");
    assert!(live.contains(&HOLD), "{live:?}");
    assert!(live.iter().all(|v| *v == HOLD || *v == 0), "{live:?}");
    assert_eq!(live.last(), Some(&0));
    let allocated = sum_series(
        &metrics,
        n::TASK_MEMORY_ALLOCATED,
        n::TOKIO_TASK_NAME,
        "holder",
    );
    assert_eq!(allocated.last(), Some(&HOLD));
    let freed = sum_series(&metrics, n::TASK_MEMORY_FREED, n::TOKIO_TASK_NAME, "holder");
    assert_eq!(freed.last(), Some(&HOLD));
    let count = sum_series(&metrics, n::TASK_ALLOCATIONS, n::TOKIO_TASK_NAME, "holder");
    assert_eq!(count.last(), Some(&1));

    // The `request` span allocated REQUEST_BYTES in two blocks and freed one inside; the other
    // is held until the end of the run, then freed (charged to the span that allocated it).
    let span_alloc = sum_series(
        &metrics,
        n::SPAN_MEMORY_ALLOCATED,
        n::SPAN_NAME,
        REQUEST_SPAN,
    );
    assert_eq!(span_alloc.last(), Some(&REQUEST_BYTES), "{span_alloc:?}");
    let span_live = sum_series(&metrics, n::SPAN_MEMORY_LIVE, n::SPAN_NAME, REQUEST_SPAN);
    assert!(span_live.contains(&(REQUEST_BYTES / 2)), "{span_live:?}");
    assert_eq!(span_live.last(), Some(&0));
    let span_allocs = sum_series(&metrics, n::SPAN_ALLOCATIONS, n::SPAN_NAME, REQUEST_SPAN);
    assert_eq!(span_allocs.last(), Some(&2));

    // The allocation-size histogram: cumulative, so counts never go down; the holder's one
    // HOLD-byte (3 MiB) block is in the (1 MiB, 4 MiB] bucket; buckets add up to the count.
    let mut last_count = 0;
    let mut last_buckets = Vec::new();
    let mut seen = 0;
    for req in &metrics {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == n::ALLOCATION_SIZE) {
                    assert_eq!(m.unit, n::UNIT_BYTES);
                    let Some(metric::Data::Histogram(h)) = &m.data else {
                        panic!("{} is a histogram", n::ALLOCATION_SIZE)
                    };
                    for p in &h.data_points {
                        seen += 1;
                        assert_eq!(p.explicit_bounds, n::ALLOCATION_SIZE_BUCKETS.to_vec());
                        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                        assert!(p.count >= last_count, "cumulative");
                        last_count = p.count;
                        last_buckets.clone_from(&p.bucket_counts);
                    }
                }
            }
        }
    }
    assert!(seen >= 1, "the histogram was exported");
    assert!(last_buckets[9] >= 1, "the 3 MiB block: {last_buckets:?}");

    // Window spans: integer attributes are i64; the holder's windows add up to its bytes.
    // One trace per window: each window span is a child of its window's
    // `heapspan.process.window` root, in the root's trace.
    let traces = rx.traces();
    let mut holder_alloc = 0;
    let mut holder_freed = 0;
    let mut windows = Vec::new();
    let mut roots = Vec::new();
    for t in &traces {
        for rs in &t.resource_spans {
            for ss in &rs.scope_spans {
                assert_eq!(ss.scope.as_ref().map(|s| s.name.as_str()), Some(n::SCOPE));
                for s in &ss.spans {
                    let a = &s.attributes;
                    assert!(int_attr(a, n::WINDOW_END) >= int_attr(a, n::WINDOW_START));
                    assert_eq!(
                        int_attr(a, n::WINDOW_START),
                        Some(s.start_time_unix_nano as i64)
                    );
                    assert!(
                        matches!(
                            attr(a, n::WINDOW_EXACT),
                            Some(any_value::Value::BoolValue(true))
                        ),
                        "nothing overflowed: the window's figures are marked exact"
                    );
                    if s.name == n::PROCESS_WINDOW_SPAN {
                        assert!(s.parent_span_id.is_empty(), "a root");
                        assert!(int_attr(a, n::WINDOW_TASKS).is_some());
                        assert_eq!(int_attr(a, n::WINDOW_TASKS_OMITTED), Some(0));
                        roots.push(s);
                        continue;
                    }
                    assert_eq!(s.name, n::WINDOW_SPAN);
                    windows.push(s);
                    assert!(int_attr(a, n::TOKIO_TASK_ID).is_some());
                    if str_attr(a, n::TOKIO_TASK_NAME) == Some("holder") {
                        holder_alloc += int_attr(a, n::MEMORY_ALLOCATED).unwrap();
                        holder_freed += int_attr(a, n::MEMORY_FREED).unwrap();
                    }
                }
            }
        }
    }
    assert!(windows.len() >= 3, "{} window spans", windows.len());
    for w in &windows {
        let root = roots
            .iter()
            .find(|r| r.span_id == w.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of a window span is no window root"));
        assert_eq!(w.trace_id, root.trace_id);
    }
    for r in &roots {
        let children = windows
            .iter()
            .filter(|w| w.parent_span_id == r.span_id)
            .count();
        assert_eq!(
            int_attr(&r.attributes, n::WINDOW_TASKS),
            Some(children as i64),
            "a root counts its window spans"
        );
    }
    assert_eq!(holder_alloc, HOLD);
    assert_eq!(holder_freed, HOLD);
}
