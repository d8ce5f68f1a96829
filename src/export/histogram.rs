//! The allocation-size histogram ([`names::ALLOCATION_SIZE`]) as an OTLP metric.
//!
//! heapspan counts allocation sizes in its per-thread tables, already in buckets (a load and a
//! store per allocation); the OpenTelemetry SDK takes histogram data only one recording at a
//! time, which would cost the export thread tens of nanoseconds per allocation. So this one
//! metric is built here as an OTLP `Histogram` (cumulative, explicit bounds 16 B … 16 MiB) with
//! the same resource as heapspan's other metrics, and the sink sends it beside them through the
//! same transport. With the application's own meter provider it is not exported (the SDK has no
//! way in for pre-bucketed data).

use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ResourceMetrics,
    ScopeMetrics,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::Resource;

use super::names;
use crate::SizeHistogram;

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The OTLP request carrying histogram `h`, cumulative from `start` to `now`.
pub(crate) fn request(
    resource: &Resource,
    start: SystemTime,
    now: SystemTime,
    h: &SizeHistogram,
) -> ExportMetricsServiceRequest {
    let res = ResourceAttributesWithSchema::from(resource);
    let point = HistogramDataPoint {
        attributes: Vec::new(),
        start_time_unix_nano: unix_nanos(start),
        time_unix_nano: unix_nanos(now),
        count: h.count(),
        sum: Some(h.sum as f64),
        bucket_counts: h.counts.to_vec(),
        explicit_bounds: names::ALLOCATION_SIZE_BUCKETS.to_vec(),
        exemplars: Vec::new(),
        flags: 0,
        min: None,
        max: None,
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: res.attributes.0,
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "heapspan".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                metrics: vec![Metric {
                    name: names::ALLOCATION_SIZE.into(),
                    description: "Sizes of single allocations.".into(),
                    unit: names::UNIT_BYTES.into(),
                    metadata: Vec::new(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![point],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                }],
                schema_url: String::new(),
            }],
            schema_url: res.schema_url.unwrap_or_default(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_buckets_bounds_and_resource() {
        let resource = Resource::builder_empty()
            .with_attributes([opentelemetry::KeyValue::new("service.name", "t")])
            .build();
        let mut h = SizeHistogram::default();
        h.counts[0] = 3;
        h.counts[4] = 2;
        h.sum = 3 * 8 + 2 * 2000;
        let req = request(&resource, SystemTime::UNIX_EPOCH, SystemTime::now(), &h);
        let rm = &req.resource_metrics[0];
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs[0].key, "service.name");
        let m = &rm.scope_metrics[0].metrics[0];
        assert_eq!(
            (m.name.as_str(), m.unit.as_str()),
            (names::ALLOCATION_SIZE, names::UNIT_BYTES)
        );
        let Some(metric::Data::Histogram(hist)) = &m.data else {
            panic!("a histogram")
        };
        let p = &hist.data_points[0];
        assert_eq!(p.count, 5);
        assert_eq!(p.sum, Some(4024.0));
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        assert_eq!(p.bucket_counts[4], 2);
        assert_eq!(p.explicit_bounds[0], 16.0);
        assert_eq!(
            hist.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
    }
}
